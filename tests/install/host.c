/* The smallest host of docs/embedding.md, built against an installed flame (scripts/test-install builds it with
 * find_package(flame) and with pkg-config): it opens Lua, requires flame, wraps its own buffer as a tensor (no
 * copy), runs a script on it, and checks the script's in-place write in its buffer and the returned value. */
#include "flame.h"
#include "flame_lua.h"
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#ifdef HOST_DLPACK /* flame was built with DLPack (flame_HAVE_DLPACK, pkg-config --variable=dlpack flame) */
#include "flame_dlpack.h"
#endif

static const char *script =
    "local flame = require 'flame'\n"
    "return function(img)\n"
    "  img:mul_(2)                    -- in place: the host's buffer\n"
    "  return (img + 1):sum():item()  -- a new tensor, read back as a number\n"
    "end\n";

static int fail(const char *what, const char *msg) {
  fprintf(stderr, "host: %s: %s\n", what, msg);
  return 1;
}

int main(void) {
  float pixels[2][3] = {{1, 2, 3}, {4, 5, 6}}; /* the host's own memory */
  int64_t shape[2] = {2, 3};
  fl_tensor *img;
  if (fl_tensor_from_blob(pixels, 2, shape, NULL, FL_F32, FL_CPU_DEVICE, NULL, NULL, &img) != FL_OK)
    return fail("fl_tensor_from_blob", fl_last_error());
#ifdef HOST_DLPACK
  DLManagedTensor *m;
  if (fl_to_dlpack(img, &m) != FL_OK) return fail("fl_to_dlpack", fl_last_error());
  int same = m->dl_tensor.data == (void *)pixels;
  m->deleter(m);
  if (!same) return fail("fl_to_dlpack", "not the host's memory");
#endif

  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "flame", luaopen_flame, 1);
  lua_pop(L, 1);
  if (luaL_dostring(L, script) != LUA_OK) return fail("loading the script", lua_tostring(L, -1));
  flame_lua_push(L, img); /* Lua holds the tensor now; the buffer stays the host's */
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return fail("running the script", lua_tostring(L, -1));
  double sum = lua_tonumber(L, -1);
  lua_close(L);
  printf("host: sum %g, pixels[1][2] %g\n", sum, pixels[1][2]);
  return sum == 48 && pixels[1][2] == 12 && pixels[0][0] == 2 ? 0 : 1;
}
