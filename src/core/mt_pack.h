/* The packing of a multi-tensor launch (cuda/optim.cu), in plain C so that tests/test_optim.c checks it on the
 * host: tensors are cut into chunks of `chunk` elements; a table holds up to max_tensors tensors (slots) and up to
 * max_blocks (slot, chunk) pairs, one per block. When either fills, the table launches and packing goes on in a
 * fresh one; a tensor cut between two tables is put again into slot 0 of the next. Empty tensors are skipped. */
#ifndef FL_MT_PACK_H
#define FL_MT_PACK_H
#include <stdint.h>

typedef struct fl_mt_sink {
  void *ctx;
  void (*put)(void *ctx, int slot, int tensor);             /* tensor goes into slot of the current table */
  void (*block)(void *ctx, int b, int slot, int64_t chunk); /* block b of the current table runs this chunk */
  int (*launch)(void *ctx, int nblocks);                    /* the table is full or done; nonzero stops */
} fl_mt_sink;

/* Returns the first nonzero launch result, else 0. */
static inline int fl_mt_pack(int n, const int64_t *numel, int max_tensors, int max_blocks, int64_t chunk,
                             const fl_mt_sink *s) {
  int nt = 0, nb = 0, r;
  for (int i = 0; i < n; i++) {
    if (numel[i] <= 0) continue;
    s->put(s->ctx, nt++, i);
    int64_t chunks = (numel[i] + chunk - 1) / chunk;
    for (int64_t c = 0; c < chunks; c++) {
      s->block(s->ctx, nb++, nt - 1, c);
      int last = c == chunks - 1;
      if (nb == max_blocks || (nt == max_tensors && last)) {
        if ((r = s->launch(s->ctx, nb)) != 0) return r;
        nb = 0;
        nt = 0;
        if (!last) s->put(s->ctx, nt++, i); /* the tensor goes on in the next table, from slot 0 */
      }
    }
  }
  if (nb > 0) return s->launch(s->ctx, nb);
  return 0;
}

#endif
