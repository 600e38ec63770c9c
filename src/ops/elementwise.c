/* Elementwise ops: type promotion and broadcasting happen here, once; the
 * backends see same-shape operands, converting operands of another dtype on
 * load, and scalars by value. */
#include "internal.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static bool is_predicate(fl_binary_op op) { return op >= FL_EQ && op <= FL_OR; }
static bool is_rounding(fl_unary_op op) { return op >= FL_FLOOR && op <= FL_TRUNC; }
static bool float_only_unary(fl_unary_op op) {
  return op != FL_NEG && op != FL_ABS && op != FL_RELU && op != FL_SIGN && op != FL_LOGICAL_NOT && op != FL_CLAMP &&
         !is_rounding(op);
}

/* ---- small helpers built on the ops themselves ---- */
static fl_status scalar_like(const fl_tensor *t, double v, fl_tensor **out) {
  fl_opts o = {t->dtype, t->storage->device, false};
  return fl_scalar(v, o, out);
}
static fl_status mul(const fl_tensor *a, const fl_tensor *b, fl_tensor **out) { return fl_binary(FL_MUL, a, b, out); }
static fl_status muls(const fl_tensor *a, double s, fl_tensor **out) { return fl_binary_scalar(FL_MUL, a, s, false, out); }
/* out = f(g, x) for a fused backward op */
static fl_status fused(fl_binary_op op, const fl_tensor *g, const fl_tensor *x, fl_tensor **out) {
  return fl_binary(op, g, x, out);
}

/* ---- unary ---- */
typedef struct {
  fl_unary_op op;
  double lo, hi; /* clamp's bounds (NaN: none) */
} unary_ctx;

/* grad_fn names, PyTorch's without the trailing 0 */
static const char *unary_grad_names[FL_NUNARY] = {
    "NegBackward", "ExpBackward", "LogBackward", "SqrtBackward", "RsqrtBackward", "AbsBackward",
    "SinBackward", "CosBackward", "TanhBackward", "SigmoidBackward", "ReluBackward", "GeluBackward",
    "GeluBackward", "SiluBackward", "SignBackward", NULL, "ClampBackward", "FloorBackward", "CeilBackward",
    "RoundBackward", "TruncBackward"};

/* clamp: the gradient passes where x was inside [lo, hi] */
static fl_status clamp_backward(const unary_ctx *c, fl_tensor *g, const fl_tensor *x, fl_tensor **gx) {
  fl_status st = FL_OK;
  fl_tensor *t = NULL, *u = NULL, *m = NULL, *z = NULL;
  if (!isnan(c->lo)) FL_CHECK(fl_binary_scalar(FL_GE, x, c->lo, false, &t));
  if (!isnan(c->hi)) FL_CHECK(fl_binary_scalar(FL_LE, x, c->hi, false, &u));
  if (t && u) FL_CHECK(fl_binary(FL_AND, t, u, &m));
  else m = fl_retain(t ? t : u);
  if (!m) {
    *gx = fl_retain(g);
    goto done;
  }
  FL_CHECK(scalar_like(g, 0, &z));
  FL_CHECK(fl_where(m, g, z, gx));
done:
  fl_release(t), fl_release(u), fl_release(m), fl_release(z);
  return st;
}

