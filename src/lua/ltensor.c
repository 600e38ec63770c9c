/* The tensor userdata: lifetime, properties, views, conversions, autograd. */
#include "lflame.h"
#include "internal.h" /* refcounts: whether a hook outlives its userdata */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lfl_register_ops(lua_State *L);
static void keep_hooks(lua_State *L, const fl_tensor *t);

/* True when this call is the collector finalizing the userdata. */
static bool finalizing(lua_State *L) {
  lua_Debug ar;
  return lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.namewhat && !strcmp(ar.namewhat, "metamethod") &&
         ar.name && !strcmp(ar.name, "__gc");
}

/* True when Lua code runs inside a flame C function (a hook inside backward,
 * an options table's __index, a finalizer stepped by an allocation), which may
 * hold the tensor's pointer until it returns. */
static bool inside_an_op(lua_State *L) {
  lua_Debug ar;
  lua_getfield(L, LUA_REGISTRYINDEX, "flame.cfunctions");
  bool inside = false;
  for (int level = 1; !inside && lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "nf", &ar);
    inside = lua_rawget(L, -2) != LUA_TNIL || (ar.namewhat && !strcmp(ar.namewhat, "metamethod") && ar.name &&
                                               !strcmp(ar.name, "__gc"));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return inside;
}

/* __gc and __close. An explicit release (a <close> variable, a direct call)
 * from Lua code running inside an op is deferred to the collector, which
 * finalizes the userdata only once no C function holds it on its stack. */
static int t_gc(lua_State *L) {
  fl_tensor **box = lfl_box(L, 1);
  if (!box) return luaL_typeerror(L, 1, "flame tensor");
  if (!finalizing(L)) {
    if (!box[0]) return 0; /* released already (or deferred: the collector's to do) */
    if (inside_an_op(L)) {
      box[1] = box[0];
      box[0] = NULL;
      return 0;
    }
  }
  keep_hooks(L, box[0] ? box[0] : box[1]);
  fl_release(box[0]);
  fl_release(box[1]);
  box[0] = box[1] = NULL;
  return 0;
}

/* Every flame C function that may run Lua code while holding a tensor
 * (everything but no_grad, which holds none), for inside_an_op. */
