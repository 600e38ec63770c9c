/* The counter-based generator: a seed and a counter offset, one per context (src/core/context.c), so that
 * states do not draw from each other's stream. Every random op reserves the counters it uses, so results depend
 * only on the seed and the order of calls, never on the device. */
#include "context.h"

void fl_manual_seed(uint64_t seed) {
  fl_context *c = fl_ctx();
  c->rng_seed = seed;
  c->rng_offset = 0;
}

/* The generator's whole state: what a recomputation (flame.utils.checkpoint) sets to draw the same
 * numbers again, and restores after. */
void fl_rng_set_state(uint64_t seed, uint64_t offset) {
  fl_context *c = fl_ctx();
  c->rng_seed = seed;
  c->rng_offset = offset;
}

void fl_philox_reserve(uint64_t n, uint64_t *seed, uint64_t *offset) {
  fl_context *c = fl_ctx();
  *seed = c->rng_seed;
  *offset = c->rng_offset;
  c->rng_offset += n;
}

void fl_rng_next(uint64_t counters, uint64_t *seed, uint64_t *offset) { fl_philox_reserve(counters, seed, offset); }
