/* The fused attention forward on Hopper's warpgroup MMA (wgmma, sm_90a), FlashAttention-3's instructions for the
 * FlashAttention-2 algorithm of cuda/flash_attention.cu, whose parameters (fa::fa_params), masking, softmax step,
 * dropout keep bits and epilogue it shares (flash_common.cuh), so O and lse come out in the same layouts with the
 * same conventions and the same backward consumes them. Head dims 64 and 128, bf16 and f16, causal (either corner)
 * or not, GQA, dropout, dense or varlen: every case the FlashAttention-2 forward takes at those head dims.
 *
 * One CTA of WG = 2 warpgroups (256 threads) per (query tile of BM = 128 rows, batch x query head); warpgroup wg owns
 * rows 64 wg .. 64 wg + 63. Q stays in shared memory; K and V tiles of BN = 128 keys stream through rings of two
 * stages each (cp.async by all threads: the next tiles load while one computes). Per key tile, each warpgroup
 * computes S = Q K^T with D / 16 wgmma m64n128k16 (both operands from shared memory, K-major), runs the online
 * softmax on its accumulator in registers (fa::softmax_max, softmax_exp, apply_keep), converts P to bf16/f16 A
 * fragments in registers (fa::c_to_a) and accumulates O += P V with BN / 16 wgmma m64nDk16 (A from registers, V as a
 * transposed, MN-major B), that product overlapped with the next tile's softmax (tile90). Layouts and descriptors:
 * flash_sm90.cuh (checked on their own by tests/test_wgmma_sm90.cu).
 *
 * Built for sm_90a alone (CMakeLists.txt: its own object library); compiled for anything else, the kernels are
 * stubs, and the probe kernel (built the same way) tells the host so: sm90_forward_selected then declines and the
 * FlashAttention-2 forward runs. Selected by FLAME_FLASH_FWD=sm90 while unverified on the GPU. */
#include "flash_keep.cuh"
#include "flash_sm90.cuh"
#include <atomic>
#include <stdlib.h>
#include <string.h>

using namespace fa;

namespace {

constexpr int BM = 128, BN = 128; /* query rows per CTA (two consumer warpgroups of 64), keys per tile */
/* the all-thread forward: 256 threads; the warp-specialised one: the two consumer warpgroups and a producer
 * warpgroup (registers are allocated per warpgroup: one producer warp would cost as much; setmaxnreg then moves
 * registers from the producer to the consumers) */
constexpr int NTH = 256, NTH_WS = 384;
/* the dynamic shared memory: Q, two stages of K and two of V, 1024 bytes to align the tiles to the swizzle's period
 * and, for the warp-specialised forward, its mbarriers (full and empty of two slots, full and empty of Q) */
constexpr size_t smem_bytes(int D) { return 1024 + (size_t)(BM + 4 * BN) * D * 2 + fa90::RING2_BYTES; }

/* One (query tile mt, b, h)'s extents, as both forwards and both sides of the warp-specialised one see them. */
struct tile_geom {
  int b, h, hk, ntiles;
  int64_t q0, lq, k0, lk, m0, shift;
  const uint16_t *qb, *kb, *vb;
  __device__ bool init(const fa_params &p, int mt, int bh) { /* false: no rows here (uniform over the CTA) */
    b = bh / p.Hq, h = bh % p.Hq, hk = h / (p.Hq / p.Hk);
    fa_extent(p.cu_q, b, p.Sq, p.total_q, q0, lq);
    fa_extent(p.cu_k, b, p.Sk, p.total_k, k0, lk);
    m0 = (int64_t)mt * BM;
    if (m0 >= lq) return false;
    shift = p.bottom_right ? lk - lq : 0;
    int64_t n_end = lk;
    if (p.causal) n_end = min(lk, max((int64_t)0, m0 + BM + shift)); /* keys past every row's limit: skipped */
    ntiles = (int)((n_end + BN - 1) / BN);
    qb = p.q + b * p.q_sb + h * p.q_sh + q0 * p.q_sr;
    kb = p.k + b * p.k_sb + hk * p.k_sh + k0 * p.k_sr;
    vb = p.v + b * p.v_sb + hk * p.v_sh + k0 * p.v_sr;
    return true;
  }
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* A consumer warpgroup's work on one query tile: its 64 rows (64 c .. 64 c + 63; thread ct = 0..127 of the
 * warpgroup), S in registers, P of the previous key tile as A fragments, O, the softmax's running max and sum.
 * Iteration it of a tile (0 .. ntiles) computes S_it = Q K_it^T and, overlapped with S_it's softmax, the previous
 * tile's O += P_{it-1} V_{it-1} (FlashAttention-3's intra-warpgroup overlap: both products issued together, the
 * softmax while P V is on the tensor cores, O rescaled once it finishes); iteration ntiles does the last P V alone. */
