/* Deterministic scatter-add on CUDA: the kernels behind index_add_, scatter_add and the backward of
 * index_select, embedding and gather. The same inputs give bit-identical results on every run.
 *
 * 1. keys: each index entry becomes a (destination key, position) pair; an index outside its dim is reported
 *    through the sticky error word (fc_kerr_report) and gets the sentinel key, which sorts last and is skipped.
 *    index_add (ROWS): the key is the index itself, a destination row; every "column" (the dims other than
 *    `dim`) shares it. scatter_add (ELEMS): the key is the flat position of the destination element in out.
 * 2. CUB's LSD radix sort orders the pairs by key, stably, so each destination's positions are ascending.
 * 3. Segments: for a fresh output (the backward), destination u's segment is [lower_bound(u), lower_bound(u+1));
 *    otherwise the segment heads come from DeviceSelect over "key differs from the previous one".
 * 4. One thread per (segment, column) sums its segment's source elements in sorted order (f32 for f16/bf16,
 *    f64 for f64, i64 for integers) and writes its destination once: no atomics, a fixed order.
 *    A long segment would serialise one thread, so full aligned tiles of TILE sorted entries that hold a single
 *    key are pre-summed by a tile kernel, and such a segment sums its head, its tiles' partials and its tail:
 *    still a fixed association, whatever the timing. */
#include "allocator.cuh"
#include "context.cuh"
#include "dispatch.cuh"
#include "iter.cuh"
#include "ops.cuh"
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>

namespace {

constexpr int64_t TILE = 64; /* sorted entries per pre-summed tile */

struct det_args {
  fc_iter<2> cols;  /* ROWS: the dims other than dim -> (out, src) offsets */
  fc_iter<2> kmap;  /* ELEMS: position in idx -> (idx offset, key with dim's coordinate 0) */
  fc_iter<1> dest;  /* ELEMS: key (flat index over out's shape) -> out offset */
  fc_iter<1> srcp;  /* ELEMS: position in idx -> src offset */
  int64_t ncols;    /* ROWS: columns per destination row; ELEMS: 1 */
  int64_t ostride, sstride, istride; /* ROWS: out's and src's stride along dim, idx's stride */
  int64_t key_dim;  /* ELEMS: the key's step along dim (out's row-major stride there) */
  int64_t size;     /* the indexed dim's size */
  int64_t sentinel; /* key of a bad index: one past every valid key */
  int64_t n;        /* index entries */
  bool rows;        /* ROWS with dim 0 of contiguous out and src: out[u * ncols + c], src[p * ncols + c] */
  char *out;
  const char *src;
  const char *idx;
  bool idx32;
  int64_t base;
  double alpha;
  unsigned long long *err;
  int errbit;
};

template <bool ELEMS>
__device__ __forceinline__ int64_t src_offset(const det_args &p, int64_t scol, int64_t pos) {
  if (ELEMS) {
    int64_t o[1];
    p.srcp.offsets(pos, o);
    return o[0];
  }
  return scol + pos * p.sstride;
}

template <class K, bool ELEMS>
__global__ void __launch_bounds__(FC_THREADS) keys_kernel(det_args p, K *keys, int64_t *vals) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t ioff = i * p.istride, kbase = 0;
    if (ELEMS) {
      int64_t o[2];
      p.kmap.offsets(i, o);
      ioff = o[0], kbase = o[1];
    }
    int64_t v = (p.idx32 ? (int64_t)((const int32_t *)p.idx)[ioff] : ((const int64_t *)p.idx)[ioff]) - p.base;
    int64_t key = p.sentinel;
    if (v >= 0 && v < p.size) key = ELEMS ? kbase + v * p.key_dim : v;
    else fc_kerr_report(p.err, p.errbit, v, p.size);
    keys[i] = (K)key;
    vals[i] = i;
  }
}

/* off[u] = the first sorted position whose key is >= u, for u in [0, size]. */
template <class K>
__global__ void __launch_bounds__(FC_THREADS) bounds_kernel(const K *keys, int64_t n, int64_t size, int64_t *off) {
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u <= size; u += (int64_t)gridDim.x * blockDim.x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if ((int64_t)keys[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    off[u] = lo;
  }
}

template <class K>
struct is_head {
  const K *keys;
  __host__ __device__ bool operator()(int64_t i) const { return i == 0 || keys[i] != keys[i - 1]; }
};

/* The partial sum of every full tile of TILE sorted entries that holds one valid key, per column. */
template <class T, class K, bool ELEMS>
__global__ void __launch_bounds__(FC_THREADS) tile_kernel(det_args p, const K *keys, const int64_t *pos,
                                                          typename fc_num<T>::acc *partials, int64_t ntiles) {
  using C = typename fc_num<T>::acc;
  const int64_t total = ntiles * p.ncols;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
    int64_t k = t / p.ncols, c = t - k * p.ncols, q0 = k * TILE;
    K u = keys[q0];
    if (u != keys[q0 + TILE - 1] || (int64_t)u == p.sentinel) continue;
    int64_t off[2] = {0, 0};
    if (!ELEMS) p.cols.offsets(c, off);
    C acc = 0;
    for (int64_t q = q0; q < q0 + TILE; q++) acc += fc_num<T>::load(((const T *)p.src)[src_offset<ELEMS>(p, off[1], pos[q])]);
    partials[t] = acc;
  }
}

