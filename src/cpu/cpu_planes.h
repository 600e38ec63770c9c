/* The plane loop of the CPU pooling, resizing and padding kernels: the work is
 * cut into one chunk of whole planes per thread, each chunk gets f64 scratch
 * for one input and one output plane, and a plane is computed by one thread
 * alone, so results never depend on the thread count. */
#ifndef FL_CPU_PLANES_H
#define FL_CPU_PLANES_H
#include "cpu.h"

/* fn(ctx, p, a, b): plane p with scratch a (na doubles) and b (nb doubles). */
typedef void (*fl_cpu_plane_fn)(const void *ctx, int64_t p, double *a, double *b);
/* work: add-equivalents in all (threads above the grain); fails only for scratch memory. */
fl_status fl_cpu_each_plane(const char *op, int64_t planes, int64_t na, int64_t nb, int64_t work,
                            fl_cpu_plane_fn fn, const void *ctx);

/* Size of the flat [D, H, W] plane of a 3-vector of sizes. */
static inline int64_t fl_plane3(const int64_t *s) { return s[0] * s[1] * s[2]; }
#endif
