/* layer_norm, rms_norm and group_norm on CUDA (the norm_forward / norm_backward entries; ops/norm.c has the view
 * x [n, groups, cpg, inner], rows = n * groups of cols = cpg * inner elements, the affine per channel).
 *
 * Forward: G threads per row (a warp for rows up to 512 vectors, else a whole block), 16-byte vector loads
 * where the row allows; one pass of per-thread Welford (each vector's own mean and M2 merged with Chan's
 * formula, then across the group) gives mean and rstd, a second pass writes y. rms: the sum of squares.
 * Backward, inner == 1 (layer/rms norm, group_norm of [N, C]): dx in one kernel, G threads per row (the sums
 * of g = dy * w and g * xhat, then dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); the row's second read is
 * a cache hit); dw/db in two stages: per-block partial column sums over a chunk of rows into an f32 (f64) workspace
 * [chunks, C], then one thread per column adds its chunks in order.
 * Backward, inner > 1 (group_norm): per (n, c) plane sums of dy * xhat and dy (G threads per plane), then per row
 * the coefficients of dx = rstd * w * dy + p * x + q, then dx elementwise per plane; dw/db add the plane sums
 * over n (the same column kernel as above). Deterministic: every sum has a fixed order. No host sync. */
#include "allocator.cuh"
#include "math.cuh"
#include "ops.cuh"
#include <type_traits>

namespace {

template <class T, int N>
struct alignas(sizeof(T) * N) fc_vec {
  T v[N];
};

/* N consecutive elements as the compute type: one 16-byte load when N > 1 (the caller checked alignment). */
template <class T, int N, class C>
FC_DEV void ldv(const T *p, C *out) {
  if constexpr (N == 1) {
    out[0] = fc_num<T>::load(*p);
  } else {
    fc_vec<T, N> a = *reinterpret_cast<const fc_vec<T, N> *>(p);
#pragma unroll
    for (int k = 0; k < N; k++) out[k] = fc_num<T>::load(a.v[k]);
  }
}
template <class T, int N, class C>
FC_DEV void stv(T *p, const C *in) {
  if constexpr (N == 1) {
    *p = fc_num<T>::make(in[0]);
  } else {
    fc_vec<T, N> a;
#pragma unroll
    for (int k = 0; k < N; k++) a.v[k] = fc_num<T>::make(in[k]);
    *reinterpret_cast<fc_vec<T, N> *>(p) = a;
  }
}

/* A weight or bias element: of x's dtype T, or f32 (a module's parameters with a half x); NULL reads as dflt. */
template <class T, class C>
FC_DEV C ldp(const void *p, bool f32, int64_t i, C dflt) {
  if (!p) return dflt;
  return f32 ? (C)((const float *)p)[i] : fc_num<T>::load(((const T *)p)[i]);
}

/* N parameters from channel c on (16-byte loads when N > 1: c is a multiple of N and the base aligned). */
template <class T, int N, class C>
FC_DEV void ldpv(const void *p, bool f32, int64_t c, C dflt, C *out) {
  if (!p) {
#pragma unroll
    for (int k = 0; k < N; k++) out[k] = dflt;
  } else if constexpr (N == 1) {
    out[0] = ldp<T>(p, f32, c, dflt);
  } else if (f32) {
    if constexpr (N % 4 == 0) {
#pragma unroll
      for (int k = 0; k < N; k += 4) {
        float4 v = *reinterpret_cast<const float4 *>((const float *)p + c + k);
        out[k] = v.x, out[k + 1] = v.y, out[k + 2] = v.z, out[k + 3] = v.w;
      }
    }
  } else {
    ldv<T, N>((const T *)p + c, out);
  }
}

/* Calls f(i, n) for this thread's elements of a segment of len: n = V-element vectors (len a multiple of V,
 * aligned) or single elements. */
template <int V, class F>
FC_DEV void walk(int64_t len, int lane, int G, bool vec, F &&f) {
  if (vec) {
#pragma unroll 4
    for (int64_t i = (int64_t)lane * V; i < len; i += (int64_t)G * V) f(i, std::integral_constant<int, V>{});
  } else {
#pragma unroll 4
    for (int64_t i = lane; i < len; i += G) f(i, std::integral_constant<int, 1>{});
  }
}

/* The sum over a group of G threads: G <= 32 lanes of a warp, or the whole block (G == blockDim.x, sh holds
 * blockDim.x / 32 values). Every thread of the block calls it. */
template <class C>
FC_DEV C gsum(C v, int G, C *sh) {
  if (G <= 32) {
    for (int d = G / 2; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d, G);
    return v;
  }
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  __syncthreads(); /* sh may still be read from the previous call */
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  C t = 0;
  for (int k = 0; k < (int)(blockDim.x >> 5); k++) t += sh[k];
  return t;
}

template <class C>
struct welford {
  C n, m, q; /* count, mean, sum of squared deviations */
};
template <class C>
FC_DEV void wmerge(welford<C> &a, C nb, C mb, C qb) {
  C n = a.n + nb;
  if (n == 0) return;
  C d = mb - a.m, f = nb / n;
  a.m += d * f;
  a.q += qb + d * d * a.n * f;
  a.n = n;
}
template <class C>
FC_DEV welford<C> gwelford(welford<C> a, int G, C *sh) {
  const int w = G <= 32 ? G : 32;
  for (int d = w / 2; d > 0; d >>= 1) {
    C nb = __shfl_xor_sync(0xffffffffu, a.n, d, w), mb = __shfl_xor_sync(0xffffffffu, a.m, d, w),
      qb = __shfl_xor_sync(0xffffffffu, a.q, d, w);
    wmerge(a, nb, mb, qb);
  }
  if (G <= 32) return a;
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    int k = threadIdx.x >> 5;
    sh[3 * k] = a.n, sh[3 * k + 1] = a.m, sh[3 * k + 2] = a.q;
  }
  __syncthreads();
  welford<C> t{0, 0, 0};
  for (int k = 0; k < (int)(blockDim.x >> 5); k++) wmerge(t, sh[3 * k], sh[3 * k + 1], sh[3 * k + 2]);
  return t;
}

