/* The Hopper flash forward's building blocks on the GPU (cuda/flash_sm90.cuh, the helpers cuda/flash_fwd_sm90.cu is
 * made of), each against a host reference, so that a layout or descriptor mistake shows here, case by case, before
 * (and apart from) the whole kernel:
 *  - desc: the descriptor bits of the K-major and MN-major 128-byte-swizzled operands (host only);
 *  - tile: the swizzled cp.async tile load read back through sw128_offset (rows past the length zero-filled);
 *  - ss:   C = A B^T by wgmma with A (64 or 128 rows, i.e. one or two warpgroups, addressed as the kernel addresses
 *          its Q) and B (N rows) both from shared memory, K-major, over K = 64 and 128 (one and two column blocks);
 *  - rs:   C = P V with P from registers (the A fragment, read from global memory per lane) and V from shared memory,
 *          MN-major (transposed B), N = 64 and 128;
 *  - chain: S = Q K^T, P = S rounded to bf16/f16 in registers by fa::c_to_a, O = P V: the kernel's data flow
 *          without the softmax;
 *  - ring: the warp-specialised forward's producer/consumer protocol (fa90::ring2: mbarriers over two slots and a
 *          Q buffer, their phases over several rounds; setmaxnreg) carrying the tiles of a wgmma product.
 * bf16 and f16 each. One line per case: PASS/FAIL, the max error against the max magnitude. Built for sm_90a only;
 * without an sm_90 device it prints SKIP and passes, unless run with --require (bench/flash_sm90_check.sh does). */
#include "flash_sm90.cuh"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

namespace {

int failures;

#define CK(call)                                                                           \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      printf("FAIL %s: %s (%s:%d)\n", #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
      return false;                                                                        \
    }                                                                                      \
  } while (0)

/* A warpgroup's share of an m64 x N f32 accumulator (rows row0 + 16 w + g (+ 8), C-fragment layout) into C[., ldc]. */
template <int NB>
__device__ void store_acc(float *c, int ldc, int row0, const float (&d)[NB][4]) {
  const int lane = threadIdx.x % 32, w = (threadIdx.x / 32) % 4, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int j = 0; j < NB; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) c[(row0 + 16 * w + g + 8 * (e >> 1)) * ldc + 8 * j + 2 * t + (e & 1)] = d[j][e];
}

__device__ __forceinline__ uint32_t ld_pair(const uint16_t *p) { return *reinterpret_cast<const uint32_t *>(p); }

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SM90_BODY 1
#endif

/* tile: rows r0 .. r0 + R - 1 of x ([len, D]) into the swizzled tile, read back element by element as out[R][D]. */
template <int D, int R>
__global__ void tile_kernel(const uint16_t *x, int64_t len, int64_t r0, uint16_t *out) {
#ifdef SM90_BODY
  extern __shared__ __align__(1024) unsigned char sm[];
  const uint32_t s = (fa90::smem_u32(sm) + 1023u) & ~1023u;
  unsigned char *sp = sm + (s - fa90::smem_u32(sm));
  fa90::load_tile_sw128<D, R, 128>(s, x, D, r0, len, threadIdx.x);
  fa::cp_commit();
  fa::cp_wait<0>();
  __syncthreads();
  for (int i = threadIdx.x; i < R * D; i += blockDim.x)
    out[i] = *reinterpret_cast<const uint16_t *>(sp + fa90::sw128_offset(R, i / D, i % D));
#endif
}

