/* The Hopper (sm_90a) building blocks of the wgmma flash forward (cuda/flash_fwd_sm90.cu), shared with its unit test
 * (tests/test_wgmma_sm90.cu) so that the test exercises exactly the layout, descriptors and instruction forms the
 * kernel uses. Only code compiled for sm_90a may call the device functions (wgmma exists nowhere else).
 *
 * Shared-memory tiles use the 128-byte swizzle (PTX "matrix descriptor", swizzle mode 1; CuTe's Swizzle<3,4,3> on
 * byte addresses): a tile of `rows` rows by D halves (D a multiple of 64) is stored as D / 64 column blocks of rows x
 * 128 bytes; in a block, row r occupies bytes 128 r .. 128 r + 127 and its 16-byte chunk c (columns 8 c .. 8 c + 7 of
 * the block) sits at chunk position c ^ (r % 8). The hardware applies that XOR to address bits 4-6 from bits 7-9, so
 * every block starts 1024-byte aligned. One layout serves both operand kinds:
 *  - K-major (Q as A, K as B of S = Q K^T; rows are M or N, columns are the reduction dim): descriptor SBO = 1024
 *    (the next 8 rows), LBO unused (16); a k16 step inside a block advances the start address by 32 bytes, the
 *    next block by rows x 128.
 *  - MN-major (V as B of O = P V, transposed B: rows are the reduction dim (keys), columns N (head dim)): SBO =
 *    1024 (the next 8 keys), LBO = rows x 128 (the next 64 columns); a k16 step advances by 16 rows = 2048 bytes.
 * Accumulators: wgmma m64nNk16 with f32 D gives warp w of the warpgroup rows 16 w .. 16 w + 15 in mma.sync's C
 * layout (d[j][e]: row 16 w + g + 8 (e / 2), column 8 j + 2 t + e % 2, g = lane / 4, t = lane % 4); the register A
 * operand is mma.sync's A fragment of the same rows, so fa::c_to_a turns two n8 blocks of S into one k16 step of P. */
#ifndef FL_CUDA_FLASH_SM90_CUH
#define FL_CUDA_FLASH_SM90_CUH

#include "flash_common.cuh"

