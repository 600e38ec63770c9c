/* Arguments and options of every Lua-facing function, read one way: options
 * tables raw (an __index must not run code in the middle of an op), unknown
 * option keys and unread extra arguments as errors that name the function. */
#include "lflame.h"
#include <string.h>

/* Finds the function value at the top of the stack in table t; pushes nothing. */
static const char *key_of(lua_State *L, int t) {
  const char *name = NULL;
  lua_pushnil(L);
  while (!name && lua_next(L, t)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, -3)) name = lua_tostring(L, -2);
    lua_pop(L, 1);
  }
  if (name) lua_pop(L, 1);
  return name; /* anchored by t, which the registry keeps */
}

const char *lfl_fname(lua_State *L, int *is_method) {
  lua_Debug ar;
  if (is_method) *is_method = 0;
  if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "nf", &ar)) return "flame";
  if (ar.name) {
    lua_pop(L, 1);
    if (is_method) *is_method = !strcmp(ar.namewhat, "method");
    return ar.name;
  }
  /* a tail call or a pcall: look the function up where flame keeps it */
  const char *name = NULL;
  static const char *const tables[] = {"flame.methods", "flame.module"};
  for (int i = 0; i < 2 && !name; i++) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, tables[i]) == LUA_TTABLE) {
      lua_pushvalue(L, -2);
      name = key_of(L, lua_gettop(L) - 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* called from C by a wrapper (Tensor:backward runs behind one): its name */
  if (!name && lua_getstack(L, 1, &ar) && lua_getinfo(L, "nS", &ar) && !strcmp(ar.what, "C") && ar.name) {
    if (is_method) *is_method = !strcmp(ar.namewhat, "method");
    name = ar.name;
  }
  return name ? name : "flame";
}

void lfl_argextra(lua_State *L, int pos) {
  int method;
  const char *fn = lfl_fname(L, &method);
  luaL_error(L, "%s: unexpected argument #%d (a %s that nothing reads)", fn, method ? pos - 1 : pos, luaL_typename(L, pos));
}

void lfl_nargs(lua_State *L, int max) {
  int top = lua_gettop(L), i = max + 1;
  while (i <= top && lua_isnil(L, i)) i++; /* nils read as absent, as everywhere in Lua */
  if (i <= top) lfl_argextra(L, i);
}

/* Levenshtein distance, for suggestions (keys are short). */
static int distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 31 || lb > 31) return 99;
  int row[32];
  for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      diag = up;
      row[j] = best;
    }
  }
  return row[lb];
}

static void unknown_key(lua_State *L, const char *key, const char *const *keys) {
  const char *best = NULL;
  int bd = 3; /* suggest only a near miss: at most 2 edits */
  for (int i = 0; keys[i]; i++) {
    int d = distance(key, keys[i]);
    if (d < bd) bd = d, best = keys[i];
  }
  const char *fn = lfl_fname(L, NULL);
  if (best) luaL_error(L, "%s: unknown option '%s' (did you mean '%s'?)", fn, key, best);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; keys[i]; i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addstring(&b, keys[i]);
  }
  luaL_pushresult(&b);
  luaL_error(L, "%s: unknown option '%s' (options: %s)", fn, key, lua_tostring(L, -1));
}

void lfl_check_keys(lua_State *L, int idx, const char *const *keys) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: options are named (key = value), got a %s key", lfl_fname(L, NULL), luaL_typename(L, -1));
    const char *k = lua_tostring(L, -1);
    int i = 0;
    while (keys[i] && strcmp(keys[i], k)) i++;
    if (!keys[i]) unknown_key(L, k, keys);
  }
}

int lfl_rawfield(lua_State *L, int idx, const char *key) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, key);
  return lua_rawget(L, idx);
}

int lfl_options(lua_State *L, int idx, const char *const *keys) {
  if (idx == 0 || lua_isnoneornil(L, idx)) return 0;
  if (!lua_istable(L, idx)) luaL_error(L, "%s: expected an options table, got a %s", lfl_fname(L, NULL), luaL_typename(L, idx));
  lfl_check_keys(L, idx, keys);
  return lua_absindex(L, idx);
}

/* ---- registration: each function with the most arguments it reads ---- */
static int checked(lua_State *L) {
  if (lua_gettop(L) > (int)lua_tointeger(L, lua_upvalueindex(2))) lfl_nargs(L, (int)lua_tointeger(L, lua_upvalueindex(2)));
  return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

void lfl_setfuncs(lua_State *L, const lfl_reg *r) {
  for (; r->name; r++) {
    if (r->nargs != LFL_VARARGS) { /* a plain function (no upvalues of its own) behind the count check */
      lua_pushcfunction(L, r->fn);
      lua_pushinteger(L, r->nargs == LFL_NOARGS ? 0 : r->nargs);
      lua_pushcclosure(L, checked, 2);
    } else {
      lua_pushcfunction(L, r->fn);
    }
    lua_setfield(L, -2, r->name);
  }
}
