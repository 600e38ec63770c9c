/* The fl_backend table for FL_CUDA: device management entries here, kernels
 * in the per-family files (ops.cuh). Nothing touches CUDA until available()
 * or device_count() asks the driver, and a device is initialised by its first
 * op (fc_context_get). */
#include "allocator.cuh"
#include "staging.cuh"
#include "nccl.cuh"
#include "cuda_backend.h"
#include "ops.cuh"

namespace fc {
/* The forward kernel's name (F.sdpa_backend) where cuda/flash_attention.cu defines none: an older kernel file that
 * bench/flash_ab.sh builds in its place, which runs its FlashAttention-2 forward alone. The tree's file overrides it;
 * so any such file links (flash_fwd_sm90.cu needs nothing from it). */
__attribute__((weak)) const char *flash_attention_forward_kernel(const fl_tensor *) { return "fa2"; }
} // namespace fc

namespace {

bool cuda_available(void) { return fc_device_count() > 0; }

int cuda_device_count(void) { return fc_device_count(); }

fl_status cuda_alloc(fl_device dev, size_t nbytes, void **ptr) {
  fc_context *ctx;
  FL_TRY(fc_context_get(dev.index, &ctx));
  return fc_malloc(ctx, nbytes, ptr);
}

/* A free after the context was released (process exit) is dropped: the
 * driver reclaims everything then. */
void cuda_free(fl_device dev, void *ptr, size_t nbytes) {
  fc_context *ctx = fc_context_peek(dev.index);
  if (ctx) fc_free(ctx, ptr, nbytes);
}

/* Large pageable sources go through the context's pinned staging ring (staging.cu), small ones through the
 * driver, which stages them before cudaMemcpyAsync returns: either way the caller may reuse the source at
 * once and the host does not wait for queued work. A pinned source is read later by the DMA engine, so for
 * those we wait. */
fl_status cuda_memcpy_h2d(fl_device dev, void *dst, const void *src, size_t n) {
  if (n == 0) return FL_OK;
  fc_context *ctx;
  FL_TRY(fc_context_get(dev.index, &ctx));
  cudaPointerAttributes attr;
  bool pinned = false;
  if (cudaPointerGetAttributes(&attr, src) == cudaSuccess) pinned = attr.type == cudaMemoryTypeHost;
  else (void)cudaGetLastError();
  if (!pinned && fc_staging_wanted(n)) return fc_h2d_staged(ctx, dst, src, n);
  FC_CUDA(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, fc_stream(ctx)));
  if (pinned) FC_CUDA(cudaStreamSynchronize(fc_stream(ctx)));
  return FL_OK;
}

/* Synchronising: also the point where kernels' index errors are reported. */
fl_status cuda_memcpy_d2h(fl_device dev, void *dst, const void *src, size_t n) {
  fc_context *ctx;
  FL_TRY(fc_context_get(dev.index, &ctx));
  if (n) FC_CUDA(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, fc_stream(ctx)));
  return fc_sync_and_check(ctx);
}

fl_status cuda_synchronize(fl_device dev) {
  if (dev.index < 0 || dev.index >= fc_device_count())
    return fl_error(FL_EDEVICE, "synchronize: cuda:%d does not exist", dev.index);
  fc_context *ctx = fc_context_peek(dev.index);
  if (!ctx) return FL_OK; /* never used: nothing queued */
  FC_CUDA(cudaSetDevice(dev.index));
  return fc_sync_and_check(ctx);
}

fl_status cuda_memory_stats(fl_device dev, fl_memory_stats *out) {
  fc_context *ctx = fc_context_peek(dev.index);
  if (ctx) fc_memory_stats(ctx, out);
  else memset(out, 0, sizeof *out);
  return FL_OK;
}

fl_status cuda_empty_cache(fl_device dev) {
  fc_context *ctx = fc_context_peek(dev.index);
  if (!ctx) return FL_OK;
  FC_CUDA(cudaSetDevice(dev.index));
  return fc_empty_cache(ctx);
}

/* The host's streams: the handle the core keeps per context and device is the fc_queue (context.cu). */
fl_status cuda_stream_attach(fl_device dev, void *stream, void *from, void **handle) {
  fc_queue *q;
  FL_TRY(fc_stream_attach(dev.index, (cudaStream_t)stream, (fc_queue *)from, &q));
  *handle = q;
  return FL_OK;
}

fl_status cuda_stream_detach(fl_device dev, void *handle) {
  return fl_error_context(fc_stream_detach(dev.index, (fc_queue *)handle), "set_stream");
}

fl_status cuda_record_stream(fl_device dev, void *ptr, void *stream) {
  fc_context *ctx;
  FL_TRY(fc_context_get(dev.index, &ctx));
  return fc_record_stream(ctx, ptr, stream ? (cudaStream_t)stream : fc_stream(ctx));
}

/* The query the core asks before dispatching (fl_dispatch): no where a kernel
 * family is only instantiated for some dtypes, so the user sees "not
 * implemented on cuda:0 for i32" up front instead of a failure inside. */