static fl_status unary_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const unary_ctx *c = n->ctx;
  fl_tensor *g = gout[0], *x, *t = NULL, *u = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &x)); /* the input, or the output for exp/sqrt/rsqrt/tanh/sigmoid */
  switch (c->op) {
    case FL_NEG: FL_CHECK(muls(g, -1, &gin[0])); break;
    case FL_EXP: FL_CHECK(mul(g, x, &gin[0])); break;
    case FL_LOG: FL_CHECK(fl_binary(FL_DIV, g, x, &gin[0])); break;
    case FL_SQRT: /* g / (2 y) */
      FL_CHECK(muls(x, 2, &t));
      FL_CHECK(fl_binary(FL_DIV, g, t, &gin[0]));
      break;
    case FL_RSQRT: /* -0.5 g y^3 */
      FL_CHECK(fl_binary_scalar(FL_POW, x, 3, false, &t));
      FL_CHECK(muls(t, -0.5, &u));
      FL_CHECK(mul(g, u, &gin[0]));
      break;
    case FL_ABS:
      FL_CHECK(fl_unary(FL_SIGN, x, &t));
      FL_CHECK(mul(g, t, &gin[0]));
      break;
    case FL_SIN:
      FL_CHECK(fl_unary(FL_COS, x, &t));
      FL_CHECK(mul(g, t, &gin[0]));
      break;
    case FL_COS:
      FL_CHECK(fl_unary(FL_SIN, x, &t));
      FL_CHECK(muls(t, -1, &u));
      FL_CHECK(mul(g, u, &gin[0]));
      break;
    case FL_TANH: FL_CHECK(fused(FL_TANH_BACKWARD, g, x, &gin[0])); break;
    case FL_SIGMOID: FL_CHECK(fused(FL_SIGMOID_BACKWARD, g, x, &gin[0])); break;
    case FL_RELU: FL_CHECK(fused(FL_RELU_BACKWARD, g, x, &gin[0])); break;
    case FL_GELU: FL_CHECK(fused(FL_GELU_BACKWARD, g, x, &gin[0])); break;
    case FL_GELU_TANH: FL_CHECK(fused(FL_GELU_TANH_BACKWARD, g, x, &gin[0])); break;
    case FL_SILU: FL_CHECK(fused(FL_SILU_BACKWARD, g, x, &gin[0])); break;
    case FL_SIGN: /* piecewise constant: zero gradient, as torch */
    case FL_FLOOR:
    case FL_CEIL:
    case FL_ROUND:
    case FL_TRUNC: FL_CHECK(muls(g, 0, &gin[0])); break;
    case FL_CLAMP: FL_CHECK(clamp_backward(c, g, x, &gin[0])); break;
    default: FL_CHECK(fl_error(FL_EUNSUPPORTED, "%s is not differentiable", fl_unary_name(c->op)));
  }
done:
  fl_release(t);
  fl_release(u);
  return st;
}

static bool saves_output(fl_unary_op op) {
  return op == FL_EXP || op == FL_SQRT || op == FL_RSQRT || op == FL_TANH || op == FL_SIGMOID;
}

static fl_status unary_impl(fl_unary_op op, const fl_tensor *x, double p0, double p1, fl_tensor **out) {
  const char *name = fl_unary_name(op);
  if ((unsigned)op >= FL_NUNARY) return fl_error(FL_EINVAL, "unary: bad op %d", (int)op);
  if (op == FL_LOGICAL_NOT && x->dtype != FL_BOOL) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EDTYPE, "logical_not: expected a bool tensor, got %s", d.s);
  }
  /* like torch: ints compute in f32, converted on load by the kernel (no cast copy) */
  fl_dtype odt = op == FL_LOGICAL_NOT ? FL_BOOL : float_only_unary(op) && !fl_dtype_is_float(x->dtype) ? FL_F32 : x->dtype;
  fl_tensor *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(odt, x->storage->device, x->ndim, x->shape, &r));
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch(name, FL_OP_UNARY, op, 2, (const fl_tensor *const[]){r, x}, &be));
    FL_CHECK(fl_error_context(be->unary(op, r, x, p0, p1), name));
  }
  if (fl_dtype_is_float(r->dtype) && op != FL_LOGICAL_NOT) {
    fl_node *n;
    FL_CHECK(fl_record(unary_grad_names[op], unary_backward, 1, &x, r, &n));
    if (n) {
      unary_ctx *c;
      FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
      c->op = op, c->lo = p0, c->hi = p1;
      FL_CHECK(fl_node_save(n, saves_output(op) ? r : x));
    }
  }
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}

