/* flame.distributed's C part: the rendezvous, communicators as userdata and the collectives, as
 * flame.distributed._rendezvous, _unique_id, _comm, and the comm's methods. The Lua side
 * (lua/flame/distributed.lua) reads the environment, keeps the default group and builds DDP on these. */
#include "lflame.h"
#include <string.h>

#define LFL_COMM "flame.comm"

typedef struct {
  fl_comm *c;
} comm_ud;

static fl_comm *check_comm(lua_State *L, int idx) {
  comm_ud *u = luaL_checkudata(L, idx, LFL_COMM);
  if (!u->c) luaL_error(L, "distributed: the communicator was destroyed");
  return u->c;
}

static fl_device device_arg(lua_State *L, int idx) {
  fl_device d;
  if (fl_device_parse(luaL_checkstring(L, idx), &d) != FL_OK) lfl_error(L);
  return d;
}

/* _rendezvous(addr, port, rank, world, blob or nil, timeout) -> blob (rank 0's) */
static int d_rendezvous(lua_State *L) {
  const char *addr = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2), rank = (int)luaL_checkinteger(L, 3), world = (int)luaL_checkinteger(L, 4);
  size_t n = 0;
  const char *blob = luaL_optlstring(L, 5, "", &n);
  double timeout = luaL_optnumber(L, 6, 300);
  size_t cap = lua_isnoneornil(L, 7) ? n : (size_t)luaL_checkinteger(L, 7); /* the size the others expect */
  char *buf = lua_newuserdatauv(L, cap ? cap : 1, 0);
  if (rank == 0) memcpy(buf, blob, n < cap ? n : cap);
  LFL_CHECK(L, fl_rendezvous(addr, port, rank, world, buf, cap, timeout));
  lua_pushlstring(L, buf, cap);
  return 1;
}

/* _free_port(addr = "127.0.0.1") -> a TCP port free now (for specs and scripts that start several jobs) */
static int d_free_port(lua_State *L) {
  int port;
  LFL_CHECK(L, fl_free_port(luaL_optstring(L, 1, "127.0.0.1"), &port));
  lua_pushinteger(L, port);
  return 1;
}

/* _unique_id(device) -> the id's bytes (empty where world 1 needs none) */
static int d_unique_id(lua_State *L) {
  char id[512];
  size_t n = 0;
  LFL_CHECK(L, fl_comm_unique_id(device_arg(L, 1), id, sizeof id, &n));
  lua_pushlstring(L, id, n);
  return 1;
}

/* _comm(device, id, rank, world) -> communicator */
static int d_comm(lua_State *L) {
  fl_device dev = device_arg(L, 1);
  size_t n;
  const char *id = luaL_checklstring(L, 2, &n);
  int rank = (int)luaL_checkinteger(L, 3), world = (int)luaL_checkinteger(L, 4);
  comm_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->c = NULL;
  luaL_setmetatable(L, LFL_COMM);
  LFL_CHECK(L, fl_comm_init(dev, id, n, rank, world, &u->c));
  return 1;
}

static int c_gc(lua_State *L) {
  comm_ud *u = luaL_checkudata(L, 1, LFL_COMM);
  fl_comm_destroy(u->c);
  u->c = NULL;
  return 0;
}

static fl_red_op red_op(lua_State *L, int idx) {
  static const char *const names[] = {"sum", "avg", "max", "min", NULL};
  return (fl_red_op)luaL_checkoption(L, idx, "sum", names);
}

/* comm:all_reduce(t, op, async): async queues it without ordering later work after it (comm:join does) */
static int c_all_reduce(lua_State *L) {
  fl_comm *c = check_comm(L, 1);
  fl_tensor *t = lfl_check(L, 2);
  fl_red_op op = red_op(L, 3);
  LFL_CHECK(L, lua_toboolean(L, 4) ? fl_all_reduce_async(c, t, op) : fl_all_reduce(c, t, op));
  lua_settop(L, 2);
  return 1;
}

