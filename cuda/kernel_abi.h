/* The one place CUDA code sees the core's C headers: the tensor structs and
 * the backend table (internal.h, extern "C"), and the conversions and the
 * random generator shared with the CPU backend (half.h, philox.h), so both
 * devices round and draw identically. */
#ifndef FL_CUDA_KERNEL_ABI_H
#define FL_CUDA_KERNEL_ABI_H

#include "flame.h"
#include "internal.h"
#include "half.h"
#include "philox.h"

#endif