struct geo {
  int64_t rows, cols, groups, cpg, inner, chans; /* chans = groups * cpg */
  int G;            /* threads per row (or plane) */
  bool vec, rms, w32, b32;
};

/* The channel of element i of a row whose first channel is ch0 (for a vector: of all its elements when
 * inner > 1, since the host only vectorises when V divides inner). */
FC_DEV int64_t chan_of(const geo &g, int64_t ch0, int64_t i) {
  if (g.inner == 1) return ch0 + i;
  return ch0 + (g.cols < ((int64_t)1 << 31) ? (int64_t)((uint32_t)i / (uint32_t)g.inner) : i / g.inner);
}

template <class T, int V>
__global__ void __launch_bounds__(FC_THREADS * 2)
    fwd_kernel(const T *x, T *y, typename fc_num<T>::acc *mean, typename fc_num<T>::acc *rstd, const void *w,
               const void *b, geo g, double eps) {
  using C = typename fc_num<T>::acc;
  __shared__ C sh[3 * 32];
  const int G = g.G, lane = threadIdx.x % G, R = blockDim.x / G;
  for (int64_t rb = (int64_t)blockIdx.x * R; rb < g.rows; rb += (int64_t)gridDim.x * R) {
    const int64_t row = rb + threadIdx.x / G;
    const bool valid = row < g.rows;
    const T *xr = x + (valid ? row : 0) * g.cols;
    welford<C> a{0, 0, 0};
    if (valid)
      walk<V>(g.cols, lane, G, g.vec, [&](int64_t i, auto n) {
        constexpr int N = decltype(n)::value;
        C v[N], s = 0, q = 0;
        ldv<T, N>(xr + i, v);
        if (g.rms) {
#pragma unroll
          for (int k = 0; k < N; k++) q += v[k] * v[k];
          a.q += q;
        } else {
#pragma unroll
          for (int k = 0; k < N; k++) s += v[k];
          C m = s / (C)N;
#pragma unroll
          for (int k = 0; k < N; k++) q += (v[k] - m) * (v[k] - m);
          wmerge(a, (C)N, m, q);
        }
      });
    C mu = 0, var;
    if (g.rms) {
      var = gsum(a.q, G, sh) / (C)g.cols;
    } else {
      a = gwelford(a, G, sh);
      mu = a.m, var = a.q / (C)g.cols;
    }
    const C rs = (C)1 / fc_sqrt(var + (C)eps);
    if (!valid) continue;
    if (lane == 0) {
      if (mean) mean[row] = mu;
      rstd[row] = rs;
    }
    const int64_t ch0 = (row % g.groups) * g.cpg;
    T *yr = y + row * g.cols;
    walk<V>(g.cols, lane, G, g.vec, [&](int64_t i, auto n) {
      constexpr int N = decltype(n)::value;
      C v[N];
      ldv<T, N>(xr + i, v);
      C wv[N], bv[N];
      if (g.inner == 1) {
        ldpv<T, N>(w, g.w32, ch0 + i, (C)1, wv);
        ldpv<T, N>(b, g.b32, ch0 + i, (C)0, bv);
      } else { /* one channel for the whole vector */
        const int64_t c = chan_of(g, ch0, i);
        const C ws = ldp<T>(w, g.w32, c, (C)1), bs = ldp<T>(b, g.b32, c, (C)0);
#pragma unroll
        for (int k = 0; k < N; k++) wv[k] = ws, bv[k] = bs;
      }
#pragma unroll
      for (int k = 0; k < N; k++) v[k] = (v[k] - mu) * rs * wv[k] + bv[k];
      stv<T, N>(yr + i, v);
    });
  }
}

