/* flame.F: index and losses: embedding and cross_entropy (the other losses are compositions in
 * lua/flame/nn_index.lua). Ids, class targets, padding_idx and ignore_index are 1-based, handed to C with base 1. */
#include "lflame.h"
#include <string.h>

/* embedding(ids, weight, {padding_idx}) */
static int f_embedding(lua_State *L) {
  fl_tensor *ids = lfl_check(L, 1), *w = lfl_check(L, 2), *r;
  int64_t pad = -1;
  static const char *const keys[] = {"padding_idx", NULL};
  if (lfl_options(L, 3, keys) && lfl_rawfield(L, 3, "padding_idx") != LUA_TNIL) {
    lua_Integer p = luaL_checkinteger(L, -1), rows = fl_ndim(w) == 2 ? fl_shape(w)[0] : 0;
    if (p == 0 || p > rows || p < -rows)
      return luaL_error(L, "embedding: padding_idx %I out of range for a weight of %I rows (1-based; negative counts "
                           "from the end)", (lua_Integer)p, (lua_Integer)rows);
    pad = p > 0 ? p - 1 : rows + p;
    lua_pop(L, 1);
  }
  LFL_CHECK(L, fl_embedding_ex(ids, w, pad, 1, &r));
  lfl_push(L, r);
  return 1;
}

/* The reduction at idx: a string, or the field of the options table there; "mean" when absent. */
static fl_loss_reduction reduction_at(lua_State *L, int idx, const char *fn) {
  if (lua_isnoneornil(L, idx)) return FL_LOSS_MEAN;
  const char *s = luaL_checkstring(L, idx);
  if (!strcmp(s, "mean")) return FL_LOSS_MEAN;
  if (!strcmp(s, "sum")) return FL_LOSS_SUM;
  if (!strcmp(s, "none")) return FL_LOSS_NONE;
  luaL_error(L, "%s: reduction must be \"mean\", \"sum\" or \"none\", got \"%s\"", fn, s);
  return FL_LOSS_MEAN;
}

/* cross_entropy(logits, target, {reduction, ignore_index, label_smoothing, weight}) or (logits, target, "sum") */
static int f_cross_entropy(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *t = lfl_check(L, 2), *r;
  fl_ce_opts o = {FL_LOSS_MEAN, true, -100, 0, NULL, 1};
  if (lua_type(L, 3) == LUA_TSTRING) {
    o.reduction = reduction_at(L, 3, "cross_entropy");
  } else {
    static const char *const keys[] = {"reduction", "ignore_index", "label_smoothing", "weight", NULL};
    if (lfl_options(L, 3, keys)) {
      lfl_rawfield(L, 3, "reduction");
      o.reduction = reduction_at(L, -1, "cross_entropy");
      if (lfl_rawfield(L, 3, "ignore_index") != LUA_TNIL) o.ignore_index = luaL_checkinteger(L, -1);
      if (lfl_rawfield(L, 3, "label_smoothing") != LUA_TNIL) o.label_smoothing = luaL_checknumber(L, -1);
      if (lfl_rawfield(L, 3, "weight") != LUA_TNIL) o.weight = lfl_check(L, -1);
      lua_pop(L, 4); /* the weight stays referenced by the options table */
    }
  }
  LFL_CHECK(L, fl_cross_entropy(x, t, &o, &r));
  lfl_push(L, r);
  return 1;
}

static const lfl_reg functions[] = {
    {"embedding", f_embedding, 3},
    {"cross_entropy", f_cross_entropy, 3},
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_index(lua_State *L) { lfl_setfuncs(L, functions); }
