/* tostring(t): PyTorch-like printing, summarised when large. */
#include "lflame.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EDGE 3          /* items shown at each end of a summarised dim */
#define SUMMARISE 1000  /* more elements than this: summarise */

/* Only the shown elements are fetched from the device: a summarised tensor is
 * first cut down (per summarised dim, the EDGE first and last indices) to a
 * small compact tensor, so printing a 200 MB tensor copies a few hundred bytes. */
typedef struct {
  const fl_tensor *t;   /* the tensor printed (shape, dtype) */
  const double *v;      /* the shown elements, compact and row-major (floats, bool) */
  const int64_t *iv;    /* the same for integer dtypes, exact */
  int64_t m;            /* how many */
  int64_t cstride[FL_MAX_DIMS]; /* strides of the compact elements */
  bool summarise, integral, sci;
  int width;
  luaL_Buffer *b;
} printer;

static void fmt_int(int64_t x, char *out, size_t n) { snprintf(out, n, "%lld", (long long)x); }

static void fmt(const printer *p, double x, char *out, size_t n) {
  fl_dtype dt = fl_dtype_of(p->t);
  if (dt == FL_BOOL) snprintf(out, n, "%s", x != 0 ? "true" : "false");
  else if (isnan(x)) snprintf(out, n, "nan");
  else if (isinf(x)) snprintf(out, n, x > 0 ? "inf" : "-inf");
  else if (p->sci) snprintf(out, n, "%.4e", x);
  else if (p->integral) snprintf(out, n, "%.0f.", x);
  else snprintf(out, n, "%.4f", x);
}

static bool cut(const printer *p, int d) { return p->summarise && fl_shape(p->t)[d] > 2 * EDGE; }
static bool shown(const printer *p, int d, int64_t i) {
  return !cut(p, d) || i < EDGE || i >= fl_shape(p->t)[d] - EDGE;
}
/* The position of shown index i of dim d in the compact tensor. */
static int64_t compact(const printer *p, int d, int64_t i) {
  return cut(p, d) && i >= EDGE ? i - (fl_shape(p->t)[d] - 2 * EDGE) : i;
}

static void format_at(const printer *p, int64_t k, char *out, size_t n) {
  if (p->iv) fmt_int(p->iv[k], out, n);
  else fmt(p, p->v[k], out, n);
}

/* Walks the shown elements: first to size the columns, then to print. */
static void walk(printer *p, int d, int64_t base, int indent, bool emit) {
  const fl_tensor *t = p->t;
  int64_t n = fl_shape(t)[d], stride = p->cstride[d];
  if (emit) luaL_addchar(p->b, '[');
  bool skipped = false;
  for (int64_t i = 0; i < n; i++) {
    if (!shown(p, d, i)) {
      if (!skipped && emit) {
        luaL_addstring(p->b, d == fl_ndim(t) - 1 ? "..., " : "...,\n");
        if (d != fl_ndim(t) - 1)
          for (int s = 0; s < indent + 1; s++) luaL_addchar(p->b, ' ');
      }
      skipped = true;
      i = n - EDGE - 1; /* straight to the last EDGE: the hidden ones may be 2^62 */
      continue;
    }
    if (d == fl_ndim(t) - 1) {
      char s[64];
      format_at(p, base + compact(p, d, i) * stride, s, sizeof s);
      int w = (int)strlen(s);
      if (!emit) p->width = w > p->width ? w : p->width;
      else {
        for (int k = w; k < p->width; k++) luaL_addchar(p->b, ' ');
        luaL_addstring(p->b, s);
        if (i < n - 1) luaL_addstring(p->b, ", ");
      }
    } else {
      walk(p, d + 1, base + compact(p, d, i) * stride, indent + 1, emit);
      if (emit && i < n - 1) {
        luaL_addchar(p->b, ',');
        for (int k = d; k < fl_ndim(t) - 1; k++) luaL_addchar(p->b, '\n');
        for (int s = 0; s < indent + 1; s++) luaL_addchar(p->b, ' ');
      }
    }
  }
  if (emit) luaL_addchar(p->b, ']');
}

/* Picks plain, integral or scientific notation from the shown values. */
static void choose_format(printer *p, int64_t n) {
  double lo = INFINITY, hi = 0;
  p->integral = true;
  if (!p->v) return;
  for (int64_t i = 0; i < n; i++) {
    double x = fabs(p->v[i]);
    if (!isfinite(x)) continue;
    if (x != floor(x)) p->integral = false;
    if (x > hi) hi = x;
    if (x > 0 && x < lo) lo = x;
  }
  p->sci = hi >= 1e8 || (lo < 1e-4 && !p->integral) || (hi / lo > 1e5 && !p->integral && lo != INFINITY);
}

