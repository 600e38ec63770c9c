/* Tensor methods: math ops (elementwise, reductions, matmul, indexing). */
#include "lflame.h"
#include <math.h>
#include <string.h>

/* ---- elementwise ---- */
#define UNARY(name, OP)                                 \
  static int m_##name(lua_State *L) {                  \
    fl_tensor *r;                                       \
    LFL_CHECK(L, fl_unary(OP, lfl_check(L, 1), &r));    \
    lfl_push(L, r);                                     \
    return 1;                                           \
  }                                                     \
  static int m_##name##_(lua_State *L) {               \
    LFL_CHECK(L, fl_unary_(OP, lfl_check(L, 1)));       \
    lua_settop(L, 1);                                   \
    return 1;                                           \
  }
UNARY(neg, FL_NEG)
UNARY(exp, FL_EXP)
UNARY(log, FL_LOG)
UNARY(sqrt, FL_SQRT)
UNARY(rsqrt, FL_RSQRT)
UNARY(abs, FL_ABS)
UNARY(sin, FL_SIN)
UNARY(cos, FL_COS)
UNARY(tanh, FL_TANH)
UNARY(sigmoid, FL_SIGMOID)
UNARY(relu, FL_RELU)
UNARY(silu, FL_SILU)
UNARY(sign, FL_SIGN)
UNARY(logical_not, FL_LOGICAL_NOT)
UNARY(floor, FL_FLOOR)
UNARY(ceil, FL_CEIL)
UNARY(round, FL_ROUND)
UNARY(trunc, FL_TRUNC)

static int m_gelu(lua_State *L) {
  const char *approx = luaL_optstring(L, 2, "none");
  fl_unary_op op = FL_GELU;
  if (!strcmp(approx, "tanh")) op = FL_GELU_TANH;
  else if (strcmp(approx, "none")) luaL_error(L, "gelu: approximate must be \"none\" or \"tanh\", got \"%s\"", approx);
  fl_tensor *r;
  LFL_CHECK(L, fl_unary(op, lfl_check(L, 1), &r));
  lfl_push(L, r);
  return 1;
}

static double opt_bound(lua_State *L, int idx) { return lua_isnoneornil(L, idx) ? NAN : luaL_checknumber(L, idx); }

static int m_clamp(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, fl_clamp(lfl_check(L, 1), opt_bound(L, 2), opt_bound(L, 3), &r));
  lfl_push(L, r);
  return 1;
}
static int m_clamp_(lua_State *L) {
  LFL_CHECK(L, fl_clamp_(lfl_check(L, 1), opt_bound(L, 2), opt_bound(L, 3)));
  lua_settop(L, 1);
  return 1;
}

/* a op b where either may be a number (the metamethods pass them in any order). */
/* t op number. A Lua float (2.0 too) makes an integer tensor's result f32,
 * as a Python float does in torch; a Lua integer keeps the tensor's dtype. */
static fl_status scalar_op(lua_State *L, fl_binary_op op, fl_tensor *t, int idx, bool reversed, fl_tensor **out) {
  if (lua_type(L, idx) != LUA_TNUMBER) /* named here: operators reach us as metamethods, which Lua leaves unnamed */
    luaL_error(L, "%s: expected a tensor or a number, got %s", fl_binary_name(op), luaL_typename(L, idx));
  double s = lua_tonumber(L, idx);
  return (lua_isinteger(L, idx) ? fl_binary_scalar : fl_binary_scalar_float)(op, t, s, reversed, out);
}

static int binary(lua_State *L, fl_binary_op op) {
  fl_tensor *a = lfl_test(L, 1), *b = lfl_test(L, 2), *r;
  fl_status st;
  if (a && b) st = fl_binary(op, a, b, &r);
  else if (a) st = scalar_op(L, op, a, 2, false, &r);
  else if (b) st = scalar_op(L, op, b, 1, true, &r);
  else return luaL_error(L, "%s: expected a tensor operand", fl_binary_name(op));
  LFL_CHECK(L, st);
  lfl_push(L, r);
  return 1;
}