/* ss: C[M][N] = A[M][K] B[N][K]^T, M = 64 WGS, one warpgroup per 64 rows, as the forward's S = Q K^T. */
template <bool BF, int N, int K, int WGS>
__global__ void ss_kernel(const uint16_t *a, const uint16_t *b, float *c) {
#ifdef SM90_BODY
  constexpr int M = 64 * WGS;
  extern __shared__ __align__(1024) unsigned char sm[];
  const uint32_t sA = (fa90::smem_u32(sm) + 1023u) & ~1023u, sB = sA + M * K * 2;
  fa90::load_tile_sw128<K, M, 128 * WGS>(sA, a, K, 0, M, threadIdx.x);
  fa90::load_tile_sw128<K, N, 128 * WGS>(sB, b, K, 0, N, threadIdx.x);
  fa::cp_commit();
  fa::cp_wait<0>();
  fa90::fence_async_smem();
  __syncthreads();
  const int wg = threadIdx.x / 128;
  float d[N / 8][4];
#pragma unroll
  for (int j = 0; j < N / 8; j++) d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.f;
  fa90::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < K / 16; kk++) {
    const uint32_t off = (kk % 4) * 32;
    fa90::wgmma_ss<N, BF>(d, fa90::desc_k(sA + wg * 64 * 128 + (kk / 4) * M * 128 + off),
                          fa90::desc_k(sB + (kk / 4) * N * 128 + off), kk > 0);
  }
  fa90::wgmma_commit();
  fa90::wgmma_wait<0>();
  fa90::fence_regs(d);
  store_acc(c, N, 64 * wg, d);
#endif
}

/* rs: C[64][N] = P[64][KV] V[KV][N], P from registers (each lane's A fragments read from global), V transposed B. */
template <bool BF, int N, int KV>
__global__ void rs_kernel(const uint16_t *pm, const uint16_t *v, float *c) {
#ifdef SM90_BODY
  extern __shared__ __align__(1024) unsigned char sm[];
  const uint32_t sV = (fa90::smem_u32(sm) + 1023u) & ~1023u;
  fa90::load_tile_sw128<N, KV, 128>(sV, v, N, 0, KV, threadIdx.x);
  fa::cp_commit();
  fa::cp_wait<0>();
  fa90::fence_async_smem();
  __syncthreads();
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  uint32_t pa[KV / 16][4];
#pragma unroll
  for (int kk = 0; kk < KV / 16; kk++) {
    const uint16_t *r = pm + (16 * w + g) * KV + 16 * kk + 2 * t;
    pa[kk][0] = ld_pair(r), pa[kk][1] = ld_pair(r + 8 * KV), pa[kk][2] = ld_pair(r + 8), pa[kk][3] = ld_pair(r + 8 * KV + 8);
  }
  float d[N / 8][4];
#pragma unroll
  for (int j = 0; j < N / 8; j++) d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.f;
  fa90::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < KV / 16; kk++) fa90::wgmma_rs<N, BF>(d, pa[kk], fa90::desc_mn(sV + kk * 2048, KV), 1);
  fa90::wgmma_commit();
  fa90::wgmma_wait<0>();
  fa90::fence_regs(d);
  store_acc(c, N, 0, d);
#endif
}

/* chain: O[64][D] = round(Q[64][D] K[KV][D]^T) V[KV][D], P kept in registers as the forward keeps it. */
template <bool BF, int D, int KV>
__global__ void chain_kernel(const uint16_t *q, const uint16_t *k, const uint16_t *v, float *o) {
#ifdef SM90_BODY
  extern __shared__ __align__(1024) unsigned char sm[];
  const uint32_t sQ = (fa90::smem_u32(sm) + 1023u) & ~1023u, sK = sQ + 64 * D * 2, sV = sK + KV * D * 2;
  fa90::load_tile_sw128<D, 64, 128>(sQ, q, D, 0, 64, threadIdx.x);
  fa90::load_tile_sw128<D, KV, 128>(sK, k, D, 0, KV, threadIdx.x);
  fa90::load_tile_sw128<D, KV, 128>(sV, v, D, 0, KV, threadIdx.x);
  fa::cp_commit();
  fa::cp_wait<0>();
  fa90::fence_async_smem();
  __syncthreads();
  float s[KV / 8][4], d[D / 8][4];
#pragma unroll
  for (int j = 0; j < KV / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
  for (int j = 0; j < D / 8; j++) d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.f;
  fa90::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    const uint32_t off = (kk % 4) * 32;
    fa90::wgmma_ss<KV, BF>(s, fa90::desc_k(sQ + (kk / 4) * 64 * 128 + off), fa90::desc_k(sK + (kk / 4) * KV * 128 + off),
                           kk > 0);
  }
  fa90::wgmma_commit();
  fa90::wgmma_wait<0>();
  fa90::fence_regs(s);
  uint32_t pa[KV / 16][4];
#pragma unroll
  for (int kk = 0; kk < KV / 16; kk++) fa::c_to_a<BF>(pa[kk], s[2 * kk], s[2 * kk + 1]);
  fa90::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < KV / 16; kk++) fa90::wgmma_rs<D, BF>(d, pa[kk], fa90::desc_mn(sV + kk * 2048, KV), 1);
  fa90::wgmma_commit();
  fa90::wgmma_wait<0>();
  fa90::fence_regs(d);
  store_acc(o, D, 0, d);
