/* tostring(t): PyTorch-like printing, summarised when large. */
#include "lflame.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EDGE 3          /* items shown at each end of a summarised dim */
#define SUMMARISE 1000  /* more elements than this: summarise */

typedef struct {
  const fl_tensor *t;
  const double *v;
  bool summarise, integral, sci;
  int width;
  luaL_Buffer *b;
} printer;

static void fmt(const printer *p, double x, char *out, size_t n) {
  fl_dtype dt = fl_dtype_of(p->t);
  if (dt == FL_BOOL) snprintf(out, n, "%s", x != 0 ? "true" : "false");
  else if (!fl_dtype_is_float(dt)) snprintf(out, n, "%lld", (long long)x);
  else if (isnan(x)) snprintf(out, n, "nan");
  else if (isinf(x)) snprintf(out, n, x > 0 ? "inf" : "-inf");
  else if (p->sci) snprintf(out, n, "%.4e", x);
  else if (p->integral) snprintf(out, n, "%.0f.", x);
  else snprintf(out, n, "%.4f", x);
}

static bool shown(const printer *p, int d, int64_t i) {
  int64_t n = fl_shape(p->t)[d];
  return !p->summarise || n <= 2 * EDGE || i < EDGE || i >= n - EDGE;
}

/* Walks the shown elements: first to size the columns, then to print. */
static void walk(printer *p, int d, int64_t base, int indent, bool emit) {
  const fl_tensor *t = p->t;
  int64_t n = fl_shape(t)[d], stride = 1;
  for (int k = d + 1; k < fl_ndim(t); k++) stride *= fl_shape(t)[k];
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
      continue;
    }
    if (d == fl_ndim(t) - 1) {
      char s[64];
      fmt(p, p->v[base + i], s, sizeof s);
      int w = (int)strlen(s);
      if (!emit) p->width = w > p->width ? w : p->width;
      else {
        for (int k = w; k < p->width; k++) luaL_addchar(p->b, ' ');
        luaL_addstring(p->b, s);
        if (i < n - 1) luaL_addstring(p->b, ", ");
      }
    } else {
      walk(p, d + 1, base + i * stride, indent + 1, emit);
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
  for (int64_t i = 0; i < n; i++) {
    double x = fabs(p->v[i]);
    if (!isfinite(x)) continue;
    if (x != floor(x)) p->integral = false;
    if (x > hi) hi = x;
    if (x > 0 && x < lo) lo = x;
  }
  p->sci = hi >= 1e8 || (lo < 1e-4 && !p->integral) || (hi / lo > 1e5 && !p->integral && lo != INFINITY);
}

int lfl_tostring(lua_State *L) {
  fl_tensor *t = lfl_check(L, 1);
  int64_t n = fl_numel(t);
  double *v = lua_newuserdatauv(L, sizeof(double) * (size_t)(n ? n : 1), 0);
  if (fl_to_doubles(t, v) != FL_OK) return lfl_error(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  printer p = {t, v, n > SUMMARISE, false, false, 0, &b};
  choose_format(&p, n);
  luaL_addstring(&b, "tensor(");
  if (fl_ndim(t) == 0) {
    char s[64];
    fmt(&p, v[0], s, sizeof s);
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