/* dx of rows (inner == 1): the sums of g = dy * w and g * xhat over the row, then dx. */
template <class T, int V>
__global__ void __launch_bounds__(FC_THREADS * 2)
    dx_rows_kernel(T *dx, const T *dy, const T *x, const void *w, const typename fc_num<T>::acc *mean,
                   const typename fc_num<T>::acc *rstd, geo g) {
  using C = typename fc_num<T>::acc;
  __shared__ C sh[32];
  const int G = g.G, lane = threadIdx.x % G, R = blockDim.x / G;
  for (int64_t rb = (int64_t)blockIdx.x * R; rb < g.rows; rb += (int64_t)gridDim.x * R) {
    const int64_t row = rb + threadIdx.x / G;
    const bool valid = row < g.rows;
    const int64_t off = (valid ? row : 0) * g.cols, ch0 = (valid ? row % g.groups : 0) * g.cpg;
    const C mu = valid && mean ? mean[row] : (C)0, rs = valid ? rstd[row] : (C)0;
    C sg = 0, sgx = 0;
    if (valid)
      walk<V>(g.cols, lane, G, g.vec, [&](int64_t i, auto n) {
        constexpr int N = decltype(n)::value;
        C xv[N], gv[N];
        ldv<T, N>(x + off + i, xv);
        ldv<T, N>(dy + off + i, gv);
        C wv[N];
        ldpv<T, N>(w, g.w32, ch0 + i, (C)1, wv);
#pragma unroll
        for (int k = 0; k < N; k++) {
          C gk = gv[k] * wv[k];
          sg += gk;
          sgx += gk * (xv[k] - mu) * rs;
        }
      });
    sg = gsum(sg, G, sh) / (C)g.cols;
    sgx = gsum(sgx, G, sh) / (C)g.cols;
    if (g.rms) sg = 0;
    if (!valid) continue;
    walk<V>(g.cols, lane, G, g.vec, [&](int64_t i, auto n) {
      constexpr int N = decltype(n)::value;
      C xv[N], gv[N];
      ldv<T, N>(x + off + i, xv);
      ldv<T, N>(dy + off + i, gv);
      C wv[N];
      ldpv<T, N>(w, g.w32, ch0 + i, (C)1, wv);
#pragma unroll
      for (int k = 0; k < N; k++) {
        C gk = gv[k] * wv[k];
        xv[k] = rs * (gk - sg - (xv[k] - mu) * rs * sgx);
      }
      stv<T, N>(dx + off + i, xv);
    });
  }
}

/* Stage one of dw/db for inner == 1: x, dy as [M, K] (K = channels), rows [m0, m1) of chunk blockIdx.y, 128
 * columns per block (4 per thread), 16 row lanes; the block's column sums of dy * xhat and dy go to
 * pw/pb[chunk * K + c]. The statistics of (m, c) are row m * groups + c / cpg. */
