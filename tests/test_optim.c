/* The multi-tensor packing of cuda/optim.cu (core/mt_pack.h), simulated on the host: every chunk of every
 * non-empty tensor runs in exactly one block, each block's slot holds its tensor, the table limits hold, a tensor
 * cut between launches continues from slot 0, and the launch counts are the expected ones. */
#include "check.h"
#include "mt_pack.h"
#include <stdlib.h>

#define MAXT 4096
typedef struct {
  int max_tensors, max_blocks;
  int slot_tensor[64];   /* the current table's slots */
  int nslots_used;       /* highest slot + 1 put since the last launch */
  int pending_t[512];    /* the current table's blocks: tensor and chunk */
  int64_t pending_c[512];
  int launches, bad, fail_at;
  int64_t *seen[MAXT];   /* per tensor: how often each chunk ran */
} sim;

static void put(void *c, int slot, int tensor) {
  sim *s = c;
  if (slot < 0 || slot >= s->max_tensors) s->bad++;
  else s->slot_tensor[slot] = tensor;
  if (slot + 1 > s->nslots_used) s->nslots_used = slot + 1;
}
static void block(void *c, int b, int slot, int64_t chunk) {
  sim *s = c;
  if (b < 0 || b >= s->max_blocks || slot < 0 || slot >= s->nslots_used) {
    s->bad++;
    return;
  }
  s->pending_t[b] = s->slot_tensor[slot], s->pending_c[b] = chunk;
}
static int launch(void *c, int nb) {
  sim *s = c;
  if (nb < 1 || nb > s->max_blocks) s->bad++;
  for (int b = 0; b < nb; b++) s->seen[s->pending_t[b]][s->pending_c[b]]++;
  s->launches++;
  s->nslots_used = 0;
  return s->launches == s->fail_at ? 7 : 0;
}

/* Runs the packing over sizes; returns the launch count, or -1 on any violation. */
static int run(int n, const int64_t *numel, int max_tensors, int max_blocks, int64_t chunk, int fail_at, int *ret) {
  sim s;
  memset(&s, 0, sizeof s);
  s.max_tensors = max_tensors, s.max_blocks = max_blocks, s.fail_at = fail_at;
  for (int i = 0; i < n; i++) s.seen[i] = calloc((size_t)((numel[i] + chunk - 1) / chunk + 1), sizeof(int64_t));
  fl_mt_sink sink = {&s, put, block, launch};
  *ret = fl_mt_pack(n, numel, max_tensors, max_blocks, chunk, &sink);
  int ok = s.bad == 0;
  for (int i = 0; i < n; i++) {
    int64_t chunks = numel[i] > 0 ? (numel[i] + chunk - 1) / chunk : 0;
    for (int64_t c = 0; c < chunks && !fail_at; c++) ok = ok && s.seen[i][c] == 1;
    free(s.seen[i]);
  }
  return ok ? s.launches : -1;
}

int main(void) {
  int64_t sizes[MAXT];
  int r;
  /* the bench's shape: 100 tensors of 1M elements, chunks of 64Ki: 16 chunks each, 320 blocks a launch */
  for (int i = 0; i < 100; i++) sizes[i] = 1000000;
  CHECK(run(100, sizes, 32, 320, 65536, 0, &r) == 5 && r == 0, "100 x 1M: 5 launches, every chunk once");
  /* many small tensors: the tensor table fills first (32 per launch) */
  for (int i = 0; i < 100; i++) sizes[i] = 1 + i % 7;
  CHECK(run(100, sizes, 32, 320, 65536, 0, &r) == 4, "100 small tensors: 4 launches of <= 32 tensors");
  /* empty tensors skipped, one giant tensor spanning several tables */
  int64_t mix[] = {0, 5, 0, 320 * 4 + 3, 0, 1};
  CHECK(run(6, mix, 32, 320, 4, 0, &r) == 2, "empties skipped, a tensor cut over tables continues from slot 0");
  /* odd sizes against tiny limits: every combination covers every chunk exactly once */
  int bad = 0;
  for (int mt = 1; mt <= 5; mt++)
    for (int mb = 1; mb <= 9; mb++) {
      for (int i = 0; i < 37; i++) sizes[i] = (i * 7919) % 23;
      if (run(37, sizes, mt, mb, 3, 0, &r) < 0) bad++;
    }
  CHECK(bad == 0, "37 odd sizes, tables of 1-5 tensors and 1-9 blocks: every chunk exactly once (%d bad)", bad);
  int none = run(3, (int64_t[]){0, 0, 0}, 32, 320, 65536, 0, &r);
  CHECK(none == 0 && r == 0, "only empty tensors: no launch");
  for (int i = 0; i < 100; i++) sizes[i] = 1000000;
  run(100, sizes, 32, 320, 65536, 2, &r);
  CHECK(r == 7, "a failed launch stops the packing with its result");
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