void lfl_mark_cfunctions(lua_State *L, int tbl) {
  tbl = lua_absindex(L, tbl);
  lua_getfield(L, LUA_REGISTRYINDEX, "flame.cfunctions");
  lua_pushnil(L);
  while (lua_next(L, tbl)) {
    if (lua_iscfunction(L, -1) && lua_tocfunction(L, -1) != t_gc) {
      lua_pushvalue(L, -1);
      lua_pushboolean(L, 1);
      lua_rawset(L, -5);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static fl_tensor *self(lua_State *L) { return lfl_check(L, 1); }

/* ---- metadata ---- */
static void push_shape(lua_State *L, const fl_tensor *t) { lfl_push_shape(L, fl_ndim(t), fl_shape(t)); }

static int dim_arg(lua_State *L, const fl_tensor *t, int idx) {
  return lfl_dim(L, idx, t, 0);
}

static int m_size(lua_State *L) {
  fl_tensor *t = self(L);
  if (lua_isnoneornil(L, 2)) {
    push_shape(L, t);
    return 1;
  }
  lua_pushinteger(L, fl_shape(t)[dim_arg(L, t, 2)]);
  return 1;
}
static int m_stride(lua_State *L) {
  fl_tensor *t = self(L);
  if (lua_isnoneornil(L, 2)) {
    lua_createtable(L, fl_ndim(t), 0);
    for (int i = 0; i < fl_ndim(t); i++) lua_pushinteger(L, fl_strides(t)[i]), lua_rawseti(L, -2, i + 1);
    return 1;
  }
  lua_pushinteger(L, fl_strides(t)[dim_arg(L, t, 2)]);
  return 1;
}
static int m_dim(lua_State *L) { return lua_pushinteger(L, fl_ndim(self(L))), 1; }
static int m_numel(lua_State *L) { return lua_pushinteger(L, fl_numel(self(L))), 1; }
static int m_element_size(lua_State *L) { return lua_pushinteger(L, (lua_Integer)fl_dtype_size(self(L)->dtype)), 1; }
static int m_is_contiguous(lua_State *L) { return lua_pushboolean(L, fl_is_contiguous(self(L))), 1; }

/* Host values: doubles, or int64 for integer dtypes (an i64 beyond 2^53 must
 * come back exact, which a double cannot hold). */
typedef union {
  double f;
  int64_t i;
} host_value;

static fl_status host_values(const fl_tensor *t, host_value *v) {
  fl_dtype dt = fl_dtype_of(t);
  if (fl_dtype_is_float(dt) || dt == FL_BOOL) return fl_to_doubles(t, (double *)v);
  fl_tensor *c;
  fl_status st = fl_to(t, FL_I64, FL_CPU_DEVICE, &c);
  if (st == FL_OK) {
    st = fl_to_host(c, v);
    fl_release(c);
  }
  return st;
}

static void push_value(lua_State *L, fl_dtype dt, host_value v) {
  if (dt == FL_BOOL) lua_pushboolean(L, v.f != 0);
  else if (!fl_dtype_is_float(dt)) lua_pushinteger(L, (lua_Integer)v.i);
  else lua_pushnumber(L, v.f);
}

static void push_item(lua_State *L, const fl_tensor *t) {
  host_value v;
  LFL_CHECK(L, host_values(t, &v));
  push_value(L, fl_dtype_of(t), v);
}

static int m_item(lua_State *L) {
  fl_tensor *t = self(L);
  double d;
  if (fl_numel(t) != 1) LFL_CHECK(L, fl_item(t, &d)); /* its error names the shape */
  push_item(L, t);
  return 1;
}

static void build_table(lua_State *L, const fl_tensor *t, const host_value *v, int d, int64_t *pos) {
  int64_t n = fl_shape(t)[d];
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    if (d == fl_ndim(t) - 1) push_value(L, fl_dtype_of(t), v[(*pos)++]);
    else build_table(L, t, v, d + 1, pos);
    lua_rawseti(L, -2, i + 1);
  }
}

static int m_totable(lua_State *L) {
  fl_tensor *t = self(L);
  int64_t n = fl_numel(t), pos = 0;
  if (n > INT32_MAX) { /* a Lua table holds at most 2^31 entries; the buffer size would overflow first */
    char sh[128];
    return luaL_error(L, "totable: a tensor of shape %s has too many elements (%I) for a Lua table", fl_shape_str(t, sh, sizeof sh), (lua_Integer)n);
  }
  host_value *v = lua_newuserdatauv(L, sizeof *v * (size_t)(n ? n : 1), 0); /* freed by the GC, even on error */
  LFL_CHECK(L, host_values(t, v));
  if (fl_ndim(t) == 0) push_value(L, fl_dtype_of(t), v[0]);
  else build_table(L, t, v, 0, &pos);
  return 1;
}

/* ---- conversions ---- */
static int convert(lua_State *L, fl_tensor *t, fl_dtype dt, fl_device dev) {
  fl_tensor *r;
  LFL_CHECK(L, fl_to(t, dt, dev, &r));
  lfl_push(L, r);
  return 1;
}

static int m_to(lua_State *L) {
  fl_tensor *t = self(L);
  fl_dtype dt = fl_dtype_of(t);
  fl_device dev = fl_device_of(t);
  if (lua_type(L, 2) == LUA_TSTRING) { /* a dtype or a device name */
    const char *s = lua_tostring(L, 2);
    if (fl_dtype_parse(s, &dt) != FL_OK && fl_device_parse(s, &dev) != FL_OK)
      return luaL_error(L, "to: '%s' is neither a dtype (f32, f64, f16, bf16, i32, i64, bool) nor a device (cpu, cuda, cuda:N)", s);
  } else if (lua_istable(L, 2)) {
    static const char *const keys[] = {"dtype", "device", NULL};
    fl_opts o = {dt, dev, false};
    o = lfl_opts_keys(L, 2, o, keys);
    dt = o.dtype, dev = o.device;
  } else if (!lua_isnoneornil(L, 2)) {
    return luaL_typeerror(L, 2, "dtype, device or options table");
  }
  return convert(L, t, dt, dev);
}

static int to_dtype(lua_State *L, fl_dtype dt) {
  fl_tensor *t = self(L);
  return convert(L, t, dt, fl_device_of(t));
}
static int m_float(lua_State *L) { return to_dtype(L, FL_F32); }
static int m_double(lua_State *L) { return to_dtype(L, FL_F64); }
static int m_half(lua_State *L) { return to_dtype(L, FL_F16); }
static int m_bfloat16(lua_State *L) { return to_dtype(L, FL_BF16); }
static int m_long(lua_State *L) { return to_dtype(L, FL_I64); }
static int m_int(lua_State *L) { return to_dtype(L, FL_I32); }
static int m_bool(lua_State *L) { return to_dtype(L, FL_BOOL); }
static int m_cpu(lua_State *L) {
  fl_tensor *t = self(L);
  return convert(L, t, fl_dtype_of(t), FL_CPU_DEVICE);
}
static int m_cuda(lua_State *L) {
  fl_tensor *t = self(L);
  fl_device d = {FL_CUDA, lua_isnoneornil(L, 2) ? 0 : lfl_device_ordinal(L, 2)};
  return convert(L, t, fl_dtype_of(t), d);
}

#define SIMPLE(name, call)          \
  static int m_##name(lua_State *L) { \
    fl_tensor *r;                   \
    LFL_CHECK(L, call(self(L), &r)); \
    lfl_push(L, r);                 \
    return 1;                       \
  }
SIMPLE(clone, fl_clone)
SIMPLE(detach, fl_detach)
SIMPLE(contiguous, fl_contiguous)

/* ---- views ---- */
static int m_view(lua_State *L) {
  fl_tensor *t = self(L), *r;
  int64_t shape[FL_MAX_DIMS];
  const char *which = lua_tostring(L, lua_upvalueindex(1));
  int n = lfl_sizes(L, 2, shape, which);
  LFL_CHECK(L, (which[0] == 'v' ? fl_view : fl_reshape)(t, n, shape, &r));
  lfl_push(L, r);
  return 1;
}

static int m_permute(lua_State *L) {
  fl_tensor *t = self(L), *r;
  int64_t given[FL_MAX_DIMS];
  int dims[FL_MAX_DIMS], n = lfl_sizes(L, 2, given, "permute");
  if (n != fl_ndim(t)) {
    char b[96];
    luaL_error(L, "permute: expected %d dims for a tensor of shape %s, got %d", fl_ndim(t), fl_shape_str(t, b, sizeof b), n);
  }
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, given[i]); /* validated like any other dim argument */
    dims[i] = lfl_dim(L, -1, t, 0);
    lua_pop(L, 1);
  }
  LFL_CHECK(L, fl_permute(t, dims, &r));
  lfl_push(L, r);
  return 1;
}