/* The shown part of t, detached: every summarised dim cut to its EDGE first
 * and last indices (largest dims first, so intermediate copies stay small). */
static fl_status shown_part(const fl_tensor *t, bool summarise, fl_tensor **out) {
  fl_tensor *c;
  fl_status st = fl_detach(t, &c);
  if (st != FL_OK) return st;
  bool done[FL_MAX_DIMS] = {false};
  for (int pass = 0; summarise && pass < fl_ndim(t); pass++) {
    int d = -1;
    for (int k = 0; k < fl_ndim(t); k++)
      if (!done[k] && fl_shape(t)[k] > 2 * EDGE && (d < 0 || fl_shape(t)[k] > fl_shape(t)[d])) d = k;
    if (d < 0) break;
    done[d] = true;
    int64_t n = fl_shape(t)[d], idx[2 * EDGE], len = 2 * EDGE;
    for (int k = 0; k < EDGE; k++) idx[k] = k, idx[EDGE + k] = n - EDGE + k;
    fl_opts o = {FL_I64, fl_device_of(t), false};
    fl_tensor *it, *s = NULL;
    st = fl_from_host(idx, 1, &len, o, &it);
    if (st == FL_OK) {
      st = fl_index_select(c, d, it, &s);
      fl_release(it);
    }
    fl_release(c);
    if (st != FL_OK) return st;
    c = s;
  }
  *out = c;
  return FL_OK;
}

/* Fetches the shown elements into Lua-owned buffers (freed by the GC, even on error). */
static void fetch_shown(lua_State *L, printer *p) {
  const fl_tensor *t = p->t;
  fl_tensor *c = NULL;
  if (shown_part(t, p->summarise, &c) != FL_OK) lfl_error(L);
  lfl_push(L, c); /* owned by Lua from here */
  int64_t m = p->m = fl_numel(c);
  int64_t acc = 1;
  for (int d = fl_ndim(c) - 1; d >= 0; acc *= fl_shape(c)[d--]) p->cstride[d] = acc;
  fl_dtype dt = fl_dtype_of(t);
  if (fl_dtype_is_float(dt) || dt == FL_BOOL) {
    double *v = lua_newuserdatauv(L, sizeof(double) * (size_t)m, 0);
    if (fl_to_doubles(c, v) != FL_OK) lfl_error(L);
    p->v = v;
  } else { /* integers exactly: an i64 beyond 2^53 must print as itself */
    fl_tensor *w;
    int64_t *v = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)m, 0);
    if (fl_to(c, FL_I64, FL_CPU_DEVICE, &w) != FL_OK) lfl_error(L);
    fl_status st = fl_to_host(w, v);
    fl_release(w);
    if (st != FL_OK) lfl_error(L);
    p->iv = v;
  }
}

int lfl_tostring(lua_State *L) {
  fl_tensor *t = lfl_check(L, 1);
  int64_t n = fl_numel(t);
  luaL_Buffer b;
  printer p = {t, NULL, NULL, 0, {0}, n > SUMMARISE, false, false, 0, &b};
  if (n > 0) fetch_shown(L, &p);
  luaL_buffinit(L, &b);
  choose_format(&p, p.m);
  luaL_addstring(&b, "tensor(");
  if (fl_ndim(t) == 0) {
    char s[64];
    format_at(&p, 0, s, sizeof s);
    luaL_addstring(&b, s);
  } else if (n == 0) {
    luaL_addstring(&b, "[]");
  } else {
    walk(&p, 0, 0, 7, false);
    walk(&p, 0, 0, 7, true);
  }
  char tail[160], dev[32], shape[96];
  fl_device_name(fl_device_of(t), dev, sizeof dev);
  snprintf(tail, sizeof tail, ", %sdtype=%s, device=%s", n == 0 || p.summarise ? "" : "", fl_dtype_name(fl_dtype_of(t)), dev);
  luaL_addstring(&b, tail);
  if (p.summarise || n == 0) {
    snprintf(tail, sizeof tail, ", shape=%s", fl_shape_str(t, shape, sizeof shape));
    luaL_addstring(&b, tail);
  }
  if (fl_grad_fn_name(t)) {
    snprintf(tail, sizeof tail, ", grad_fn=%s", fl_grad_fn_name(t));
    luaL_addstring(&b, tail);
  } else if (fl_requires_grad(t)) {
    luaL_addstring(&b, ", requires_grad=true");
  }
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}