fl_status fl_unary(fl_unary_op op, const fl_tensor *x, fl_tensor **out) { return unary_impl(op, x, NAN, NAN, out); }
fl_status fl_clamp(const fl_tensor *x, double lo, double hi, fl_tensor **out) {
  if (!isnan(lo) && !isnan(hi) && lo > hi) return fl_error(FL_EINVAL, "clamp: min %g is greater than max %g", lo, hi);
  return unary_impl(FL_CLAMP, x, lo, hi, out);
}

/* ---- binary ---- */
typedef struct {
  fl_binary_op op;
} binary_ctx;

static const char *binary_grad_name(fl_binary_op op) {
  switch (op) {
    case FL_ADD: return "AddBackward";
    case FL_SUB: return "SubBackward";
    case FL_MUL: return "MulBackward";
    case FL_DIV: return "DivBackward";
    case FL_POW: return "PowBackward";
    case FL_MAXIMUM: return "MaximumBackward";
    default: return "MinimumBackward";
  }
}

/* pow, d/da = b a^(b-1), 0 where b == 0 */
static fl_status pow_grad_base(fl_tensor *g, const fl_tensor *a, const fl_tensor *b, const fl_tensor *z, fl_tensor **out) {
  fl_status st = FL_OK;
  fl_tensor *t = NULL, *u = NULL, *w = NULL, *v = NULL, *m = NULL;
  FL_CHECK(fl_binary_scalar(FL_SUB, b, 1, false, &t));
  FL_CHECK(fl_binary(FL_POW, a, t, &u));
  FL_CHECK(mul(u, b, &w));
  FL_CHECK(mul(w, g, &v));
  FL_CHECK(fl_binary_scalar(FL_EQ, b, 0, false, &m));
  FL_CHECK(fl_where(m, z, v, out));
done:
  fl_release(t), fl_release(u), fl_release(w), fl_release(v), fl_release(m);
  return st;
}

/* pow, d/db = a^b log a, 0 where a == 0 */
static fl_status pow_grad_exponent(fl_tensor *g, const fl_tensor *a, const fl_tensor *b, const fl_tensor *z,
                                   fl_tensor **out) {
  fl_status st = FL_OK;
  fl_tensor *t = NULL, *u = NULL, *w = NULL, *v = NULL, *m = NULL;
  FL_CHECK(fl_binary(FL_POW, a, b, &t));
  FL_CHECK(fl_unary(FL_LOG, a, &u));
  FL_CHECK(mul(t, u, &w));
  FL_CHECK(mul(w, g, &v));
  FL_CHECK(fl_binary_scalar(FL_EQ, a, 0, false, &m));
  FL_CHECK(fl_where(m, z, v, out));
done:
  fl_release(t), fl_release(u), fl_release(w), fl_release(v), fl_release(m);
  return st;
}

/* maximum/minimum: a's share of the gradient, 1 where a wins, 0.5 on ties */
static fl_status extreme_weight(fl_binary_op op, const fl_tensor *a, const fl_tensor *b, fl_dtype dt, fl_tensor **w) {
  fl_status st = FL_OK;
  fl_tensor *t = NULL, *e = NULL, *u = NULL, *h = NULL, *half = NULL;
  FL_CHECK(fl_binary(op == FL_MAXIMUM ? FL_GT : FL_LT, a, b, &t));
  FL_CHECK(fl_binary(FL_EQ, a, b, &e));
  FL_CHECK(fl_cast(t, dt, &u));
  FL_CHECK(fl_cast(e, dt, &h));
  FL_CHECK(fl_binary_scalar(FL_MUL, h, 0.5, false, &half));
  FL_CHECK(fl_binary(FL_ADD, u, half, w));
done:
  fl_release(t), fl_release(e), fl_release(u), fl_release(h), fl_release(half);
  return st;
}

