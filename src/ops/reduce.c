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

typedef struct {
  fl_reduce_op op;
  uint32_t mask; /* the reduced dims */
  double param;  /* var's correction */
} reduce_ctx;

static const char *reduce_grad_name(fl_reduce_op op) {
  switch (op) {
    case FL_RSUM: return "SumBackward";
    case FL_RMEAN: return "MeanBackward";
    case FL_RPROD: return "ProdBackward";
    case FL_RMAX: return "AmaxBackward";
    case FL_RMIN: return "AminBackward";
    default: return "VarBackward";
  }
}

/* g reshaped to the keepdim shape, so it broadcasts against x. */
static fl_status g_keep(fl_node *n, uint32_t mask, fl_tensor *g, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS];
  fl_edge *e = &n->in[0];
  int nd = 0;
  for (int d = 0; d < e->ndim; d++) shape[nd++] = (mask >> d & 1) ? 1 : e->shape[d];
  return fl_reshape(g, nd, shape, out);
}

static int64_t count_of(fl_node *n, uint32_t mask) {
  int64_t c = 1;
  for (int d = 0; d < n->in[0].ndim; d++)
    if (mask >> d & 1) c *= n->in[0].shape[d];
  return c;
}

/* prod: g * prod / x, except at zeros, where 0/0 would give NaN: there the
 * gradient is g * (product of the others), non-zero only for a group's one zero */
static fl_status prod_backward(fl_tensor *gk, const fl_tensor *x, const fl_tensor *y, uint32_t mask, fl_tensor **gx) {
  fl_status st = FL_OK;
  fl_tensor *z = NULL, *xs = NULL, *t = NULL, *u = NULL, *pn = NULL, *zc = NULL, *other = NULL, *q = NULL, *at0 = NULL;
  FL_CHECK(fl_binary_scalar(FL_EQ, x, 0, false, &z));
  FL_CHECK(fl_masked_fill(x, z, 1, &xs));
  FL_CHECK(fl_binary(FL_MUL, gk, y, &t));
  FL_CHECK(fl_binary(FL_DIV, t, xs, &u));
  FL_CHECK(fl_prod(xs, mask, true, &pn));
  FL_CHECK(fl_sum(z, mask, true, &zc));
  FL_CHECK(fl_binary_scalar(FL_NE, zc, 1, false, &other));
  FL_CHECK(fl_masked_fill(pn, other, 0, &q));
  FL_CHECK(fl_binary(FL_MUL, gk, q, &at0));
  FL_CHECK(fl_where(z, at0, u, gx));
done:
  fl_release(z), fl_release(xs), fl_release(t), fl_release(u), fl_release(pn), fl_release(zc), fl_release(other);
  fl_release(q), fl_release(at0);
  return st;
}

/* amax/amin: shared evenly among the elements equal to the extreme */
static fl_status extreme_backward(fl_tensor *gk, const fl_tensor *x, const fl_tensor *y, uint32_t mask, fl_tensor **gx) {
  fl_status st = FL_OK;
  fl_tensor *t = NULL, *u = NULL, *w = NULL, *q = NULL;
  FL_CHECK(fl_binary(FL_EQ, x, y, &t));
  FL_CHECK(fl_cast(t, gk->dtype, &u));
  FL_CHECK(fl_sum(u, mask, true, &w));
  FL_CHECK(fl_binary(FL_DIV, gk, w, &q));
  FL_CHECK(fl_binary(FL_MUL, u, q, gx));
done:
  fl_release(t), fl_release(u), fl_release(w), fl_release(q);
  return st;
}

