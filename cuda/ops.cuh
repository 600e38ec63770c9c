/* The kernel launchers behind the backend table (one file per op family).
 * Each validates what the front-end contract leaves to the backend, picks a
 * kernel and queues it on the tensor's device stream; none synchronises. */
#ifndef FL_CUDA_OPS_CUH
#define FL_CUDA_OPS_CUH

#include "kernel_abi.h"

namespace fc {
/* copy.cu */
fl_status copy_forward(fl_tensor *dst, const fl_tensor *src);
fl_status fill_forward(fl_tensor *out, double value);
fl_status arange_forward(fl_tensor *out, double start, double step);
/* random.cu */
fl_status random_forward(fl_tensor *out, fl_rand_kind kind, uint64_t seed, uint64_t offset, double a, double b);
/* elementwise.cu */
fl_status unary_forward(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1);
fl_status binary_forward(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b);
fl_status binary_scalar_forward(fl_binary_op op, fl_tensor *out, const fl_tensor *a, double s, bool reversed,
                                fl_dtype compute);
fl_status where_forward(fl_tensor *out, const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b);
/* reduce.cu */
fl_status reduce_forward(fl_reduce_op op, fl_tensor *out, fl_tensor *idx, const fl_tensor *x, uint32_t mask,
                         double param, int64_t base);
fl_status cumsum_forward(fl_tensor *out, const fl_tensor *x, int dim);
/* softmax.cu */
fl_status softmax_forward(fl_tensor *out, const fl_tensor *x, int dim, bool log);
/* gemm.cu */
fl_status gemm_forward(const fl_gemm *g);
/* index.cu */
fl_status index_select_forward(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base);
fl_status index_add_forward(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha,
                            int64_t base);
fl_status gather_forward(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base);
fl_status scatter_add_forward(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base);
/* sort.cu */
fl_status sort_forward(fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool descending, int64_t base);
/* -- norms -- */
/* norm.cu */
fl_status norm_forward(fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, const fl_tensor *x, const fl_tensor *w,
                       const fl_tensor *b, int64_t groups, int64_t inner, double eps);
fl_status norm_backward(fl_tensor *dx, fl_tensor *dw, fl_tensor *db, const fl_tensor *dy, const fl_tensor *x,
                        const fl_tensor *w, const fl_tensor *mean, const fl_tensor *rstd, int64_t groups, int64_t inner);

/* -- convolution -- */
/* conv.cu: the im2col path's gather and its adjoint (see fl_backend) */
fl_status im2col_forward(fl_tensor *cols, const fl_tensor *x, const fl_conv_geom *g);
fl_status col2im_forward(fl_tensor *x, const fl_tensor *cols, const fl_conv_geom *g);
/* conv_cudnn.cu: the optional direct path (cuDNN, loaded at run time; declines all when absent) */
bool conv_direct_supported(const fl_op_query *q);
fl_status conv_direct(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b, const fl_conv_geom *g);

/* -- index and losses -- */
/* index_det.cu: deterministic scatter-adds (sort by destination, sum each segment in order, write once).
 * index_add_det: out[.., idx[i], ..] (+)= alpha * src[.., i, ..] along dim; fresh: out is written whole, as if
 * it held zeros (not read). scatter_add_det: out[.. idx[p] ..] += src[p]. errbit: the FC_KERR_* of the op. */
fl_status index_add_det(const char *op, int errbit, fl_tensor *out, int dim, const fl_tensor *idx,
                        const fl_tensor *src, double alpha, int64_t base, bool fresh);
fl_status scatter_add_det(const char *op, int errbit, fl_tensor *out, int dim, const fl_tensor *idx,
                          const fl_tensor *src, int64_t base);
fl_status index_add_fresh_forward(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base);
/* loss.cu */
fl_status cross_entropy_forward(const fl_ce_args *a);
fl_status cross_entropy_backward(const fl_ce_args *a, fl_tensor *dx, const fl_tensor *g);

/* -- pooling, resizing, padding -- */
/* pool.cu */
fl_status pool_forward(const fl_pool_geom *g, fl_tensor *out, fl_tensor *idx, const fl_tensor *x);
fl_status pool_backward(const fl_pool_geom *g, fl_tensor *dx, const fl_tensor *dy, const fl_tensor *idx);
/* resize.cu */
fl_status interp_forward(const fl_interp_geom *g, fl_tensor *out, const fl_tensor *x);
fl_status interp_backward(const fl_interp_geom *g, fl_tensor *dx, const fl_tensor *dy);
/* pad.cu */
fl_status pad_forward(const fl_pad_geom *g, fl_tensor *out, const fl_tensor *x);
fl_status pad_backward(const fl_pad_geom *g, fl_tensor *dx, const fl_tensor *dy);

/* -- dropout and attention -- */
/* dropout.cu */
fl_status dropout_forward(fl_tensor *out, const fl_tensor *x, double p, fl_dropout_rule rule, uint64_t seed,
                          uint64_t offset);
/* attention.cu */
fl_status softmax_backward_forward(fl_tensor *gin, const fl_tensor *g, const fl_tensor *y, bool log);
fl_status masked_softmax_forward(fl_tensor *out, const fl_tensor *s, const fl_tensor *mask, bool causal, int64_t shift);

/* -- issue 10: fused attention -- */
/* flash_attention.cu */
bool flash_attention_supported(const fl_op_query *q);
fl_status flash_attention_forward(const fl_flash_args *a);
const char *flash_attention_forward_kernel(const fl_tensor *q);
fl_status flash_attention_backward(const fl_flash_args *a);

/* -- issue 8: optimizers -- */
/* optim.cu: the multi-tensor entries (fused launches over every tensor) */
fl_status optim_step(const fl_optim_args *a);
fl_status multi_norm(fl_tensor *out, int n, const fl_tensor *const *xs, double p);
fl_status multi_clip(int n, fl_tensor *const *xs, const fl_tensor *norm, double max_norm);
fl_status multi_lerp(int n, fl_tensor *const *dst, const fl_tensor *const *src, double w);
fl_status multi_copy(int n, fl_tensor *const *dst, const fl_tensor *const *src);

} // namespace fc

#endif
