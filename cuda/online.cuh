/* The online (max, sum of exp) pair of a softmax row: push one value, merge two
 * partial pairs (softmax.cu, loss.cu). */
#ifndef FL_CUDA_ONLINE_CUH
#define FL_CUDA_ONLINE_CUH

#include "math.cuh"

template <class C>
struct online {
  C m, s; /* running max, sum of exp(x - m) */
};

template <class C>
__device__ __forceinline__ void push(online<C> &a, C v) {
  if (v > a.m) {
    a.s = a.s * fc_exp(a.m - v) + (C)1; /* m = -inf at first: exp(-inf) = 0 */
    a.m = v;
  } else if (v > -(C)INFINITY || fc_isnan(v)) {
    a.s += fc_exp(v - a.m); /* NaN propagates; -inf adds nothing */
  }
}

template <class C>
__device__ __forceinline__ online<C> merge(online<C> a, online<C> b) {
  C m = a.m > b.m ? a.m : b.m;
  if (m == -(C)INFINITY) return a;
  C s = (a.m == -(C)INFINITY ? (C)0 : a.s * fc_exp(a.m - m)) + (b.m == -(C)INFINITY ? (C)0 : b.s * fc_exp(b.m - m));
  return online<C>{fc_isnan(a.m) || fc_isnan(b.m) ? (C)NAN : m, s};
}

#endif
