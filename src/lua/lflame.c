/* luaopen_flame: the module table, creation functions, autograd and devices. */
#include "lflame.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

extern const char *const fl_lua_sources[][2];
lua_State *lfl_hook_state(lua_State *L);

int lfl_f_tensor(lua_State *L); /* lfromlua.c */

/* ---- shape-taking creators: f(shape..., opts?) ---- */
/* The trailing options table, if any: a table with no array part that has
 * keys, or any table after a shape (a lone {} is the 0-dim shape). */
static int opts_index(lua_State *L, int first) {
  int top = lua_gettop(L);
  if (top < first || lua_type(L, top) != LUA_TTABLE || lua_rawlen(L, top) != 0 || lfl_is_shape(L, top)) return 0;
  lua_pushnil(L);
  bool has_keys = lua_next(L, top) != 0;
  if (has_keys) lua_pop(L, 2);
  return (has_keys || top > first) ? top : 0;
}

static int shape_and_opts(lua_State *L, int first, int64_t *shape, fl_opts *o) {
  int oi = opts_index(L, first), last = oi ? oi - 1 : lua_gettop(L);
  if (lua_type(L, first) == LUA_TTABLE && last > first) lfl_argextra(L, first + 1); /* a table is the whole shape */
  *o = oi ? lfl_opts(L, oi, fl_default_opts()) : fl_default_opts();
  return lfl_shape(L, first, last, shape);
}

typedef fl_status (*creator)(int, const int64_t *, fl_opts, fl_tensor **);
static int create(lua_State *L, creator fn) {
  int64_t shape[FL_MAX_DIMS];
  fl_opts o;
  int nd = shape_and_opts(L, 1, shape, &o);
  fl_tensor *t;
  LFL_CHECK(L, fn(nd, shape, o, &t));
  lfl_push(L, t);
  return 1;
}
static int f_zeros(lua_State *L) { return create(L, fl_zeros); }
static int f_ones(lua_State *L) { return create(L, fl_ones); }
static int f_empty(lua_State *L) { return create(L, fl_empty); }
static int f_rand(lua_State *L) { return create(L, fl_rand); }
static int f_randn(lua_State *L) { return create(L, fl_randn); }

static int f_full(lua_State *L) {
  int64_t shape[FL_MAX_DIMS];
  int nd = lfl_shape(L, 1, 1, shape);
  double v = lua_isboolean(L, 2) ? lua_toboolean(L, 2) : luaL_checknumber(L, 2);
  fl_opts o = fl_default_opts();
  if (lua_isboolean(L, 2)) o.dtype = FL_BOOL;
  else if (lua_isinteger(L, 2)) o.dtype = FL_I64;
  o = lfl_opts(L, 3, o);
  fl_tensor *t;
  LFL_CHECK(L, fl_full(nd, shape, v, o, &t));
  lfl_push(L, t);
  return 1;
}

static int f_arange(lua_State *L) {
  int top = lua_gettop(L);
  int nopt = (top >= 1 && lua_istable(L, top)) ? top : 0;
  int nnum = nopt ? top - 1 : top;
  double start = 0, stop, step = 1;
  if (nnum == 1) stop = luaL_checknumber(L, 1);
  else { /* step only from a third number: with (start, stop, opts) slot 3 is the options */
    start = luaL_checknumber(L, 1), stop = luaL_checknumber(L, 2);
    if (nnum >= 3) step = luaL_checknumber(L, 3);
  }
  fl_opts o = fl_default_opts();
  bool ints = true;
  for (int i = 1; i <= nnum; i++) ints = ints && lua_isinteger(L, i);
  o.dtype = ints ? FL_I64 : FL_F32;
  o = lfl_opts(L, nopt, o);
  fl_tensor *t;
  LFL_CHECK(L, fl_arange(start, stop, step, o, &t));
  lfl_push(L, t);
  return 1;
}