static fl_status binary_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  fl_binary_op op = ((const binary_ctx *)n->ctx)->op;
  fl_tensor *g = gout[0], *a, *b, *t = NULL, *u = NULL, *w = NULL;
  bool ga = n->in[0].node != NULL, gb = n->in[1].node != NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &a));
  FL_CHECK(fl_node_saved(n, 1, &b));
  switch (op) {
    case FL_ADD:
      gin[0] = fl_retain(g), gin[1] = fl_retain(g);
      break;
    case FL_SUB:
      gin[0] = fl_retain(g);
      if (gb) FL_CHECK(muls(g, -1, &gin[1]));
      break;
    case FL_MUL:
      if (ga) FL_CHECK(mul(g, b, &gin[0]));
      if (gb) FL_CHECK(mul(g, a, &gin[1]));
      break;
    case FL_DIV: /* d/da = 1/b, d/db = -a/b^2 */
      FL_CHECK(fl_binary(FL_DIV, g, b, &t));
      if (ga) gin[0] = fl_retain(t);
      if (gb) {
        FL_CHECK(mul(t, a, &u));
        FL_CHECK(fl_binary(FL_DIV, u, b, &w));
        FL_CHECK(muls(w, -1, &gin[1]));
      }
      break;
    case FL_POW:
      FL_CHECK(scalar_like(g, 0, &t));
      if (ga) FL_CHECK(pow_grad_base(g, a, b, t, &gin[0]));
      if (gb) FL_CHECK(pow_grad_exponent(g, a, b, t, &gin[1]));
      break;
    case FL_MAXIMUM:
    case FL_MINIMUM: /* the winner takes the gradient; ties split it */
      FL_CHECK(extreme_weight(op, a, b, g->dtype, &w));
      if (ga) FL_CHECK(mul(g, w, &gin[0]));
      if (gb) {
        FL_CHECK(fl_binary_scalar(FL_SUB, w, 1, true, &t));
        FL_CHECK(mul(g, t, &gin[1]));
      }
      break;
    default: FL_CHECK(fl_error(FL_EUNSUPPORTED, "%s is not differentiable", fl_binary_name(op)));
  }
done:
  fl_release(t);
  fl_release(u);
  fl_release(w);
  return st;
}

/* The dtype both operands are computed in. */
static fl_dtype compute_dtype(fl_binary_op op, fl_dtype a, fl_dtype b) {
  fl_dtype d = fl_promote(a, b);
  if (op == FL_DIV && !fl_dtype_is_float(d)) return FL_F32; /* true division */
  if (op == FL_AND || op == FL_OR) return FL_BOOL;
  if (op > FL_OR && !fl_dtype_is_float(d)) return FL_F32;
  if ((op == FL_ADD || op == FL_SUB || op == FL_MUL || op == FL_POW) && d == FL_BOOL) return FL_I64;
  return d;
}

static bool differentiable(fl_binary_op op) { return op <= FL_MINIMUM; }

/* Operands of different dtypes are converted on load by the kernel: no cast copy. */
fl_status fl_binary(fl_binary_op op, const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  if ((unsigned)op >= FL_NBINARY) return fl_error(FL_EINVAL, "binary: bad op %d", (int)op);
  const char *name = fl_binary_name(op);
  FL_TRY(fl_check_same_device(name, a, b));
  int nd;
  int64_t shape[FL_MAX_DIMS];
  FL_TRY(fl_broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape));
  fl_dtype ct = compute_dtype(op, a->dtype, b->dtype);
  fl_tensor *r = NULL, ea, eb;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(is_predicate(op) ? FL_BOOL : ct, a->storage->device, nd, shape, &r));
  fl_expand_header(a, nd, shape, &ea);
  fl_expand_header(b, nd, shape, &eb);
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch(name, FL_OP_BINARY, op, 3, (const fl_tensor *const[]){r, &ea, &eb}, &be));
    FL_CHECK(fl_error_context(be->binary(op, r, &ea, &eb), name));
  }
  if (differentiable(op) && fl_dtype_is_float(ct)) {
    fl_node *n;
    const fl_tensor *ins[2] = {a, b};
    FL_CHECK(fl_record(binary_grad_name(op), binary_backward, 2, ins, r, &n));
    if (n) {
      binary_ctx *c;
      FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
      c->op = op;
      FL_CHECK(fl_node_save(n, a));
      FL_CHECK(fl_node_save(n, b));
    }
  }
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}