/* One thread per (segment, column): the segment's sum in sorted order, written once.
 * FRESH: segment j is destination row j (seg has size + 1 bounds) and out starts as zeros (not read);
 * else segment j starts at seg[j] (nseg of them on the device) and adds to out. */
template <class T, class K, bool ELEMS, bool FRESH>
__global__ void __launch_bounds__(FC_THREADS) segsum_kernel(det_args p, const K *keys, const int64_t *pos,
                                                            const int64_t *seg, const int64_t *nseg_dev,
                                                            const typename fc_num<T>::acc *partials) {
  using C = typename fc_num<T>::acc;
  const int64_t nseg = FRESH ? p.size : *nseg_dev, total = nseg * p.ncols;
  const C alpha = (C)p.alpha;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
    int64_t j = ELEMS ? t : t / p.ncols, c = ELEMS ? 0 : t - j * p.ncols;
    int64_t s = seg[j], e, u;
    if (FRESH) {
      e = seg[j + 1], u = j;
    } else {
      e = j + 1 < nseg ? seg[j + 1] : p.n;
      u = (int64_t)keys[s];
      if (u == p.sentinel) continue;
    }
    int64_t off[2] = {0, 0}, doff;
    if (ELEMS) {
      int64_t o[1];
      p.dest.offsets(u, o);
      doff = o[0];
    } else {
      p.cols.offsets(c, off);
      doff = off[0] + u * p.ostride;
    }
    C acc = 0;
    int64_t a = (s + TILE - 1) / TILE * TILE, b = e / TILE * TILE;
    if (a < b) { /* head, pre-summed tiles, tail */
      for (int64_t q = s; q < a; q++) acc += fc_num<T>::load(((const T *)p.src)[src_offset<ELEMS>(p, off[1], pos[q])]);
      for (int64_t k = a / TILE; k < b / TILE; k++) acc += partials[k * p.ncols + c];
      s = b;
    }
    for (int64_t q = s; q < e; q++) acc += fc_num<T>::load(((const T *)p.src)[src_offset<ELEMS>(p, off[1], pos[q])]);
    T *o = (T *)p.out + doff;
    C prev = FRESH ? (C)0 : fc_num<T>::load(*o);
    *o = fc_num<T>::make(prev + (alpha == (C)1 ? acc : alpha * acc));
  }
}

/* The common layout (index_add along dim 0 of contiguous out and src, e.g. the backward of index_select and
 * embedding): one block per destination row, threads over its columns, VEC elements per 16-byte access. Same sums
 * in the same order as segsum_kernel. */
template <class T, class K, bool FRESH, int VEC>
__global__ void __launch_bounds__(FC_THREADS) segsum_rows_kernel(det_args p, const K *keys, const int64_t *pos,
                                                                 const int64_t *seg, const int64_t *nseg_dev,
                                                                 const typename fc_num<T>::acc *partials) {
  using C = typename fc_num<T>::acc;
  const int64_t nseg = FRESH ? p.size : *nseg_dev, D = p.ncols;
  const C alpha = (C)p.alpha;
  const T *src = (const T *)p.src;
  for (int64_t j = blockIdx.x; j < nseg; j += gridDim.x) {
    int64_t s = seg[j], e, u;
    if (FRESH) {
      e = seg[j + 1], u = j;
    } else {
      e = j + 1 < nseg ? seg[j + 1] : p.n;
      u = (int64_t)keys[s];
      if (u == p.sentinel) continue;
    }
    const int64_t a = (s + TILE - 1) / TILE * TILE, b = e / TILE * TILE;
    const bool tiles = a < b;
    for (int64_t c0 = (int64_t)threadIdx.x * VEC; c0 < D; c0 += (int64_t)blockDim.x * VEC) {
      C acc[VEC];
#pragma unroll
      for (int k = 0; k < VEC; k++) acc[k] = 0;
      auto add_row = [&](int64_t q) {
        union {
          uint4 u4;
          T v[VEC];
        } r;
        const T *row = src + pos[q] * D + c0;
        if (VEC > 1) r.u4 = *(const uint4 *)row;
        else r.v[0] = row[0];
#pragma unroll
        for (int k = 0; k < VEC; k++) acc[k] += fc_num<T>::load(r.v[k]);
      };
      int64_t q = s;
      if (tiles) {
        for (; q < a; q++) add_row(q);
        for (int64_t k = a / TILE; k < b / TILE; k++)
#pragma unroll
          for (int v = 0; v < VEC; v++) acc[v] += partials[k * D + c0 + v];
        q = b;
      }
      for (; q < e; q++) add_row(q);
      T *o = (T *)p.out + u * D + c0;
      union {
        uint4 u4;
        T v[VEC];
      } w;
      if (!FRESH) {
        if (VEC > 1) w.u4 = *(const uint4 *)o;
        else w.v[0] = o[0];
      }
#pragma unroll
      for (int k = 0; k < VEC; k++) {
        C prev = FRESH ? (C)0 : fc_num<T>::load(w.v[k]);
        w.v[k] = fc_num<T>::make(prev + (alpha == (C)1 ? acc[k] : alpha * acc[k]));
      }
      if (VEC > 1) *(uint4 *)o = w.u4;
      else o[0] = w.v[0];
    }
  }
}