#define COL_TILE 128
#define COL_ROWS 16
template <class T>
__global__ void __launch_bounds__(32 * COL_ROWS)
    col_partial_kernel(typename fc_num<T>::acc *pw, typename fc_num<T>::acc *pb, const T *dy, const T *x,
                       const typename fc_num<T>::acc *mean, const typename fc_num<T>::acc *rstd, int64_t M,
                       int64_t K, int64_t groups, int64_t cpg, int64_t rows_per_chunk) {
  using C = typename fc_num<T>::acc;
  __shared__ C shw[COL_ROWS][COL_TILE], shb[COL_ROWS][COL_TILE];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t m0 = (int64_t)blockIdx.y * rows_per_chunk, m1 = m0 + rows_per_chunk < M ? m0 + rows_per_chunk : M;
  C sw[4] = {0, 0, 0, 0}, sb[4] = {0, 0, 0, 0};
  int64_t col[4], sg[4];
#pragma unroll
  for (int k = 0; k < 4; k++) {
    col[k] = (int64_t)blockIdx.x * COL_TILE + k * 32 + tx;
    sg[k] = col[k] < K ? col[k] / cpg : 0;
  }
  const bool one = groups == 1; /* layer/rms norm: the statistics of row m serve all 4 columns */
  for (int64_t m = m0 + ty; m < m1; m += COL_ROWS) {
    const C mu1 = one && mean ? mean[m] : (C)0, rs1 = one ? rstd[m] : (C)0;
#pragma unroll
    for (int k = 0; k < 4; k++) {
      if (col[k] >= K) continue;
      const int64_t r = m * groups + sg[k];
      const C mu = one ? mu1 : mean ? mean[r] : (C)0, rs = one ? rs1 : rstd[r];
      const C gv = fc_num<T>::load(dy[m * K + col[k]]), xv = fc_num<T>::load(x[m * K + col[k]]);
      sw[k] += gv * (xv - mu) * rs;
      sb[k] += gv;
    }
  }
#pragma unroll
  for (int k = 0; k < 4; k++) shw[ty][k * 32 + tx] = sw[k], shb[ty][k * 32 + tx] = sb[k];
  __syncthreads();
  /* 512 threads, 128 columns: the first 128 threads add the 16 row lanes in order */
  const int t = ty * 32 + tx;
  if (t < COL_TILE) {
    const int64_t c = (int64_t)blockIdx.x * COL_TILE + t;
    if (c < K) {
      C a = 0, bsum = 0;
      for (int j = 0; j < COL_ROWS; j++) a += shw[j][t], bsum += shb[j][t];
      pw[(int64_t)blockIdx.y * K + c] = a;
      pb[(int64_t)blockIdx.y * K + c] = bsum;
    }
  }
}

/* Stage two: dw[c] = sum over j < P of pw[j * K + c] (db likewise), one thread per column, in order. */
template <class T>
__global__ void __launch_bounds__(FC_THREADS)
    col_final_kernel(void *dw, bool w32, void *db, bool b32, const typename fc_num<T>::acc *pw,
                     const typename fc_num<T>::acc *pb, int64_t P, int64_t K) {
  using C = typename fc_num<T>::acc;
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < K; c += (int64_t)gridDim.x * blockDim.x) {
    C a = 0, s = 0;
    for (int64_t j = 0; j < P; j++) a += pw[j * K + c], s += pb[j * K + c];
    if (dw) {
      if (w32) ((float *)dw)[c] = (float)a;
      else ((T *)dw)[c] = fc_num<T>::make(a);
    }
    if (db) {
      if (b32) ((float *)db)[c] = (float)s;
      else ((T *)db)[c] = fc_num<T>::make(s);
    }
  }
}

/* inner > 1, stage one: per plane p = (n, c) of inner elements, sw[p] = sum dy * xhat and sb[p] = sum dy,
 * G threads per plane. */