static int m_transpose(lua_State *L) {
  fl_tensor *t = self(L), *r;
  LFL_CHECK(L, fl_transpose(t, lfl_dim(L, 2, t, 0), lfl_dim(L, 3, t, 0), &r));
  lfl_push(L, r);
  return 1;
}
static int m_t(lua_State *L) {
  fl_tensor *t = self(L), *r;
  if (fl_ndim(t) > 2) {
    char b[96];
    return luaL_error(L, "t: expects a tensor with <= 2 dims, got shape %s", fl_shape_str(t, b, sizeof b));
  }
  LFL_CHECK(L, fl_ndim(t) < 2 ? fl_detach(t, &r) : fl_transpose(t, 0, 1, &r));
  if (fl_ndim(t) < 2) { /* keep autograd: a no-op view */
    fl_release(r);
    LFL_CHECK(L, fl_reshape(t, fl_ndim(t), fl_shape(t), &r));
  }
  lfl_push(L, r);
  return 1;
}

static int m_narrow(lua_State *L) {
  fl_tensor *t = self(L), *r;
  lua_Integer start = luaL_checkinteger(L, 3);
  if (start < 1) return luaL_error(L, "narrow: start %I is invalid (starts are 1-based)", (lua_Integer)start);
  LFL_CHECK(L, fl_narrow(t, lfl_dim(L, 2, t, 0), start - 1, luaL_checkinteger(L, 4), &r));
  lfl_push(L, r);
  return 1;
}

static int64_t index_arg(lua_State *L, lua_Integer i) {
  if (i == 0) luaL_error(L, "index 0 is invalid: indices are 1-based (negative ones count from the end)");
  return i > 0 ? i - 1 : i;
}

static int m_select(lua_State *L) {
  fl_tensor *t = self(L), *r;
  LFL_CHECK(L, fl_select(t, lfl_dim(L, 2, t, 0), index_arg(L, luaL_checkinteger(L, 3)), &r));
  lfl_push(L, r);
  return 1;
}

static int m_squeeze(lua_State *L) {
  fl_tensor *t = self(L), *r;
  LFL_CHECK(L, lua_isnoneornil(L, 2) ? fl_squeeze_all(t, &r) : fl_squeeze(t, lfl_dim(L, 2, t, 0), &r));
  lfl_push(L, r);
  return 1;
}
static int m_unsqueeze(lua_State *L) {
  fl_tensor *t = self(L), *r;
  LFL_CHECK(L, fl_unsqueeze(t, lfl_dim(L, 2, t, 1), &r));
  lfl_push(L, r);
  return 1;
}

