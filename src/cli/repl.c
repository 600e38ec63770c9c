/* The read-eval-print loop. Same rules as lua.c: a line is first tried as
 * "return <line>" so expressions print their values, then as a statement;
 * a chunk whose syntax error ends at "<eof>" is incomplete and more lines
 * are read. Differences: a chunk continued over several lines is also
 * tried as an expression (so "flame.zeros(\n 3)" prints its value), Ctrl-C
 * at the prompt drops the pending input, and EOF inside an incomplete chunk
 * reports the real syntax error. As trepl and IPython: a trailing ';' prints
 * nothing, "?x" is help(x), "%time" toggles timing of each command and
 * "%time <line>" times one, and tensors print wrapped at the terminal width. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "cli.h"
#include "flame.h"
#include "flame_lua.h"

#define PROMPT1 "flame> "
#define PROMPT2 "   ..> "
#define EOFMARK "<eof>"
#define CHUNKNAME "=stdin"

enum { LOAD_EOF = -1, LOAD_INTERRUPTED = -2, LOAD_HANDLED = -3 };

/* What the chunk just read asks for besides running it. */
static int quiet;      /* it ended with ';': print no results */
static int time_once;  /* "%time <line>" */
static int time_all;   /* "%time" toggled on */

/* _PROMPT / _PROMPT2 override the prompts, as in lua. */
static void push_prompt(lua_State *L, int firstline)
{
    if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushstring(L, firstline ? PROMPT1 : PROMPT2);
    } else {
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
    }
}

/* Reads a line and pushes it (LINE_OK); pushes nothing otherwise. */
static int pushline(lua_State *L, int firstline)
{
    char *line;
    int status;
    push_prompt(L, firstline);
    status = line_read(lua_tostring(L, -1), &line);
    lua_pop(L, 1);
    if (status != LINE_OK) return status;
    if (firstline && line[0] == '=')  /* "=expr", kept from Lua 5.2 */
        lua_pushfstring(L, "return %s", line + 1);
    else
        lua_pushstring(L, line);
    free(line);
    return LINE_OK;
}

/* A chunk is complete: into the history, and a trailing ';' (before spaces)
 * means "do not print". */
static void accept(const char *chunk)
{
    size_t n = strlen(chunk);
    while (n > 0 && (chunk[n - 1] == ' ' || chunk[n - 1] == '\t')) n--;
    quiet = n > 0 && chunk[n - 1] == ';';
    line_save(chunk);
}

static int is_incomplete(lua_State *L, int status)
{
    if (status == LUA_ERRSYNTAX) {
        size_t len;
        const char *msg = lua_tolstring(L, -1, &len);
        size_t marklen = sizeof(EOFMARK) - 1;
        return msg && len >= marklen && strcmp(msg + len - marklen, EOFMARK) == 0;
    }
    return 0;
}

/* Tries "return <line>;" on the line on top of the stack (its own trailing
 * ';' dropped, as "return x;;" is no Lua); on success the compiled function
 * is pushed above the line. */
static int addreturn(lua_State *L)
{
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
    if (len > 0 && line[len - 1] == ';') len--;
    lua_pushliteral(L, "return ");
    lua_pushlstring(L, line, len);
    lua_pushliteral(L, ";");
    lua_concat(L, 3);
    const char *retline = lua_tostring(L, -1);
    int status = luaL_loadbuffer(L, retline, strlen(retline), CHUNKNAME);
    if (status == LUA_OK) {
        lua_remove(L, -2);
        accept(line);
    } else {
        lua_pop(L, 2);
    }
    return status;
}

/* Compiles the chunk at index 1 as a statement, reading continuation lines
 * while it is incomplete. Leaves the function or the error on top. */
static int multiline(lua_State *L)
{
    int first;
    for (first = 1;; first = 0) {
        size_t len;
        const char *chunk;
        int status, st;
        /* the first line alone was already tried as an expression */
        if (!first && addreturn(L) == LUA_OK) return LUA_OK;
        chunk = lua_tolstring(L, 1, &len);
        status = luaL_loadbuffer(L, chunk, len, CHUNKNAME);
        if (!is_incomplete(L, status)) {
            accept(chunk);
            return status;
        }
        st = pushline(L, 0);
        if (st == LINE_EOF) {  /* report why the chunk is incomplete */
            accept(chunk);
            return status;
        }
        if (st == LINE_INTERRUPTED) return LOAD_INTERRUPTED;
        lua_remove(L, -2);  /* the "<eof>" error */
        lua_pushliteral(L, "\n");
        lua_insert(L, -2);
        lua_concat(L, 3);  /* chunk .. "\n" .. line */
    }
}

