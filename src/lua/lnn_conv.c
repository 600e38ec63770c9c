/* flame.F: convolution: conv1d/2d/3d, conv_transpose1d/2d/3d, and the path switch conv_algo. */
#include "internal.h"
#include "lflame.h"
#include <stdio.h>
#include <string.h>

/* opts[key]: a number for every spatial dim or a table of nsp numbers (nothing: unchanged). */
static void read_sizes(lua_State *L, int oi, const char *key, const char *op, int nsp, int64_t *v) {
  int t = lfl_rawfield(L, oi, key);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  int isint;
  lua_Integer n = lua_tointegerx(L, -1, &isint);
  if (t == LUA_TNUMBER && isint) {
    for (int i = 0; i < nsp; i++) v[i] = n;
  } else if (t == LUA_TTABLE) {
    int64_t s[FL_MAX_DIMS];
    char what[64]; /* "op: key" for messages, joined by hand (no formatting on every call) */
    size_t n1 = strlen(op), n2 = strlen(key);
    if (n1 + n2 + 3 > sizeof what) n1 = n2 = 0;
    memcpy(what, op, n1), memcpy(what + n1, ": ", 2), memcpy(what + n1 + 2, key, n2), what[n1 + 2 + n2] = 0;
    int cnt = lfl_sizes_at(L, -1, s, what);
    if (cnt != nsp) luaL_error(L, "%s: %s must be a number or a table of %d numbers, got a table of %d", op, key, nsp, cnt);
    memcpy(v, s, sizeof(int64_t) * nsp);
  } else {
    luaL_error(L, "%s: %s must be an integer or a table of %d integers, got %s", op, key, nsp, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
}

static int conv_generic(lua_State *L, int nsp, bool transposed) {
  static const char *const keys[] = {"stride", "padding", "dilation", "groups", NULL};
  static const char *const tkeys[] = {"stride", "padding", "output_padding", "groups", "dilation", NULL};
  static const char *const names[2][3] = {{"conv1d", "conv2d", "conv3d"},
                                           {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}};
  const char *op = names[transposed][nsp - 1];
  fl_tensor *x = lfl_check(L, 1), *w = lfl_check(L, 2), *b = NULL;
  int oi = 4;
  if (lua_istable(L, 3) && !lfl_test(L, 3)) oi = 3, lfl_nargs(L, 3); /* conv2d(x, w, {opts}) without a bias */
  else if (!lua_isnoneornil(L, 3)) b = lfl_check(L, 3);
  oi = lfl_options(L, oi, transposed ? tkeys : keys);
  fl_conv_params p = fl_conv_default_params();
  if (oi) {
    read_sizes(L, oi, "stride", op, nsp, p.stride);
    read_sizes(L, oi, "dilation", op, nsp, p.dilation);
    if (transposed) read_sizes(L, oi, "output_padding", op, nsp, p.output_padding);
    if (lfl_rawfield(L, oi, "padding") == LUA_TSTRING) {
      const char *s = lua_tostring(L, -1);
      if (!strcmp(s, "same")) p.pad_mode = FL_CONV_PAD_SAME;
      else if (!strcmp(s, "valid")) p.pad_mode = FL_CONV_PAD_VALID;
      else luaL_error(L, "%s: padding must be sizes, \"same\" or \"valid\", got \"%s\"", op, s);
      lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
      read_sizes(L, oi, "padding", op, nsp, p.padding);
    }
    if (lfl_rawfield(L, oi, "groups") != LUA_TNIL) {
      int isint;
      p.groups = lua_tointegerx(L, -1, &isint);
      if (!isint || lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "%s: groups must be an integer, got %s", op, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  fl_tensor *y;
  LFL_CHECK(L, transposed ? fl_conv_transpose(nsp, x, w, b, &p, &y) : fl_conv(nsp, x, w, b, &p, &y));
  lfl_push(L, y);
  return 1;
}

static int l_conv1d(lua_State *L) { return conv_generic(L, 1, false); }
static int l_conv2d(lua_State *L) { return conv_generic(L, 2, false); }
static int l_conv3d(lua_State *L) { return conv_generic(L, 3, false); }
static int l_conv_transpose1d(lua_State *L) { return conv_generic(L, 1, true); }
static int l_conv_transpose2d(lua_State *L) { return conv_generic(L, 2, true); }
static int l_conv_transpose3d(lua_State *L) { return conv_generic(L, 3, true); }

static const char *const algo_names[] = {"auto", "gemm", "direct", NULL};

/* conv_algo("auto" | "gemm" | "direct") sets the process-wide path and returns the previous one;
 * conv_algo() returns the current one. */
static int l_conv_algo(lua_State *L) {
  fl_conv_algo old = fl_get_conv_algo();
  if (!lua_isnoneornil(L, 1)) fl_set_conv_algo((fl_conv_algo)luaL_checkoption(L, 1, NULL, algo_names));
  lua_pushstring(L, algo_names[old]);
  return 1;
}

/* _conv_workspace(bytes): the im2col workspace cap (nil or 0: the default); returns the previous cap. */
static int l_conv_workspace(lua_State *L) {
  lua_Integer bytes = luaL_optinteger(L, 1, 0);
  lua_pushinteger(L, (lua_Integer)fl_set_conv_workspace((int64_t)bytes));
  return 1;
}

static const char *const cudnn_api_names[] = {"legacy", "graph", NULL};

/* _cudnn_api("legacy" | "graph"): the cuDNN API of the CUDA direct path (FLAME_CUDNN_API at start-up); returns the
 * previous choice and the API that ran the last cuDNN convolution (nil before any), for bench/ and specs. */
static int l_cudnn_api(lua_State *L) {
  fl_cudnn_api old = lua_isnoneornil(L, 1) ? fl_get_cudnn_api()
                                           : fl_set_cudnn_api((fl_cudnn_api)luaL_checkoption(L, 1, NULL, cudnn_api_names));
  lua_pushstring(L, cudnn_api_names[old]);
  int ran = fl_cudnn_last_ran();
  if (ran < 0) lua_pushnil(L);
  else lua_pushstring(L, cudnn_api_names[ran]);
  return 2;
}

static const lfl_reg functions[] = {
    {"conv1d", l_conv1d, 4},
    {"conv2d", l_conv2d, 4},
    {"conv3d", l_conv3d, 4},
    {"conv_transpose1d", l_conv_transpose1d, 4},
    {"conv_transpose2d", l_conv_transpose2d, 4},
    {"conv_transpose3d", l_conv_transpose3d, 4},
    {"conv_algo", l_conv_algo, 1},
    {"_conv_workspace", l_conv_workspace, 1},
    {"_cudnn_api", l_cudnn_api, 1},
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_conv(lua_State *L) { lfl_setfuncs(L, functions); }