static int f_linspace(lua_State *L) {
  fl_tensor *t;
  LFL_CHECK(L, fl_linspace(luaL_checknumber(L, 1), luaL_checknumber(L, 2), luaL_checkinteger(L, 3),
                           lfl_opts(L, 4, fl_default_opts()), &t));
  lfl_push(L, t);
  return 1;
}

static int f_eye(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  int oi = 2;
  lua_Integer m = n;
  if (lua_isinteger(L, 2)) m = lua_tointeger(L, 2), oi = 3;
  fl_tensor *t;
  LFL_CHECK(L, fl_eye(n, m, lfl_opts(L, oi, fl_default_opts()), &t));
  lfl_push(L, t);
  return 1;
}

static int f_randint(lua_State *L) {
  lua_Integer lo = luaL_checkinteger(L, 1), hi = luaL_checkinteger(L, 2);
  int64_t shape[FL_MAX_DIMS];
  int nd = lfl_shape(L, 3, 3, shape);
  fl_opts o = fl_default_opts();
  o.dtype = FL_I64;
  o = lfl_opts(L, 4, o);
  fl_tensor *t;
  LFL_CHECK(L, fl_randint(lo, hi, nd, shape, o, &t));
  lfl_push(L, t);
  return 1;
}

/* zeros_like(t, opts) and friends */
static int like(lua_State *L) {
  fl_tensor *src = lfl_check(L, 1), *t;
  fl_opts o = {fl_dtype_of(src), fl_device_of(src), false};
  int which = (int)lua_tointeger(L, lua_upvalueindex(1));
  int oi = which == 5 ? 3 : 2;
  lfl_nargs(L, oi);
  o = lfl_opts(L, oi, o);
  fl_status st;
  switch (which) {
    case 0: st = fl_zeros(fl_ndim(src), fl_shape(src), o, &t); break;
    case 1: st = fl_ones(fl_ndim(src), fl_shape(src), o, &t); break;
    case 2: st = fl_empty(fl_ndim(src), fl_shape(src), o, &t); break;
    case 3: st = fl_rand(fl_ndim(src), fl_shape(src), o, &t); break;
    case 4: st = fl_randn(fl_ndim(src), fl_shape(src), o, &t); break;
    default: st = fl_full(fl_ndim(src), fl_shape(src), luaL_checknumber(L, 2), o, &t); break;
  }
  LFL_CHECK(L, st);
  lfl_push(L, t);
  return 1;
}

/* ---- lists of tensors ---- */
static int tensor_list(lua_State *L, int idx, fl_tensor ***out) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)lua_rawlen(L, idx);
  fl_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    ts[i] = lfl_test(L, -1);
    if (!ts[i]) luaL_error(L, "expected a list of tensors, element %d is a %s", i + 1, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  *out = ts;
  return n;
}

static int join(lua_State *L, bool stack) {
  fl_tensor **ts, *r;
  lua_settop(L, 2); /* tensor_list pushes its buffer: without a dim it would land in slot 2 */
  int n = tensor_list(L, 1, &ts);
  int dim = lua_isnoneornil(L, 2) ? 0 : lfl_dim(L, 2, n ? ts[0] : NULL, stack ? 1 : 0);
  LFL_CHECK(L, (stack ? fl_stack : fl_cat)(n, ts, dim, &r));
  lfl_push(L, r);
  return 1;
}
static int f_cat(lua_State *L) { return join(L, false); }
static int f_stack(lua_State *L) { return join(L, true); }

static int f_where(lua_State *L) {
  fl_tensor *c = lfl_check(L, 1);
  fl_tensor *a = lfl_test(L, 2), *b = lfl_test(L, 3);
  const fl_tensor *like_t = a ? a : b;
  lfl_check_operand(L, 2);
  lfl_check_operand(L, 3);
  if (!like_t) { /* two numbers: scalars on the condition's device, i64 when both are integers */
    fl_opts o = {lua_isinteger(L, 2) && lua_isinteger(L, 3) ? FL_I64 : FL_F32, fl_device_of(c), false};
    fl_tensor *proto;
    LFL_CHECK(L, fl_scalar(0, o, &proto));
    lfl_push(L, proto); /* owned by Lua: a raise below leaks nothing */
    like_t = proto;
  }
  fl_tensor *ta = lfl_operand(L, 2, like_t), *tb = lfl_operand(L, 3, like_t), *r;
  LFL_CHECK(L, fl_where(c, ta, tb, &r));
  lfl_push(L, r);
  return 1;
}

