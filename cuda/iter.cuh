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
 * fl_tensor) from the core's iteration plan (fl_plan_dims, src/core/plan.c),
 * the one place dims are dropped and merged for every backend. With merge:
 * size-1 dims dropped and dims contiguous with each other in every operand
 * merged, so contiguous tensors become 1-D. Without: every dim kept (callers
 * that index one dim specially). */
template <int N>
static inline void fc_iter_init(fc_iter<N> *it, int ndim, const int64_t *shape, const int64_t *const *strides,
                                bool merge) {
  static_assert(N <= FL_PLAN_MAX, "fc_iter: more operands than an fl_plan holds");
  fl_plan p;
  fl_plan_dims(&p, N, ndim, shape, strides, merge);
  int n = p.ndim;
  it->small = p.numel <= (int64_t)UINT32_MAX;
  if (n == 0) { /* 0-dim or all ones: one element */
    it->nd = 1;
    it->size[0] = 1;
    for (int k = 0; k < N; k++) it->stride[k][0] = 0;
    n = 1;
  } else {
    it->nd = n;
    for (int d = 0; d < n; d++) { /* innermost first */
      it->size[d] = p.shape[n - 1 - d];
      for (int k = 0; k < N; k++) it->stride[k][d] = p.stride[k][n - 1 - d];
    }
  }
  for (int d = n; d < FL_MAX_DIMS; d++) {
    it->size[d] = 1;
    for (int k = 0; k < N; k++) it->stride[k][d] = 0;
  }
}

#endif
