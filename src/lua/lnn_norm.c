/* flame.F: norms: layer_norm, group_norm, rms_norm (ops/norm.c). eps defaults to 1e-5 for all three (rms_norm
 * too, where PyTorch's None means the dtype's machine epsilon). */
#include "lflame.h"

#define NORM_EPS 1e-5

/* normalized_shape at idx: a number or a table (or shape) of sizes. */
static int normalized_shape(lua_State *L, int idx, int64_t *shape) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    int ok;
    shape[0] = (int64_t)lua_tointegerx(L, idx, &ok);
    if (!ok) return luaL_argerror(L, idx, "normalized_shape must be an integer or a table of them");
    return 1;
  }
  return lfl_sizes_at(L, idx, shape, lfl_fname(L, NULL));
}

static fl_tensor *opt_tensor(lua_State *L, int idx) { return lua_isnoneornil(L, idx) ? NULL : lfl_check(L, idx); }

/* layer_norm(x, normalized_shape, w?, b?, eps?) */
static int f_layer_norm(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int64_t shape[FL_MAX_DIMS];
  int n = normalized_shape(L, 2, shape);
  fl_tensor *w = opt_tensor(L, 3), *b = opt_tensor(L, 4);
  LFL_CHECK(L, fl_layer_norm(x, n, shape, w, b, luaL_optnumber(L, 5, NORM_EPS), &r));
  lfl_push(L, r);
  return 1;
}

/* rms_norm(x, normalized_shape, w?, eps?) */
static int f_rms_norm(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  int64_t shape[FL_MAX_DIMS];
  int n = normalized_shape(L, 2, shape);
  fl_tensor *w = opt_tensor(L, 3);
  LFL_CHECK(L, fl_rms_norm(x, n, shape, w, luaL_optnumber(L, 4, NORM_EPS), &r));
  lfl_push(L, r);
  return 1;
}

typedef fl_status (*group_norm_fn)(const fl_tensor *, int64_t, const fl_tensor *, const fl_tensor *, double,
                                   fl_tensor **);

/* (x, groups, w?, b?, eps?) through fn: group_norm, or group_norm_silu */
static int group_norm_call(lua_State *L, group_norm_fn fn) {
  fl_tensor *x = lfl_check(L, 1), *r;
  lua_Integer groups = luaL_checkinteger(L, 2);
  fl_tensor *w = opt_tensor(L, 3), *b = opt_tensor(L, 4);
  LFL_CHECK(L, fn(x, (int64_t)groups, w, b, luaL_optnumber(L, 5, NORM_EPS), &r));
  lfl_push(L, r);
  return 1;
}

/* group_norm(x, groups, w?, b?, eps?) */
static int f_group_norm(lua_State *L) { return group_norm_call(L, fl_group_norm); }

/* group_norm_silu(x, groups, w?, b?, eps?): silu(group_norm(...)), one pass for inference (ops/norm.c) */
static int f_group_norm_silu(lua_State *L) { return group_norm_call(L, fl_group_norm_silu); }

static const lfl_reg functions[] = {
    {"layer_norm", f_layer_norm, 5},
    {"rms_norm", f_rms_norm, 4},
    {"group_norm", f_group_norm, 5},
    {"group_norm_silu", f_group_norm_silu, 5},
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_norm(lua_State *L) { lfl_setfuncs(L, functions); }
