/* Tensor memory is invisible to Lua's collector: a tensor userdata is a few
 * bytes while its storage may be gigabytes. We count the tensor bytes
 * allocated and collect when they reach as many as were live after the last
 * full collection (at least FL_GC_FLOOR): the same 200% pause Lua uses for
 * its own heap, so memory stays within about twice what is live. A minor
 * collection goes first and is enough when it frees at least half of those
 * bytes (the usual case: temporaries dropped since); otherwise a full one runs,
 * whose cost (proportional to Lua's heap, not to tensor bytes) is amortised
 * over that many bytes. Pacing by incremental steps instead (a step
 * per megabyte) ran a whole cycle every few megabytes once a step outgrew the
 * heap: several per training-step op, 0.2-0.5 ms each with a 0.5 MB heap.
 * When an allocation fails, a full collection frees unreachable tensors before
 * the library retries.
 *
 * Between those, the collector runs in generational mode, with a minor
 * collection per MINOR_BYTES of tensors once Lua's heap has also grown by
 * MINOR_LUA_KB (a minor collection costs in proportion to the objects made
 * since the last, so the second bound keeps its cost amortised over Lua's own
 * allocation, as Lua's pacing does). A small model's forward on the CPU (the
 * diffusion UNet's: 190 tensors, 1.5 MB, 40 KB of Lua objects) then frees its
 * temporaries while their blocks are still in cache, and fl_small_alloc's
 * lists hand them out again; freed only by Lua's own pacing, 20 to 30
 * forwards' tensors piled up between collections and a forward took 1.45 ms
 * instead of 1.15 (docs/performance.md). Young garbage is freed sooner, so
 * memory only shrinks; the full collections above still free what turned old. */
#include "lflame.h"
#include "context.h"

/* Per Lua state: the block of its sentinel userdata (freed with the state). */
typedef struct {
  lua_State *L; /* the main thread */
  fl_context *ctx; /* the context the handlers were set on (NULL: the default, on the opening thread) */
  size_t since_cycle, due; /* tensor bytes allocated since the last full collection, and the next one's due */
  size_t since_minor; /* tensor bytes allocated since the last minor collection */
  int heap_kb; /* Lua's heap at the last minor collection */
  size_t live; /* tensor bytes in use after the last full collection */
} lfl_memory;

#define FL_GC_FLOOR ((size_t)32 << 20)
#define MINOR_BYTES ((size_t)1 << 20)
#define MINOR_LUA_KB 16

static void on_alloc(void *ud, size_t nbytes) {
  lfl_memory *m = ud;
  m->since_cycle += nbytes;
  m->since_minor += nbytes;
  if (m->since_minor >= MINOR_BYTES) {
    int kb = lua_gc(m->L, LUA_GCCOUNT);
    if (kb < m->heap_kb) m->heap_kb = kb; /* the heap shrank (a collection we did not run): growth counts from here */
    if (kb - m->heap_kb >= MINOR_LUA_KB) {
      lua_gc(m->L, LUA_GCSTEP, 0); /* generational: a minor collection (a script may have switched modes: a step) */
      m->since_minor = 0;
      m->heap_kb = lua_gc(m->L, LUA_GCCOUNT);
    }
  }
  if (m->since_cycle < m->due) return;
  /* Due: a minor collection first. Tensors dropped since the last one are young garbage, and a minor collection
   * frees them at a cost in proportion to what is young; a full one walks all of Lua's heap (a bmm of 32 MB
   * outputs, one full collection every other call, was host-bound at 0.62x PyTorch). The full collection runs
   * when the minor one freed less than half of what was allocated since, or when what is in use has doubled
   * since the last full one, so memory stays within about twice what is live. */
  fl_context *cur = fl_context_current();
  size_t before = fl_context_in_use(cur);
  lua_gc(m->L, LUA_GCSTEP, 0);
  size_t after = fl_context_in_use(cur);
  m->since_minor = 0;
  m->heap_kb = lua_gc(m->L, LUA_GCCOUNT);
  size_t freed = before > after ? before - after : 0;
  bool young = freed >= m->since_cycle / 2 && after <= 2 * (m->live > FL_GC_FLOOR ? m->live : FL_GC_FLOOR);
  m->since_cycle = 0;
  if (young) return;
  lua_gc(m->L, LUA_GCCOLLECT); /* (does nothing when called from a finalizer: Lua is collecting already) */
  m->live = fl_context_in_use(cur);
  m->due = m->live > FL_GC_FLOOR ? m->live : FL_GC_FLOOR;
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
    *m = (lfl_memory){lua_tothread(L, -1), fl_context_current(), 0, FL_GC_FLOOR, 0, 0, 0};
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
  lua_gc(L, LUA_GCGEN, 0, 0); /* generational, with the current parameters (see the top) */
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
