/* What the fused attention's kernels share (cuda/flash_attention.cu, the FlashAttention-2 style kernels for every
 * GPU; cuda/flash_fwd_sm90.cu, the Hopper forwards on wgmma): the parameters all read (filled once, by
 * flash_attention.cu's fill_params), the sequence extents, the f32 -> bf16/f16 packing, exp2, the conversion of an
 * m16 accumulator fragment into the A fragment of the next product, the 16-byte cp.async, the key mask in tile
 * coordinates, the online softmax step (softmax_max, rescale, softmax_exp) and the epilogue of a forward. The dropout
 * keep bits, which both also share, are flash_keep.cuh's. The layout facts are PTX's:
 * mma.sync m16n8k16's C and A fragments, which are also each warp's share of wgmma m64nNk16's accumulator and
 * register-A fragments (warp w of a warpgroup holds rows 16 w .. 16 w + 15), so the same helpers serve both kernels. */
#ifndef FL_CUDA_FLASH_COMMON_CUH
#define FL_CUDA_FLASH_COMMON_CUH

#include "context.cuh"
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace fa {

constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

struct fa_params {
  const uint16_t *q, *k, *v;
  int64_t q_sb, q_sh, q_sr, k_sb, k_sh, k_sr, v_sb, v_sh, v_sr; /* batch, head, row strides (elements) */
  uint16_t *o;                                                  /* contiguous, q's layout */
  int64_t o_sb, o_sh, o_sr;
  float *lse;                /* contiguous [B, Hq, Sq] or [total_q, Hq] */
  int64_t l_sb, l_sh, l_sr;  /* lse/dsum strides */
  const int32_t *cu_q, *cu_k; /* NULL: dense */
  int64_t total_q, total_k;
  int B, Hq, Hk;
  int64_t Sq, Sk; /* dense lengths, or max_q/max_k for varlen (the dropout index's extents) */
  float scale, scale_log2;
  bool causal, bottom_right, dropout;
  uint32_t thr; /* the byte rule's t: bytes < t are kept */
  float drop_scale;
  uint64_t seed, offset;
  /* backward */
  const uint16_t *dout; /* out's layout (o strides) */
  float *dsum;          /* lse's layout */
  float *dq;            /* f32, q's contiguous layout (o strides) */
  uint16_t *dk, *dv;    /* contiguous, k's layout */
  int64_t dk_sb, dk_sh, dk_sr;
};

/* The rows of sequence b: start and length, clamped so that bad cu_seqlens never index outside. */
__device__ __forceinline__ void fa_extent(const int32_t *cu, int b, int64_t maxlen, int64_t total, int64_t &start,
                                          int64_t &len) {
  if (!cu) {
    start = 0, len = maxlen;
    return;
  }
  start = cu[b];
  len = (int64_t)cu[b + 1] - start;
  if (len < 0) len = 0;
  if (len > maxlen) len = maxlen;
  if (start < 0 || start + len > total) len = 0;
}

template <bool BF> __device__ __forceinline__ uint32_t fa_pack(float lo, float hi) {
  uint32_t r;
  if constexpr (BF) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&r, &v, 4);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&r, &v, 4);
  }
  return r;
}

/* 2^x by the MUFU unit alone (ex2.approx.ftz: exp2f adds a range test and two multiplies to keep subnormal
 * results, here probabilities below 2^-126 of the row's largest, which no sum in bf16/f16 can see); 2^-inf = 0. */
__device__ __forceinline__ float fa_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/* The C fragments of two n8 tiles (k columns 16 kk .. 16 kk + 15) as the A fragment of one k16 step. */
template <bool BF> __device__ __forceinline__ void c_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = fa_pack<BF>(c0[0], c0[1]);
  a[1] = fa_pack<BF>(c0[2], c0[3]);
  a[2] = fa_pack<BF>(c1[0], c1[1]);
  a[3] = fa_pack<BF>(c1[2], c1[3]);
}

/* The mask of a key tile (keys n0 ..; BN of them) for row `row` (the C fragment's row g or g + 8) in tile
 * coordinates, in 32 bits: key n0 + 8 nt + 2 t + (e & 1) (element e of n8 block nt) is allowed iff
 * 8 nt + (e & 1) <= the value: the row's last key and, under a causal mask, its limit row + shift, less n0 and 2 t
 * (clamped into [-1, BN] first, which keeps every answer). 64-bit compares per element had cost the Hopper forward
 * about 1100 of its 6900 instructions. */
template <int BN>
__device__ __forceinline__ int key_limit(const fa_params &p, int64_t row, int64_t n0, int64_t lk, int64_t shift,
                                         int t) {
  int64_t last = lk - 1 - n0;
  if (p.causal) last = min(last, row + shift - n0);
  return (int)max(min(last, (int64_t)BN), (int64_t)-1) - 2 * t;
}

/* The online softmax of one key tile for a warp's 16 rows in the C-fragment layout (s[nt][e]: row g + 8 (e / 2),
 * key n0 + 8 nt + 2 t + e % 2, NTS n8 blocks of keys), in parts that both forwards share (the FlashAttention-2
 * forward calls them in order on each of its MT fragments; the Hopper one rescales O after its P V lands):
 * softmax_max: the tile's row max, the running max mrow and the lane's partial row sum lrow updated; alpha: the
 * factor of the output rows, muse: the max to subtract. Two forms: FOLD false: the scores are prescaled into the
 * log2 domain in place and, where mask (uniform over the CTA: a constant in a specialised copy), masked by
 * key_limit<BN> of the fragment's rows row[0], row[1] (keys past lk, and past row + shift under a causal mask);
 * FOLD true (tiles that need no mask; scale_log2 > 0): the max is of the raw scores, scaled after (it stays the
 * max; -inf stays -inf), and softmax_exp<NTS, true> folds the scale into exp2's FFMA. */