static int c_join(lua_State *L) {
  LFL_CHECK(L, fl_comm_join(check_comm(L, 1)));
  return 0;
}

static int c_broadcast(lua_State *L) {
  LFL_CHECK(L, fl_broadcast(check_comm(L, 1), lfl_check(L, 2), (int)luaL_checkinteger(L, 3)));
  lua_settop(L, 2);
  return 1;
}

static int c_all_gather(lua_State *L) {
  LFL_CHECK(L, fl_all_gather(check_comm(L, 1), lfl_check(L, 2), lfl_check(L, 3)));
  lua_settop(L, 3);
  return 1;
}

static int c_reduce_scatter(lua_State *L) {
  LFL_CHECK(L, fl_reduce_scatter(check_comm(L, 1), lfl_check(L, 2), lfl_check(L, 3), red_op(L, 4)));
  lua_settop(L, 3);
  return 1;
}

static int c_wait(lua_State *L) {
  LFL_CHECK(L, fl_comm_wait(check_comm(L, 1), luaL_optnumber(L, 2, 0)));
  return 0;
}

static int c_rank(lua_State *L) { return lua_pushinteger(L, fl_comm_rank(check_comm(L, 1))), 1; }
static int c_size(lua_State *L) { return lua_pushinteger(L, fl_comm_size(check_comm(L, 1))), 1; }

/* _bind_grads(params, views): each params[i].grad becomes views[i] (DistributedDataParallel's bucket slot), holding
 * what it held (zeros when it had none; nothing to do when it is the view already). All the copies in one
 * fl_multi_copy: one launch on CUDA for a bucket, where a copy each was a launch each. In C because it runs for
 * every parameter and step, and reading p.grad from Lua makes a userdata each time. */
static int d_bind_grads(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)lua_rawlen(L, 1);
  if ((int)lua_rawlen(L, 2) != n) return luaL_error(L, "_bind_grads: %d parameters for %d views", n, (int)lua_rawlen(L, 2));
  fl_tensor **dst = lua_newuserdatauv(L, sizeof(fl_tensor *) * 2 * (size_t)(n > 0 ? n : 1), 0); /* freed by the GC */
  fl_tensor **src = dst + n;
  int m = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    lua_rawgeti(L, 2, i);
    fl_tensor *p = lfl_check(L, -2), *v = lfl_check(L, -1), *g = fl_grad(p);
    lua_pop(L, 2);
    if (g && fl_is_set_to(g, v)) continue;
    if (g) dst[m] = v, src[m++] = g;
    else LFL_CHECK(L, fl_zero_(v));
  }
  LFL_CHECK(L, fl_multi_copy(m, dst, (const fl_tensor *const *)src));
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    lua_rawgeti(L, 2, i);
    fl_tensor *p = lfl_check(L, -2), *v = lfl_check(L, -1), *g = fl_grad(p);
    lua_pop(L, 2);
    if (!(g && fl_is_set_to(g, v))) LFL_CHECK(L, fl_set_grad(p, v));
  }
  return 0;
}

static const lfl_reg functions[] = {
    {"_rendezvous", d_rendezvous, 7},
    {"_unique_id", d_unique_id, 1},
    {"_free_port", d_free_port, 1},
    {"_comm", d_comm, 4},
    {"_bind_grads", d_bind_grads, 2},
    {NULL, NULL, 0},
};

/* Fills the flame module table at -1: flame.distributed with the C part (the Lua side adds the rest). */
void lfl_open_dist(lua_State *L) {
  static const luaL_Reg methods[] = {{"all_reduce", c_all_reduce}, {"broadcast", c_broadcast},
                                     {"all_gather", c_all_gather}, {"reduce_scatter", c_reduce_scatter},
                                     {"wait", c_wait},             {"join", c_join},
                                     {"rank", c_rank},
                                     {"size", c_size},             {"destroy", c_gc},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, LFL_COMM)) {
    lua_pushcfunction(L, c_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "flame.comm");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lfl_setfuncs(L, functions);
  lua_setfield(L, -2, "distributed");
}