static int m_expand(lua_State *L) {
  fl_tensor *t = self(L), *r;
  int64_t shape[FL_MAX_DIMS];
  int n;
  fl_tensor *like = lfl_test(L, 2);
  if (like) {
    lfl_nargs(L, 2);
    n = fl_ndim(like);
    memcpy(shape, fl_shape(like), sizeof(int64_t) * n);
  } else {
    n = lfl_sizes(L, 2, shape, "expand");
  }
  LFL_CHECK(L, fl_expand(t, n, shape, &r));
  lfl_push(L, r);
  return 1;
}

static int m_flatten(lua_State *L) {
  fl_tensor *t = self(L), *r;
  int s = lua_isnoneornil(L, 2) ? 0 : lfl_dim(L, 2, t, 0), e = lua_isnoneornil(L, 3) ? -1 : lfl_dim(L, 3, t, 0);
  LFL_CHECK(L, fl_flatten(t, s, e, &r));
  lfl_push(L, r);
  return 1;
}

static int m_flip(lua_State *L) {
  fl_tensor *t = self(L), *r;
  int64_t given[FL_MAX_DIMS];
  int dims[FL_MAX_DIMS], n = lfl_sizes(L, 2, given, "flip");
  for (int i = 0; i < n; i++) lua_pushinteger(L, given[i]), dims[i] = lfl_dim(L, -1, t, 0), lua_pop(L, 1);
  LFL_CHECK(L, fl_flip(t, n, dims, &r));
  lfl_push(L, r);
  return 1;
}

/* chunk(n, dim) and split(size, dim): tables of narrow views */
static int pieces(lua_State *L, bool by_count) {
  fl_tensor *t = self(L);
  lua_Integer k = luaL_checkinteger(L, 2);
  int d = lua_isnoneornil(L, 3) ? 0 : dim_arg(L, t, 3);
  if (fl_ndim(t) == 0) return luaL_error(L, "%s: cannot split a 0-dim tensor", by_count ? "chunk" : "split");
  if (k <= 0) return luaL_error(L, "%s: expected a positive %s, got %I", by_count ? "chunk" : "split", by_count ? "count" : "size", (lua_Integer)k);
  int64_t len = fl_shape(t)[d];
  int64_t size = by_count ? len / k + (len % k != 0) : k; /* len + k - 1 may overflow */
  lua_newtable(L);
  int i = 1;
  for (int64_t s = 0; s < len || (len == 0 && i == 1); s += size) {
    fl_tensor *r;
    int64_t l = len - s < size ? len - s : size;
    LFL_CHECK(L, fl_narrow(t, d, s, l, &r));
    lfl_push(L, r);
    lua_rawseti(L, -2, i++);
    if (size == 0) break;
  }
  return 1;
}
static int m_chunk(lua_State *L) { return pieces(L, true); }
static int m_split(lua_State *L) { return pieces(L, false); }

/* ---- in place ---- */
static int m_fill_(lua_State *L) {
  LFL_CHECK(L, fl_fill_(self(L), luaL_checknumber(L, 2)));
  lua_settop(L, 1);
  return 1;
}
static int m_zero_(lua_State *L) {
  LFL_CHECK(L, fl_zero_(self(L)));
  lua_settop(L, 1);
  return 1;
}
static int m_copy_(lua_State *L) {
  fl_tensor *t = self(L), *src = lfl_operand(L, 2, t);
  LFL_CHECK(L, fl_copy_(t, src));
  lua_settop(L, 1);
  return 1;
}
static int m_uniform_(lua_State *L) {
  LFL_CHECK(L, fl_uniform_(self(L), luaL_optnumber(L, 2, 0), luaL_optnumber(L, 3, 1)));
  lua_settop(L, 1);
  return 1;
}
static int m_normal_(lua_State *L) {
  LFL_CHECK(L, fl_normal_(self(L), luaL_optnumber(L, 2, 0), luaL_optnumber(L, 3, 1)));
  lua_settop(L, 1);
  return 1;
}