/* ---- random ---- */
static int f_manual_seed(lua_State *L) {
  fl_manual_seed((uint64_t)luaL_checkinteger(L, 1));
  return 0;
}

/* ---- autograd ---- */
static int f_no_grad(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  bool prev = fl_set_grad_enabled(false);
  int base = 1, n = lua_gettop(L) - 1;
  int st = lua_pcall(L, n, LUA_MULTRET, 0);
  fl_set_grad_enabled(prev);
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L) - base + 1;
}
static int f_set_grad_enabled(lua_State *L) {
  lua_pushboolean(L, fl_set_grad_enabled(lua_toboolean(L, 1)));
  return 1;
}
static int f_is_grad_enabled(lua_State *L) { return lua_pushboolean(L, fl_grad_enabled()), 1; }

/* ---- the op profiler (the Lua form, flame.profile, is in lua/flame/profile.lua) ---- */
static int f_profile_start(lua_State *L) {
  (void)L;
  fl_profile_start();
  return 0;
}
/* _profile_stop(device) -> {{name, seconds, calls}, ...} */
static int f_profile_stop(lua_State *L) {
  fl_device d = {FL_CPU, 0};
  if (!lua_isnoneornil(L, 1)) LFL_CHECK(L, fl_device_parse(luaL_checkstring(L, 1), &d));
  const fl_profile_entry *e;
  int n = fl_profile_stop(d, &e);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, e[i].name), lua_setfield(L, -2, "name");
    lua_pushnumber(L, e[i].seconds), lua_setfield(L, -2, "seconds");
    lua_pushinteger(L, e[i].calls), lua_setfield(L, -2, "calls");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---- autocast (the Lua forms are in lua/flame/autocast.lua) ---- */
static void push_autocast(lua_State *L, fl_dtype dt) {
  if (dt == FL_NDTYPES) lua_pushnil(L);
  else lua_pushstring(L, fl_dtype_name(dt));
}
/* _set_autocast(dtype name or nil) -> the previous one (nil: off) */
static int f_set_autocast(lua_State *L) {
  fl_dtype dt = FL_NDTYPES, prev;
  if (!lua_isnoneornil(L, 1)) {
    const char *s = luaL_checkstring(L, 1);
    if (fl_dtype_parse(s, &dt) != FL_OK || (dt != FL_BF16 && dt != FL_F16))
      return lua_pushfstring(L, "autocast: dtype must be \"bf16\" or \"f16\" (or false to turn it off), got \"%s\"", s),
             lua_error(L);
  }
  LFL_CHECK(L, fl_autocast_set(dt, &prev));
  return push_autocast(L, prev), 1;
}
static int f_get_autocast(lua_State *L) { return push_autocast(L, fl_autocast_get()), 1; }
/* _autocast_cast("lower" or "widen", ...) -> the arguments, tensors cast as the list's ops cast them */
static int f_autocast_cast(lua_State *L) {
  int list = luaL_checkoption(L, 1, NULL, (const char *const[]){"lower", "widen", NULL});
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++) {
    fl_tensor *t = lfl_test(L, i), *c;
    if (!t || !fl_autocast_wants(list, 1, (const fl_tensor *const[]){t})) continue;
    LFL_CHECK(L, fl_autocast_cast(list, 1, (const fl_tensor *const[]){t}, &c));
    lfl_push(L, c);
    lua_replace(L, i);
  }
  return n - 1;
}

