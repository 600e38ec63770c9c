/* The dropout keep rules of core/dropout_keep.h on the host, and core/philox.h's two forms of Philox: the byte
 * rule's four-bytes-at-a-time test (fl_dropout_keep16, the fused attention's fl_dropout_keep16_with) against the rule
 * written byte by byte, for every threshold t in [0, 256] and every byte value
 * in every position of a block; the byte rule's threshold round((1 - p) 256) at its edges; the word rule's block
 * mask; the blocks a reservation takes; Philox against Random123's known answer, and under precomputed round keys
 * (fl_philox_keyed, the fused attention's forward) against the seed's (fl_philox). Prints failures only. */
#include "dropout_keep.h"
#include <stdio.h>
static long fails = 0, checked = 0;
#define CK(c, ...) do { checked++; if (!(c)) { if (fails++ < 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

/* The byte rule as specified: bit j = byte j (word j / 4, byte j % 4, little-endian) < t. */
static uint32_t keep16_plain(fl_philox_out o, uint32_t t) {
  uint32_t m = 0;
  for (int j = 0; j < 16; j++) m |= (uint32_t)(((o.w[j / 4] >> (8 * (j % 4))) & 0xffu) < t) << j;
  return m;
}

static void check_keep16(void) {
  for (uint32_t t = 0; t <= 256; t++) {
    /* every byte value at every position, the other bytes set to neighbours of t (where a carry could leak) */
    for (uint32_t v = 0; v < 256; v++)
      for (int j = 0; j < 16; j++) {
        fl_philox_out o;
        for (int q = 0; q < 4; q++) {
          uint32_t w = 0;
          for (int b = 0; b < 4; b++) {
            uint32_t byte = 4 * q + b == j ? v : (t + (uint32_t)(q * 4 + b) - 8) & 0xffu;
            w |= byte << (8 * b);
          }
          o.w[q] = w;
        }
        uint32_t got = fl_dropout_keep16(o, t), want = keep16_plain(o, t);
        CK(got == want, "keep16 t %u byte %u at %d: %04x vs %04x", t, v, j, got, want);
      }
    /* and Philox's own blocks */
    for (uint64_t c = 0; c < 64; c++) {
      fl_philox_out o = fl_philox(0x1234567890abcdefull, c * 977);
      CK(fl_dropout_keep16(o, t) == keep16_plain(o, t), "keep16 t %u philox block %llu", t, (unsigned long long)c);
      CK(fl_dropout_block_mask(FL_DROPOUT_BYTE, o, t) == keep16_plain(o, t), "block mask byte rule t %u", t);
    }
  }
}

static void check_thresholds(void) {
  CK(fl_dropout_byte_threshold(0.0) == 256, "p 0 keeps all");
  CK(fl_dropout_byte_threshold(1.0) == 0, "p 1 drops all");
  CK(fl_dropout_byte_threshold(0.5) == 128, "p 0.5");
  CK(fl_dropout_byte_threshold(0.1) == 230, "p 0.1: 230.4 rounds down");
  CK(fl_dropout_byte_threshold(0.77) == 59, "p 0.77: 58.88 rounds up");
  CK(fl_dropout_byte_threshold(1.0 / 512) == 256, "p 1/512: 255.5 rounds up to 256");
  CK(fl_dropout_byte_threshold(5.0 / 512) == 254, "p 5/512: 253.5 rounds up to 254");
  CK(fl_dropout_byte_threshold(0.999) == 0, "p 0.999: 0.256 rounds to 0");
  for (int k = 0; k <= 1000; k++) {
    double p = k / 1000.0, x = (1.0 - p) * 256.0;
    uint32_t t = fl_dropout_byte_threshold(p);
    CK(t <= 256 && (double)t - x <= 0.5 && x - (double)t < 0.5, "p %g: t %u for %g", p, t, x);
    CK(fl_dropout_rule_threshold(FL_DROPOUT_BYTE, p) == t, "rule threshold, byte rule, p %g", p);
    CK(fl_dropout_rule_threshold(FL_DROPOUT_WORD, p) == fl_dropout_threshold(p), "rule threshold, word rule, p %g", p);
  }
}

static void check_word_rule_and_blocks(void) {
  for (uint64_t c = 0; c < 256; c++) {
    fl_philox_out o = fl_philox(99, c);
    uint32_t thr = fl_dropout_threshold((double)c / 255.0), want = 0;
    for (int j = 0; j < 4; j++) want |= (uint32_t)fl_dropout_keep_word(o.w[j], thr) << j;
    CK(fl_dropout_block_mask(FL_DROPOUT_WORD, o, thr) == want, "word rule block %llu", (unsigned long long)c);
  }
  CK(fl_dropout_per_block(FL_DROPOUT_WORD) == 4 && fl_dropout_per_block(FL_DROPOUT_BYTE) == 16, "elements per block");
  CK(fl_dropout_blocks(FL_DROPOUT_BYTE, 0) == 0 && fl_dropout_blocks(FL_DROPOUT_BYTE, 1) == 1 &&
         fl_dropout_blocks(FL_DROPOUT_BYTE, 16) == 1 && fl_dropout_blocks(FL_DROPOUT_BYTE, 17) == 2,
     "byte rule: ceil(n / 16) blocks");
  CK(fl_dropout_blocks(FL_DROPOUT_WORD, 5) == 2 && fl_dropout_blocks(FL_DROPOUT_WORD, 8) == 2, "word rule: ceil(n / 4)");
  CK(fl_dropout_blocks(FL_DROPOUT_BYTE, 8ull * 16 * 2048 * 2048) == 8ull * 2048 * 2048 * 16 / 16,
     "a [8, 16, 2048, 2048] mask: 2^25 blocks");
}

static void check_philox(void) {
  const fl_philox_out z = fl_philox(0, 0); /* Random123's kat_vectors: philox4x32_10, counter and key all zero */
  CK(z.w[0] == 0x6627e8d5u && z.w[1] == 0xe169c58du && z.w[2] == 0xbc57ac4cu && z.w[3] == 0x9b00dbd8u,
     "philox(0, 0): %08x %08x %08x %08x", z.w[0], z.w[1], z.w[2], z.w[3]);
  const uint64_t seeds[] = {0, 1, 0x1234567890abcdefull, 0xffffffffffffffffull, 0x9e3779b97f4a7c15ull};
  for (int i = 0; i < 5; i++) {
    const fl_philox_keys k = fl_philox_schedule(seeds[i]);
    for (uint64_t c = 0; c < 1000; c++) {
      const uint64_t ctr = c * 0x9e3779b97f4a7c15ull; /* both counter words busy */
      const fl_philox_out a = fl_philox(seeds[i], ctr), b = fl_philox_keyed(&k, (uint32_t)ctr, (uint32_t)(ctr >> 32));
      CK(a.w[0] == b.w[0] && a.w[1] == b.w[1] && a.w[2] == b.w[2] && a.w[3] == b.w[3], "keyed philox seed %d ctr %llu",
         i, (unsigned long long)ctr);
    }
  }
}

int main(void) {
  check_philox();
  check_keep16();
  check_thresholds();
  check_word_rule_and_blocks();
  printf("%ld checks, %ld failures\n", checked, fails);
  return fails ? 1 : 0;
}