typedef struct {
  fl_binary_op op;
  bool reversed; /* s op a */
  double s;
} scalar_ctx;

/* d(a op s)/da, or d(s op a)/da when reversed; a is saved only where needed. */
static fl_status scalar_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const scalar_ctx *c = n->ctx;
  fl_binary_op op = c->op;
  bool rev = c->reversed;
  double s = c->s;
  fl_tensor *g = gout[0], *a = NULL, *t = NULL, *u = NULL, *w = NULL;
  fl_status st = FL_OK;
  if (n->n_saved) FL_CHECK(fl_node_saved(n, 0, &a));
  fl_opts zo = {g->dtype, g->storage->device, false};
  switch (op) {
    case FL_ADD: gin[0] = fl_retain(g); break;
    case FL_SUB:
      if (rev) FL_CHECK(muls(g, -1, &gin[0]));
      else gin[0] = fl_retain(g);
      break;
    case FL_MUL: FL_CHECK(muls(g, s, &gin[0])); break;
    case FL_DIV:
      if (!rev) {
        FL_CHECK(fl_binary_scalar(FL_DIV, g, s, false, &gin[0]));
        break;
      }
      FL_CHECK(mul(a, a, &t)); /* s / a: -s g / a^2 */
      FL_CHECK(fl_binary(FL_DIV, g, t, &u));
      FL_CHECK(muls(u, -s, &gin[0]));
      break;
    case FL_POW: /* a^s: s a^(s-1) g; s^a: s^a log(s) g; 0 where s == 0 */
      if (s == 0) {
        FL_CHECK(fl_zeros(g->ndim, g->shape, zo, &gin[0]));
        break;
      }
      FL_CHECK(rev ? fl_binary_scalar(FL_POW, a, s, true, &t) : fl_binary_scalar(FL_POW, a, s - 1, false, &t));
      FL_CHECK(muls(t, rev ? log(s) : s, &u));
      FL_CHECK(mul(u, g, &gin[0]));
      break;
    case FL_MAXIMUM:
    case FL_MINIMUM: /* the winner takes the gradient; a tie splits it: g (a wins) + 0.5 g (tie) */
      FL_CHECK(fl_binary_scalar(op == FL_MAXIMUM ? FL_GT : FL_LT, a, s, false, &t));
      FL_CHECK(fl_binary_scalar(FL_EQ, a, s, false, &u));
      FL_CHECK(fl_binary(FL_MUL, g, u, &w));
      fl_release(u);
      u = NULL;
      FL_CHECK(muls(w, 0.5, &u));
      fl_release(w);
      w = NULL;
      FL_CHECK(mul(g, t, &w));
      FL_CHECK(fl_binary(FL_ADD, w, u, &gin[0]));
      break;
    default: FL_CHECK(fl_error(FL_EUNSUPPORTED, "%s is not differentiable", fl_binary_name(op)));
  }
done:
  fl_release(t), fl_release(u), fl_release(w);
  return st;
}

/* The dtype a Lua/C number takes next to tensor t (numbers do not widen tensors). */
static fl_dtype scalar_dtype(fl_binary_op op, const fl_tensor *t, double s, bool is_float) {
  if (op == FL_AND || op == FL_OR) return FL_BOOL;
  if (fl_dtype_is_float(t->dtype)) return t->dtype;
  if (is_float || s != floor(s) || isinf(s) || isnan(s)) return FL_F32;
  return t->dtype == FL_BOOL ? FL_I64 : t->dtype;
}

static bool saves_input(fl_binary_op op, bool reversed) {
  return op == FL_POW || op == FL_MAXIMUM || op == FL_MINIMUM || (op == FL_DIV && reversed);
}

