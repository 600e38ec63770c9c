/* Batched matmul through cuBLAS: out[B,M,N] = a[B,M,K] @ b[B,K,N].
 *
 * cuBLAS is column-major, and a row-major [R,C] matrix is a column-major
 * [C,R] one, so we compute out^T = b^T a^T: cuBLAS's "A" is our b, its "B"
 * our a, m = N, n = M, and out (contiguous) is column-major N x M with ld N.
 * An operand whose last two strides make it row-major (unit column stride) is
 * passed as is (op N); one that is column-major (a transposed view, unit row
 * stride) is passed with op T; anything else is first copied to contiguous.
 * Batch strides go straight to cublasGemmStridedBatchedEx, 0 for a broadcast
 * operand. f16/bf16 multiply on tensor cores with f32 accumulation; f32 is
 * full precision unless fl_get_allow_tf32(); f64 is f64. Integer dtypes use a
 * plain tiled kernel (cuBLAS has no int32/int64 GEMM). */
#include "allocator.cuh"
#include "dispatch.cuh"
#include "ops.cuh"

namespace {

struct operand {
  const void *ptr;
  cublasOperation_t op;
  int64_t ld, bstride;
};

/* The cuBLAS view of a [B,R,C] operand, or false if it needs a copy. */
bool describe(const fl_tensor *t, operand *o) {
  int64_t B = t->shape[0], R = t->shape[1], C = t->shape[2];
  int64_t sb = B > 1 ? t->stride[0] : 0, sr = t->stride[1], sc = t->stride[2];
  if (C == 1) sc = 1; /* strides of size-1 dims are free: pick the ones that fit */
  if (R == 1) sr = fc_max64(C, 1);
  if (sb < 0) return false;
  o->ptr = fc_base(t);
  o->bstride = sb;
  if (sc == 1 && sr >= fc_max64(1, C)) {
    o->op = CUBLAS_OP_N;
    o->ld = sr;
    return true;
  }
  if (sr == 1 && sc >= fc_max64(1, R)) {
    o->op = CUBLAS_OP_T;
    o->ld = sc;
    return true;
  }
  return false;
}

/* A contiguous copy of t in scratch memory, described as a temporary tensor. */
fl_status make_contiguous(fc_context *ctx, const fl_tensor *t, fc_scratch &mem, fl_storage *st, fl_tensor *tmp) {
  FL_TRY(fc_temp_like(ctx, t, t->dtype, mem, st, tmp));
  return fc::copy_forward(tmp, t);
}

struct gemm_types {
  cudaDataType_t dt;
  cublasComputeType_t compute;
  bool f64_scalars;
};

bool gemm_types_for(fl_dtype d, gemm_types *g) {
  switch (d) {
    case FL_F32:
      *g = {CUDA_R_32F, fl_get_allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, false};
      return true;
    case FL_F64: *g = {CUDA_R_64F, CUBLAS_COMPUTE_64F, true}; return true;
    case FL_F16: *g = {CUDA_R_16F, CUBLAS_COMPUTE_32F, false}; return true;
    case FL_BF16: *g = {CUDA_R_16BF, CUBLAS_COMPUTE_32F, false}; return true;
    default: return false;
  }
}

bool fits_int(int64_t v) { return v >= 0 && v <= 0x7fffffff; }

fl_status gemm(fc_context *ctx, fl_tensor *out, const operand &A, const operand &Bm, int64_t B, int64_t M, int64_t N,
               int64_t K, const gemm_types &g) {
  cublasHandle_t h;
  FL_TRY(fc_blas_handle(ctx, &h));
  float one_f = 1.0f, zero_f = 0.0f;
  double one_d = 1.0, zero_d = 0.0;
  const void *alpha = g.f64_scalars ? (const void *)&one_d : (const void *)&one_f;
  const void *beta = g.f64_scalars ? (const void *)&zero_d : (const void *)&zero_f;
  void *C = fc_base(out);
  cublasStatus_t s;
  /* cuBLAS "A" = our b (m x k = N x K), "B" = our a (k x n = K x M). */
  bool small = fits_int(M) && fits_int(N) && fits_int(K) && fits_int(B) && fits_int(A.ld) && fits_int(Bm.ld);
  if (B == 1 && small) {
    s = cublasGemmEx(h, A.op, Bm.op, (int)N, (int)M, (int)K, alpha, A.ptr, g.dt, (int)A.ld, Bm.ptr, g.dt, (int)Bm.ld,
                     beta, C, g.dt, (int)N, g.compute, CUBLAS_GEMM_DEFAULT);
  } else if (small) {
    s = cublasGemmStridedBatchedEx(h, A.op, Bm.op, (int)N, (int)M, (int)K, alpha, A.ptr, g.dt, (int)A.ld,
                                   A.bstride, Bm.ptr, g.dt, (int)Bm.ld, Bm.bstride, beta, C, g.dt, (int)N, M * N,
                                   (int)B, g.compute, CUBLAS_GEMM_DEFAULT);
  } else {
    s = cublasGemmStridedBatchedEx_64(h, A.op, Bm.op, N, M, K, alpha, A.ptr, g.dt, A.ld, A.bstride, Bm.ptr, g.dt,
                                      Bm.ld, Bm.bstride, beta, C, g.dt, N, M * N, B, g.compute,
                                      CUBLAS_GEMM_DEFAULT);
  }
  return s == CUBLAS_STATUS_SUCCESS ? FL_OK : fc_blas_error(s, "cublasGemmStridedBatchedEx (matmul)");
}

/* ---- integers: 16x16 tiles through shared memory, int64 accumulation ---- */

#define TILE 16

struct int_mm_args {
  int64_t M, N, K;
  int64_t as[3], bs[3]; /* element strides of a and b */
  const char *a, *b;
  char *out;
};

template <class T>
__global__ void int_matmul_kernel(int_mm_args p) {
  __shared__ int64_t ta[TILE][TILE], tb[TILE][TILE + 1];
  const int64_t bi = blockIdx.z, row = (int64_t)blockIdx.y * TILE + threadIdx.y;
  const int64_t col = (int64_t)blockIdx.x * TILE + threadIdx.x;
  const T *a = (const T *)p.a + bi * p.as[0], *b = (const T *)p.b + bi * p.bs[0];
  int64_t acc = 0;
  for (int64_t k0 = 0; k0 < p.K; k0 += TILE) {
    int64_t ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    ta[threadIdx.y][threadIdx.x] = row < p.M && ka < p.K ? fc_num<T>::load(a[row * p.as[1] + ka * p.as[2]]) : 0;
    tb[threadIdx.y][threadIdx.x] = kb < p.K && col < p.N ? fc_num<T>::load(b[kb * p.bs[1] + col * p.bs[2]]) : 0;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TILE; k++) acc += ta[threadIdx.y][k] * tb[k][threadIdx.x];
    __syncthreads();
  }
  if (row < p.M && col < p.N) ((T *)p.out)[(bi * p.M + row) * p.N + col] = fc_num<T>::make(acc);
}

