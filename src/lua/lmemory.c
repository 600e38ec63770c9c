/* Tensor memory is invisible to Lua's collector: a tensor userdata is a few
 * bytes while its storage may be gigabytes. We tell the collector about every
 * allocation (a step per megabyte allocated, or more: step_bytes) and, when an allocation fails,
 * run a full collection so unreachable tensors free their memory before the
 * library retries.
 *
 * The pacing needs the incremental collector: lua.c and flame-lua start in
 * generational mode, where a step only runs a minor collection and the debt it
 * adds never reaches the major-collection threshold, so any tensor that lives
 * across two allocations turns old and keeps its storage until Lua's own heap
 * doubles. Loading the module switches the collector to incremental. */
#include "lflame.h"
#include "context.h"

/* Per Lua state: the block of its sentinel userdata (freed with the state). */
typedef struct {
  lua_State *L; /* the main thread */
  fl_context *ctx; /* the context the handlers were set on (NULL: the default, on the opening thread) */
  size_t pending, since_cycle;
} lfl_memory;

/* A step (which finishes a cycle: its debt is the tensor bytes) every 8 times the Lua heap's size of tensors,
 * within [1 MB, 16 MB]. A cycle costs time in proportion to the Lua heap (0.35 ms for flame and a small model),
 * so a step every megabyte cost a CPU forward of the diffusion UNet, which allocates 1.6 MB of small tensors, a
 * quarter of its time; the upper bound keeps the tensor memory awaiting collection small when a script's own
 * heap is large (the CPU allocator's per-thread lists, core/small_alloc.c, hold 16 MB). */
static size_t step_bytes(lfl_memory *m) {
  size_t heap8 = (size_t)lua_gc(m->L, LUA_GCCOUNT) << 13, lo = (size_t)1 << 20, hi = (size_t)16 << 20;
  return heap8 < lo ? lo : heap8 > hi ? hi : heap8;
}

static void on_alloc(void *ud, size_t nbytes) {
  lfl_memory *m = ud;
  m->pending += nbytes;
  if (m->pending >= ((size_t)1 << 20) && m->pending >= step_bytes(m)) {
    int kb = (int)(m->pending >> 10);
    m->since_cycle += m->pending;
    m->pending = 0;
    if (lua_gc(m->L, LUA_GCSTEP, kb) == 1) { /* a cycle finished */
      m->since_cycle = 0;
    } else if (m->since_cycle >= ((size_t)64 << 20) && m->since_cycle >= (size_t)lua_gc(m->L, LUA_GCCOUNT) << 10) {
      /* Cycles lag behind tensor allocation (a script switched back to the
       * generational mode): collect fully, at a cost amortised over at least
       * as many tensor bytes as Lua's heap holds. */
      lua_gc(m->L, LUA_GCCOLLECT);
      m->since_cycle = 0;
    }
  }
}

static void on_oom(void *ud, size_t nbytes) {
  lfl_memory *m = ud;
  lua_gc(m->L, LUA_GCCOLLECT);
  lua_gc(m->L, LUA_GCCOLLECT); /* a second pass runs finalizers resurrected by the first */
  fl_empty_cache((fl_device){FL_CUDA, 0});
}

/* When the state closes (after every tensor: the sentinel is made first, and
 * Lua finalizes in reverse order): the callbacks stop using the state, objects
 * of the state that C still holds let go of it (lfl_detach_owned), and cached
 * blocks go back to the system, so a leak checker sees a clean heap and a host
 * that opens and closes states does not grow. */
static int on_close(lua_State *L) {
  lfl_memory *m = lua_touserdata(L, 1);
  fl_context *prev = fl_context_enter(m->ctx);
  fl_ctx_handlers *h = fl_ctx_handlers_cur();
  if (h->obs_ud == m) fl_set_alloc_observer(NULL, NULL);
  if (h->oom_ud == m) fl_set_oom_handler(NULL, NULL);
  fl_context_enter(prev);
  lfl_detach_owned(L);
  lfl_forget_metatables();
  fl_empty_cache(FL_CPU_DEVICE);
  for (int i = 0; i < fl_device_count(FL_CUDA); i++) fl_empty_cache((fl_device){FL_CUDA, i});
  return 0;
}

void lfl_open_memory(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "flame.sentinel") == LUA_TNIL) { /* once per state: the module may be reloaded */
    lua_pop(L, 1);
    lfl_memory *m = lua_newuserdatauv(L, sizeof *m, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    *m = (lfl_memory){lua_tothread(L, -1), fl_context_current(), 0, 0};
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, on_close);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "flame.sentinel");
  }
  lfl_memory *m = lua_touserdata(L, -1);
  lua_pop(L, 1);
  lua_gc(L, LUA_GCINC, 0, 0, 0); /* keep the current parameters */
  fl_context *prev = fl_context_enter(m->ctx);
  fl_set_alloc_observer(on_alloc, m);
  fl_set_oom_handler(on_oom, m);
  fl_context_enter(prev);
}

/* ---- C objects that refer to a state (hooks, Lua-defined autograd functions) ----
 * They live in the autograd graph, which a host may keep after lua_close. Each
 * starts with the lua_State pointer and is listed in a registry set; closing
 * the state sets their pointers to NULL, and they then do nothing. */
#define OWNED "flame.owned"
void lfl_own(lua_State *L, lfl_owned *o) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, OWNED);
  lua_pushboolean(L, 1);
  lua_rawsetp(L, -2, o);
  lua_pop(L, 1);
}

void lfl_disown(lfl_owned *o) {
  if (!o->L) return;
  lua_State *L = o->L;
  if (lua_getfield(L, LUA_REGISTRYINDEX, OWNED) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, o);
  }
  lua_pop(L, 1);
}

void lfl_detach_owned(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, OWNED) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      ((lfl_owned *)lua_touserdata(L, -2))->L = NULL;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}
