/* Fused attention (FlashAttention-2's algorithm) for bf16/f16, head dims 32, 64, 96, 128.
 *
 * Forward: one CTA of 4 warps per (query tile of 64 MT rows, batch x query head; MT = FA_FWD_MT, 2 by default);
 * warp w owns rows 16 MT w .. 16 MT (w + 1) - 1, so each K and V fragment feeds MT tensor-core steps.
 * Q stays in shared memory, K and V tiles of 64 keys stream through it (two stages, cp.async: the next tile loads
 * while one computes; a tile wholly inside the sequence is copied with no per-row bound tests, fwd_full_copy, and
 * the interior tiles, which need no mask, are counted once before the loop, fwd_counted_edge). S = Q K^T and O += P V run on the tensor cores (mma.sync m16n8k16, f32 accumulation); the
 * fragments come from shared memory through ldmatrix (.trans where an operand is read as stored, V in P V).
 * -DFA_PLAIN_LOADS builds the same kernels with synchronous tile loads and per-thread fragment loads instead. The online
 * softmax works in the log2 domain (scores prescaled by scale * log2 e, ex2.approx.ftz), its running max and sum in
 * f32 per row; the P accumulator becomes the A operand of P V in registers (the C fragment layout of two n8 tiles is
 * the A layout of one k16 step). Output O / l and lse = ln-sum-exp (natural log; -inf for a row with no allowed key,
 * whose output is 0) are written.
 * Backward: a preprocessing kernel dsum = rowsum(dO o O); then one CTA of 8 warps per (key tile of 128, batch x k/v
 * head), warp w owning keys 16w..16w+15 (at d128 FlashAttention-2's warp grids instead, bwd_pair: S^T 32 keys x 32
 * queries a warp, dK/dV 32 keys x 64 columns; dQ: the warps split its 64 x D tile, bwd_dq_cg): it loops over
 * the query tiles of 64 rows of the query heads that share the k/v head (GQA: their dK/dV sum in registers, no
 * atomics) that a causal mask leaves, as one sequence whose Q and dO tiles load by cp.async into two stages (the next
 * while one computes); recomputes P^T = exp2(S^T - lse) and accumulates dV += Z^T dO, dK += dS^T Q in registers;
 * dQ += dS K goes through shared memory (dS^T as [key][query], read by ldmatrix.trans) and f32 atomics (8-byte vector
 * ones on sm_90) into dq_acc (so dQ's summation order varies: not bit-deterministic; dK and dV are).
 * Dropout: the keep bit of (b, h, i, j) is the attention byte rule's (core/dropout_keep.h, FL_DROPOUT_BYTE: kept
 * iff byte e % 16 of Philox block offset + e / 16 is < round((1 - p) 256)) at the reference's index
 * e = ((b Hq + h) Sq + i) Sk + j (varlen: max_q, max_k for Sq, Sk), evaluated where needed (forward and backward),
 * never stored. A block is 16 keys of a row; a fragment's lanes split the runs of 16 keys they need (two Philox
 * calls per lane per fragment and tile; three (forward) or four (backward) where Sk % 16 != 0 and runs straddle
 * blocks) and transpose the keep bits over the lanes that share them with butterfly shuffles (fwd_keep_word,
 * bwd_keep_word; bench/flash_dropout_lanes.py checks the lane mapping, tests/test_cuda_flash_keep.c the bits on the
 * GPU). The forward dropout kernels of head dims 96 and 128 (KEEP_STEPS) run fwd_keep_word in the steps it is made
 * of (fwd_keep_start, philox_round, fwd_keep_finish; flash_keep.cuh), the Philox rounds spread over the S tensor-core
 * steps of the tile: drawn all before them, the rounds were a chain of dependent multiplies the warp waited on, and
 * the d128 kernel spilled (76 B, 7 local loads a tile; none now; bench/flash_sass.sh). The backward draws its keep
 * word whole before S^T (spread over the S^T steps it timed 2 % slower on the H200). The bits drop P's bf16/f16 pairs
 * (an AND with PRMT-made masks) and, in the backward, dZ; the factor 1 / (1 - p) scales O, dV, dK and dQ once at the
 * end (the row sum l is of the undropped P).
 * Dense and varlen share the kernels: a varlen row is cu[b] + i with a batch stride of 0.
 * Code shape: dropout runs take kernels of their own (the DROP template parameter; the host picks them where
 * p > 0), so neither kernel tests p at run time. In each, the body of a key tile (forward) or query tile (backward)
 * is compiled twice, a general copy (masking in tile coordinates) for the tiles that need a mask, and one for the
 * interior tiles without it, one branch-free block which the compiler interleaves with the tensor-core steps (a
 * branch per element was 128 taken branches a forward tile). (One kernel with a third copy for dropout cost the
 * others registers and spills; dropout in the general copy ran every dropout tile through the masking code.)
 * bench/flash_sass.sh profiles the kernels' SASS (no GPU).
 * The parameters, the fragment conversions, the forward's softmax step and epilogue live in flash_common.cuh, the
 * dropout keep bits (fa_drop, keep_run16, fwd_keep_word, bwd_keep_word and their steps, drop_pairs, drop_pairs_t; on
 * core/philox.h's Philox and core/dropout_keep.h's byte rule) in flash_keep.cuh, both shared with the Hopper forward
 * (cuda/flash_fwd_sm90.cu), which flash_attention_forward runs instead where fa::sm90_forward_selected says. This file's
 * interface to the others is the backend's entries (ops.cuh) and the test hook; flash_fwd_sm90.cu needs nothing from it (a weak fc::flash_attention_forward_kernel
 * stands in where an older kernel file without one is built: bench/flash_ab.sh). */
#include "flash_common.cuh"
#include "flash_keep.cuh"
#include "dispatch.cuh"
#include "ops.cuh"
#include <type_traits>

using namespace fa; /* the parameters and helpers shared with the Hopper forward (flash_common.cuh, flash_keep.cuh) */

namespace {

constexpr int BM = 64, BN = 64, NT = 128, PAD = 8; /* PAD: rows of D + 8 halves avoid bank conflicts */


template <bool BF> __device__ __forceinline__ float fa_load(uint16_t x) {
  return BF ? fl_bfloat_to_f32(x) : fl_half_to_f32(x);
}

template <bool BF> __device__ __forceinline__ uint16_t fa_store(float x) {
  return BF ? fl_bfloat_from_f32(x) : fl_half_from_f32(x);
}


/* c += a b for one m16n8k16 tile (row-major A, column-major B), f32 accumulators. */
template <bool BF> __device__ __forceinline__ void fa_mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  if constexpr (BF) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

/* Fragment loads from shared memory. By default through ldmatrix (one instruction loads four 8 x 8 matrices, lane
 * l giving the address of one 16-byte row of matrix l / 8; .trans hands each thread the transposed pairs); built
 * with -DFA_PLAIN_LOADS, the same fragments come from 32-bit and 16-bit loads (the per-thread layout of PTX's
 * m16n8k16 fragments written out), a fallback that is easier to check. Rows are 16-byte aligned (ld is a multiple of
 * 8 halves, columns multiples of 8). */
#ifdef FA_PLAIN_LOADS
__device__ __forceinline__ uint32_t ld32(const uint16_t *p) { return *reinterpret_cast<const uint32_t *>(p); }
__device__ __forceinline__ uint32_t pack16(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }
#else
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const uint16_t *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const uint16_t *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}
#endif

/* A fragment (16 x 16 at row r0, col c0) of a row-major smem matrix with leading dim ld: a0 (row g, cols 2t, 2t+1),
 * a1 (row g + 8), a2 (row g, cols + 8), a3 (row g + 8, cols + 8). */
__device__ __forceinline__ void frag_a(uint32_t a[4], const uint16_t *s, int ld, int r0, int c0, int g, int t) {
#ifdef FA_PLAIN_LOADS
  a[0] = ld32(s + (r0 + g) * ld + c0 + 2 * t);
  a[1] = ld32(s + (r0 + g + 8) * ld + c0 + 2 * t);
  a[2] = ld32(s + (r0 + g) * ld + c0 + 2 * t + 8);
  a[3] = ld32(s + (r0 + g + 8) * ld + c0 + 2 * t + 8);
#else
  const int lane = threadIdx.x & 31; /* matrices: rows r0 / r0 + 8 (lane bit 3), cols c0 / c0 + 8 (lane bit 4) */
  ldsm_x4(a, s + (r0 + (lane & 15)) * ld + c0 + (lane >> 4) * 8);
#endif
}

/* A fragment (16 x 16 at row r0, col c0) of a matrix stored transposed: A[r][c] = s[c ld + r] (dS from dS^T). */
__device__ __forceinline__ void frag_at(uint32_t a[4], const uint16_t *s, int ld, int r0, int c0, int g, int t) {
#ifdef FA_PLAIN_LOADS
  const uint16_t *p = s + (c0 + 2 * t) * ld + r0 + g;
  a[0] = pack16(p[0], p[ld]);
  a[1] = pack16(p[8], p[ld + 8]);
  a[2] = pack16(p[8 * ld], p[9 * ld]);
  a[3] = pack16(p[8 * ld + 8], p[9 * ld + 8]);
#else
  /* transposed matrices (stored rows c0, col r0), (c0, r0 + 8), (c0 + 8, r0), (c0 + 8, r0 + 8) */
  const int lane = threadIdx.x & 31;
  ldsm_x4_trans(a, s + (c0 + (lane & 7) + (lane >> 4) * 8) * ld + r0 + ((lane >> 3) & 1) * 8);
#endif
}

