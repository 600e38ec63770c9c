/* Dtype names, sizes, promotion and the f16/bf16 conversions. */
#include "internal.h"
#include "half.h"
#include <string.h>

static const struct { const char *name, *alias1, *alias2; size_t size; } info[FL_NDTYPES] = {
    [FL_F32] = {"f32", "float32", "float", 4},     [FL_F64] = {"f64", "float64", "double", 8},
    [FL_F16] = {"f16", "float16", "half", 2},      [FL_BF16] = {"bf16", "bfloat16", NULL, 2},
    [FL_I32] = {"i32", "int32", "int", 4},         [FL_I64] = {"i64", "int64", "long", 8},
    [FL_BOOL] = {"bool", "boolean", NULL, 1},
};

const char *fl_dtype_name(fl_dtype dt) { return (unsigned)dt < FL_NDTYPES ? info[dt].name : "?"; }
size_t fl_dtype_size(fl_dtype dt) { return (unsigned)dt < FL_NDTYPES ? info[dt].size : 0; }
bool fl_dtype_is_float(fl_dtype dt) { return dt == FL_F32 || dt == FL_F64 || dt == FL_F16 || dt == FL_BF16; }

fl_status fl_dtype_parse(const char *name, fl_dtype *out) {
  for (int i = 0; i < FL_NDTYPES; i++) {
    if (!strcmp(name, info[i].name) || !strcmp(name, info[i].alias1) ||
        (info[i].alias2 && !strcmp(name, info[i].alias2))) {
      *out = (fl_dtype)i;
      return FL_OK;
    }
  }
  return fl_error(FL_EDTYPE, "unknown dtype '%s' (expected f32, f64, f16, bf16, i32, i64 or bool)", name);
}

/* Category first (bool < integer < float), then width; f16 with bf16 gives f32. */
static int category(fl_dtype d) { return d == FL_BOOL ? 0 : fl_dtype_is_float(d) ? 2 : 1; }
fl_dtype fl_promote(fl_dtype a, fl_dtype b) {
  if (a == b) return a;
  int ca = category(a), cb = category(b);
  if (ca != cb) return ca > cb ? a : b;
  if (ca == 1) return FL_I64;
  if (a == FL_F64 || b == FL_F64) return FL_F64;
  if (a == FL_F32 || b == FL_F32) return FL_F32;
  return FL_F32; /* f16 with bf16 */
}

uint16_t fl_f32_to_f16(float f) { return fl_half_from_f32(f); }
float fl_f16_to_f32(uint16_t h) { return fl_half_to_f32(h); }
uint16_t fl_f32_to_bf16(float f) { return fl_bfloat_from_f32(f); }
float fl_bf16_to_f32(uint16_t h) { return fl_bfloat_to_f32(h); }
