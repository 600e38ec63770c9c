/* tostring(t): PyTorch-like printing, summarised when large. */
#include "lflame.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PyTorch's print options (torch.set_printoptions): flame.set_printoptions keeps them per Lua state in the
 * registry. linewidth nil means the REPL's terminal width when the REPL set one (FLAME_TERM_WIDTH), else 80. */
#define DEFAULT_EDGE 3
#define DEFAULT_THRESHOLD 1000
#define DEFAULT_LINEWIDTH 80
#define MAX_EDGE 256 /* edge items per end (a stack array in shown_part); more is an error */
#define OPTIONS_KEY "flame.printoptions"

typedef struct {
  const fl_tensor *t;   /* the tensor printed (shape, dtype) */
  const double *v;      /* the shown elements, compact and row-major (floats, bool) */
  const int64_t *iv;    /* the same for integer dtypes, exact */
  int64_t m;            /* how many */
  int64_t cstride[FL_MAX_DIMS]; /* strides of the compact elements */
  bool summarise, integral, sci;
  int width;
  int64_t edge;         /* edgeitems */
  int linewidth;
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

static bool cut(const printer *p, int d) { return p->summarise && fl_shape(p->t)[d] > 2 * p->edge; }
static bool shown(const printer *p, int d, int64_t i) {
  return !cut(p, d) || i < p->edge || i >= fl_shape(p->t)[d] - p->edge;
}
/* The position of shown index i of dim d in the compact tensor. */
static int64_t compact(const printer *p, int d, int64_t i) {
  return cut(p, d) && i >= p->edge ? i - (fl_shape(p->t)[d] - 2 * p->edge) : i;
}

static void format_at(const printer *p, int64_t k, char *out, size_t n) {
  if (p->iv) fmt_int(p->iv[k], out, n);
  else fmt(p, p->v[k], out, n);
}

static void spaces(luaL_Buffer *b, int n) {
  for (int s = 0; s < n; s++) luaL_addchar(b, ' ');
}

/* Between two items of dim d: PyTorch's "," + one newline per dim below d + the indent. Vectors also break
 * their items into lines of (linewidth - indent) / (width + 2) items, the " ..." of a summary counting as one. */
static void separator(printer *p, int d, int indent, int64_t item, int64_t per_line) {
  int nd = fl_ndim(p->t);
  if (d == nd - 1 && item % per_line != 0) {
    luaL_addstring(p->b, ", ");
    return;
  }
  luaL_addchar(p->b, ',');
  for (int k = d; k < (d == nd - 1 ? d + 1 : nd - 1); k++) luaL_addchar(p->b, '\n');
  spaces(p->b, indent + 1);
}

/* Walks the shown elements: first to size the columns, then to print. indent is the column of this dim's
 * '[' (7, the width of "tensor(", for dim 1), as PyTorch's _tensor_str_with_formatter counts it. */
static void walk(printer *p, int d, int64_t base, int indent, bool emit) {
  const fl_tensor *t = p->t;
  int64_t n = fl_shape(t)[d], stride = p->cstride[d];
  bool last = d == fl_ndim(t) - 1;
  int64_t per_line = (p->linewidth - indent) / (p->width + 2);
  if (per_line < 1) per_line = 1;
  if (emit) luaL_addchar(p->b, '[');
  int64_t item = 0; /* items emitted so far in this dim, the summary's "..." included */
  for (int64_t i = 0; i < n; i++) {
    if (!shown(p, d, i)) {
      if (emit) {
        if (item > 0) separator(p, d, indent, item, per_line);
        luaL_addstring(p->b, last ? " ..." : "...");
      }
      item++;
      i = n - p->edge - 1; /* straight to the last edge items: the hidden ones may be 2^62 */
      continue;
    }
    if (emit && item > 0) separator(p, d, indent, item, per_line);
    item++;
    if (last) {
      char s[64];
      format_at(p, base + compact(p, d, i) * stride, s, sizeof s);
      int w = (int)strlen(s);
      if (!emit) p->width = w > p->width ? w : p->width;
      else {
        spaces(p->b, p->width - w);
        luaL_addstring(p->b, s);
      }
    } else {
      walk(p, d + 1, base + compact(p, d, i) * stride, indent + 1, emit);
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

/* The shown part of t, detached: every summarised dim cut to its edge first
 * and last indices (largest dims first, so intermediate copies stay small). */
static fl_status shown_part(const fl_tensor *t, bool summarise, int64_t edge, fl_tensor **out) {
  fl_tensor *c;
  fl_status st = fl_detach(t, &c);
  if (st != FL_OK) return st;
  bool done[FL_MAX_DIMS] = {false};
  for (int pass = 0; summarise && pass < fl_ndim(t); pass++) {
    int d = -1;
    for (int k = 0; k < fl_ndim(t); k++)
      if (!done[k] && fl_shape(t)[k] > 2 * edge && (d < 0 || fl_shape(t)[k] > fl_shape(t)[d])) d = k;
    if (d < 0) break;
    done[d] = true;
    int64_t n = fl_shape(t)[d], idx[2 * MAX_EDGE], len = 2 * edge;
    for (int64_t k = 0; k < edge; k++) idx[k] = k, idx[edge + k] = n - edge + k;
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
  if (shown_part(t, p->summarise, p->edge, &c) != FL_OK) lfl_error(L);
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

/* The registry's option table (created with the defaults on first use), pushed. */
static void push_options(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, OPTIONS_KEY) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, DEFAULT_THRESHOLD);
  lua_setfield(L, -2, "threshold");
  lua_pushinteger(L, DEFAULT_EDGE);
  lua_setfield(L, -2, "edgeitems");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, OPTIONS_KEY);
}

static int64_t option(lua_State *L, int opts, const char *key, int64_t dflt) {
  lua_getfield(L, opts, key);
  int64_t v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

/* The line width when the user has set none: the REPL's terminal width, else PyTorch's 80. */
static int64_t default_linewidth(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, FLAME_TERM_WIDTH_KEY);
  int64_t w = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : DEFAULT_LINEWIDTH;
  lua_pop(L, 1);
  return w;
}

/* flame.set_printoptions({linewidth, threshold, edgeitems}): as torch.set_printoptions; a field set to false
 * goes back to its default. Returns the options in force before. */
int lfl_set_printoptions(lua_State *L) {
  static const char *const keys[] = {"linewidth", "threshold", "edgeitems", NULL};
  static const int64_t lo[] = {1, 0, 1}, hi[] = {1 << 20, INT64_MAX, MAX_EDGE};
  static const int64_t dflt[] = {DEFAULT_LINEWIDTH, DEFAULT_THRESHOLD, DEFAULT_EDGE};
  int o = lfl_options(L, 1, keys);
  push_options(L);
  int opts = lua_gettop(L);
  lua_createtable(L, 0, 3); /* the previous options */
  for (int i = 0; keys[i]; i++) {
    lua_pushinteger(L, i == 0 ? option(L, opts, keys[i], default_linewidth(L)) : option(L, opts, keys[i], dflt[i]));
    lua_setfield(L, -2, keys[i]);
  }
  for (int i = 0; o && keys[i]; i++) {
    int type = lfl_rawfield(L, o, keys[i]);
    if (type == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    if (type == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      lua_pop(L, 1);
      lua_pushnil(L);
      if (i > 0) lua_pushinteger(L, dflt[i]), lua_replace(L, -2);
    } else if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < lo[i] || lua_tointeger(L, -1) > hi[i]) {
      return luaL_error(L, "set_printoptions: %s must be an integer in [%I, %I] (or false for the default), got %s",
                        keys[i], (lua_Integer)lo[i], (lua_Integer)hi[i], luaL_tolstring(L, -1, NULL));
    }
    lua_setfield(L, opts, keys[i]);
  }
  return 1;
}

int lfl_tostring(lua_State *L) {
  fl_tensor *t = lfl_check(L, 1);
  int64_t n = fl_numel(t);
  luaL_Buffer b;
  push_options(L);
  int64_t threshold = option(L, -1, "threshold", DEFAULT_THRESHOLD);
  printer p = {t, NULL, NULL, 0, {0}, n > threshold, false, false, 0, option(L, -1, "edgeitems", DEFAULT_EDGE),
               (int)option(L, -1, "linewidth", default_linewidth(L)), &b};
  lua_pop(L, 1);
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
