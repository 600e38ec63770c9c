/* Lua's own heap for the states this project opens (flame-lua's, flame_lua_open's): small blocks from per-state
 * free lists, one per 16-byte size class up to SMALL bytes, the rest from malloc.
 *
 * Why: every op from Lua makes a tensor userdata and often a few other objects (the diffusion UNet's CPU forward:
 * about 800 blocks of 30 to 200 bytes), and the collector frees them in bursts. glibc's per-thread cache holds only
 * seven blocks a size, so most of a burst went to its fast bins and back through malloc_consolidate and
 * unlink_chunk: a twentieth of that forward's time. A list per state needs no lock: a state runs on one thread at
 * a time (Lua's rule), and only its allocator touches its lists.
 *
 * Every block of SMALL bytes or less is allocated at its class's size, so that a block freed at size n serves any
 * later request of n's class; a block that grows or shrinks across classes moves. A block of the state made before
 * (flame-lua sets this allocator after luaL_newstate, which also sets the panic and warning functions) may be
 * smaller than its class: malloc_usable_size tells, and such a block goes back to malloc. The lists keep at most CAP bytes;
 * beyond that freed blocks go back to malloc. lfl_heap_free (after lua_close) returns everything. */
#include "lflame.h"
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define STEP 16
#define SMALL 256
#define CLASSES (SMALL / STEP)
#define CAP ((size_t)16 << 20)

typedef struct block {
  struct block *next;
} block;

struct lfl_heap {
  block *head[CLASSES];
  size_t held; /* bytes in the lists */
};

static size_t class_of(size_t n) { return (n - 1) / STEP; } /* n in [1, SMALL] */
static size_t class_size(size_t k) { return (k + 1) * STEP; }

lfl_heap *lfl_heap_new(void) { return calloc(1, sizeof(lfl_heap)); }

void lfl_heap_free(lfl_heap *h) {
  if (!h) return;
  for (int k = 0; k < CLASSES; k++)
    for (block *b = h->head[k], *next; b; b = next) next = b->next, free(b);
  free(h);
}

static void *take(lfl_heap *h, size_t n) {
  size_t k = class_of(n);
  block *b = h->head[k];
  if (!b) return malloc(class_size(k));
  h->head[k] = b->next;
  h->held -= class_size(k);
  return b;
}

static void put(lfl_heap *h, void *p, size_t n) {
  size_t k = class_of(n);
  /* a block made before this allocator took over (lua_setallocf after luaL_newstate) may be smaller than its class */
  if (h->held + class_size(k) > CAP || malloc_usable_size(p) < class_size(k)) {
    free(p);
    return;
  }
  block *b = p;
  b->next = h->head[k];
  h->head[k] = b;
  h->held += class_size(k);
}

void *lfl_heap_realloc(lfl_heap *h, void *ptr, size_t osize, size_t nsize) {
  size_t old = ptr ? osize : 0; /* without ptr, osize says what kind of object Lua makes */
  bool was_small = old > 0 && old <= SMALL;
  if (nsize == 0) {
    if (was_small) put(h, ptr, old);
    else free(ptr);
    return NULL;
  }
  if (nsize <= SMALL) {
    if (was_small && class_of(old) == class_of(nsize)) return ptr;
    void *p = take(h, nsize);
    if (p && ptr) {
      memcpy(p, ptr, old < nsize ? old : nsize);
      if (was_small) put(h, ptr, old);
      else free(ptr);
    }
    return p; /* NULL: Lua collects and tries again, and ptr stays valid */
  }
  if (was_small) {
    void *p = malloc(nsize);
    if (p) {
      memcpy(p, ptr, old);
      put(h, ptr, old);
    }
    return p;
  }
  return realloc(ptr, nsize);
}

void *lfl_heap_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  return lfl_heap_realloc(ud, ptr, osize, nsize);
}
