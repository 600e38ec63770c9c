/* The global counter-based generator: a seed and a counter offset. Every random
 * op reserves the counters it uses, so results depend only on the seed and the
 * order of calls, never on the device. */
#include "internal.h"

static uint64_t rng_seed = 0x853c49e6748fea9bULL;
static uint64_t rng_offset;

void fl_manual_seed(uint64_t seed) {
  rng_seed = seed;
  rng_offset = 0;
}

/* The generator's whole state: what a recomputation (flame.utils.checkpoint) sets to draw the same
 * numbers again, and restores after. */
void fl_rng_set_state(uint64_t seed, uint64_t offset) {
  rng_seed = seed;
  rng_offset = offset;
}

void fl_philox_reserve(uint64_t n, uint64_t *seed, uint64_t *offset) {
  *seed = rng_seed;
  *offset = rng_offset;
  rng_offset += n;
}

void fl_rng_next(uint64_t counters, uint64_t *seed, uint64_t *offset) { fl_philox_reserve(counters, seed, offset); }
