/* The fused optimizer kernels behind flame.optim (lua/flame/optim.lua): the multi-tensor step of SGD / Adam /
 * AdamW, the total norm of many tensors, the clip scaling and the EMA lerp, as flame.optim._step, _norm, _clip
 * and _lerp. The Lua side keeps the state and the options; these pass lists of tensors to one C call. */
#include "lflame.h"
#include <math.h>
#include <string.h>

/* The tensors of the list at idx (n of them; nil entries allowed where may_nil) as an array that Lua's GC owns
 * (a userdata left on the stack), so a raise below leaks nothing. The tensors stay referenced by the list. */
static fl_tensor **tensor_list(lua_State *L, int idx, int n, const char *what, bool may_nil) {
  fl_tensor **a = lua_newuserdatauv(L, sizeof(fl_tensor *) * (size_t)(n > 0 ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    a[i] = lfl_test(L, -1);
    if (!a[i] && !(may_nil && lua_isnil(L, -1)))
      luaL_error(L, "flame.optim: %s %d is a %s, not a tensor", what, i + 1, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  return a;
}

static int list_len(lua_State *L, int idx, const char *what) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Unsigned n = lua_rawlen(L, idx);
  if (n > 1u << 30) luaL_error(L, "flame.optim: too many %s", what);
  return (int)n;
}

/* An optional list field of the options table at o: NULL when absent. */
static fl_tensor *const *field_list(lua_State *L, int o, const char *key, int n, bool may_nil) {
  if (lfl_rawfield(L, o, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  int at = lua_gettop(L);
  if (list_len(L, at, key) != n) luaL_error(L, "flame.optim: %s has %d entries, expected %d", key,
                                            (int)lua_rawlen(L, at), n);
  return tensor_list(L, at, n, key, may_nil); /* the list and the array stay on the stack */
}

static double num_field(lua_State *L, int o, const char *key, double dflt) {
  int t = lfl_rawfield(L, o, key);
  double v = t == LUA_TNIL ? dflt : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static bool bool_field(lua_State *L, int o, const char *key) {
  lfl_rawfield(L, o, key);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* _step{kind = "sgd" | "adam", params, grads, buf1, buf2, buf3, steps, lr, weight_decay, momentum, dampening,
 * beta1, beta2, eps, maximize, nesterov, first, decoupled, amsgrad} */
static int o_step(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  fl_optim_args a;
  memset(&a, 0, sizeof a);
  lfl_rawfield(L, 1, "kind");
  const char *kind = luaL_checkstring(L, -1);
  a.kind = strcmp(kind, "sgd") == 0 ? FL_OPTIM_SGD : FL_OPTIM_ADAM;
  lua_pop(L, 1);
  lfl_rawfield(L, 1, "params");
  a.n = list_len(L, -1, "params");
  fl_tensor **params = tensor_list(L, lua_gettop(L), a.n, "parameter", false);
  a.params = params;
  a.grads = (const fl_tensor *const *)field_list(L, 1, "grads", a.n, false);
  a.buf1 = field_list(L, 1, "buf1", a.n, true);
  a.buf2 = field_list(L, 1, "buf2", a.n, true);
  a.buf3 = field_list(L, 1, "buf3", a.n, true);
  if (!a.grads) luaL_error(L, "flame.optim: no gradients given");
  int64_t *steps = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(a.n > 0 ? a.n : 1), 0);
  if (lfl_rawfield(L, 1, "steps") == LUA_TTABLE) {
    for (int i = 0; i < a.n; i++) {
      lua_rawgeti(L, -1, i + 1);
      steps[i] = (int64_t)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
  } else {
    for (int i = 0; i < a.n; i++) steps[i] = 1;
  }
  lua_pop(L, 1);
  a.steps = steps;
  a.lr = num_field(L, 1, "lr", 0), a.weight_decay = num_field(L, 1, "weight_decay", 0);
  a.momentum = num_field(L, 1, "momentum", 0), a.dampening = num_field(L, 1, "dampening", 0);
  a.beta1 = num_field(L, 1, "beta1", 0.9), a.beta2 = num_field(L, 1, "beta2", 0.999);
  a.eps = num_field(L, 1, "eps", 1e-8);
  a.maximize = bool_field(L, 1, "maximize"), a.nesterov = bool_field(L, 1, "nesterov");
  a.first = bool_field(L, 1, "first"), a.decoupled = bool_field(L, 1, "decoupled");
  a.amsgrad = bool_field(L, 1, "amsgrad");
  LFL_CHECK(L, fl_optim_step(&a));
  return 0;
}

/* _norm(list, p): the total p-norm as a 0-dim tensor (p may be math.huge). */
static int o_norm(lua_State *L) {
  int n = list_len(L, 1, "tensors");
  double p = luaL_checknumber(L, 2);
  fl_tensor **xs = tensor_list(L, 1, n, "tensor", false), *r;
  LFL_CHECK(L, fl_multi_norm(n, (const fl_tensor *const *)xs, p, &r));
  lfl_push(L, r);
  return 1;
}

/* _clip(list, norm, max_norm): every tensor *= min(1, max_norm / (norm + 1e-6)), on the device. */
static int o_clip(lua_State *L) {
  int n = list_len(L, 1, "tensors");
  fl_tensor *norm = lfl_check(L, 2);
  double max_norm = luaL_checknumber(L, 3);
  fl_tensor **xs = tensor_list(L, 1, n, "tensor", false);
  LFL_CHECK(L, fl_multi_clip(n, xs, norm, max_norm));
  return 0;
}

/* _lerp(dst, src, w): dst[i] -= w * (dst[i] - src[i]). */
static int o_lerp(lua_State *L) {
  int n = list_len(L, 1, "averages");
  if (list_len(L, 2, "parameters") != n) luaL_error(L, "flame.optim: %d averages for %d parameters", n,
                                                      (int)lua_rawlen(L, 2));
  double w = luaL_checknumber(L, 3);
  fl_tensor **d = tensor_list(L, 1, n, "average", false), **s = tensor_list(L, 2, n, "parameter", false);
  LFL_CHECK(L, fl_multi_lerp(n, d, (const fl_tensor *const *)s, w));
  return 0;
}

static const lfl_reg functions[] = {
    {"_step", o_step, 1},
    {"_norm", o_norm, 2},
    {"_clip", o_clip, 3},
    {"_lerp", o_lerp, 3},
    {NULL, NULL, 0},
};

/* Fills the flame module table at -1: flame.optim with the kernels (the Lua side adds the classes). */
void lfl_open_optim(lua_State *L) {
  lua_newtable(L);
  lfl_setfuncs(L, functions);
  lua_setfield(L, -2, "optim");
}