/* The arithmetic metamethods (two operands, no alpha). */
int lfl_op_add(lua_State *L) { return binary(L, FL_ADD); }
int lfl_op_sub(lua_State *L) { return binary(L, FL_SUB); }
int lfl_op_mul(lua_State *L) { return binary(L, FL_MUL); }
int lfl_op_div(lua_State *L) { return binary(L, FL_DIV); }
int lfl_op_pow(lua_State *L) { return binary(L, FL_POW); }

static int binary_inplace(lua_State *L, fl_binary_op op) {
  fl_tensor *a = lfl_check(L, 1), *b = lfl_test(L, 2);
  LFL_CHECK(L, b ? fl_binary_(op, a, b) : fl_binary_scalar_(op, a, luaL_checknumber(L, 2)));
  lua_settop(L, 1);
  return 1;
}

#define BINARY(name, OP)                                            \
  static int m_##name(lua_State *L) { return binary(L, OP); }      \
  static int m_##name##_(lua_State *L) { return binary_inplace(L, OP); }
BINARY(sub, FL_SUB)
BINARY(mul, FL_MUL)
BINARY(div, FL_DIV)
BINARY(pow, FL_POW)
BINARY(maximum, FL_MAXIMUM)
BINARY(minimum, FL_MINIMUM)
BINARY(eq, FL_EQ)
BINARY(ne, FL_NE)
BINARY(lt, FL_LT)
BINARY(le, FL_LE)
BINARY(gt, FL_GT)
BINARY(ge, FL_GE)
BINARY(logical_and, FL_AND)
BINARY(logical_or, FL_OR)

/* add(u, alpha?) : self + alpha * u */
static int m_add(lua_State *L) {
  if (lua_isnoneornil(L, 3)) return binary(L, FL_ADD);
  double alpha = luaL_checknumber(L, 3); /* before the operand, which would leak on a raise */
  fl_tensor *a = lfl_check(L, 1), *b = lfl_operand(L, 2, a), *r;
  LFL_CHECK(L, fl_add(a, b, alpha, &r));
  lfl_push(L, r);
  return 1;
}
static int m_add_(lua_State *L) {
  if (lua_isnoneornil(L, 3)) return binary_inplace(L, FL_ADD);
  double alpha = luaL_checknumber(L, 3);
  fl_tensor *a = lfl_check(L, 1), *b = lfl_operand(L, 2, a), *s;
  LFL_CHECK(L, fl_binary_scalar(FL_MUL, b, alpha, false, &s));
  fl_status st = fl_binary_(FL_ADD, a, s);
  fl_release(s);
  LFL_CHECK(L, st);
  lua_settop(L, 1);
  return 1;
}

static int m_lerp(lua_State *L) {
  fl_tensor *a = lfl_check(L, 1), *b = lfl_operand(L, 2, a), *w = lfl_operand(L, 3, a), *r;
  LFL_CHECK(L, fl_lerp(a, b, w, &r));
  lfl_push(L, r);
  return 1;
}

static int m_masked_fill(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, fl_masked_fill(lfl_check(L, 1), lfl_check(L, 2), luaL_checknumber(L, 3), &r));
  lfl_push(L, r);
  return 1;
}

/* ---- reductions ---- */
/* (dims?, keepdim?) */
#define REDUCE(name, FN)                                                       \
  static int m_##name(lua_State *L) {                                          \
    fl_tensor *x = lfl_check(L, 1), *r;                                        \
    LFL_CHECK(L, FN(x, lfl_dims_mask(L, 2, x), lua_toboolean(L, 3), &r));      \
    lfl_push(L, r);                                                            \
    return 1;                                                                  \
  }
REDUCE(sum, fl_sum)
REDUCE(mean, fl_mean)
REDUCE(prod, fl_prod)
REDUCE(amax, fl_amax)
REDUCE(amin, fl_amin)

