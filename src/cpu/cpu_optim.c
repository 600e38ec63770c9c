/* CPU kernels of flame.optim's multi-tensor entries: one pass over each tensor, split over threads, the math in
 * f64 for f64 tensors and in f32 otherwise (the CUDA kernels' arithmetic, in PyTorch's order of operations).
 * Half params are loaded to f32 and rounded once on store; their state is f32. */
#include "cpu.h"
#include <math.h>
#include <string.h>

/* The element update of one step, for compute type A (float or double). p, g, m, v, vmax are one element each;
 * the caller loads and stores. The constants are rounded to A once per call, as the CUDA kernel does. */
typedef struct {
  double lr, wd, mom, damp, b1, b2, eps, step_size, bc2_sqrt, decay;
  bool maximize, nesterov, first, decoupled, amsgrad, has_mom;
} step_consts;

#define DEFINE_STEPS(A, SUFFIX)                                                             \
  static inline void sgd_elem_##SUFFIX(const step_consts *k, A *p, A g, A *buf) {           \
    A d = k->maximize ? -g : g;                                                             \
    if (k->wd != 0) d = d + (A)k->wd * *p;                                                  \
    if (k->has_mom) {                                                                       \
      A b = k->first ? d : (A)k->mom * *buf + (A)(1 - k->damp) * d;                         \
      *buf = b;                                                                             \
      d = k->nesterov ? d + (A)k->mom * b : b;                                              \
    }                                                                                       \
    *p = *p - (A)k->lr * d;                                                                 \
  }                                                                                         \
  static inline void adam_elem_##SUFFIX(const step_consts *k, A *p, A g, A *m, A *v, A *vmax) { \
    if (k->maximize) g = -g;                                                                \
    if (k->wd != 0) {                                                                       \
      if (k->decoupled) *p = *p * (A)k->decay;                                              \
      else g = g + (A)k->wd * *p;                                                           \
    }                                                                                       \
    *m = *m * (A)k->b1 + (A)(1 - k->b1) * g;                                                \
    *v = *v * (A)k->b2 + (A)(1 - k->b2) * g * g;                                            \
    A vv = *v;                                                                              \
    if (k->amsgrad) {                                                                       \
      if (*vmax > vv) vv = *vmax;                                                           \
      *vmax = vv;                                                                           \
    }                                                                                       \
    A denom = sqrt##SUFFIX(vv) / (A)k->bc2_sqrt + (A)k->eps;                                \
    *p = *p - (A)k->step_size * (*m / denom);                                               \
  }

#define sqrtd sqrt
DEFINE_STEPS(float, f)
DEFINE_STEPS(double, d)
#undef sqrtd

static void consts_for(const fl_optim_args *a, int i, step_consts *k) {
  k->lr = a->lr, k->wd = a->weight_decay, k->mom = a->momentum, k->damp = a->dampening;
  k->b1 = a->beta1, k->b2 = a->beta2, k->eps = a->eps;
  k->maximize = a->maximize, k->nesterov = a->nesterov, k->first = a->first;
  k->decoupled = a->decoupled, k->amsgrad = a->amsgrad;
  k->has_mom = a->kind == FL_OPTIM_SGD && a->momentum != 0;
  k->decay = 1 - a->lr * a->weight_decay;
  if (a->kind == FL_OPTIM_ADAM) {
    double s = (double)a->steps[i];
    k->step_size = a->lr / (1 - pow(a->beta1, s));
    k->bc2_sqrt = sqrt(1 - pow(a->beta2, s));
  }
}

static float *f32_of(fl_tensor *const *ts, int i) { return ts && ts[i] ? (float *)fl_data_ptr(ts[i]) : NULL; }
static double *f64_of(fl_tensor *const *ts, int i) { return ts && ts[i] ? (double *)fl_data_ptr(ts[i]) : NULL; }

/* One tensor of the step: f64, f32, or a half type through f32. */
static void step_tensor(const fl_optim_args *a, int i) {
  step_consts k;
  consts_for(a, i, &k);
  fl_tensor *pt = a->params[i];
  int64_t n = fl_numel(pt);
  int nt = fl_cpu_threads_for(n * 8);
  bool sgd = a->kind == FL_OPTIM_SGD;
  if (pt->dtype == FL_F64) {
    double *p = (double *)fl_data_ptr(pt), *m = f64_of(a->buf1, i), *v = f64_of(a->buf2, i), *x = f64_of(a->buf3, i);
    const double *g = (const double *)fl_data_ptr(a->grads[i]);
    if (sgd) FL_CPU_FOR(j, n, sgd_elem_d(&k, &p[j], g[j], m ? &m[j] : NULL));
    else FL_CPU_FOR(j, n, adam_elem_d(&k, &p[j], g[j], &m[j], &v[j], x ? &x[j] : NULL));
    return;
  }
  float *m = f32_of(a->buf1, i), *v = f32_of(a->buf2, i), *x = f32_of(a->buf3, i);
  if (pt->dtype == FL_F32) {
    float *p = (float *)fl_data_ptr(pt);
    const float *g = (const float *)fl_data_ptr(a->grads[i]);
    if (sgd) FL_CPU_FOR(j, n, sgd_elem_f(&k, &p[j], g[j], m ? &m[j] : NULL));
    else FL_CPU_FOR(j, n, adam_elem_f(&k, &p[j], g[j], &m[j], &v[j], x ? &x[j] : NULL));
    return;
  }
  fl_dtype dt = pt->dtype;
  char *pp = fl_data_ptr(pt);
  const char *gp = fl_data_ptr(a->grads[i]);
  FL_CPU_FOR(j, n, {
    float p = (float)fl_ld(pp + 2 * j, dt), g = (float)fl_ld(gp + 2 * j, dt);
    if (sgd) sgd_elem_f(&k, &p, g, m ? &m[j] : NULL);
    else adam_elem_f(&k, &p, g, &m[j], &v[j], x ? &x[j] : NULL);
    fl_st(pp + 2 * j, dt, p);
  });
}

