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

/* The geometry padded to three spatial dims (leading unit dims, no padding,
 * unit stride and dilation), with the derived sizes every im2col kernel needs:
 * the CPU and CUDA kernels walk this one form whatever nsp is. */
typedef struct fl_conv_geom3 {
  int64_t n, cin, kvol, L, inv; /* kvol: kernel volume; L: output positions; inv: input positions */
  int64_t in[3], k[3], out[3], s[3], p[3], d[3];
} fl_conv_geom3;

static inline fl_conv_geom3 fl_conv_geom3_of(const fl_conv_geom *g) {
  fl_conv_geom3 r;
  r.n = g->n, r.cin = g->cin;
  int lead = 3 - g->nsp;
  for (int i = 0; i < 3; i++) {
    int real = i >= lead, j = i - lead;
    r.in[i] = real ? g->in[j] : 1, r.k[i] = real ? g->k[j] : 1, r.out[i] = real ? g->out[j] : 1;
    r.s[i] = real ? g->stride[j] : 1, r.p[i] = real ? g->pad[j] : 0, r.d[i] = real ? g->dil[j] : 1;
  }
  r.kvol = r.k[0] * r.k[1] * r.k[2];
  r.L = r.out[0] * r.out[1] * r.out[2];
  r.inv = r.in[0] * r.in[1] * r.in[2];
  return r;
}
#endif