/* var/std(dims?, {correction = 1, keepdim}) ; also accepts (dims, keepdim) */
static int var_std(lua_State *L, bool std) {
  fl_tensor *x = lfl_check(L, 1), *r;
  uint32_t mask = lfl_dims_mask(L, 2, x);
  double corr = 1;
  bool keep = false;
  static const char *const keys[] = {"correction", "unbiased", "keepdim", NULL};
  if (lfl_options(L, lua_istable(L, 3) ? 3 : 0, keys)) {
    if (lfl_rawfield(L, 3, "correction") != LUA_TNIL) corr = luaL_checknumber(L, -1);
    if (lfl_rawfield(L, 3, "unbiased") != LUA_TNIL) corr = lua_toboolean(L, -1) ? 1 : 0;
    if (lfl_rawfield(L, 3, "keepdim") != LUA_TNIL) keep = lua_toboolean(L, -1);
    lua_pop(L, 3);
  } else {
    keep = lua_toboolean(L, 3);
  }
  LFL_CHECK(L, (std ? fl_std : fl_var)(x, mask, corr, keep, &r));
  lfl_push(L, r);
  return 1;
}
static int m_var(lua_State *L) { return var_std(L, false); }
static int m_std(lua_State *L) { return var_std(L, true); }

/* max/min(): value; max/min(dim, keepdim?): values, 1-based indices;
 * max(u): elementwise maximum, as torch allows. */
static int extreme(lua_State *L, bool is_max) {
  fl_tensor *x = lfl_check(L, 1), *v, *i;
  if (lfl_test(L, 2)) return binary(L, is_max ? FL_MAXIMUM : FL_MINIMUM);
  if (lua_isnoneornil(L, 2)) {
    LFL_CHECK(L, (is_max ? fl_amax : fl_amin)(x, 0, false, &v));
    lfl_push(L, v);
    return 1;
  }
  int dim = lfl_dim(L, 2, x, 0);
  LFL_CHECK(L, (is_max ? fl_max_dim_ex : fl_min_dim_ex)(x, dim, lua_toboolean(L, 3), 1, &v, &i)); /* 1-based */
  lfl_push(L, v);
  lfl_push(L, i);
  return 2;
}
static int m_max(lua_State *L) { return extreme(L, true); }
static int m_min(lua_State *L) { return extreme(L, false); }

static int arg_extreme(lua_State *L, bool is_max) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int dim = lua_isnoneornil(L, 2) ? FL_ALL_DIMS : lfl_dim(L, 2, x, 0);
  LFL_CHECK(L, (is_max ? fl_argmax_ex : fl_argmin_ex)(x, dim, lua_toboolean(L, 3), 1, &r)); /* 1-based */
  lfl_push(L, r);
  return 1;
}
static int m_argmax(lua_State *L) { return arg_extreme(L, true); }
static int m_argmin(lua_State *L) { return arg_extreme(L, false); }

static int m_norm(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  double p = 2;
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *s = lua_tostring(L, 2);
    if (!strcmp(s, "inf")) p = INFINITY;
    else if (!strcmp(s, "fro")) p = 2;
    else luaL_error(L, "norm: p must be a number, \"fro\" or \"inf\", got \"%s\"", s);
  } else if (!lua_isnoneornil(L, 2)) {
    p = luaL_checknumber(L, 2);
  }
  LFL_CHECK(L, fl_norm(x, p, lfl_dims_mask(L, 3, x), lua_toboolean(L, 4), &r));
  lfl_push(L, r);
  return 1;
}

static int m_cumsum(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  LFL_CHECK(L, fl_cumsum(x, lfl_dim(L, 2, x, 0), &r));
  lfl_push(L, r);
  return 1;
}

static int m_softmax(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  LFL_CHECK(L, fl_softmax(x, lfl_dim(L, 2, x, 0), &r));
  lfl_push(L, r);
  return 1;
}
static int m_log_softmax(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  LFL_CHECK(L, fl_log_softmax(x, lfl_dim(L, 2, x, 0), &r));
  lfl_push(L, r);
  return 1;
}

/* ---- linear algebra ---- */
static int m_matmul(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, fl_matmul(lfl_check(L, 1), lfl_check(L, 2), &r));
  lfl_push(L, r);
  return 1;
}
static int m_mm(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, fl_mm(lfl_check(L, 1), lfl_check(L, 2), &r));
  lfl_push(L, r);
  return 1;
}
static int m_bmm(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, fl_bmm(lfl_check(L, 1), lfl_check(L, 2), &r));
  lfl_push(L, r);
  return 1;
}

