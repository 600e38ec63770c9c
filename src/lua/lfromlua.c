/* flame.tensor(data, opts): a tensor from a number, a boolean, a nested table
 * or another tensor.
 *
 * Tables are read in one pass without recursion: the sizes come from the
 * first element at each depth, then an odometer walks the rows, keeping the
 * open tables on the Lua stack, and a tight loop reads each innermost row
 * with lua_rawgeti into an 8-byte slot per element. Slots hold int64 while
 * every value is an integer (exact beyond 2^53) and switch to double at the
 * first float. Error paths rebuild the element's position ("[2][3]") from the
 * odometer; nothing is formatted per element. */
#include "lflame.h"
#include <string.h>

typedef enum { K_NONE, K_INT, K_FLOAT, K_BOOL } kind;

typedef struct {
  int ndim;
  int64_t shape[FL_MAX_DIMS];
  int64_t at[FL_MAX_DIMS]; /* the 1-based position being read at each depth */
  union slot {
    int64_t i;
    double f;
  } *v;
  int64_t pos;
  kind k;
} reader;

static const char *path(lua_State *L, const reader *r, int depth) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int d = 0; d <= depth; d++) {
    lua_pushfstring(L, "[%I]", (lua_Integer)r->at[d]);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/* The table at the top is the row at depth d: checks its length. */
static void check_row(lua_State *L, const reader *r, int d) {
  lua_Unsigned n = lua_rawlen(L, -1);
  if ((int64_t)n != r->shape[d])
    luaL_error(L, "flame.tensor: ragged table at %s: expected %I entries, got %I", d ? path(L, r, d - 1) : "top level",
               (lua_Integer)r->shape[d], (lua_Integer)n);
}

/* Pushes element at[d] of the table at the top, which must be a table. */
static void open_row(lua_State *L, reader *r, int d) {
  if (lua_rawgeti(L, -1, r->at[d - 1]) != LUA_TTABLE)
    luaL_error(L, "flame.tensor: element %s is a %s, expected a table", path(L, r, d - 1), luaL_typename(L, -1));
  check_row(L, r, d);
}

static void to_float(reader *r) {
  for (int64_t i = 0; i < r->pos; i++) r->v[i].f = (double)r->v[i].i;
  r->k = K_FLOAT;
}

static void mixed(lua_State *L) { luaL_error(L, "flame.tensor: mixes booleans and numbers"); }

/* Reads the innermost row at the top of the stack. */
static void read_row(lua_State *L, reader *r) {
  int d = r->ndim - 1, t = lua_gettop(L);
  int64_t n = r->shape[d];
  for (int64_t i = 1; i <= n; i++) {
    int ty = lua_rawgeti(L, t, i);
    union slot *s = &r->v[r->pos];
    if (ty == LUA_TNUMBER) {
      if (r->k == K_BOOL) mixed(L);
      if (r->k != K_FLOAT && lua_isinteger(L, -1)) {
        s->i = lua_tointeger(L, -1);
        r->k = K_INT;
      } else {
        if (r->k != K_FLOAT) to_float(r);
        s->f = lua_tonumber(L, -1);
      }
    } else if (ty == LUA_TBOOLEAN) {
      if (r->k != K_NONE && r->k != K_BOOL) mixed(L);
      r->k = K_BOOL;
      s->i = lua_toboolean(L, -1);
    } else {
      r->at[d] = i;
      luaL_error(L, "flame.tensor: element %s is a %s, expected a number", path(L, r, d), luaL_typename(L, -1));
    }
    r->pos++;
    lua_pop(L, 1);
  }
}

/* Sizes from the first element at each depth (a table at idx). */
static void find_shape(lua_State *L, int idx, reader *r) {
  int top = lua_gettop(L);
  lua_pushvalue(L, idx);
  r->ndim = 0;
  while (lua_type(L, -1) == LUA_TTABLE) {
    if (r->ndim == FL_MAX_DIMS) luaL_error(L, "flame.tensor: nested deeper than %d dims", FL_MAX_DIMS);
    r->shape[r->ndim++] = (int64_t)lua_rawlen(L, -1);
    if (lua_rawlen(L, -1) == 0) break;
    lua_rawgeti(L, -1, 1);
  }
  lua_settop(L, top);
}

/* An empty tensor still has to be rectangular down to its first 0 size. */
static void check_empty(lua_State *L, reader *r, int d) {
  check_row(L, r, d);
  if (d + 1 >= r->ndim || r->shape[d] == 0) return;
  for (r->at[d] = 1; r->at[d] <= r->shape[d]; r->at[d]++) {
    open_row(L, r, d + 1);
    check_empty(L, r, d + 1);
    lua_pop(L, 1);
  }
}

static void read_all(lua_State *L, int idx, reader *r) {
  int nd = r->ndim;
  luaL_checkstack(L, nd + 8, "flame.tensor: nesting");
  lua_pushvalue(L, idx);
  check_row(L, r, 0);
  for (int d = 1; d < nd; d++) r->at[d - 1] = 1, open_row(L, r, d);
  for (;;) {
    read_row(L, r);
    lua_pop(L, 1);
    int d = nd - 2; /* the odometer: advance the deepest parent that has rows left */
    while (d >= 0 && r->at[d] == r->shape[d]) d--, lua_pop(L, 1);
    if (d < 0) return;
    r->at[d]++;
    open_row(L, r, d + 1);
    for (int k = d + 2; k < nd; k++) r->at[k - 1] = 1, open_row(L, r, k);
  }
}

static fl_status make(reader *r, fl_opts o, fl_tensor **out) {
  bool ints = r->k == K_INT || r->k == K_NONE;
  if (ints && (o.dtype == FL_I64 || o.dtype == FL_I32)) {
    /* integers go in as int64: through a double, i64 values beyond 2^53 would change */
    fl_opts io = {FL_I64, FL_CPU_DEVICE, false};
    fl_tensor *t64;
    fl_status st = fl_from_host(r->v, r->ndim, r->shape, io, &t64);
    if (st != FL_OK) return st;
    st = fl_to(t64, o.dtype, o.device, out);
    fl_release(t64);
    if (st == FL_OK && o.requires_grad && (st = fl_set_requires_grad(*out, true)) != FL_OK) fl_release(*out);
    return st;
  }
  if (r->k != K_FLOAT) to_float(r);
  return fl_from_doubles(&r->v[0].f, r->ndim, r->shape, o, out);
}

static int from_tensor(lua_State *L, fl_tensor *src) { /* flame.tensor(t, opts) copies */
  fl_opts o = {fl_dtype_of(src), fl_device_of(src), false};
  o = lfl_opts(L, 2, o);
  fl_tensor *r, *c;
  LFL_CHECK(L, fl_to(src, o.dtype, o.device, &r));
  fl_status st = fl_clone(r, &c);
  fl_release(r);
  LFL_CHECK(L, st);
  fl_tensor *d;
  st = fl_detach(c, &d);
  fl_release(c);
  LFL_CHECK(L, st);
  if (o.requires_grad) fl_set_requires_grad(d, true);
  lfl_push(L, d);
  return 1;
}

int lfl_f_tensor(lua_State *L) {
  fl_tensor *src = lfl_test(L, 1);
  if (src) return from_tensor(L, src);
  int ty = lua_type(L, 1);
  if (ty != LUA_TTABLE && ty != LUA_TNUMBER && ty != LUA_TBOOLEAN)
    return luaL_error(L, "flame.tensor: expected a number, a boolean or a nested table, got %s", luaL_typename(L, 1));
  lua_settop(L, 2); /* options stay at 2 */
  reader r = {0};
  int64_t n = 1;
  if (ty == LUA_TTABLE) {
    if (lfl_is_shape(L, 1)) { /* flame.tensor(x.shape): its sizes as a 1-D tensor */
      int64_t s[FL_MAX_DIMS];
      int k = lfl_sizes_at(L, 1, s, "flame.tensor");
      lua_createtable(L, k, 0);
      for (int i = 0; i < k; i++) lua_pushinteger(L, s[i]), lua_rawseti(L, -2, i + 1);
      lua_replace(L, 1);
    }
    find_shape(L, 1, &r);
    for (int i = 0; i < r.ndim; i++) n *= r.shape[i];
  } else {
    r.ndim = 0;
  }
  r.v = lua_newuserdatauv(L, sizeof *r.v * (size_t)(n ? n : 1), 0); /* freed by the GC, even on error */
  if (ty != LUA_TTABLE) {
    r.k = ty == LUA_TBOOLEAN ? K_BOOL : lua_isinteger(L, 1) ? K_INT : K_FLOAT;
    if (r.k == K_FLOAT) r.v[0].f = lua_tonumber(L, 1);
    else r.v[0].i = ty == LUA_TBOOLEAN ? lua_toboolean(L, 1) : lua_tointeger(L, 1);
  } else if (n == 0) {
    lua_pushvalue(L, 1);
    check_empty(L, &r, 0);
    lua_pop(L, 1);
  } else {
    read_all(L, 1, &r);
  }
  fl_opts o = fl_default_opts();
  o.dtype = r.k == K_BOOL ? FL_BOOL : (r.k == K_FLOAT || n == 0) ? FL_F32 : FL_I64; /* as torch.tensor infers */
  o = lfl_opts(L, 2, o);
  fl_tensor *t;
  LFL_CHECK(L, make(&r, o, &t));
  lfl_push(L, t);
  return 1;
}