#endif
}

/* ring: the warp-specialised forward's protocol (fa90::ring2, setmaxnreg), alone: warpgroup 2 streams, per round r,
 * A_r (128 x 64, the "Q") and T_r tiles B_{r,j} (128 x 64) through the two-slot ring with cp.async; warpgroups 0
 * and 1 compute C_r = sum_j A_r B_{r,j}^T with wgmma, giving each slot back after its product and Q after the
 * round's last. Rounds of odd lengths make the slots' parities cross over between rounds as the forward's do. */
template <bool BF>
__global__ void __launch_bounds__(384, 1) ring_kernel(const uint16_t *a, const uint16_t *b, float *c, int rounds,
                                                      const int *tiles) {
#ifdef SM90_BODY
  constexpr int K = 64, T = 128 * K * 2;
  extern __shared__ __align__(1024) unsigned char sm[];
  const uint32_t sA = (fa90::smem_u32(sm) + 1023u) & ~1023u, sB0 = sA + T;
  const fa90::ring2 ring{sB0 + 2 * T};
  if (threadIdx.x == 0) ring.init(128, 256);
  __syncthreads();
  uint32_t G = 0;
  const uint16_t *bt = b;
  if (threadIdx.x >= 256) {
    fa90::setmaxnreg_dec<40>();
    const int pt = threadIdx.x - 256;
    for (int r = 0; r < rounds; r++) {
      ring.claim_q(r);
      fa90::load_tile_sw128<K, 128, 128, false>(sA, a + r * 128 * K, K, 0, 128, pt);
      fa::cp_commit();
      uint32_t prev = ring.full_q();
      for (int j = 0; j < tiles[r]; j++, G++, bt += 128 * K) {
        ring.claim(G);
        fa90::load_tile_sw128<K, 128, 128, false>(sB0 + (G & 1u) * T, bt, K, 0, 128, pt);
        fa::cp_commit();
        fa::cp_wait<1>();
        ring.publish(prev);
        prev = ring.full(G);
      }
      fa::cp_wait<0>();
      ring.publish(prev);
    }
  } else {
    fa90::setmaxnreg_inc<232>();
    const int wg = threadIdx.x / 128;
    for (int r = 0; r < rounds; r++) {
      ring.take_q(r);
      float d[16][4];
#pragma unroll
      for (int j = 0; j < 16; j++) d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.f;
      for (int j = 0; j < tiles[r]; j++, G++) {
        ring.take(G);
        const uint32_t sB = sB0 + (G & 1u) * T;
        fa90::wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < K / 16; kk++)
          fa90::wgmma_ss<128, BF>(d, fa90::desc_k(sA + wg * 64 * 128 + kk * 32), fa90::desc_k(sB + kk * 32), 1);
        fa90::wgmma_commit();
        fa90::wgmma_wait<0>();
        fa90::fence_regs(d);
        ring.give(G);
      }
      ring.give_q();
      store_acc(c + r * 128 * 128, 128, 64 * wg, d);
    }
  }
#endif
}

/* ---- host side ---- */

uint32_t rng = 12345u;
float urand() { /* uniform in [-1, 1) */
  rng = rng * 1664525u + 1013904223u;
  return (float)(rng >> 8) / (float)(1u << 23) - 1.f;
}
uint16_t to16(bool bf, float x) { return bf ? fl_bfloat_from_f32(x) : fl_half_from_f32(x); }
float from16(bool bf, uint16_t x) { return bf ? fl_bfloat_to_f32(x) : fl_half_to_f32(x); }

