/* C tests of the core through the public API (include/flame.h) only, without Lua:
 * lifetime, views, broadcasting, autograd by hand, errors, f16/bf16 conversion
 * edge cases and reference counting. One line per check; exit status 1 on any
 * failure. Clean under `valgrind --leak-check=full --error-exitcode=1`. */
#include "check.h"

static void test_create_free(void) {
  int64_t base = live_bytes();
  fl_tensor *t = NULL;
  int64_t shape[2] = {2, 3};
  OK(fl_zeros(2, shape, opts(FL_F32, false), &t));
  CHECK(t && fl_ndim(t) == 2 && fl_shape(t)[0] == 2 && fl_shape(t)[1] == 3, "zeros: shape [2, 3]");
  CHECK(fl_numel(t) == 6 && fl_dtype_of(t) == FL_F32, "zeros: 6 elements of f32");
  CHECK(fl_device_of(t).type == FL_CPU && fl_is_contiguous(t), "zeros: contiguous on cpu");
  CHECK(fl_strides(t)[0] == 3 && fl_strides(t)[1] == 1 && fl_offset(t) == 0, "zeros: row-major strides");
  CHECK(live_bytes() - base == 24, "memory stats count the 24 bytes held");
  double zeros[6] = {0};
  CHECK(values_are(t, zeros, 6, 0), "zeros: all zero");
  fl_release(t);
  CHECK(live_bytes() == base, "release frees the storage");

  fl_tensor *s = NULL, *f = NULL, *e = NULL;
  OK(fl_scalar(2.5, opts(FL_F64, false), &s));
  CHECK(s && fl_ndim(s) == 0 && fl_numel(s) == 1, "scalar: 0-dim with one element");
  double v = 0;
  OK(fl_item(s, &v));
  CHECK(v == 2.5, "item reads 2.5 back");
  OK(fl_full(2, shape, 7, opts(FL_I32, false), &f));
  double sevens[6] = {7, 7, 7, 7, 7, 7};
  CHECK(values_are(f, sevens, 6, 0), "full: i32 sevens");
  int64_t empty_shape[2] = {0, 3};
  OK(fl_empty(2, empty_shape, opts(FL_F32, false), &e));
  CHECK(e && fl_numel(e) == 0, "empty [0, 3] has no elements");
  fl_release(s);
  fl_release(f);
  fl_release(e);
  fl_release(NULL); /* a no-op */
  CHECK(live_bytes() == base, "all freed");
}

