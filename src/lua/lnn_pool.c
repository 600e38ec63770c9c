/* flame.F: pooling, resizing, padding: avg/max/adaptive pools, interpolate, pad. */
#include "lflame.h"
#include <string.h>

static bool opt_bool(lua_State *L, int oi, const char *key, bool def) {
  if (!oi) return def;
  bool v = lfl_rawfield(L, oi, key) == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* nsp sizes from the value at idx: a number (every dim) or a table of nsp
 * (nil entries, or a nil value: def; def < 0 with a nil value: returns false). */
static bool sizes(lua_State *L, int idx, int nsp, const char *what, int64_t def, int64_t *out) {
  idx = lua_absindex(L, idx);
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TNONE) {
    for (int i = 0; i < nsp; i++) out[i] = def;
    return false;
  }
  if (t == LUA_TNUMBER) {
    int ok;
    lua_Integer v = lua_tointegerx(L, idx, &ok);
    if (!ok) luaL_error(L, "%s: %s must be an integer, got %s", lfl_fname(L, NULL), what, lua_tostring(L, idx));
    for (int i = 0; i < nsp; i++) out[i] = v;
    return true;
  }
  if (t != LUA_TTABLE && !lfl_is_shape(L, idx))
    luaL_error(L, "%s: %s must be a number or a table of %d, got a %s", lfl_fname(L, NULL), what, nsp, luaL_typename(L, idx));
  if (lfl_is_shape(L, idx)) {
    int64_t s[FL_MAX_DIMS];
    int n = lfl_sizes_at(L, idx, s, what);
    if (n != nsp) luaL_error(L, "%s: %s needs %d sizes, got %d", lfl_fname(L, NULL), what, nsp, n);
    memcpy(out, s, sizeof(int64_t) * (size_t)nsp);
    return true;
  }
  lua_Unsigned n = lua_rawlen(L, idx);
  if (n > (lua_Unsigned)nsp) luaL_error(L, "%s: %s needs %d sizes, got %d", lfl_fname(L, NULL), what, nsp, (int)n);
  if (n < (lua_Unsigned)nsp && def == 0) /* no nil entries where no default exists */
    luaL_error(L, "%s: %s needs %d sizes, got %d", lfl_fname(L, NULL), what, nsp, (int)n);
  for (int i = 0; i < nsp; i++) {
    int vt = lua_rawgeti(L, idx, i + 1), ok = 1;
    out[i] = vt == LUA_TNIL ? def : lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "%s: %s must hold integers, got %s", lfl_fname(L, NULL), what, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  return true;
}

/* The option key at oi as sizes (absent: def) */
static bool opt_sizes(lua_State *L, int oi, const char *key, int nsp, int64_t def, int64_t *out) {
  if (!oi) {
    for (int i = 0; i < nsp; i++) out[i] = def;
    return false;
  }
  lfl_rawfield(L, oi, key);
  bool given = sizes(L, -1, nsp, key, def, out);
  lua_pop(L, 1);
  return given;
}

static const char *const avg_keys[] = {"stride", "padding", "ceil_mode", "count_include_pad", NULL};
static const char *const max_keys[] = {"stride", "padding", "dilation", "ceil_mode", "return_indices", NULL};

/* avg_poolNd(x, kernel, {stride, padding, ceil_mode, count_include_pad = true}) */
static int avg_pool(lua_State *L, int nsp) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int64_t k[3], s[3], p[3];
  sizes(L, 2, nsp, "kernel_size", 0, k);
  if (lua_isnoneornil(L, 2)) luaL_error(L, "%s: kernel_size is required", lfl_fname(L, NULL));
  int oi = lfl_options(L, 3, avg_keys);
  bool has_stride = opt_sizes(L, oi, "stride", nsp, 0, s);
  opt_sizes(L, oi, "padding", nsp, 0, p);
  LFL_CHECK(L, fl_avg_pool(x, nsp, k, has_stride ? s : NULL, p, opt_bool(L, oi, "ceil_mode", false),
                           opt_bool(L, oi, "count_include_pad", true), &r));
  lfl_push(L, r);
  return 1;
}

