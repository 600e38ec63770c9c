/* The CUDA backend's communicators: NCCL, loaded with dlopen on first use (a process that never calls
 * flame.distributed never loads it), in non-blocking mode so that init and every call can be bounded in time.
 *
 * Ordering without host syncs: each communicator has its own stream. A collective records an event on the
 * current stream (fc_stream: flame's own for the device, or the host's stream of the calling state), makes the
 * comm stream wait for it, runs there, records `done` and makes the current stream wait for that. So the
 * collective sees every write queued before it and every later op sees its result; the caching allocator, which
 * reuses blocks in the order of the stream they were allocated on, stays correct (a block freed after the
 * collective is reused by work queued after that stream's wait). An async collective (fl_all_reduce_async) skips
 * that last wait, so the work queued next runs beside it; its tensors are recorded on the comm stream instead
 * (the allocator's record-stream), and cuda_comm_join makes the current stream wait for `done` when the caller
 * needs the result.
 *
 * A failing or silent peer: a watchdog thread per communicator polls ncclCommGetAsyncError and the age of the
 * newest collective still in flight; on an error, or when nothing completed within the timeout, it aborts the
 * communicator (ncclCommAbort makes the stuck kernels return, so no host sync hangs) and marks it failed; the next
 * collective or wait reports it as an error. */
#include "context.cuh"
#include "nccl.cuh"
#include "allocator.cuh"

#ifdef FLAME_HAVE_NCCL
#include "dynlib.cuh"
#include <nccl.h>
#include <pthread.h>
#include <stdio.h>
#include <atomic>
#include <new>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace {

#define FC_NCCL_FUNCS(X)                                                                                         \
  X(ncclGetUniqueId) X(ncclCommInitRankConfig) X(ncclCommDestroy) X(ncclCommAbort) X(ncclCommGetAsyncError)     \
  X(ncclGetErrorString) X(ncclGetLastError) X(ncclAllReduce) X(ncclBroadcast) X(ncclAllGather)                \
  X(ncclReduceScatter) X(ncclGetVersion)

struct nccl_lib {
#define FC_NCCL_PTR(f) decltype(&::f) f;
  FC_NCCL_FUNCS(FC_NCCL_PTR)
#undef FC_NCCL_PTR
};

nccl_lib lib;
bool lib_ok;
pthread_once_t lib_once = PTHREAD_ONCE_INIT;

char lib_err[256];

void load_lib(void) {
  static const char *const names[] = {"libnccl.so.2", "libnccl.so", NULL};
  void *h = fc_dlopen(names, lib_err, sizeof lib_err);
  if (!h) return;
  bool all = true;
#define FC_NCCL_SYM(f) all = all && fc_dlsym(h, #f, lib.f);
  FC_NCCL_FUNCS(FC_NCCL_SYM)
#undef FC_NCCL_SYM
  lib_ok = all;
  if (!lib_ok) {
    snprintf(lib_err, sizeof lib_err, "libnccl.so.2 lacks functions flame needs (NCCL older than 2.19?)");
    dlclose(h);
  }
}

fl_status need_lib(const char *op) {
  pthread_once(&lib_once, load_lib);
  if (lib_ok) return FL_OK;
  return fl_error(FL_EUNSUPPORTED, "%s: cannot load NCCL: %s", op, lib_err[0] ? lib_err : "not found");
}

double timeout_s(void) {
  const char *e = getenv("FLAME_DIST_TIMEOUT");
  double t = e ? atof(e) : 0;
  return t > 0 ? t : 600;
}

struct comm {
  int device;
  ncclComm_t nc;
  cudaStream_t stream;
  cudaEvent_t ready, done;
  double timeout;
  std::atomic<double> last_enqueue; /* when the newest collective was queued (0: none in flight) */
  std::atomic<bool> failed, stop, aborting;
  char why[256];   /* the watchdog's reason, written before `failed` is set */
  pthread_t watchdog;
  bool has_watchdog;
};

