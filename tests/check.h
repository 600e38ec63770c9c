/* What the C tests share: one line per check, calls that must succeed, tensors
 * from doubles and comparisons against expected values. Each test includes it
 * once (the helpers are static) and ends with `return failures ? 1 : 0`. */
#ifndef FL_TEST_CHECK_H
#define FL_TEST_CHECK_H

#include "flame.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond, ...)                      \
  do {                                        \
    checks++;                                 \
    if (cond) {                               \
      printf("ok   - ");                      \
    } else {                                  \
      failures++;                             \
      printf("FAIL - %s:%d: ", __FILE__, __LINE__); \
    }                                         \
    printf(__VA_ARGS__);                      \
    printf("\n");                             \
  } while (0)

/* A call that must succeed; on failure it reports fl_last_error(). */
#define OK(expr)                                                                          \
  do {                                                                                    \
    fl_status ok_st_ = (expr);                                                            \
    CHECK(ok_st_ == FL_OK, "%s%s%s", #expr, ok_st_ ? " -- " : "", ok_st_ ? fl_last_error() : ""); \
  } while (0)

static inline bool contains(const char *s, const char *frag) { return strstr(s, frag) != NULL; }

static inline fl_opts opts(fl_dtype dt, bool rg) {
  fl_opts o = fl_default_opts();
  o.dtype = dt;
  o.requires_grad = rg;
  return o;
}

static inline fl_tensor *from(const double *v, int ndim, const int64_t *shape, fl_dtype dt, bool rg) {
  fl_tensor *t = NULL;
  if (fl_from_doubles(v, ndim, shape, opts(dt, rg), &t) != FL_OK) {
    printf("FAIL - creating a tensor: %s\n", fl_last_error());
    failures++;
  }
  return t;
}

/* Compares a tensor's values (read back as doubles) with the expected ones. */
static inline bool values_are(const fl_tensor *t, const double *want, int64_t n, double tol) {
  if (!t || fl_numel(t) != n) return false;
  double got[64];
  if (n > 64 || fl_to_doubles(t, got) != FL_OK) return false;
  for (int64_t i = 0; i < n; i++)
    if (!(fabs(got[i] - want[i]) <= tol)) {
      printf("       element %lld: got %.9g, expected %.9g\n", (long long)i, got[i], want[i]);
      return false;
    }
  return true;
}

static inline int64_t live_bytes(void) {
  fl_memory_stats s;
  return fl_memory_stats_get(FL_CPU_DEVICE, &s) == FL_OK ? s.allocated : -1;
}

#endif
