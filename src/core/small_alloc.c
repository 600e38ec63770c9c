/* Small blocks (tensor and storage headers, the data of small CPU tensors up to FL_SMALL_MAX) come from per-thread
 * free lists, one per size class: 64-byte steps up to 1 KiB, then 1 KiB steps. A 64-element op from Lua allocates
 * three such blocks and its userdata's finalizer frees them, and glibc's calloc, aligned_alloc and free were a
 * fifth of the instructions of a host's call into Lua on such tensors (bench/host_call.c); the activations of a
 * small CPU model (4 to 64 KiB) paid aligned_alloc, free and the page faults of memory given back to the system
 * on every op. The collector frees tensors in bursts (a full collection per 32 MB of tensors or more:
 * lua/lmemory.c), so the lists keep many blocks; a thread's lists hold at most SMALL_CAP bytes in all and beyond
 * that blocks go back to the system.
 *
 * The lists are the calling thread's own: no lock, nothing shared between engine states on other threads. A block
 * freed on another thread than the one that made it joins that thread's lists (blocks are plain aligned_alloc
 * memory). fl_small_trim() returns the calling thread's blocks to the system (flame.empty_cache("cpu") and closing
 * a state call it); a thread's lists are also returned when the thread exits. Every block is 64-byte aligned. */
#include "internal.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FINE 16 /* classes of 64-byte steps, up to 1 KiB */
#define CLASSES (FINE + (int)(FL_SMALL_MAX / 1024) - 1)
/* As much as one collection frees (the binding collects every 32 MB of tensors at least: lua/lmemory.c); a cap of
 * 4 MiB sent most of a burst back to glibc (a host's call on 64-element tensors then took 16.2k instructions
 * instead of 13.7k). */
#define SMALL_CAP ((size_t)32 << 20)

typedef struct block {
  struct block *next;
} block;

typedef struct {
  block *head[CLASSES];
  size_t bytes; /* held in the lists */
} lists;

static _Thread_local lists *mine;
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void release_all(lists *l) {
  for (int k = 0; k < CLASSES; k++)
    for (block *b = l->head[k], *next; b; b = next) next = b->next, free(b);
  memset(l, 0, sizeof *l);
}

static void on_thread_exit(void *p) {
  release_all(p);
  free(p);
  mine = NULL; /* a block freed later on this thread (another key's destructor) goes back to the system */
}

static void make_key(void) { pthread_key_create(&key, on_thread_exit); }

static size_t class_of(size_t n) {
  if (n <= 1024) return n ? (n - 1) / 64 : 0;
  return FINE - 2 + (n + 1023) / 1024; /* 1025..2048: FINE, ... */
}
static size_t class_size(size_t k) { return k < FINE ? (k + 1) * 64 : (k - FINE + 2) * 1024; }

void *fl_small_alloc(size_t n) {
  size_t k = class_of(n);
  if (k < CLASSES && mine && mine->head[k]) {
    block *b = mine->head[k];
    mine->head[k] = b->next;
    mine->bytes -= class_size(k);
    return b;
  }
  return aligned_alloc(64, k < CLASSES ? class_size(k) : (n + 63) & ~(size_t)63);
}

void *fl_small_calloc(size_t n) {
  void *p = fl_small_alloc(n);
  if (p) memset(p, 0, n);
  return p;
}

void fl_small_free(void *p, size_t n) {
  if (!p) return;
  size_t k = class_of(n);
  if (k >= CLASSES) {
    free(p);
    return;
  }
  if (!mine) {
    pthread_once(&once, make_key);
    lists *l = calloc(1, sizeof *l);
    if (!l || pthread_setspecific(key, l) != 0) {
      free(l);
      free(p);
      return;
    }
    mine = l;
  }
  if (mine->bytes + class_size(k) > SMALL_CAP) {
    free(p);
    return;
  }
  block *b = p;
  b->next = mine->head[k];
  mine->head[k] = b;
  mine->bytes += class_size(k);
}

void fl_small_trim(void) {
  if (mine) release_all(mine);
}
