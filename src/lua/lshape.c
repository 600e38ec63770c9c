/* t.shape: an immutable shape object that prints as {2, 3}, indexes and #s
 * like a table, compares with == (with another shape or a plain table of the
 * same sizes, as torch.Size compares with a tuple), and is accepted wherever
 * a shape is.
 *
 * A shape is an empty proxy table: its sizes live in a plain array that a
 * weak-keyed registry table maps it to, so assignment always reaches
 * __newindex (immutability) while readers of the array stay raw and fast.
 * Being a table (not a userdata) is what lets `s == {2, 3}` reach __eq. */
#include "lflame.h"
#include <string.h>

#define SHAPE_MT "flame.Shape"
#define SHAPE_DATA "flame.shapes" /* proxy -> array, weak keys */

/* The array behind the shape at idx, pushed; returns 0 (pushing nothing) for
 * anything that is not a shape. */
static int push_data(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, SHAPE_MT);
  int is = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!is) return 0;
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, SHAPE_DATA);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  return 1;
}

bool lfl_is_shape(lua_State *L, int idx) {
  if (!push_data(L, idx)) return false;
  lua_pop(L, 1);
  return true;
}

void lfl_push_shape(lua_State *L, int n, const int64_t *dims) {
  lua_newtable(L); /* the proxy */
  lua_getfield(L, LUA_REGISTRYINDEX, SHAPE_DATA);
  lua_pushvalue(L, -2);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) lua_pushinteger(L, dims[i]), lua_rawseti(L, -2, i + 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  luaL_setmetatable(L, SHAPE_MT);
}

int lfl_sizes_at(lua_State *L, int idx, int64_t *out, const char *what) {
  idx = lua_absindex(L, idx);
  int pushed = push_data(L, idx);
  int t = pushed ? lua_gettop(L) : idx;
  luaL_checktype(L, t, LUA_TTABLE);
  lua_Unsigned n = lua_rawlen(L, t);
  if (n > FL_MAX_DIMS) luaL_error(L, "%s: at most %d dims, got %I", what, FL_MAX_DIMS, (lua_Integer)n);
  for (int i = 0; i < (int)n; i++) {
    lua_rawgeti(L, t, i + 1);
    int ok;
    out[i] = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "%s: expected integer sizes, got %s", what, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  if (pushed) lua_pop(L, 1);
  return (int)n;
}

int lfl_sizes(lua_State *L, int first, int64_t *out, const char *what) {
  if (lua_istable(L, first)) {
    lfl_nargs(L, first); /* a table holds the whole shape */
    return lfl_sizes_at(L, first, out, what);
  }
  int n = lua_gettop(L) - first + 1;
  if (n > FL_MAX_DIMS) luaL_error(L, "%s: at most %d dims, got %d", what, FL_MAX_DIMS, n);
  for (int i = 0; i < n; i++) out[i] = luaL_checkinteger(L, first + i);
  return n < 0 ? 0 : n;
}

static int data_of(lua_State *L, int idx) {
  if (!push_data(L, idx)) luaL_typeerror(L, idx, "flame shape");
  return lua_gettop(L);
}

static int s_index(lua_State *L) {
  int d = data_of(L, 1);
  if (lua_isinteger(L, 2)) {
    lua_Integer i = lua_tointeger(L, 2), n = (lua_Integer)lua_rawlen(L, d);
    if (i < 0) i += n + 1; /* s[-1] is the last size */
    if (i < 1 || i > n) return lua_pushnil(L), 1;
    lua_rawgeti(L, d, i);
    return 1;
  }
  if (lua_type(L, 2) == LUA_TSTRING && !strcmp(lua_tostring(L, 2), "numel")) {
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int s_numel(lua_State *L) {
  int d = data_of(L, 1);
  lua_Integer n = 1;
  for (lua_Integer i = 1, k = (lua_Integer)lua_rawlen(L, d); i <= k; i++) {
    lua_rawgeti(L, d, i);
    n *= lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_pushinteger(L, n);
  return 1;
}

static int s_newindex(lua_State *L) {
  return luaL_error(L, "shape: a shape is immutable (copy it with {table.unpack(s)} to change it)");
}

static int s_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, data_of(L, 1)));
  return 1;
}

/* A shape equals another shape or a plain array of the same sizes. */
static int s_eq(lua_State *L) {
  int a = push_data(L, 1) ? lua_gettop(L) : 1;
  int b = push_data(L, 2) ? lua_gettop(L) : 2;
  lua_Unsigned n = lua_rawlen(L, a);
  bool eq = n == lua_rawlen(L, b);
  for (lua_Unsigned i = 1; eq && i <= n; i++) {
    lua_rawgeti(L, a, (lua_Integer)i);
    lua_rawgeti(L, b, (lua_Integer)i);
    eq = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  lua_pushboolean(L, eq);
  return 1;
}

static int s_tostring(lua_State *L) {
  int d = data_of(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '{');
  for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, d); i <= n; i++) {
    lua_rawgeti(L, d, i);
    luaL_addvalue(&b);
    if (i < n) luaL_addstring(&b, ", ");
  }
  luaL_addchar(&b, '}');
  luaL_pushresult(&b);
  return 1;
}

static int s_concat(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  luaL_tolstring(L, 2, NULL);
  lua_concat(L, 2);
  return 1;
}

/* pairs(s) walks the sizes, as it would walk a plain array. */
static int s_next(lua_State *L) {
  lua_settop(L, 2);
  return lua_next(L, 1) ? 2 : (lua_pushnil(L), 1);
}
static int s_pairs(lua_State *L) {
  lua_pushcfunction(L, s_next);
  data_of(L, 1);
  lua_pushnil(L);
  return 3;
}

void lfl_open_shape(lua_State *L) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, SHAPE_DATA);

  luaL_newmetatable(L, SHAPE_MT);
  const luaL_Reg meta[] = {{"__newindex", s_newindex}, {"__len", s_len},       {"__eq", s_eq},
                           {"__tostring", s_tostring}, {"__concat", s_concat}, {"__pairs", s_pairs},
                           {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pushcfunction(L, s_numel);
  lua_pushcclosure(L, s_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, SHAPE_MT);
  lua_setfield(L, -2, "__metatable"); /* setmetatable cannot unlock it */
  lua_pop(L, 1);
}
