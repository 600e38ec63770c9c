/* Binding helpers shared by every Lua-facing function. */
#include "lflame.h"
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

int lfl_error(lua_State *L) { return luaL_error(L, "%s", fl_last_error()); }

/* The tensor metatable is also kept in the registry under this light userdata key. Every tensor argument is
 * checked against it (lfl_box), and luaL_testudata's check (a lookup by name in the registry, then a compare)
 * was a sixth of the instructions of a host's call on 64-element tensors (bench/host_call.c). */
const char lfl_tensor_mt = 0;

void lfl_push(lua_State *L, fl_tensor *t) {
  /* box[0]: the tensor (NULL once released); box[1]: one whose release was
   * deferred to the collector (see t_gc in ltensor.c) */
  fl_tensor **box = lua_newuserdatauv(L, 2 * sizeof *box, 1);
  box[0] = t;
  box[1] = NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lfl_tensor_mt);
  lua_setmetatable(L, -2);
}

/* The last tensor metatable this thread confirmed, valid while no state has closed since (closes counts them):
 * a userdata whose metatable is that table is a tensor without the registry lookup. Objects never cross
 * states, so a match is right whichever live state the table belongs to; a closed state's memory may be
 * reused for another table, which is why a close forgets every thread's entry. */
static atomic_uint closes;
static _Thread_local struct {
  const void *mt;
  unsigned gen;
} known;

void lfl_forget_metatables(void) { atomic_fetch_add_explicit(&closes, 1, memory_order_release); }

fl_tensor **lfl_box(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (!p || !lua_getmetatable(L, idx)) return NULL;
  const void *mt = lua_topointer(L, -1);
  unsigned gen = atomic_load_explicit(&closes, memory_order_acquire);
  if (mt == known.mt && gen == known.gen) {
    lua_pop(L, 1);
    return p;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lfl_tensor_mt);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same) return NULL;
  known.mt = mt, known.gen = gen;
  return p;
}

fl_tensor *lfl_test(lua_State *L, int idx) {
  fl_tensor **box = lfl_box(L, idx);
  return box ? *box : NULL;
}

fl_tensor *lfl_check(lua_State *L, int idx) {
  fl_tensor **box = lfl_box(L, idx);
  if (!box) luaL_typeerror(L, idx, "flame tensor");
  if (!*box) luaL_argerror(L, idx, "tensor already released (a to-be-closed variable went out of scope)");
  return *box;
}

void lfl_check_operand(lua_State *L, int idx) {
  if (!lfl_test(L, idx) && !lua_isnumber(L, idx) && !lua_isboolean(L, idx)) luaL_typeerror(L, idx, "flame tensor or number");
}

int lfl_device_ordinal(lua_State *L, int idx) {
  lua_Integer i = luaL_checkinteger(L, idx);
  if (i < 0 || i > INT_MAX) luaL_argerror(L, idx, lua_pushfstring(L, "device ordinal %I out of range", (lua_Integer)i));
  return (int)i;
}

fl_tensor *lfl_operand(lua_State *L, int idx, const fl_tensor *like) {
  fl_tensor *t = lfl_test(L, idx);
  if (t) return t;
  idx = lua_absindex(L, idx);
  lfl_check_operand(L, idx);
  double v = lua_isboolean(L, idx) ? lua_toboolean(L, idx) : lua_tonumber(L, idx);
  fl_opts o = fl_default_opts();
  if (like) {
    o.device = fl_device_of(like);
    o.dtype = fl_dtype_of(like);
    if (!fl_dtype_is_float(o.dtype) && (lua_isnumber(L, idx) && !lua_isinteger(L, idx))) o.dtype = FL_F32;
  }
  fl_tensor *r;
  LFL_CHECK(L, fl_scalar(v, o, &r));
  lfl_push(L, r);
  lua_replace(L, idx);
  return r;
}


static const char *const opt_keys[] = {"dtype", "device", "requires_grad", NULL};

