/* CPU binary ops, tensor-tensor and tensor-scalar, and where. An op computes
 * in a compute dtype (fl_binary_compute); each operand is converted on load from
 * its own dtype as a cast to it would convert, into the compute type (f32 for
 * f16/bf16/f32, f64, i64), so mixed dtypes need no cast copy; a scalar is
 * rounded once to the compute dtype and read with stride 0. f32 runs typed loops (unit stride or broadcast operands);
 * ops without one fall back per element to the f64 reference (fl_binary_f). */
#include "cpu.h"
#include "cpu_vmath.h"
#include <string.h>

typedef union { float f; double d; int64_t i; } scalar_val;

typedef struct {
  fl_binary_op op;
  fl_ckind ck;
  fl_dtype ct;        /* the compute dtype */
  fl_dtype out, a, b; /* dtypes; b unused when one side is the scalar */
  int scalar;         /* 0: none; 1: b is the scalar; 2: a is (reversed) */
  scalar_val s;
  fl_dtype sdt;       /* the scalar's storage dtype: the compute type's */
} bin_ctx;

/* o[i] = EXPR(x, y) with x = a[i] or a[0] (da == 0), likewise y. */
#define BIN_LOOP(T, EXPR)                                                             \
  do {                                                                                \
    if (da && db) for (int64_t i = 0; i < n; i++) { T x = a[i], y = b[i]; o[i] = (EXPR); } \
    else if (da) { T y = b[0]; for (int64_t i = 0; i < n; i++) { T x = a[i]; o[i] = (EXPR); } } \
    else if (db) { T x = a[0]; for (int64_t i = 0; i < n; i++) { T y = b[i]; o[i] = (EXPR); } } \
    else { T x = a[0], y = b[0]; T v = (EXPR); for (int64_t i = 0; i < n; i++) o[i] = v; } \
    return;                                                                           \
  } while (0)

/* da, db: 1 for a unit-stride operand, 0 for a broadcast one. o may alias a or b. */
FL_CLONES static void binary_f32(fl_binary_op op, float *o, const float *a, int da, const float *b, int db, int64_t n) {
  switch (op) {
    case FL_ADD: BIN_LOOP(float, x + y);
    case FL_SUB: BIN_LOOP(float, x - y);
    case FL_MUL: BIN_LOOP(float, x * y);
    case FL_DIV: BIN_LOOP(float, x / y);
    case FL_MAXIMUM: BIN_LOOP(float, (x != x || x > y) ? x : y);
    case FL_MINIMUM: BIN_LOOP(float, (x != x || x < y) ? x : y);
    case FL_EQ: BIN_LOOP(float, x == y ? 1.0f : 0.0f);
    case FL_NE: BIN_LOOP(float, x != y ? 1.0f : 0.0f);
    case FL_LT: BIN_LOOP(float, x < y ? 1.0f : 0.0f);
    case FL_LE: BIN_LOOP(float, x <= y ? 1.0f : 0.0f);
    case FL_GT: BIN_LOOP(float, x > y ? 1.0f : 0.0f);
    case FL_GE: BIN_LOOP(float, x >= y ? 1.0f : 0.0f);
    case FL_RELU_BACKWARD: BIN_LOOP(float, y > 0 ? x : 0.0f);
    case FL_SIGMOID_BACKWARD: BIN_LOOP(float, x * y * (1.0f - y));
    case FL_TANH_BACKWARD: BIN_LOOP(float, x * (1.0f - y * y));
    case FL_GELU_BACKWARD: BIN_LOOP(float, x * fv_gelu_grad(y));
    default: BIN_LOOP(float, (float)fl_binary_f(op, x, y));
  }
}

static void binary_f64(fl_binary_op op, double *o, const double *a, int da, const double *b, int db, int64_t n) {
  switch (op) {
    case FL_ADD: BIN_LOOP(double, x + y);
    case FL_MUL: BIN_LOOP(double, x * y);
    default: BIN_LOOP(double, fl_binary_f(op, x, y));
  }
}

static void binary_i64(fl_binary_op op, int64_t *o, const int64_t *a, int da, const int64_t *b, int db, int64_t n) {
  BIN_LOOP(int64_t, fl_binary_i(op, x, y));
}

/* One run in blocks through compute buffers; a broadcast operand is loaded once. */
#define BLOCKED(T, LOAD, OP, STORE)                                                   \
  do {                                                                                \
    T ba[FL_CPU_BLOCK], bb[FL_CPU_BLOCK], bo[FL_CPU_BLOCK];                           \
    if (!sa) LOAD(ba, pa, 0, 1, ta, c->ct);                                           \
    if (!sb) LOAD(bb, pb, 0, 1, tb, c->ct);                                           \
    for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {                                   \
      int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;                        \
      if (sa) LOAD(ba, pa + i * sa, sa, m, ta, c->ct);                                \
      if (sb) LOAD(bb, pb + i * sb, sb, m, tb, c->ct);                                \
      OP(c->op, bo, ba, sa != 0, bb, sb != 0, m);                                     \
      STORE(p[0] + i * s[0], s[0], bo, m, c->out);                                    \
    }                                                                                 \
  } while (0)

