/* CPU unary ops. They compute in out's dtype (x's for logical_not): x is
 * converted on load as a cast to it would convert, into the compute type (f32
 * for f16/bf16/f32, f64, i64 for integers and bool), and the result stored as
 * out's dtype. The f32 path runs
 * the vector loops of cpu_vmath.h; ops without one fall back per element to
 * the f64 reference (fl_unary_f), so a new op works once it has a case there. */
#include "cpu.h"
#include "cpu_vmath.h"
#include <math.h>

typedef struct {
  fl_unary_op op;
  fl_ckind ck;
  fl_dtype out, in, ct;
  double p0, p1;
} un_ctx;

/* o[i] = op(x[i]) in f32; o may alias x. */
FL_CLONES static void unary_f32(const un_ctx *c, float *o, const float *x, int64_t n) {
  switch (c->op) {
    case FL_NEG: for (int64_t i = 0; i < n; i++) o[i] = -x[i]; return;
    case FL_ABS: for (int64_t i = 0; i < n; i++) o[i] = fv_abs(x[i]); return;
    case FL_RELU: for (int64_t i = 0; i < n; i++) o[i] = x[i] > 0 ? x[i] : 0.0f; return;
    case FL_SQRT: for (int64_t i = 0; i < n; i++) o[i] = sqrtf(x[i]); return;
    case FL_EXP: for (int64_t i = 0; i < n; i++) o[i] = fv_exp(x[i]); return;
    case FL_TANH: for (int64_t i = 0; i < n; i++) o[i] = fv_tanh(x[i]); return;
    case FL_SIGMOID: for (int64_t i = 0; i < n; i++) o[i] = fv_sigmoid(x[i]); return;
    case FL_SILU: for (int64_t i = 0; i < n; i++) o[i] = x[i] * fv_sigmoid(x[i]); return;
    case FL_GELU: for (int64_t i = 0; i < n; i++) o[i] = fv_gelu(x[i]); return;
    case FL_GELU_TANH: for (int64_t i = 0; i < n; i++) o[i] = fv_gelu_tanh(x[i]); return;
    default: /* the f64 reference per element */
      for (int64_t i = 0; i < n; i++) o[i] = (float)fl_unary_f(c->op, x[i], c->p0, c->p1);
  }
}

void fl_cpu_unary_f32(fl_unary_op op, float *o, const float *x, int64_t n) {
  un_ctx c = {.op = op};
  unary_f32(&c, o, x, n);
}

static void unary_f64(const un_ctx *c, double *o, const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) o[i] = fl_unary_f(c->op, x[i], c->p0, c->p1);
}

static void unary_i64(const un_ctx *c, int64_t *o, const int64_t *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) o[i] = fl_unary_i(c->op, x[i], c->p0, c->p1);
}

/* The run in blocks: load x into a compute buffer, apply, store to out. */
#define BLOCKED(T, LOAD, OP, STORE)                                   \
  do {                                                                \
    T buf[FL_CPU_BLOCK];                                              \
    for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {                   \
      int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;        \
      LOAD(buf, p[1] + i * s[1], s[1], m, c->in, c->ct);              \
      OP(c, buf, buf, m);                                             \
      STORE(p[0] + i * s[0], s[0], buf, m, c->out);                   \
    }                                                                 \
  } while (0)

static void unary_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  const un_ctx *c = vc;
  switch (c->ck) {
    case FL_CK_F32:
      if (c->in == FL_F32 && c->out == FL_F32 && s[0] == 4 && s[1] == 4) {
        unary_f32(c, (float *)p[0], (const float *)p[1], n);
        return;
      }
      BLOCKED(float, fl_load_f32_as, unary_f32, fl_store_f32);
      return;
    case FL_CK_F64: BLOCKED(double, fl_load_f64_as, unary_f64, fl_store_f64); return;
    case FL_CK_I64: BLOCKED(int64_t, fl_load_i64_as, unary_i64, fl_store_i64); return;
  }
}

/* Rough cost of one element in adds, for the thread split. */
static int unary_cost(fl_unary_op op) {
  switch (op) {
    case FL_NEG: case FL_ABS: case FL_RELU: case FL_SIGN: case FL_LOGICAL_NOT: case FL_CLAMP: return 1;
    case FL_EXP: case FL_SIGMOID: case FL_SILU: case FL_TANH: case FL_SQRT: case FL_RSQRT: return 4;
    default: return 16;
  }
}

fl_status fl_cpu_unary(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1) {
  fl_dtype ct = op == FL_LOGICAL_NOT ? x->dtype : out->dtype;
  un_ctx c = {op, fl_ckind_of(ct), out->dtype, x->dtype, ct, p0, p1};
  const fl_tensor *ts[2] = {out, x};
  fl_plan p;
  fl_plan_init(&p, 2, ts);
  fl_cpu_run(&p, unary_loop, &c, unary_cost(op));
  return FL_OK;
}