template <class T, int V>
__global__ void __launch_bounds__(FC_THREADS * 2)
    plane_sums_kernel(typename fc_num<T>::acc *sw, typename fc_num<T>::acc *sb, const T *dy, const T *x,
                      const typename fc_num<T>::acc *mean, const typename fc_num<T>::acc *rstd, int64_t planes, geo g) {
  using C = typename fc_num<T>::acc;
  __shared__ C sh[32];
  const int G = g.G, lane = threadIdx.x % G, R = blockDim.x / G;
  for (int64_t pbase = (int64_t)blockIdx.x * R; pbase < planes; pbase += (int64_t)gridDim.x * R) {
    const int64_t p = pbase + threadIdx.x / G;
    const bool valid = p < planes;
    const int64_t r = valid ? p / g.cpg : 0, off = (valid ? p : 0) * g.inner;
    const C mu = valid && mean ? mean[r] : (C)0;
    C a = 0, s = 0;
    if (valid)
      walk<V>(g.inner, lane, G, g.vec, [&](int64_t i, auto n) {
        constexpr int N = decltype(n)::value;
        C xv[N], gv[N];
        ldv<T, N>(x + off + i, xv);
        ldv<T, N>(dy + off + i, gv);
#pragma unroll
        for (int k = 0; k < N; k++) a += gv[k] * (xv[k] - mu), s += gv[k];
      });
    a = gsum(a, G, sh);
    s = gsum(s, G, sh);
    if (valid && lane == 0) sw[p] = a * rstd[r], sb[p] = s;
  }
}

/* inner > 1: per row (n, group), dx = rstd * w * dy + p * x + q, with A = sum_c w sb, B = sum_c w sw over the
 * group's channels: p = -rstd^2 B / cols, q = -p mean - rstd A / cols (rms: no A). */
template <class T>
__global__ void __launch_bounds__(FC_THREADS)
    plane_coef_kernel(typename fc_num<T>::acc *pc, typename fc_num<T>::acc *qc, const typename fc_num<T>::acc *sw,
                      const typename fc_num<T>::acc *sb, const void *w, const typename fc_num<T>::acc *mean,
                      const typename fc_num<T>::acc *rstd, geo g) {
  using C = typename fc_num<T>::acc;
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < g.rows; r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = r / g.groups, ch0 = (r % g.groups) * g.cpg, p0 = n * g.chans + ch0;
    C A = 0, B = 0;
    for (int64_t k = 0; k < g.cpg; k++) {
      C wk = ldp<T>(w, g.w32, ch0 + k, (C)1);
      A += wk * sb[p0 + k], B += wk * sw[p0 + k];
    }
    const C rs = rstd[r], mu = mean ? mean[r] : (C)0, inv = (C)1 / (C)g.cols;
    const C p = -rs * rs * B * inv;
    pc[r] = p;
    qc[r] = g.rms ? (C)0 : -p * mu - rs * A * inv;
  }
}

template <class T, int V>
__global__ void __launch_bounds__(FC_THREADS * 2)
    dx_planes_kernel(T *dx, const T *dy, const T *x, const void *w, const typename fc_num<T>::acc *rstd,
                     const typename fc_num<T>::acc *pc, const typename fc_num<T>::acc *qc, int64_t planes, geo g) {
  using C = typename fc_num<T>::acc;
  const int G = g.G, lane = threadIdx.x % G, R = blockDim.x / G;
  for (int64_t pbase = (int64_t)blockIdx.x * R; pbase < planes; pbase += (int64_t)gridDim.x * R) {
    const int64_t p = pbase + threadIdx.x / G;
    if (p >= planes) continue;
    const int64_t r = p / g.cpg, off = p * g.inner;
    const C a = rstd[r] * ldp<T>(w, g.w32, p % g.chans, (C)1), pp = pc[r], qq = qc[r];
    walk<V>(g.inner, lane, G, g.vec, [&](int64_t i, auto n) {
      constexpr int N = decltype(n)::value;
      C xv[N], gv[N];
      ldv<T, N>(x + off + i, xv);
      ldv<T, N>(dy + off + i, gv);
#pragma unroll
      for (int k = 0; k < N; k++) xv[k] = a * gv[k] + pp * xv[k] + qq;
      stv<T, N>(dx + off + i, xv);
    });
  }
}

/* Threads per segment of len elements (V per vector): a warp (several segments per block) up to 16 vectors per
 * lane, else one block per segment of up to 512 threads. Sets g.G; returns the block size. */
int pick_group(geo &g, int64_t len, int V) {
  int64_t vecs = fc_ceil_div(len, V);
  if (vecs <= 32 * 16) {
    g.G = (int)fc_min64(32, fc_max64(1, fc_next_pow2(fc_ceil_div(vecs, 4))));
    return FC_THREADS;
  }
  g.G = (int)fc_min64(2 * FC_THREADS, fc_max64(64, fc_next_pow2(fc_ceil_div(vecs, 8))));
  return g.G;
}