/* ---- autograd ---- */
static int m_backward(lua_State *L) {
  fl_tensor *t = self(L), *g = lfl_test(L, 2);
  int opt = (g || lua_isnil(L, 2)) ? 3 : 2; /* backward(grad, opts), backward(nil, opts) or backward(opts) */
  if (!g && lua_istable(L, 2)) opt = 2;
  else if (!g && !lua_isnoneornil(L, 2)) return luaL_typeerror(L, 2, "gradient tensor or options table");
  bool retain = false;
  static const char *const keys[] = {"retain_graph", NULL};
  if (lfl_options(L, lua_istable(L, opt) ? opt : 0, keys)) {
    lfl_rawfield(L, opt, "retain_graph");
    retain = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  LFL_CHECK(L, fl_backward(t, g, retain));
  return 0;
}

static int m_retain_grad(lua_State *L) {
  LFL_CHECK(L, fl_retain_grad(self(L)));
  lua_settop(L, 1);
  return 1;
}

static int m_requires_grad_(lua_State *L) {
  LFL_CHECK(L, fl_set_requires_grad(self(L), lua_isnone(L, 2) ? true : lua_toboolean(L, 2)));
  lua_settop(L, 1);
  return 1;
}

/* Hooks call back into Lua from inside backward: the thread that called
 * backward is the one to run them on.
 *
 * A hook closure that captures its own tensor makes a cycle through C (tensor
 * -> node -> hook -> closure -> tensor userdata) that Lua's collector cannot
 * see. So the closure is held strongly only by the user value of the userdata
 * it was registered on, and the hook finds it through a weak-valued registry
 * table: when that userdata becomes garbage, so does the closure. When the
 * userdata lets go of a tensor whose node lives on (other references, a graph
 * that still needs it), keep_hooks moves its closures to a strong table: they
 * must keep running, and no cycle is left once the userdata is gone. */
#define HOOKS_WEAK "flame.hooks"      /* light userdata hook -> closure, weak values */
#define HOOKS_KEPT "flame.hooks.kept" /* the same, strong: hooks that outlive their userdata */
#define HOOKS_SELF "flame.hooks.self" /* post-accumulate hooks -> the userdata they were registered through, weak */
typedef struct {
  lfl_owned o; /* the state it was made in (NULL once closed: the hook does nothing) */
  bool gone;   /* its closure was collected: the hook does nothing */
  bool post;   /* a post-accumulate hook: its argument is the tensor itself */
} lua_hook;
static _Thread_local lua_State *running_L;
lua_State *lfl_hook_state(lua_State *L) {
  lua_State *prev = running_L;
  running_L = L;
  return prev;
}

/* The Lua thread to run o's callback on: the one running backward when it is
 * of o's state, else o's main thread (backward called from C). A callback of
 * another state must not run here (its registry is not this one, and that
 * state may be running on another thread): an error. */
lua_State *lfl_callback_state(const lfl_owned *o, const char *what) {
  if (!o->L) {
    fl_error(FL_EINVAL, "%s: the Lua state it was made in is closed", what);
    return NULL;
  }
  if (!running_L) return o->L;
  lua_rawgeti(running_L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(running_L, -1);
  lua_pop(running_L, 1);
  if (main == o->L) return running_L;
  fl_error(FL_EINVAL, "%s: it was made in another Lua state than the one running backward", what);
  return NULL;
}

static bool push_hook_fn(lua_State *L, lua_hook *h) {
  static const char *const tables[] = {HOOKS_WEAK, HOOKS_KEPT};
  for (int i = 0; i < 2; i++) {
    lua_getfield(L, LUA_REGISTRYINDEX, tables[i]);
    if (lua_rawgetp(L, -1, h) != LUA_TNIL) {
      lua_remove(L, -2);
      return true;
    }
    lua_pop(L, 2);
  }
  return false;
}

/* A post-accumulate hook gets the userdata it was registered through while that lives (the hook runs once per
 * parameter and step: no new userdata to make and finalize each time, and the script's own tensor); else, and
 * for the gradient hooks, a new one. */
static void push_hook_arg(lua_State *L, const lua_hook *h, fl_tensor *t) {
  if (h->post) {
    lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_SELF);
    lua_rawgetp(L, -1, h);
    lua_remove(L, -2);
    if (lfl_test(L, -1) == t) return;
    lua_pop(L, 1);
  }
  lfl_push(L, fl_retain(t));
}

static fl_status run_lua_hook(void *ud, fl_tensor *grad, fl_tensor **replace) {
  lua_hook *h = ud;
  if (h->gone || !h->o.L) return FL_OK;
  lua_State *L = lfl_callback_state(&h->o, "hook");
  if (!L) return FL_EINVAL;
  if (!push_hook_fn(L, h)) {
    /* Its userdata is garbage, but its finalizer (which may keep the hook)
     * has not run yet: run pending finalizers, then look again. */
    lua_gc(L, LUA_GCCOLLECT);
    if (!push_hook_fn(L, h)) {
      h->gone = true;
      return FL_OK;
    }
  }
  push_hook_arg(L, h, grad);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fl_status st = msg ? fl_error(FL_EINVAL, "hook failed: %s", msg)
                       : fl_error(FL_EINVAL, "hook failed: error object is a %s value", luaL_typename(L, -1));
    lua_pop(L, 1);
    return st;
  }
  fl_tensor *r = lfl_test(L, -1);
  if (r) *replace = fl_retain(r);
  else if (!lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return fl_error(FL_EINVAL, "hook must return nil or a tensor");
  }
  lua_pop(L, 1);
  return FL_OK;
}

