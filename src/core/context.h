/* The context's fields (src/core/context.c): read by the core's services that a state owns. Host C only. */
#ifndef FL_CONTEXT_H
#define FL_CONTEXT_H
#include "internal.h"
#include <stdatomic.h>

#define FL_CTX_DEVICES 17 /* the CPU and 16 CUDA devices */
enum { FL_STOP_NONE, FL_STOP_INTERRUPT, FL_STOP_BUDGET };

/* The host's OOM handler and allocation observer (fl_set_oom_handler, fl_set_alloc_observer). */
typedef struct {
  fl_oom_handler oom_fn;
  void *oom_ud;
  fl_alloc_observer obs_fn;
  void *obs_ud;
} fl_ctx_handlers;

struct fl_context {
  atomic_int refs;               /* the owner's, and one per charged storage */
  uint64_t rng_seed, rng_offset; /* the Philox generator (random.c) */
  bool grad_disabled;
  fl_dtype autocast; /* FL_NDTYPES: off */
  fl_ctx_handlers handlers;
  _Atomic size_t limit[FL_CTX_DEVICES]; /* 0: none */
  _Atomic size_t used[FL_CTX_DEVICES];
  atomic_int stop;               /* FL_STOP_*: set by fl_context_interrupt or a passed deadline */
  _Atomic int64_t deadline_ns;   /* CLOCK_MONOTONIC; 0: none */
  /* The host's streams (fl_context_set_stream), per device slot: the stream, and the backend's handle for it
   * (both NULL: the backend's own stream). */
  void *stream[FL_CTX_DEVICES];
  void *stream_handle[FL_CTX_DEVICES];
};

/* The calling thread's context (the default one when none was entered). */
fl_context *fl_ctx(void);
/* The grad and autocast modes of the current context (per thread for the default one). */
bool *fl_ctx_grad_disabled(void);
fl_dtype *fl_ctx_autocast(void);
/* The handlers of the current context; per thread for the default one, so that hosts that drive plain Lua
 * states on several threads (each loading flame on its thread) run each state's collector on its own thread. */
fl_ctx_handlers *fl_ctx_handlers_cur(void);
fl_context *fl_context_retain(fl_context *c);
/* FL_STOP_NONE, or why c must stop (a passed deadline sets the flag). Any thread. */
int fl_context_stop_reason(fl_context *c);
fl_status fl_stop_error(int reason);
/* Charges nbytes on d to the current context (failing past its limit); *charged is what to uncharge. */
fl_status fl_context_charge(fl_device d, size_t nbytes, fl_context **charged);
void fl_context_uncharge(fl_context *c, fl_device d, size_t nbytes);
/* Unsets every host stream of c (flame_lua_close, and a context's last release). */
void fl_context_drop_streams(fl_context *c);
/* The tensor bytes charged to c (NULL: the default context) on all devices. */
size_t fl_context_in_use(const fl_context *c);
#endif