template <bool BF, int D> struct consumer {
  static constexpr int KS = D / 16, NTD = D / 8, NTS = BN / 8;
  const fa_params &p;
  const fa_drop &dr; /* the keep bits' Philox round keys and byte-rule constants (flash_keep.cuh) */
  const tile_geom &tg;
  uint32_t aQ; /* this warpgroup's rows of Q: K-major A, column block c at sQ + c BM 128 */
  int lane, t;
  float o[NTD][4], s[NTS][4], mrow[2], lrow[2], alpha[2], muse[2];
  uint32_t pa[BN / 16][4]; /* P_{it-1}: the A fragments of its P V */
  int64_t row[2];

  __device__ consumer(const fa_params &p_, const fa_drop &dr_, const tile_geom &tg_, uint32_t sQ, int c, int ct)
      : p(p_), dr(dr_), tg(tg_) {
    aQ = sQ + c * 64 * 128;
    lane = ct % 32, t = lane % 4;
    row[0] = tg.m0 + c * 64 + (ct / 32) * 16 + lane / 4;
    row[1] = row[0] + 8;
#pragma unroll
    for (int i = 0; i < NTD; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
#pragma unroll
    for (int i = 0; i < NTS; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f; /* (overwritten: scale-d 0) */
    mrow[0] = mrow[1] = -INFINITY, lrow[0] = lrow[1] = 0.f;
  }
  /* S = Q K^T (K at sK): k16 steps over the head dim, 32 bytes apart inside a 64-column block */
  __device__ void issue_s(uint32_t sK) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      const uint32_t off = (kk % 4) * 32;
      fa90::wgmma_ss<BN, BF>(s, fa90::desc_k(aQ + (kk / 4) * BM * 128 + off),
                             fa90::desc_k(sK + (kk / 4) * BN * 128 + off), kk > 0);
    }
    fa90::wgmma_commit();
  }
  /* O += P V (V at sV): P's k16 step kk is S's n8 blocks 2 kk, 2 kk + 1; V's rows 16 kk.. are 2048 bytes on */
  __device__ void issue_pv(uint32_t sV) {
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) fa90::wgmma_rs<D, BF>(o, pa[kk], fa90::desc_mn(sV + kk * 2048, BN), 1);
    fa90::wgmma_commit();
  }
  /* S_it (complete) into P_it, and alpha, muse for O */
  __device__ void softmax(int it) {
    const int64_t n0 = (int64_t)it * BN;
    uint32_t keep[2] = {0u, 0u};
    if (p.dropout) { /* the 128 keys as two 64-key fragments (n0 a multiple of 128: the lane's run offset stays) */
      const keep_pos at = fwd_keep_pos(p, tg.b, tg.h, row[0], 0, lane);
      keep[0] = fwd_keep_word<true>(p, dr, at, 0, n0, lane);
      keep[1] = fwd_keep_word<true>(p, dr, at, 0, n0 + 64, lane);
    }
    const bool edge = n0 + BN > tg.lk || (p.causal && n0 + BN - 1 > tg.m0 + tg.shift); /* uniform over the CTA */
    softmax_max<NTS, BN, false>(p, s, mrow, lrow, row, n0, tg.lk, tg.shift, edge, t, alpha, muse);
    softmax_exp<NTS, false>(p, s, lrow, muse);
    if (p.dropout) apply_keep<NTS>(s, keep, p.drop_scale);
  }
  /* O (no longer in flight) rescaled; P_it into the A fragments of its P V */
  __device__ void to_pa() {
    rescale<1, NTD>(&o, &alpha);
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) c_to_a<BF>(pa[kk], s[2 * kk], s[2 * kk + 1]);
  }
  /* The iterations of a tile (the caller peels them, so that each is straight-line code for ptxas's wgmma
   * pipeline analysis): first (it = 0, K_0 at sK), mid (0 < it < ntiles: K_it at sK, V_{it-1} at sV), last (it =
   * ntiles: V_{ntiles-1} at sV). */
  __device__ void first(uint32_t sK) {
    fa90::wgmma_fence();
    issue_s(sK);
    fa90::wgmma_wait<0>();
    fa90::fence_regs(s);
    softmax(0);
    to_pa();
  }
  __device__ void mid(int it, uint32_t sK, uint32_t sV) {
    fa90::wgmma_fence();
    issue_s(sK);
    issue_pv(sV);
    fa90::wgmma_wait<1>(); /* S done (groups complete in order); P V may still run */
    fa90::fence_regs(s);
    softmax(it);
    fa90::wgmma_wait<0>();
    fa90::fence_regs(o);
    to_pa();
  }
  __device__ void last(uint32_t sV) {
    fa90::wgmma_fence();
    issue_pv(sV);
    fa90::wgmma_wait<0>();
    fa90::fence_regs(o);
  }
  __device__ void finish() { store_rows<BF, NTD>(p, tg.b, tg.h, tg.q0, tg.lq, row, o, mrow, lrow, t); }
};

