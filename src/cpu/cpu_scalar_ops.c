/* One element of each elementwise op, in f64 and in int64: the f64 and integer
 * compute paths, and the fallback of the f32 path for ops without a vector
 * loop (cpu_unary.c, cpu_binary.c). Integer arithmetic wraps (no signed
 * overflow), as PyTorch's does. */
#include "cpu.h"
#include <math.h>

/* The tail-stable forms: 1 + erf(x / sqrt2) = erfc(-x / sqrt2) and
 * 1 + tanh(u) = 2 sigmoid(2u) lose no digits for negative x. */
static double gelu(double x) { return 0.5 * x * erfc(-x * 0.70710678118654752440); }
static const double K_TANH = 0.7978845608028654; /* sqrt(2/pi) */
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double gelu_tanh(double x) { return x * sigmoid(2 * K_TANH * (x + 0.044715 * x * x * x)); }

double fl_unary_f(fl_unary_op op, double x, double p0, double p1) {
  switch (op) {
    case FL_NEG: return -x;
    case FL_EXP: return exp(x);
    case FL_LOG: return log(x);
    case FL_SQRT: return sqrt(x);
    case FL_RSQRT: return 1.0 / sqrt(x);
    case FL_ABS: return fabs(x);
    case FL_SIN: return sin(x);
    case FL_COS: return cos(x);
    case FL_TANH: return tanh(x);
    case FL_SIGMOID: return sigmoid(x);
    case FL_RELU: return x > 0 ? x : 0;
    case FL_GELU: return gelu(x);
    case FL_GELU_TANH: return gelu_tanh(x);
    case FL_SILU: return x * sigmoid(x);
    case FL_SIGN: return (x > 0) - (x < 0);
    case FL_LOGICAL_NOT: return x == 0;
    case FL_CLAMP:
      if (!isnan(p0) && x < p0) x = p0;
      if (!isnan(p1) && x > p1) x = p1;
      return x;
    case FL_FLOOR: return floor(x);
    case FL_CEIL: return ceil(x);
    case FL_ROUND: return nearbyint(x); /* the default rounding mode: half to even, as torch.round */
    case FL_TRUNC: return trunc(x);
    default: return NAN;
  }
}

int64_t fl_unary_i(fl_unary_op op, int64_t x, double p0, double p1) {
  switch (op) {
    case FL_NEG: return fl_wsub(0, x);
    case FL_ABS: return x < 0 ? fl_wsub(0, x) : x;
    case FL_RELU: return x > 0 ? x : 0;
    case FL_SIGN: return (x > 0) - (x < 0);
    case FL_LOGICAL_NOT: return x == 0;
    case FL_CLAMP: /* bounds beyond int64 clamp nothing on that side */
      if (!isnan(p0) && (double)x < p0) x = p0 >= 9.2233720368547758e18 ? INT64_MAX : (int64_t)ceil(p0);
      if (!isnan(p1) && (double)x > p1) x = p1 < -9.2233720368547758e18 ? INT64_MIN : (int64_t)floor(p1);
      return x;
    case FL_FLOOR: case FL_CEIL: case FL_ROUND: case FL_TRUNC: return x; /* already integral */
    default: return fl_f2i(fl_unary_f(op, (double)x, p0, p1));
  }
}

double fl_binary_f(fl_binary_op op, double a, double b) {
  switch (op) {
    case FL_ADD: return a + b;
    case FL_SUB: return a - b;
    case FL_MUL: return a * b;
    case FL_DIV: return a / b;
    case FL_POW: return pow(a, b);
    case FL_MAXIMUM: return (isnan(a) || a > b) ? a : b;
    case FL_MINIMUM: return (isnan(a) || a < b) ? a : b;
    case FL_EQ: return a == b;
    case FL_NE: return a != b;
    case FL_LT: return a < b;
    case FL_LE: return a <= b;
    case FL_GT: return a > b;
    case FL_GE: return a >= b;
    case FL_AND: return a != 0 && b != 0;
    case FL_OR: return a != 0 || b != 0;
    case FL_RELU_BACKWARD: return b > 0 ? a : 0;
    case FL_GELU_BACKWARD: return a * (0.5 * (1.0 + erf(b * 0.70710678118654752440)) + b * exp(-0.5 * b * b) * 0.3989422804014327);
    case FL_GELU_TANH_BACKWARD: {
      double u = K_TANH * (b + 0.044715 * b * b * b), t = tanh(u);
      return a * (0.5 * (1.0 + t) + 0.5 * b * (1.0 - t * t) * K_TANH * (1.0 + 3 * 0.044715 * b * b));
    }
    case FL_SILU_BACKWARD: {
      double s = sigmoid(b);
      return a * s * (1.0 + b * (1.0 - s));
    }
    case FL_SIGMOID_BACKWARD: return a * b * (1.0 - b);
    case FL_TANH_BACKWARD: return a * (1.0 - b * b);
    default: return NAN;
  }
}

/* a^b by squaring, wrapping on overflow; negative exponents as integer division gives them. */
static int64_t ipow(int64_t a, int64_t b) {
  if (b < 0) return a == 1 ? 1 : (a == -1 ? (b & 1 ? -1 : 1) : 0);
  int64_t r = 1;
  while (b) {
    if (b & 1) r = fl_wmul(r, a);
    a = fl_wmul(a, a);
    b >>= 1;
  }
  return r;
}

int64_t fl_binary_i(fl_binary_op op, int64_t a, int64_t b) {
  switch (op) {
    case FL_ADD: return fl_wadd(a, b);
    case FL_SUB: return fl_wsub(a, b);
    case FL_MUL: return fl_wmul(a, b);
    case FL_DIV: return b == 0 ? 0 : (b == -1 ? fl_wsub(0, a) : a / b); /* INT64_MIN / -1 wraps */
    case FL_POW: return ipow(a, b);
    case FL_MAXIMUM: return a > b ? a : b;
    case FL_MINIMUM: return a < b ? a : b;
    case FL_EQ: return a == b;
    case FL_NE: return a != b;
    case FL_LT: return a < b;
    case FL_LE: return a <= b;
    case FL_GT: return a > b;
    case FL_GE: return a >= b;
    case FL_AND: return a && b;
    case FL_OR: return a || b;
    default: return fl_f2i(fl_binary_f(op, (double)a, (double)b));
  }
}