static void free_lua_hook(void *ud) {
  lua_hook *h = ud;
  static const char *const tables[] = {HOOKS_WEAK, HOOKS_KEPT, HOOKS_SELF};
  for (int i = 0; i < 3 && h->o.L; i++) { /* (a state that closed has dropped its tables) */
    lua_getfield(h->o.L, LUA_REGISTRYINDEX, tables[i]);
    lua_pushnil(h->o.L);
    lua_rawsetp(h->o.L, -2, h);
    lua_pop(h->o.L, 1);
  }
  lfl_disown(&h->o);
  free(h);
}

/* The userdata at 1 lets go of t: hooks registered through it move to the
 * strong table when t or its node outlives it. */
static void keep_hooks(lua_State *L, const fl_tensor *t) {
  if (!t || lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  const fl_node *n = t->grad_fn ? t->grad_fn : t->acc;
  if (t->refcount > 1 || (n && n->refcount > 1)) {
    lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEPT);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1);
}

typedef fl_status (*hook_register_fn)(fl_tensor *t, fl_hook_fn fn, void *ud, void (*free_ud)(void *));
static int register_lua_hook(lua_State *L, hook_register_fn reg, const char *op) {
  fl_tensor *t = self(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) { /* 3: the closures this userdata keeps */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_WEAK); /* 4 */
  lua_hook *h = malloc(sizeof *h);
  if (!h) return luaL_error(L, "%s: out of memory", op);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  h->o.L = lua_tothread(L, -1);
  h->gone = false;
  h->post = reg == fl_register_post_accumulate_grad_hook;
  lua_pop(L, 1);
  lfl_own(L, &h->o);
  lua_pushvalue(L, 2);
  lua_rawsetp(L, 4, h); /* a memory error in these two leaks h, never frees it twice */
  lua_pushvalue(L, 2);
  lua_rawsetp(L, 3, h);
  if (h->post) {
    lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_SELF);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, -2, h);
    lua_pop(L, 1);
  }
  if (reg(t, run_lua_hook, h, free_lua_hook) != FL_OK) {
    free_lua_hook(h);
    return lfl_error(L);
  }
  return 0;
}

static int m_register_hook(lua_State *L) { return register_lua_hook(L, fl_register_hook, "register_hook"); }
/* fn(p) after a backward stored p.grad (the hook gets the tensor, not the gradient, and returns nothing). */
static int m_register_post_accumulate_grad_hook(lua_State *L) {
  return register_lua_hook(L, fl_register_post_accumulate_grad_hook, "register_post_accumulate_grad_hook");
}

static int m_is_set_to(lua_State *L) {
  lua_pushboolean(L, fl_is_set_to(self(L), lfl_check(L, 2)));
  return 1;
}

