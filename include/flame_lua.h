/* FLAME's Lua binding, for hosts that embed a Lua 5.4 interpreter.
 *
 *   lua_State *L = luaL_newstate();
 *   luaL_openlibs(L);
 *   luaL_requiref(L, "flame", luaopen_flame, 1);   (also sets the global flame)
 *
 * then hand tensors made with the C API (flame.h) to Lua and take them back. */
#ifndef FLAME_LUA_H
#define FLAME_LUA_H

#include "flame.h"
#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registry field (an integer) that a host with a terminal sets to its width, as flame-lua's REPL does: tensors
 * then print wrapped at that width unless flame.set_printoptions set a linewidth (PyTorch's 80 otherwise). */
#define FLAME_TERM_WIDTH_KEY "flame.term_width"

/* Opens the module: returns the flame table (the Lua library is built in). */
int luaopen_flame(lua_State *L);
/* Pushes t as a Lua tensor, taking over the caller's reference. */
void flame_lua_push(lua_State *L, fl_tensor *t);
/* The tensor at idx (borrowed: fl_retain it to keep it), or NULL if it is not one. */
fl_tensor *flame_lua_totensor(lua_State *L, int idx);

#ifdef __cplusplus
}
#endif
#endif