unsigned blocks_for(const fc_context *ctx, int64_t segs, int block, int G) {
  int64_t per = block / G;
  return (unsigned)fc_min64(fc_ceil_div(segs, per), (int64_t)ctx->sm_count * 32);
}

/* 16-byte vectors when every pointer is aligned and the segment length (and inner, which a vector must not
 * cross) are multiples of V. */
bool can_vec(int V, int64_t seg, int64_t inner, std::initializer_list<const void *> ps) {
  if (seg % V || (inner > 1 && inner % V)) return false;
  for (const void *p : ps)
    if (p && !fc_aligned(p, 16)) return false;
  return true;
}

geo make_geo(const fl_tensor *x, const fl_tensor *rstd, int64_t groups, int64_t inner, bool rms, const fl_tensor *w,
             const fl_tensor *b) {
  geo g;
  g.rows = fl_numel(rstd);
  g.cols = fl_numel(x) / g.rows;
  g.groups = groups, g.inner = inner, g.cpg = g.cols / inner, g.chans = groups * g.cpg;
  g.rms = rms;
  g.w32 = w && w->dtype == FL_F32 && x->dtype != FL_F32;
  g.b32 = b && b->dtype == FL_F32 && x->dtype != FL_F32;
  g.G = 32, g.vec = false;
  return g;
}

fl_status check_stats(const char *op, const fl_tensor *x, const fl_tensor *mean, const fl_tensor *rstd) {
  fl_dtype want = x->dtype == FL_F64 ? FL_F64 : FL_F32;
  if (rstd->dtype != want || (mean && mean->dtype != want) || fl_numel(rstd) == 0 || fl_numel(x) % fl_numel(rstd))
    return fl_error(FL_EINVAL, "%s: the statistics must be %s of one value per row", op, fl_dtype_name(want));
  return FL_OK;
}

} // namespace

namespace fc {

fl_status norm_forward(fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, const fl_tensor *x, const fl_tensor *w,
                       const fl_tensor *b, int64_t groups, int64_t inner, double eps) {
  const char *name = "norm_forward";
  fc_context *ctx;
  FL_TRY(fc_context_of(y, &ctx));
  FL_TRY(check_stats(name, x, mean, rstd));
  geo g = make_geo(x, rstd, groups, inner, mean == NULL, w, b);
  return fc_dispatch<FC_M_FLOAT>(x->dtype, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = typename fc_num<T>::acc;
    constexpr int V = 16 / sizeof(T);
    int block = pick_group(g, g.cols, V);
    g.vec = can_vec(V, g.cols, g.inner, {fc_base(x), fc_base(y), w ? fc_base(w) : nullptr, b ? fc_base(b) : nullptr});
    unsigned nb = blocks_for(ctx, g.rows, block, g.G);
    fwd_kernel<T, V><<<nb, block, 0, fc_stream(ctx)>>>((const T *)fc_base(x), (T *)fc_base(y),
                                                    mean ? (C *)fc_base(mean) : nullptr, (C *)fc_base(rstd),
                                                    w ? fc_base(w) : nullptr, b ? fc_base(b) : nullptr, g, eps);
    return fc_launched("norm fwd_kernel");
  });
}

