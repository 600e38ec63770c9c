/* flame.F: dropout and attention: dropout, linear, scaled_dot_product_attention, flash_attention_varlen.
 * dropout and linear are C; the attention functions and the function forms of the
 * activations are Lua (lua/flame/nn_attention.lua), composed from these and the tensor ops. */
#include "lflame.h"

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
  if (r == x) { /* the identity: the same userdata, not a second wrapper */
    fl_release(r);
    lua_pushvalue(L, 1);
    return 1;
  }
  lfl_push(L, r);
  return 1;
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

static const lfl_reg functions[] = {
    {"_masked_softmax", f_masked_softmax, 3},
    {"dropout", f_dropout, 3},
    {"linear", f_linear, 3},
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_attention(lua_State *L) { lfl_setfuncs(L, functions); }