/* The all-thread forward's tile: the 256 threads load (cp.async) and compute. K and V have rings of two stages each,
 * V one tile behind K: iteration it reads K_it and V_{it-1} and loads K_{it+1} and V_it into the stages of K_{it-1}
 * and V_{it-2}, which every warpgroup finished with in iteration it - 1 (the barrier at the top of iteration it). */
template <bool BF, int D> __device__ void tile90(const fa_params &p, const fa_drop &dr, int mt, int bh, uint32_t sQ) {
  constexpr int TKV = BN * D * 2;
  const uint32_t sK0 = sQ + BM * D * 2, sV0 = sK0 + 2 * TKV; /* K_j at sK0 + (j & 1) TKV, V_j at sV0 + (j & 1) TKV */
  tile_geom tg;
  if (!tg.init(p, mt, bh)) return;
  const int tid = threadIdx.x;
  __syncthreads(); /* the previous tile of this CTA is done with smem */
  fa90::load_tile_sw128<D, BM, NTH>(sQ, tg.qb, p.q_sr, tg.m0, tg.lq, tid);
  if (tg.ntiles > 0) fa90::load_tile_sw128<D, BN, NTH>(sK0, tg.kb, p.k_sr, 0, tg.lk, tid);
  cp_commit();
  consumer<BF, D> cs(p, dr, tg, sQ, tid / 128, tid % 128);
  auto sync_and_load = [&](int it) { /* K_it, V_{it-1} visible; K_{it+1}, V_it on their way */
    cp_wait<0>();             /* the copies issued in iteration it - 1 (and Q) */
    fa90::fence_async_smem(); /* this thread's copies, visible to wgmma's (async proxy) reads ... */
    __syncthreads();          /* ... and everyone's; every warpgroup is done with iteration it - 1 */
    if (it + 1 < tg.ntiles)
      fa90::load_tile_sw128<D, BN, NTH>(sK0 + ((it + 1) & 1) * TKV, tg.kb, p.k_sr, (int64_t)(it + 1) * BN, tg.lk, tid);
    if (it < tg.ntiles)
      fa90::load_tile_sw128<D, BN, NTH>(sV0 + (it & 1) * TKV, tg.vb, p.v_sr, (int64_t)it * BN, tg.lk, tid);
    cp_commit();
  };
  if (tg.ntiles > 0) {
    sync_and_load(0);
    cs.first(sK0);
    for (int it = 1; it < tg.ntiles; it++) {
      sync_and_load(it);
      cs.mid(it, sK0 + (it & 1) * TKV, sV0 + ((it - 1) & 1) * TKV);
    }
    sync_and_load(tg.ntiles);
    cs.last(sV0 + ((tg.ntiles - 1) & 1) * TKV);
  }
  cp_wait<0>(); /* no copy into smem outlives this tile (none is pending unless ntiles == 0) */
  cs.finish();
}