/* The scalar goes to the kernel by value: no 0-dim tensor, one launch. */
static fl_status binary_scalar(fl_binary_op op, const fl_tensor *a, double s, bool is_float, bool reversed,
                               fl_tensor **out) {
  if ((unsigned)op >= FL_NBINARY) return fl_error(FL_EINVAL, "binary: bad op %d", (int)op);
  const char *name = fl_binary_name(op);
  fl_dtype ct = compute_dtype(op, a->dtype, scalar_dtype(op, a, s, is_float));
  fl_tensor *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(is_predicate(op) ? FL_BOOL : ct, a->storage->device, a->ndim, a->shape, &r));
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch(name, FL_OP_BINARY_SCALAR, op, 2, (const fl_tensor *const[]){r, a}, &be));
    FL_CHECK(fl_error_context(be->binary_scalar(op, r, a, s, reversed, ct), name));
  }
  if (differentiable(op) && fl_dtype_is_float(ct)) {
    fl_node *n;
    FL_CHECK(fl_record(binary_grad_name(op), scalar_backward, 1, &a, r, &n));
    if (n) {
      scalar_ctx *c;
      FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
      c->op = op, c->reversed = reversed, c->s = s;
      if (saves_input(op, reversed)) FL_CHECK(fl_node_save(n, a));
    }
  }
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}

fl_status fl_binary_scalar(fl_binary_op op, const fl_tensor *a, double s, bool reversed, fl_tensor **out) {
  return binary_scalar(op, a, s, false, reversed, out);
}
fl_status fl_binary_scalar_float(fl_binary_op op, const fl_tensor *a, double s, bool reversed, fl_tensor **out) {
  return binary_scalar(op, a, s, true, reversed, out);
}

fl_status fl_add(const fl_tensor *a, const fl_tensor *b, double alpha, fl_tensor **out) {
  if (alpha == 1) return fl_binary(FL_ADD, a, b, out);
  fl_tensor *t;
  FL_TRY(fl_binary_scalar(FL_MUL, b, alpha, false, &t));
  fl_status st = fl_binary(FL_ADD, a, t, out);
  fl_release(t);
  return st;
}

/* ---- where and friends ---- */
static fl_status where_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  fl_status st = FL_OK;
  fl_tensor *g = gout[0], *c, *z = NULL;
  FL_CHECK(fl_node_saved(n, 0, &c));
  FL_CHECK(scalar_like(g, 0, &z));
  if (n->in[1].node) FL_CHECK(fl_where(c, g, z, &gin[1]));
  if (n->in[2].node) FL_CHECK(fl_where(c, z, g, &gin[2]));
done:
  fl_release(z);
  return st;
}

fl_status fl_where(const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  FL_TRY(fl_check_same_device("where", cond, a));
  FL_TRY(fl_check_same_device("where", a, b));
  if (cond->dtype != FL_BOOL) {
    fl_desc d = fl_describe(cond);
    return fl_error(FL_EDTYPE, "where: condition must be a bool tensor, got %s", d.s);
  }
  int n1, nd;
  int64_t s1[FL_MAX_DIMS], shape[FL_MAX_DIMS];
  FL_TRY(fl_broadcast_shapes("where", cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1));
  FL_TRY(fl_broadcast_shapes("where", n1, s1, b->ndim, b->shape, &nd, shape));
  fl_dtype ct = fl_promote(a->dtype, b->dtype);
  fl_tensor *ca = NULL, *cb = NULL, *r = NULL, *e[3] = {NULL, NULL, NULL};
  fl_status st = FL_OK;
  FL_CHECK(fl_cast(a, ct, &ca));
  FL_CHECK(fl_cast(b, ct, &cb));
  FL_CHECK(fl_tensor_new(ct, a->storage->device, nd, shape, &r));
  e[0] = fl_expand_raw(cond, nd, shape), e[1] = fl_expand_raw(ca, nd, shape), e[2] = fl_expand_raw(cb, nd, shape);
  if (!e[0] || !e[1] || !e[2]) FL_CHECK(fl_error(FL_ENOMEM, "where: out of host memory"));
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch("where", FL_OP_WHERE, 0, 4, (const fl_tensor *const[]){r, e[0], e[1], e[2]}, &be));
    FL_CHECK(fl_error_context(be->where(r, e[0], e[1], e[2]), "where"));
  }
  if (fl_dtype_is_float(ct)) {
    fl_node *n;
    const fl_tensor *ins[3] = {NULL, ca, cb};
    FL_CHECK(fl_record("WhereBackward", where_backward, 3, ins, r, &n));
    if (n) FL_CHECK(fl_node_save(n, cond));
  }
  *out = r;
  r = NULL;