static void test_views(void) {
  int64_t base = live_bytes();
  double v[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  fl_tensor *x = from(v, 2, shape, FL_F32, false), *tr = NULL, *row = NULL, *flat = NULL, *col = NULL;
  OK(fl_transpose(x, 0, 1, &tr));
  CHECK(tr && fl_same_storage(x, tr) && !fl_is_contiguous(tr), "transpose shares storage, not contiguous");
  double tv[6] = {1, 4, 2, 5, 3, 6};
  CHECK(values_are(tr, tv, 6, 0), "transpose reads the values transposed");
  OK(fl_select(x, 0, 1, &row));
  CHECK(row && fl_same_storage(x, row) && fl_offset(row) == 3, "select(0, 1) is a view at offset 3");
  int64_t six[1] = {6};
  OK(fl_view(x, 1, six, &flat));
  CHECK(flat && fl_same_storage(x, flat), "view shares storage");
  OK(fl_narrow(x, 1, 1, 1, &col));
  OK(fl_fill_(col, 9));
  double after[6] = {1, 9, 3, 4, 9, 6};
  CHECK(values_are(x, after, 6, 0), "a write through a narrow view shows in the base");
  CHECK(values_are(flat, after, 6, 0), "and in every other view of the storage");
  fl_tensor *bad = NULL;
  CHECK(fl_view(tr, 1, six, &bad) == FL_ESHAPE && bad == NULL, "view of a non-contiguous tensor: FL_ESHAPE");
  CHECK(contains(fl_last_error(), "view") && contains(fl_last_error(), "contiguous"), "  message: %s", fl_last_error());
  /* a view outlives its base */
  fl_release(x);
  CHECK(values_are(flat, after, 6, 0), "a view keeps the storage alive after its base is released");
  fl_release(tr);
  fl_release(row);
  fl_release(col);
  CHECK(live_bytes() - base == 24, "storage still held by the last view");
  fl_release(flat);
  CHECK(live_bytes() == base, "the last view frees the storage");
}

static void test_broadcast_add(void) {
  double av[2] = {10, 20}, bv[3] = {1, 2, 3};
  int64_t as[2] = {2, 1}, bs[1] = {3};
  fl_tensor *a = from(av, 2, as, FL_F32, false), *b = from(bv, 1, bs, FL_F64, false), *c = NULL, *d = NULL;
  OK(fl_binary(FL_ADD, a, b, &c));
  CHECK(c && fl_ndim(c) == 2 && fl_shape(c)[0] == 2 && fl_shape(c)[1] == 3, "[2, 1] + [3] broadcasts to [2, 3]");
  CHECK(c && fl_dtype_of(c) == FL_F64, "f32 + f64 promotes to f64");
  double want[6] = {11, 12, 13, 21, 22, 23};
  CHECK(values_are(c, want, 6, 0), "broadcast add values");
  OK(fl_add(a, b, -2, &d));
  double want2[6] = {8, 6, 4, 18, 16, 14};
  CHECK(values_are(d, want2, 6, 0), "add with alpha = -2");
  fl_release(a);
  fl_release(b);
  fl_release(c);
  fl_release(d);
}

static int hook_calls, hook_frees;
static fl_status double_hook(void *ud, fl_tensor *grad, fl_tensor **replace) {
  hook_calls++;
  return fl_binary_scalar(FL_MUL, grad, *(double *)ud, false, replace);
}
static void count_free(void *ud) { hook_frees++; }
static fl_status failing_hook(void *ud, fl_tensor *grad, fl_tensor **replace) {
  return fl_error(FL_EINVAL, "test hook refuses");
}

static void test_autograd(void) {
  int64_t base = live_bytes();
  /* y = x*x + 3x ; dy/dx = 2x + 3, through a diamond on x */
  double xv[3] = {1, 2, 3};
  int64_t s3[1] = {3};
  fl_tensor *x = from(xv, 1, s3, FL_F32, true), *sq = NULL, *lin = NULL, *y = NULL, *l = NULL;
  CHECK(x && fl_requires_grad(x) && fl_is_leaf(x) && fl_grad(x) == NULL, "x is a leaf that requires grad");
  OK(fl_binary(FL_MUL, x, x, &sq));
  OK(fl_binary_scalar(FL_MUL, x, 3, false, &lin));
  OK(fl_binary(FL_ADD, sq, lin, &y));
  OK(fl_sum(y, 0, false, &l));
  CHECK(!fl_is_leaf(l) && fl_grad_fn_name(l) && !strcmp(fl_grad_fn_name(l), "SumBackward"), "loss is produced by SumBackward");
  OK(fl_backward(l, NULL, true));
  double g1[3] = {5, 7, 9};
  CHECK(fl_grad(x) && values_are(fl_grad(x), g1, 3, 1e-6), "dy/dx = 2x + 3");
  OK(fl_backward(l, NULL, false));
  double g2[3] = {10, 14, 18};
  CHECK(values_are(fl_grad(x), g2, 3, 1e-6), "a second backward (retained graph) accumulates");
  CHECK(fl_backward(l, NULL, false) == FL_EAUTOGRAD, "a third backward, graph freed: FL_EAUTOGRAD");
  CHECK(contains(fl_last_error(), "second time") && contains(fl_last_error(), "retain_graph"), "  message: %s",
        fl_last_error());
  CHECK(values_are(fl_grad(x), g2, 3, 1e-6), "the failed backward left .grad alone");
  CHECK(fl_backward(y, NULL, false) == FL_EINVAL && contains(fl_last_error(), "single-element"),
        "implicit grad of a 3-element output: %s", fl_last_error());
  OK(fl_set_grad(x, NULL));
  CHECK(fl_grad(x) == NULL, "set_grad(NULL) clears .grad");
  fl_release(sq);
  fl_release(lin);
  fl_release(y);
  fl_release(l);

  /* two inputs with broadcasting: l = sum(a * b), a [2, 1], b [3] */
  double av[2] = {1, 2}, bv[3] = {3, 4, 5};
  int64_t as[2] = {2, 1};
  fl_tensor *a = from(av, 2, as, FL_F32, true), *b = from(bv, 1, s3, FL_F64, true), *ab = NULL, *m = NULL;
  OK(fl_binary(FL_MUL, a, b, &ab));
  OK(fl_sum(ab, 0, false, &m));
  fl_tensor *grads[2] = {NULL, NULL}, *ins[2] = {a, b};
  OK(fl_autograd_grad(1, &m, NULL, 2, ins, true, grads));
  double ga[2] = {12, 12}, gb[3] = {3, 3, 3};
  CHECK(grads[0] && fl_ndim(grads[0]) == 2 && fl_shape(grads[0])[1] == 1 && fl_dtype_of(grads[0]) == FL_F32,
        "broadcast gradient lands with a's shape [2, 1] and dtype f32");
  CHECK(values_are(grads[0], ga, 2, 1e-9) && values_are(grads[1], gb, 3, 1e-9), "d/da = sum(b), d/db = sum(a)");
  CHECK(fl_grad(a) == NULL && fl_grad(b) == NULL, "autograd_grad leaves .grad untouched");
  fl_release(grads[0]);
  fl_release(grads[1]);

  /* hooks: a replacement doubles a's gradient; free_ud runs when a dies */
  static double two = 2;
  OK(fl_register_hook(a, double_hook, &two, count_free));
  OK(fl_backward(m, NULL, true));
  double ga2[2] = {24, 24};
  CHECK(hook_calls == 1 && values_are(fl_grad(a), ga2, 2, 1e-9), "a hook's replacement becomes the leaf's gradient");
  OK(fl_register_hook(b, failing_hook, NULL, count_free));
  CHECK(fl_backward(m, NULL, true) == FL_EINVAL && contains(fl_last_error(), "test hook refuses"),
        "a failing hook aborts backward with its status and message");
  CHECK(fl_grad_enabled(), "grad mode is restored after a failed backward");

  /* in place on a saved tensor, then backward */
  fl_tensor *w = from(bv, 1, s3, FL_F32, false), *p = NULL, *ps = NULL;
  OK(fl_binary(FL_MUL, x, w, &p));
  OK(fl_sum(p, 0, false, &ps));
  OK(fl_binary_scalar_(FL_ADD, w, 1));
  CHECK(fl_backward(ps, NULL, false) == FL_EAUTOGRAD && contains(fl_last_error(), "in-place"),
        "backward after an in-place write to a saved tensor: %s", fl_last_error());
  CHECK(fl_binary_scalar_(FL_ADD, x, 1) == FL_EAUTOGRAD && contains(fl_last_error(), "leaf"),
        "in place on a leaf that requires grad: %s", fl_last_error());

  /* grad mode off records nothing */
  bool prev = fl_set_grad_enabled(false);
  fl_tensor *q = NULL;
  OK(fl_binary(FL_MUL, x, x, &q));
  CHECK(prev && q && !fl_requires_grad(q) && fl_grad_fn_name(q) == NULL, "with grad mode off, results do not require grad");
  fl_set_grad_enabled(true);

  /* release in an unusual order: inputs before the graph that uses them */
  fl_release(a);
  fl_release(b);
  CHECK(hook_frees == 0, "releasing the leaves does not free their hooks while the graph holds them (%d freed)", hook_frees);
  fl_release(ab);
  fl_release(m);
  CHECK(hook_frees == 2, "releasing the graph frees both hooks' user data");
  fl_release(x);
  fl_release(w);
  fl_release(p);
  fl_release(ps);
  fl_release(q);
  CHECK(live_bytes() == base, "every graph, gradient and saved tensor is freed");
}

static void test_errors(void) {
  int64_t s23[2] = {2, 3}, s45[2] = {4, 5};
  fl_tensor *a = NULL, *b = NULL, *out = (fl_tensor *)&out;
  OK(fl_zeros(2, s23, opts(FL_F32, false), &a));
  OK(fl_zeros(2, s45, opts(FL_F32, false), &b));
  fl_status st = fl_binary(FL_ADD, a, b, &out);
  CHECK(st == FL_ESHAPE, "add of [2, 3] and [4, 5]: FL_ESHAPE (%s)", fl_status_name(st));
  const char *msg = fl_last_error();
  CHECK(contains(msg, "add") && contains(msg, "[2, 3]") && contains(msg, "[4, 5]"), "  message names op and shapes: %s", msg);
  CHECK(out == (fl_tensor *)&out, "a failed call leaves *out alone");
  st = fl_matmul(a, b, &out);
  CHECK(st == FL_ESHAPE && contains(fl_last_error(), "matmul") && contains(fl_last_error(), "[2, 3]"),
        "matmul [2, 3] x [4, 5]: %s", fl_last_error());
  fl_dtype dt;
  CHECK(fl_dtype_parse("f8", &dt) == FL_EDTYPE && contains(fl_last_error(), "f8"), "bad dtype name: %s", fl_last_error());
  CHECK(fl_dtype_parse("bfloat16", &dt) == FL_OK && dt == FL_BF16, "long dtype names parse");
  fl_device dev;
  CHECK(fl_device_parse("tpu", &dev) == FL_EDEVICE && contains(fl_last_error(), "tpu"), "bad device: %s", fl_last_error());
  if (!fl_device_available(FL_CUDA)) {
    fl_opts o = opts(FL_F32, false);
    o.device.type = FL_CUDA;
    st = fl_zeros(2, s23, o, &out);
    CHECK(st == FL_EDEVICE && contains(fl_last_error(), "cuda"), "a cuda tensor without CUDA: %s", fl_last_error());
  }
  int64_t neg[2] = {2, -1}, huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
  CHECK(fl_zeros(2, neg, opts(FL_F32, false), &out) == FL_ESHAPE && contains(fl_last_error(), "negative"),
        "negative size: %s", fl_last_error());
  CHECK(fl_zeros(2, huge, opts(FL_F32, false), &out) == FL_ESHAPE && contains(fl_last_error(), "too large"),
        "a byte size that overflows: %s", fl_last_error());
  CHECK(fl_select(a, 0, 2, &out) == FL_EINDEX && contains(fl_last_error(), "select"), "select out of range: %s",
        fl_last_error());
  double idxv[1] = {5};
  int64_t s1[1] = {1};
  fl_tensor *idx = from(idxv, 1, s1, FL_I64, false);
  CHECK(fl_index_select(a, 1, idx, &out) == FL_EINDEX && contains(fl_last_error(), "index_select"),
        "index_select out of range: %s", fl_last_error());
  int64_t two_unknown[2] = {-1, -1};
  CHECK(fl_reshape(a, 2, two_unknown, &out) == FL_ESHAPE && contains(fl_last_error(), "-1"), "reshape with two -1: %s",
        fl_last_error());
  CHECK(fl_expand(a, 2, s45, &out) == FL_ESHAPE && contains(fl_last_error(), "expand"), "expand [2, 3] to [4, 5]: %s",
        fl_last_error());
  CHECK(fl_set_requires_grad(idx, true) == FL_EDTYPE, "an i64 tensor cannot require grad: %s", fl_last_error());
  CHECK(out == (fl_tensor *)&out, "no failed call wrote *out");
  CHECK(!strcmp(fl_status_name(FL_EINDEX), "index out of range"), "status names");
  fl_release(a);
  fl_release(b);
  fl_release(idx);
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void test_half(void) {
  /* f16: exact values, rounding to nearest even, overflow, NaN, Inf, subnormals */
  CHECK(fl_f32_to_f16(1.0f) == 0x3C00, "f16(1) = 0x3C00");
  CHECK(fl_f32_to_f16(-2.0f) == 0xC000, "f16(-2) = 0xC000");
  CHECK(fl_f32_to_f16(-0.0f) == 0x8000, "f16(-0) keeps the sign");
  CHECK(fl_f32_to_f16(65504.0f) == 0x7BFF, "f16(65504) is the largest finite");
  CHECK(fl_f32_to_f16(65519.0f) == 0x7BFF, "f16(65519) rounds down to 65504");
  CHECK(fl_f32_to_f16(65520.0f) == 0x7C00, "f16(65520) rounds up to Inf");
  CHECK(fl_f32_to_f16(1e10f) == 0x7C00 && fl_f32_to_f16(-1e10f) == 0xFC00, "f16 overflow is signed Inf");
  CHECK(fl_f32_to_f16(1.0f + 0x1p-11f) == 0x3C00, "f16: 1 + 2^-11 (halfway) rounds to even 1");
  CHECK(fl_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02, "f16: 1 + 3*2^-11 (halfway) rounds to even 0x3C02");
  CHECK(fl_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3C01, "f16: just above halfway rounds up");
  CHECK(fl_f32_to_f16(INFINITY) == 0x7C00 && fl_f32_to_f16(-INFINITY) == 0xFC00, "f16(+-Inf)");
  uint16_t hn = fl_f32_to_f16(NAN);
  CHECK((hn & 0x7C00) == 0x7C00 && (hn & 0x03FF) != 0, "f16(NaN) is a NaN (0x%04X)", hn);
  uint16_t hn2 = fl_f32_to_f16(bits_f32(0x7F800001u)); /* payload only in bits f16 drops */
  CHECK((hn2 & 0x7C00) == 0x7C00 && (hn2 & 0x03FF) != 0, "f16 of a low-payload NaN stays NaN, not Inf (0x%04X)", hn2);
  CHECK(isnan(fl_f16_to_f32(0x7E00)) && isnan(fl_f16_to_f32(0xFC01)), "f16 NaN patterns read back as NaN");
  CHECK(isinf(fl_f16_to_f32(0x7C00)) && fl_f16_to_f32(0xFC00) < 0, "f16 Inf patterns read back as Inf");
  CHECK(fl_f32_to_f16(0x1p-24f) == 0x0001, "f16: 2^-24 is the smallest subnormal");
  CHECK(fl_f32_to_f16(0x1p-25f) == 0x0000, "f16: 2^-25 (halfway to the smallest) rounds to even 0");
  CHECK(fl_f32_to_f16(0x1.8p-25f) == 0x0001, "f16: 0.75 * 2^-24 rounds up to the smallest subnormal");
  CHECK(fl_f32_to_f16(2.5f * 0x1p-24f) == 0x0002, "f16 subnormal halfway 2.5 ulp rounds to even 2");
  CHECK(fl_f32_to_f16(3.5f * 0x1p-24f) == 0x0004, "f16 subnormal halfway 3.5 ulp rounds to even 4");
  CHECK(fl_f32_to_f16(1023.0f * 0x1p-24f) == 0x03FF, "f16: the largest subnormal");
  CHECK(fl_f32_to_f16(1023.5f * 0x1p-24f) == 0x0400, "f16: rounding up across into the smallest normal");
  CHECK(fl_f32_to_f16(0x1p-14f) == 0x0400, "f16: 2^-14 is the smallest normal");
  CHECK(fl_f32_to_f16(-0x1p-24f) == 0x8001, "f16: negative subnormal");
  CHECK(fl_f32_to_f16(0x1p-30f) == 0x0000 && fl_f32_to_f16(-0x1p-30f) == 0x8000, "f16 underflow keeps the sign");
  CHECK(fl_f16_to_f32(0x0001) == 0x1p-24f && fl_f16_to_f32(0x03FF) == 1023.0f * 0x1p-24f, "f16 subnormals read back exactly");
  CHECK(fl_f16_to_f32(0x7BFF) == 65504.0f && fl_f16_to_f32(0x3C01) == 1.0f + 0x1p-10f, "f16 normals read back exactly");
  int roundtrip_ok = 1;
  for (uint32_t h = 0; h < 0x10000; h++) {
    uint16_t x = (uint16_t)h;
    bool nan = (x & 0x7C00) == 0x7C00 && (x & 0x3FF);
    if (!nan && fl_f32_to_f16(fl_f16_to_f32(x)) != x) roundtrip_ok = 0;
  }
  CHECK(roundtrip_ok, "every non-NaN f16 survives f16 -> f32 -> f16");

  /* bf16 */
  CHECK(fl_f32_to_bf16(1.0f) == 0x3F80, "bf16(1) = 0x3F80");
  CHECK(fl_f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80, "bf16: 1 + 2^-8 (halfway) rounds to even 1");
  CHECK(fl_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82, "bf16: 1 + 3*2^-8 (halfway) rounds to even 0x3F82");
  CHECK(fl_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81, "bf16: just above halfway rounds up");
  CHECK(fl_f32_to_bf16(INFINITY) == 0x7F80 && fl_f32_to_bf16(-INFINITY) == 0xFF80, "bf16(+-Inf)");
  CHECK(fl_f32_to_bf16(bits_f32(0x7F7FFFFFu)) == 0x7F80, "bf16: FLT_MAX rounds to Inf");
  uint16_t bn = fl_f32_to_bf16(bits_f32(0x7F800001u));
  CHECK((bn & 0x7F80) == 0x7F80 && (bn & 0x7F) != 0, "bf16 of a low-payload NaN stays NaN, not Inf (0x%04X)", bn);
  CHECK(isnan(fl_bf16_to_f32(fl_f32_to_bf16(-NAN))), "bf16(NaN) reads back as NaN");
  CHECK(fl_f32_to_bf16(bits_f32(0x00010000u)) == 0x0001, "bf16: an f32 subnormal keeps its top bits");
  CHECK(fl_f32_to_bf16(bits_f32(0x00008000u)) == 0x0000, "bf16: subnormal halfway rounds to even 0");
  CHECK(fl_f32_to_bf16(bits_f32(0x00018000u)) == 0x0002, "bf16: subnormal halfway rounds to even 2");
  CHECK(fl_f32_to_bf16(-0.0f) == 0x8000, "bf16(-0) keeps the sign");
  CHECK(f32_bits(fl_bf16_to_f32(0x3F81)) == 0x3F810000u, "bf16 -> f32 is exact");

  /* through tensors: the conversion the casts use */
  double hv[5] = {1.0 + 0x1p-11, 65520, 0x1p-25, -0.0, 0x1.8p-25};
  double hw[5] = {1.0, INFINITY, 0, -0.0, 0x1p-24};
  int64_t s5[1] = {5};
  fl_tensor *h = from(hv, 1, s5, FL_F16, false), *bf = NULL;
  double got[5];
  CHECK(h && fl_to_doubles(h, got) == FL_OK && got[0] == hw[0] && isinf(got[1]) && got[2] == 0 && signbit(got[3]) &&
            got[4] == hw[4],
        "f16 tensor from doubles rounds like fl_f32_to_f16");
  OK(fl_cast(h, FL_BF16, &bf));
  CHECK(bf && fl_to_doubles(bf, got) == FL_OK && got[0] == 1.0 && isinf(got[1]), "f16 -> bf16 cast keeps Inf");
  fl_release(h);
  fl_release(bf);
}

static void test_refcount(void) {
  int64_t base = live_bytes();
  int64_t s[1] = {1024};
  fl_tensor *t = NULL;
  OK(fl_ones(1, s, opts(FL_F32, false), &t));
  fl_tensor *r = fl_retain(t);
  CHECK(r == t, "retain returns its argument");
  fl_release(t);
  CHECK(live_bytes() - base == 4096, "one reference left keeps the storage");
  fl_tensor *d = NULL, *c = NULL, *same = NULL;
  OK(fl_detach(r, &d));
  OK(fl_contiguous(r, &same));
  CHECK(same == r, "contiguous of a contiguous tensor is the tensor itself, retained");
  OK(fl_clone(r, &c));
  CHECK(!fl_same_storage(c, r) && fl_same_storage(d, r), "clone copies, detach shares");
  fl_release(r);
  fl_release(same);
  fl_release(d);
  CHECK(live_bytes() - base == 4096, "only the clone's storage is left");
  fl_release(c);
  /* a leaf with a gradient and a graph, released leaf first */
  fl_tensor *x = NULL, *y = NULL, *l = NULL;
  OK(fl_ones(1, s, opts(FL_F32, true), &x));
  OK(fl_unary(FL_EXP, x, &y));
  OK(fl_sum(y, 0, false, &l));
  OK(fl_backward(l, NULL, false));
  OK(fl_retain_grad(y));
  fl_release(x);
  fl_release(y);
  fl_release(l);
  fl_memory_stats st;
  OK(fl_memory_stats_get(FL_CPU_DEVICE, &st));
  CHECK(st.allocated == base && st.num_allocs >= st.num_frees, "all storage returned (%lld allocs, %lld frees)",
        (long long)st.num_allocs, (long long)st.num_frees);
}

int main(void) {
  test_create_free();
  test_views();
  test_broadcast_add();
  test_autograd();
  test_errors();
  test_half();
  test_refcount();
  fl_memory_stats st;
  if (fl_memory_stats_get(FL_CPU_DEVICE, &st) == FL_OK)
    CHECK(st.allocated == 0 && st.num_allocs == st.num_frees, "at exit: nothing allocated (%lld allocs, %lld frees)",
          (long long)st.num_allocs, (long long)st.num_frees);
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
