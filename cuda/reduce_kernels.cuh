/* Reduction kernels. The plan views x as [outputs] x [reduced elements]:
 *  kept: the output dims, with strides into x, into the value output and into
 *        the index output (innermost first);
 *  red:  the reduced dims with their x strides; a flat reduced index maps to
 *        an x offset (row-major over the reduced dims, as argmax reports it).
 * Two shapes of work:
 *  - rows: the reduced elements of one output are (nearly) contiguous. A group
 *    of G threads (1..256, a power of two) reads one output's row with unit
 *    stride, V elements per load, and combines by warp shuffles (+ shared
 *    memory when G > 32).
 *  - cols: adjacent outputs are adjacent in x. Each thread owns V adjacent
 *    outputs and walks the reduced elements, so a warp reads 32*V contiguous
 *    elements per step; blockDim.y threads split the walk and combine in
 *    shared memory.
 * Either can split the reduced range over gridDim.y blocks when there are too
 * few outputs to fill the GPU; the partial states then go to a scratch buffer
 * [output][split] and reduce_finish_kernel merges them. */
#ifndef FL_CUDA_REDUCE_KERNELS_CUH
#define FL_CUDA_REDUCE_KERNELS_CUH

#include "ewise.cuh"
#include "reducers.cuh"

#define FC_COLS_X 32
#define FC_COLS_Y 8

template <class T>
struct fc_red_args {
  fc_iter<3> kept; /* strides: x, value out, index out */
  fc_iter<1> red;
  const T *x;
  void *val;    /* R::O elements; may be NULL (ARGMAX) */
  int64_t *idx; /* may be NULL */
  int64_t nout, nred;
  int64_t per_split; /* reduced elements per gridDim.y slice */
  int splits;
  int group; /* rows: threads per output */
  void *partial;
};

template <class R, class T>
__device__ __forceinline__ void fc_red_emit(const fc_red_args<T> &p, const R &r, typename R::S s, int64_t o,
                                            int split) {
  if (p.splits > 1) {
    ((typename R::S *)p.partial)[o * p.splits + split] = s;
    return;
  }
  int64_t off[3];
  p.kept.offsets(o, off);
  using O = typename R::O;
  r.write(s, p.nred, p.val ? (O *)p.val + off[1] : (O *)0, p.idx ? p.idx + off[2] : (int64_t *)0);
}

template <class R, class T, int V>
__device__ __forceinline__ void fc_red_accum(const R &r, typename R::S &s, const T *p, int64_t i) {
  T v[V];
  fc_ew_load<T, V>(v, (const char *)p, 0, false);
#pragma unroll
  for (int k = 0; k < V; k++) r.add(s, fc_num<T>::load(v[k]), i + k);
}

/* Rows: see the file comment. Every loop bound is uniform per block so the
 * shuffles and barriers see all their threads. */
template <class R, class T, int V>
__global__ void __launch_bounds__(FC_THREADS) fc_reduce_rows_kernel(fc_red_args<T> p, R r) {
  using S = typename R::S;
  __shared__ S warp_part[FC_THREADS / 32];
  const int G = p.group, lane = threadIdx.x & (G - 1), groups = FC_THREADS / G;
  const int split = blockIdx.y;
  const int64_t r0 = (int64_t)split * p.per_split;
  const int64_t r1 = r0 + p.per_split < p.nred ? r0 + p.per_split : p.nred;
  const int64_t step = (int64_t)G * V;
  for (int64_t ob = (int64_t)blockIdx.x * groups; ob < p.nout; ob += (int64_t)gridDim.x * groups) {
    const int64_t o = ob + threadIdx.x / G;
    S s = r.init();
    if (o < p.nout) {
      int64_t koff[3], roff[1];
      p.kept.offsets(o, koff);
      const T *xb = p.x + koff[0];
      int64_t i = r0 + (int64_t)lane * V;
      for (; i + 3 * step < r1; i += 4 * step) { /* four loads in flight per thread */
        int64_t o0[1], o1[1], o2[1], o3[1];
        p.red.offsets(i, o0);
        p.red.offsets(i + step, o1);
        p.red.offsets(i + 2 * step, o2);
        p.red.offsets(i + 3 * step, o3);
        T v0[V], v1[V], v2[V], v3[V];
        fc_ew_load<T, V>(v0, (const char *)(xb + o0[0]), 0, false);
        fc_ew_load<T, V>(v1, (const char *)(xb + o1[0]), 0, false);
        fc_ew_load<T, V>(v2, (const char *)(xb + o2[0]), 0, false);
        fc_ew_load<T, V>(v3, (const char *)(xb + o3[0]), 0, false);
#pragma unroll
        for (int k = 0; k < V; k++) r.add(s, fc_num<T>::load(v0[k]), i + k);
#pragma unroll
        for (int k = 0; k < V; k++) r.add(s, fc_num<T>::load(v1[k]), i + step + k);
#pragma unroll
        for (int k = 0; k < V; k++) r.add(s, fc_num<T>::load(v2[k]), i + 2 * step + k);
#pragma unroll
        for (int k = 0; k < V; k++) r.add(s, fc_num<T>::load(v3[k]), i + 3 * step + k);
      }
      for (; i < r1; i += step) {
        p.red.offsets(i, roff);
        fc_red_accum<R, T, V>(r, s, xb + roff[0], i);
      }
    }
    const int w = G < 32 ? G : 32;
    for (int d = w / 2; d > 0; d >>= 1) s = r.combine(s, r.shfl(s, d, w));
    if (G > 32) { /* one state per warp, then the group's first thread merges */
      if ((threadIdx.x & 31) == 0) warp_part[threadIdx.x / 32] = s;
      __syncthreads();
      if (lane == 0)
        for (int k = 1; k < G / 32; k++) s = r.combine(s, warp_part[threadIdx.x / 32 + k]);
      __syncthreads();
    }
    if (lane == 0 && o < p.nout) fc_red_emit<R, T>(p, r, s, o, split);
  }
}

