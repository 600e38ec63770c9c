/* safetensors checkpoints (flame.save, flame.load) and flame.load_npy / flame.save_npy: the C functions,
 * registered into the module table. The formats live in src/io; this file only moves Lua values. */
#include "lflame.h"
#include "../io/io.h" /* fl_show_name: names in messages as the C side prints them */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#define LFL_STFILE "flame.safetensors_file"

/* The open file behind flame.load, owned by a userdata so that a Lua error mid-load closes it. */
static fl_safetensors **file_box(lua_State *L) {
  fl_safetensors **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, LFL_STFILE);
  return box;
}

static int file_gc(lua_State *L) {
  fl_safetensors **box = luaL_checkudata(L, 1, LFL_STFILE);
  fl_safetensors_close(*box);
  *box = NULL;
  return 0;
}

/* A value for messages: a string quoted and cut, anything else by its type. */
static const char *describe(lua_State *L, int idx, char *buf, size_t n) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    fl_name_str nm = fl_show_name(s, len);
    snprintf(buf, n, "%s", nm.s);
  } else if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    snprintf(buf, n, "%s (a number)", lua_tostring(L, -1));
    lua_pop(L, 1);
  } else snprintf(buf, n, "of type %s", luaL_typename(L, idx));
  return buf;
}

/* "a number", "nil", ... */
static const char *a_type(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return "nil";
  case LUA_TBOOLEAN: return "a boolean";
  case LUA_TNUMBER: return "a number";
  case LUA_TSTRING: return "a string";
  case LUA_TTABLE: return "a table";
  case LUA_TFUNCTION: return "a function";
  case LUA_TTHREAD: return "a coroutine";
  default: return "a userdata";
  }
}

static size_t table_len(lua_State *L, int idx) {
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

/* flame.save(path, {name = tensor, ...}, metadata?): every key a string, every value a tensor (checked before
 * anything is written, so a bad entry leaves the file untouched); metadata string -> string. */
static int l_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  char kb[100];
  size_t n = table_len(L, 2), nm = lua_istable(L, 3) ? table_len(L, 3) : 0;
  /* Lua-owned arrays: a raise below frees them with the stack */
  fl_st_entry *e = lua_newuserdatauv(L, (n ? n : 1) * sizeof *e, 0);
  fl_st_meta *m = lua_newuserdatauv(L, (nm ? nm : 1) * sizeof *m, 0);
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      return luaL_error(L, "save: %s: key %s is not a string (tensor names are strings)", path,
                        describe(L, -2, kb, sizeof kb));
    fl_tensor **box = lfl_box(L, -1);
    if (!box || !*box)
      return luaL_error(L, "save: %s: value of %s is %s, not a tensor", path, describe(L, -2, kb, sizeof kb),
                        box ? "a released tensor" : a_type(L, -1));
    if (i < n) { /* the table cannot grow during lua_next without a metamethod: raw traversal */
      e[i].name.s = lua_tolstring(L, -2, &e[i].name.len);
      e[i].tensor = *box;
    }
    i++;
    lua_pop(L, 1);
  }
  i = 0;
  if (nm) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        return luaL_error(L, "save: %s: metadata key %s is not a string", path, describe(L, -2, kb, sizeof kb));
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "save: %s: metadata value of %s is %s, not a string (safetensors metadata holds strings)",
                          path, describe(L, -2, kb, sizeof kb), a_type(L, -1));
      if (i < nm) {
        m[i].key.s = lua_tolstring(L, -2, &m[i].key.len);
        m[i].value.s = lua_tolstring(L, -1, &m[i].value.len);
      }
      i++;
      lua_pop(L, 1);
    }
  }
  LFL_CHECK(L, fl_save_safetensors(path, n, e, nm, m));
  return 0;
}

/* flame.load(path, {device}) -> {name = tensor, ...}, {key = value, ...} */
static int l_load(lua_State *L) {
  static const char *const keys[] = {"device", NULL};
  const char *path = luaL_checkstring(L, 1);
  fl_opts o = lfl_opts_keys(L, 2, fl_default_opts(), keys);
  fl_safetensors **box = file_box(L);
  LFL_CHECK(L, fl_safetensors_open(path, box));
  size_t n = fl_safetensors_count(*box), nm = fl_safetensors_metadata_count(*box);
  lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
  for (size_t i = 0; i < n; i++) {
    fl_st_info info;
    fl_tensor *t;
    fl_safetensors_info(*box, i, &info);
    lua_pushlstring(L, info.name.s, info.name.len);
    LFL_CHECK(L, fl_safetensors_load(*box, i, o.device, &t));
    lfl_push(L, t);
    lua_rawset(L, -3);
  }
  lua_createtable(L, 0, nm > INT_MAX ? INT_MAX : (int)nm);
  for (size_t i = 0; i < nm; i++) {
    fl_st_str k, v;
    fl_safetensors_metadata(*box, i, &k, &v);
    lua_pushlstring(L, k.s, k.len);
    lua_pushlstring(L, v.s, v.len);
    lua_rawset(L, -3);
  }
  fl_safetensors_close(*box); /* now, not at the next collection: the mapping holds the whole file */
  *box = NULL;
  return 2;
}

/* flame.load_npy(path, {device}) -> tensor */
static int l_load_npy(lua_State *L) {
  static const char *const keys[] = {"device", NULL};
  const char *path = luaL_checkstring(L, 1);
  fl_opts o = lfl_opts_keys(L, 2, fl_default_opts(), keys);
  fl_tensor *t;
  LFL_CHECK(L, fl_load_npy(path, o.device, &t));
  lfl_push(L, t);
  return 1;
}

/* flame.save_npy(path, tensor) */
static int l_save_npy(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  LFL_CHECK(L, fl_save_npy(path, lfl_check(L, 2)));
  return 0;
}

static const lfl_reg functions[] = {
    {"save", l_save, 3},
    {"load", l_load, 2},
    {"load_npy", l_load_npy, 2},
    {"save_npy", l_save_npy, 2},
    {NULL, NULL, 0},
};

/* Fills the flame module table at -1. */
void lfl_open_io(lua_State *L) {
  if (luaL_newmetatable(L, LFL_STFILE)) {
    lua_pushcfunction(L, file_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lfl_setfuncs(L, functions);
}
