/* The geometry of an N-d convolution (1 to 3 spatial dims), shared by the conv
 * front-end (ops/conv*.c), the im2col path of every backend and the optional
 * direct (cuDNN) path of the CUDA backend. Plain data: cuda/ includes it too. */
#ifndef FL_CONV_GEOM_H
#define FL_CONV_GEOM_H
#include <stdint.h>

typedef struct fl_conv_geom {
  int nsp;                 /* spatial dims: 1, 2 or 3 */
  int64_t n, cin, cout, groups;
  int64_t in[3], k[3], out[3]; /* input, kernel and output spatial sizes */
  int64_t stride[3], pad[3], dil[3]; /* pad: zeros before and after each spatial dim */
} fl_conv_geom;

/* What a direct conv call computes (the same three GEMM-shaped problems the
 * im2col path solves); a transposed convolution's forward is CONV_DATA. */
typedef enum {
  FL_CONV_FORWARD, /* out = y [n, cout, out...]  from a = x,  b = w [cout, cin/groups, k...] */
  FL_CONV_DATA,    /* out = dx [n, cin, in...]   from a = dy, b = w */
  FL_CONV_WEIGHT,  /* out = dw [cout, cin/groups, k...] from a = x, b = dy */
} fl_conv_dir;
#endif