/* Aborts the communicator once, from whichever thread sees the failure first, keeping the reason. */
void abort_once(comm *c, const char *why) {
  bool expected = false;
  if (!c->aborting.compare_exchange_strong(expected, true)) return;
  snprintf(c->why, sizeof c->why, "%s", why);
  lib.ncclCommAbort(c->nc);
  c->failed.store(true);
}

fl_status nccl_error(ncclResult_t r, comm *c, const char *what) {
  const char *last = c && c->nc ? lib.ncclGetLastError(c->nc) : NULL;
  return fl_error(FL_EBACKEND, "NCCL %s failed: %s%s%s", what, lib.ncclGetErrorString(r), last && *last ? ": " : "",
                  last ? last : "");
}

/* A non-blocking call's result: wait (bounded) while the communicator says "in progress". */
fl_status settle(comm *c, ncclResult_t r, const char *what) {
  double deadline = fl_now_s() + c->timeout;
  while (r == ncclInProgress) {
    if (fl_now_s() > deadline) {
      abort_once(c, "no progress (a peer is missing or stuck)");
      return fl_error(FL_EBACKEND, "NCCL %s: no progress in %.0f s (a peer is missing or stuck); communicator aborted",
                      what, c->timeout);
    }
    usleep(200);
    if (lib.ncclCommGetAsyncError(c->nc, &r) != ncclSuccess) break;
  }
  return r == ncclSuccess ? FL_OK : nccl_error(r, c, what);
}

void *watch(void *arg) {
  comm *c = (comm *)arg;
  while (!c->stop.load()) {
    usleep(100000);
    if (c->failed.load() || !c->nc) continue;
    ncclResult_t r = ncclSuccess;
    lib.ncclCommGetAsyncError(c->nc, &r);
    double t0 = c->last_enqueue.load();
    bool stuck = false;
    if (r == ncclSuccess && t0 > 0 && fl_now_s() - t0 > c->timeout) {
      cudaError_t q = cudaEventQuery(c->done);
      if (q == cudaSuccess) c->last_enqueue.store(0.0);
      else if (q == cudaErrorNotReady) stuck = true;
      else (void)cudaGetLastError();
    }
    if ((r != ncclSuccess && r != ncclInProgress) || stuck) {
      char why[256];
      if (stuck) snprintf(why, sizeof why, "no collective completed in %.0f s (a peer is gone or stuck)", c->timeout);
      else snprintf(why, sizeof why, "a peer failed: %s", lib.ncclGetErrorString(r));
      abort_once(c, why);
    }
  }
  return NULL;
}

fl_status check_alive(comm *c, const char *op) {
  if (c->failed.load())
    return fl_error(FL_EBACKEND, "%s: the communicator on cuda:%d was aborted: %s", op, c->device,
                    c->why[0] ? c->why : "a peer failed");
  return FL_OK;
}

ncclDataType_t nccl_dtype(fl_dtype dt) {
  switch (dt) {
    case FL_F32: return ncclFloat32;
    case FL_F64: return ncclFloat64;
    case FL_F16: return ncclFloat16;
    case FL_BF16: return ncclBfloat16;
    case FL_I32: return ncclInt32;
    case FL_I64: return ncclInt64;
    default: return ncclUint8; /* bool: moved as bytes */
  }
}

ncclRedOp_t nccl_op(fl_red_op op) {
  switch (op) {
    case FL_RED_AVG: return ncclAvg;
    case FL_RED_MAX: return ncclMax;
    case FL_RED_MIN: return ncclMin;
    default: return ncclSum;
  }
}

} // namespace

fl_status cuda_comm_unique_id(fl_device dev, void *id, size_t cap, size_t *n) {
  (void)dev;
  FL_TRY(need_lib("distributed.init"));
  if (cap < sizeof(ncclUniqueId)) return fl_error(FL_EINVAL, "distributed.init: id buffer too small");
  ncclUniqueId u;
  ncclResult_t r = lib.ncclGetUniqueId(&u);
  if (r != ncclSuccess) return nccl_error(r, NULL, "ncclGetUniqueId");
  memcpy(id, &u, sizeof u);
  *n = sizeof u;
  return FL_OK;
}

