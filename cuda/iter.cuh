/* Shape/stride metadata passed to kernels by value, and the linear index ->
 * per-operand offset mapping. Dims are stored innermost first so the unrolled
 * loops below index the arrays with compile-time constants (registers, no
 * local-memory copy of the parameter block). */
#ifndef FL_CUDA_ITER_CUH
#define FL_CUDA_ITER_CUH

#include "common.cuh"

template <int N>
struct fc_iter {
  int nd;     /* >= 1 */
  bool small; /* numel fits 32 bits: cheaper division */
  int64_t size[FL_MAX_DIMS];
  int64_t stride[N][FL_MAX_DIMS]; /* in elements, per operand */

  /* Element offsets of every operand for a linear (row-major) index. */
  __device__ __forceinline__ void offsets(int64_t linear, int64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; k++) off[k] = 0;
    if (small) {
      uint32_t l = (uint32_t)linear;
#pragma unroll
      for (int d = 0; d < FL_MAX_DIMS; d++) {
        if (d == nd) break;
        uint32_t c = l;
        if (d != nd - 1) {
          uint32_t q = l / (uint32_t)size[d];
          c = l - q * (uint32_t)size[d];
          l = q;
        }
#pragma unroll
        for (int k = 0; k < N; k++) off[k] += (int64_t)c * stride[k][d];
      }
    } else {
      int64_t l = linear;
#pragma unroll
      for (int d = 0; d < FL_MAX_DIMS; d++) {
        if (d == nd) break;
        int64_t c = l;
        if (d != nd - 1) {
          int64_t q = l / size[d];
          c = l - q * size[d];
          l = q;
        }
#pragma unroll
        for (int k = 0; k < N; k++) off[k] += c * stride[k][d];
      }
    }
  }

  /* As offsets(), also returning the coordinate along dim d0 (innermost-first). */
  __device__ __forceinline__ int64_t offsets_at(int64_t linear, int64_t (&off)[N], int d0) const {
    int64_t coord = 0;
#pragma unroll
    for (int k = 0; k < N; k++) off[k] = 0;
    int64_t l = linear;
#pragma unroll
    for (int d = 0; d < FL_MAX_DIMS; d++) {
      if (d == nd) break;
      int64_t c = l;
      if (d != nd - 1) {
        if (small) {
          uint32_t q = (uint32_t)l / (uint32_t)size[d];
          c = (int64_t)((uint32_t)l - q * (uint32_t)size[d]);
          l = q;
        } else {
          int64_t q = l / size[d];
          c = l - q * size[d];
          l = q;
        }
      }
      if (d == d0) coord = c;
#pragma unroll
      for (int k = 0; k < N; k++) off[k] += c * stride[k][d];
    }
    return coord;
  }
};

/* Builds the metadata for a shape and N stride vectors (outermost first, as in
 * fl_tensor). With merge: drops size-1 dims and merges dims that are
 * contiguous with each other in every operand, so contiguous tensors become
 * 1-D. Without: keeps every dim (callers that index one dim specially). */
template <int N>
static inline void fc_iter_init(fc_iter<N> *it, int ndim, const int64_t *shape, const int64_t *const *strides,
                                bool merge) {
  int64_t sz[FL_MAX_DIMS], st[N][FL_MAX_DIMS];
  int n = 0;
  int64_t numel = 1;
  for (int d = 0; d < ndim; d++) {
    numel *= shape[d];
    if (merge && shape[d] == 1) continue;
    bool can = merge && n > 0;
    for (int k = 0; can && k < N; k++) can = st[k][n - 1] == strides[k][d] * shape[d];
    if (can) {
      sz[n - 1] *= shape[d];
      for (int k = 0; k < N; k++) st[k][n - 1] = strides[k][d];
      continue;
    }
    sz[n] = shape[d];
    for (int k = 0; k < N; k++) st[k][n] = strides[k][d];
    n++;
  }
  if (n == 0) { /* 0-dim or all ones: one element */
    sz[0] = 1;
    for (int k = 0; k < N; k++) st[k][0] = 0;
    n = 1;
  }
  it->nd = n;
  it->small = numel <= (int64_t)UINT32_MAX;
  for (int d = 0; d < n; d++) {
    it->size[d] = sz[n - 1 - d];
    for (int k = 0; k < N; k++) it->stride[k][d] = st[k][n - 1 - d];
  }
  for (int d = n; d < FL_MAX_DIMS; d++) {
    it->size[d] = 1;
    for (int k = 0; k < N; k++) it->stride[k][d] = 0;
  }
}

#endif