static const char *skip_space(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

/* The REPL's own commands on the first line (on top of the stack): "?x" and
 * "%time". Returns LOAD_HANDLED when the line was one and is done, LUA_OK
 * to go on compiling the (possibly rewritten) line on top. */
static int magic(lua_State *L)
{
    const char *line = skip_space(lua_tostring(L, -1));
    if (line[0] == '?') {  /* ?x: help "x", the text as typed (so "?t:add" works) */
        const char *what = skip_space(line + 1);
        size_t n = strlen(what);
        while (n > 0 && (what[n - 1] == ' ' || what[n - 1] == '\t')) n--;
        line_save(lua_tostring(L, -1));
        lua_getglobal(L, "flame");
        if (lua_istable(L, -1) && lua_getfield(L, -1, "help") == LUA_TFUNCTION) {
            if (n > 0) lua_pushlstring(L, what, n);
            cli_report(L, cli_docall(L, n > 0, 0));
        }
        lua_settop(L, 0);
        fflush(stdout);
        return LOAD_HANDLED;
    }
    if (strncmp(line, "%time", 5) == 0 && (line[5] == '\0' || line[5] == ' ' || line[5] == '\t')) {
        const char *rest = skip_space(line + 5);
        if (*rest == '\0') {
            line_save(lua_tostring(L, -1));
            time_all = !time_all;
            printf("timing %s\n", time_all ? "on" : "off");
            fflush(stdout);
            lua_settop(L, 0);
            return LOAD_HANDLED;
        }
        time_once = 1;
        lua_pushstring(L, rest);
        lua_replace(L, -2);
    }
    return LUA_OK;
}

/* Leaves exactly the compiled function or the error message on the stack. */
static int loadline(lua_State *L)
{
    int status;
    lua_settop(L, 0);
    quiet = time_once = 0;
    status = pushline(L, 1);
    if (status != LINE_OK) return status == LINE_EOF ? LOAD_EOF : LOAD_INTERRUPTED;
    if (magic(L) == LOAD_HANDLED) return LOAD_HANDLED;
    if ((status = addreturn(L)) != LUA_OK) status = multiline(L);
    if (status == LOAD_INTERRUPTED) {
        lua_settop(L, 0);
        return status;
    }
    lua_remove(L, 1);
    return status;
}

/* A short plain array of scalars (t.shape, t:totable() of a small vector)
 * reads better as {2, 3} than as "table: 0x...": replaces the value at idx
 * with that rendering. Anything else is left to print. */
static void render_short_array(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || lua_getmetatable(L, idx)) {
        if (lua_type(L, idx) == LUA_TTABLE) lua_pop(L, 1);
        return;
    }
    lua_Integer n = luaL_len(L, idx), keys = 0;
    if (n > 32) return;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int t = lua_type(L, -1);
        keys++;
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || (t != LUA_TNUMBER && t != LUA_TBOOLEAN && t != LUA_TSTRING)) {
            lua_pop(L, 1);
            return;
        }
    }
    if (keys != n) return;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '{');
    for (lua_Integer i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, idx, i);
        if (t == LUA_TSTRING) lua_pushfstring(L, "\"%s\"", lua_tostring(L, -1));
        else luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
        luaL_addvalue(&b);
        if (i < n) luaL_addstring(&b, ", ");
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
    lua_replace(L, idx);
}

/* Prints the results through the global print, as lua does, so values use
 * their __tostring (tensors print PyTorch-like) and print can be replaced. */
static void print_results(lua_State *L)
{
    int n = lua_gettop(L);
    if (n > 0) {
        luaL_checkstack(L, LUA_MINSTACK + 8, "too many results to print");
        for (int i = 1; i <= n; i++) render_short_array(L, i);
        luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
        lua_getglobal(L, "print");
        lua_insert(L, 1);
        if (lua_pcall(L, n, 0, 0) != LUA_OK)
            cli_message(cli_progname, lua_pushfstring(L, "error calling 'print' (%s)",
                                                      lua_tostring(L, -1)));
    }
}

/* The terminal's width (of stdout), else $COLUMNS, else 0 (unknown). */
static int terminal_width(void)
{
    struct winsize ws;
    const char *cols = getenv("COLUMNS");
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    if (cols && atoi(cols) > 0) return atoi(cols);
    return 0;
}

/* Tensors print wrapped at the terminal's width, read before each command so
 * a resized window takes effect (flame.set_printoptions still wins). */
static void publish_width(lua_State *L)
{
    int w = terminal_width();
    if (w > 0)
        lua_pushinteger(L, w);
    else
        lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, FLAME_TERM_WIDTH_KEY);
}

/* "Wall time: 1.23 ms", as IPython's %time says it. */
static void print_time(double s)
{
    if (s >= 1)
        printf("Wall time: %.2f s\n", s);
    else if (s >= 1e-3)
        printf("Wall time: %.2f ms\n", s * 1e3);
    else
        printf("Wall time: %.2f us\n", s * 1e6);
}

/* help(x) as in trepl, unless the user already has a global of that name. */
static void install_help(lua_State *L)
{
    if (lua_getglobal(L, "help") == LUA_TNIL) {
        lua_getglobal(L, "flame");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "help");
            lua_setglobal(L, "help");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Between reading a line and running it (compiling, printing the results)
 * a Ctrl-C is dropped rather than killing the session: line_read and
 * cli_docall install their own handlers and put this one back. */
static void ignore_sigint(int sig)
{
    (void)sig;
}

void cli_repl(lua_State *L)
{
    int status;
    struct sigaction sa, oldint;
    int tty = isatty(STDIN_FILENO);
    const char *oldprogname = cli_progname;
    cli_progname = NULL;  /* errors in the REPL are not prefixed */
    line_init(L, tty);
    install_help(L);
    sa.sa_handler = ignore_sigint;
    sa.sa_flags = SA_RESTART;  /* a write of the results goes on */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &oldint);
    while ((status = loadline(L)) != LOAD_EOF) {
        double start = 0;
        int timed;
        if (status == LOAD_INTERRUPTED || status == LOAD_HANDLED) continue;
        timed = time_all || time_once;
        publish_width(L);
        if (timed) start = fl_now_s();
        if (status == LUA_OK) status = cli_docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK) {
            if (!quiet) print_results(L);
        } else {
            cli_report(L, status);
        }
        if (timed) print_time(fl_now_s() - start);
        fflush(stdout);  /* keep results and errors in order when piped */
    }
    sigaction(SIGINT, &oldint, NULL);
    lua_settop(L, 0);
    if (tty) fputs("\n", stdout);  /* leave the shell prompt on its own line */
    fflush(stdout);
    line_close();
    cli_progname = oldprogname;
}