void cuda_comm_destroy(void *p, bool abort) {
  comm *c = (comm *)p;
  if (!c) return;
  if (c->has_watchdog) {
    c->stop.store(true);
    pthread_join(c->watchdog, NULL);
  }
  if (c->nc && !c->aborting.load()) {
    cudaSetDevice(c->device);
    if (abort) lib.ncclCommAbort(c->nc);
    else {
      cudaStreamSynchronize(c->stream);
      lib.ncclCommDestroy(c->nc);
    }
  }
  if (c->ready) cudaEventDestroy(c->ready);
  if (c->done) cudaEventDestroy(c->done);
  if (c->stream) {
    /* blocks recorded on the stream by async collectives would record events on it when freed */
    cudaStreamSynchronize(c->stream);
    if (fc_context *ctx = fc_context_peek(c->device)) fc_allocator_forget_stream(ctx, c->stream);
    cudaStreamDestroy(c->stream);
  }
  (void)cudaGetLastError();
  delete c;
}

fl_status cuda_comm_init(fl_device dev, const void *id, size_t n, int rank, int world, void **out) {
  FL_TRY(need_lib("distributed.init"));
  if (n != sizeof(ncclUniqueId)) return fl_error(FL_EINVAL, "distributed.init: the NCCL id has %zu bytes, not %zu", n,
                                                 sizeof(ncclUniqueId));
  fc_context *ctx;
  FL_TRY(fc_context_get(dev.index, &ctx)); /* makes the device current */
  comm *c = new (std::nothrow) comm();
  if (!c) return fl_error(FL_ENOMEM, "distributed.init: out of host memory");
  c->device = dev.index, c->timeout = timeout_s();
  fl_status st = FL_OK;
  /* High priority: a collective's blocks are scheduled ahead of the compute kernels queued beside it (async
   * collectives), so a rank's NCCL kernel does not wait for SMs while its peer's spins */
  int least = 0, greatest = 0;
  cudaError_t e = cudaDeviceGetStreamPriorityRange(&least, &greatest);
  if (e == cudaSuccess) e = cudaStreamCreateWithPriority(&c->stream, cudaStreamNonBlocking, greatest);
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming);
  if (e != cudaSuccess) st = fc_cuda_error(e, "distributed.init: creating the communicator's stream");
  if (st == FL_OK) {
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0; /* init and calls return at once; settle() bounds the wait */
    st = settle(c, lib.ncclCommInitRankConfig(&c->nc, world, u, rank, &cfg), "init");
  }
  if (st == FL_OK) {
    c->has_watchdog = pthread_create(&c->watchdog, NULL, watch, c) == 0;
    *out = c;
    return FL_OK;
  }
  cuda_comm_destroy(c, true);
  return st;
}

/* An async collective's tensors are in use on the comm stream until it ends, while the current stream goes on:
 * recorded there, so the caching allocator does not hand their blocks out before (fc_record_stream). */
static fl_status record_on(fc_context *ctx, comm *c, const fl_collective *k) {
  const fl_tensor *ts[2] = {k->send, k->recv};
  for (const fl_tensor *t : ts)
    if (t && !t->storage->external && t->storage->data) FL_TRY(fc_record_stream(ctx, t->storage->data, c->stream));
  return FL_OK;
}

