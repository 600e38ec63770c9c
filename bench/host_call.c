/* The cost of one call from a C host into Lua (docs/performance.md, "Host call overhead"): the host owns two
 * 64-element f32 buffers, wraps them as tensors without copying (fl_tensor_from_blob), calls the Lua function
 * add(a, b) through flame_lua_call and reads the sum's memory (fl_tensor_data) before releasing it. Three rows:
 *   call:          the buffers wrapped once, each call is flame_lua_call + reading and releasing the result;
 *   wrap + call:   the buffers wrapped anew for each call (a host whose buffers move), then released;
 *   in place:      add_into(a, b, out) writes the host's third buffer (out:copy_(a + b)), nothing comes back.
 * Each row: the median over 15 samples of 20000 calls (argv[1]: another count) per call, after a tenth as many
 * warm-up calls, in wall time and in
 * the thread's CPU time (which leaves out the time other processes held the core: the machine is shared).
 * Build and run: cmake --build build --target host_call && build/host_call (docs/performance.md). */
#include "flame.h"
#include "flame_lua.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 64
#define SAMPLES 15

static const char *script = "function add(a, b) return a + b end\n"
                            "function add_into(a, b, out) out:copy_(a + b) end\n";

static float a[N], b[N], out[N];
static const int64_t shape[1] = {N};

static double now(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static fl_tensor *wrap(float *p) {
  fl_tensor *t = NULL;
  if (fl_tensor_from_blob(p, 1, shape, NULL, FL_F32, FL_CPU_DEVICE, NULL, NULL, &t) != FL_OK) {
    fprintf(stderr, "host_call: %s\n", fl_last_error());
    exit(1);
  }
  return t;
}

static float sink; /* the host reads each result, so no call is left unread */

static int call(flame_lua_state *S, fl_tensor *ta, fl_tensor *tb) {
  fl_tensor *in[2] = {ta, tb}, *r;
  if (flame_lua_call(S, "add", 2, in, 1, &r) != FL_OK) return 1;
  sink += ((const float *)fl_tensor_data(r))[N - 1];
  fl_release(r);
  return 0;
}

typedef enum { CALL, WRAP_CALL, IN_PLACE } row;

/* n calls of one row; nonzero on a failed call. */
static int run(flame_lua_state *S, row kind, int n, fl_tensor *ta, fl_tensor *tb, fl_tensor *tout) {
  for (int i = 0; i < n; i++) {
    if (kind == CALL) {
      if (call(S, ta, tb)) return 1;
    } else if (kind == WRAP_CALL) {
      fl_tensor *wa = wrap(a), *wb = wrap(b);
      int bad = call(S, wa, wb);
      fl_release(wa), fl_release(wb);
      if (bad) return 1;
    } else {
      fl_tensor *in[3] = {ta, tb, tout};
      if (flame_lua_call(S, "add_into", 3, in, 0, NULL) != FL_OK) return 1;
      sink += out[N - 1];
    }
  }
  return 0;
}

static int cmp(const void *x, const void *y) {
  double d = *(const double *)x - *(const double *)y;
  return (d > 0) - (d < 0);
}

int main(int argc, char **argv) {
  int calls = argc > 1 ? atoi(argv[1]) : 20000;
  if (calls < 1) calls = 1;
  for (int i = 0; i < N; i++) a[i] = (float)i, b[i] = 0.5f * (float)i;
  flame_lua_state *S = NULL;
  if (flame_lua_open(NULL, &S) != FL_OK || flame_lua_run(S, script, "=host_call") != FL_OK) {
    fprintf(stderr, "host_call: %s\n", S ? flame_lua_error(S) : fl_last_error());
    return 1;
  }
  fl_tensor *ta = wrap(a), *tb = wrap(b), *tout = wrap(out);
  /* the result is right before anything is timed */
  fl_tensor *in[2] = {ta, tb}, *r = NULL;
  int bad = flame_lua_call(S, "add", 2, in, 1, &r) != FL_OK;
  for (int i = 0; i < N && !bad; i++) bad = ((const float *)fl_tensor_data(r))[i] != 1.5f * (float)i;
  fl_release(r);
  if (bad) {
    fprintf(stderr, "host_call: wrong sum: %s\n", flame_lua_error(S));
    return 1;
  }
  static const char *names[] = {"call (wrapped once)", "wrap + call", "in place (add_into)"};
  printf("| row | per call (wall) | per call (thread CPU time) |\n|---|---|---|\n");
  for (row k = CALL; k <= IN_PLACE; k++) {
    double t[SAMPLES], c[SAMPLES];
    if (run(S, k, calls / 10, ta, tb, tout)) break;
    for (int s = 0; s < SAMPLES; s++) {
      double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
      if (run(S, k, calls, ta, tb, tout)) {
        fprintf(stderr, "host_call: %s\n", flame_lua_error(S));
        return 1;
      }
      c[s] = (now(CLOCK_THREAD_CPUTIME_ID) - c0) / calls;
      t[s] = (now(CLOCK_MONOTONIC) - t0) / calls;
    }
    qsort(t, SAMPLES, sizeof *t, cmp);
    qsort(c, SAMPLES, sizeof *c, cmp);
    printf("| %s | %.2f us (min %.2f) | %.2f us (min %.2f) |\n", names[k], t[SAMPLES / 2] * 1e6, t[0] * 1e6,
           c[SAMPLES / 2] * 1e6, c[0] * 1e6);
  }
  fl_release(ta), fl_release(tb), fl_release(tout);
  flame_lua_close(S);
  return sink < 0; /* never: the sums are positive */
}