/* The warp-specialised forward: warpgroup 2 (the producer) streams Q and the K/V tiles with cp.async; warpgroups 0
 * and 1 (the consumers) only compute, each at its own pace, and meet the producer only at the mbarriers of a
 * two-slot ring (fa90::ring2). Per query tile the producer fills groups 0 .. ntiles: group it is K_it (it < ntiles)
 * and V_{it-1} (it > 0), what the consumers' iteration it reads, in ring slot G % 2 (G counts the CTA's groups over
 * all its tiles): K in K stage G % 2, V in V stage (G + 1) % 2 (a group's V sits where the next group's K does not
 * go). A producer thread publishes a group once its own copies of it landed (cp.async.wait_group 1: the next group
 * may be in flight). Q is published per query tile and given back once the tile's last S is done. */
#endif

template <bool BF, int D> __global__ void __launch_bounds__(NTH_WS, 1) fa_fwd_sm90ws_kernel(fa_params p, fa_drop dr) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem90[];
  constexpr int TKV = BN * D * 2;
  const uint32_t sQ = (fa90::smem_u32(smem90) + 1023u) & ~1023u;
  const uint32_t sK0 = sQ + BM * D * 2, sV0 = sK0 + 2 * TKV;
  const fa90::ring2 ring{sV0 + 2 * TKV};
  if (threadIdx.x == 0) ring.init(128, 256);
  __syncthreads(); /* the barriers are initialised; from here on the two sides never meet at a CTA barrier */
  /* 384 threads start with 168 registers each; the producer needs few, the consumers more (128 x 40 + 256 x 232 <=
   * 64K; at 32/240 the producer spills). The roles split here, each with its own loop over the tiles (ptxas gives
   * code run under two register budgets one allocation, so nothing after the split is shared). */
  uint32_t G = 0, nq = 0; /* groups and Q tiles so far (the same count on both sides) */
  const int mt = (int)(gridDim.x - 1 - blockIdx.x);
  if (threadIdx.x >= 256) {
    fa90::setmaxnreg_dec<40>();
    const int pt = threadIdx.x - 256;
    for (int64_t bh = blockIdx.y; bh < (int64_t)p.B * p.Hq; bh += gridDim.y) {
      tile_geom tg;
      if (!tg.init(p, mt, (int)bh)) continue;
      ring.claim_q(nq++);
      fa90::load_tile_sw128<D, BM, 128, false>(sQ, tg.qb, p.q_sr, tg.m0, tg.lq, pt);
      cp_commit();
      uint32_t prev = ring.full_q(); /* the full barrier of this thread's last copy group, not yet published */
      for (int it = 0; tg.ntiles > 0 && it <= tg.ntiles; it++, G++) {
        const uint32_t slot = G & 1u;
        ring.claim(G);
        if (it < tg.ntiles)
          fa90::load_tile_sw128<D, BN, 128, false>(sK0 + slot * TKV, tg.kb, p.k_sr, (int64_t)it * BN, tg.lk, pt);
        if (it > 0)
          fa90::load_tile_sw128<D, BN, 128, false>(sV0 + (slot ^ 1u) * TKV, tg.vb, p.v_sr, (int64_t)(it - 1) * BN,
                                                   tg.lk, pt);
        cp_commit();
        cp_wait<1>(); /* the previous group landed (this one may be in flight) */
        ring.publish(prev);
        prev = ring.full(G);
      }
      cp_wait<0>();
      ring.publish(prev);
    }
  } else {
    fa90::setmaxnreg_inc<232>();
    for (int64_t bh = blockIdx.y; bh < (int64_t)p.B * p.Hq; bh += gridDim.y) {
      tile_geom tg;
      if (!tg.init(p, mt, (int)bh)) continue;
      consumer<BF, D> cs(p, dr, tg, sQ, threadIdx.x / 128, threadIdx.x % 128);
      ring.take_q(nq++);
      auto kst = [&]() { return sK0 + (G & 1u) * TKV; }; /* group G's K and V */
      auto vst = [&]() { return sV0 + ((G & 1u) ^ 1u) * TKV; };
      if (tg.ntiles > 0) {
        ring.take(G);
        cs.first(kst());
        ring.give(G++); /* (this thread's wgmmas on the slot completed: waited in first, mid, last) */
        for (int it = 1; it < tg.ntiles; it++) {
          ring.take(G);
          cs.mid(it, kst(), vst());
          ring.give(G++);
        }
        ring.give_q(); /* every S is done: Q may be refilled */
        ring.take(G);
        cs.last(vst());
        ring.give(G++);
      } else {
        ring.give_q();
      }
      cs.finish();
    }
  }
#endif
}