std::vector<uint16_t> random16(bool bf, size_t n) {
  std::vector<uint16_t> v(n);
  for (auto &x : v) x = to16(bf, urand());
  return v;
}

/* The result against the reference: max |got - ref| <= tol max |ref|; prints the case's line. */
void verdict(const char *what, const std::vector<float> &got, const std::vector<double> &ref, double tol) {
  double err = 0, mag = 0;
  bool nan = false;
  for (size_t i = 0; i < ref.size(); i++) {
    if (got[i] != got[i]) nan = true;
    err = fmax(err, fabs(got[i] - ref[i]));
    mag = fmax(mag, fabs(ref[i]));
  }
  const bool ok = !nan && err <= tol * mag;
  if (!ok) failures++;
  printf("%s %s: max error %.3g, max |ref| %.3g (tol %.0e)%s\n", ok ? "PASS" : "FAIL", what, err, mag, tol,
         nan ? ", NaN" : "");
}

/* Device buffers freed on every path. */
struct dbuf {
  void *p = nullptr;
  ~dbuf() {
    if (p) cudaFree(p);
  }
};
template <class T> bool upload(dbuf &d, const std::vector<T> &h) {
  CK(cudaMalloc(&d.p, h.size() * sizeof(T)));
  CK(cudaMemcpy(d.p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return true;
}
template <class K> bool smem_for(K kernel, size_t bytes) {
  CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  return true;
}

void check_desc() {
  struct {
    const char *what;
    uint64_t got, want;
  } c[] = {
      /* start 0x400 >> 4 = 0x40; LBO 16 >> 4 = 1 at bit 16; SBO 1024 >> 4 = 64 at bit 32; swizzle 1 at bit 62 */
      {"K-major at 0x400", fa90::desc_k(0x400), 0x4000004000010040ull},
      /* LBO 128 rows x 128 bytes = 16384 >> 4 = 0x400 at bit 16; start 0x8800 >> 4 = 0x880 */
      {"MN-major 128 rows at 0x8800", fa90::desc_mn(0x8800, 128), 0x4000004004000880ull},
      /* the shared window's offset only (18 bits): a generic-looking high address bit is dropped */
      {"K-major at 0x40000 + 0x20", fa90::desc_k(0x40020), 0x4000004000010002ull},
  };
  for (auto &x : c) {
    const bool ok = x.got == x.want;
    if (!ok) failures++;
    printf("%s desc %s: %#llx (want %#llx)\n", ok ? "PASS" : "FAIL", x.what, (unsigned long long)x.got,
           (unsigned long long)x.want);
  }
  /* the swizzle: row 9's chunk 2 of block 1 in a 64-row tile sits at chunk 2 ^ 1 = 3 of row 9 of the second block */
  const uint32_t off = fa90::sw128_offset(64, 9, 64 + 16 + 5), want = 64 * 128 + 9 * 128 + 3 * 16 + 5 * 2;
  if (off != want) failures++;
  printf("%s sw128_offset(64, 9, 85): %u (want %u)\n", off == want ? "PASS" : "FAIL", off, want);
}

template <int D, int R> bool check_tile() {
  const bool bf = true;
  const int64_t len = 50, r0 = 3; /* rows 3 .. R + 2, of which 3 .. 49 exist */
  std::vector<uint16_t> x = random16(bf, (size_t)len * D), got((size_t)R * D);
  dbuf dx, dout;
  if (!upload(dx, x)) return false;
  CK(cudaMalloc(&dout.p, got.size() * 2));
  const size_t smem = 1024 + (size_t)R * D * 2;
  if (!smem_for(tile_kernel<D, R>, smem)) return false;
  tile_kernel<D, R><<<1, 128, smem>>>((const uint16_t *)dx.p, len, r0, (uint16_t *)dout.p);
  CK(cudaGetLastError());
  CK(cudaMemcpy(got.data(), dout.p, got.size() * 2, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int r = 0; r < R; r++)
    for (int c = 0; c < D; c++) {
      const uint16_t want = r0 + r < len ? x[(r0 + r) * D + c] : 0;
      bad += got[r * D + c] != want;
    }
  if (bad) failures++;
  printf("%s tile D %d rows %d (from row %lld of %lld): %d of %d elements wrong\n", bad ? "FAIL" : "PASS", D, R,
         (long long)r0, (long long)len, bad, R * D);
  return true;
}

template <bool BF, int N, int K, int WGS> bool check_ss() {
  constexpr int M = 64 * WGS;
  std::vector<uint16_t> a = random16(BF, M * K), b = random16(BF, N * K);
  std::vector<double> ref((size_t)M * N);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) s += (double)from16(BF, a[i * K + k]) * from16(BF, b[j * K + k]);
      ref[i * N + j] = s;
    }
  dbuf da, db, dc;
  if (!upload(da, a) || !upload(db, b)) return false;
  CK(cudaMalloc(&dc.p, ref.size() * 4));
  const size_t smem = 1024 + (size_t)(M + N) * K * 2;
  if (!smem_for(ss_kernel<BF, N, K, WGS>, smem)) return false;
  ss_kernel<BF, N, K, WGS><<<1, 128 * WGS, smem>>>((const uint16_t *)da.p, (const uint16_t *)db.p, (float *)dc.p);
  CK(cudaGetLastError());
  std::vector<float> got(ref.size());
  CK(cudaMemcpy(got.data(), dc.p, got.size() * 4, cudaMemcpyDeviceToHost));
  char what[96];
  snprintf(what, sizeof what, "ss %s m%d n%d k%d (A and B from smem, K-major)", BF ? "bf16" : "f16", M, N, K);
  verdict(what, got, ref, 1e-3);
  return true;
}

template <bool BF, int N, int KV> bool check_rs() {
  std::vector<uint16_t> p = random16(BF, 64 * KV), v = random16(BF, KV * N);
  std::vector<double> ref((size_t)64 * N);
  for (int i = 0; i < 64; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < KV; k++) s += (double)from16(BF, p[i * KV + k]) * from16(BF, v[k * N + j]);
      ref[i * N + j] = s;
    }
  dbuf dp, dv, dc;
  if (!upload(dp, p) || !upload(dv, v)) return false;
  CK(cudaMalloc(&dc.p, ref.size() * 4));
  const size_t smem = 1024 + (size_t)KV * N * 2;
  if (!smem_for(rs_kernel<BF, N, KV>, smem)) return false;
  rs_kernel<BF, N, KV><<<1, 128, smem>>>((const uint16_t *)dp.p, (const uint16_t *)dv.p, (float *)dc.p);
  CK(cudaGetLastError());
  std::vector<float> got(ref.size());
  CK(cudaMemcpy(got.data(), dc.p, got.size() * 4, cudaMemcpyDeviceToHost));
  char what[96];
  snprintf(what, sizeof what, "rs %s m64 n%d k%d (A from registers, B from smem, MN-major)", BF ? "bf16" : "f16", N, KV);
  verdict(what, got, ref, 1e-3);
  return true;
}