/* ---- properties and integer indexing ---- */
static int t_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) { /* methods first, before any check: every x:op() comes through here */
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  fl_tensor *t = self(L);
  if (lua_isinteger(L, 2)) {
    fl_tensor *r;
    LFL_CHECK(L, fl_select(t, 0, index_arg(L, lua_tointeger(L, 2)), &r));
    lfl_push(L, r);
    return 1;
  }
  const char *k = luaL_checkstring(L, 2); /* a number converts: the methods table has no such key */
  char buf[32];
  if (!strcmp(k, "shape")) push_shape(L, t);
  else if (!strcmp(k, "dtype")) lua_pushstring(L, fl_dtype_name(fl_dtype_of(t)));
  else if (!strcmp(k, "device")) fl_device_name(fl_device_of(t), buf, sizeof buf), lua_pushstring(L, buf);
  else if (!strcmp(k, "requires_grad")) lua_pushboolean(L, fl_requires_grad(t));
  else if (!strcmp(k, "is_leaf")) lua_pushboolean(L, fl_is_leaf(t));
  else if (!strcmp(k, "grad")) {
    fl_tensor *g = fl_grad(t);
    if (g) lfl_push(L, fl_retain(g));
    else lua_pushnil(L);
  } else if (!strcmp(k, "grad_fn")) {
    const char *n = fl_grad_fn_name(t);
    if (n) lua_pushstring(L, n);
    else lua_pushnil(L);
  } else if (!strcmp(k, "ndim")) lua_pushinteger(L, fl_ndim(t));
  else if (!strcmp(k, "is_cuda")) lua_pushboolean(L, fl_device_of(t).type == FL_CUDA);
  else if (!strcmp(k, "T")) {
    fl_tensor *r;
    int perm[FL_MAX_DIMS];
    for (int i = 0; i < fl_ndim(t); i++) perm[i] = fl_ndim(t) - 1 - i;
    LFL_CHECK(L, fl_permute(t, perm, &r));
    lfl_push(L, r);
  } else lua_pushnil(L);
  return 1;
}

static int t_newindex(lua_State *L) {
  fl_tensor *t = self(L);
  if (lua_isinteger(L, 2)) { /* t[i] = x copies into the slice */
    fl_tensor *s, *src = lfl_test(L, 3);
    double v = src ? 0 : luaL_checknumber(L, 3); /* before the view, which would leak on a raise */
    LFL_CHECK(L, fl_select(t, 0, index_arg(L, lua_tointeger(L, 2)), &s));
    fl_status st = src ? fl_copy_(s, src) : fl_fill_(s, v);
    fl_release(s);
    LFL_CHECK(L, st);
    return 0;
  }
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "requires_grad")) LFL_CHECK(L, fl_set_requires_grad(t, lua_toboolean(L, 3)));
  else if (!strcmp(k, "grad")) LFL_CHECK(L, fl_set_grad(t, lua_isnil(L, 3) ? NULL : lfl_check(L, 3)));
  else return luaL_error(L, "tensor: cannot set field '%s' (settable: requires_grad, grad)", k);
  return 0;
}

static int t_len(lua_State *L) {
  fl_tensor *t = self(L);
  if (fl_ndim(t) == 0) return luaL_error(L, "#: a 0-dim tensor has no length");
  lua_pushinteger(L, fl_shape(t)[0]);
  return 1;
}

/* loss < 1, 1 <= loss, loss < x: a one-element tensor compares as its value,
 * as training loops write it; several elements need the elementwise :lt. */
static void push_compared(lua_State *L, int idx) {
  fl_tensor *t = lfl_test(L, idx);
  if (!t) return lua_pushvalue(L, idx);
  if (!lfl_check(L, idx) || fl_numel(t) != 1) {
    char b[96];
    luaL_error(L, "compare: a tensor of shape %s in <, <=, > or >= must hold one element "
               "(compare elementwise with :lt, :le, :gt or :ge)", fl_shape_str(t, b, sizeof b));
  }
  push_item(L, t);
}

static int compare(lua_State *L, int op) {
  push_compared(L, 1);
  push_compared(L, 2);
  if (lua_type(L, -1) != LUA_TNUMBER || lua_type(L, -2) != LUA_TNUMBER)
    return luaL_error(L, "compare: cannot order a %s and a %s", luaL_typename(L, -2), luaL_typename(L, -1));
  lua_pushboolean(L, lua_compare(L, -2, -1, op));
  return 1;
}
static int t_lt(lua_State *L) { return compare(L, LUA_OPLT); }
static int t_le(lua_State *L) { return compare(L, LUA_OPLE); }

/* "loss " .. loss: the tensor as tostring prints it. */
static int t_concat(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  luaL_tolstring(L, 2, NULL);
  lua_concat(L, 2);
  return 1;
}

static int t_eq(lua_State *L) { /* identity: Lua wants a boolean; elementwise is :eq */
  lua_pushboolean(L, lfl_test(L, 1) == lfl_test(L, 2));
  return 1;
}

/* Operators: a tensor on either side, a number on the other (the metamethod
 * gets them in source order; the methods take care of which is which). */
