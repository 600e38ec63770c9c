/* CUDA libraries are loaded on first use (cuda/dynlib.cuh): a process that runs CPU work and asks about CUDA
 * devices never maps cuBLAS (linked, it cost every process about 155 MB of resident memory). With a GPU, the
 * first matrix product on it maps cuBLAS, which also shows that the check below sees a loaded library. In a
 * build without the CUDA backend there is nothing to load and the checks hold trivially. */
#include "check.h"
#include "internal.h"
#include <stdio.h>

static bool mapped(const char *lib) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[4096];
  bool found = false;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, lib)) found = true;
  if (f) fclose(f);
  return found;
}

int main(void) {
  int64_t shape[2] = {8, 8};
  fl_tensor *a = NULL, *c = NULL;
  OK(fl_randn(2, shape, opts(FL_F32, false), &a));
  OK(fl_matmul(a, a, &c)); /* a CPU GEMM */
  fl_release(c);
  bool cuda_built = fl_backend_for(FL_CUDA) != NULL;
  int gpus = fl_device_count(FL_CUDA); /* starts the CUDA runtime where there is one */
  printf("note - CUDA backend %s, %d GPU(s)\n", cuda_built ? "built" : "not built", gpus);
  CHECK(!mapped("libcublas"), "CPU work and device queries leave cuBLAS unloaded");
  if (gpus > 0) {
    fl_tensor *g = NULL;
    OK(fl_to_device(a, (fl_device){FL_CUDA, 0}, &g));
    if (g) OK(fl_matmul(g, g, &c));
    fl_release(c);
    fl_release(g);
    CHECK(mapped("libcublas.so") && mapped("libcublasLt.so"), "the first GEMM on the GPU loads cuBLAS and cuBLASLt");
  }
  fl_release(a);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
