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
 * softmax on its accumulator in registers (fa::softmax_max, softmax_exp), converts P to bf16/f16 A fragments in
 * registers (fa::c_to_a) and accumulates O += P V with BN / 16 wgmma m64nDk16 (A from registers, V as a transposed,
 * MN-major B), that product overlapped with the next tile's softmax (tile90). Layouts and descriptors:
 * flash_sm90.cuh (checked on their own by tests/test_wgmma_sm90.cu).
 *
 * Built for sm_90a alone (CMakeLists.txt: its own object library); compiled for anything else, the kernels are
 * stubs, and the probe kernel (built the same way) tells the host so: sm90_forward_selected then declines and the
 * FlashAttention-2 forward runs. Selected by FLAME_FLASH_FWD=sm90 while unverified on the GPU. */
#include "flash_sm90.cuh"
#include <atomic>
#include <stdlib.h>
#include <string.h>

using namespace fa;

namespace {

constexpr int WG = 2, NTH = 128 * WG, BM = 64 * WG, BN = 128;
/* the dynamic shared memory: Q, two stages of K and two of V, and 1024 bytes to align the tiles to the swizzle's
 * period */
constexpr size_t smem_bytes(int D) { return 1024 + (size_t)(BM + 4 * BN) * D * 2; }

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* One (query tile, b, h). Iteration it computes S_it = Q K_it^T and, overlapped with its softmax, the previous
 * tile's O += P_{it-1} V_{it-1} (FlashAttention-3's intra-warpgroup overlap: both products are issued together, the
 * softmax of S_it runs while P_{it-1} V_{it-1} is on the tensor cores, and O is rescaled once that finishes);
 * iteration ntiles does the last P V alone. K and V have rings of two stages each, V one tile behind K: iteration it
 * reads K_it and V_{it-1} and loads K_{it+1} and V_it into the stages of K_{it-1} and V_{it-2}, which every
 * warpgroup finished with in iteration it - 1 (the barrier at the top of iteration it says so). */