fl_opts lfl_opts_keys(lua_State *L, int idx, fl_opts o, const char *const *keys) {
  idx = lfl_options(L, idx, keys);
  if (!idx) return o;
  const char *fn = lfl_fname(L, NULL);
  if (lfl_rawfield(L, idx, "dtype") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: option dtype must be a string like \"f32\", got a %s", fn, luaL_typename(L, -1));
    LFL_CHECK(L, fl_dtype_parse(lua_tostring(L, -1), &o.dtype));
  }
  if (lfl_rawfield(L, idx, "device") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: option device must be a string like \"cuda\", got a %s", fn, luaL_typename(L, -1));
    LFL_CHECK(L, fl_device_parse(lua_tostring(L, -1), &o.device));
  }
  if (lfl_rawfield(L, idx, "requires_grad") != LUA_TNIL) o.requires_grad = lua_toboolean(L, -1);
  lua_pop(L, 3);
  return o;
}

fl_opts lfl_opts(lua_State *L, int idx, fl_opts o) { return lfl_opts_keys(L, idx, o, opt_keys); }

int lfl_shape(lua_State *L, int first, int last, int64_t *shape) {
  int n;
  if (first <= last && lua_type(L, first) == LUA_TTABLE) {
    n = lfl_sizes_at(L, first, shape, "shape");
  } else {
    n = last - first + 1;
    if (n < 0) n = 0;
    if (n > FL_MAX_DIMS) luaL_error(L, "shape: at most %d dims, got %d", FL_MAX_DIMS, n);
    for (int i = 0; i < n; i++) {
      int ok;
      shape[i] = lua_tointegerx(L, first + i, &ok);
      if (!ok) luaL_error(L, "shape: expected integer sizes, got %s", luaL_typename(L, first + i));
    }
  }
  for (int i = 0; i < n; i++)
    if (shape[i] < 0) luaL_error(L, "shape: negative size %I", (lua_Integer)shape[i]);
  return n;
}

/* The one dim rule of the Lua surface: 1..n, or -n..-1 from the end. */
static int dim_of(lua_State *L, int idx, lua_Integer d, const fl_tensor *t, int extra) {
  int n = (t ? fl_ndim(t) : 0) + extra;
  if (n < 1) n = 1; /* a 0-dim tensor takes dim 1 or -1, as in torch */
  const char *msg = NULL;
  if (d == 0) msg = "dim 0 is invalid: dims are 1-based (1 is the first, -1 the last)";
  else if (d > n || d < -n) { /* the shape's text only for the message: formatting it is most of a size() call */
    char shape[128] = "?";
    if (t) {
      size_t k = (size_t)snprintf(shape, sizeof shape, "%s", fl_dtype_name(fl_dtype_of(t)));
      fl_shape_str(t, shape + k, sizeof shape - k);
    }
    msg = lua_pushfstring(L, "dim %I out of range for %s (expected 1..%d or -%d..-1; dims are 1-based)", (lua_Integer)d,
                          shape, n, n);
  }
  if (msg) luaL_argerror(L, idx, msg);
  return d > 0 ? (int)(d - 1) : (int)(d + n);
}

int lfl_dim(lua_State *L, int idx, const fl_tensor *t, int extra) {
  return dim_of(L, idx, luaL_checkinteger(L, idx), t, extra);
}

uint32_t lfl_dims_mask(lua_State *L, int idx, const fl_tensor *t) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_isinteger(L, idx)) return fl_ndim(t) ? 1u << lfl_dim(L, idx, t, 0) : 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  uint32_t m = 0;
  int n = (int)lua_rawlen(L, idx);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (!lua_isinteger(L, -1)) luaL_error(L, "dims: expected integers, got %s", luaL_typename(L, -1));
    if (fl_ndim(t)) m |= 1u << dim_of(L, idx, lua_tointeger(L, -1), t, 0);
    lua_pop(L, 1);
  }
  if (n == 0) luaL_error(L, "dims: empty table (pass nil to reduce over all dims)");
  return m;
}

/* ---- the embedding API (include/flame_lua.h) ---- */
void flame_lua_push(lua_State *L, fl_tensor *t) { lfl_push(L, t); }
fl_tensor *flame_lua_totensor(lua_State *L, int idx) { return lfl_test(L, idx); }