fl_status cuda_collective(void *p, const fl_collective *k) {
  comm *c = (comm *)p;
  static const char *const names[] = {"all_reduce", "broadcast", "all_gather", "reduce_scatter"};
  FL_TRY(check_alive(c, names[k->kind]));
  fc_context *ctx;
  FL_TRY(fc_context_get(c->device, &ctx));
  FC_CUDA(cudaEventRecord(c->ready, fc_stream(ctx)));
  FC_CUDA(cudaStreamWaitEvent(c->stream, c->ready, 0));
  void *recv = fc_base(k->recv);
  const void *send = k->send ? fc_base(k->send) : recv;
  ncclDataType_t dt = nccl_dtype(k->recv->dtype);
  size_t count = (size_t)fl_numel(k->recv);
  ncclResult_t r = ncclSuccess;
  switch (k->kind) {
    case FL_COLL_ALL_REDUCE: r = lib.ncclAllReduce(send, recv, count, dt, nccl_op(k->op), c->nc, c->stream); break;
    case FL_COLL_BROADCAST: r = lib.ncclBroadcast(send, recv, count, dt, k->root, c->nc, c->stream); break;
    case FL_COLL_ALL_GATHER:
      r = lib.ncclAllGather(send, recv, (size_t)fl_numel(k->send), dt, c->nc, c->stream);
      break;
    case FL_COLL_REDUCE_SCATTER: r = lib.ncclReduceScatter(send, recv, count, dt, nccl_op(k->op), c->nc, c->stream); break;
  }
  FL_TRY(settle(c, r, names[k->kind]));
  FC_CUDA(cudaEventRecord(c->done, c->stream));
  c->last_enqueue.store(fl_now_s());
  if (k->async) return record_on(ctx, c, k); /* joined later (cuda_comm_join) */
  FC_CUDA(cudaStreamWaitEvent(fc_stream(ctx), c->done, 0));
  return FL_OK;
}

fl_status cuda_comm_join(void *p) {
  comm *c = (comm *)p;
  FL_TRY(check_alive(c, "join"));
  fc_context *ctx;
  FL_TRY(fc_context_get(c->device, &ctx));
  FC_CUDA(cudaStreamWaitEvent(fc_stream(ctx), c->done, 0));
  return FL_OK;
}

fl_status cuda_comm_wait(void *p, double timeout) {
  comm *c = (comm *)p;
  double start = fl_now_s(), deadline = start + (timeout > 0 ? timeout : c->timeout);
  for (;;) {
    FL_TRY(check_alive(c, "barrier"));
    cudaError_t q = cudaEventQuery(c->done);
    if (q == cudaSuccess) return FL_OK;
    if (q != cudaErrorNotReady) return fc_cuda_error(q, "barrier: waiting for the collectives");
    ncclResult_t r = ncclSuccess;
    lib.ncclCommGetAsyncError(c->nc, &r);
    char why[256];
    if (r != ncclSuccess && r != ncclInProgress) {
      snprintf(why, sizeof why, "a peer failed: %s", lib.ncclGetErrorString(r));
      abort_once(c, why);
      return check_alive(c, "barrier");
    }
    if (fl_now_s() > deadline) {
      snprintf(why, sizeof why, "no collective completed in %.0f s (a peer is gone or stuck)", deadline - start);
      abort_once(c, why);
      return check_alive(c, "barrier");
    }
    usleep(100);
  }
}

#else /* built without nccl.h: no communicators on CUDA (world 1 still runs through the front-end) */
fl_status cuda_comm_unique_id(fl_device, void *, size_t, size_t *n) {
  *n = 0;
  return fl_error(FL_EUNSUPPORTED, "distributed.init: this build has no NCCL (nccl.h was not found)");
}
fl_status cuda_comm_init(fl_device, const void *, size_t, int, int, void **) {
  return fl_error(FL_EUNSUPPORTED, "distributed.init: this build has no NCCL (nccl.h was not found)");
}
void cuda_comm_destroy(void *, bool) {}
fl_status cuda_collective(void *, const fl_collective *) {
  return fl_error(FL_EUNSUPPORTED, "this build has no NCCL");
}
fl_status cuda_comm_wait(void *, double) { return FL_OK; }
fl_status cuda_comm_join(void *) { return FL_OK; }
#endif
