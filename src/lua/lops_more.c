/* Bindings of the everyday extras: sorting (sort, argsort, topk, randperm),
 * triangles, all/any, logsumexp and the NaN/closeness tests. Indices come
 * back 1-based: the kernels write them with base 1, no extra pass. */
#include "lflame.h"
#include <math.h>

/* Fields of the options table at oi (lfl_options: 0 when absent), read raw. */
static bool opt_bool(lua_State *L, int oi, const char *key, bool def) {
  if (!oi) return def;
  bool v = lfl_rawfield(L, oi, key) == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}
static double opt_number(lua_State *L, int oi, const char *key, double def) {
  if (!oi) return def;
  int t = lfl_rawfield(L, oi, key);
  if (t != LUA_TNIL && t != LUA_TNUMBER)
    luaL_error(L, "%s: option %s must be a number, got %s", lfl_fname(L, NULL), key, lua_typename(L, t));
  double v = t == LUA_TNIL ? def : lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}
static const char *const sort_keys[] = {"descending", "stable", NULL}; /* always stable */
static const char *const topk_keys[] = {"largest", "sorted", NULL};    /* always sorted */
static const char *const close_keys[] = {"rtol", "atol", "equal_nan", NULL};

/* dim argument at idx, -1 (the last) when absent */
static int dim_or_last(lua_State *L, int idx, const fl_tensor *x) {
  return lua_isnoneornil(L, idx) ? (fl_ndim(x) ? fl_ndim(x) - 1 : 0) : lfl_dim(L, idx, x, 0);
}

/* sort(dim?, {descending}) -> values, indices */
static int m_sort(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *v, *i;
  int dim = dim_or_last(L, 2, x), oi = lfl_options(L, 3, sort_keys);
  LFL_CHECK(L, fl_sort_ex(x, dim, opt_bool(L, oi, "descending", false), 1, &v, &i));
  lfl_push(L, v);
  lfl_push(L, i);
  return 2;
}

/* argsort(dim?, {descending}) -> indices */
static int m_argsort(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *i;
  int dim = dim_or_last(L, 2, x), oi = lfl_options(L, 3, sort_keys);
  LFL_CHECK(L, fl_sort_ex(x, dim, opt_bool(L, oi, "descending", false), 1, NULL, &i));
  lfl_push(L, i);
  return 1;
}

/* topk(k, dim?, {largest = true, sorted = true}) -> values, indices (always sorted) */
static int m_topk(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *v, *i;
  lua_Integer k = luaL_checkinteger(L, 2);
  int dim = dim_or_last(L, 3, x), oi = lfl_options(L, 4, topk_keys);
  LFL_CHECK(L, fl_topk_ex(x, k, dim, opt_bool(L, oi, "largest", true), 1, &v, &i));
  lfl_push(L, v);
  lfl_push(L, i);
  return 2;
}

static int triangle(lua_State *L, fl_status (*fn)(const fl_tensor *, int64_t, fl_tensor **)) {
  fl_tensor *x = lfl_check(L, 1), *r;
  LFL_CHECK(L, fn(x, luaL_optinteger(L, 2, 0), &r));
  lfl_push(L, r);
  return 1;
}
static int m_tril(lua_State *L) { return triangle(L, fl_tril); }
static int m_triu(lua_State *L) { return triangle(L, fl_triu); }

/* all/any/logsumexp(dims?, keepdim?) */
static int reduce_like(lua_State *L, fl_status (*fn)(const fl_tensor *, uint32_t, bool, fl_tensor **)) {
  fl_tensor *x = lfl_check(L, 1), *r;
  LFL_CHECK(L, fn(x, lfl_dims_mask(L, 2, x), lua_toboolean(L, 3), &r));
  lfl_push(L, r);
  return 1;
}
static int m_all(lua_State *L) { return reduce_like(L, fl_all); }
static int m_any(lua_State *L) { return reduce_like(L, fl_any); }
static int m_logsumexp(lua_State *L) { return reduce_like(L, fl_logsumexp); }

static int m_isnan(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, fl_isnan(lfl_check(L, 1), &r));
  lfl_push(L, r);
  return 1;
}
static int m_isinf(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, fl_isinf(lfl_check(L, 1), &r));
  lfl_push(L, r);
  return 1;
}

/* nan_to_num(nan = 0, posinf?, neginf?): nil keeps the dtype's largest / lowest finite value */
static int m_nan_to_num(lua_State *L) {
  fl_tensor *x = lfl_check(L, 1), *r;
  double v[3];
  for (int k = 0; k < 3; k++) v[k] = lua_isnoneornil(L, 2 + k) ? NAN : luaL_checknumber(L, 2 + k);
  LFL_CHECK(L, fl_nan_to_num(x, v[0], v[1], v[2], &r));
  lfl_push(L, r);
  return 1;
}

/* isclose(a, b, {rtol = 1e-5, atol = 1e-8, equal_nan = false}); b may be a number */
static fl_status closeness(lua_State *L, bool all, fl_tensor **r, bool *b) {
  int oi = lfl_options(L, 3, close_keys);
  double rtol = opt_number(L, oi, "rtol", 1e-5), atol = opt_number(L, oi, "atol", 1e-8);
  bool equal_nan = opt_bool(L, oi, "equal_nan", false);
  fl_tensor *x = lfl_check(L, 1), *y = lfl_operand(L, 2, x); /* borrowed */
  return all ? fl_allclose(x, y, rtol, atol, equal_nan, b) : fl_isclose(x, y, rtol, atol, equal_nan, r);
}
static int m_isclose(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, closeness(L, false, &r, NULL));
  lfl_push(L, r);
  return 1;
}
static int m_allclose(lua_State *L) {
  bool b;
  LFL_CHECK(L, closeness(L, true, NULL, &b));
  lua_pushboolean(L, b);
  return 1;
}

/* With the most arguments each reads, self included. */
static const lfl_reg more[] = {{"sort", m_sort, 3},           {"argsort", m_argsort, 3},     {"topk", m_topk, 4},
                               {"tril", m_tril, 2},           {"triu", m_triu, 2},           {"all", m_all, 3},
                               {"any", m_any, 3},             {"logsumexp", m_logsumexp, 3}, {"isnan", m_isnan, 1},
                               {"isinf", m_isinf, 1},         {"nan_to_num", m_nan_to_num, 4},
                               {"isclose", m_isclose, 3},     {"allclose", m_allclose, 3},   {NULL, NULL, 0}};

/* Adds the methods to the methods table at -1. */
void lfl_register_more(lua_State *L) { lfl_setfuncs(L, more); }

/* flame.randperm(n, opts): a permutation of 1..n from the seeded generator */
int lfl_randperm(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  fl_opts o = fl_default_opts();
  o.dtype = FL_I64;
  o = lfl_opts(L, 2, o);
  fl_tensor *r;
  LFL_CHECK(L, fl_randperm_ex(n, 1, o, &r));
  lfl_push(L, r);
  return 1;
}