/* The inverse of frag_a: an A fragment (16 x 16) stored at row r0, col c0 of a row-major smem matrix (stmatrix on
 * sm_90: one instruction for the four 32-bit stores). */
__device__ __forceinline__ void st_frag_a(uint16_t *s, int ld, int r0, int c0, const uint32_t a[4], int g, int t) {
#if !defined(FA_PLAIN_LOADS) && __CUDA_ARCH__ >= 900
  const int lane = threadIdx.x & 31; /* lane l gives row l & 15, col block l >> 4, as frag_a's ldmatrix */
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(
                   smem_addr(s + (r0 + (lane & 15)) * ld + c0 + (lane >> 4) * 8)),
               "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3])
               : "memory");
#else
  uint32_t *wg = reinterpret_cast<uint32_t *>(s + (r0 + g) * ld + c0 + 2 * t), *wg8 = wg + 4 * ld;
  wg[0] = a[0], wg8[0] = a[1], wg[4] = a[2], wg8[4] = a[3]; /* rows g, g + 8; cols 2t, + 8 */
#endif
}

/* B fragments (k16 x n8) of the n8 tiles at n0 and n0 + 8 with B[k][n] = s[(n0 + n) ld + k0 + k]: a row-major smem
 * matrix used transposed (K in Q K^T), b0 (k 2t, 2t+1; n g), b1 (k + 8). */
__device__ __forceinline__ void frag_bt2(uint32_t b[2][2], const uint16_t *s, int ld, int n0, int k0, int g, int t) {
#ifdef FA_PLAIN_LOADS
#pragma unroll
  for (int i = 0; i < 2; i++) {
    b[i][0] = ld32(s + (n0 + 8 * i + g) * ld + k0 + 2 * t);
    b[i][1] = ld32(s + (n0 + 8 * i + g) * ld + k0 + 2 * t + 8);
  }
#else
  /* matrices (rows n0, col k0), (n0, k0 + 8), (n0 + 8, k0), (n0 + 8, k0 + 8) */
  const int lane = threadIdx.x & 31, j = lane >> 3;
  uint32_t r[4];
  ldsm_x4(r, s + (n0 + (lane & 7) + (j >> 1) * 8) * ld + k0 + (j & 1) * 8);
  b[0][0] = r[0], b[0][1] = r[1], b[1][0] = r[2], b[1][1] = r[3];
#endif
}

/* B fragments (k16 x n8) of the n8 tiles at n0 and n0 + 8 with B[k][n] = s[(k0 + k) ld + n0 + n]: a row-major smem
 * matrix used as is (V in P V), pairs along k strided. */
__device__ __forceinline__ void frag_b2(uint32_t b[2][2], const uint16_t *s, int ld, int k0, int n0, int g, int t) {
#ifdef FA_PLAIN_LOADS
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const uint16_t *p = s + (k0 + 2 * t) * ld + n0 + 8 * i + g;
    b[i][0] = pack16(p[0], p[ld]);
    b[i][1] = pack16(p[8 * ld], p[9 * ld]);
  }
#else
  /* transposed matrices (rows k0, col n0), (k0 + 8, n0), (k0, n0 + 8), (k0 + 8, n0 + 8) */
  const int lane = threadIdx.x & 31;
  uint32_t r[4];
  ldsm_x4_trans(r, s + (k0 + (lane & 15)) * ld + n0 + (lane >> 4) * 8);
  b[0][0] = r[0], b[0][1] = r[1], b[1][0] = r[2], b[1][1] = r[3];
#endif
}


/* Chunk i (of 16 bytes) of thread threadIdx.x when NTH threads copy N rows of D halves: row r, column k. The loops
 * over i have compile-time trip counts (N D / 8 is a multiple of NTH for every tile here), so they unroll, and where a
 * thread's chunks stay in one column (NTH a multiple of D / 8) the row is one add per chunk. */
template <int D, int N, int NTH> __device__ __forceinline__ void tile_chunk(int i, int &r, int &k) {
  constexpr int CH = D / 8; /* 16-byte chunks per row */
  static_assert(N * CH % NTH == 0, "tile rows split evenly over the threads");
  if constexpr (NTH % CH == 0) {
    r = (int)threadIdx.x / CH + i * (NTH / CH), k = ((int)threadIdx.x % CH) * 8;
  } else {
    const int c = (int)threadIdx.x + i * NTH;
    r = c / CH, k = (c % CH) * 8;
  }
}

/* Copies rows [r0, r0 + N) of one head (rows of D halves at base + row * rs) into smem rows of ld, zeros past len. */
template <int D, int N, int NTH = NT>
__device__ __forceinline__ void load_tile(uint16_t *s, int ld, const uint16_t *base, int64_t rs, int64_t r0,
                                          int64_t len) {
#pragma unroll
  for (int i = 0; i < N * (D / 8) / NTH; i++) {
    int r, k;
    tile_chunk<D, N, NTH>(i, r, k);
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r0 + r < len) v = *reinterpret_cast<const uint4 *>(base + (r0 + r) * rs + k);
    *reinterpret_cast<uint4 *>(s + r * ld + k) = v;
  }
}

/* This thread's chunks of a tile copy where NTH threads split N rows of D halves one column each (NTH a multiple of
 * D / 8): from its first row (src, into smem at s) every NTH / (D / 8) rows, cp.async (under FA_PLAIN_LOADS
 * synchronous), zero-filled from row left on (safe: any readable address, nothing is read there). */
template <int D, int N, int NTH>
__device__ __forceinline__ void load_rows_async(uint16_t *s, int ld, const uint16_t *src, int64_t rs, int64_t left,
                                                const uint16_t *safe) {
  constexpr int RS = NTH / (D / 8);
  static_assert(NTH % (D / 8) == 0, "one column per thread");
  const int64_t step = (int64_t)RS * rs;
#ifdef FA_PLAIN_LOADS
#pragma unroll
  for (int i = 0; i < N / RS; i++, src += step) {
    uint4 v = make_uint4(0, 0, 0, 0);
    if (i * RS < left) v = *reinterpret_cast<const uint4 *>(src);
    *reinterpret_cast<uint4 *>(s + i * RS * ld) = v;
  }
  (void)safe;
#else
  const uint32_t dst = smem_addr(s);
#pragma unroll
  for (int i = 0; i < N / RS; i++, src += step) {
    const bool in = i * RS < left;
    cp_async16(dst + i * RS * ld * 2, in ? src : safe, in);
  }
#endif
}

/* The same copy, asynchronous (cp.async of 16 bytes, zero-filled past len, nothing read there): the caller commits the
 * group and waits for it (cp_commit, cp_wait). Under FA_PLAIN_LOADS it is load_tile (the groups are then empty). */
template <int D, int N, int NTH = NT, bool FULL = false>
__device__ __forceinline__ void load_tile_async(uint16_t *s, int ld, const uint16_t *base, int64_t rs, int64_t r0,
                                                int64_t len) {
#ifdef FA_PLAIN_LOADS
  load_tile<D, N, NTH>(s, ld, base, rs, r0, len);
#else
  constexpr int CH = D / 8;
  if constexpr (NTH % CH == 0) { /* one column per thread: the source advances by a fixed 64-bit step per chunk */
    constexpr int RS = NTH / CH;
    const int r = (int)threadIdx.x / CH, k = ((int)threadIdx.x % CH) * 8;
    const int64_t left = len - r0 - r, step = (int64_t)RS * rs; /* rows from this thread's first one on */
    const uint16_t *src = base + (r0 + r) * rs + k;
    const uint32_t dst = smem_addr(s + r * ld + k);
#pragma unroll
    for (int i = 0; i < N / RS; i++, src += step) {
      const bool in = FULL || i * RS < left; /* FULL: the caller knows rows r0 .. r0 + N - 1 are all below len */
      cp_async16(dst + i * RS * ld * 2, in ? src : base, in);
    }
  } else {
#pragma unroll
    for (int i = 0; i < N * CH / NTH; i++) {
      int r, k;
      tile_chunk<D, N, NTH>(i, r, k);
      const bool in = FULL || r0 + r < len;
      const uint16_t *src = in ? base + (r0 + r) * rs + k : base;
      cp_async16(smem_addr(s + r * ld + k), src, in);
    }
  }
#endif
}