namespace fa90 {

/* Byte offset of element (r, col) in a 128-byte-swizzled tile of `rows` rows (see above). */
__host__ __device__ constexpr uint32_t sw128_offset(int rows, int r, int col) {
  return (uint32_t)((col / 64) * rows * 128 + r * 128 + ((((col % 64) / 8) ^ (r % 8)) * 16) + (col % 8) * 2);
}

/* A wgmma shared-memory matrix descriptor: start address, leading and stride byte offsets (all >> 4, 14 bits),
 * base offset 0 (the blocks are 1024-byte aligned), swizzle mode 1 (128 bytes) in bits 62-63. */
__host__ __device__ constexpr uint64_t desc_sw128(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((addr & 0x3FFFFu) >> 4) | (uint64_t)((lbo >> 4) & 0x3FFFu) << 16 |
         (uint64_t)((sbo >> 4) & 0x3FFFu) << 32 | 1ull << 62;
}
/* K-major operand at addr (a row group's start, plus 32 bytes per k16 step inside a column block). */
__host__ __device__ constexpr uint64_t desc_k(uint32_t addr) { return desc_sw128(addr, 16, 1024); }
/* MN-major operand at addr (plus 2048 bytes per k16 step) of a tile of `rows` rows. */
__host__ __device__ constexpr uint64_t desc_mn(uint32_t addr, int rows) { return desc_sw128(addr, (uint32_t)rows * 128, 1024); }

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* Rows r0 .. r0 + ROWS - 1 of one head (rows of D halves at base + row rs; zeros past len, nothing read there) into
 * the swizzled tile at byte address s, by NTH threads (thread tid) with cp.async; the caller commits and waits.
 * A thread keeps one 16-byte column and steps NTH / CH rows at a time, a multiple of 8, so its swizzled chunk stays
 * put and each step is one add on either side. UNROLL false: a rolled loop (the producer warpgroup's few
 * registers). */
template <int D, int ROWS, int NTH, bool UNROLL = true>
__device__ __forceinline__ void load_tile_sw128(uint32_t s, const uint16_t *base, int64_t rs, int64_t r0, int64_t len,
                                                int tid) {
  constexpr int CH = D / 8, STEP = NTH / CH; /* 16-byte chunks per row; rows per step */
  static_assert(ROWS * CH % NTH == 0 && NTH % CH == 0 && STEP % 8 == 0, "whole steps of 8-row groups");
  const int k = (tid % CH) * 8, rf = tid / CH;
  const uint32_t dst = s + sw128_offset(ROWS, rf, k);
  const int64_t left = len - r0 - rf; /* rows from this thread's first one on */
  const uint16_t *src = base + (r0 + rf) * rs + k;
  if constexpr (UNROLL) {
#pragma unroll
    for (int i = 0; i < ROWS / STEP; i++)
      fa::cp_async16(dst + i * STEP * 128, i * STEP < left ? src + i * STEP * rs : base, i * STEP < left);
  } else {
#pragma unroll 1
    for (int i = 0; i < ROWS / STEP; i++)
      fa::cp_async16(dst + i * STEP * 128, i * STEP < left ? src + i * STEP * rs : base, i * STEP < left);
  }
}

/* The generic-proxy writes (cp.async, st.shared) of this thread become visible to the async proxy (wgmma's reads);
 * each thread fences its own writes before the barrier that publishes them. */
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
/* Orders register writes (accumulators, register A) before the wgmma that follows. */
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/* Waits until at most N committed wgmma groups are pending. */
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Pins an accumulator array in place across the asynchronous wgmma: the compiler must assume it changes here, so it
 * neither reads it between the issue and the wait nor moves its registers. */
template <int NB> __device__ __forceinline__ void fence_regs(float (&d)[NB][4]) {
#pragma unroll
  for (int j = 0; j < NB; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) asm volatile("" : "+f"(d[j][e])::"memory");
}

/* mbarriers (64-bit, in shared memory at byte address bar) for the producer/consumer ring of the warp-specialised
 * forward. A phase completes when `count` arrivals have come; waiting on parity P returns once the phase of that
 * parity has completed (a fresh barrier is in phase 0, so waiting on parity 1 returns at once: a producer starts
 * with its empty slots). arrive releases and the wait acquires (CTA scope, PTX's defaults), so shared-memory writes
 * before an arrive are visible after the matching wait. */
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
  } while (!done);
}

/* The two-slot ring of the warp-specialised forward (and of its unit test): a producer fills group g (g counts the
 * CTA's groups over all its tiles) into slot g % 2 and a Q buffer once per query tile (n counts them); consumers
 * read them. Six mbarriers at byte address bars: full and empty of the two slots, full and empty of Q. A full
 * barrier completes when every producer thread has published (its copies landed, fenced for the async proxy, then
 * arrived: so no consumer thread needs a fence of its own); an empty one when every consumer thread has given the
 * slot back (its wgmma reads of it complete). The n-th use of a barrier (n = g / 2 for a slot, from 0) waits on
 * parity n & 1 for the consumers and on the opposite parity for the producer, whose first claim of each slot then
 * passes at once. */
struct ring2 {
  uint32_t bars;
  __device__ uint32_t full(uint32_t g) const { return bars + 8u * (g & 1u); }
  __device__ uint32_t empty(uint32_t g) const { return bars + 16u + 8u * (g & 1u); }
  __device__ uint32_t full_q() const { return bars + 32u; }
  __device__ uint32_t empty_q() const { return bars + 40u; }
  /* one thread, before a CTA barrier */
  __device__ void init(uint32_t producers, uint32_t consumers) const {
    for (uint32_t g = 0; g < 2; g++) mbar_init(full(g), producers), mbar_init(empty(g), consumers);
    mbar_init(full_q(), producers), mbar_init(empty_q(), consumers);
  }
  /* the producer: wait until slot g (Q tile n) is free; publish a landed copy group to its full barrier */
  __device__ void claim(uint32_t g) const { mbar_wait(empty(g), ((g >> 1) & 1u) ^ 1u); }
  __device__ void claim_q(uint32_t n) const { mbar_wait(empty_q(), (n & 1u) ^ 1u); }
  __device__ void publish(uint32_t full_bar) const {
    fence_async_smem();
    mbar_arrive(full_bar);
  }
  /* a consumer: wait until group g (Q tile n) has landed; give it back */
  __device__ void take(uint32_t g) const { mbar_wait(full(g), (g >> 1) & 1u); }
  __device__ void take_q(uint32_t n) const { mbar_wait(full_q(), n & 1u); }
  __device__ void give(uint32_t g) const { mbar_arrive(empty(g)); }
  __device__ void give_q() const { mbar_arrive(empty_q()); }
};
constexpr int RING2_BYTES = 48;

