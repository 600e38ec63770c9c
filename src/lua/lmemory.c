/* Tensor memory is invisible to Lua's collector: a tensor userdata is a few
 * bytes while its storage may be gigabytes. We tell the collector about every
 * allocation (a step per megabyte allocated) and, when an allocation fails,
 * run a full collection so unreachable tensors free their memory before the
 * library retries.
 *
 * The pacing needs the incremental collector: lua.c and flame-lua start in
 * generational mode, where a step only runs a minor collection and the debt it
 * adds never reaches the major-collection threshold, so any tensor that lives
 * across two allocations turns old and keeps its storage until Lua's own heap
 * doubles. Loading the module switches the collector to incremental. */
#include "lflame.h"

static lua_State *main_L;
static size_t pending, since_cycle;

static void on_alloc(void *ud, size_t nbytes) {
  pending += nbytes;
  if (pending >= ((size_t)1 << 20) && main_L) {
    int kb = (int)(pending >> 10);
    since_cycle += pending;
    pending = 0;
    if (lua_gc(main_L, LUA_GCSTEP, kb) == 1) { /* a cycle finished */
      since_cycle = 0;
    } else if (since_cycle >= ((size_t)64 << 20) && since_cycle >= (size_t)lua_gc(main_L, LUA_GCCOUNT) << 10) {
      /* Cycles lag behind tensor allocation (a script switched back to the
       * generational mode): collect fully, at a cost amortised over at least
       * as many tensor bytes as Lua's heap holds. */
      lua_gc(main_L, LUA_GCCOLLECT);
      since_cycle = 0;
    }
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
  lua_gc(L, LUA_GCINC, 0, 0, 0); /* keep the current parameters */
  fl_set_alloc_observer(on_alloc, NULL);
  fl_set_oom_handler(on_oom, NULL);
}