/* Whether the forward dropout kernel of head dim D draws its keep words in steps (fwd_keep_word as fwd_keep_start,
 * philox_round, fwd_keep_finish), the Philox rounds spread over the S tensor-core steps, rather than all before
 * them: at 96 and 128, where it spared the forward's spills and cut the static stalls along the tile by 5 %
 * (bench/flash_sass.sh); at 32 and 64 the early draw was as short or shorter. The backward draws its keep word
 * before S^T at every D: spread over the S^T steps it cut the static stalls by 7 % but timed 2 % slower on the H200
 * (session 21, bench/flash_ab.sh: d128 fwd+bwd with dropout 4.128 against 4.039 ms). */
template <int D> constexpr bool KEEP_STEPS = D >= 96;

/* Whether a kernel has the interior tiles' copy of its body: all but the dropout kernels of head dims 32 and 96,
 * which run every tile through the general one (a copy less to compile: the benchmarked dims are 64 and 128). */
template <bool DROP, int D> constexpr bool INTERIOR_COPY = !DROP || D == 64 || D == 128;

/* The forward's key tile (BN keys) and its cp.async stages: 64 keys in 2 for every kernel (FlashAttention-2's d128
 * forward on A100/H100 uses the same 128 x 64 tile). FA_FWD_BN128 / FA_FWD_ST128 change them for the d128 kernel
 * without dropout, for an A/B (bench/flash_ab.sh; the dropout kernels' keep words are of 64-key tiles): 32 keys in 3
 * stages (FlashAttention-2's sm86/sm89 tile) has half the live S registers but spilled 32 B and ran a longer path a
 * key by bench/flash_sass.sh (session 21; not timed). */
#ifndef FA_FWD_BN128
#define FA_FWD_BN128 64
#endif
#ifndef FA_FWD_ST128
#define FA_FWD_ST128 2
#endif
template <bool DROP, int D> constexpr int fwd_bn = !DROP && D == 128 ? FA_FWD_BN128 : BN;
template <bool DROP, int D> constexpr int fwd_stages = !DROP && D == 128 ? FA_FWD_ST128 : 2;
/* Whether a kernel copies its key tiles that lie wholly below lk without the bound tests (a uniform branch between
 * two copies of the loads: 50 instructions less along a d128 tile), where that costs no spills: the kernels of
 * dims 64 and 128 without dropout (the others spilled, or spilled more, with it). */
template <bool DROP, int D> constexpr bool fwd_full_copy = !DROP && (D == 64 || D == 128);
/* Whether a kernel tells its interior key tiles by their count (ninner in fwd_tile) rather than by the tests of each
 * tile's keys: all but the d128 dropout kernel, which spilled 8 B with it. */
template <bool DROP, int D> constexpr bool fwd_counted_edge = !(DROP && D == 128);

/* One (query tile of 64 MT rows, b, h) of the forward: warp w owns rows 16 MT w .. 16 MT w + 16 MT - 1, as MT m16
 * tiles, so each K and V fragment read from shared memory feeds MT tensor-core steps (FlashAttention-2's 128-row
 * tiles of 4 warps are MT = 2). Masking is applied only on the tiles that need it: the last key tile of a sequence
 * and the causal diagonal's. DROP (the dropout kernel, p.dropout set): every tile drops out P's pairs by its keep
 * masks (drop_pairs), and the factor 1 / (1 - p) scales O once, at the end. */
template <bool BF, int D, int MT, bool DROP>
__device__ void fwd_tile(const fa_params &p, const fa_drop &dr, int mt, int bh, uint16_t *smem) {
  constexpr int BN = fwd_bn<DROP, D>, ST = fwd_stages<DROP, D>; /* (shadows the file's BN, its default) */
  constexpr int LD = D + PAD, KS = D / 16, NTD = D / 8, NTS = BN / 8, BMF = 64 * MT;
  uint16_t *sQ = smem, *sKV = sQ + BMF * LD; /* ST stages of [K tile, V tile]: the next ones load while one computes */
  const int b = bh / p.Hq, h = bh % p.Hq, hk = h / (p.Hq / p.Hk);
  int64_t q0, lq, k0, lk;
  fa_extent(p.cu_q, b, p.Sq, p.total_q, q0, lq);
  fa_extent(p.cu_k, b, p.Sk, p.total_k, k0, lk);
  const int64_t m0 = (int64_t)mt * BMF;
  if (m0 >= lq) return; /* uniform over the CTA */
  const int64_t shift = p.bottom_right ? lk - lq : 0;
  int64_t n_end = lk;
  if (p.causal) n_end = min(lk, max((int64_t)0, m0 + BMF + shift)); /* keys past every row's limit: skipped */
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const uint16_t *qb = p.q + b * p.q_sb + h * p.q_sh + q0 * p.q_sr;
  const uint16_t *kb = p.k + b * p.k_sb + hk * p.k_sh + k0 * p.k_sr;
  const uint16_t *vb = p.v + b * p.v_sb + hk * p.v_sh + k0 * p.v_sr;
  __syncthreads(); /* the previous tile of this CTA is done with smem */
  const int ntiles = (int)((n_end + BN - 1) / BN);
  /* Tiles 0 .. nfull - 1 lie wholly below lk; 0 .. ninner - 1 need no mask either (nor a causal one: every key at or
   * below the tile's first row's limit) and have a positive scale (whose row max is the raw scores'): counted once
   * here, a compare a tile in the loop. */
  const int64_t nfull = lk / BN, climit = m0 + shift + 1; /* keys below climit are allowed to every row of the tile */
  int64_t ninner = p.causal ? min(nfull, climit > 0 ? climit / BN : (int64_t)0) : nfull;
  if (!fwd_counted_edge<DROP, D> || !(p.scale_log2 > 0.f)) ninner = 0; /* (then unused) */
  /* the copies of key tile j into stage j % ST (a tile wholly below lk takes the copy without bound tests) */
  auto load_kv = [&](int j, int64_t n) { /* n = j BN */
    uint16_t *nk = sKV + (j % ST) * 2 * BN * LD;
    if (fwd_full_copy<DROP, D> && j < nfull) {
      load_tile_async<D, BN, NT, true>(nk, LD, kb, p.k_sr, n, lk);
      load_tile_async<D, BN, NT, true>(nk + BN * LD, LD, vb, p.v_sr, n, lk);
    } else {
      load_tile_async<D, BN>(nk, LD, kb, p.k_sr, n, lk);
      load_tile_async<D, BN>(nk + BN * LD, LD, vb, p.v_sr, n, lk);
    }
  };
  load_tile_async<D, BMF>(sQ, LD, qb, p.q_sr, m0, lq);
  /* groups 0 .. ST - 2: Q with key tile 0, then tiles 1 .. ST - 2 (a group for each, empty past the last tile) */
#pragma unroll
  for (int j = 0; j < ST - 1; j++) {
    if (j < ntiles) load_kv(j, (int64_t)j * BN);
    cp_commit();
  }
  float acc[MT][NTD][4];
  float mrow[MT][2], lrow[MT][2];
  /* the rows of the thread's fragments, m0 + row_of(mi, r) (recomputed where used, not 2 MT 64-bit registers) */
  const int rbase = w * 16 * MT + g;
  auto row_of = [&](int mi, int r) { return m0 + (rbase + mi * 16 + 8 * r); };
#pragma unroll
  for (int mi = 0; mi < MT; mi++) {
#pragma unroll
    for (int i = 0; i < NTD; i++) acc[mi][i][0] = acc[mi][i][1] = acc[mi][i][2] = acc[mi][i][3] = 0.f;
    mrow[mi][0] = mrow[mi][1] = -INFINITY;
    lrow[mi][0] = lrow[mi][1] = 0.f;
  }
  /* dropout: the lane's place in the mask (fragment 0, key tile 0), fixed over the tile */
  keep_pos kpos{};
  if constexpr (DROP) kpos = fwd_keep_pos(p, b, h, row_of(0, 0), 0, lane);
  /* One key tile after its copies were issued: S = Q K^T, the online softmax, O += P V. Specialised at compile
   * time (each a branch-free body: a branch inside it would split the code that the compiler interleaves with the
   * tensor-core steps, and every tile would jump over the masking code, 128 taken branches a tile): EDGE masks (in
   * tile coordinates) and scales the scores before their max, else the max is of the raw scores and the scale folds
   * into exp2's argument, one FFMA (scale_log2 > 0 keeps the max the same). */
  auto step = [&](int64_t n0, int it, auto edge_c) {
    constexpr bool EDGE = decltype(edge_c)::value;
    /* the keep words (KEEP_STEPS: their counters here, their Philox rounds between the S steps, their bits after) */
    [[maybe_unused]] uint32_t keepbits[MT];
    [[maybe_unused]] fl_philox_out ks[MT][2];
    if constexpr (DROP) { /* (braced: nvcc dropped the __syncthreads below from the DROP = false kernels when a
                           * discarded `if constexpr` held a `#pragma unroll` loop of if / else) */
#pragma unroll
      for (int mi = 0; mi < MT; mi++) {
        if constexpr (KEEP_STEPS<D>) fwd_keep_start(p, kpos, mi, n0, ks[mi]);
        else keepbits[mi] = fwd_keep_word<true>(p, dr, kpos, mi, n0, lane);
      }
    }
    __syncthreads(); /* every thread's copies of tile it are visible */
    const uint16_t *sK = sKV + (it % ST) * 2 * BN * LD, *sV = sK + BN * LD;
    float s[MT][NTS][4];
#pragma unroll
    for (int mi = 0; mi < MT; mi++)
#pragma unroll
      for (int i = 0; i < NTS; i++) s[mi][i][0] = s[mi][i][1] = s[mi][i][2] = s[mi][i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mi = 0; mi < MT; mi++) frag_a(a[mi], sQ, LD, w * 16 * MT + mi * 16, kk * 16, g, t);
#pragma unroll
      for (int nt = 0; nt < NTS; nt += 2) {
        uint32_t bf[2][2];
        frag_bt2(bf, sK, LD, nt * 8, kk * 16, g, t);
#pragma unroll
        for (int mi = 0; mi < MT; mi++) {
          fa_mma<BF>(s[mi][nt], a[mi], bf[0]);
          fa_mma<BF>(s[mi][nt + 1], a[mi], bf[1]);
        }
      }
      if constexpr (DROP && KEEP_STEPS<D>) {
#pragma unroll
        for (int r = kk * FL_PHILOX_ROUNDS / KS; r < (kk + 1) * FL_PHILOX_ROUNDS / KS; r++)
#pragma unroll
          for (int mi = 0; mi < MT; mi++) philox_round<true>(ks[mi][0], dr, r), philox_round<true>(ks[mi][1], dr, r);
      }
    }
    if constexpr (DROP && KEEP_STEPS<D>) {
#pragma unroll
      for (int mi = 0; mi < MT; mi++) keepbits[mi] = fwd_keep_finish<true>(p, dr, kpos, mi, n0, ks[mi], lane);
    }
    /* the online softmax (flash_common.cuh), fragment by fragment: EDGE masks (key_limit, in tile coordinates) and
     * scales the scores before their max, else the max is of the raw scores and the scale folds into exp2's FFMA */
    float alpha[MT][2], muse[MT][2];
#pragma unroll
    for (int mi = 0; mi < MT; mi++) {
      const int64_t rows[2] = {row_of(mi, 0), row_of(mi, 1)};
      softmax_max<NTS, BN, !EDGE>(p, s[mi], mrow[mi], lrow[mi], rows, n0, lk, shift, EDGE, t, alpha[mi], muse[mi]);
    }
    rescale<MT, NTD>(acc, alpha);
#pragma unroll
    for (int mi = 0; mi < MT; mi++) softmax_exp<NTS, !EDGE>(p, s[mi], lrow[mi], muse[mi]);
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mi = 0; mi < MT; mi++) {
        c_to_a<BF>(a[mi], s[mi][2 * kk], s[mi][2 * kk + 1]);
        if constexpr (DROP) drop_pairs(a[mi], keepbits[mi], kk); /* (l above is of the undropped P) */
      }