static fl_status reduce_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const reduce_ctx *c = n->ctx;
  fl_edge *e = &n->in[0];
  fl_tensor *gk = NULL, *x = NULL, *y = NULL, *t = NULL, *u = NULL, *w = NULL;
  fl_status st = FL_OK;
  FL_CHECK(g_keep(n, c->mask, gout[0], &gk));
  if (c->op != FL_RSUM && c->op != FL_RMEAN) FL_CHECK(fl_node_saved(n, 0, &x));
  if (c->op == FL_RPROD || c->op == FL_RMAX || c->op == FL_RMIN) FL_CHECK(fl_node_saved(n, 1, &y));
  switch (c->op) {
    case FL_RSUM: FL_CHECK(fl_expand(gk, e->ndim, e->shape, &gin[0])); break;
    case FL_RMEAN:
      FL_CHECK(fl_binary_scalar(FL_DIV, gk, (double)count_of(n, c->mask), false, &t));
      FL_CHECK(fl_expand(t, e->ndim, e->shape, &gin[0]));
      break;
    case FL_RPROD: FL_CHECK(prod_backward(gk, x, y, c->mask, &gin[0])); break;
    case FL_RMAX:
    case FL_RMIN: FL_CHECK(extreme_backward(gk, x, y, c->mask, &gin[0])); break;
    case FL_RVAR: /* g * 2 (x - mean) / (N - correction) */
      FL_CHECK(fl_mean(x, c->mask, true, &t));
      FL_CHECK(fl_binary(FL_SUB, x, t, &u));
      FL_CHECK(fl_binary_scalar(FL_MUL, u, 2.0 / ((double)count_of(n, c->mask) - c->param), false, &w));
      FL_CHECK(fl_binary(FL_MUL, w, gk, &gin[0]));
      break;
    default: FL_CHECK(fl_error(FL_EUNSUPPORTED, "%s is not differentiable", red_names[c->op]));
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
    FL_CHECK(fl_record(reduce_grad_name(op), reduce_backward, 1, &x, v, &n));
    if (n) {
      reduce_ctx *c;
      FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
      c->op = op, c->mask = mask, c->param = param;
      if (op != FL_RSUM && op != FL_RMEAN) FL_CHECK(fl_node_save(n, x));
      if (op == FL_RPROD || op == FL_RMAX || op == FL_RMIN) FL_CHECK(fl_node_save(n, r));
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
  uint64_t mark = fl_node_mark();
  fl_tensor *v;
  FL_TRY(fl_var(x, dims, correction, keepdim, &v));
  fl_status st = fl_unary(FL_SQRT, v, out);
  fl_release(v);
  return fl_name_composite(st, mark, "StdBackward", out);
}
fl_status fl_amax(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return reduce(FL_RMAX, x, dims, keepdim, 0, 0, out, NULL);
}
fl_status fl_amin(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return reduce(FL_RMIN, x, dims, keepdim, 0, 0, out, NULL);
}

/* max/min along one dim: one node with two outputs, (values, indices). */
typedef struct {
  int dim;
  bool keep;
  int64_t base; /* of the saved indices */
} dim_extreme_ctx;

/* The values' gradient goes to the chosen index; the indices are not
 * differentiable, so gout[1] is always NULL. */
static fl_status dim_extreme_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const dim_extreme_ctx *c = n->ctx;
  fl_edge *e = &n->in[0];
  fl_tensor *g = gout[0], *idx, *gk = NULL, *ik = NULL, *z = NULL;
  fl_status st = FL_OK;
  if (!g) return FL_OK;
  fl_opts o = {g->dtype, g->storage->device, false};
  FL_CHECK(fl_node_saved(n, 0, &idx));
  if (c->keep) {
    gk = fl_retain(g), ik = fl_retain(idx);
  } else {
    FL_CHECK(fl_unsqueeze(g, c->dim, &gk));
    FL_CHECK(fl_unsqueeze(idx, c->dim, &ik));
  }
  FL_CHECK(fl_zeros(e->ndim, e->shape, o, &z));
  FL_CHECK(fl_scatter_add_ex(z, c->dim, ik, c->base, gk, &gin[0])); /* the indices hold the caller's base */
done:
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
  if (fl_dtype_is_float(x->dtype)) {
    fl_node *n;
    fl_tensor *outs[2] = {v, NULL}; /* the indices are not differentiable */
    FL_CHECK(fl_record_outputs(op == FL_RMAX ? "MaxBackward" : "MinBackward", dim_extreme_backward, 1, &x, 2, outs, &n));
    if (n) {
      dim_extreme_ctx *c;
      FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
      c->dim = d, c->keep = keep, c->base = base;
      FL_CHECK(fl_node_save(n, i));
    }
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
  uint64_t mark = fl_node_mark();
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
  return fl_name_composite(fl_error_context(st, "norm"), mark, "NormBackward", out);
}

typedef struct {
  int dim;
} cumsum_ctx;

static fl_status cumsum_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  int dim = ((const cumsum_ctx *)n->ctx)->dim;
  fl_tensor *f = NULL, *c = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_flip(gout[0], 1, &dim, &f));
  FL_CHECK(fl_cumsum(f, dim, &c));
  FL_CHECK(fl_flip(c, 1, &dim, &gin[0]));
done:
  fl_release(f), fl_release(c);
  return st;
}

fl_status fl_cumsum(const fl_tensor *x, int dim, fl_tensor **out) {
  int d;
  if (x->ndim == 0) {
    uint64_t mark = fl_node_mark();
    return fl_name_composite(fl_clone(x, out), mark, "CumsumBackward", out);
  }
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
  cumsum_ctx *c;
  if (n) {
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->dim = d;
  }
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}
