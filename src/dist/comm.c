/* Communicators and collectives, the front-end: argument checks and the world-1 identity here, the transport in
 * the device's backend (cuda/nccl.cu). Messages number ranks from 0, as RANK and the launcher do. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

struct fl_comm {
  fl_device dev;
  const fl_backend *be;
  void *impl; /* NULL for world 1 without a backend communicator */
  int rank, world;
  bool failed; /* a wait found a dead or silent peer: the communicator was aborted */
};

static const char *coll_name(fl_coll_kind k) {
  static const char *const names[] = {"all_reduce", "broadcast", "all_gather", "reduce_scatter"};
  return names[k];
}

static bool has_comm(const fl_backend *be) { return be && be->comm_init && be->collective && be->comm_unique_id; }

fl_status fl_comm_unique_id(fl_device dev, void *id, size_t cap, size_t *n) {
  const fl_backend *be = fl_backend_for(dev.type);
  if (!has_comm(be)) {
    *n = 0; /* world 1 needs no id */
    return FL_OK;
  }
  return fl_error_context(be->comm_unique_id(dev, id, cap, n), "distributed.init");
}

fl_status fl_comm_init(fl_device dev, const void *id, size_t n, int rank, int world, fl_comm **out) {
  *out = NULL;
  if (world < 1 || rank < 0 || rank >= world)
    return fl_error(FL_EINVAL, "distributed.init: RANK %d must be in 0..WORLD_SIZE-1 (WORLD_SIZE %d)", rank, world);
  const fl_backend *be = fl_backend_for(dev.type);
  if (world > 1 && !has_comm(be)) {
    char d[32];
    fl_device_name(dev, d, sizeof d);
    return fl_error(FL_EUNSUPPORTED, "distributed.init: %s has no collectives (NCCL is for cuda); only WORLD_SIZE 1 "
                    "runs there, got %d", d, world);
  }
  fl_comm *c = calloc(1, sizeof *c);
  if (!c) return fl_error(FL_ENOMEM, "distributed.init: out of host memory");
  c->dev = dev, c->be = be, c->rank = rank, c->world = world;
  if (has_comm(be)) {
    fl_status st = fl_error_context(be->comm_init(dev, id, n, rank, world, &c->impl), "distributed.init");
    if (st != FL_OK) {
      free(c);
      return st;
    }
  }
  *out = c;
  return FL_OK;
}

void fl_comm_destroy(fl_comm *c) {
  if (!c) return;
  if (c->impl) c->be->comm_destroy(c->impl, c->failed);
  free(c);
}

int fl_comm_rank(const fl_comm *c) { return c->rank; }
int fl_comm_size(const fl_comm *c) { return c->world; }
fl_device fl_comm_device(const fl_comm *c) { return c->dev; }

static fl_status check_tensor(const fl_comm *c, const char *op, const char *what, const fl_tensor *t) {
  fl_desc d = fl_describe(t);
  char cd[32];
  fl_device_name(c->dev, cd, sizeof cd);
  if (c->failed)
    return fl_error(FL_EBACKEND, "%s: the communicator was aborted after a peer failed; re-run init", op);
  if (!fl_device_eq(t->storage->device, c->dev))
    return fl_error(FL_EDEVICE, "%s: %s %s is not on the communicator's device %s", op, what, d.s, cd);
  if (!fl_is_contiguous(t)) return fl_error(FL_EINVAL, "%s: %s %s must be contiguous", op, what, d.s);
  return FL_OK;
}

static fl_status run(fl_comm *c, const fl_collective *k) {
  const char *op = coll_name(k->kind);
  if (k->send) FL_TRY(check_tensor(c, op, "input", k->send));
  FL_TRY(check_tensor(c, op, k->send ? "output" : "tensor", k->recv));
  if (k->send && k->send->dtype != k->recv->dtype) {
    fl_desc a = fl_describe(k->send), b = fl_describe(k->recv);
    return fl_error(FL_EDTYPE, "%s: input %s and output %s must have one dtype", op, a.s, b.s);
  }
  if (k->op == FL_RED_AVG && !fl_dtype_is_float(k->recv->dtype)) {
    fl_desc d = fl_describe(k->recv);
    return fl_error(FL_EDTYPE, "%s: avg needs a float tensor, got %s", op, d.s);
  }
  if (k->recv->dtype == FL_BOOL && k->kind != FL_COLL_BROADCAST && k->kind != FL_COLL_ALL_GATHER) {
    fl_desc d = fl_describe(k->recv);
    return fl_error(FL_EDTYPE, "%s: cannot reduce bool tensor %s", op, d.s);
  }
  if (c->impl) {
    fl_bump_version(k->recv);
    return fl_error_context(c->be->collective(c->impl, k), op);
  }
  /* world 1: all_reduce and broadcast leave the tensor as it is; the others copy (avg divides by 1) */
  if (k->send && k->send->storage != k->recv->storage) return fl_copy_kernel(op, k->recv, k->send);
  return FL_OK;
}

fl_status fl_all_reduce(fl_comm *c, fl_tensor *t, fl_red_op op) {
  return run(c, &(fl_collective){FL_COLL_ALL_REDUCE, op, 0, NULL, t, false});
}

fl_status fl_all_reduce_async(fl_comm *c, fl_tensor *t, fl_red_op op) {
  return run(c, &(fl_collective){FL_COLL_ALL_REDUCE, op, 0, NULL, t, true});
}

fl_status fl_comm_join(fl_comm *c) {
  if (c->failed) return fl_error(FL_EBACKEND, "join: the communicator was aborted after a peer failed; re-run init");
  if (!c->impl || !c->be->comm_join) return FL_OK;
  return c->be->comm_join(c->impl);
}

fl_status fl_broadcast(fl_comm *c, fl_tensor *t, int root) {
  if (root < 0 || root >= c->world)
    return fl_error(FL_EINVAL, "broadcast: src rank %d must be in 0..%d", root, c->world - 1);
  return run(c, &(fl_collective){FL_COLL_BROADCAST, FL_RED_SUM, root, NULL, t, false});
}

static fl_status check_blocks(const fl_comm *c, const char *op, const fl_tensor *small, const fl_tensor *big) {
  if (fl_numel(big) == fl_numel(small) * c->world) return FL_OK;
  fl_desc a = fl_describe(small), b = fl_describe(big);
  return fl_error(FL_ESHAPE, "%s: %s must hold WORLD_SIZE (%d) x the elements of %s", op, b.s, c->world, a.s);
}

fl_status fl_all_gather(fl_comm *c, const fl_tensor *in, fl_tensor *out) {
  FL_TRY(check_blocks(c, "all_gather", in, out));
  return run(c, &(fl_collective){FL_COLL_ALL_GATHER, FL_RED_SUM, 0, in, out, false});
}

fl_status fl_reduce_scatter(fl_comm *c, const fl_tensor *in, fl_tensor *out, fl_red_op op) {
  FL_TRY(check_blocks(c, "reduce_scatter", out, in));
  return run(c, &(fl_collective){FL_COLL_REDUCE_SCATTER, op, 0, in, out, false});
}

fl_status fl_comm_wait(fl_comm *c, double timeout_s) {
  if (c->failed) return fl_error(FL_EBACKEND, "barrier: the communicator was aborted after a peer failed");
  if (!c->impl || !c->be->comm_wait) return FL_OK;
  fl_status st = c->be->comm_wait(c->impl, timeout_s);
  if (st == FL_EBACKEND) c->failed = true; /* the backend aborted it */
  return st;
}