bool supports_query(const fl_op_query *q) {
  const fl_tensor *in = q->n > 1 && q->ts[1] ? q->ts[1] : q->ts[0];
  bool is_float = fl_dtype_is_float(in->dtype);
  switch (q->kind) {
    case FL_OP_SOFTMAX: return is_float;                                 /* softmax.cu: FC_M_FLOAT */
    case FL_OP_REDUCE: return q->sub != FL_RVAR || is_float;              /* reduce.cu: var is float-only */
    case FL_OP_GEMM: return in->dtype != FL_BOOL;                         /* gemm.cu: floats and i32/i64 */
    case FL_OP_UNARY: /* a converted input is only computed in a float dtype */
      return q->sub == FL_LOGICAL_NOT || q->ts[0]->dtype == in->dtype || fl_dtype_is_float(q->ts[0]->dtype);
    /* issue 7's families */
    /* -- norms -- */
    case FL_OP_NORM_FORWARD: /* norm.cu: f32, bf16, f16 (f64 too) */
    case FL_OP_NORM_BACKWARD: return is_float;

    /* -- convolution -- */
    case FL_OP_IM2COL: case FL_OP_COL2IM: return is_float; /* conv.cu: FC_M_FLOAT */
    case FL_OP_CONV_DIRECT: return fc::conv_direct_supported(q); /* conv_cudnn.cu */

    /* -- index and losses -- */
    case FL_OP_CROSS_ENTROPY: /* loss.cu: float logits */
    case FL_OP_CROSS_ENTROPY_BACKWARD: return fl_dtype_is_float(in->dtype);

    /* -- pooling, resizing, padding -- */
    case FL_OP_POOL: case FL_OP_POOL_BACKWARD: case FL_OP_INTERP: case FL_OP_INTERP_BACKWARD:
    case FL_OP_PAD_BACKWARD: /* pool.cu, resize.cu, pad.cu: FC_M_FLOAT */
      return is_float;

    /* -- dropout and attention -- */
    case FL_OP_DROPOUT: return fl_dtype_is_float(in->dtype); /* dropout.cu: f32, f64, bf16, f16 */
    case FL_OP_SOFTMAX_BACKWARD: return fl_dtype_is_float(in->dtype); /* attention.cu: FC_M_FLOAT */
    case FL_OP_MASKED_SOFTMAX: return fl_dtype_is_float(in->dtype); /* attention.cu: FC_M_FLOAT */

    /* -- issue 10: fused attention -- */
    case FL_OP_FLASH_ATTENTION: return fc::flash_attention_supported(q); /* bf16/f16, head_dim 32/64/96/128 */

    default: return true;
  }
}

fl_backend make_table() {
  fl_backend b;
  memset(&b, 0, sizeof b);
  b.name = "cuda";
  b.supports = supports_query;
  b.available = cuda_available;
  b.device_count = cuda_device_count;
  b.alloc = cuda_alloc;
  b.free = cuda_free;
  b.memcpy_h2d = cuda_memcpy_h2d;
  b.memcpy_d2h = cuda_memcpy_d2h;
  b.synchronize = cuda_synchronize;
  b.memory_stats = cuda_memory_stats;
  b.empty_cache = cuda_empty_cache;
  b.stream_attach = cuda_stream_attach;
  b.stream_detach = cuda_stream_detach;
  b.record_stream = cuda_record_stream;
  b.copy = fc::copy_forward;
  b.fill = fc::fill_forward;
  b.arange = fc::arange_forward;
  b.random = fc::random_forward;
  b.unary = fc::unary_forward;
  b.binary = fc::binary_forward;
  b.binary_scalar = fc::binary_scalar_forward;
  b.where = fc::where_forward;
  b.reduce = fc::reduce_forward;
  b.cumsum = fc::cumsum_forward;
  b.softmax = fc::softmax_forward;
  b.gemm = fc::gemm_forward;
  b.index_select = fc::index_select_forward;
  b.index_add = fc::index_add_forward;
  b.gather = fc::gather_forward;
  b.scatter_add = fc::scatter_add_forward;
  b.sort = fc::sort_forward;
  /* -- norms -- */
  b.norm_forward = fc::norm_forward;
  b.norm_backward = fc::norm_backward;

  /* -- convolution -- */
  b.im2col = fc::im2col_forward;
  b.col2im = fc::col2im_forward;
  b.conv_direct = fc::conv_direct; /* conv_cudnn.cu */

  /* -- index and losses -- */
  b.index_add_fresh = fc::index_add_fresh_forward;
  b.cross_entropy = fc::cross_entropy_forward;
  b.cross_entropy_backward = fc::cross_entropy_backward;

  /* -- pooling, resizing, padding -- */
  b.pool = fc::pool_forward;
  b.pool_backward = fc::pool_backward;
  b.interp = fc::interp_forward;
  b.interp_backward = fc::interp_backward;
  b.pad = fc::pad_forward;
  b.pad_backward = fc::pad_backward;

  /* -- dropout and attention -- */
  b.dropout = fc::dropout_forward;
  b.softmax_backward = fc::softmax_backward_forward;
  b.masked_softmax = fc::masked_softmax_forward;

  /* -- issue 10: fused attention -- */
  b.flash_attention = fc::flash_attention_forward;
  b.flash_attention_backward = fc::flash_attention_backward;
  b.flash_attention_forward_kernel = fc::flash_attention_forward_kernel;

  /* -- issue 8: optimizers -- */
  b.optim_step = fc::optim_step;
  b.multi_norm = fc::multi_norm;
  b.multi_clip = fc::multi_clip;
  b.multi_lerp = fc::multi_lerp;
  b.multi_copy = fc::multi_copy;

  /* -- distributed (nccl.cu) -- */
  b.comm_unique_id = cuda_comm_unique_id;
  b.comm_init = cuda_comm_init;
  b.comm_destroy = cuda_comm_destroy;
  b.collective = cuda_collective;
  b.comm_wait = cuda_comm_wait;
  b.comm_join = cuda_comm_join;

  return b;
}

} // namespace

extern "C" const struct fl_backend *fl_cuda_backend(void) {
  static const fl_backend table = make_table(); /* built on first call, thread-safe */
  return &table;
}