#pragma unroll
      for (int dt = 0; dt < NTD; dt += 2) {
        uint32_t bf[2][2];
        frag_b2(bf, sV, LD, kk * 16, dt * 8, g, t);
#pragma unroll
        for (int mi = 0; mi < MT; mi++) {
          fa_mma<BF>(acc[mi][dt], a[mi], bf[0]);
          fa_mma<BF>(acc[mi][dt + 1], a[mi], bf[1]);
        }
      }
    }
    __syncthreads(); /* stage it % ST is read: iteration it + 1 may refill it */
  };
  for (int it = 0; it < ntiles; it++) {
    const int64_t n0 = (int64_t)it * BN;
    /* stage (it + ST - 1) % ST was freed by the barrier that ended iteration it - 1; near the end (no tile left to
     * copy) everything is waited for */
    if (it + ST - 1 < ntiles) {
      load_kv(it + ST - 1, n0 + (ST - 1) * BN);
      cp_commit();
      cp_wait<ST - 1>(); /* tile it (and Q) landed; the ST - 1 after it may still be in flight */
    } else {
      cp_wait<0>();
    }
    /* Masking only on the tiles that need it (the last key tile and the causal diagonal's), and a non-positive
     * scale (whose row max is not the raw scores' max) takes the same general step; uniform over the CTA. */
    const bool edge = fwd_counted_edge<DROP, D> ? it >= ninner
                                                : n0 + BN > lk || (p.causal && n0 + BN - 1 > m0 + shift) ||
                                                      !(p.scale_log2 > 0.f);
    if (INTERIOR_COPY<DROP, D> && !edge) step(n0, it, std::false_type{});
    else step(n0, it, std::true_type{});
  }
  cp_wait<0>(); /* no copy into smem outlives this tile (none is pending unless ntiles == 0) */
#pragma unroll
  for (int mi = 0; mi < MT; mi++) {
    if constexpr (DROP) /* Z = P keep / (1 - p): the factor of every kept element, once (0 where p = 1) */
#pragma unroll
      for (int i = 0; i < NTD; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[mi][i][e] *= p.drop_scale;
    const int64_t rows[2] = {row_of(mi, 0), row_of(mi, 1)};
    store_rows<BF, NTD>(p, b, h, q0, lq, rows, acc[mi], mrow[mi], lrow[mi], t);
  }
}

/* m16 tiles per warp in the forward (FA_FWD_MT=1 at build time: the 64-row tiles of the first version) */
#ifndef FA_FWD_MT
#define FA_FWD_MT 2
#endif
constexpr int FWD_MT = FA_FWD_MT, BM_FWD = 64 * FWD_MT;

template <bool BF, int D, bool DROP>
__global__ void __launch_bounds__(NT) fa_fwd_kernel(fa_params p, fa_drop dr) {
  extern __shared__ __align__(16) uint16_t smem[];
  for (int64_t bh = blockIdx.y; bh < (int64_t)p.B * p.Hq; bh += gridDim.y)
    /* the last query tiles first: under a causal mask they see the most keys, so the longest CTAs start in the
     * first wave rather than trail in the last (the backward's heaviest key tiles are its first already) */
    fwd_tile<BF, D, FWD_MT, DROP>(p, dr, (int)(gridDim.x - 1 - blockIdx.x), (int)bh, smem);
}