size_t aligned(size_t b) { return (b + 255) & ~(size_t)255; }

int bits_for(int64_t v) {
  int b = 1;
  while (b < 64 && (v >> b) != 0) b++;
  return b;
}

template <class T, class K, bool ELEMS, bool FRESH>
fl_status run_det(fc_context *ctx, det_args &p) {
  using C = typename fc_num<T>::acc;
  const int64_t n = p.n, ntiles = n / TILE;
  K *kin = nullptr, *kout = nullptr;
  int64_t *vin = nullptr, *vout = nullptr, *seg = nullptr, *nseg = nullptr;
  const int end_bit = bits_for(p.sentinel);
  size_t sort_temp = 0, sel_temp = 0;
  FC_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, sort_temp, kin, kout, vin, vout, n, 0, end_bit, fc_stream(ctx)));
  thrust::counting_iterator<int64_t> count(0);
  if (!FRESH)
    FC_CUDA(cub::DeviceSelect::If(nullptr, sel_temp, count, seg, nseg, n, is_head<K>{kout}, fc_stream(ctx)));
  size_t kb = aligned(sizeof(K) * (size_t)n), vb = aligned(sizeof(int64_t) * (size_t)n);
  size_t sb = aligned(sizeof(int64_t) * (size_t)(FRESH ? p.size + 1 : n + 1));
  size_t pb = aligned(sizeof(C) * (size_t)(ntiles * p.ncols));
  size_t tb = aligned(sort_temp > sel_temp ? sort_temp : sel_temp);
  fc_scratch mem;
  FL_TRY(mem.get(ctx, 2 * kb + 2 * vb + sb + pb + tb));
  char *m = (char *)mem.ptr;
  kin = (K *)m, kout = (K *)(m + kb);
  vin = (int64_t *)(m + 2 * kb), vout = (int64_t *)(m + 2 * kb + vb);
  seg = (int64_t *)(m + 2 * kb + 2 * vb), nseg = seg + (FRESH ? 0 : n);
  C *partials = (C *)(m + 2 * kb + 2 * vb + sb);
  void *temp = m + 2 * kb + 2 * vb + sb + pb;

  p.err = fc_kerr_arm(ctx);
  keys_kernel<K, ELEMS><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(p, kin, vin);
  FL_TRY(fc_launched("index keys_kernel"));
  FC_CUDA(cub::DeviceRadixSort::SortPairs(temp, sort_temp, kin, kout, vin, vout, n, 0, end_bit, fc_stream(ctx)));
  if (FRESH) {
    bounds_kernel<K><<<fc_grid(ctx, p.size + 1, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(kout, n, p.size, seg);
    FL_TRY(fc_launched("index bounds_kernel"));
  } else {
    FC_CUDA(cub::DeviceSelect::If(temp, sel_temp, count, seg, nseg, n, is_head<K>{kout}, fc_stream(ctx)));
  }
  if (ntiles > 0) {
    tile_kernel<T, K, ELEMS><<<fc_grid(ctx, ntiles * p.ncols, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
        p, kout, vout, partials, ntiles);
    FL_TRY(fc_launched("index tile_kernel"));
  }
  const int64_t nrows = FRESH ? p.size : n;
  if constexpr (!ELEMS && sizeof(T) <= 16) {
    if (p.rows) { /* contiguous rows along dim 0: a block per destination row */
      constexpr int V = (int)(16 / sizeof(T));
      const bool vec = p.ncols % V == 0 && fc_aligned(p.out, 16) && fc_aligned(p.src, 16);
      const unsigned grid = (unsigned)fc_min64(fc_max64(nrows, 1), (int64_t)ctx->sm_count * 32);
      if (vec) segsum_rows_kernel<T, K, FRESH, V><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(p, kout, vout, seg, nseg, partials);
      else segsum_rows_kernel<T, K, FRESH, 1><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(p, kout, vout, seg, nseg, partials);
      return fc_launched("index segsum_rows_kernel");
    }
  }
  segsum_kernel<T, K, ELEMS, FRESH><<<fc_grid(ctx, nrows * p.ncols, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
      p, kout, vout, seg, nseg, partials);
  return fc_launched("index segsum_kernel");
}