/* A warpgroup gives registers back to the CTA's pool (dec) or takes them (inc): N per thread from here on. */
template <int N> __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* d (m64 x N, f32) = A B + (acc ? d : 0), bf16 or f16 inputs: _ss with A and B from descriptors (both K-major), _rs
 * with A from registers (the A fragment above) and B MN-major (transposed). Operands %0.. are d's registers. */
__device__ __forceinline__ void wgmma_ss_n64_bf16(float (&d)[8][4], uint64_t da, uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
               "%32, %33, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                 "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                 "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                 "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
               : "l"(da), "l"(db), "r"(acc)
               : "memory");
}

__device__ __forceinline__ void wgmma_rs_n64_bf16(float (&d)[8][4], const uint32_t (&a)[4], uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
               "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                 "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                 "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                 "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc)
               : "memory");
}

__device__ __forceinline__ void wgmma_ss_n64_f16(float (&d)[8][4], uint64_t da, uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
               "%32, %33, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                 "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                 "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                 "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
               : "l"(da), "l"(db), "r"(acc)
               : "memory");
}

__device__ __forceinline__ void wgmma_rs_n64_f16(float (&d)[8][4], const uint32_t (&a)[4], uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
               "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                 "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                 "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                 "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc)
               : "memory");
}

__device__ __forceinline__ void wgmma_ss_n128_bf16(float (&d)[16][4], uint64_t da, uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
               "%64, %65, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                 "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                 "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                 "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
                 "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
                 "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
                 "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
                 "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
               : "l"(da), "l"(db), "r"(acc)
               : "memory");
}

__device__ __forceinline__ void wgmma_rs_n128_bf16(float (&d)[16][4], const uint32_t (&a)[4], uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
               "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                 "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                 "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                 "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
                 "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
                 "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
                 "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
                 "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc)
               : "memory");
}

__device__ __forceinline__ void wgmma_ss_n128_f16(float (&d)[16][4], uint64_t da, uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
               "%64, %65, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                 "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                 "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                 "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
                 "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
                 "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
                 "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
                 "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
               : "l"(da), "l"(db), "r"(acc)
               : "memory");
}

__device__ __forceinline__ void wgmma_rs_n128_f16(float (&d)[16][4], const uint32_t (&a)[4], uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
               "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                 "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                 "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                 "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
                 "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
                 "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
                 "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
                 "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc)
               : "memory");
}

template <int N, bool BF> __device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], uint64_t da, uint64_t db, int acc) {
  static_assert(N == 64 || N == 128, "n64 and n128 only");
  if constexpr (N == 64) BF ? wgmma_ss_n64_bf16(d, da, db, acc) : wgmma_ss_n64_f16(d, da, db, acc);
  else BF ? wgmma_ss_n128_bf16(d, da, db, acc) : wgmma_ss_n128_f16(d, da, db, acc);
}
template <int N, bool BF>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t db, int acc) {
  static_assert(N == 64 || N == 128, "n64 and n128 only");
  if constexpr (N == 64) BF ? wgmma_rs_n64_bf16(d, a, db, acc) : wgmma_rs_n64_f16(d, a, db, acc);
  else BF ? wgmma_rs_n128_bf16(d, a, db, acc) : wgmma_rs_n128_f16(d, a, db, acc);
}

} // namespace fa90

#endif
