/* Host-to-device copies from pageable memory through a ring of pinned buffers, one ring per device context.
 *
 * A pageable source cannot be read by the DMA engine, so its bytes must pass through pinned memory. The
 * ring makes that pass asynchronous: each piece is copied (on several CPU threads) into a free slot, the
 * slot's cudaMemcpyAsync is queued on the context's stream and an event recorded after it; the host waits
 * only when it comes back to a slot whose copy has not finished. So filling slot k+1 overlaps the DMA of slot
 * k, and the call returns while the last pieces are still in flight: batches of a DataLoader and tensors of
 * flame.load reach the GPU without the host waiting for the queued compute. The caller may reuse its source
 * at once, as with the driver's own pageable path. FLAME_CUDA_STAGING=0 turns the ring off (the driver then
 * stages), for comparison in bench/io.lua. */
#include "context.cuh"
#include "staging.cuh"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { SLOTS = 4 };
static const size_t SLOT_BYTES = (size_t)16 << 20;

struct fc_staging {
  pthread_mutex_t mu; /* threads sharing a device share its ring */
  char *buf[SLOTS];
  cudaEvent_t done[SLOTS];
  bool queued[SLOTS];
  int next;
};

static bool staging_enabled(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("FLAME_CUDA_STAGING");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on;
}

void fc_staging_release(fc_staging *s) {
  if (!s) return;
  for (int i = 0; i < SLOTS; i++) {
    if (s->done[i]) cudaEventDestroy(s->done[i]);
    if (s->buf[i]) cudaFreeHost(s->buf[i]);
  }
  pthread_mutex_destroy(&s->mu);
  free(s);
  (void)cudaGetLastError();
}

static fl_status staging_create(fc_staging **out) {
  fc_staging *s = (fc_staging *)calloc(1, sizeof *s);
  if (!s) return fl_error(FL_ENOMEM, "copy to cuda: out of host memory for the staging ring");
  pthread_mutex_init(&s->mu, NULL);
  fl_status st = FL_OK;
  for (int i = 0; i < SLOTS && st == FL_OK; i++) {
    cudaError_t e = cudaMallocHost((void **)&s->buf[i], SLOT_BYTES);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->done[i], cudaEventDisableTiming);
    if (e != cudaSuccess) st = fc_cuda_error(e, "copy to cuda: creating the pinned staging ring");
  }
  if (st != FL_OK) {
    fc_staging_release(s);
    return st;
  }
  *out = s;
  return FL_OK;
}

/* One piece into the next slot: wait for the slot's previous copy, fill it, queue the copy, mark it. */
static fl_status stage_piece(fc_context *ctx, fc_staging *s, char *dst, const char *src, size_t k) {
  int i = s->next;
  s->next = (i + 1) % SLOTS;
  if (s->queued[i]) FC_CUDA(cudaEventSynchronize(s->done[i]));
  s->queued[i] = false;
  fl_host_memcpy(s->buf[i], src, k);
  FC_CUDA(cudaMemcpyAsync(dst, s->buf[i], k, cudaMemcpyHostToDevice, fc_stream(ctx)));
  FC_CUDA(cudaEventRecord(s->done[i], fc_stream(ctx)));
  s->queued[i] = true;
  return FL_OK;
}

bool fc_staging_wanted(size_t n) { return n >= ((size_t)1 << 20) && staging_enabled(); }

fl_status fc_h2d_staged(fc_context *ctx, void *dst, const void *src, size_t n) {
  if (!ctx->staging) FL_TRY(staging_create(&ctx->staging));
  fc_staging *s = ctx->staging;
  pthread_mutex_lock(&s->mu);
  fl_status st = FL_OK;
  for (size_t at = 0; at < n && st == FL_OK; at += SLOT_BYTES) {
    size_t k = n - at < SLOT_BYTES ? n - at : SLOT_BYTES;
    st = stage_piece(ctx, s, (char *)dst + at, (const char *)src + at, k);
  }
  pthread_mutex_unlock(&s->mu);
  return st;
}