fl_status norm_backward(fl_tensor *dx, fl_tensor *dw, fl_tensor *db, const fl_tensor *dy, const fl_tensor *x,
                        const fl_tensor *w, const fl_tensor *mean, const fl_tensor *rstd, int64_t groups,
                        int64_t inner) {
  const char *name = "norm_backward";
  fc_context *ctx;
  FL_TRY(fc_context_of(x, &ctx));
  FL_TRY(check_stats(name, x, mean, rstd));
  geo g = make_geo(x, rstd, groups, inner, mean == NULL, w, w);
  const bool dw32 = dw && dw->dtype == FL_F32 && x->dtype != FL_F32, db32 = db && db->dtype == FL_F32 && x->dtype != FL_F32;
  return fc_dispatch<FC_M_FLOAT>(x->dtype, name, [&](auto tag) -> fl_status {
    using T = typename decltype(tag)::type;
    using C = typename fc_num<T>::acc;
    constexpr int V = 16 / sizeof(T);
    const T *xp = (const T *)fc_base(x), *gp = (const T *)fc_base(dy);
    T *dxp = dx ? (T *)fc_base(dx) : nullptr;
    const C *mp = mean ? (const C *)fc_base(mean) : nullptr, *rp = (const C *)fc_base(rstd);
    const void *wp = w ? fc_base(w) : nullptr;
    const int64_t M = g.rows / g.groups, K = g.chans; /* the [M, K] column view of dw/db */
    if (inner == 1) {
      if (dx) {
        int block = pick_group(g, g.cols, V);
        g.vec = can_vec(V, g.cols, 1, {xp, gp, dxp, wp});
        dx_rows_kernel<T, V><<<blocks_for(ctx, g.rows, block, g.G), block, 0, fc_stream(ctx)>>>(dxp, gp, xp, wp, mp, rp, g);
        FL_TRY(fc_launched("norm dx_rows_kernel"));
      }
      if (!dw && !db) return FL_OK;
      /* chunks of rows: enough blocks to fill the device twice over */
      const int64_t tiles = fc_ceil_div(K, COL_TILE);
      const int64_t chunks = fc_max64(1, fc_min64(fc_min64(fc_ceil_div((int64_t)ctx->sm_count * 8, tiles),
                                                           fc_ceil_div(M, COL_ROWS)), 4096));
      const int64_t per = fc_ceil_div(M, chunks), P = fc_ceil_div(M, per);
      if (tiles > 0x7fffffff) return fl_error(FL_EINVAL, "%s: %lld channels is too many", name, (long long)K);
      fc_scratch part;
      FL_TRY(part.get(ctx, (size_t)(2 * P * K) * sizeof(C)));
      C *pw = (C *)part.ptr, *pb = pw + P * K;
      col_partial_kernel<T><<<dim3((unsigned)tiles, (unsigned)P), dim3(32, COL_ROWS), 0, fc_stream(ctx)>>>(
          pw, pb, gp, xp, mp, rp, M, K, g.groups, g.cpg, per);
      FL_TRY(fc_launched("norm col_partial_kernel"));
      col_final_kernel<T><<<fc_grid(ctx, K, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
          dw ? fc_base(dw) : nullptr, dw32, db ? fc_base(db) : nullptr, db32, pw, pb, P, K);
      return fc_launched("norm col_final_kernel");
    }
    /* group_norm with spatial dims: the plane sums serve dx (through the coefficients) and dw/db */
    const int64_t planes = M * K;
    fc_scratch sums, coef;
    FL_TRY(sums.get(ctx, (size_t)(2 * planes) * sizeof(C)));
    C *sw = (C *)sums.ptr, *sb = sw + planes;
    int block = pick_group(g, g.inner, V);
    g.vec = can_vec(V, g.inner, g.inner, {xp, gp, dxp});
    unsigned nb = blocks_for(ctx, planes, block, g.G);
    plane_sums_kernel<T, V><<<nb, block, 0, fc_stream(ctx)>>>(sw, sb, gp, xp, mp, rp, planes, g);
    FL_TRY(fc_launched("norm plane_sums_kernel"));
    if (dx) {
      FL_TRY(coef.get(ctx, (size_t)(2 * g.rows) * sizeof(C)));
      C *pc = (C *)coef.ptr, *qc = pc + g.rows;
      plane_coef_kernel<T><<<fc_grid(ctx, g.rows, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(pc, qc, sw, sb, wp, mp,
                                                                                              rp, g);
      FL_TRY(fc_launched("norm plane_coef_kernel"));
      dx_planes_kernel<T, V><<<nb, block, 0, fc_stream(ctx)>>>(dxp, gp, xp, wp, rp, pc, qc, planes, g);
      FL_TRY(fc_launched("norm dx_planes_kernel"));
    }
    if (!dw && !db) return FL_OK;
    col_final_kernel<T><<<fc_grid(ctx, K, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
        dw ? fc_base(dw) : nullptr, dw32, db ? fc_base(db) : nullptr, db32, sw, sb, M, K);
    return fc_launched("norm col_final_kernel");
  });
}

} // namespace fc
