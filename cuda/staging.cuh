/* The pinned staging ring for host-to-device copies from pageable memory (staging.cu). */
#ifndef FL_CUDA_STAGING_CUH
#define FL_CUDA_STAGING_CUH

#include "context.cuh"

/* True when a pageable copy of n bytes should go through the ring (large enough, and not turned off). */
bool fc_staging_wanted(size_t n);
/* dst (device) <- src (pageable host), queued on ctx's stream; src may be reused when this returns. */
fl_status fc_h2d_staged(fc_context *ctx, void *dst, const void *src, size_t n);
/* Frees a context's ring (its copies must be finished: the context synchronised first). */
void fc_staging_release(fc_staging *s);

#endif