template <int NTS, int BN, bool FOLD>
__device__ __forceinline__ void softmax_max(const fa_params &p, float (*s)[4], float mrow[2], float lrow[2],
                                            const int64_t row[2], int64_t n0, int64_t lk, int64_t shift, bool mask,
                                            int t, float alpha[2], float muse[2]) {
  int lim[2] = {BN, BN};
  if (mask) lim[0] = key_limit<BN>(p, row[0], n0, lk, shift, t), lim[1] = key_limit<BN>(p, row[1], n0, lk, shift, t);
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int nt = 0; nt < NTS; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      float x = s[nt][e];
      if constexpr (!FOLD) {
        x *= p.scale_log2;
        if (mask && 8 * nt + (e & 1) > lim[e >> 1]) x = -INFINITY;
        s[nt][e] = x;
      }
      mx[e >> 1] = fmaxf(mx[e >> 1], x);
    }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    if constexpr (FOLD) mx[r] *= p.scale_log2;
    float mnew = fmaxf(mrow[r], mx[r]);
    muse[r] = mnew == -INFINITY ? 0.f : mnew; /* no -inf - -inf */
    alpha[r] = fa_exp2(mrow[r] - muse[r]);
    mrow[r] = mnew;
    lrow[r] *= alpha[r];
  }
}

/* rescale: the output accumulators of M fragments (acc[mi], NTD n8 blocks each) times their alpha[mi], row by row.
 * Once the running max settles, no row of the warp moves (alpha == 1 exactly): the warp skips the 2 M D multiplies a
 * thread, the same values either way (one vote for the M fragments). */
template <int M, int NTD>
__device__ __forceinline__ void rescale(float (*acc)[NTD][4], const float (*alpha)[2]) {
  bool moved = false;
#pragma unroll
  for (int mi = 0; mi < M; mi++)
#pragma unroll
    for (int r = 0; r < 2; r++) moved |= alpha[mi][r] != 1.f;
  if (__any_sync(0xffffffffu, moved))
#pragma unroll
    for (int mi = 0; mi < M; mi++)
#pragma unroll
      for (int i = 0; i < NTD; i++) {
        acc[mi][i][0] *= alpha[mi][0], acc[mi][i][1] *= alpha[mi][0];
        acc[mi][i][2] *= alpha[mi][1], acc[mi][i][3] *= alpha[mi][1];
      }
}

/* softmax_exp: s becomes P = 2^(s - muse) (FOLD: 2^(s scale_log2 - muse), one FFMA), its sum into lrow (of the
 * undropped P: per-thread partials, the quad's are summed by store_rows). */
template <int NTS, bool FOLD>
__device__ __forceinline__ void softmax_exp(const fa_params &p, float (*s)[4], float lrow[2], const float muse[2]) {
#pragma unroll
  for (int nt = 0; nt < NTS; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const float x = s[nt][e], m = muse[e >> 1];
      const float pe = FOLD ? fa_exp2(fmaf(x, p.scale_log2, -m)) : fa_exp2(x - m);
      lrow[e >> 1] += pe;
      s[nt][e] = pe;
    }
}

/* The end of a query tile, both forwards': a warp's 16 rows of O = acc / l (NTD n8 blocks, C-fragment layout) and
 * their lse = ln-sum-exp (natural log; -inf for a row with no allowed key, whose output is 0), rows past lq skipped;
 * lrow holds the lane's partial sums (the quad's are added here). */
template <bool BF, int NTD>
__device__ __forceinline__ void store_rows(const fa_params &p, int b, int h, int64_t q0, int64_t lq,
                                           const int64_t row[2], const float (*acc)[4], const float mrow[2],
                                           const float lrow[2], int t) {
  uint16_t *ob = p.o + b * p.o_sb + h * p.o_sh + q0 * p.o_sr;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float l = lrow[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (row[r] >= lq) continue;
    float inv = l > 0.f ? 1.f / l : 0.f;
    uint16_t *orow = ob + row[r] * p.o_sr;
#pragma unroll
    for (int dt = 0; dt < NTD; dt++)
      *reinterpret_cast<uint32_t *>(orow + dt * 8 + 2 * t) = fa_pack<BF>(acc[dt][2 * r] * inv, acc[dt][2 * r + 1] * inv);
    if (t == 0) {
      float lse = l > 0.f && mrow[r] > -INFINITY ? (mrow[r] + log2f(l)) * LN2 : -INFINITY;
      p.lse[b * p.l_sb + h * p.l_sh + (q0 + row[r]) * p.l_sr] = lse;
    }
  }
}

/* One 16-byte cp.async into shared memory (byte address dst), zero-filled and reading nothing when in is false (src
 * must still be a valid address: callers pass the tensor's base). */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool in) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(in ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Waits until at most N committed groups are pending. */
template <int N> __device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* The Hopper forward (cuda/flash_fwd_sm90.cu, built for sm_90a only): whether it runs head dim D on ctx's device
 * (FLAME_FLASH_FWD=sm90, D 64 or 128, an sm_90 device whose code is the wgmma one; it takes every other option the
 * FlashAttention-2 forward takes), the one place that decides between the two forwards (flash_attention_forward and
 * F.sdpa_backend ask it); and its launch. */
bool sm90_forward_selected(int D, fc_context *ctx);
const char *sm90_forward_name(); /* which of its two kernels runs: "sm90" or "sm90sync" (FLAME_FLASH_FWD) */
fl_status sm90_forward(const fa_params &p, int D, bool bf, fc_context *ctx);

} // namespace fa

#endif
