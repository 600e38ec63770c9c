/* sort along the last dim of contiguous rows. Each element becomes a (key,
 * position) pair with the CPU backend's keys (core/sortkey.h: NaN largest,
 * -0 == +0, descending as inverted keys), CUB sorts the pairs stably (one row:
 * DeviceRadixSort, an LSD radix sort, which is stable; several rows:
 * DeviceSegmentedSort::StableSortPairs), and a last kernel gathers the values
 * and adds the index base. Same keys, same stable order: the same permutation
 * as the CPU. */
#include "allocator.cuh"
#include "context.cuh"
#include "ops.cuh"
#include "sortkey.h"
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_sort.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

namespace {

/* K: the unsigned type of the element's width (its raw bits, and its key). */
template <class K>
__global__ void keys_kernel(const K *x, fl_dtype dt, bool desc, K *keys, int64_t *pos, int64_t n, int64_t total) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    keys[i] = (K)fl_sortkey(dt, (uint64_t)x[i], desc);
    pos[i] = i % n;
  }
}

/* indices holds the sorted positions; values (may be NULL) gets x at them. */
template <class K>
__global__ void gather_kernel(const K *x, K *values, int64_t *indices, int64_t n, int64_t total, int64_t base) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t p = indices[i];
    if (values) values[i] = x[(i / n) * n + p];
    indices[i] = p + base;
  }
}

struct row_start {
  int64_t n;
  __host__ __device__ int64_t operator()(int64_t r) const { return r * n; }
};

size_t aligned(size_t b) { return (b + 255) & ~(size_t)255; }

template <class K>
fl_status sort_rows(fc_context *ctx, fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool desc,
                    int64_t base) {
  int64_t total = fl_numel(x), n = x->shape[x->ndim - 1], rows = total / n;
  K *kin = nullptr, *kout = nullptr;
  int64_t *pin = nullptr, *pout = (int64_t *)fl_data_ptr(indices);
  size_t temp = 0;
  auto starts = thrust::make_transform_iterator(thrust::make_counting_iterator<int64_t>(0), row_start{n});
  auto run = [&](void *tmp) -> cudaError_t {
    if (rows == 1)
      return cub::DeviceRadixSort::SortPairs(tmp, temp, kin, kout, pin, pout, total, 0, (int)sizeof(K) * 8,
                                             fc_stream(ctx));
    return cub::DeviceSegmentedSort::StableSortPairs(tmp, temp, kin, kout, pin, pout, total, rows, starts,
                                                     starts + 1, fc_stream(ctx));
  };
  FC_CUDA(run(nullptr)); /* asks for the temp size only */
  size_t kb = aligned(sizeof(K) * (size_t)total), pb = aligned(sizeof(int64_t) * (size_t)total);
  fc_scratch mem;
  FL_TRY(mem.get(ctx, 2 * kb + pb + temp));
  kin = (K *)mem.ptr;
  kout = (K *)((char *)mem.ptr + kb);
  pin = (int64_t *)((char *)mem.ptr + 2 * kb);
  unsigned grid = fc_grid(ctx, total, FC_THREADS);
  const K *xd = (const K *)fl_data_ptr(x);
  keys_kernel<K><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(xd, x->dtype, desc, kin, pin, n, total);
  FL_TRY(fc_launched("sort keys_kernel"));
  FC_CUDA(run((char *)mem.ptr + 2 * kb + pb));
  K *vd = values ? (K *)fl_data_ptr(values) : nullptr;
  gather_kernel<K><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(xd, vd, pout, n, total, base);
  return fc_launched("sort gather_kernel");
}

} // namespace

namespace fc {

fl_status sort_forward(fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool descending, int64_t base) {
  bool ok = x->ndim > 0 && fl_is_contiguous(x) && indices->dtype == FL_I64 && fl_is_contiguous(indices) &&
            fl_same_shape(indices, x) &&
            (!values || (values->dtype == x->dtype && fl_is_contiguous(values) && fl_same_shape(values, x)));
  if (!ok) {
    fl_desc d = fl_describe(x), di = fl_describe(indices);
    return fl_error(FL_EINVAL, "sort: expected contiguous same-shape operands and i64 indices, got %s and %s", d.s,
                    di.s);
  }
  if (fl_numel(x) == 0) return FL_OK;
  fc_context *ctx;
  FL_TRY(fc_context_of(x, &ctx));
  switch (fl_dtype_size(x->dtype)) {
    case 8: return sort_rows<uint64_t>(ctx, values, indices, x, descending, base);
    case 4: return sort_rows<uint32_t>(ctx, values, indices, x, descending, base);
    case 2: return sort_rows<uint16_t>(ctx, values, indices, x, descending, base);
    default: return sort_rows<uint8_t>(ctx, values, indices, x, descending, base);
  }
}

} // namespace fc
