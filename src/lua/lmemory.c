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

/* When the state closes (after every tensor: the sentinel is made first, and
 * Lua finalizes in reverse order): cached blocks go back to the system, so a
 * leak checker sees a clean heap, and the callbacks stop using the state. */
static int on_close(lua_State *L) {
  if (main_L == L) {
    main_L = NULL;
    fl_set_alloc_observer(NULL, NULL);
    fl_set_oom_handler(NULL, NULL);
  }
  fl_empty_cache(FL_CPU_DEVICE);
  for (int i = 0; i < fl_device_count(FL_CUDA); i++) fl_empty_cache((fl_device){FL_CUDA, i});
  return 0;
}

void lfl_open_memory(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "flame.sentinel") == LUA_TNIL) { /* once per state: the module may be reloaded */
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, on_close);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "flame.sentinel");
  }
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main_L = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_gc(L, LUA_GCINC, 0, 0, 0); /* keep the current parameters */
  fl_set_alloc_observer(on_alloc, NULL);
  fl_set_oom_handler(on_oom, NULL);
}