template <bool BF, int D, int KV> bool check_chain() {
  std::vector<uint16_t> q = random16(BF, 64 * D), k = random16(BF, KV * D), v = random16(BF, KV * D);
  std::vector<double> ref((size_t)64 * D);
  std::vector<float> prow(KV);
  for (int i = 0; i < 64; i++) {
    for (int j = 0; j < KV; j++) {
      double s = 0;
      for (int c = 0; c < D; c++) s += (double)from16(BF, q[i * D + c]) * from16(BF, k[j * D + c]);
      prow[j] = from16(BF, to16(BF, (float)s)); /* P in bf16/f16, as the kernel feeds it */
    }
    for (int c = 0; c < D; c++) {
      double o = 0;
      for (int j = 0; j < KV; j++) o += (double)prow[j] * from16(BF, v[j * D + c]);
      ref[i * D + c] = o;
    }
  }
  dbuf dq, dk, dv, dout;
  if (!upload(dq, q) || !upload(dk, k) || !upload(dv, v)) return false;
  CK(cudaMalloc(&dout.p, ref.size() * 4));
  const size_t smem = 1024 + (size_t)(64 + 2 * KV) * D * 2;
  if (!smem_for(chain_kernel<BF, D, KV>, smem)) return false;
  chain_kernel<BF, D, KV><<<1, 128, smem>>>((const uint16_t *)dq.p, (const uint16_t *)dk.p, (const uint16_t *)dv.p,
                                            (float *)dout.p);
  CK(cudaGetLastError());
  std::vector<float> got(ref.size());
  CK(cudaMemcpy(got.data(), dout.p, got.size() * 4, cudaMemcpyDeviceToHost));
  char what[96];
  snprintf(what, sizeof what, "chain %s d%d keys %d (S = Q K^T, P = c_to_a(S), O = P V)", BF ? "bf16" : "f16", D, KV);
  /* P's rounding may differ by one unit where S's summation order moves it across a rounding boundary */
  verdict(what, got, ref, 1e-2);
  return true;
}

