/* Mixed precision (autocast): a per-thread mode, like grad mode, that ops consult at their entry.
 *
 * PyTorch's rule, reduced to two lists. The "lower" ops (matmul, mm, bmm, linear, the convolutions and
 * attention) run in the autocast dtype (bf16 or f16) so that they use the tensor cores: their f32, f16 and bf16
 * arguments are cast to it. The "widen" ops (softmax, log_softmax, the norms, cross_entropy, logsumexp and the
 * Lua losses) run in f32: their f16 and bf16 arguments are cast up. f64 and integer tensors are never cast.
 * The casts are ordinary differentiable fl_to calls, so gradients flow back to f32 parameters in f32.
 * Every other op runs in the dtype it is given (binary ops promote, so bf16 + f32 is f32).
 *
 * The mode is the current context's (per thread for the default context): states do not see each other's. The backward pass
 * turns it off (engine.c): gradients are computed in the dtypes the forward chose. */
#include "context.h"

#define ac_dtype (*fl_ctx_autocast()) /* FL_NDTYPES: off */

fl_dtype fl_autocast_get(void) { return ac_dtype; }

fl_status fl_autocast_set(fl_dtype dt, fl_dtype *prev) {
  if (dt != FL_NDTYPES && dt != FL_BF16 && dt != FL_F16)
    return fl_error(FL_EINVAL, "autocast: dtype must be bf16 or f16, got %s", fl_dtype_name(dt));
  if (prev) *prev = ac_dtype;
  ac_dtype = dt;
  return FL_OK;
}

fl_dtype fl_autocast_dtype(fl_autocast_list list, fl_dtype dt) {
  if (ac_dtype == FL_NDTYPES) return dt;
  bool half = dt == FL_F16 || dt == FL_BF16;
  if (list == FL_AC_LOWER) return (half || dt == FL_F32) ? ac_dtype : dt;
  return half ? FL_F32 : dt;
}

bool fl_autocast_wants(fl_autocast_list list, int n, const fl_tensor *const *xs) {
  if (ac_dtype == FL_NDTYPES) return false;
  for (int i = 0; i < n; i++)
    if (xs[i] && fl_autocast_dtype(list, xs[i]->dtype) != xs[i]->dtype) return true;
  return false;
}

fl_status fl_autocast_cast(fl_autocast_list list, int n, const fl_tensor *const *xs, fl_tensor **out) {
  for (int i = 0; i < n; i++) out[i] = NULL;
  for (int i = 0; i < n; i++) {
    if (!xs[i]) continue;
    fl_dtype dt = fl_autocast_dtype(list, xs[i]->dtype);
    fl_status st = dt == xs[i]->dtype ? (out[i] = fl_retain((fl_tensor *)xs[i]), FL_OK) : fl_cast(xs[i], dt, &out[i]);
    if (st != FL_OK) {
      for (int k = 0; k < i; k++) fl_release(out[k]), out[k] = NULL;
      return st;
    }
  }
  return FL_OK;
}