static void binary_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  const bin_ctx *c = vc;
  const char *pa = p[1], *pb = c->scalar ? NULL : p[2];
  int64_t sa = s[1], sb = c->scalar ? 0 : s[2];
  fl_dtype ta = c->a, tb = c->b;
  if (c->scalar == 1) pb = (const char *)&c->s, tb = c->sdt;
  if (c->scalar == 2) pb = p[1], sb = s[1], tb = c->a, pa = (const char *)&c->s, sa = 0, ta = c->sdt;
  switch (c->ck) {
    case FL_CK_F32:
      if (c->out == FL_F32 && s[0] == 4 && ta == FL_F32 && tb == FL_F32 && (sa == 4 || sa == 0) && (sb == 4 || sb == 0)) {
        binary_f32(c->op, (float *)p[0], (const float *)pa, sa != 0, (const float *)pb, sb != 0, n);
        return;
      }
      BLOCKED(float, fl_load_f32_as, binary_f32, fl_store_f32);
      return;
    case FL_CK_F64: BLOCKED(double, fl_load_f64_as, binary_f64, fl_store_f64); return;
    case FL_CK_I64: BLOCKED(int64_t, fl_load_i64_as, binary_i64, fl_store_i64); return;
  }
}

static int binary_cost(fl_binary_op op) {
  return op <= FL_DIV || (op >= FL_MAXIMUM && op <= FL_OR) || op == FL_RELU_BACKWARD ? 1 : 16;
}

static fl_status run_binary(bin_ctx *c, int n, const fl_tensor *const *ts) {
  fl_plan p;
  fl_plan_init(&p, n, ts);
  fl_cpu_run(&p, binary_loop, c, binary_cost(c->op));
  return FL_OK;
}

fl_status fl_cpu_binary(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  fl_dtype ct = fl_binary_compute(op, out, a, b); /* the rule both backends apply */
  bin_ctx c = {.op = op, .ck = fl_ckind_of(ct), .ct = ct, .out = out->dtype, .a = a->dtype, .b = b->dtype};
  const fl_tensor *ts[3] = {out, a, b};
  return run_binary(&c, 3, ts);
}

fl_status fl_cpu_binary_scalar(fl_binary_op op, fl_tensor *out, const fl_tensor *a, double s, bool reversed,
                               fl_dtype compute) {
  bin_ctx c = {.op = op, .ck = fl_ckind_of(compute), .ct = compute, .out = out->dtype, .a = a->dtype,
               .scalar = reversed ? 2 : 1};
  char v[8]; /* s rounded once to the compute dtype, then held in the compute type */
  fl_store_f64(v, 0, &s, 1, compute);
  switch (c.ck) {
    case FL_CK_F32: fl_load_f32(&c.s.f, v, 0, 1, compute), c.sdt = FL_F32; break;
    case FL_CK_F64: fl_load_f64(&c.s.d, v, 0, 1, compute), c.sdt = FL_F64; break;
    case FL_CK_I64: fl_load_i64(&c.s.i, v, 0, 1, compute), c.sdt = FL_I64; break;
  }
  const fl_tensor *ts[2] = {out, a};
  return run_binary(&c, 2, ts);
}

/* where: a byte-exact select by element size (out, a, b share a dtype). */
#define WHERE_LOOP(T)                                                                                   \
  do {                                                                                                  \
    if (s[0] == sizeof(T) && s[1] == 1 && s[2] == sizeof(T) && s[3] == sizeof(T)) {                     \
      T *o = (T *)p[0];                                                                                 \
      const T *x = (const T *)p[2], *y = (const T *)p[3];                                               \
      const uint8_t *m = (const uint8_t *)p[1];                                                         \
      for (int64_t i = 0; i < n; i++) o[i] = m[i] ? x[i] : y[i];                                        \
    } else {                                                                                            \
      for (int64_t i = 0; i < n; i++)                                                                   \
        *(T *)(p[0] + i * s[0]) = *(p[1] + i * s[1]) ? *(const T *)(p[2] + i * s[2]) : *(const T *)(p[3] + i * s[3]); \
    }                                                                                                   \
  } while (0)

FL_CLONES static void where_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  switch (*(const size_t *)vc) {
    case 1: WHERE_LOOP(uint8_t); break;
    case 2: WHERE_LOOP(uint16_t); break;
    case 4: WHERE_LOOP(uint32_t); break;
    default: WHERE_LOOP(uint64_t); break;
  }
}

fl_status fl_cpu_where(fl_tensor *out, const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b) {
  size_t es = fl_dtype_size(out->dtype);
  const fl_tensor *ts[4] = {out, cond, a, b};
  fl_plan p;
  fl_plan_init(&p, 4, ts);
  fl_cpu_run(&p, where_loop, &es, 1);
  return FL_OK;
}