/* max_poolNd(x, kernel, {stride, padding, dilation, ceil_mode, return_indices}) -> y (, 1-based indices) */
static int max_pool(lua_State *L, int nsp) {
  fl_tensor *x = lfl_check(L, 1), *r, *idx = NULL;
  int64_t k[3], s[3], p[3], d[3];
  sizes(L, 2, nsp, "kernel_size", 0, k);
  if (lua_isnoneornil(L, 2)) luaL_error(L, "%s: kernel_size is required", lfl_fname(L, NULL));
  int oi = lfl_options(L, 3, max_keys);
  bool has_stride = opt_sizes(L, oi, "stride", nsp, 0, s);
  opt_sizes(L, oi, "padding", nsp, 0, p);
  opt_sizes(L, oi, "dilation", nsp, 1, d);
  bool want = opt_bool(L, oi, "return_indices", false);
  LFL_CHECK(L, fl_max_pool(x, nsp, k, has_stride ? s : NULL, p, d, opt_bool(L, oi, "ceil_mode", false), 1, &r,
                           want ? &idx : NULL));
  lfl_push(L, r);
  if (!want) return 1;
  lfl_push(L, idx);
  return 2;
}

/* adaptive_avg_poolNd(x, size): a number or a table, nil entries keep the input's size */
static int adaptive_avg_pool(lua_State *L, int nsp) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int64_t s[3];
  if (lua_isnoneornil(L, 2)) luaL_error(L, "%s: output_size is required", lfl_fname(L, NULL));
  sizes(L, 2, nsp, "output_size", -1, s);
  for (int i = 0; i < nsp; i++)
    if (s[i] < -1 || (s[i] == -1 && lua_isinteger(L, 2)))
      luaL_error(L, "%s: output_size must be positive, got %d", lfl_fname(L, NULL), (int)s[i]);
  LFL_CHECK(L, fl_adaptive_avg_pool(x, nsp, s, &r));
  lfl_push(L, r);
  return 1;
}

#define POOL_FNS(N)                                                  \
  static int l_avg_pool##N##d(lua_State *L) { return avg_pool(L, N); } \
  static int l_max_pool##N##d(lua_State *L) { return max_pool(L, N); } \
  static int l_adaptive_avg_pool##N##d(lua_State *L) { return adaptive_avg_pool(L, N); }
POOL_FNS(1)
POOL_FNS(2)
POOL_FNS(3)
#undef POOL_FNS

static const char *const interp_keys[] = {"size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", NULL};