/* dsum[r] = sum_d dO[r, d] O[r, d] over the rows of the contiguous [rows, D] views (row r is lse's element r). */
template <bool BF>
__global__ void __launch_bounds__(FC_THREADS) fa_dsum_kernel(float *dsum, const uint16_t *dout, const uint16_t *o,
                                                             int64_t rows, int D) {
  const int lane = threadIdx.x & 31, warps = FC_THREADS / 32;
  for (int64_t r = (int64_t)blockIdx.x * warps + threadIdx.x / 32; r < rows; r += (int64_t)gridDim.x * warps) {
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s += fa_load<BF>(dout[r * D + d]) * fa_load<BF>(o[r * D + d]);
    for (int m = 16; m > 0; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
    if (lane == 0) dsum[r] = s;
  }
}

/* d[0], d[1] += x, y atomically (d 8-byte aligned): one vector reduction on sm_90, two scalar ones before. */
__device__ __forceinline__ void dq_add2(float *d, float x, float y) {
#if __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2 *>(d), make_float2(x, y));
#else
  atomicAdd(d, x), atomicAdd(d + 1, y);
#endif
}

/* One warp's keep-bit words (fl_cuda_flash_keep_probe): fwd_keep_word of the m16 fragment of rows r0.. (lane g's row
 * r0 + g; from r0 = 16 on as the second fragment of rows r0 - 16.., so that both of fwd_tile's are probed) or
 * bwd_keep_word of queries r0.., keys n0.. */
__global__ void __launch_bounds__(32) fa_keep_probe_kernel(fa_params p, fa_drop d, int b, int h, int64_t r0, int64_t n0,
                                                           bool backward, uint32_t *out) {
  const int lane = threadIdx.x;
  if (backward) {
    out[lane] = bwd_keep_word(p, d, b, h, r0, n0, lane);
  } else { /* rows from 16 on as the second fragment of rows r0 - 16.., as fwd_tile reaches them */
    const int mi = r0 >= 16 ? 1 : 0;
    const keep_pos at = fwd_keep_pos(p, b, h, r0 - 16 * mi + lane / 4, n0 % 16, lane); /* (any n0: its tile is 16 k) */
    out[lane] = fwd_keep_word<true>(p, d, at, mi, n0 - n0 % 16, lane);
  }
}

/* The backward's CTA: 8 warps over a tile of 128 keys (FlashAttention-2's shape for these head dims), so each query
 * tile's Q, dO, lse and dsum loads and each dQ atomic serve twice the keys of a 64-key tile. */
constexpr int NTB = 256, BNB = 128;
/* The backward's shared-memory reads are its bottleneck (the tensor cores wait on ldmatrix: FlashAttention-2's
 * kernel issues about 0.45 ldmatrix per tensor-core step, this one 0.6 before session 20; at d128 0.45 since session
 * 21, bwd_pair), so:
 * - up to head dim FA_BWD_KVREG_MAXD, each warp keeps its K and V A fragments (16 keys x D, loop invariants) in
 *   registers instead of loading them again for every query tile (at 128 that spills: 520 bytes);
 * - dQ's 64 x D tile is split over the 8 warps into bwd_dq_cg(D) column groups (and 8 / that row groups): at 128,
 *   32 x 32 blocks read 32 ldmatrix a tile where 16 x 64 ones read 40; below it 2 (16 x D / 2) is the fewest. */
#ifndef FA_BWD_KVREG_MAXD
#define FA_BWD_KVREG_MAXD 64
#endif
#ifndef FA_BWD_DQ_CG128
#define FA_BWD_DQ_CG128 4
#endif
constexpr int bwd_dq_cg(int D) { return D >= 128 ? FA_BWD_DQ_CG128 : 2; }
/* At head dim 128 (FA_BWD_PAIR_MIND) dV += Z^T dO and dK += dS^T Q run on FlashAttention-2's warp grid: the warps
 * pair up (w, w ^ 1: keys 32 (w / 2) ..+ 31) and each accumulates 32 keys x 64 columns (half w % 2), its A
 * fragments (Z^T, dS^T of both warps' keys) read back from shared memory: per 16 queries 2 + 4 ldmatrix feed 16
 * tensor-core steps where 16 keys x 128 columns with A in registers take 8 (a tile: 24 + 24 instead of 32 + 32,
 * plus 4 stmatrix for Z^T; dS^T is stored for dQ anyway). Both run after the barrier that completes dS^T for dQ
 * (one block of dV, dK and dQ steps; a named barrier per pair for Z^T before dV, with dV between it and dS, cost
 * 24 bytes of spills). Below 128 it gains nothing (16 = 16 at 64). */
#ifndef FA_BWD_PAIR_MIND
#define FA_BWD_PAIR_MIND 128
#endif
constexpr bool bwd_pair(int D) { return D >= FA_BWD_PAIR_MIND; }

/* acc[j] += A B for one k step of 16: A the fragment a, B = sB (rows k0 .., leading dim LDB) at columns 8 j (dV and
 * dK with a warp's 16 keys in registers, off the pair grid). */
template <bool BF, int NJ, int LDB>
__device__ __forceinline__ void row_mma(float acc[NJ][4], const uint32_t a[4], const uint16_t *sB, int k0, int g,
                                        int t) {
#pragma unroll
  for (int j = 0; j < NJ; j += 2) {
    uint32_t bf[2][2];
    frag_b2(bf, sB, LDB, k0, j * 8, g, t);
    fa_mma<BF>(acc[j], a, bf[0]);
    fa_mma<BF>(acc[j + 1], a, bf[1]);
  }
}

/* acc[mb][j] += A B over one query tile (BM queries) on the pair grid: A = rows r0 + 16 mb (keys) of sA ([key]
 * [query], leading dim LDA), B = sB (rows: queries, leading dim LDB) at columns c0 + 8 j. */
template <bool BF, int NJ, int LDA, int LDB>
__device__ __forceinline__ void pair_mma(float acc[2][NJ][4], const uint16_t *sA, const uint16_t *sB, int r0, int c0,
                                         int g, int t) {
#pragma unroll
  for (int kk = 0; kk < BM / 16; kk++) {
    uint32_t a[2][4];
    frag_a(a[0], sA, LDA, r0, kk * 16, g, t);
    frag_a(a[1], sA, LDA, r0 + 16, kk * 16, g, t);
#pragma unroll
    for (int j = 0; j < NJ; j += 2) {
      uint32_t bf[2][2];
      frag_b2(bf, sB, LDB, kk * 16, c0 + j * 8, g, t);
#pragma unroll
      for (int mb = 0; mb < 2; mb++) {
        fa_mma<BF>(acc[mb][j], a[mb], bf[0]);
        fa_mma<BF>(acc[mb][j + 1], a[mb], bf[1]);
      }
    }
  }
}

/* One (key tile, b, k/v head) of the backward. DROP (the dropout kernel, p.dropout set): with Pk = P keep (the
 * dropped-out P without its factor f = 1 / (1 - p)), dV = f Pk^T dO and dS = P (dZ keep f - dsum) = f P (dZ keep -
 * dsum / f): the tiles use dsum (1 - p) (stored so) and leave f to dV, dK and dQ's final scaling, once. */
template <bool BF, int D, bool DROP>
__device__ void bwd_tile(const fa_params &p, const fa_drop &dr, int nt_idx, int bhk, uint16_t *smem) {
  constexpr int BN = BNB; /* (shadows the forward's) */
  constexpr int LD = D + PAD, LDQ = BM + PAD, KS = D / 16, NTD = D / 8, NTQ = BM / 8;
  /* Q and dO tiles (and lse, dsum) in two stages: the next query tile loads while one computes */
  constexpr bool PAIR = bwd_pair(D);
  uint16_t *sK = smem, *sV = sK + BN * LD, *sQ2 = sV + BN * LD, *sO2 = sQ2 + 2 * BM * LD, *sS = sO2 + 2 * BM * LD;
  uint16_t *sP = sS + BN * LDQ; /* (PAIR) Z^T, [key][query] as sS */
  float *sL2 = reinterpret_cast<float *>(sP + (PAIR ? BN * LDQ : 0)), *sD2 = sL2 + 2 * BM; /* sS: dS^T, [key][query] */
  const int b = bhk / p.Hk, hk = bhk % p.Hk, G = p.Hq / p.Hk;
  int64_t q0, lq, k0, lk;
  fa_extent(p.cu_q, b, p.Sq, p.total_q, q0, lq);
  fa_extent(p.cu_k, b, p.Sk, p.total_k, k0, lk);
  const int64_t n0 = (int64_t)nt_idx * BN;
  if (n0 >= lk) return; /* uniform over the CTA */
  const int64_t shift = p.bottom_right ? lk - lq : 0;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  /* dK and dV: MB m16 blocks of keys (kr0 + 16 mb) by NTK n8 blocks of columns (c0k + 8 j) */
  constexpr int MB = PAIR ? 2 : 1, NTK = PAIR ? NTD / 2 : NTD;
  const int kr0 = PAIR ? (w / 2) * 32 : w * 16, c0k = PAIR ? (w % 2) * (D / 2) : 0;
  float dk[MB][NTK][4], dv[MB][NTK][4];
#pragma unroll
  for (int mb = 0; mb < MB; mb++)
#pragma unroll
    for (int i = 0; i < NTK; i++)
#pragma unroll
      for (int e = 0; e < 4; e++) dk[mb][i][e] = dv[mb][i][e] = 0.f;
  /* queries i with i + shift >= n0 see a key of this tile (causal); earlier tiles are skipped */
  int64_t mbeg = p.causal ? max((int64_t)0, n0 - shift) : 0;
  mbeg = mbeg / BM * BM;
  /* the query tiles, over the query heads sharing this k/v head (GQA) and the rows from mbeg: tile it is head
   * hk G + it / mtiles, rows mbeg + (it % mtiles) BM */
  const int mtiles = lq > mbeg ? (int)((lq - mbeg + BM - 1) / BM) : 0, ntiles = G * mtiles;
  /* issues the cp.async copies of the Q and dO tile (head h, rows m0..) into stage st (the caller commits); loads its
   * lse and dsum (threads < 2 BM, one value each) into a register, stored into the stage by store_ld once it is free */
  /* ROWS: this thread's first row of the Q and dO copies (head 0, row 0 of the sequence on) and its lse or dsum
   * (threads < 2 BM), so that a tile adds h head strides and m0 row strides, with no products of b and q0 per tile
   * (d128: 40 fewer instructions a tile; at 64 it cost registers, spills 8 -> 24 B; 96 splits columns unevenly) */
  constexpr bool ROWS = D == 32 || D == 128;
  static_assert(!ROWS || NTB % (D / 8) == 0, "one column per thread");
  const int cr = ROWS ? (int)threadIdx.x / (D / 8) : 0, ck = ROWS ? (int)threadIdx.x % (D / 8) * 8 : 0;
  [[maybe_unused]] const uint16_t *qt = p.q + b * p.q_sb + (q0 + cr) * p.q_sr + ck;
  [[maybe_unused]] const uint16_t *ot = p.dout + b * p.o_sb + (q0 + cr) * p.o_sr + ck;
  const int lr = threadIdx.x % BM;
  [[maybe_unused]] const float *lt = (threadIdx.x < BM ? p.lse : p.dsum) + b * p.l_sb + (q0 + lr) * p.l_sr;
  auto issue = [&](int h, int64_t m0, int st, float &ld) {
    if constexpr (ROWS) {
      uint16_t *sq = sQ2 + st * BM * LD + cr * LD + ck, *so = sO2 + st * BM * LD + cr * LD + ck;
      load_rows_async<D, BM, NTB>(sq, LD, qt + h * p.q_sh + m0 * p.q_sr, p.q_sr, lq - m0 - cr, p.q);
      load_rows_async<D, BM, NTB>(so, LD, ot + h * p.o_sh + m0 * p.o_sr, p.o_sr, lq - m0 - cr, p.dout);
    } else {
      load_tile_async<D, BM, NTB>(sQ2 + st * BM * LD, LD, p.q + b * p.q_sb + h * p.q_sh + q0 * p.q_sr, p.q_sr, m0, lq);
      load_tile_async<D, BM, NTB>(sO2 + st * BM * LD, LD, p.dout + b * p.o_sb + h * p.o_sh + q0 * p.o_sr, p.o_sr, m0,
                                  lq);
    }
    ld = 0.f;
    if constexpr (ROWS) {
      if (threadIdx.x < 2 * BM && m0 + lr < lq) ld = lt[h * p.l_sh + m0 * p.l_sr];
    } else {
      const int64_t at = b * p.l_sb + h * p.l_sh + (q0 + m0 + lr) * p.l_sr;
      if (threadIdx.x < 2 * BM && m0 + lr < lq) ld = threadIdx.x < BM ? p.lse[at] : p.dsum[at];
    }
  };
  /* dropout: 1 - p (0 where p = 1: f = 0 then, and dS = f P (dZ keep - 0) = 0, as P (0 - dsum) with dsum = 0) */
  const float keepf = DROP && p.drop_scale > 0.f ? 1.f / p.drop_scale : 0.f;
  auto store_ld = [&](int st, float ld) {
    const int r = threadIdx.x % BM;
    if (threadIdx.x < BM) sL2[st * BM + r] = ld == -INFINITY ? INFINITY : ld * LOG2E; /* no keys: exp2(s - inf) = 0 */
    else if (threadIdx.x < 2 * BM) sD2[st * BM + r] = DROP ? ld * keepf : ld;
  };
  __syncthreads(); /* the previous tile of this CTA is done with smem */
  load_tile_async<D, BN, NTB>(sK, LD, p.k + b * p.k_sb + hk * p.k_sh + k0 * p.k_sr, p.k_sr, n0, lk);
  load_tile_async<D, BN, NTB>(sV, LD, p.v + b * p.v_sb + hk * p.v_sh + k0 * p.v_sr, p.v_sr, n0, lk);
  if (ntiles > 0) {
    float ld;
    issue(hk * G, mbeg, 0, ld);
    store_ld(0, ld);
  }
  cp_commit();
  const float dqscale = DROP ? p.scale * p.drop_scale : p.scale;
  int h = hk * G; /* tile it's head and first row, stepped (no division by mtiles per tile) */
  int64_t m0 = mbeg;
  /* this warp's K and V A fragments, held across the loop where KVREG (they landed with the first query tile) */
  constexpr bool KVREG = D <= FA_BWD_KVREG_MAXD;
  uint32_t kfr[KVREG ? KS : 1][4], vfr[KVREG ? KS : 1][4];
  if constexpr (KVREG) {
    cp_wait<0>();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      frag_a(kfr[kk], sK, LD, w * 16, kk * 16, g, t);
      frag_a(vfr[kk], sV, LD, w * 16, kk * 16, g, t);
    }
  }
  /* S^T's and dZ^T's warp grid: 16 keys x 64 queries a warp (keys 16 w..), or where SQ32 (PAIR without dropout,
   * whose keep bits are laid out for the former) FlashAttention-2's 32 x 32 (keys of the pair's dK/dV, queries 32
   * (w % 2)..): per 16 columns of D, 2 + 2 ldmatrix for 8 tensor-core steps instead of 1 + 4 */
  constexpr bool SQ32 = PAIR && !DROP;
  constexpr int SMB = SQ32 ? 2 : 1, NQ = NTQ / SMB;
  const int sk0 = SQ32 ? kr0 : w * 16, sq0 = SQ32 ? (w % 2) * 32 : 0;
  /* acc = A B^T over D for the warp's S^T-grid fragments: A from sA (K or V; where KVREG its fragments areg), B^T
   * the rows of sB (Q or dO) */
  auto kq_mma = [&](float acc[NTQ][4], const uint16_t *sA, const uint32_t (*areg)[4], const uint16_t *sB) {
#pragma unroll
    for (int i = 0; i < NTQ; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      uint32_t a[SMB][4];
#pragma unroll
      for (int mb = 0; mb < SMB; mb++) {
        if constexpr (KVREG) a[mb][0] = areg[kk][0], a[mb][1] = areg[kk][1], a[mb][2] = areg[kk][2], a[mb][3] = areg[kk][3];
        else frag_a(a[mb], sA, LD, sk0 + 16 * mb, kk * 16, g, t);
      }
#pragma unroll
      for (int nt = 0; nt < NQ; nt += 2) {
        uint32_t bf[2][2];
        frag_bt2(bf, sB, LD, sq0 + nt * 8, kk * 16, g, t);
#pragma unroll
        for (int mb = 0; mb < SMB; mb++) {
          fa_mma<BF>(acc[mb * NQ + nt], a[mb], bf[0]);
          fa_mma<BF>(acc[mb * NQ + nt + 1], a[mb], bf[1]);
        }
      }
    }
  };
  for (int it = 0; it < ntiles; it++) {
    const int sg = it & 1;
    int hn = h; /* the next tile's */
    int64_t mn = m0 + BM;
    if (mn >= lq) mn = mbeg, hn++;
    const uint16_t *sQ = sQ2 + sg * BM * LD, *sO = sO2 + sg * BM * LD;
    const float *sL = sL2 + sg * BM, *sD = sD2 + sg * BM;
    cp_wait<0>();
    __syncthreads(); /* tile it landed (and its lse, dsum are stored); every warp is done with tile it - 1 */
    float ld_next = 0.f;
    if (it + 1 < ntiles) issue(hn, mn, sg ^ 1, ld_next); /* stage sg ^ 1 was last read in tile it - 1 */
    cp_commit();
    /* masking only where this tile needs it (uniform over the CTA): the last key or query tile and the causal
     * diagonal's */
    const bool edge = n0 + BN > lk || m0 + BM > lq || (p.causal && n0 + BN - 1 > m0 + shift);
    /* The tile's body, specialised at compile time: SIMPLE (an interior tile, the bulk of a run) is free of the
     * masking code, which the compiler otherwise branches around element by element (a taken branch each, and basic
     * blocks too small to interleave with the tensor-core steps); the dropout code is the DROP kernel's alone. */
    auto body = [&](auto simple_c) {
      constexpr bool SIMPLE = decltype(simple_c)::value;
      /* drawn before S^T, while fewer registers are live (spreading its Philox rounds over the S^T steps, as the
       * forward does, timed slower on the H200: KEEP_STEPS) */
      [[maybe_unused]] const uint32_t keepbits = DROP ? bwd_keep_word(p, dr, b, h, m0, n0 + w * 16, lane) : ~0u;
      /* S^T = K Q^T: this warp's SMB x 16 keys from sk0 x NQ x 8 queries from sq0, fragment i = mb NQ + nt (keys sk0
       * + 16 mb, queries sq0 + 8 nt); likewise dZ^T = V dO^T (kq_mma) */
      float st[NTQ][4];
      kq_mma(st, sK, kfr, sQ);
      /* P^T from lse; Z^T = P^T keep (the factor 1 / (1 - p) comes at the end); keep bits in a word (bit
       * bwd_bit(nt, e)) */
      float z[NTQ][4];
      /* the mask where edge (not SIMPLE), in tile coordinates (key kl = 16 w + g (+ 8), query il), in 32 bits */
      const int kend = (int)min(lk - n0, (int64_t)BN), qend = (int)min(lq - m0, (int64_t)BM);
      const int diag = p.causal ? (int)max(min(m0 + shift - n0, (int64_t)BN), (int64_t)-BM - 1) : BN; /* kl <= il + diag */
#pragma unroll
      for (int nt = 0; nt < NTQ; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int kl = sk0 + 16 * (nt / NQ) + g + 8 * (e >> 1), il = sq0 + nt % NQ * 8 + 2 * t + (e & 1);
          /* (no short-circuit and an unconditional load: the mask selects the argument, with no branch per element;
           * 2^-inf = 0) */
          const bool ok = SIMPLE || !edge | ((kl < kend) & (il < qend) & (kl <= il + diag));
          const float x = st[nt][e] * p.scale_log2 - sL[il];
          const float pe = fa_exp2(ok ? x : -INFINITY);
          st[nt][e] = pe;
          z[nt][e] = pe;
        }
      /* dV += Z^T dO (PAIR: Z^T goes to sP, for the pair's dV after the barrier below); kk: fragments 2 kk, + 1 (below: keys
       * sk0 + 16 (kk / (NQ / 2)), queries sq0 + 16 (kk % (NQ / 2)); without SQ32 keys sk0, queries 16 kk) */
#pragma unroll
      for (int kk = 0; kk < NTQ / 2; kk++) {
        uint32_t a[4];
        c_to_a<BF>(a, z[2 * kk], z[2 * kk + 1]);
        if constexpr (DROP) drop_pairs_t(a, keepbits, kk);
        if constexpr (PAIR) {
          st_frag_a(sP, LDQ, sk0 + 16 * (kk / (NQ / 2)), sq0 + 16 * (kk % (NQ / 2)), a, g, t);
        } else {
          row_mma<BF, NTD, LD>(dv[0], a, sO, kk * 16, g, t);
        }
      }
      /* dZ^T = V dO^T (reusing z) */
      kq_mma(z, sV, vfr, sO);
      /* dS^T = P^T (dZ^T - dsum) (DROP: P^T (dZ^T keep - dsum (1 - p)), the factor 1 / (1 - p) at the end), into st */
#pragma unroll
      for (int nt = 0; nt < NTQ; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int il = sq0 + nt % NQ * 8 + 2 * t + (e & 1);
          float dp = z[nt][e];
          if constexpr (DROP) dp = (keepbits >> bwd_bit(nt, e) & 1u) ? dp : 0.f;
          st[nt][e] *= dp - sD[il];
        }
      /* dK += dS^T Q; the A fragments (dS^T in bf16/f16 pairs along queries) also go to smem as dS^T [key][query], in
       * 32-bit words, for dQ */
#pragma unroll
      for (int kk = 0; kk < NTQ / 2; kk++) {
        uint32_t a[4];
        c_to_a<BF>(a, st[2 * kk], st[2 * kk + 1]);
        st_frag_a(sS, LDQ, sk0 + 16 * (kk / (NQ / 2)), sq0 + 16 * (kk % (NQ / 2)), a, g, t);
        if constexpr (!PAIR) row_mma<BF, NTD, LD>(dk[0], a, sQ, kk * 16, g, t);
      }
      __syncthreads(); /* sS complete */
      if constexpr (PAIR) { /* (sP complete too) */
        pair_mma<BF, NTK, LDQ, LD>(dv, sP, sO, kr0, c0k, g, t);
        pair_mma<BF, NTK, LDQ, LD>(dk, sS, sQ, kr0, c0k, g, t);
      }
      /* dQ += scale dS K atomically into f32: the 64 x D tile over 8 warps, RG row groups of 16 RB rows by CG column
       * groups of NDW n8 blocks (bwd_dq_cg). Per key step, RB A fragments of dS and NDW / 2 B loads of K feed RB NDW
       * tensor-core steps into as many independent accumulators. */
      constexpr int CG = bwd_dq_cg(D), RG = 8 / CG, RB = 4 / RG, NDW = NTD / CG;
      static_assert(RG * CG == 8 && RB * RG == 4 && NDW * CG == NTD && NDW % 2 == 0, "dQ's warp grid tiles 64 x D");
      float *dqb = p.dq + b * p.o_sb + h * p.o_sh + q0 * p.o_sr;
      const int wr = (w % RG) * 16 * RB, dt0 = (w / RG) * NDW;
      float c[RB][NDW][4];
#pragma unroll
      for (int rb = 0; rb < RB; rb++)
#pragma unroll
        for (int j = 0; j < NDW; j++) c[rb][j][0] = c[rb][j][1] = c[rb][j][2] = c[rb][j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < BN / 16; kk++) {
        uint32_t as[RB][4];
#pragma unroll
        for (int rb = 0; rb < RB; rb++) frag_at(as[rb], sS, LDQ, wr + 16 * rb, kk * 16, g, t);
#pragma unroll
        for (int dj = 0; dj < NDW; dj += 2) {
          uint32_t bf[2][2];
          frag_b2(bf, sK, LD, kk * 16, (dt0 + dj) * 8, g, t);
#pragma unroll
          for (int rb = 0; rb < RB; rb++) {
            fa_mma<BF>(c[rb][dj], as[rb], bf[0]);
            fa_mma<BF>(c[rb][dj + 1], as[rb], bf[1]);
          }
        }
      }
      /* one 8-byte atomic per row of a C fragment (row g: cols 2t, 2t + 1; row g + 8): a warp instruction covers 8
       * rows of 32 bytes, as many bytes per row as the 16-byte ones did after a lane swap (2 shuffles, 4 selects a
       * block; session 21) */
#pragma unroll
      for (int rb = 0; rb < RB; rb++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
          const int64_t qrow = m0 + wr + 16 * rb + g + 8 * r;
          float *dqrow = dqb + qrow * p.o_sr + dt0 * 8 + 2 * t;
#pragma unroll
          for (int j = 0; j < NDW; j++)
            if (SIMPLE || qrow < lq) /* (SIMPLE: every row is) */
              dq_add2(dqrow + 8 * j, c[rb][j][2 * r] * dqscale, c[rb][j][2 * r + 1] * dqscale);
        }
    };
    if (INTERIOR_COPY<DROP, D> && !edge) body(std::true_type{});
    else body(std::false_type{});
    if (it + 1 < ntiles) store_ld(sg ^ 1, ld_next); /* read from tile it + 1 on, after its first barrier */
    h = hn, m0 = mn;
  }
  cp_wait<0>(); /* (K and V are still in flight when no query tile was left) */
  uint16_t *dkb = p.dk + b * p.dk_sb + hk * p.dk_sh + k0 * p.dk_sr;
  uint16_t *dvb = p.dv + b * p.dk_sb + hk * p.dk_sh + k0 * p.dk_sr;
  const float kscale = DROP ? p.scale * p.drop_scale : p.scale, vscale = DROP ? p.drop_scale : 1.f;
#pragma unroll
  for (int mb = 0; mb < MB; mb++)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const int64_t key = n0 + kr0 + 16 * mb + 8 * r + g;
      if (key >= lk) continue;
#pragma unroll
      for (int dt = 0; dt < NTK; dt++) {
        const int64_t off = key * p.dk_sr + c0k + dt * 8 + 2 * t;
        const float *k4 = dk[mb][dt], *v4 = dv[mb][dt];
        *reinterpret_cast<uint32_t *>(dkb + off) = fa_pack<BF>(k4[2 * r] * kscale, k4[2 * r + 1] * kscale);
        *reinterpret_cast<uint32_t *>(dvb + off) = fa_pack<BF>(v4[2 * r] * vscale, v4[2 * r + 1] * vscale);
      }
    }
}

