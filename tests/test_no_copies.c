/* The backend contract's point, counted: a scalar op, a mixed-dtype op, an
 * integer tensor's exp, an index op with a 1-based i32 index and a 1-based
 * argmax each allocate only their result (no 0-dim scalar tensor, no cast
 * copy, no index pass), and matmul's backward allocates only the gradients.
 * Counts the CPU allocator's allocations around each call. */
#include "flame.h"
#include <stdio.h>

static int failures;
static void check(bool ok, const char *what) {
  printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) failures++;
}

static int64_t allocs(void) {
  fl_memory_stats s;
  fl_memory_stats_get(FL_CPU_DEVICE, &s);
  return s.num_allocs;
}

static fl_tensor *make(fl_dtype dt, int nd, const int64_t *shape, double v) {
  fl_opts o = fl_default_opts();
  o.dtype = dt;
  fl_tensor *t = NULL;
  if (fl_full(nd, shape, v, o, &t) != FL_OK) printf("make: %s\n", fl_last_error());
  return t;
}

int main(void) {
  int64_t s2[2] = {4, 5}, s1[1] = {3};
  fl_tensor *x = make(FL_F32, 2, s2, 1.5), *h = make(FL_BF16, 2, s2, 2), *i = make(FL_I32, 2, s2, 2);
  fl_tensor *idx = make(FL_I32, 1, s1, 1), *r = NULL, *v = NULL;
  int64_t n0 = allocs();
  check(fl_binary_scalar(FL_MUL, x, 2, false, &r) == FL_OK && allocs() - n0 == 1, "x * 2 allocates only its result");
  fl_release(r);
  n0 = allocs();
  check(fl_binary_scalar(FL_LT, i, 2.5, true, &r) == FL_OK && allocs() - n0 == 1, "2.5 < i32 allocates only its result");
  fl_release(r);
  n0 = allocs();
  check(fl_binary_scalar_float(FL_MUL, i, 2.0, false, &r) == FL_OK && fl_dtype_of(r) == FL_F32 && allocs() - n0 == 1,
        "i32 * 2.0 (a float number) allocates only its f32 result (no cast copy)");
  fl_release(r);
  n0 = allocs();
  check(fl_binary(FL_ADD, h, x, &r) == FL_OK && fl_dtype_of(r) == FL_F32 && allocs() - n0 == 1,
        "bf16 + f32 allocates only its f32 result (no cast copy)");
  fl_release(r);
  n0 = allocs();
  check(fl_binary_(FL_ADD, x, h) == FL_OK && allocs() - n0 == 0, "f32 += bf16 in place allocates nothing");
  n0 = allocs();
  check(fl_unary(FL_EXP, i, &r) == FL_OK && fl_dtype_of(r) == FL_F32 && allocs() - n0 == 1,
        "exp of an i32 tensor allocates only its f32 result");
  fl_release(r);
  n0 = allocs();
  check(fl_index_select_ex(x, 0, idx, 1, &r) == FL_OK && allocs() - n0 == 1,
        "index_select with a 1-based i32 index allocates only its result");
  fl_release(r);
  n0 = allocs();
  check(fl_argmax_ex(x, 1, false, 1, &r) == FL_OK && allocs() - n0 == 1, "a 1-based argmax allocates only its result");
  fl_release(r);
  n0 = allocs();
  check(fl_max_dim_ex(x, 1, false, 1, &v, &r) == FL_OK && allocs() - n0 == 2,
        "a 1-based max(dim) allocates only its values and indices");
  fl_release(v), fl_release(r);
  /* matmul's backward: the transposes are GEMM flags, not copies */
  int64_t sa[2] = {6, 7}, sb[2] = {7, 3};
  int64_t sy[2] = {6, 3};
  fl_tensor *a = make(FL_F32, 2, sa, 0.5), *b = make(FL_F32, 2, sb, 0.25), *gy = make(FL_F32, 2, sy, 1), *y = NULL;
  fl_set_requires_grad(a, true), fl_set_requires_grad(b, true);
  fl_status st = fl_matmul(a, b, &y);
  n0 = allocs();
  if (st == FL_OK) st = fl_backward(y, gy, false);
  check(st == FL_OK && allocs() - n0 == 2, "matmul backward allocates the two gradients only");
  printf("     (%lld allocations)\n", (long long)(allocs() - n0));
  fl_release(a), fl_release(b), fl_release(y), fl_release(gy);
  fl_release(x), fl_release(h), fl_release(i), fl_release(idx);
  printf("%d failed\n", failures);
  return failures != 0;
}
