/* Element types and the one dtype -> template dispatch used by every op.
 *
 * Storage types are what sits in memory (f16/bf16/bool are 1-2 byte structs so
 * overloads cannot confuse them with integers). Each has a compute type
 * ("acc"): float for f16/bf16/f32, double for f64, int64 for the integers and
 * bool; conversions go through core/half.h so CPU and CUDA round alike. */
#ifndef FL_CUDA_DISPATCH_CUH
#define FL_CUDA_DISPATCH_CUH

#include "common.cuh"
#include <type_traits>

struct fc_half { uint16_t x; };
struct fc_bf16 { uint16_t x; };
struct fc_bool { uint8_t x; };

#define FC_HD __host__ __device__ __forceinline__

template <class T> struct fc_num;
template <> struct fc_num<float> {
  using acc = float;
  static FC_HD acc load(float v) { return v; }
  static FC_HD float make(acc a) { return a; }
};
template <> struct fc_num<double> {
  using acc = double;
  static FC_HD acc load(double v) { return v; }
  static FC_HD double make(acc a) { return a; }
};
template <> struct fc_num<fc_half> {
  using acc = float;
  static FC_HD acc load(fc_half v) { return fl_half_to_f32(v.x); }
  static FC_HD fc_half make(acc a) { return fc_half{fl_half_from_f32(a)}; }
};
template <> struct fc_num<fc_bf16> {
  using acc = float;
  static FC_HD acc load(fc_bf16 v) { return fl_bfloat_to_f32(v.x); }
  static FC_HD fc_bf16 make(acc a) { return fc_bf16{fl_bfloat_from_f32(a)}; }
};
template <> struct fc_num<int32_t> {
  using acc = int64_t;
  static FC_HD acc load(int32_t v) { return v; }
  static FC_HD int32_t make(acc a) { return (int32_t)a; } /* wraps like the CPU */
};
template <> struct fc_num<int64_t> {
  using acc = int64_t;
  static FC_HD acc load(int64_t v) { return v; }
  static FC_HD int64_t make(acc a) { return a; }
};
template <> struct fc_num<fc_bool> {
  using acc = int64_t;
  static FC_HD acc load(fc_bool v) { return v.x != 0; }
  static FC_HD fc_bool make(acc a) { return fc_bool{(uint8_t)(a != 0)}; }
};

/* A double (fill value, random draw) as a T, rounded once as the CPU does:
 * f16/bf16 straight from the double, bool as "non-zero". */
template <class T>
FC_HD T fc_from_double(double v) {
  if constexpr (std::is_same<T, fc_bool>::value) {
    return fc_bool{(uint8_t)(v != 0)};
  } else if constexpr (std::is_same<T, fc_half>::value) {
    return fc_half{fl_half_from_f64(v)};
  } else if constexpr (std::is_same<T, fc_bf16>::value) {
    return fc_bf16{fl_bfloat_from_f64(v)};
  } else {
    return fc_num<T>::make((typename fc_num<T>::acc)v);
  }
}

template <class T> struct fc_tag { using type = T; };

enum : unsigned {
  FC_M_F32 = 1u << FL_F32, FC_M_F64 = 1u << FL_F64, FC_M_F16 = 1u << FL_F16, FC_M_BF16 = 1u << FL_BF16,
  FC_M_I32 = 1u << FL_I32, FC_M_I64 = 1u << FL_I64, FC_M_BOOL = 1u << FL_BOOL,
  FC_M_FLOAT = FC_M_F32 | FC_M_F64 | FC_M_F16 | FC_M_BF16,
  FC_M_ALL = FC_M_FLOAT | FC_M_I32 | FC_M_I64 | FC_M_BOOL
};

fl_status fc_bad_dtype(const char *op, fl_dtype dt);

/* Calls fn(fc_tag<T>{}) for the storage type of dt. Only the dtypes in MASK are
 * instantiated; the others return FL_EDTYPE naming the op. */
template <unsigned MASK = FC_M_ALL, class Fn>
static inline fl_status fc_dispatch(fl_dtype dt, const char *op, Fn &&fn) {
  switch (dt) {
#define FC_CASE(DT, M, T)                  \
  case DT:                                 \
    if constexpr ((MASK & (M)) != 0) {     \
      return fn(fc_tag<T>{});              \
    } else {                               \
      break;                               \
    }
    FC_CASE(FL_F32, FC_M_F32, float)
    FC_CASE(FL_F64, FC_M_F64, double)
    FC_CASE(FL_F16, FC_M_F16, fc_half)
    FC_CASE(FL_BF16, FC_M_BF16, fc_bf16)
    FC_CASE(FL_I32, FC_M_I32, int32_t)
    FC_CASE(FL_I64, FC_M_I64, int64_t)
    FC_CASE(FL_BOOL, FC_M_BOOL, fc_bool)
#undef FC_CASE
    default:
      break;
  }
  return fc_bad_dtype(op, dt);
}

/* For ops that only move bits (copy, where, gather): one instantiation per
 * element size instead of per dtype. */
template <class Fn>
static inline fl_status fc_dispatch_bits(fl_dtype dt, const char *op, Fn &&fn) {
  switch (fl_dtype_size(dt)) {
    case 1: return fn(fc_tag<uint8_t>{});
    case 2: return fn(fc_tag<uint16_t>{});
    case 4: return fn(fc_tag<uint32_t>{});
    case 8: return fn(fc_tag<uint64_t>{});
    default: return fc_bad_dtype(op, dt);
  }
}

#endif