template <bool BF, int D, bool DROP>
__global__ void __launch_bounds__(NTB) fa_bwd_kernel(fa_params p, fa_drop dr) {
  extern __shared__ __align__(16) uint16_t smem[];
  for (int64_t bh = blockIdx.y; bh < (int64_t)p.B * p.Hk; bh += gridDim.y)
    bwd_tile<BF, D, DROP>(p, dr, blockIdx.x, (int)bh, smem);
}

template <bool DROP, int D> constexpr size_t fwd_smem() { /* Q; ST stages of a K and a V tile */
  return (size_t)(BM_FWD + 2 * fwd_stages<DROP, D> * fwd_bn<DROP, D>) * (D + PAD) * 2;
}
constexpr size_t bwd_smem(int D) { /* K, V, two stages of Q, dO; sS (and sP where bwd_pair); lse, dsum */
  return (size_t)(2 * BNB + 4 * BM) * (D + PAD) * 2 + (size_t)(bwd_pair(D) ? 2 : 1) * BNB * (BM + PAD) * 2 +
         4 * BM * 4;
}

/* Strides (batch, head, row) of a dense [B, H, S, D] or varlen [T, H, D] tensor. */
void strides3(const fl_tensor *t, bool varlen, int64_t &sb, int64_t &sh, int64_t &sr) {
  if (varlen) sb = 0, sr = t->stride[0], sh = t->stride[1];
  else sb = t->stride[0], sh = t->stride[1], sr = t->stride[2];
}

