/* How many threads the CPU backend uses: flame.set_num_threads(n), or the
 * FLAME_NUM_THREADS environment variable, or OpenMP's default (the cores, or
 * OMP_NUM_THREADS). Work below a grain stays on the calling thread. */
#include "cpu.h"
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_THREADS 1024
static int num_threads; /* 0: not read yet */
static bool chosen;     /* set by the user (call or environment), not OpenMP's default */

static int default_threads(void) {
  const char *env = getenv("FLAME_NUM_THREADS");
  if (env && *env) {
    char *end;
    long n = strtol(env, &end, 10);
    if (*end == 0 && n >= 1 && n <= MAX_THREADS) {
      chosen = true;
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
  if (!num_threads) num_threads = default_threads();
  return num_threads;
}

fl_status fl_set_num_threads(int n) {
  if (n < 1 || n > MAX_THREADS)
    return fl_error(FL_EINVAL, "set_num_threads: expected a thread count in [1, %d], got %d", MAX_THREADS, n);
#ifndef _OPENMP
  if (n > 1) return fl_error(FL_EUNSUPPORTED, "set_num_threads: this build has no OpenMP, only 1 thread");
#endif
  num_threads = n;
  chosen = true;
  return FL_OK;
}

/* A parallel region ends at a barrier that waits for every thread of the team.
 * When other processes (or a host's own threads) hold the cores, a worker may
 * not be scheduled for a whole tick (4 ms here), and each region costs that:
 * 3000 iterations of a few 1 MB ops went from 0.15 s to 11.5 s at a load of 2
 * on 2 cores. So unless the count was chosen (flame.set_num_threads,
 * FLAME_NUM_THREADS), OpenMP's dynamic adjustment sizes the team by the free
 * cores (libgomp: cores minus the load average), and a loaded machine runs the
 * work on fewer threads instead of waiting. A chosen count is used as given.
 * The kernels deal chunks to whatever team they get (FL_CPU_CHUNKS), so results
 * do not change. OMP_DYNAMIC, when set, is left to the user. The setting is per
 * OpenMP thread, so it is applied on each calling thread. */
static void apply_dynamic(void) {
#ifdef _OPENMP
  static int user_set = -1; /* -1: not read yet */
  if (user_set < 0) user_set = getenv("OMP_DYNAMIC") != NULL;
  if (user_set) return;
  int want = !chosen;
  if (omp_get_dynamic() != want) omp_set_dynamic(want);
#endif
}

int fl_cpu_threads_for(int64_t work) {
  if (work < 2 * FL_CPU_GRAIN) return 1;
  int nt = fl_get_num_threads();
  int64_t by_work = work / FL_CPU_GRAIN;
  if (nt > 1) apply_dynamic();
  return by_work < nt ? (int)by_work : nt;
}
