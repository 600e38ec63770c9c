/* The engine's one clock: CLOCK_MONOTONIC, for deadlines, timeouts (the rendezvous, NCCL's watchdog, the
 * launcher's grace period), the op profiler and flame.timer(). */
#define _POSIX_C_SOURCE 200809L
#include "flame.h"
#include <time.h>

int64_t fl_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double fl_now_s(void) { return (double)fl_now_ns() * 1e-9; }
