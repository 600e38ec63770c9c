/* Reductions over any set of dims (a bitmask; 0 means all), with keepdim. */
#include "internal.h"
#include <math.h>
#include <string.h>

static const char *red_names[FL_NREDUCE] = {"sum", "mean", "prod", "max", "min", "argmax", "argmin", "var"};

/* x's shape with the reduced dims set to 1 (keep) or dropped. */
static int reduced_shape(const fl_tensor *x, uint32_t mask, bool keep, int64_t *shape) {
  int nd = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (!(mask >> d & 1)) shape[nd++] = x->shape[d];
    else if (keep) shape[nd++] = 1;
  }
  return nd;
}

static fl_status check_mask(const char *op, const fl_tensor *x, uint32_t *mask) {
  uint32_t all = x->ndim ? (uint32_t)((1u << x->ndim) - 1) : 0;
  if (*mask == 0) *mask = all;
  if (*mask & ~all) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EINVAL, "%s: dims out of range for %s", op, d.s);
  }
  return FL_OK;
}

/* g reshaped to the keepdim shape, so it broadcasts against x. */
static fl_status g_keep(fl_node *n, fl_tensor *g, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS];
  fl_edge *e = &n->in[0];
  int nd = 0;
  for (int d = 0; d < e->ndim; d++) shape[nd++] = (n->iarg[1] >> d & 1) ? 1 : e->shape[d];
  return fl_reshape(g, nd, shape, out);
}

static int64_t count_of(fl_node *n) {
  int64_t c = 1;
  for (int d = 0; d < n->in[0].ndim; d++)
    if (n->iarg[1] >> d & 1) c *= n->in[0].shape[d];
  return c;
}

static fl_status reduce_backward(fl_node *n, fl_tensor *g, fl_tensor **grads) {
  fl_reduce_op op = (fl_reduce_op)n->iarg[0];
  fl_edge *e = &n->in[0];
  fl_tensor *gk, *x = NULL, *y = NULL, *t = NULL, *u = NULL, *w = NULL;
  FL_TRY(g_keep(n, g, &gk));
  fl_status st = FL_OK;
  if (op != FL_RSUM && op != FL_RMEAN) FL_CHECK(fl_node_saved(n, 0, &x));
  if (op == FL_RPROD || op == FL_RMAX || op == FL_RMIN) FL_CHECK(fl_node_saved(n, 1, &y));
  switch (op) {
    case FL_RSUM: st = fl_expand(gk, e->ndim, e->shape, &grads[0]); break;
    case FL_RMEAN:
      if ((st = fl_binary_scalar(FL_DIV, gk, (double)count_of(n), false, &t)) == FL_OK)
        st = fl_expand(t, e->ndim, e->shape, &grads[0]);
      break;
    case FL_RPROD: { /* g * prod / x, except at zeros, where 0/0 would give NaN: there the
                      * gradient is g * (product of the others), non-zero only for a group's one zero */
      fl_tensor *z = NULL, *xs = NULL, *pn = NULL, *zc = NULL, *other = NULL, *q = NULL, *at0 = NULL;
      uint32_t mask = (uint32_t)n->iarg[1];
      if ((st = fl_binary_scalar(FL_EQ, x, 0, false, &z)) == FL_OK && (st = fl_masked_fill(x, z, 1, &xs)) == FL_OK &&
          (st = fl_binary(FL_MUL, gk, y, &t)) == FL_OK && (st = fl_binary(FL_DIV, t, xs, &u)) == FL_OK &&
          (st = fl_prod(xs, mask, true, &pn)) == FL_OK && (st = fl_sum(z, mask, true, &zc)) == FL_OK &&
          (st = fl_binary_scalar(FL_NE, zc, 1, false, &other)) == FL_OK &&
          (st = fl_masked_fill(pn, other, 0, &q)) == FL_OK && (st = fl_binary(FL_MUL, gk, q, &at0)) == FL_OK)
        st = fl_where(z, at0, u, &grads[0]);
      fl_release(z), fl_release(xs), fl_release(pn), fl_release(zc), fl_release(other), fl_release(q), fl_release(at0);
      break;
    }
    case FL_RMAX:
    case FL_RMIN: /* shared evenly among the elements equal to the extreme */
      if ((st = fl_binary(FL_EQ, x, y, &t)) == FL_OK && (st = fl_cast(t, g->dtype, &u)) == FL_OK &&
          (st = fl_sum(u, (uint32_t)n->iarg[1], true, &w)) == FL_OK) {
        fl_tensor *q = NULL;
        if ((st = fl_binary(FL_DIV, gk, w, &q)) == FL_OK) st = fl_binary(FL_MUL, u, q, &grads[0]);
        fl_release(q);
      }
      break;
    case FL_RVAR: { /* g * 2 (x - mean) / (N - correction) */
      if ((st = fl_mean(x, (uint32_t)n->iarg[1], true, &t)) == FL_OK && (st = fl_binary(FL_SUB, x, t, &u)) == FL_OK &&
          (st = fl_binary_scalar(FL_MUL, u, 2.0 / ((double)count_of(n) - n->darg[0]), false, &w)) == FL_OK)
        st = fl_binary(FL_MUL, w, gk, &grads[0]);
      break;
    }
    default: st = fl_error(FL_EUNSUPPORTED, "%s is not differentiable", red_names[op]);
  }
done:
  fl_release(gk), fl_release(t), fl_release(u), fl_release(w);
  return st;
}

