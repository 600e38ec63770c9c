/* Tensor memory is invisible to Lua's collector: a tensor userdata is a few
 * bytes while its storage may be gigabytes. We tell the collector about every
 * allocation (a step per megabyte allocated) and, when an allocation fails,
 * run a full collection so unreachable tensors free their memory before the
 * library retries. */
#include "lflame.h"

static lua_State *main_L;
static size_t pending;

static void on_alloc(void *ud, size_t nbytes) {
  pending += nbytes;
  if (pending >= ((size_t)1 << 20) && main_L) {
    int kb = (int)(pending >> 10);
    pending = 0;
    lua_gc(main_L, LUA_GCSTEP, kb);
  }
}

static void on_oom(void *ud, size_t nbytes) {
  if (!main_L) return;
  lua_gc(main_L, LUA_GCCOLLECT);
  lua_gc(main_L, LUA_GCCOLLECT); /* a second pass runs finalizers resurrected by the first */
  fl_empty_cache((fl_device){FL_CUDA, 0});
}

void lfl_open_memory(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main_L = lua_tothread(L, -1);
  lua_pop(L, 1);
  fl_set_alloc_observer(on_alloc, NULL);
  fl_set_oom_handler(on_oom, NULL);
}