template <bool BF> bool check_ring() {
  const int rounds = 3, tiles[rounds] = {3, 5, 1};
  int total = 0;
  for (int r = 0; r < rounds; r++) total += tiles[r];
  std::vector<uint16_t> a = random16(BF, rounds * 128 * 64), b = random16(BF, (size_t)total * 128 * 64);
  std::vector<double> ref((size_t)rounds * 128 * 128, 0.0);
  for (int r = 0, t0 = 0; r < rounds; t0 += tiles[r], r++)
    for (int j = 0; j < tiles[r]; j++)
      for (int i = 0; i < 128; i++)
        for (int n = 0; n < 128; n++) {
          double s = 0;
          for (int k = 0; k < 64; k++)
            s += (double)from16(BF, a[(r * 128 + i) * 64 + k]) * from16(BF, b[((size_t)(t0 + j) * 128 + n) * 64 + k]);
          ref[(r * 128 + i) * 128 + n] += s;
        }
  dbuf da, db, dc, dt;
  std::vector<int> tv(tiles, tiles + rounds);
  if (!upload(da, a) || !upload(db, b) || !upload(dt, tv)) return false;
  CK(cudaMalloc(&dc.p, ref.size() * 4));
  const size_t smem = 1024 + 3 * 128 * 64 * 2 + fa90::RING2_BYTES;
  if (!smem_for(ring_kernel<BF>, smem)) return false;
  ring_kernel<BF><<<1, 384, smem>>>((const uint16_t *)da.p, (const uint16_t *)db.p, (float *)dc.p, rounds,
                                    (const int *)dt.p);
  CK(cudaGetLastError());
  std::vector<float> got(ref.size());
  CK(cudaMemcpy(got.data(), dc.p, got.size() * 4, cudaMemcpyDeviceToHost)); /* (a hang here: the protocol) */
  char what[120];
  snprintf(what, sizeof what, "ring %s (producer warpgroup, mbarriers, setmaxnreg; rounds of 3, 5, 1 tiles)",
           BF ? "bf16" : "f16");
  verdict(what, got, ref, 1e-3);
  return true;
}

template <bool BF> bool run_dtype() {
  return check_ss<BF, 128, 64, 1>() && check_ss<BF, 128, 128, 2>() && check_ss<BF, 64, 128, 1>() &&
         check_rs<BF, 64, 128>() && check_rs<BF, 128, 128>() && check_chain<BF, 64, 128>() &&
         check_chain<BF, 128, 128>();
}

} // namespace

int main(int argc, char **argv) {
  const bool require = argc > 1 && strcmp(argv[1], "--require") == 0;
  setvbuf(stdout, nullptr, _IOLBF, 0); /* each line out as it is decided, also into a pipe */
  check_desc();
  int n = 0, major = 0, minor = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0 ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0) != cudaSuccess || major != 9 || minor != 0) {
    printf("%s wgmma cases: no sm_90 device (%d devices, compute %d.%d)\n", require ? "FAIL" : "SKIP", n, major, minor);
    return require || failures ? 1 : 0;
  }
  /* the ring cases last: a protocol that hangs (killed by the caller's timeout) leaves every other line printed */
  bool ran = check_tile<64, 64>() && check_tile<128, 64>() && run_dtype<true>() && run_dtype<false>() &&
             check_ring<true>() && check_ring<false>();
  if (!ran) failures++;
  printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
