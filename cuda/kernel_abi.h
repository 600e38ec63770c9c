/* The one place CUDA code sees the core's C headers.
 *
 * internal.h is written as host C. Two things make including it from C++
 * fragile, so this bridge includes it in a way that works whichever state the
 * header is in:
 *  - its extern "C" guards are unbalanced in C++ (an empty extern "C" block at
 *    the top, a stray '}' inside the fl_error attribute and one at the end).
 *    We pre-include everything it includes, then read it with __cplusplus
 *    hidden (so none of its guards are active) inside our own extern "C".
 *  - half.h defines fl_bf16_to_f32, which flame.h also declares as an extern
 *    C function; in C++ the two collide. We include half.h with its bf16
 *    helpers renamed to fl_bfloat_* (the names core/dtype.c already uses), so
 *    the CUDA code always calls fl_bfloat_from_f32 / fl_bfloat_to_f32. */
#ifndef FL_CUDA_KERNEL_ABI_H
#define FL_CUDA_KERNEL_ABI_H

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "flame.h"

#ifdef __cplusplus
#pragma push_macro("__cplusplus")
#undef __cplusplus
extern "C" {
#include "internal.h"
}
#pragma pop_macro("__cplusplus")
#else
#include "internal.h"
#endif

#define fl_bf16_to_f32 fl_bfloat_to_f32
#define fl_bf16_from_f32 fl_bfloat_from_f32
#include "half.h"
#undef fl_bf16_to_f32
#undef fl_bf16_from_f32

#include "philox.h"

#endif