/* Runs backward-like calls with the hook thread set, so Lua hooks run on L. */
static int f_grad(lua_State *L) {
  fl_tensor **outs, **ins, **gos = NULL;
  bool single_in = lfl_test(L, 2) != NULL;
  int no, ni, ngo = 0;
  if (lfl_test(L, 1)) lua_newtable(L), lua_pushvalue(L, 1), lua_rawseti(L, -2, 1), lua_replace(L, 1);
  if (single_in) lua_newtable(L), lua_pushvalue(L, 2), lua_rawseti(L, -2, 1), lua_replace(L, 2);
  if (lfl_test(L, 3)) lua_newtable(L), lua_pushvalue(L, 3), lua_rawseti(L, -2, 1), lua_replace(L, 3);
  no = tensor_list(L, 1, &outs);
  ni = tensor_list(L, 2, &ins);
  if (lua_istable(L, 3) && lua_rawlen(L, 3) > 0) {
    ngo = tensor_list(L, 3, &gos);
    if (ngo != no) return luaL_error(L, "autograd.grad: %d outputs but %d grad_outputs", no, ngo);
  }
  bool retain = false;
  static const char *const keys[] = {"retain_graph", NULL};
  int oi = lua_istable(L, 4) ? 4 : (lua_istable(L, 3) && lua_rawlen(L, 3) == 0 && !lfl_test(L, 3) ? 3 : 0);
  if (lfl_options(L, oi, keys)) lfl_rawfield(L, oi, "retain_graph"), retain = lua_toboolean(L, -1), lua_pop(L, 1);
  fl_tensor **grads = lua_newuserdatauv(L, sizeof *grads * (size_t)(ni ? ni : 1), 0);
  lua_State *prev = lfl_hook_state(L);
  fl_status st = fl_autograd_grad(no, outs, gos, ni, ins, retain, grads);
  lfl_hook_state(prev);
  LFL_CHECK(L, st);
  if (single_in) {
    if (grads[0]) lfl_push(L, grads[0]);
    else lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, ni, 0);
  for (int i = 0; i < ni; i++) {
    if (!grads[i]) continue;
    lfl_push(L, grads[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---- devices ---- */
static int f_cuda_is_available(lua_State *L) { return lua_pushboolean(L, fl_device_available(FL_CUDA)), 1; }
static int f_cuda_device_count(lua_State *L) { return lua_pushinteger(L, fl_device_count(FL_CUDA)), 1; }
static fl_device cuda_arg(lua_State *L, int idx) {
  fl_device d = {FL_CUDA, 0};
  if (lua_type(L, idx) == LUA_TSTRING) LFL_CHECK(L, fl_device_parse(lua_tostring(L, idx), &d));
  else if (lua_isinteger(L, idx)) d.index = lfl_device_ordinal(L, idx);
  return d;
}
static int f_cuda_synchronize(lua_State *L) {
  LFL_CHECK(L, fl_synchronize(cuda_arg(L, 1)));
  return 0;
}
static void push_stats(lua_State *L, fl_device d) {
  fl_memory_stats s;
  LFL_CHECK(L, fl_memory_stats_get(d, &s));
  lua_createtable(L, 0, 7);
#define F(k) lua_pushinteger(L, s.k), lua_setfield(L, -2, #k)
  F(allocated);
  F(reserved);
  F(peak);
  F(num_allocs);
  F(num_frees);
  F(num_cache_hits);
  F(num_ooms);
#undef F
}
static int f_cuda_memory_stats(lua_State *L) {
  push_stats(L, cuda_arg(L, 1));
  return 1;
}
static int f_cuda_empty_cache(lua_State *L) {
  LFL_CHECK(L, fl_empty_cache(cuda_arg(L, 1)));
  return 0;
}
static int f_cuda_allow_tf32(lua_State *L) {
  bool prev = fl_get_allow_tf32();
  if (!lua_isnone(L, 1)) fl_set_allow_tf32(lua_toboolean(L, 1));
  lua_pushboolean(L, prev);
  return 1;
}
/* flame.memory_stats(device?) for any device, cpu included */
static int f_memory_stats(lua_State *L) {
  fl_device d = FL_CPU_DEVICE;
  if (!lua_isnoneornil(L, 1)) LFL_CHECK(L, fl_device_parse(luaL_checkstring(L, 1), &d));
  push_stats(L, d);
  return 1;
}

#define LFL_BACKWARD_QUEUE "flame.backward_callbacks"

/* The callbacks queued during the running backward (flame.autograd.queue_callback): taken off the queue and
 * run, in order, when the outermost backward returns. */
static void run_queued(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, LFL_BACKWARD_QUEUE) != LUA_TTABLE || lua_rawlen(L, -1) == 0) {
    lua_pop(L, 1);
    return;
  }
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, LFL_BACKWARD_QUEUE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_call(L, 0, 0);
  }
  lua_pop(L, 1);
}

static int f_queue_callback(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (lua_getfield(L, LUA_REGISTRYINDEX, LFL_BACKWARD_QUEUE) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, LFL_BACKWARD_QUEUE);
  }
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

static _Thread_local int backward_depth; /* nested backward calls (a hook's own backward): callbacks wait for the outermost */

/* flame.autograd._running(): true inside a backward (its hooks, a checkpoint's recomputed forward). */
static int f_backward_running(lua_State *L) {
  lua_pushboolean(L, backward_depth > 0);
  return 1;
}

static int f_backward(lua_State *L) { /* wraps Tensor:backward so hooks run on this thread */
  lua_State *prev = lfl_hook_state(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  backward_depth++;
  int st = lua_pcall(L, lua_gettop(L) - 1, 0, 0);
  backward_depth--;
  lfl_hook_state(prev);
  if (st != LUA_OK) {
    if (backward_depth == 0) { /* a failed pass leaves no callbacks for the next one */
      lua_newtable(L);
      lua_setfield(L, LUA_REGISTRYINDEX, LFL_BACKWARD_QUEUE);
    }
    return lua_error(L);
  }
  if (backward_depth == 0) run_queued(L);
  return 0;
}

/* Monotonic wall-clock seconds (flame.timer(), and _now for bench/ scripts). */
static int f_now(lua_State *L) {
  lua_pushnumber(L, fl_now_s());
  return 1;
}

/* flame.set_num_threads(n) / flame.get_num_threads(): CPU threads for large ops */
static int f_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  LFL_CHECK(L, fl_set_num_threads(n < 0 ? 0 : n > INT32_MAX ? INT32_MAX : (int)n));
  return 0;
}
static int f_get_num_threads(lua_State *L) { return lua_pushinteger(L, fl_get_num_threads()), 1; }

int lfl_randperm(lua_State *L); /* lops_more.c */

static int f_is_tensor(lua_State *L) { return lua_pushboolean(L, lfl_test(L, 1) != NULL), 1; }

static const lfl_reg functions[] = {
    {"tensor", lfl_f_tensor, 2},    {"zeros", f_zeros, LFL_VARARGS},          {"ones", f_ones, LFL_VARARGS},
    {"empty", f_empty, LFL_VARARGS},             {"full", f_full, 3},          {"arange", f_arange, 4},
    {"linspace", f_linspace, 4},    {"eye", f_eye, 3},            {"rand", f_rand, LFL_VARARGS},
    {"randn", f_randn, LFL_VARARGS},             {"randint", f_randint, 4},    {"cat", f_cat, 2},
    {"stack", f_stack, 2},          {"where", f_where, 3},        {"manual_seed", f_manual_seed, 1},
    {"no_grad", f_no_grad, LFL_VARARGS},         {"set_grad_enabled", f_set_grad_enabled, 1},
    {"is_grad_enabled", f_is_grad_enabled, LFL_NOARGS},
    {"_set_autocast", f_set_autocast, 1}, {"get_autocast_dtype", f_get_autocast, LFL_NOARGS},
    {"_autocast_cast", f_autocast_cast, LFL_VARARGS},
    {"_profile_start", f_profile_start, LFL_NOARGS}, {"_profile_stop", f_profile_stop, 1},           {"memory_stats", f_memory_stats, 1},
    {"is_tensor", f_is_tensor, 1},  {"_now", f_now, LFL_NOARGS},
    {"timer", f_now, LFL_NOARGS},   {"randperm", lfl_randperm, 2},
    {"set_num_threads", f_set_num_threads, 1}, {"set_printoptions", lfl_set_printoptions, 1}, {"get_num_threads", f_get_num_threads, LFL_NOARGS}, {NULL, NULL, 0}};

static const lfl_reg cuda_functions[] = {{"is_available", f_cuda_is_available, LFL_NOARGS},
                                         {"device_count", f_cuda_device_count, LFL_NOARGS},
                                         {"synchronize", f_cuda_synchronize, 1},
                                         {"memory_stats", f_cuda_memory_stats, 1},
                                         {"empty_cache", f_cuda_empty_cache, 1},
                                         {"allow_tf32", f_cuda_allow_tf32, 1},
                                         {NULL, NULL, 0}};

static void open_embedded(lua_State *L) {
  for (int i = 0; fl_lua_sources[i][0]; i++) {
    const char *name = fl_lua_sources[i][0], *src = fl_lua_sources[i][1];
    if (luaL_loadbuffer(L, src, strlen(src), name) != LUA_OK) lua_error(L);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0); /* each piece extends the module table it is given */
  }
}