/* Cols: see the file comment. blockDim = (FC_COLS_X, FC_COLS_Y). */
template <class R, class T, int V>
__global__ void __launch_bounds__(FC_THREADS) fc_reduce_cols_kernel(fc_red_args<T> p, R r) {
  using S = typename R::S;
  __shared__ S part[FC_COLS_Y][FC_COLS_X * V];
  const int tx = threadIdx.x, ty = threadIdx.y, split = blockIdx.y;
  const int64_t o0 = ((int64_t)blockIdx.x * FC_COLS_X + tx) * V;
  const int64_t r0 = (int64_t)split * p.per_split;
  const int64_t r1 = r0 + p.per_split < p.nred ? r0 + p.per_split : p.nred;
  S s[V];
#pragma unroll
  for (int k = 0; k < V; k++) s[k] = r.init();
  if (o0 < p.nout) {
    int64_t koff[3];
    p.kept.offsets(o0, koff);
    const T *xb = p.x + koff[0]; /* V > 1: the V outputs are x[xb .. xb + V) */
    int64_t i = r0 + ty;
    for (; i + 3 * FC_COLS_Y < r1; i += 4 * FC_COLS_Y) {
      int64_t a[1], b[1], c[1], d[1];
      p.red.offsets(i, a);
      p.red.offsets(i + FC_COLS_Y, b);
      p.red.offsets(i + 2 * FC_COLS_Y, c);
      p.red.offsets(i + 3 * FC_COLS_Y, d);
      T va[V], vb[V], vc[V], vd[V];
      if (V > 1) {
        fc_ew_load<T, V>(va, (const char *)(xb + a[0]), 0, false);
        fc_ew_load<T, V>(vb, (const char *)(xb + b[0]), 0, false);
        fc_ew_load<T, V>(vc, (const char *)(xb + c[0]), 0, false);
        fc_ew_load<T, V>(vd, (const char *)(xb + d[0]), 0, false);
      } else {
        va[0] = xb[a[0]], vb[0] = xb[b[0]], vc[0] = xb[c[0]], vd[0] = xb[d[0]];
      }
#pragma unroll
      for (int k = 0; k < V; k++) {
        r.add(s[k], fc_num<T>::load(va[k]), i);
        r.add(s[k], fc_num<T>::load(vb[k]), i + FC_COLS_Y);
        r.add(s[k], fc_num<T>::load(vc[k]), i + 2 * FC_COLS_Y);
        r.add(s[k], fc_num<T>::load(vd[k]), i + 3 * FC_COLS_Y);
      }
    }
    for (; i < r1; i += FC_COLS_Y) {
      int64_t a[1];
      p.red.offsets(i, a);
      T va[V];
      if (V > 1) fc_ew_load<T, V>(va, (const char *)(xb + a[0]), 0, false);
      else va[0] = xb[a[0]];
#pragma unroll
      for (int k = 0; k < V; k++) r.add(s[k], fc_num<T>::load(va[k]), i);
    }
  }
#pragma unroll
  for (int k = 0; k < V; k++) part[ty][tx * V + k] = s[k];
  __syncthreads();
  if (ty == 0 && o0 < p.nout) {
#pragma unroll
    for (int k = 0; k < V; k++) {
      S t = part[0][tx * V + k];
      for (int y = 1; y < FC_COLS_Y; y++) t = r.combine(t, part[y][tx * V + k]);
      if (o0 + k < p.nout) fc_red_emit<R, T>(p, r, t, o0 + k, split);
    }
  }
}

/* Merges the per-split partial states of each output, in split order. */
template <class R, class T>
__global__ void __launch_bounds__(FC_THREADS) fc_reduce_finish_kernel(fc_red_args<T> p, R r) {
  using S = typename R::S;
  const S *part = (const S *)p.partial;
  for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < p.nout; o += (int64_t)gridDim.x * blockDim.x) {
    S s = part[o * p.splits];
    for (int k = 1; k < p.splits; k++) s = r.combine(s, part[o * p.splits + k]);
    int64_t off[3];
    p.kept.offsets(o, off);
    using O = typename R::O;
    r.write(s, p.nred, p.val ? (O *)p.val + off[1] : (O *)0, p.idx ? p.idx + off[2] : (int64_t *)0);
  }
}

#endif
