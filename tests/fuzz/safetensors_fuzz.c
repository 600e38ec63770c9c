/* libFuzzer target for the safetensors reader (src/io/safetensors.c): parses each input from memory as
 * fl_safetensors_parse does for a mapped file, and on success checks what acceptance promises, reading
 * every byte a tensor claims (ASan flags a read outside the input, which libFuzzer sizes exactly) and
 * loading every tensor onto the CPU. Built and run by scripts/fuzz-safetensors; seeds in
 * tests/fuzz/corpus/safetensors/. */
#include "flame.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT(c) \
  do {            \
    if (!(c)) __builtin_trap(); \
  } while (0)

static volatile unsigned sink; /* keeps the reads of the claimed bytes from being optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fl_safetensors *f = NULL;
  if (fl_safetensors_parse(data, size, "fuzz", &f) != FL_OK) {
    EXPECT(f == NULL && fl_last_error()[0] != 0);
    return 0;
  }
  uint64_t n;
  memcpy(&n, data, 8);
  EXPECT(n <= 100000000 && n <= size - 8);
  const uint8_t *buf = data + 8 + n;
  int64_t at = 0;
  unsigned sum = 0;
  for (size_t i = 0; i < fl_safetensors_count(f); i++) {
    fl_st_info info;
    fl_safetensors_info(f, i, &info);
    EXPECT(info.offset == at && info.nbytes >= 0); /* data order, contiguous */
    int64_t numel = 1;
    for (int d = 0; d < info.ndim; d++) numel *= info.shape[d];
    EXPECT(numel * (int64_t)fl_dtype_size(info.dtype) == info.nbytes);
    for (int64_t k = 0; k < info.nbytes; k++) sum += buf[info.offset + k];
    for (size_t k = 0; k < info.name.len; k++) sum += (unsigned char)info.name.s[k];
    at += info.nbytes;
    fl_tensor *t = NULL;
    if (fl_safetensors_load(f, i, FL_CPU_DEVICE, &t) == FL_OK) {
      EXPECT(fl_numel(t) == numel && fl_dtype_of(t) == info.dtype);
      fl_release(t);
    }
  }
  EXPECT((uint64_t)at == size - 8 - n); /* no trailing bytes */
  for (size_t i = 0; i < fl_safetensors_metadata_count(f); i++) {
    fl_st_str k, v;
    fl_safetensors_metadata(f, i, &k, &v);
    for (size_t j = 0; j < k.len; j++) sum += (unsigned char)k.s[j];
    for (size_t j = 0; j < v.len; j++) sum += (unsigned char)v.s[j];
  }
  fl_safetensors_close(f);
  sink = sum;
  return 0;
}