/* ---- indexing: Lua indices are 1-based; the kernels take the base (no pass over the index) ---- */
static fl_tensor *lua_index(lua_State *L, int idx) {
  fl_tensor *i = lfl_check(L, idx);
  if (fl_dtype_of(i) != FL_I64 && fl_dtype_of(i) != FL_I32) {
    char b[64];
    luaL_error(L, "index must be an i64 or i32 tensor, got %s%s", fl_dtype_name(fl_dtype_of(i)), fl_shape_str(i, b, sizeof b));
  }
  return i; /* borrowed */
}

static int m_index_select(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int dim = lfl_dim(L, 2, x, 0);
  LFL_CHECK(L, fl_index_select_ex(x, dim, lua_index(L, 3), 1, &r));
  lfl_push(L, r);
  return 1;
}

static int m_index_add_(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *src = lfl_check(L, 4);
  int dim = lfl_dim(L, 2, x, 0);
  double alpha = luaL_optnumber(L, 5, 1);
  LFL_CHECK(L, fl_index_add_ex_(x, dim, lua_index(L, 3), 1, src, alpha));
  lua_settop(L, 1);
  return 1;
}

/* index_add(dim, idx, src, alpha?): the out-of-place, differentiable form */
static int m_index_add(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *src = lfl_check(L, 4), *r;
  int dim = lfl_dim(L, 2, x, 0);
  double alpha = luaL_optnumber(L, 5, 1);
  LFL_CHECK(L, fl_index_add_ex(x, dim, lua_index(L, 3), 1, src, alpha, &r));
  lfl_push(L, r);
  return 1;
}

static int m_gather(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int dim = lfl_dim(L, 2, x, 0);
  LFL_CHECK(L, fl_gather_ex(x, dim, lua_index(L, 3), 1, &r));
  lfl_push(L, r);
  return 1;
}

static int m_scatter_add(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *src = lfl_check(L, 4), *r;
  int dim = lfl_dim(L, 2, x, 0);
  LFL_CHECK(L, fl_scatter_add_ex(x, dim, lua_index(L, 3), 1, src, &r));
  lfl_push(L, r);
  return 1;
}

/* With the most arguments each reads, self included. */
static const lfl_reg ops[] = {
#define U(n) {#n, m_##n, 1}, {#n "_", m_##n##_, 1}
    U(neg), U(exp), U(log), U(sqrt), U(rsqrt), U(abs), U(sin), U(cos), U(tanh), U(sigmoid), U(relu), U(silu),
    U(sign), U(logical_not), U(floor), U(ceil), U(round), U(trunc),
#undef U
#define B(n, k) {#n, m_##n, k}, {#n "_", m_##n##_, k}
    B(sub, 2), B(mul, 2), B(div, 2), B(pow, 2), B(maximum, 2), B(minimum, 2), B(eq, 2), B(ne, 2), B(lt, 2),
    B(le, 2), B(gt, 2), B(ge, 2), B(logical_and, 2), B(logical_or, 2), B(add, 3), B(clamp, 3),
#undef B
    {"gelu", m_gelu, 2}, {"lerp", m_lerp, 3}, {"masked_fill", m_masked_fill, 3}, {"sum", m_sum, 3},
    {"mean", m_mean, 3}, {"prod", m_prod, 3}, {"amax", m_amax, 3}, {"amin", m_amin, 3}, {"var", m_var, 3},
    {"std", m_std, 3}, {"max", m_max, 3}, {"min", m_min, 3}, {"argmax", m_argmax, 3}, {"argmin", m_argmin, 3},
    {"norm", m_norm, 4}, {"cumsum", m_cumsum, 2}, {"softmax", m_softmax, 2}, {"log_softmax", m_log_softmax, 2},
    {"matmul", m_matmul, 2}, {"mm", m_mm, 2}, {"bmm", m_bmm, 2}, {"index_select", m_index_select, 3},
    {"index_add_", m_index_add_, 5}, {"index_add", m_index_add, 5}, {"gather", m_gather, 3},
    {"scatter_add", m_scatter_add, 4}, {NULL, NULL, 0}};

void lfl_register_more(lua_State *L);
void lfl_register_ops(lua_State *L) {
  lfl_setfuncs(L, ops);
  lfl_register_more(L); /* lops_more.c */
}
