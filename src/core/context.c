/* Contexts: what one engine state owns, so that several states (on one thread or several) do not share a
 * generator, a grad mode, an OOM handler or a memory budget. A thread's current context is a thread-local
 * pointer set by whoever enters the state (flame_lua's API calls); NULL means the process default, which keeps
 * the library's behaviour for hosts that never make a context. */
#include "context.h"
#include <stdlib.h>

static fl_context default_ctx = {.rng_seed = 0x853c49e6748fea9bULL, .autocast = FL_NDTYPES};
static _Thread_local fl_context *current;
/* The default context's modes stay per thread, as they were before contexts existed. */
static _Thread_local bool tls_grad_disabled;
static _Thread_local fl_dtype tls_autocast = FL_NDTYPES;
static _Thread_local fl_ctx_handlers tls_handlers;

fl_context *fl_ctx(void) { return current ? current : &default_ctx; }
bool *fl_ctx_grad_disabled(void) { return current ? &current->grad_disabled : &tls_grad_disabled; }
fl_dtype *fl_ctx_autocast(void) { return current ? &current->autocast : &tls_autocast; }
fl_ctx_handlers *fl_ctx_handlers_cur(void) { return current ? &current->handlers : &tls_handlers; }

fl_status fl_context_new(fl_context **out) {
  fl_context *c = calloc(1, sizeof *c);
  if (!c) return fl_error(FL_ENOMEM, "context: out of host memory");
  atomic_init(&c->refs, 1);
  c->rng_seed = default_ctx.rng_seed;
  c->autocast = FL_NDTYPES;
  *out = c;
  return FL_OK;
}

fl_context *fl_context_retain(fl_context *c) {
  if (c && c != &default_ctx) atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
  return c;
}

void fl_context_release(fl_context *c) {
  if (!c || c == &default_ctx) return;
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
    if (current == c) current = NULL;
    fl_context_drop_streams(c); /* a host that kept its streams set: as if unset now */
    free(c);
  }
}

fl_context *fl_context_enter(fl_context *c) {
  fl_context *prev = current;
  current = c == &default_ctx ? NULL : c;
  return prev;
}

fl_context *fl_context_current(void) { return current; }

/* Device slots: the CPU, then CUDA devices 0 .. FL_CTX_DEVICES - 2 (the rest share the last slot's count). */
static int slot_of(fl_device d) {
  if (d.type == FL_CPU) return 0;
  return d.index + 1 < FL_CTX_DEVICES ? d.index + 1 : FL_CTX_DEVICES - 1;
}

fl_status fl_context_set_memory_limit(fl_context *c, fl_device d, size_t bytes) {
  if (!c) c = &default_ctx;
  if (d.index < 0) return fl_error(FL_EDEVICE, "memory limit: bad device ordinal %d", d.index);
  atomic_store(&c->limit[slot_of(d)], bytes);
  return FL_OK;
}

size_t fl_context_memory_used(const fl_context *c, fl_device d) {
  return atomic_load(&(c ? c : &default_ctx)->used[slot_of(d)]);
}

void fl_context_interrupt(fl_context *c) { atomic_store(&(c ? c : &default_ctx)->stop, FL_STOP_INTERRUPT); }

void fl_context_set_deadline(fl_context *c, double seconds) {
  if (!c) c = &default_ctx;
  atomic_store(&c->deadline_ns, seconds > 0 ? fl_now_ns() + (int64_t)(seconds * 1e9) : 0);
}

void fl_context_reset_stop(fl_context *c) {
  if (!c) c = &default_ctx;
  atomic_store(&c->deadline_ns, 0);
  atomic_store(&c->stop, FL_STOP_NONE);
}

int fl_context_stop_reason(fl_context *c) {
  int s = atomic_load_explicit(&c->stop, memory_order_relaxed);
  if (s) return s;
  int64_t dl = atomic_load_explicit(&c->deadline_ns, memory_order_relaxed);
  if (dl && fl_now_ns() >= dl) {
    atomic_store(&c->stop, FL_STOP_BUDGET);
    return FL_STOP_BUDGET;
  }
  return FL_STOP_NONE;
}

fl_status fl_stop_error(int reason) {
  return fl_error(FL_EINTERRUPTED, reason == FL_STOP_BUDGET ? "budget exceeded" : "interrupted");
}

fl_status fl_context_check(fl_context *c) {
  int r = fl_context_stop_reason(c ? c : &default_ctx);
  return r ? fl_stop_error(r) : FL_OK;
}