fl_status fl_cpu_optim_step(const fl_optim_args *a) {
  for (int i = 0; i < a->n; i++) step_tensor(a, i);
  return FL_OK;
}

/* sum |x|^p (or max |x| for p = inf) of one tensor, in double: the per-tensor partials are then combined in
 * tensor order, so the result does not depend on the thread count. */
static double norm_part(const fl_tensor *t, double p) {
  int64_t n = fl_numel(t);
  const char *d = fl_data_ptr(t);
  size_t es = fl_dtype_size(t->dtype);
  fl_dtype dt = t->dtype;
  double acc = 0;
  if (isinf(p)) {
    for (int64_t j = 0; j < n; j++) {
      double v = fabs(fl_ld(d + j * (int64_t)es, dt));
      if (v > acc || isnan(v)) acc = v;
      if (isnan(acc)) break;
    }
  } else if (p == 2) {
    for (int64_t j = 0; j < n; j++) {
      double v = fl_ld(d + j * (int64_t)es, dt);
      acc += v * v;
    }
  } else {
    for (int64_t j = 0; j < n; j++) acc += pow(fabs(fl_ld(d + j * (int64_t)es, dt)), p);
  }
  return acc;
}

fl_status fl_cpu_multi_norm(fl_tensor *out, int n, const fl_tensor *const *xs, double p) {
  double total = 0;
  for (int i = 0; i < n; i++) {
    double v = norm_part(xs[i], p);
    if (isinf(p)) total = (v > total || isnan(v)) ? v : total;
    else total += v;
  }
  if (!isinf(p)) total = p == 2 ? sqrt(total) : pow(total, 1 / p);
  fl_st(fl_data_ptr(out), out->dtype, total);
  return FL_OK;
}

fl_status fl_cpu_multi_clip(int n, fl_tensor *const *xs, const fl_tensor *norm, double max_norm) {
  bool f64 = norm->dtype == FL_F64;
  double nv = fl_ld(fl_data_ptr(norm), norm->dtype);
  /* clip_coef = max_norm / (norm + 1e-6) clamped to 1, in the norm's dtype */
  double coef = f64 ? max_norm / (nv + 1e-6) : (double)((float)max_norm / ((float)nv + 1e-6f));
  if (coef > 1) coef = 1;
  for (int i = 0; i < n; i++) {
    fl_tensor *t = xs[i];
    int64_t m = fl_numel(t);
    int nt = fl_cpu_threads_for(m);
    char *d = fl_data_ptr(t);
    fl_dtype dt = t->dtype;
    if (dt == FL_F64) {
      double *x = (double *)d;
      FL_CPU_FOR(j, m, x[j] *= coef);
    } else if (dt == FL_F32) {
      float *x = (float *)d, c = (float)coef;
      FL_CPU_FOR(j, m, x[j] *= c);
    } else {
      float c = (float)coef;
      FL_CPU_FOR(j, m, fl_st(d + 2 * j, dt, (float)fl_ld(d + 2 * j, dt) * c));
    }
  }
  return FL_OK;
}

/* The front-end made every src contiguous and of dst's dtype. */
fl_status fl_cpu_multi_copy(int n, fl_tensor *const *dst, const fl_tensor *const *src) {
  for (int i = 0; i < n; i++) {
    size_t bytes = (size_t)fl_numel(dst[i]) * fl_dtype_size(dst[i]->dtype);
    void *d = fl_data_ptr(dst[i]);
    const void *s = fl_data_ptr(src[i]);
    if (bytes && d != s) memcpy(d, s, bytes);
  }
  return FL_OK;
}

fl_status fl_cpu_multi_lerp(int n, fl_tensor *const *dst, const fl_tensor *const *src, double w) {
  for (int i = 0; i < n; i++) {
    fl_tensor *t = dst[i];
    int64_t m = fl_numel(t);
    int nt = fl_cpu_threads_for(m * 2);
    char *d = fl_data_ptr(t);
    const char *s = fl_data_ptr(src[i]);
    fl_dtype dt = t->dtype, st = src[i]->dtype;
    size_t de = fl_dtype_size(dt), se = fl_dtype_size(st);
    if (dt == FL_F64) {
      FL_CPU_FOR(j, m, {
        double *x = (double *)(d + j * 8);
        *x = *x - w * (*x - fl_ld(s + j * (int64_t)se, st));
      });
    } else {
      float wf = (float)w;
      FL_CPU_FOR(j, m, {
        float x = (float)fl_ld(d + j * (int64_t)de, dt), y = (float)fl_ld(s + j * (int64_t)se, st);
        fl_st(d + j * (int64_t)de, dt, x - wf * (x - y));
      });
    }
  }
  return FL_OK;
}