/* The dropout fields of the kernels' parameters (the kernels and fl_cuda_flash_keep_probe). */
void set_dropout(fa_params &p, double prob, uint64_t seed, uint64_t offset) {
  p.dropout = prob > 0;
  /* the byte rule's t (fl_keep16_consts_of), not the word rule's threshold of F.dropout */
  p.thr = fl_dropout_rule_threshold(FL_DROPOUT_BYTE, prob), p.drop_scale = (float)fl_dropout_scale(prob);
  p.seed = seed, p.offset = offset;
}

fl_status fill_params(const fl_flash_args *a, fa_params &p, fc_context **ctx) {
  memset(&p, 0, sizeof p);
  FL_TRY(fc_context_of(a->q, ctx));
  bool varlen = a->cu_q != nullptr;
  p.q = (const uint16_t *)fc_base(a->q), p.k = (const uint16_t *)fc_base(a->k), p.v = (const uint16_t *)fc_base(a->v);
  strides3(a->q, varlen, p.q_sb, p.q_sh, p.q_sr);
  strides3(a->k, varlen, p.k_sb, p.k_sh, p.k_sr);
  strides3(a->v, varlen, p.v_sb, p.v_sh, p.v_sr);
  const int D = (int)a->q->shape[a->q->ndim - 1];
  if (varlen) {
    p.cu_q = (const int32_t *)fc_base(a->cu_q), p.cu_k = (const int32_t *)fc_base(a->cu_k);
    p.total_q = a->q->shape[0], p.total_k = a->k->shape[0];
    p.B = (int)(a->cu_q->shape[0] - 1), p.Hq = (int)a->q->shape[1], p.Hk = (int)a->k->shape[1];
    p.Sq = a->max_q, p.Sk = a->max_k;
    p.o_sb = 0, p.o_sh = D, p.o_sr = (int64_t)p.Hq * D;
    p.l_sb = 0, p.l_sh = 1, p.l_sr = p.Hq;
    p.dk_sb = 0, p.dk_sh = D, p.dk_sr = (int64_t)p.Hk * D;
  } else {
    p.B = (int)a->q->shape[0], p.Hq = (int)a->q->shape[1], p.Hk = (int)a->k->shape[1];
    p.Sq = a->q->shape[2], p.Sk = a->k->shape[2];
    p.o_sb = p.Hq * p.Sq * D, p.o_sh = p.Sq * D, p.o_sr = D;
    p.l_sb = p.Hq * p.Sq, p.l_sh = p.Sq, p.l_sr = 1;
    p.dk_sb = p.Hk * p.Sk * D, p.dk_sh = p.Sk * D, p.dk_sr = D;
  }
  p.scale = (float)a->scale, p.scale_log2 = (float)(a->scale * 1.4426950408889634);
  p.causal = a->causal, p.bottom_right = a->bottom_right;
  set_dropout(p, a->p, a->seed, a->offset);
  return FL_OK;
}