/* ---- the host's streams ---- */
/* A stream names a CUDA device slot; devices past the context's slots cannot have one. */
static fl_status stream_slot(const char *op, fl_device d, const fl_backend **b, int *k) {
  char dn[32];
  fl_device_name(d, dn, sizeof dn);
  if (d.type != FL_CUDA) return fl_error(FL_EDEVICE, "%s: a stream is for a CUDA device, not %s", op, dn);
  int n = fl_device_count(FL_CUDA);
  if (d.index < 0 || d.index >= n) return fl_error(FL_EDEVICE, "%s: %s does not exist (%d cuda device(s))", op, dn, n);
  if (d.index + 1 >= FL_CTX_DEVICES)
    return fl_error(FL_EDEVICE, "%s: %s is past the %d CUDA devices a context gives streams to", op, dn,
                    FL_CTX_DEVICES - 2);
  *b = fl_backend_for(FL_CUDA);
  if (!*b || !(*b)->stream_attach) return fl_error(FL_EUNSUPPORTED, "%s: the cuda backend takes no host stream", op);
  *k = slot_of(d);
  return FL_OK;
}

/* Attach the new stream first (it waits for what the old one queued), then detach the old (which waits for
 * its work): the switch is ordered without the caller doing anything. */
fl_status fl_context_set_stream(fl_context *c, fl_device d, void *stream) {
  if (!c) c = &default_ctx;
  const fl_backend *b = NULL;
  int k = 0;
  FL_TRY(stream_slot("set_stream", d, &b, &k));
  if (c->stream[k] == stream) return FL_OK;
  void *old = c->stream_handle[k], *h = NULL;
  if (stream) FL_TRY(b->stream_attach(d, stream, old, &h));
  c->stream[k] = stream;
  c->stream_handle[k] = h;
  return old ? b->stream_detach(d, old) : FL_OK;
}

void *fl_context_stream(const fl_context *c, fl_device d) {
  if (!c) c = &default_ctx;
  return d.type == FL_CUDA && d.index >= 0 && d.index + 1 < FL_CTX_DEVICES ? c->stream[slot_of(d)] : NULL;
}

void *fl_ctx_stream_handle(int cuda_index) {
  const fl_context *c = current ? current : &default_ctx;
  return cuda_index + 1 < FL_CTX_DEVICES ? c->stream_handle[cuda_index + 1] : NULL;
}

void fl_context_drop_streams(fl_context *c) {
  for (int k = 1; k < FL_CTX_DEVICES; k++)
    if (c->stream[k]) (void)fl_context_set_stream(c, (fl_device){FL_CUDA, k - 1}, NULL);
}

fl_status fl_tensor_record_stream(const fl_tensor *t, void *stream) {
  fl_storage *s = t->storage;
  if (s->device.type != FL_CUDA || s->external || !s->data) return FL_OK; /* nothing flame will reuse */
  const fl_backend *b = fl_backend_for(FL_CUDA);
  if (!b || !b->record_stream) return FL_OK;
  return b->record_stream(s->device, s->data, stream);
}

/* ---- charging storages ---- */
fl_status fl_context_charge(fl_device d, size_t nbytes, fl_context **charged) {
  fl_context *c = fl_ctx();
  int k = slot_of(d);
  *charged = NULL;
  size_t lim = atomic_load_explicit(&c->limit[k], memory_order_relaxed);
  if (lim && atomic_load(&c->used[k]) + nbytes > lim) {
    fl_ctx_handlers *h = fl_ctx_handlers_cur();
    if (h->oom_fn) h->oom_fn(h->oom_ud, nbytes); /* unreachable tensors may free enough */
    size_t used = atomic_load(&c->used[k]);
    if (used + nbytes > lim) {
      char dn[32];
      fl_device_name(d, dn, sizeof dn);
      return fl_error(FL_ENOMEM, "memory limit of %zu bytes on %s reached: allocating %zu bytes with %zu in use",
                      lim, dn, nbytes, used);
    }
  }
  atomic_fetch_add(&c->used[k], nbytes);
  *charged = fl_context_retain(c);
  return FL_OK;
}

void fl_context_uncharge(fl_context *c, fl_device d, size_t nbytes) {
  if (!c) return;
  atomic_fetch_sub(&c->used[slot_of(d)], nbytes);
  fl_context_release(c);
}

size_t fl_context_in_use(const fl_context *c) {
  if (!c) c = &default_ctx;
  size_t n = 0;
  for (int k = 0; k < FL_CTX_DEVICES; k++) n += atomic_load_explicit(&c->used[k], memory_order_relaxed);
  return n;
}
