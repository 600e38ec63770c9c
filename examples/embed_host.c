/* A host program embedding FLAME-Lua: it owns the interpreter, makes a tensor
 * with the C API, lets a Lua script (a "model" a user could edit without
 * recompiling the host) transform it with autograd, and reads the result and
 * the gradient back in C. Build: the CMake target embed_host; run: embed_host. */
#include "flame.h"
#include "flame_lua.h"
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>

static const char *script =
    "local flame = require 'flame'\n"
    "function model(x)\n"
    "  x.requires_grad = true\n"
    "  local y = (x * x):sum()        -- y = sum(x^2), dy/dx = 2x\n"
    "  y:backward()\n"
    "  return y, x.grad\n"
    "end\n";

static int fail(lua_State *L, const char *what) {
  fprintf(stderr, "embed_host: %s: %s\n", what, lua_tostring(L, -1));
  lua_close(L);
  return 1;
}

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "flame", luaopen_flame, 1);
  lua_pop(L, 1);
  if (luaL_dostring(L, script) != LUA_OK) return fail(L, "loading the script");

  double data[3] = {1, 2, 3};
  int64_t shape[1] = {3};
  fl_tensor *x;
  if (fl_from_doubles(data, 1, shape, fl_default_opts(), &x) != FL_OK) {
    fprintf(stderr, "embed_host: %s\n", fl_last_error());
    lua_close(L);
    return 1;
  }
  lua_getglobal(L, "model");
  flame_lua_push(L, x); /* Lua owns x now */
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) return fail(L, "running model");

  double y, grad[3];
  fl_tensor *ty = flame_lua_totensor(L, -2), *tg = flame_lua_totensor(L, -1);
  if (!ty || !tg || fl_item(ty, &y) != FL_OK || fl_to_doubles(tg, grad) != FL_OK) {
    fprintf(stderr, "embed_host: bad results: %s\n", fl_last_error());
    lua_close(L);
    return 1;
  }
  printf("y = %g, dy/dx = [%g, %g, %g]\n", y, grad[0], grad[1], grad[2]);
  int ok = y == 14 && grad[0] == 2 && grad[1] == 4 && grad[2] == 6;
  lua_close(L); /* frees every tensor the script still held */
  return ok ? 0 : 1;
}
