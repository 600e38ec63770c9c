/* Tab completion for the REPL. The word under the cursor is a Lua name, or a
 * chain "a.b.c" / "a.b:c"; the part before the last '.' or ':' is evaluated
 * in the live Lua state (global lookup, then field accesses, all inside
 * lua_pcall so a failing __index cannot escape the completer) and the keys
 * of the resulting value are offered:
 *   name      globals (including through _G's __index tables) and keywords
 *   a.b.      string keys of a.b and of its __index tables
 *   a.b:      function-valued keys of the same
 * Values whose fields no table walk lists (a tensor: properties and methods;
 * a module instance: parameters, submodules, attributes and its class's
 * methods) get flame._complete_keys(value, after_colon)'s names, which come
 * from the help table (lua/flame/help.lua).
 * Names starting with '_' are only offered once the user has typed '_'. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#ifdef FLAME_HAVE_READLINE
#include <stdio.h>
#include <readline/readline.h>
#endif

#include "cli.h"

#define MAX_INDEX_DEPTH 16  /* guards against __index cycles */

static const char *const keywords[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
    "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return",
    "then", "true", "until", "while", NULL,
};

static int is_keyword(const char *s, size_t len)
{
    int i;
    for (i = 0; keywords[i]; i++)
        if (strlen(keywords[i]) == len && memcmp(keywords[i], s, len) == 0) return 1;
    return 0;
}

/* Only keys usable after '.' or ':' are worth offering. */
static int is_name(const char *s, size_t len)
{
    size_t i;
    if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
    for (i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
    return !is_keyword(s, len);
}

/* Context of one completion, kept in C while Lua code may run. */
struct query {
    const char *base;     /* text up to and including the last separator */
    size_t baselen;
    const char *partial;  /* the name being typed after it */
    size_t partlen;
    int methods_only;     /* after ':' */
    int set;              /* stack index of the result set {candidate=true} */
};

static void offer(lua_State *L, const struct query *q, const char *key, size_t len)
{
    if (len < q->partlen || memcmp(key, q->partial, q->partlen) != 0) return;
    if (key[0] == '_' && (q->partlen == 0 || q->partial[0] != '_')) return;
    lua_pushlstring(L, q->base, q->baselen);
    lua_pushlstring(L, key, len);
    lua_concat(L, 2);
    lua_pushboolean(L, 1);
    lua_rawset(L, q->set);
}

/* Offers the keys of the table at the top of the stack. */
static void offer_keys(lua_State *L, const struct query *q, int all_values)
{
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TSTRING &&
            (all_values || lua_type(L, -1) == LUA_TFUNCTION)) {
            size_t len;
            const char *key = lua_tolstring(L, -2, &len);
            if (is_name(key, len)) offer(L, q, key, len);
        }
        lua_pop(L, 1);
    }
}

/* The module table: package.loaded.flame, else the global flame. */
static void push_flame(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, "flame") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_getglobal(L, "flame");
    }
    lua_remove(L, -2);
}

/* Offers what flame._complete_keys(value, methods_only) lists for the value at
 * the top of the stack: the fields a table walk cannot see (a tensor's
 * properties and methods, a module instance's parameters and submodules).
 * Returns 0, leaving the value, when it lists nothing. */
static int offer_listed(lua_State *L, const struct query *q)
{
    int v = lua_gettop(L);
    push_flame(L);
    if (!lua_istable(L, -1) || lua_getfield(L, -1, "_complete_keys") != LUA_TFUNCTION) {
        lua_settop(L, v);
        return 0;
    }
    lua_pushvalue(L, v);
    lua_pushboolean(L, q->methods_only);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        lua_settop(L, v);
        return 0;
    }
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
        size_t len;
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (key && is_name(key, len)) offer(L, q, key, len);
        lua_pop(L, 1);
    }
    lua_settop(L, v - 1);
    return 1;
}

/* Offers the fields of the value at the top of the stack (consumed). */
static void offer_fields(lua_State *L, const struct query *q)
{
    int depth;
    int all = !q->methods_only;
    if (offer_listed(L, q)) return;
    for (depth = 0; depth < MAX_INDEX_DEPTH; depth++) {
        if (lua_istable(L, -1)) offer_keys(L, q, all);
        if (!lua_getmetatable(L, -1)) break;
        lua_pushliteral(L, "__index");
        lua_rawget(L, -2);
        lua_remove(L, -2);  /* the metatable */
        if (lua_istable(L, -1)) {
            lua_remove(L, -2);  /* follow the __index table */
            continue;
        }
        /* an __index function cannot be listed (offer_listed did what can be) */
        break;
    }
}

