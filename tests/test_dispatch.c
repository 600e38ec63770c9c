/* Dispatch through the backend table: a device whose table leaves an entry
 * NULL, or whose supports() declines, must fail that op up front with
 * "<op>: not implemented on <device> for <dtype>", never fall back to another
 * device. A stand-in "cuda" backend (the CPU's kernels with softmax and gemm
 * removed, declining bf16 unary ops) is registered over the real one for this
 * process. */
#include "internal.h"
#include <stdio.h>
#include <string.h>

static int failures;
static void check(bool ok, const char *what) {
  printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) failures++;
}

static bool yes(void) { return true; }
static int asked; /* how often the stand-in's supports() was consulted */
static bool no_bf16_unary(const fl_op_query *q) {
  asked++;
  return !(q->kind == FL_OP_UNARY && q->ts[1]->dtype == FL_BF16);
}
static int one(void) { return 1; }
static bool all_yes(const fl_op_query *q) { return q != NULL; }

int main(void) {
  const fl_backend *cpu = fl_backend_for(FL_CPU);
  fl_backend fake = *cpu;
  fake.name = "fake-cuda";
  fake.available = yes;
  fake.device_count = one;
  fake.softmax = NULL;
  fake.gemm = NULL;
  fake.supports = no_bf16_unary;
  fl_register_backend(FL_CUDA, &fake);

  fl_opts o = fl_default_opts();
  o.device = (fl_device){FL_CUDA, 0};
  int64_t shape[2] = {2, 3};
  fl_tensor *x = NULL, *y = NULL, *r = NULL;
  check(fl_ones(2, shape, o, &x) == FL_OK, "a tensor on the stand-in device");
  check(fl_unary(FL_EXP, x, &y) == FL_OK, "an implemented op runs there");
  fl_status st = fl_softmax(x, 1, &r);
  check(st == FL_EUNSUPPORTED, "softmax without a kernel is FL_EUNSUPPORTED");
  check(strstr(fl_last_error(), "softmax") && strstr(fl_last_error(), "not implemented on cuda:0") &&
            strstr(fl_last_error(), "f32[2, 3] on cuda:0"),
        "the message names the op, the device and the input");
  printf("     (%s)\n", fl_last_error());
  check(r == NULL, "no result is produced");
  fl_tensor *h = NULL;
  check(fl_cast(x, FL_BF16, &h) == FL_OK, "a cast the stand-in supports runs");
  asked = 0;
  st = fl_unary(FL_EXP, h, &r);
  check(st == FL_EUNSUPPORTED && asked == 1, "a case supports() declines is FL_EUNSUPPORTED, asked once");
  check(!strcmp(fl_last_error(), "exp: not implemented on cuda:0 for bf16 (input bf16[2, 3] on cuda:0)"),
        "the message names the op, the device, the dtype and the input");
  printf("     (%s)\n", fl_last_error());
  check(r == NULL && fl_unary_(FL_EXP, h) == FL_EUNSUPPORTED && strstr(fl_last_error(), "exp_: not implemented"),
        "the in-place form likewise, before touching the tensor");
  fl_release(h);
  int64_t s2[2] = {3, 2};
  fl_tensor *w = NULL;
  check(fl_ones(2, s2, o, &w) == FL_OK && fl_matmul(x, w, &r) == FL_EUNSUPPORTED &&
            strstr(fl_last_error(), "matmul: not implemented on cuda:0 for f32"),
        "matmul likewise (no gemm entry)");
  check(fl_linear(x, x, NULL, &r) == FL_EUNSUPPORTED && strstr(fl_last_error(), "linear: not implemented on cuda:0"),
        "linear likewise");
  fl_tensor *c = NULL;
  check(fl_ones(2, shape, fl_default_opts(), &c) == FL_OK && fl_binary(FL_ADD, x, c, &r) == FL_EDEVICE &&
            strstr(fl_last_error(), "cpu") && strstr(fl_last_error(), "cuda:0"),
        "mixing devices names both");
  /* Every op kind has its entry check: a backend whose every entry is set supports every kind (an op kind
   * without a case in has_entry would never be dispatched, as FL_OP_FLASH_ATTENTION once was). */
  fl_backend full;
  memset(&full, 0x5a, sizeof full); /* every pointer non-NULL; only inspected, never called */
  full.supports = all_yes;
  fl_register_backend(FL_CUDA, &full);
  int missing = 0;
  for (int k = 0; k < FL_NOPKINDS; k++) {
    const fl_backend *be;
    const fl_tensor *ts[4] = {x, x, x, x};
    if (!fl_op_supported((fl_op_kind)k, 0, 4, ts, &be)) {
      printf("     op kind %d has no entry check in dispatch.c's has_entry\n", k);
      missing++;
    }
  }
  fl_register_backend(FL_CUDA, &fake);
  check(missing == 0, "has_entry covers every op kind");
  fl_release(x), fl_release(y), fl_release(w), fl_release(c);
  printf("%d failed\n", failures);
  return failures != 0;
}