int luaopen_flame(lua_State *L) {
  fl_set_message_base(1); /* messages count dims and indices as Lua does */
  lfl_open_shape(L);
  lfl_open_tensor(L);
  lfl_open_memory(L);
  lua_newtable(L);
  lfl_setfuncs(L, functions);
  static const char *like_names[] = {"zeros_like", "ones_like", "empty_like", "rand_like", "randn_like", "full_like"};
  for (int i = 0; i < 6; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, like, 1);
    lua_setfield(L, -2, like_names[i]);
  }
  static const char *dtypes[][2] = {{"float32", "f32"}, {"float", "f32"}, {"float64", "f64"}, {"double", "f64"},
                                    {"float16", "f16"}, {"half", "f16"},  {"bfloat16", "bf16"}, {"int32", "i32"},
                                    {"int", "i32"},     {"int64", "i64"}, {"long", "i64"},     {"bool", "bool"},
                                    {"f32", "f32"},     {"f64", "f64"},   {"f16", "f16"},      {"bf16", "bf16"},
                                    {"i32", "i32"},     {"i64", "i64"}};
  for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++) {
    lua_pushstring(L, dtypes[i][1]);
    lua_setfield(L, -2, dtypes[i][0]);
  }
  lua_newtable(L);
  lfl_setfuncs(L, cuda_functions);
  lua_setfield(L, -2, "cuda");
  static const lfl_reg autograd_functions[] = {{"grad", f_grad, 4}, {"queue_callback", f_queue_callback, 1},
                                                   {"_running", f_backward_running, 0}, {NULL, NULL, 0}};
  lua_newtable(L);
  lfl_setfuncs(L, autograd_functions);
  lfl_open_autograd_fn(L);
  lua_setfield(L, -2, "autograd");
  lfl_open_nn(L);
  lfl_open_io(L);
  lfl_open_data(L);
  lfl_open_optim(L);
  lfl_open_dist(L);
  /* backward runs Lua hooks on the calling thread */
  lfl_push_methods(L);
  lua_getfield(L, -1, "backward");
  lua_pushcclosure(L, f_backward, 1);
  lua_setfield(L, -2, "backward");
  lua_setfield(L, -2, "_tensor_methods");
  lua_pushliteral(L, "0.1");
  lua_setfield(L, -2, "_VERSION");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "flame.module");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "flame");
  lua_pop(L, 1);
  lfl_mark_cfunctions(L, -1);
  lua_getfield(L, -1, "autograd");
  lfl_mark_cfunctions(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "F");
  lfl_mark_cfunctions(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "flame.cfunctions"); /* no_grad holds no tensor while it runs Lua */
  lua_getfield(L, -2, "no_grad");
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  open_embedded(L);
  return 1;
}
