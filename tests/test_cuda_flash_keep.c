/* The fused attention's dropout keep bits on the GPU, read straight from the kernels' functions (fwd_keep_word,
 * bwd_keep_word in cuda/flash_keep.cuh, which the FlashAttention-2 kernels and the Hopper forwards share, through the
 * test hook fl_cuda_flash_keep_probe in cuda/flash_attention.cu, which sets the
 * threshold, seed and offset as the kernels' parameters do) against the byte rule evaluated here byte by byte
 * (core/dropout_keep.h, FL_DROPOUT_BYTE: element i is kept iff byte i % 16 of Philox block offset + i / 16 is
 * < round((1 - p) 256)). Each probe is one warp's fragment: 16 rows x 64 keys (forward) or 16 keys x 64 queries
 * (backward), every bit decoded by where the kernels read it. Shapes with Sk % 16 == 0 and not (runs straddling
 * Philox blocks), indices past 2^32, an offset whose low word carries, seeds with high bits, t = 256 and t = 0.
 * Without a CUDA build or device it prints why and passes: the GPU runs pin it. */
#include "internal.h"
#include "dropout_keep.h"
#include <stdio.h>

#ifdef FLAME_HAVE_CUDA
static int failures;

/* The byte rule, byte by byte (not through fl_dropout_keep16_with, the four-bytes-at-a-time form the kernels use;
 * fl_philox's host branch, which tests/test_dropout_keep.c checks against Random123's known answer). */
static bool keep_byte(uint64_t seed, uint64_t offset, uint64_t i, uint32_t t) {
  fl_philox_out o = fl_philox(seed, offset + i / 16);
  const uint32_t j = (uint32_t)(i % 16);
  return ((o.w[j / 4] >> (8 * (j % 4))) & 0xffu) < t;
}

typedef struct {
  double p;
  uint64_t seed, offset;
  int Hq;
  int64_t Sq, Sk;
  int b, h;
  int64_t r0, n0; /* the fragment's first row (query) and key */
} probe;

/* Where the kernels read element e of n8 block nt (cuda/flash_keep.cuh: fwd_bit, bwd_bit), and which (query, key)
 * that element is for lane (g, t): the forward's C fragment has rows r0 + g + 8 (e / 2) and keys
 * n0 + 8 nt + 2 t + e % 2; the backward's S^T fragment has keys n0 + g + 8 (e / 2) and queries r0 + 8 nt + 2 t + e % 2. */
static int fwd_bit(int nt, int e) { return 8 * (nt & 3) + 4 * (nt >> 2) + e; }
static int bwd_bit(int nt, int e) { return 8 * (2 * (e & 1) + (e >> 1)) + nt; }

static void run(const probe *c, bool backward) {
  int64_t shape[1] = {32};
  fl_opts o = fl_default_opts();
  o.dtype = FL_I32, o.device = (fl_device){FL_CUDA, 0}, o.requires_grad = false;
  fl_tensor *out = NULL;
  uint32_t w[32];
  char what[200];
  snprintf(what, sizeof what, "%s p %g seed %#llx offset %#llx Hq %d Sq %lld Sk %lld b %d h %d r0 %lld n0 %lld",
           backward ? "backward" : "forward", c->p, (unsigned long long)c->seed, (unsigned long long)c->offset, c->Hq,
           (long long)c->Sq, (long long)c->Sk, c->b, c->h, (long long)c->r0, (long long)c->n0);
  if (fl_zeros(1, shape, o, &out) != FL_OK ||
      fl_cuda_flash_keep_probe(out, c->p, c->seed, c->offset, c->Hq, c->Sq, c->Sk, c->b, c->h, c->r0, c->n0,
                               backward) != FL_OK ||
      fl_to_host(out, w) != FL_OK) {
    printf("FAIL - %s: %s\n", what, fl_last_error());
    failures++;
    fl_release(out);
    return;
  }
  fl_release(out);
  const uint32_t t = fl_dropout_byte_threshold(c->p);
  const uint64_t base = ((uint64_t)c->b * (uint64_t)c->Hq + (uint64_t)c->h) * (uint64_t)c->Sq;
  int bad = 0, kept = 0;
  for (int lane = 0; lane < 32; lane++)
    for (int nt = 0; nt < 8; nt++)
      for (int e = 0; e < 4; e++) {
        const int g = lane / 4, tt = lane % 4;
        const int64_t a = g + 8 * (e >> 1), z = 8 * nt + 2 * tt + (e & 1); /* fragment row, column */
        const int64_t q = backward ? c->r0 + z : c->r0 + a, k = backward ? c->n0 + a : c->n0 + z;
        const bool got = (w[lane] >> (backward ? bwd_bit(nt, e) : fwd_bit(nt, e))) & 1u;
        const bool want = keep_byte(c->seed, c->offset, (base + (uint64_t)q) * (uint64_t)c->Sk + (uint64_t)k, t);
        kept += got;
        if (got != want && bad++ < 3)
          printf("     lane %d nt %d e %d (query %lld key %lld): kernel %d, byte rule %d\n", lane, nt, e, (long long)q,
                 (long long)k, got, want);
      }
  printf("%s - %s: %d of 1024 keep bits differ (%d kept)\n", bad ? "FAIL" : "ok  ", what, bad, kept);
  if (bad) failures++;
}

static void test_probes(void) {
  const probe cases[] = {
      /* the read-out spec's aligned shape, where the H200 run found 8238 of 32768 bits wrong */
      {0.3, 31, 0, 2, 64, 64, 1, 1, 0, 0},
      {0.3, 31, 0, 2, 64, 64, 0, 1, 48, 0},
      {0.1, 7, 5, 4, 192, 256, 1, 3, 64, 128},
      /* Sk % 16 != 0: runs of 16 keys straddle two Philox blocks at every shift */
      {0.3, 31, 0, 2, 77, 112, 1, 0, 32, 64},
      {0.25, 9, 123, 4, 300, 250, 3, 2, 113, 64},
      {0.5, 0xdeadbeefcafef00dull, 77, 3, 100, 100, 2, 2, 50, 36},
      {0.77, 1, 1, 1, 40, 41, 0, 0, 3, 0},
      /* the index past 2^32 (64-bit index math), a counter whose low word carries, a seed's high word */
      {0.2, 0x123456789abcdefull, 0xffffffffull - 3, 40, 8192, 8200, 3, 37, 8000, 8128},
      {0.3, 2, 0xfffffffffffffff0ull, 32, 16384, 16384, 7, 31, 16320, 16320},
      /* t = 256 keeps everything, t = 0 drops everything */
      {1.0 / 512, 3, 0, 2, 64, 80, 1, 1, 16, 16},
      {1.0, 3, 0, 2, 64, 80, 1, 1, 16, 16},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run(&cases[i], false);
    run(&cases[i], true);
  }
}
#endif

int main(void) {
#ifndef FLAME_HAVE_CUDA
  printf("built without CUDA: skipped\n");
  return 0;
#else
  if (!fl_device_available(FL_CUDA)) {
    printf("no CUDA device: skipped\n");
    return 0;
  }
  test_probes();
  printf("%s\n", failures ? "FAILED" : "all ok");
  return failures ? 1 : 0;
#endif
}
