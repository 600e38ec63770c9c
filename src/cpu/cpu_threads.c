/* How many threads the CPU backend uses: flame.set_num_threads(n), or the
 * FLAME_NUM_THREADS environment variable, or OpenMP's default (the cores, or
 * OMP_NUM_THREADS). Work below a grain stays on the calling thread. */
#include "cpu.h"
#include <stdlib.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_THREADS 1024
static atomic_int num_threads; /* 0: not read yet (states on several threads read it) */

/* OpenBLAS keeps its own thread pool, sized to the cores whatever flame's count: with flame at one thread its
 * GEMMs still ran on two, the waiting thread spinning in sched_yield (a fifth of a one-thread UNet forward's
 * time on this 2-core machine). The count set here is OpenBLAS's too. Weak: any other CBLAS links as well. */
void openblas_set_num_threads(int n) __attribute__((weak));
static void blas_threads(int n) {
  /* at most one per core: more only wait on each other, and each OpenBLAS thread maps its own GEMM buffer (the
   * fuzzer's set_num_threads(1000) under ASan grew the process to 24 GB and the OOM killer ended CI's run) */
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores >= 1 && n > cores) n = (int)cores;
  if (openblas_set_num_threads) openblas_set_num_threads(n);
}

static int default_threads(void) {
  const char *env = getenv("FLAME_NUM_THREADS");
  if (env && *env) {
    char *end;
    long n = strtol(env, &end, 10);
    if (*end == 0 && n >= 1 && n <= MAX_THREADS) {
      blas_threads((int)n);
      return (int)n;
    }
  }
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int fl_get_num_threads(void) {
  int n = atomic_load_explicit(&num_threads, memory_order_relaxed);
  if (!n) atomic_store_explicit(&num_threads, n = default_threads(), memory_order_relaxed);
  return n;
}

fl_status fl_set_num_threads(int n) {
  if (n < 1 || n > MAX_THREADS)
    return fl_error(FL_EINVAL, "set_num_threads: expected a thread count in [1, %d], got %d", MAX_THREADS, n);
#ifndef _OPENMP
  if (n > 1) return fl_error(FL_EUNSUPPORTED, "set_num_threads: this build has no OpenMP, only 1 thread");
#endif
  atomic_store_explicit(&num_threads, n, memory_order_relaxed);
  blas_threads(n);
  return FL_OK;
}

/* A parallel region ends at a barrier that waits for every thread of the
 * team, so on a machine whose cores are busy (other processes, a host's own
 * threads) each region can wait a scheduler tick (4 ms here) for a worker:
 * such hosts should choose 1 thread. OpenMP's dynamic adjustment
 * (OMP_DYNAMIC=true) avoids the wait but is not the default: libgomp sizes the
 * team by the 15-minute load average and starts and stops threads as the size
 * changes, and under the sanitizer build that churn grew the fuzzer's memory
 * by 200 MB/s. The kernels deal their chunks to whatever team they get
 * (FL_CPU_CHUNKS), so either way the results are the same. */
int fl_cpu_threads_for(int64_t work) {
  if (work < 2 * FL_CPU_GRAIN) return 1;
  int nt = fl_get_num_threads();
  int64_t by_work = work / FL_CPU_GRAIN;
  return by_work < nt ? (int)by_work : nt;
}