done:
  fl_release(ca), fl_release(cb), fl_release(r);
  for (int i = 0; i < 3; i++) fl_release(e[i]);
  return st;
}

fl_status fl_lerp(const fl_tensor *a, const fl_tensor *b, const fl_tensor *w, fl_tensor **out) {
  uint64_t mark = fl_node_mark();
  fl_tensor *d = NULL, *m = NULL;
  fl_status st = fl_binary(FL_SUB, b, a, &d);
  if (st == FL_OK) st = fl_binary(FL_MUL, w, d, &m);
  if (st == FL_OK) st = fl_binary(FL_ADD, a, m, out);
  fl_release(d);
  fl_release(m);
  return fl_name_composite(fl_error_context(st, "lerp"), mark, "LerpBackward", out);
}

fl_status fl_masked_fill(const fl_tensor *x, const fl_tensor *mask, double value, fl_tensor **out) {
  if (mask->dtype != FL_BOOL) {
    fl_desc d = fl_describe(mask);
    return fl_error(FL_EDTYPE, "masked_fill: mask must be a bool tensor, got %s", d.s);
  }
  uint64_t mark = fl_node_mark();
  fl_tensor *v;
  FL_TRY(scalar_like(x, value, &v));
  fl_status st = fl_where(mask, v, x, out);
  fl_release(v);
  return fl_name_composite(fl_error_context(st, "masked_fill"), mark, "MaskedFillBackward", out);
}

/* ---- in place ---- */
/* A float result cannot land in an integer destination. */
static fl_status check_storable(const char *name, const fl_tensor *dst, fl_binary_op op, fl_dtype ct) {
  if (!fl_dtype_is_float(ct) || fl_dtype_is_float(dst->dtype) || is_predicate(op)) return FL_OK;
  fl_desc a = fl_describe(dst);
  return fl_error(FL_EDTYPE, "%s: result type %s cannot be stored in %s", name, fl_dtype_name(ct), a.s);
}

/* The out-of-place op, then a copy into dst (predicates, other result dtypes, overlaps). */
static fl_status through_copy(fl_tensor *dst, fl_status (*op_fn)(const void *, fl_tensor **), const void *ud) {
  bool prev = fl_set_grad_enabled(false);
  fl_tensor *r = NULL;
  fl_status st = op_fn(ud, &r);
  fl_set_grad_enabled(prev);
  if (st == FL_OK) st = fl_copy_(dst, r);
  fl_release(r);
  return st;
}

typedef struct { fl_binary_op op; const fl_tensor *a, *b; double s; } inplace_args;
static fl_status binary_of(const void *ud, fl_tensor **r) {
  const inplace_args *p = ud;
  return fl_binary(p->op, p->a, p->b, r);
}
static fl_status binary_scalar_of(const void *ud, fl_tensor **r) {
  const inplace_args *p = ud;
  return fl_binary_scalar(p->op, p->a, p->s, false, r);
}