/* Grid: x over the tiles of the longest sequence, y over (batch, head) folded to CUDA's limit (the kernels loop). */
dim3 grid_of(int64_t len, int tile, int64_t bh) {
  return dim3((unsigned)fc_max64(1, fc_ceil_div(len, tile)), (unsigned)fc_min64(bh, 65535));
}

template <class K>
fl_status launch(K kernel, dim3 grid, size_t smem, fc_context *ctx, const fa_params &p, const char *name,
                 int threads = NT) {
  FC_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  kernel<<<grid, threads, smem, fc_stream(ctx)>>>(p, drop_of(p));
  return fc_launched(name);
}

/* The kernels of head dim D: the dropout one (DROP) where p.dropout, else the one without any dropout code. */
template <bool BF, int D> fl_status fwd_launch(dim3 grid, fc_context *ctx, const fa_params &p) {
  if (p.dropout) return launch(fa_fwd_kernel<BF, D, true>, grid, fwd_smem<true, D>(), ctx, p, "fa_fwd_kernel");
  return launch(fa_fwd_kernel<BF, D, false>, grid, fwd_smem<false, D>(), ctx, p, "fa_fwd_kernel");
}
template <bool BF, int D> fl_status bwd_launch(dim3 grid, fc_context *ctx, const fa_params &p) {
  return launch(p.dropout ? fa_bwd_kernel<BF, D, true> : fa_bwd_kernel<BF, D, false>, grid, bwd_smem(D), ctx, p,
                "fa_bwd_kernel", NTB);
}

template <bool BF> fl_status fwd_dispatch(int D, dim3 grid, fc_context *ctx, const fa_params &p) {
  switch (D) {
    case 32: return fwd_launch<BF, 32>(grid, ctx, p);
    case 64: return fwd_launch<BF, 64>(grid, ctx, p);
    case 96: return fwd_launch<BF, 96>(grid, ctx, p);
    case 128: return fwd_launch<BF, 128>(grid, ctx, p);
    default: return fl_error(FL_EINVAL, "flash_attention: head_dim %d is not supported", D);
  }
}

template <bool BF> fl_status bwd_dispatch(int D, dim3 grid, fc_context *ctx, const fa_params &p) {
  switch (D) {
    case 32: return bwd_launch<BF, 32>(grid, ctx, p);
    case 64: return bwd_launch<BF, 64>(grid, ctx, p);
    case 96: return bwd_launch<BF, 96>(grid, ctx, p);
    case 128: return bwd_launch<BF, 128>(grid, ctx, p);
    default: return fl_error(FL_EINVAL, "flash_attention backward: head_dim %d is not supported", D);
  }
}

} // namespace

namespace fc {

bool flash_attention_supported(const fl_op_query *q) {
  /* ts: out, q, k, v */
  if (q->n < 4 || !q->ts[1] || !q->ts[2] || !q->ts[3]) return false;
  const fl_tensor *tq = q->ts[1], *tk = q->ts[2], *tv = q->ts[3];
  if (tq->dtype != FL_BF16 && tq->dtype != FL_F16) return false;
  if (tk->dtype != tq->dtype || tv->dtype != tq->dtype) return false;
  int64_t D = tq->shape[tq->ndim - 1];
  if (tk->shape[tk->ndim - 1] != D || tv->shape[tv->ndim - 1] != D) return false;
  return D == 32 || D == 64 || D == 96 || D == 128;
}

const char *flash_attention_forward_kernel(const fl_tensor *q) {
  fc_context *ctx;
  if (fc_context_of(q, &ctx) != FL_OK) return nullptr; /* (not reached: supports() saw a CUDA tensor) */
  return sm90_forward_selected((int)q->shape[q->ndim - 1], ctx) ? sm90_forward_name() : "fa2";
}

fl_status flash_attention_forward(const fl_flash_args *a) {
  fa_params p;
  fc_context *ctx;
  FL_TRY(fill_params(a, p, &ctx));
  p.o = (uint16_t *)fc_base(a->out), p.lse = (float *)fc_base(a->lse);
  const int D = (int)a->q->shape[a->q->ndim - 1];
  if (p.B <= 0 || p.Hq <= 0 || p.Sq <= 0) return FL_OK;
  if (sm90_forward_selected(D, ctx)) return sm90_forward(p, D, a->q->dtype == FL_BF16, ctx);
  dim3 grid = grid_of(p.Sq, BM_FWD, (int64_t)p.B * p.Hq);
  return a->q->dtype == FL_BF16 ? fwd_dispatch<true>(D, grid, ctx, p) : fwd_dispatch<false>(D, grid, ctx, p);
}

fl_status flash_attention_backward(const fl_flash_args *a) {
  fa_params p;
  fc_context *ctx;
  FL_TRY(fill_params(a, p, &ctx));
  p.o = (uint16_t *)fc_base(a->out), p.lse = (float *)fc_base(a->lse);
  p.dout = (const uint16_t *)fc_base(a->dout), p.dsum = (float *)fc_base(a->dsum), p.dq = (float *)fc_base(a->dq_acc);
  p.dk = (uint16_t *)fc_base(a->dk), p.dv = (uint16_t *)fc_base(a->dv);
  const int D = (int)a->q->shape[a->q->ndim - 1];
  const bool bf = a->q->dtype == FL_BF16;
  FC_CUDA(cudaMemsetAsync(p.dq, 0, (size_t)fl_numel(a->dq_acc) * sizeof(float), fc_stream(ctx)));
  int64_t rows = fl_numel(a->lse);
  if (rows > 0) {
    unsigned bx = (unsigned)fc_min64(fc_ceil_div(rows, FC_THREADS / 32), (int64_t)ctx->sm_count * 32);
    if (bf) fa_dsum_kernel<true><<<bx, FC_THREADS, 0, fc_stream(ctx)>>>(p.dsum, p.dout, p.o, rows, D);
    else fa_dsum_kernel<false><<<bx, FC_THREADS, 0, fc_stream(ctx)>>>(p.dsum, p.dout, p.o, rows, D);
    FL_TRY(fc_launched("fa_dsum_kernel"));
  }
  if (fl_numel(a->dk) == 0) return FL_OK;
  if (p.B <= 0 || p.Hk <= 0 || p.Sk <= 0) return FL_OK;
  /* dk/dv rows of sequences the grid reaches are all written; with varlen, rows outside every sequence
   * (none when cu_k ends at total_k, as validated) would stay unwritten, so they are zeroed first */
  if (a->cu_k) {
    FC_CUDA(cudaMemsetAsync(p.dk, 0, (size_t)fl_numel(a->dk) * 2, fc_stream(ctx)));
    FC_CUDA(cudaMemsetAsync(p.dv, 0, (size_t)fl_numel(a->dv) * 2, fc_stream(ctx)));
  }
  dim3 grid = grid_of(p.Sk, BNB, (int64_t)p.B * p.Hk);
  return bf ? bwd_dispatch<true>(D, grid, ctx, p) : bwd_dispatch<false>(D, grid, ctx, p);
}

} // namespace fc

extern "C" fl_status fl_cuda_flash_keep_probe(fl_tensor *out, double prob, uint64_t seed, uint64_t offset, int Hq,
                                              int64_t Sq, int64_t Sk, int b, int h, int64_t r0, int64_t n0,
                                              bool backward) {
  if (out->storage->device.type != FL_CUDA || out->dtype != FL_I32 || fl_numel(out) != 32 || !fl_is_contiguous(out))
    return fl_error(FL_EINVAL, "fl_cuda_flash_keep_probe: out must be a contiguous CUDA i32 tensor of 32 elements");
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  fa_params p;
  memset(&p, 0, sizeof p);
  p.Hq = Hq, p.Sq = Sq, p.Sk = Sk;
  set_dropout(p, prob, seed, offset);
  fa_keep_probe_kernel<<<1, 32, 0, fc_stream(ctx)>>>(p, drop_of(p), b, h, r0, n0, backward, (uint32_t *)fc_base(out));
  return fc_launched("fa_keep_probe_kernel");
}