static fl_dtype out_dtype(fl_reduce_op op, fl_dtype in) {
  if (op == FL_RARGMAX || op == FL_RARGMIN) return FL_I64;
  if ((op == FL_RSUM || op == FL_RPROD) && !fl_dtype_is_float(in)) return FL_I64;
  return in;
}

/* The one reduction front-end: validates, allocates (keepdim shape), calls the
 * backend, records autograd, then drops the reduced dims if asked. */
static fl_status reduce(fl_reduce_op op, const fl_tensor *x, uint32_t mask, bool keep, double param, int64_t base,
                        fl_tensor **out, fl_tensor **idx) {
  const char *name = red_names[op];
  FL_TRY(check_mask(name, x, &mask));
  if ((op == FL_RMEAN || op == FL_RVAR) && !fl_dtype_is_float(x->dtype)) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EDTYPE, "%s: expected a floating-point tensor, got %s", name, d.s);
  }
  int64_t kshape[FL_MAX_DIMS], shape[FL_MAX_DIMS];
  int knd = reduced_shape(x, mask, true, kshape), nd = reduced_shape(x, mask, keep, shape);
  int64_t nred = fl_numel(x) / (fl_shape_numel(knd, kshape) ? fl_shape_numel(knd, kshape) : 1);
  if (op != FL_RSUM && op != FL_RPROD && op != FL_RMEAN && op != FL_RVAR && fl_numel(x) == 0) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EINVAL, "%s: cannot reduce an empty tensor %s", name, d.s);
  }
  (void)nred;
  fl_tensor *r = NULL, *ri = NULL, *v = NULL;
  fl_status st = FL_OK;
  fl_device dev = x->storage->device;
  FL_CHECK(fl_tensor_new(out_dtype(op, x->dtype), dev, knd, kshape, &r));
  if (idx) FL_CHECK(fl_tensor_new(FL_I64, dev, knd, kshape, &ri));
  if (fl_numel(r)) {
    if (fl_numel(x) == 0) FL_CHECK(fl_fill_(r, op == FL_RPROD ? 1 : op == FL_RSUM ? 0 : NAN));
    else {
      const fl_backend *be;
      FL_CHECK(fl_dispatch(name, FL_OP_REDUCE, op, 2, (const fl_tensor *const[]){r, x}, &be));
      FL_CHECK(fl_error_context(be->reduce(op, r, ri, x, mask, param, base), name));
    }
  }
  v = fl_alias(r, nd, shape, NULL, 0);
  if (!v) FL_CHECK(fl_error(FL_ENOMEM, "%s: out of host memory", name));
  fl_contiguous_strides(nd, v->shape, v->stride);
  if (fl_dtype_is_float(r->dtype) && op != FL_RARGMAX && op != FL_RARGMIN && !idx) {
    fl_node *n;
    FL_CHECK(fl_record(op == FL_RSUM ? "SumBackward" : op == FL_RMEAN ? "MeanBackward" : "ReduceBackward",
                       reduce_backward, 1, &x, v, &n));
    if (n) {
      n->iarg[0] = op;
      n->iarg[1] = mask;
      n->darg[0] = param;
      if (op != FL_RSUM && op != FL_RMEAN) fl_node_save(n, x);
      if (op == FL_RPROD || op == FL_RMAX || op == FL_RMIN) fl_node_save(n, r);
    }
  }
  if (idx) {
    *idx = fl_alias(ri, nd, shape, NULL, 0);
    if (!*idx) FL_CHECK(fl_error(FL_ENOMEM, "%s: out of host memory", name));
    fl_contiguous_strides(nd, (*idx)->shape, (*idx)->stride);
  }
  *out = v;
  v = NULL;