/* Pushes the value of "name.name.name" (text[0..len)), or nil when the
 * text is not such a chain. Field accesses may run __index metamethods. */
static void eval_chain(lua_State *L, const char *text, size_t len)
{
    size_t i = 0;
    int first = 1;
    lua_pushglobaltable(L);
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '.') j++;
        if (!is_name(text + i, j - i)) {
            lua_pushnil(L);
            return;
        }
        if (!first && !lua_istable(L, -1) && !luaL_getmetafield(L, -1, "__index")) {
            lua_pushnil(L);  /* indexing would only raise an error */
            return;
        }
        if (!first && !lua_istable(L, -1)) lua_pop(L, 1);  /* the __index probe */
        lua_pushlstring(L, text + i, j - i);
        lua_gettable(L, -2);
        lua_remove(L, -2);
        first = 0;
        i = j + 1;
    }
}

static int collect(lua_State *L)
{
    const char *text = lua_touserdata(L, 1);
    const char *dot = strrchr(text, '.');
    const char *colon = strrchr(text, ':');
    const char *sep = dot > colon ? dot : colon;
    struct query q;
    lua_settop(L, 0);
    lua_newtable(L);
    q.set = 1;
    if (sep == NULL) {  /* a bare name: globals and keywords */
        int i;
        q.base = text;
        q.baselen = 0;
        q.partial = text;
        q.partlen = strlen(text);
        q.methods_only = 0;
        for (i = 0; keywords[i]; i++) offer(L, &q, keywords[i], strlen(keywords[i]));
        lua_pushglobaltable(L);
        offer_fields(L, &q);
    } else {
        /* a ':' may only be the last separator: "a:b.c", "a:b:c" are no chains */
        if (colon && (colon != sep || strchr(text, ':') != colon)) return 1;
        q.base = text;
        q.baselen = (size_t)(sep - text) + 1;
        q.partial = sep + 1;
        q.partlen = strlen(sep + 1);
        q.methods_only = *sep == ':';
        eval_chain(L, text, (size_t)(sep - text));
        if (!lua_isnil(L, -1)) offer_fields(L, &q);
    }
    lua_settop(L, 1);
    return 1;
}

void complete_push(lua_State *L, const char *text)
{
    int n = 0;
    lua_newtable(L);
    lua_pushcfunction(L, collect);
    lua_pushlightuserdata(L, (void *)text);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        lua_pushnil(L);  /* set -> sequence */
        while (lua_next(L, -2)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawseti(L, -4, ++n);
        }
    }
    lua_pop(L, 1);  /* the set or the error */
}

#ifdef FLAME_HAVE_READLINE
static lua_State *completion_L;
static char **candidates;
static size_t ncandidates, next_candidate;

/* readline takes ownership of the strings it is handed */
static char *generator(const char *text, int state)
{
    (void)text;  /* already filtered by prefix */
    if (state == 0) next_candidate = 0;
    return next_candidate < ncandidates ? candidates[next_candidate++] : NULL;
}

static char **attempt(const char *text, int start, int end)
{
    lua_State *L = completion_L;
    int top = lua_gettop(L);
    size_t i, n;
    char **matches = NULL;
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1;      /* no file-name fallback */
    rl_completion_append_character = '\0'; /* "flame.zeros" is followed by '(' or '.' */
    if (!lua_checkstack(L, 8)) return NULL;
    complete_push(L, text);
    n = lua_rawlen(L, -1);
    candidates = n ? calloc(n, sizeof *candidates) : NULL;
    ncandidates = 0;
    for (i = 1; candidates && i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        candidates[ncandidates] = strdup(lua_tostring(L, -1));
        if (candidates[ncandidates]) ncandidates++;
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    if (ncandidates) matches = rl_completion_matches(text, generator);
    for (i = next_candidate; i < ncandidates; i++) free(candidates[i]);
    free(candidates);
    candidates = NULL;
    ncandidates = next_candidate = 0;
    return matches;
}

void complete_install(lua_State *L)
{
    completion_L = L;
    rl_attempted_completion_function = attempt;
    /* '.' and ':' stay inside the word so that "flame.nn.Li" is one unit */
    rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";
}
#else
void complete_install(lua_State *L)
{
    (void)L;
}
#endif
