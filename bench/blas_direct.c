/* The baseline for the CPU matmul row of docs/performance.md: cblas_sgemm
 * called directly on the shapes bench/cpu.lua times through flame.
 * Prints "M N K median_seconds" per shape. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Small products repeat inside one sample so timer overhead stays negligible
 * (bench/cpu.lua uses the same rule). */
static int inner_iters(int M, int N, int K) {
  double flops = 2.0 * M * N * K;
  return flops >= 2e8 ? 1 : (int)(2e8 / flops);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 20;
  static const int shapes[][3] = {{64, 64, 64}, {256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}, {1000, 64, 64}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N), *c = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = (float)rand() / RAND_MAX;
    for (int i = 0; i < K * N; i++) b[i] = (float)rand() / RAND_MAX;
    double *t = malloc(sizeof(double) * reps);
    int iters = inner_iters(M, N, K);
    for (int r = -3; r < reps; r++) {
      double t0 = now();
      for (int i = 0; i < iters; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
      if (r >= 0) t[r] = (now() - t0) / iters;
    }
    qsort(t, reps, sizeof *t, cmp);
    printf("%d %d %d %.9f\n", M, N, K, t[reps / 2]);
    free(a), free(b), free(c), free(t);
  }
  return 0;
}