template <bool BF, int D> __device__ void tile90(const fa_params &p, int mt, int bh, uint32_t sQ) {
  constexpr int KS = D / 16, NTD = D / 8, NTS = BN / 8, TQ = BM * D * 2, TKV = BN * D * 2;
  const uint32_t sK0 = sQ + TQ, sV0 = sK0 + 2 * TKV; /* K_j at sK0 + (j & 1) TKV, V_j at sV0 + (j & 1) TKV */
  const int b = bh / p.Hq, h = bh % p.Hq, hk = h / (p.Hq / p.Hk);
  int64_t q0, lq, k0, lk;
  fa_extent(p.cu_q, b, p.Sq, p.total_q, q0, lq);
  fa_extent(p.cu_k, b, p.Sk, p.total_k, k0, lk);
  const int64_t m0 = (int64_t)mt * BM;
  if (m0 >= lq) return; /* uniform over the CTA */
  const int64_t shift = p.bottom_right ? lk - lq : 0;
  int64_t n_end = lk;
  if (p.causal) n_end = min(lk, max((int64_t)0, m0 + BM + shift)); /* keys past every row's limit: skipped */
  const int tid = threadIdx.x, wg = tid / 128, lane = tid % 32, w = (tid / 32) % 4, g = lane / 4, t = lane % 4;
  const uint16_t *qb = p.q + b * p.q_sb + h * p.q_sh + q0 * p.q_sr;
  const uint16_t *kb = p.k + b * p.k_sb + hk * p.k_sh + k0 * p.k_sr;
  const uint16_t *vb = p.v + b * p.v_sb + hk * p.v_sh + k0 * p.v_sr;
  const int ntiles = (int)((n_end + BN - 1) / BN);
  __syncthreads(); /* the previous tile of this CTA is done with smem */
  fa90::load_tile_sw128<D, BM, NTH>(sQ, qb, p.q_sr, m0, lq, tid);
  if (ntiles > 0) fa90::load_tile_sw128<D, BN, NTH>(sK0, kb, p.k_sr, 0, lk, tid);
  cp_commit();
  float o[NTD][4], s[NTS][4];
#pragma unroll
  for (int i = 0; i < NTD; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
#pragma unroll
  for (int i = 0; i < NTS; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f; /* (overwritten: scale-d 0) */
  uint32_t pa[BN / 16][4]; /* P_{it-1}: the A fragments of its P V */
  float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
  int64_t row[2];
  row[0] = m0 + wg * 64 + w * 16 + g;
  row[1] = row[0] + 8;
  /* this warpgroup's 64 rows of Q: K-major A, column block c at sQ + c BM 128 */
  const uint32_t aQ = sQ + wg * 64 * 128;
  /* the parts of an iteration (it: the key tile) */
  auto sync_and_load = [&](int it) { /* K_it, V_{it-1} visible; K_{it+1}, V_it on their way */
    cp_wait<0>();             /* the copies issued in iteration it - 1 (and Q) */
    fa90::fence_async_smem(); /* this thread's copies, visible to wgmma's (async proxy) reads ... */
    __syncthreads();          /* ... and everyone's; every warpgroup is done with iteration it - 1 */
    if (it + 1 < ntiles)
      fa90::load_tile_sw128<D, BN, NTH>(sK0 + ((it + 1) & 1) * TKV, kb, p.k_sr, (int64_t)(it + 1) * BN, lk, tid);
    if (it < ntiles) fa90::load_tile_sw128<D, BN, NTH>(sV0 + (it & 1) * TKV, vb, p.v_sr, (int64_t)it * BN, lk, tid);
    cp_commit();
  };
  auto issue_s = [&](int it) { /* S = Q K_it^T: k16 steps over the head dim, 32 bytes apart in a 64-column block */
    const uint32_t sK = sK0 + (it & 1) * TKV;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      const uint32_t off = (kk % 4) * 32;
      fa90::wgmma_ss<BN, BF>(s, fa90::desc_k(aQ + (kk / 4) * BM * 128 + off),
                             fa90::desc_k(sK + (kk / 4) * BN * 128 + off), kk > 0);
    }
    fa90::wgmma_commit();
  };
  auto issue_pv = [&](int it) { /* O += P_it V_it: P's k16 step kk is S's n8 blocks 2 kk, 2 kk + 1; V's rows 16 kk.. */
    const uint32_t sV = sV0 + (it & 1) * TKV;
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) fa90::wgmma_rs<D, BF>(o, pa[kk], fa90::desc_mn(sV + kk * 2048, BN), 1);
    fa90::wgmma_commit();
  };
  float alpha[2], muse[2];
  auto softmax = [&](int it) { /* S_it (done) into P_it, alpha and muse for O */
    const int64_t n0 = (int64_t)it * BN;
    uint32_t keep[2] = {0u, 0u};
    if (p.dropout) {
      keep[0] = fwd_keep_bits(p, b, h, row[0], n0, lane);
      keep[1] = fwd_keep_bits(p, b, h, row[0], n0 + 64, lane);
    }
    const bool edge = n0 + BN > lk || (p.causal && n0 + BN - 1 > m0 + shift); /* uniform over the CTA */
    softmax_max<NTS>(p, s, mrow, lrow, row, n0, lk, shift, edge, t, alpha, muse);
    softmax_exp<NTS>(p, s, lrow, muse, keep);
  };
  auto to_pa = [&]() { /* O (not in flight) rescaled; P_it into the A fragments of its P V */
    rescale<NTD>(o, alpha);
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) c_to_a<BF>(pa[kk], s[2 * kk], s[2 * kk + 1]);
  };
  if (ntiles > 0) { /* tile 0: S alone */
    sync_and_load(0);
    fa90::wgmma_fence();
    issue_s(0);
    fa90::wgmma_wait<0>();
    fa90::fence_regs(s);
    softmax(0);
    to_pa();
  }
  for (int it = 1; it < ntiles; it++) { /* S_it and P_{it-1} V_{it-1} together, the softmax between their ends */
    sync_and_load(it);
    fa90::wgmma_fence();
    issue_s(it);
    issue_pv(it - 1);
    fa90::wgmma_wait<1>(); /* S_it done (groups complete in order); P V may still run */
    fa90::fence_regs(s);
    softmax(it);
    fa90::wgmma_wait<0>();
    fa90::fence_regs(o);
    to_pa();
  }
  if (ntiles > 0) { /* the last P V alone */
    sync_and_load(ntiles);
    fa90::wgmma_fence();
    issue_pv(ntiles - 1);
    fa90::wgmma_wait<0>();
    fa90::fence_regs(o);
  }
  cp_wait<0>(); /* no copy into smem outlives this tile (none is pending unless ntiles == 0) */
  store_rows<BF, NTD>(p, b, h, q0, lq, row, o, mrow, lrow, t);
}
#endif

template <bool BF, int D> __global__ void __launch_bounds__(NTH, 1) fa_fwd_sm90_kernel(fa_params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem90[];
  const uint32_t base = (fa90::smem_u32(smem90) + 1023u) & ~1023u;
  for (int64_t bh = blockIdx.y; bh < (int64_t)p.B * p.Hq; bh += gridDim.y)
    /* the last query tiles first: under a causal mask they see the most keys (as the FlashAttention-2 forward) */
    tile90<BF, D>(p, (int)(gridDim.x - 1 - blockIdx.x), (int)bh, base);
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

template <bool BF, int D> fl_status launch90(const fa_params &p, fc_context *ctx) {
  auto kernel = fa_fwd_sm90_kernel<BF, D>;
  const size_t smem = smem_bytes(D);
  FC_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  dim3 grid((unsigned)fc_max64(1, fc_ceil_div(p.Sq, BM)), (unsigned)fc_min64((int64_t)p.B * p.Hq, 65535));
  kernel<<<grid, NTH, smem, fc_stream(ctx)>>>(p);
  return fc_launched("fa_fwd_sm90_kernel");
}

} // namespace

namespace fa {

bool sm90_forward_selected(int D, fc_context *ctx) {
  static const char *env = getenv("FLAME_FLASH_FWD");
  if (!env || strcmp(env, "sm90") != 0) return false;
  if (D != 64 && D != 128) return false;
  return device_runs_sm90(ctx);
}

fl_status sm90_forward(const fa_params &p, int D, bool bf, fc_context *ctx) {
  switch (D) {
    case 64: return bf ? launch90<true, 64>(p, ctx) : launch90<false, 64>(p, ctx);
    case 128: return bf ? launch90<true, 128>(p, ctx) : launch90<false, 128>(p, ctx);
    default: return fl_error(FL_EINVAL, "flash_attention (sm90 forward): head_dim %d is not supported", D);
  }
}

} // namespace fa