int lfl_op_add(lua_State *L);
int lfl_op_sub(lua_State *L);
int lfl_op_mul(lua_State *L);
int lfl_op_div(lua_State *L);
int lfl_op_pow(lua_State *L);
static int t_unm(lua_State *L) {
  fl_tensor *r;
  LFL_CHECK(L, fl_unary(FL_NEG, self(L), &r));
  lfl_push(L, r);
  return 1;
}

/* With the most arguments each reads, self included (0: counts its own). */
static const lfl_reg methods[] = {
    {"size", m_size, 2}, {"stride", m_stride, 2}, {"dim", m_dim, 1}, {"numel", m_numel, 1},
    {"nelement", m_numel, 1}, {"element_size", m_element_size, 1}, {"is_contiguous", m_is_contiguous, 1},
    {"item", m_item, 1},
    {"totable", m_totable, 1}, {"to", m_to, 2}, {"float", m_float, 1}, {"double", m_double, 1},
    {"half", m_half, 1}, {"bfloat16", m_bfloat16, 1}, {"long", m_long, 1}, {"int", m_int, 1},
    {"bool", m_bool, 1}, {"cpu", m_cpu, 1}, {"cuda", m_cuda, 2}, {"clone", m_clone, 1}, {"detach", m_detach, 1},
    {"contiguous", m_contiguous, 1}, {"permute", m_permute, LFL_VARARGS}, {"transpose", m_transpose, 3}, {"t", m_t, 1},
    {"narrow", m_narrow, 4}, {"select", m_select, 3}, {"squeeze", m_squeeze, 2}, {"unsqueeze", m_unsqueeze, 2},
    {"expand", m_expand, LFL_VARARGS}, {"expand_as", m_expand, 2}, {"flatten", m_flatten, 3}, {"flip", m_flip, LFL_VARARGS},
    {"chunk", m_chunk, 3}, {"split", m_split, 3}, {"fill_", m_fill_, 2}, {"zero_", m_zero_, 1},
    {"copy_", m_copy_, 2}, {"uniform_", m_uniform_, 3}, {"normal_", m_normal_, 3}, {"backward", m_backward, 3},
    {"retain_grad", m_retain_grad, 1}, {"requires_grad_", m_requires_grad_, 2},
    {"register_hook", m_register_hook, 2}, {"register_post_accumulate_grad_hook", m_register_post_accumulate_grad_hook, 2},
    {"is_set_to", m_is_set_to, 2}, {NULL, NULL, 0}};

void lfl_push_methods(lua_State *L) { lua_getfield(L, LUA_REGISTRYINDEX, "flame.methods"); }

void lfl_open_tensor(lua_State *L) {
  /* once per state (the module may be reloaded while tensors and hooks of the first load live on) */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "flame.cfunctions");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, HOOKS_KEPT);
  static const char *const weak[] = {HOOKS_WEAK, HOOKS_SELF};
  for (int i = 0; i < 2; i++)
    if (!luaL_getsubtable(L, LUA_REGISTRYINDEX, weak[i])) {
      lua_createtable(L, 0, 1);
      lua_pushliteral(L, "v");
      lua_setfield(L, -2, "__mode");
      lua_setmetatable(L, -2);
    }
  lua_pop(L, 4);
  lua_newtable(L); /* methods */
  lfl_setfuncs(L, methods);
  lfl_register_ops(L);
  lua_pushliteral(L, "view");
  lua_pushcclosure(L, m_view, 1);
  lua_setfield(L, -2, "view");
  lua_pushliteral(L, "reshape");
  lua_pushcclosure(L, m_view, 1);
  lua_setfield(L, -2, "reshape");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "flame.methods");

  luaL_newmetatable(L, LFL_TENSOR);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &lfl_tensor_mt);
  const luaL_Reg meta[] = {{"__gc", t_gc},   {"__close", t_gc}, {"__tostring", lfl_tostring}, {"__newindex", t_newindex},
                           {"__len", t_len}, {"__eq", t_eq},   {"__add", lfl_op_add},        {"__sub", lfl_op_sub},
                           {"__mul", lfl_op_mul}, {"__div", lfl_op_div}, {"__pow", lfl_op_pow},             {"__unm", t_unm},
                           {"__lt", t_lt}, {"__le", t_le}, {"__concat", t_concat},
                           {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, t_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "flame.Tensor");
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "flame.Tensor"); /* getmetatable(t) gives the name: a script cannot reach __gc or replace methods */
  lua_setfield(L, -2, "__metatable");
  lfl_mark_cfunctions(L, -1);
  lfl_mark_cfunctions(L, -2);
  lua_pop(L, 2);
}