template <bool ELEMS, bool FRESH>
fl_status run_typed(fc_context *ctx, const char *op, fl_dtype dt, det_args &p) {
  bool k32 = p.sentinel < (int64_t)UINT32_MAX;
  return fc_dispatch(dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return k32 ? run_det<T, uint32_t, ELEMS, FRESH>(ctx, p) : run_det<T, uint64_t, ELEMS, FRESH>(ctx, p);
  });
}

/* The dims of t other than dim, as a shape (dim's size set to 1) and t's strides. */
void rest_shape(const fl_tensor *t, int dim, int64_t *shape) {
  memcpy(shape, t->shape, sizeof t->shape);
  shape[dim] = 1;
}

fl_status index_of(const fl_tensor *idx, det_args &p) {
  if (idx->dtype != FL_I64 && idx->dtype != FL_I32) {
    fl_desc d = fl_describe(idx);
    return fl_error(FL_EDTYPE, "the index must be i64 or i32, got %s", d.s);
  }
  p.idx32 = idx->dtype == FL_I32;
  p.idx = fc_base(idx);
  p.n = fl_numel(idx);
  return FL_OK;
}

} // namespace

namespace fc {

fl_status index_add_det(const char *op, int errbit, fl_tensor *out, int dim, const fl_tensor *idx,
                        const fl_tensor *src, double alpha, int64_t base, bool fresh) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  det_args p;
  memset(&p, 0, sizeof p);
  FL_TRY(index_of(idx, p));
  if (p.n == 0) return FL_OK;
  int64_t shape[FL_MAX_DIMS];
  rest_shape(out, dim, shape);
  const int64_t *st[2] = {out->stride, src->stride};
  fc_iter_init<2>(&p.cols, out->ndim, shape, st, true);
  p.ncols = 1;
  for (int d = 0; d < out->ndim; d++) p.ncols *= shape[d];
  if (p.ncols == 0 && !fresh) return FL_OK;
  p.ostride = out->stride[dim], p.sstride = src->stride[dim];
  bool lead = true; /* every dim before dim has size 1 */
  for (int d = 0; d < dim; d++) lead = lead && out->shape[d] == 1;
  p.rows = lead && fl_is_contiguous(out) && fl_is_contiguous(src);
  p.istride = idx->ndim ? idx->stride[0] : 0;
  p.size = p.sentinel = out->shape[dim];
  p.out = fc_base(out), p.src = fc_base(src);
  p.base = base, p.alpha = alpha, p.errbit = errbit;
  return fresh ? run_typed<false, true>(ctx, op, out->dtype, p) : run_typed<false, false>(ctx, op, out->dtype, p);
}

fl_status scatter_add_det(const char *op, int errbit, fl_tensor *out, int dim, const fl_tensor *idx,
                          const fl_tensor *src, int64_t base) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  det_args p;
  memset(&p, 0, sizeof p);
  FL_TRY(index_of(idx, p));
  if (p.n == 0) return FL_OK;
  int64_t ostr[FL_MAX_DIMS], kstr[FL_MAX_DIMS];
  fl_contiguous_strides(out->ndim, out->shape, ostr); /* keys count out's elements row-major */
  memcpy(kstr, ostr, sizeof kstr);
  p.key_dim = ostr[dim];
  kstr[dim] = 0;
  const int64_t *ks[2] = {idx->stride, kstr};
  fc_iter_init<2>(&p.kmap, idx->ndim, idx->shape, ks, true);
  const int64_t *ds[1] = {out->stride};
  fc_iter_init<1>(&p.dest, out->ndim, out->shape, ds, true);
  const int64_t *ss[1] = {src->stride};
  fc_iter_init<1>(&p.srcp, idx->ndim, idx->shape, ss, true);
  p.ncols = 1;
  p.size = out->shape[dim];
  p.sentinel = fl_numel(out);
  p.out = fc_base(out), p.src = fc_base(src);
  p.base = base, p.alpha = 1.0, p.errbit = errbit;
  return run_typed<true, false>(ctx, op, out->dtype, p);
}

} // namespace fc
