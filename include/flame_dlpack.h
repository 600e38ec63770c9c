/* DLPack import and export (src/core/dlpack.c): tensors move to and from PyTorch, CuPy, JAX or NumPy without
 * copies. Needs <dlpack/dlpack.h> (Debian: libdlpack-dev); present when FLAME_HAVE_DLPACK is 1 in the build
 * (flame::flame / pkg-config flame then compile against the same header). docs/embedding.md has the rules.
 *
 * dtypes: f32 f64 f16 (kDLFloat), bf16 (kDLBfloat), i32 i64 (kDLInt), bool (kDLBool, code 6, 8 bits; kDLUInt 8
 * is refused, it is not a bool). Devices: kDLCPU and kDLCUDAHost as the CPU, kDLCUDA as cuda:N. */
#ifndef FLAME_DLPACK_H
#define FLAME_DLPACK_H

#include "flame.h"
#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Export: a DLManagedTensor over t's memory (no copy; its data is fl_tensor_data(t), byte_offset 0, strides
 * always given). It holds t's storage alive (not t's autograd graph) until the consumer calls
 * (*out)->deleter(*out), exactly once. Writes on either side show on the other. */
fl_status fl_to_dlpack(const fl_tensor *t, DLManagedTensor **out);
/* Import: a tensor over m's memory (no copy). On success flame owns m and calls m->deleter(m) (when not NULL)
 * once, when the last reference to that memory goes; the caller must not call it. On failure m is untouched
 * and still the caller's. */
fl_status fl_from_dlpack(DLManagedTensor *m, fl_tensor **out);

#ifdef __cplusplus
}
#endif
#endif