done:
  fl_release(r), fl_release(ri), fl_release(v);
  return st;
}

fl_status fl_sum(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return reduce(FL_RSUM, x, dims, keepdim, 0, 0, out, NULL);
}
fl_status fl_mean(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return reduce(FL_RMEAN, x, dims, keepdim, 0, 0, out, NULL);
}
fl_status fl_prod(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return reduce(FL_RPROD, x, dims, keepdim, 0, 0, out, NULL);
}
fl_status fl_var(const fl_tensor *x, uint32_t dims, double correction, bool keepdim, fl_tensor **out) {
  return reduce(FL_RVAR, x, dims, keepdim, correction, 0, out, NULL);
}
fl_status fl_std(const fl_tensor *x, uint32_t dims, double correction, bool keepdim, fl_tensor **out) {
  fl_tensor *v;
  FL_TRY(fl_var(x, dims, correction, keepdim, &v));
  fl_status st = fl_unary(FL_SQRT, v, out);
  fl_release(v);
  return st;
}
fl_status fl_amax(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return reduce(FL_RMAX, x, dims, keepdim, 0, 0, out, NULL);
}
fl_status fl_amin(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return reduce(FL_RMIN, x, dims, keepdim, 0, 0, out, NULL);
}

/* max/min along one dim: the values' gradient goes to the chosen index. */
static fl_status dim_extreme_backward(fl_node *n, fl_tensor *g, fl_tensor **grads) {
  fl_tensor *idx, *gk = NULL, *ik = NULL, *z = NULL;
  FL_TRY(fl_node_saved(n, 0, &idx));
  fl_edge *e = &n->in[0];
  int dim = (int)n->iarg[0];
  fl_opts o = {g->dtype, g->storage->device, false};
  fl_status st = n->iarg[1] ? (gk = fl_retain(g), FL_OK) : fl_unsqueeze(g, dim, &gk);
  if (st == FL_OK) st = n->iarg[1] ? (ik = fl_retain(idx), FL_OK) : fl_unsqueeze(idx, dim, &ik);
  if (st == FL_OK) st = fl_zeros(e->ndim, e->shape, o, &z);
  if (st == FL_OK) st = fl_scatter_add_ex(z, dim, ik, n->iarg[2], gk, &grads[0]); /* indices hold the caller's base */
  fl_release(gk), fl_release(ik), fl_release(z);
  return st;
}

static fl_status dim_extreme(fl_reduce_op op, const fl_tensor *x, int dim, bool keep, int64_t base,
                             fl_tensor **values, fl_tensor **indices) {
  int d;
  FL_TRY(fl_norm_dim(red_names[op], x, dim, 0, &d));
  uint32_t mask = x->ndim ? 1u << d : 0;
  fl_tensor *v = NULL, *i = NULL;
  fl_status st = FL_OK;
  FL_CHECK(reduce(op, x, mask, keep, 0, base, &v, &i));
  fl_node *n = NULL;
  if (fl_dtype_is_float(x->dtype))
    FL_CHECK(fl_record(op == FL_RMAX ? "MaxBackward" : "MinBackward", dim_extreme_backward, 1, &x, v, &n));
  if (n) {
    n->iarg[0] = d;
    n->iarg[1] = keep;
    n->iarg[2] = base;
    fl_node_save(n, i);
  }
  *values = v;
  v = NULL;
  if (indices) {
    *indices = i;
    i = NULL;
  }
done:
  fl_release(v), fl_release(i);
  return st;
}

fl_status fl_max_dim_ex(const fl_tensor *x, int dim, bool keepdim, int64_t base, fl_tensor **values,
                        fl_tensor **indices) {
  return dim_extreme(FL_RMAX, x, dim, keepdim, base, values, indices);
}
fl_status fl_min_dim_ex(const fl_tensor *x, int dim, bool keepdim, int64_t base, fl_tensor **values,
                        fl_tensor **indices) {
  return dim_extreme(FL_RMIN, x, dim, keepdim, base, values, indices);
}
fl_status fl_max_dim(const fl_tensor *x, int dim, bool keepdim, fl_tensor **values, fl_tensor **indices) {
  return dim_extreme(FL_RMAX, x, dim, keepdim, 0, values, indices);
}
fl_status fl_min_dim(const fl_tensor *x, int dim, bool keepdim, fl_tensor **values, fl_tensor **indices) {
  return dim_extreme(FL_RMIN, x, dim, keepdim, 0, values, indices);
}