fl_status int_matmul(fc_context *ctx, fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  int_mm_args p;
  p.M = a->shape[1], p.K = a->shape[2], p.N = b->shape[2];
  int64_t B = a->shape[0];
  for (int d = 0; d < 3; d++) p.as[d] = a->stride[d], p.bs[d] = b->stride[d];
  p.a = fc_base(a), p.b = fc_base(b), p.out = fc_base(out);
  if (B > 65535 || fc_ceil_div(p.M, TILE) > 65535)
    return fl_error(FL_EINVAL, "matmul: integer matmul of this size is not supported on cuda");
  dim3 grid((unsigned)fc_ceil_div(p.N, TILE), (unsigned)fc_ceil_div(p.M, TILE), (unsigned)B), block(TILE, TILE);
  return fc_dispatch<FC_M_I32 | FC_M_I64>(a->dtype, "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    int_matmul_kernel<T><<<grid, block, 0, ctx->stream>>>(p);
    return fc_launched("int_matmul_kernel");
  });
}

fl_status check_shapes(const fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  bool ok = out->ndim == 3 && a->ndim == 3 && b->ndim == 3 && a->shape[0] == b->shape[0] &&
            out->shape[0] == a->shape[0] && a->shape[2] == b->shape[1] && out->shape[1] == a->shape[1] &&
            out->shape[2] == b->shape[2];
  if (!ok) {
    fl_desc o = fl_describe(out), da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_ESHAPE, "matmul: expected out [B,M,N], a [B,M,K], b [B,K,N]; got out %s, a %s, b %s", o.s, da.s,
                    db.s);
  }
  if (a->dtype != b->dtype || out->dtype != a->dtype) {
    fl_desc o = fl_describe(out), da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_EDTYPE, "matmul: dtypes differ (out %s, a %s, b %s)", o.s, da.s, db.s);
  }
  if (!fl_is_contiguous(out)) return fl_error(FL_EINVAL, "matmul: the output must be contiguous");
  return FL_OK;
}

} // namespace

namespace fc {

fl_status matmul_forward(fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  FL_TRY(check_shapes(out, a, b));
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  int64_t B = a->shape[0], M = a->shape[1], K = a->shape[2], N = b->shape[2];
  if (B * M * N == 0) return FL_OK;
  if (K == 0) { /* empty sum: zeros, without asking cuBLAS about k = 0 */
    FC_CUDA(cudaMemsetAsync(fc_base(out), 0, (size_t)(B * M * N) * fl_dtype_size(out->dtype), ctx->stream));
    return FL_OK;
  }
  gemm_types g;
  if (!gemm_types_for(a->dtype, &g)) return int_matmul(ctx, out, a, b);
  operand oa, ob;
  fc_scratch ma, mb;
  fl_storage sa, sb;
  fl_tensor ta, tb;
  if (!describe(a, &oa)) {
    FL_TRY(make_contiguous(ctx, a, ma, &sa, &ta));
    describe(&ta, &oa);
  }
  if (!describe(b, &ob)) {
    FL_TRY(make_contiguous(ctx, b, mb, &sb, &tb));
    describe(&tb, &ob);
  }
  return gemm(ctx, out, ob, oa, B, M, N, K, g);
}

} // namespace fc