/* interpolate(x, {size | scale_factor, mode = "nearest", align_corners, recompute_scale_factor}) */
static int l_interpolate(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int oi = lfl_options(L, 2, interp_keys), nd = fl_ndim(x), nsp = nd >= 3 && nd <= 5 ? nd - 2 : 1;
  const char *mode = "nearest";
  if (oi && lfl_rawfield(L, oi, "mode") != LUA_TNIL) mode = luaL_checkstring(L, -1);
  static const char *const modes[] = {"nearest", "linear", "bilinear", "trilinear"};
  int m = 0;
  while (m < 4 && strcmp(mode, modes[m])) m++;
  if (m == 4)
    luaL_error(L, "interpolate: unknown mode '%s' (modes: nearest, linear, bilinear, trilinear)", mode);
  if (m > 0 && nd != m + 2)
    luaL_error(L, "interpolate: mode '%s' needs a %d-d input, got %d-d", mode, m + 2, nd);
  bool has_ac = oi && lfl_rawfield(L, oi, "align_corners") != LUA_TNIL, ac = has_ac && lua_toboolean(L, -1);
  if (has_ac && m == 0)
    luaL_error(L, "interpolate: align_corners can only be set with the interpolating modes linear, bilinear, trilinear");
  int64_t size[3];
  double scale[3];
  bool has_size = oi && opt_sizes(L, oi, "size", nsp, 0, size), has_scale = false;
  if (oi && lfl_rawfield(L, oi, "scale_factor") != LUA_TNIL) {
    has_scale = true;
    if (lua_type(L, -1) == LUA_TNUMBER) {
      for (int i = 0; i < nsp; i++) scale[i] = lua_tonumber(L, -1);
    } else {
      luaL_checktype(L, -1, LUA_TTABLE);
      if (lua_rawlen(L, -1) != (lua_Unsigned)nsp)
        luaL_error(L, "interpolate: scale_factor needs %d values, got %d", nsp, (int)lua_rawlen(L, -1));
      for (int i = 0; i < nsp; i++) {
        lua_rawgeti(L, -1, i + 1);
        if (!lua_isnumber(L, -1)) luaL_error(L, "interpolate: scale_factor must hold numbers");
        scale[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
      }
    }
  }
  if (has_scale && !has_size && opt_bool(L, oi, "recompute_scale_factor", false) && nd >= 3 && nd <= 5) {
    for (int i = 0; i < nsp; i++) { /* the size from the factor; the factor itself is then forgotten */
      double o = (double)fl_shape(x)[2 + i] * scale[i];
      size[i] = o >= 0 && o < 9e18 ? (int64_t)o : 0;
    }
    has_size = true, has_scale = false;
  }
  LFL_CHECK(L, fl_interpolate(x, has_size ? size : NULL, has_scale ? scale : NULL,
                              m ? FL_INTERP_LINEAR : FL_INTERP_NEAREST, ac, &r));
  lfl_push(L, r);
  return 1;
}

static const char *const pad_keys[] = {"mode", "value", NULL};

/* pad(x, pads, {mode = "constant" | "reflect" | "replicate", value = 0}) with pads from the last dim backwards */
static int l_pad(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int64_t pads[2 * FL_MAX_DIMS];
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Unsigned n = lua_rawlen(L, 2);
  if (n > 2 * FL_MAX_DIMS) luaL_error(L, "pad: at most %d padding values, got %d", 2 * FL_MAX_DIMS, (int)n);
  for (int i = 0; i < (int)n; i++) {
    lua_rawgeti(L, 2, i + 1);
    int ok;
    pads[i] = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "pad: padding values must be integers, got %s", luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  int oi = lfl_options(L, 3, pad_keys);
  fl_pad_mode mode = FL_PAD_CONSTANT;
  if (oi && lfl_rawfield(L, oi, "mode") != LUA_TNIL) {
    const char *s = luaL_checkstring(L, -1);
    if (!strcmp(s, "reflect")) mode = FL_PAD_REFLECT;
    else if (!strcmp(s, "replicate")) mode = FL_PAD_REPLICATE;
    else if (strcmp(s, "constant")) luaL_error(L, "pad: unknown mode '%s' (modes: constant, reflect, replicate)", s);
  }
  double value = 0;
  if (oi && lfl_rawfield(L, oi, "value") != LUA_TNIL) {
    value = luaL_checknumber(L, -1);
    if (mode != FL_PAD_CONSTANT) luaL_error(L, "pad: value is only for mode 'constant'");
  }
  LFL_CHECK(L, fl_pad(x, (int)n, pads, mode, value, &r));
  lfl_push(L, r);
  return 1;
}

static const lfl_reg functions[] = {
    {"avg_pool1d", l_avg_pool1d, 3},
    {"avg_pool2d", l_avg_pool2d, 3},
    {"avg_pool3d", l_avg_pool3d, 3},
    {"max_pool1d", l_max_pool1d, 3},
    {"max_pool2d", l_max_pool2d, 3},
    {"max_pool3d", l_max_pool3d, 3},
    {"adaptive_avg_pool1d", l_adaptive_avg_pool1d, 2},
    {"adaptive_avg_pool2d", l_adaptive_avg_pool2d, 2},
    {"adaptive_avg_pool3d", l_adaptive_avg_pool3d, 2},
    {"interpolate", l_interpolate, 2},
    {"pad", l_pad, 3},
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_pool(lua_State *L) { lfl_setfuncs(L, functions); }