template <bool BF, int D> __global__ void __launch_bounds__(NTH, 1) fa_fwd_sm90_kernel(fa_params p, fa_drop dr) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem90[];
  const uint32_t base = (fa90::smem_u32(smem90) + 1023u) & ~1023u;
  for (int64_t bh = blockIdx.y; bh < (int64_t)p.B * p.Hq; bh += gridDim.y)
    /* the last query tiles first: under a causal mask they see the most keys (as the FlashAttention-2 forward) */
    tile90<BF, D>(p, dr, (int)(gridDim.x - 1 - blockIdx.x), (int)bh, base);
#endif
}

/* 1 where this kernel's code is the wgmma one (sm_90a), 0 in a stub (any other target). */
__global__ void fa_sm90_probe_kernel(int *out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

/* Whether the device runs the wgmma code: an sm_90 device, and the probe kernel's answer there, asked once per device
 * (0: not asked yet, 1: no, 2: yes). A failed call counts as no (the FlashAttention-2 forward runs; the error, not
 * sticky, is cleared so that the next launch check does not see it). */
constexpr int MAX_DEV = 64;
std::atomic<int> probed[MAX_DEV];

bool device_runs_sm90(fc_context *ctx) {
  const int dev = ctx->device;
  if (dev < 0 || dev >= MAX_DEV) return false;
  if (int known = probed[dev].load()) return known == 2;
  int major = 0, minor = 0, ans = 0, *d = nullptr;
  cudaStream_t st = fc_stream(ctx);
  bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess;
  if (ok && major == 9 && minor == 0 && cudaMalloc(&d, sizeof(int)) == cudaSuccess) {
    fa_sm90_probe_kernel<<<1, 1, 0, st>>>(d);
    ok = cudaGetLastError() == cudaSuccess &&
         cudaMemcpyAsync(&ans, d, sizeof(int), cudaMemcpyDeviceToHost, st) == cudaSuccess &&
         cudaStreamSynchronize(st) == cudaSuccess;
    if (cudaFree(d) != cudaSuccess) ok = false;
  } else {
    ok = false;
  }
  if (!ok) (void)cudaGetLastError();
  probed[dev].store(ok && ans == 1 ? 2 : 1);
  return ok && ans == 1;
}

/* ws: the warp-specialised kernel (FLAME_FLASH_FWD=sm90), else the all-thread one (sm90sync). */
template <bool BF, int D> fl_status launch90(const fa_params &p, fc_context *ctx, bool ws) {
  auto kernel = ws ? fa_fwd_sm90ws_kernel<BF, D> : fa_fwd_sm90_kernel<BF, D>;
  const size_t smem = smem_bytes(D);
  FC_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  dim3 grid((unsigned)fc_max64(1, fc_ceil_div(p.Sq, BM)), (unsigned)fc_min64((int64_t)p.B * p.Hq, 65535));
  kernel<<<grid, ws ? NTH_WS : NTH, smem, fc_stream(ctx)>>>(p, drop_of(p));
  return fc_launched(ws ? "fa_fwd_sm90ws_kernel" : "fa_fwd_sm90_kernel");
}

/* FLAME_FLASH_FWD: 1 "sm90" (warp-specialised), 2 "sm90sync" (all threads load), 0 anything else (read once). */
int sm90_mode() {
  static const int mode = [] {
    const char *e = getenv("FLAME_FLASH_FWD");
    return !e ? 0 : strcmp(e, "sm90") == 0 ? 1 : strcmp(e, "sm90sync") == 0 ? 2 : 0;
  }();
  return mode;
}

} // namespace

namespace fa {

bool sm90_forward_selected(int D, fc_context *ctx) {
  return sm90_mode() != 0 && (D == 64 || D == 128) && device_runs_sm90(ctx);
}

const char *sm90_forward_name() { return sm90_mode() == 2 ? "sm90sync" : "sm90"; }

fl_status sm90_forward(const fa_params &p, int D, bool bf, fc_context *ctx) {
  const bool ws = sm90_mode() != 2;
  switch (D) {
    case 64: return bf ? launch90<true, 64>(p, ctx, ws) : launch90<false, 64>(p, ctx, ws);
    case 128: return bf ? launch90<true, 128>(p, ctx, ws) : launch90<false, 128>(p, ctx, ws);
    default: return fl_error(FL_EINVAL, "flash_attention (sm90 forward): head_dim %d is not supported", D);
  }
}

} // namespace fa