fl_status fl_binary_(fl_binary_op op, fl_tensor *dst, const fl_tensor *src) {
  if ((unsigned)op >= FL_NBINARY) return fl_error(FL_EINVAL, "binary: bad op %d", (int)op);
  char name[32];
  snprintf(name, sizeof name, "%s_", fl_binary_name(op));
  FL_TRY(fl_check_inplace(name, dst, src));
  FL_TRY(fl_check_same_device(name, dst, src));
  int nd;
  int64_t shape[FL_MAX_DIMS];
  FL_TRY(fl_broadcast_shapes(name, dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape));
  if (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * nd)) {
    fl_desc a = fl_describe(src), b = fl_describe(dst);
    return fl_error(FL_ESHAPE, "%s: %s does not broadcast to the destination %s", name, a.s, b.s);
  }
  fl_dtype ct = compute_dtype(op, dst->dtype, src->dtype);
  /* Straight into dst when each element reads only itself (the source, of any
   * dtype, is converted on load): a source that shares dst's memory under
   * another layout (x:add_(x:t())) takes the copying path. */
  fl_tensor e;
  fl_expand_header(src, nd, shape, &e);
  bool overlaps = fl_same_storage(dst, src) && !fl_same_layout(dst, &e);
  if (!is_predicate(op) && ct == dst->dtype && !overlaps) {
    const fl_backend *be;
    FL_TRY(fl_dispatch(name, FL_OP_BINARY, op, 3, (const fl_tensor *const[]){dst, dst, &e}, &be));
    FL_TRY(fl_error_context(be->binary(op, dst, dst, &e), name));
    fl_bump_version(dst);
    return FL_OK;
  }
  FL_TRY(check_storable(name, dst, op, ct));
  inplace_args p = {op, dst, src, 0};
  return through_copy(dst, binary_of, &p);
}

fl_status fl_binary_scalar_(fl_binary_op op, fl_tensor *dst, double s) {
  if ((unsigned)op >= FL_NBINARY) return fl_error(FL_EINVAL, "binary: bad op %d", (int)op);
  char name[32];
  snprintf(name, sizeof name, "%s_", fl_binary_name(op));
  FL_TRY(fl_check_inplace(name, dst, NULL));
  fl_dtype ct = compute_dtype(op, dst->dtype, scalar_dtype(op, dst, s, false));
  if (!is_predicate(op) && ct == dst->dtype) {
    if (fl_numel(dst)) {
      const fl_backend *be;
      FL_TRY(fl_dispatch(name, FL_OP_BINARY_SCALAR, op, 2, (const fl_tensor *const[]){dst, dst}, &be));
      FL_TRY(fl_error_context(be->binary_scalar(op, dst, dst, s, false, ct), name));
    }
    fl_bump_version(dst);
    return FL_OK;
  }
  FL_TRY(check_storable(name, dst, op, ct));
  inplace_args p = {op, dst, NULL, s};
  return through_copy(dst, binary_scalar_of, &p);
}

static fl_status unary_inplace(fl_unary_op op, fl_tensor *x, double p0, double p1) {
  if ((unsigned)op >= FL_NUNARY) return fl_error(FL_EINVAL, "unary: bad op %d", (int)op);
  char name[32];
  snprintf(name, sizeof name, "%s_", fl_unary_name(op));
  FL_TRY(fl_check_inplace(name, x, NULL));
  if (float_only_unary(op) && !fl_dtype_is_float(x->dtype)) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EDTYPE, "%s: expected a floating-point tensor, got %s", name, d.s);
  }
  if (fl_numel(x)) {
    const fl_backend *be;
    FL_TRY(fl_dispatch(name, FL_OP_UNARY, op, 2, (const fl_tensor *const[]){x, x}, &be));
    FL_TRY(fl_error_context(be->unary(op, x, x, p0, p1), name));
  }
  fl_bump_version(x);
  return FL_OK;
}

fl_status fl_unary_(fl_unary_op op, fl_tensor *x) { return unary_inplace(op, x, NAN, NAN); }
fl_status fl_clamp_(fl_tensor *x, double lo, double hi) { return unary_inplace(FL_CLAMP, x, lo, hi); }
