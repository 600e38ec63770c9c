/* flame.F: dropout and attention: dropout, linear, scaled_dot_product_attention, flash_attention_varlen.
 * dropout and linear are C; the attention functions and the function forms of the
 * activations are Lua (lua/flame/nn_attention.lua), composed from these and the tensor ops. */
#include "lflame.h"

/* Pushes a dropout's result r of the tensor at index 1: the identity (r == x) as the same userdata, not a second
 * wrapper. */
static int push_dropped(lua_State *L, fl_tensor *x, fl_tensor *r) {
  if (r == x) {
    fl_release(r);
    lua_pushvalue(L, 1);
    return 1;
  }
  lfl_push(L, r);
  return 1;
}

/* dropout(x, p = 0.5, training = true): training false or p == 0 return x itself. */
static int f_dropout(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  double p = luaL_optnumber(L, 2, 0.5);
  bool training = true;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    training = lua_toboolean(L, 3);
  }
  LFL_CHECK(L, fl_dropout(x, p, training, &r));
  return push_dropped(L, x, r);
}

/* _attention_dropout(x, p): fl_attention_dropout (the byte rule's mask), for the reference attention's dropout;
 * always in training, p == 0 returns x itself. */
static int f_attention_dropout(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  LFL_CHECK(L, fl_attention_dropout(x, luaL_checknumber(L, 2), &r));
  return push_dropped(L, x, r);
}

/* linear(x, w, b?): y = x w^T + b, one GEMM with the bias fused (fl_linear). */
static int f_linear(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *w = lfl_check(L, 2), *b = lua_isnoneornil(L, 3) ? NULL : lfl_check(L, 3), *r;
  LFL_CHECK(L, fl_linear(x, w, b, &r));
  lfl_push(L, r);
  return 1;
}

/* _masked_softmax(s, mask?, shift?): fl_masked_softmax, for the Lua attention; shift nil: no causal limit. */
static int f_masked_softmax(lua_State *L) {
  fl_tensor *s = lfl_check(L, 1), *m = lua_isnoneornil(L, 2) ? NULL : lfl_check(L, 2), *r;
  bool causal = !lua_isnoneornil(L, 3);
  int64_t shift = causal ? (int64_t)luaL_checkinteger(L, 3) : 0;
  LFL_CHECK(L, fl_masked_softmax(s, m, causal, shift, &r));
  lfl_push(L, r);
  return 1;
}

/* _flash_attention(q, k, v, cu_q?, cu_k?, max_q, max_k, scale, causal, p): fl_flash_attention, for the Lua
 * attention's fused path (causal: 0 none, 1 top-left, 2 bottom-right; p already 0 outside training). */
static int f_flash_attention(lua_State *L) {
  fl_tensor *q = lfl_check(L, 1), *k = lfl_check(L, 2), *v = lfl_check(L, 3), *r;
  fl_tensor *cu_q = lua_isnoneornil(L, 4) ? NULL : lfl_check(L, 4), *cu_k = lua_isnoneornil(L, 5) ? NULL : lfl_check(L, 5);
  int64_t max_q = (int64_t)luaL_checkinteger(L, 6), max_k = (int64_t)luaL_checkinteger(L, 7);
  double scale = luaL_checknumber(L, 8), p = luaL_checknumber(L, 10);
  int causal = (int)luaL_checkinteger(L, 9);
  LFL_CHECK(L, fl_flash_attention(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, p, &r));
  lfl_push(L, r);
  return 1;
}

/* _flash_supported(q, k, v): whether the fused attention runs for these tensors' device, dtype and head dim. */
static int f_flash_supported(lua_State *L) {
  lua_pushboolean(L, fl_flash_attention_supported(lfl_check(L, 1), lfl_check(L, 2), lfl_check(L, 3)));
  return 1;
}

/* _flash_forward_kernel(q, k, v): the name of the fused forward kernel that would run, or nil. */
static int f_flash_forward_kernel(lua_State *L) {
  const char *name = fl_flash_attention_forward_kernel(lfl_check(L, 1), lfl_check(L, 2), lfl_check(L, 3));
  if (name) lua_pushstring(L, name);
  else lua_pushnil(L);
  return 1;
}

static const lfl_reg functions[] = {
    {"_attention_dropout", f_attention_dropout, 2},
    {"_flash_attention", f_flash_attention, 10},
    {"_flash_supported", f_flash_supported, 3},
    {"_flash_forward_kernel", f_flash_forward_kernel, 3},
    {"_masked_softmax", f_masked_softmax, 3},
    {"dropout", f_dropout, 3},
    {"linear", f_linear, 3},
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_attention(lua_State *L) { lfl_setfuncs(L, functions); }