/* dim FL_ALL_DIMS: the flat index over the whole tensor. */
static fl_status arg_extreme(fl_reduce_op op, const fl_tensor *x, int dim, bool keep, int64_t base, fl_tensor **out) {
  if (dim == FL_ALL_DIMS) return reduce(op, x, 0, keep, 0, base, out, NULL);
  int d;
  FL_TRY(fl_norm_dim(red_names[op], x, dim, 0, &d));
  return reduce(op, x, x->ndim ? 1u << d : 0, keep, 0, base, out, NULL);
}

fl_status fl_argmax_ex(const fl_tensor *x, int dim, bool keepdim, int64_t base, fl_tensor **out) {
  return arg_extreme(FL_RARGMAX, x, dim, keepdim, base, out);
}
fl_status fl_argmin_ex(const fl_tensor *x, int dim, bool keepdim, int64_t base, fl_tensor **out) {
  return arg_extreme(FL_RARGMIN, x, dim, keepdim, base, out);
}
fl_status fl_argmax(const fl_tensor *x, int dim, bool keepdim, fl_tensor **out) {
  return arg_extreme(FL_RARGMAX, x, dim, keepdim, 0, out);
}
fl_status fl_argmin(const fl_tensor *x, int dim, bool keepdim, fl_tensor **out) {
  return arg_extreme(FL_RARGMIN, x, dim, keepdim, 0, out);
}

fl_status fl_norm(const fl_tensor *x, double p, uint32_t dims, bool keepdim, fl_tensor **out) {
  fl_tensor *a = NULL, *b = NULL, *s = NULL;
  fl_status st = fl_unary(FL_ABS, x, &a);
  if (st == FL_OK && isinf(p) && p > 0) st = fl_amax(a, dims, keepdim, out);
  else if (st == FL_OK && p == 2) {
    if ((st = fl_binary(FL_MUL, x, x, &b)) == FL_OK && (st = fl_sum(b, dims, keepdim, &s)) == FL_OK)
      st = fl_unary(FL_SQRT, s, out);
  } else if (st == FL_OK && p == 1) {
    st = fl_sum(a, dims, keepdim, out);
  } else if (st == FL_OK) {
    if (p <= 0) st = fl_error(FL_EINVAL, "norm: p must be positive, got %g", p);
    else if ((st = fl_binary_scalar(FL_POW, a, p, false, &b)) == FL_OK && (st = fl_sum(b, dims, keepdim, &s)) == FL_OK)
      st = fl_binary_scalar(FL_POW, s, 1.0 / p, false, out);
  }
  fl_release(a), fl_release(b), fl_release(s);
  return fl_error_context(st, "norm");
}

static fl_status cumsum_backward(fl_node *n, fl_tensor *g, fl_tensor **grads) {
  int dim = (int)n->iarg[0];
  fl_tensor *f = NULL, *c = NULL;
  fl_status st = fl_flip(g, 1, &dim, &f);
  if (st == FL_OK) st = fl_cumsum(f, dim, &c);
  if (st == FL_OK) st = fl_flip(c, 1, &dim, &grads[0]);
  fl_release(f), fl_release(c);
  return st;
}

fl_status fl_cumsum(const fl_tensor *x, int dim, fl_tensor **out) {
  int d;
  if (x->ndim == 0) return fl_clone(x, out);
  FL_TRY(fl_norm_dim("cumsum", x, dim, 0, &d));
  fl_tensor *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(out_dtype(FL_RSUM, x->dtype), x->storage->device, x->ndim, x->shape, &r));
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch("cumsum", FL_OP_CUMSUM, 0, 2, (const fl_tensor *const[]){r, x}, &be));
    FL_CHECK(fl_error_context(be->cumsum(r, x, d), "cumsum"));
  }
  fl_node *n = NULL;
  if (fl_dtype_is_float(r->dtype)) FL_CHECK(fl_record("CumsumBackward", cumsum_backward, 1, &x, r, &n));
  if (n) n->iarg[0] = d;
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}
