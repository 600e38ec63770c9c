/* flame.autograd._function(inputs, outputs, backward): records one autograd node whose backward is a
 * Lua function (what flame.utils.checkpoint is built on). The outputs are returned as new tensors (aliases of
 * the given ones) attached to the node; backward(g1, ..., gm) receives one gradient per output (nil where
 * none reached it) and returns one gradient (or nil) per input. It may run a backward pass of its own on a
 * graph disjoint from the outer one (the engine allows it while this node's backward runs). */
#include "autograd.h"
#include "lflame.h"
#include <stdlib.h>

lua_State *lfl_callback_state(const lfl_owned *o, const char *what); /* ltensor.c */

typedef struct {
  lfl_owned o; /* the main thread: the registry reference lives there (NULL once the state closed) */
  int ref;     /* the backward closure in the registry */
} lua_fn_ctx;

static void release_fn(void *p) {
  lua_fn_ctx *c = p;
  if (c->o.L && c->ref != LUA_NOREF) luaL_unref(c->o.L, LUA_REGISTRYINDEX, c->ref);
  c->ref = LUA_NOREF;
  lfl_disown(&c->o);
  c->o.L = NULL;
}

static fl_status lua_fn_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  lua_fn_ctx *c = n->ctx;
  lua_State *L = lfl_callback_state(&c->o, "backward function");
  if (!L) return FL_EINVAL;
  if (!lua_checkstack(L, n->n_out + 4)) return fl_error(FL_ENOMEM, "Lua stack overflow");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  for (int k = 0; k < n->n_out; k++) {
    if (gout[k]) lfl_push(L, fl_retain(gout[k]));
    else lua_pushnil(L);
  }
  bool prev = fl_allow_nested_backward(true);
  int rc = lua_pcall(L, n->n_out, n->n_in, 0);
  fl_allow_nested_backward(prev);
  if (rc != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fl_status st = fl_error(FL_EINVAL, "backward function failed: %s", msg ? msg : "(an error object that is not a string)");
    lua_pop(L, 1);
    return st;
  }
  fl_status st = FL_OK;
  for (int i = 0; i < n->n_in; i++) {
    int idx = -n->n_in + i;
    fl_tensor *g = lfl_test(L, idx);
    if (g) gin[i] = fl_retain(g);
    else if (!lua_isnil(L, idx)) {
      st = fl_error(FL_EINVAL, "backward function must return a tensor or nil for input %d, got a %s", i + 1,
                    luaL_typename(L, idx));
      break;
    }
  }
  lua_pop(L, n->n_in);
  if (st != FL_OK)
    for (int i = 0; i < n->n_in; i++) {
      fl_release(gin[i]);
      gin[i] = NULL;
    }
  return st;
}

/* Reads the array at idx into a malloc'd list of borrowed tensors. */
static fl_tensor **tensor_list(lua_State *L, int idx, const char *what, int *n) {
  luaL_checktype(L, idx, LUA_TTABLE);
  *n = (int)lua_rawlen(L, idx);
  fl_tensor **ts = calloc((size_t)*n + 1, sizeof *ts);
  if (!ts) luaL_error(L, "autograd._function: out of memory");
  for (int i = 0; i < *n; i++) {
    lua_rawgeti(L, idx, i + 1);
    ts[i] = lfl_test(L, -1);
    lua_pop(L, 1);
    if (!ts[i]) {
      free(ts);
      luaL_error(L, "autograd._function: %s[%d] is not a tensor", what, i + 1);
    }
  }
  return ts;
}

static int f_function(lua_State *L) {
  int n_in, n_out;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  fl_tensor **ins = tensor_list(L, 1, "inputs", &n_in);
  fl_tensor **outs = NULL;
  /* the outputs: aliases attached to the node, freed on every path below */
  if (!lua_istable(L, 2)) {
    free(ins);
    return luaL_typeerror(L, 2, "table of output tensors");
  }
  n_out = (int)lua_rawlen(L, 2);
  outs = calloc((size_t)n_out + 1, sizeof *outs);
  if (!outs) {
    free(ins);
    return luaL_error(L, "autograd._function: out of memory");
  }
  fl_status st = FL_OK;
  for (int k = 0; k < n_out && st == FL_OK; k++) {
    lua_rawgeti(L, 2, k + 1);
    fl_tensor *t = lfl_test(L, -1);
    lua_pop(L, 1);
    if (!t) st = fl_error(FL_EINVAL, "autograd._function: outputs[%d] is not a tensor", k + 1);
    else st = fl_detach(t, &outs[k]);
  }
  fl_node *node = NULL;
  if (st == FL_OK)
    st = fl_record_outputs("CheckpointBackward", lua_fn_backward, n_in, (const fl_tensor *const *)ins, n_out, outs,
                           &node);
  lua_fn_ctx *c = NULL;
  if (st == FL_OK && node) st = fl_node_ctx(node, sizeof *c, release_fn, (void **)&c);
  if (st == FL_OK && c) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    c->o.L = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, 3);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lfl_own(L, &c->o);
  }
  free(ins);
  if (st != FL_OK) {
    for (int k = 0; k < n_out; k++) fl_release(outs[k]);
    free(outs);
    return lfl_error(L);
  }
  lua_createtable(L, n_out, 0);
  for (int k = 0; k < n_out; k++) {
    lfl_push(L, outs[k]); /* takes the reference */
    lua_rawseti(L, -2, k + 1);
  }
  free(outs);
  return 1;
}

/* _rng_state() -> seed, offset and _set_rng_state(seed, offset): the generator's state as two integers
 * (the 64-bit patterns), for recomputations that must draw the same numbers. */
static int f_rng_state(lua_State *L) {
  uint64_t seed, offset;
  fl_philox_reserve(0, &seed, &offset);
  lua_pushinteger(L, (lua_Integer)seed);
  lua_pushinteger(L, (lua_Integer)offset);
  return 2;
}
static int f_set_rng_state(lua_State *L) {
  fl_rng_set_state((uint64_t)luaL_checkinteger(L, 1), (uint64_t)luaL_checkinteger(L, 2));
  return 0;
}

/* Adds _function, _rng_state and _set_rng_state to the flame.autograd table at -1. */
void lfl_open_autograd_fn(lua_State *L) {
  static const lfl_reg functions[] = {{"_function", f_function, 3}, {"_rng_state", f_rng_state, 0},
                                      {"_set_rng_state", f_set_rng_state, 2}, {NULL, NULL, 0}};
  lfl_setfuncs(L, functions);
}
