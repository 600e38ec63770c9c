/* Engine states for hosts (flame_lua.h, "States"): a Lua state with flame loaded, its own fl_context, an
 * optional sandbox, limits and budgets. Each entry point enters the state's context for its duration, so the
 * generator, grad mode, OOM handler and memory limit in effect are the state's whatever thread calls. */
#include "context.h"
#include "lflame.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_PERIOD 1000 /* instructions between two looks at the stop flag and the budgets */
#define MODULES "flame.host_modules" /* registry: name -> loader, what require may load in a sandbox */

struct flame_lua_state {
  lua_State *L;
  lfl_heap *heap; /* Lua's blocks (lheap.c) */
  fl_context *ctx;
  flame_lua_options opt;
  size_t lua_bytes;  /* the Lua heap in use */
  size_t lua_limit;  /* the Lua heap limit (0: none) */
  size_t lua_cap;    /* the limit in effect: only inside a protected call, where a memory error is caught */
  int depth;         /* nested calls: the outermost one starts the budgets */
  int64_t instr_left;
  char stop_msg[96]; /* the hook's reason, for the message ("" until it stops) */
  char *err;
};

/* ---- the Lua heap, counted and capped ---- */
static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  flame_lua_state *S = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    lfl_heap_realloc(S->heap, ptr, osize, 0);
    S->lua_bytes -= old;
    return NULL;
  }
  if (S->lua_cap && nsize > old && S->lua_bytes + (nsize - old) > S->lua_cap) return NULL; /* a Lua memory error */
  void *p = lfl_heap_realloc(S->heap, ptr, osize, nsize);
  if (p) S->lua_bytes = S->lua_bytes - old + nsize;
  return p;
}

static flame_lua_state *state_of(lua_State *L) { return *(flame_lua_state **)lua_getextraspace(L); }

/* ---- errors: status plus a message with the traceback ---- */
static fl_status fail(flame_lua_state *S, fl_status st, const char *msg) {
  free(S->err);
  S->err = strdup(msg ? msg : "(no message)");
  fl_error(st, "%s", S->err ? S->err : "out of host memory for the message");
  return st;
}

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* ---- budgets and interrupts: the count hook, and the context's stop flag for the ops ---- */
/* Why the call stops: the instruction budget's message once the hook set it, else the context's reason. */
static const char *stop_message(flame_lua_state *S, int reason) {
  if (reason == FL_STOP_INTERRUPT) snprintf(S->stop_msg, sizeof S->stop_msg, "interrupted");
  else if (!S->stop_msg[0]) snprintf(S->stop_msg, sizeof S->stop_msg, "time budget of %g s exceeded", S->opt.time_budget);
  return S->stop_msg;
}

static void hook(lua_State *L, lua_Debug *ar) {
  flame_lua_state *S = state_of(L);
  if (!S || S->depth == 0) return;
  int r = fl_context_stop_reason(S->ctx);
  if (r) stop_message(S, r);
  if (!r && S->opt.instruction_budget && (S->instr_left -= HOOK_PERIOD) < 0) {
    snprintf(S->stop_msg, sizeof S->stop_msg, "instruction budget of %llu exceeded",
             (unsigned long long)S->opt.instruction_budget);
    atomic_store(&S->ctx->stop, FL_STOP_BUDGET); /* ops stop too */
    r = FL_STOP_BUDGET;
  }
  if (!r) {
    if (lua_gethookcount(L) != HOOK_PERIOD) lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_PERIOD); /* a thread a stop left at 1 */
    return;
  }
  /* from now on every instruction raises it again, so a pcall in a loop cannot swallow it */
  lua_sethook(L, hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "%s", S->stop_msg);
}

static void clear_error(flame_lua_state *S) {
  free(S->err);
  S->err = NULL;
}

static void begin(flame_lua_state *S, fl_context **prev) {
  *prev = fl_context_enter(S->ctx);
  if (S->depth++ > 0) return;
  clear_error(S);
  fl_context_reset_stop(S->ctx);
  if (S->opt.time_budget > 0) fl_context_set_deadline(S->ctx, S->opt.time_budget);
  S->instr_left = (int64_t)S->opt.instruction_budget;
  S->stop_msg[0] = 0;
  lua_sethook(S->L, hook, LUA_MASKCOUNT, HOOK_PERIOD);
}

static void end(flame_lua_state *S, fl_context *prev) {
  if (--S->depth == 0) fl_context_reset_stop(S->ctx); /* the deadline is the call's */
  fl_context_enter(prev);
}

/* Runs the function under nargs arguments on the stack with the message handler; results stay on the stack. */
static fl_status pcall(flame_lua_state *S, int nargs, int nres) {
  lua_State *L = S->L;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msgh);
  lua_insert(L, base);
  size_t cap = S->lua_cap;
  S->lua_cap = S->lua_limit;
  int rc = lua_pcall(L, nargs, nres, base);
  S->lua_cap = cap;
  lua_remove(L, base);
  int stop = rc == LUA_OK && S->depth == 1 ? fl_context_stop_reason(S->ctx) : FL_STOP_NONE;
  if (stop) { /* it returned, but an op it ran was cut short (a CPU loop stopped early): its results are not whole */
    lua_pop(L, nres);
    return fail(S, FL_EINTERRUPTED, stop_message(S, stop));
  }
  if (rc == LUA_OK) return FL_OK;
  const char *msg = lua_tostring(L, -1);
  fl_status st = fl_context_stop_reason(S->ctx) ? FL_EINTERRUPTED : rc == LUA_ERRMEM ? FL_ENOMEM : FL_EINVAL;
  char buf[160];
  if (rc == LUA_ERRMEM && S->lua_limit) {
    snprintf(buf, sizeof buf, "Lua heap limit of %zu bytes reached (%s)", S->opt.lua_memory_limit,
             msg ? msg : "not enough memory");
    msg = buf;
  }
  fail(S, st, msg);
  lua_pop(L, 1);
  return st;
}

/* ---- the sandbox ---- */
/* load with text chunks only: a binary chunk is unchecked bytecode, which can crash the VM. */
static int sb_load(lua_State *L) {
  int n = lua_gettop(L);
  if (n < 1) return luaL_argerror(L, 1, "value expected");
  if (!lua_isnoneornil(L, 3) && strcmp(luaL_checkstring(L, 3), "t") != 0)
    return luaL_error(L, "load: a sandboxed state loads text chunks only (mode \"t\")");
  n = n >= 4 ? 4 : 3; /* an absent env stays absent: a nil one would be the chunk's _ENV */
  lua_settop(L, n);
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1)); /* the original load */
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* require: flame, or a module the host registered. */
static int sb_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE); /* 2 */
  if (lua_getfield(L, 2, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULES); /* 3 */
  if (lua_getfield(L, 3, name) == LUA_TNIL)
    return luaL_error(L, "module '%s' not found (a sandboxed state loads only the modules its host registers)", name);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, 2, name);
  return 1;
}

static int sb_no_files(lua_State *L) {
  return luaL_error(L, "%s: not available in a sandboxed state (it touches files)", lua_tostring(L, lua_upvalueindex(1)));
}

/* The flame functions that read or write files, by path from the module table. */
static const char *const file_functions[][2] = {{NULL, "save"},        {NULL, "load"},       {NULL, "load_npy"},
                                                 {NULL, "save_npy"},    {"data", "read_idx"}, {"data", "_listdir"},
                                                 {"image", "_load"},    {"image", "_save_png"}};

static void sandbox_flame(lua_State *L) { /* the module table at -1 */
  for (size_t i = 0; i < sizeof file_functions / sizeof *file_functions; i++) {
    const char *sub = file_functions[i][0], *fn = file_functions[i][1];
    if (sub && lua_getfield(L, -1, sub) != LUA_TTABLE) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushfstring(L, "flame.%s%s%s", sub ? sub : "", sub ? "." : "", fn);
    lua_pushcclosure(L, sb_no_files, 1);
    lua_setfield(L, -2, fn);
    if (sub) lua_pop(L, 1);
  }
}

static int open_libs(lua_State *L) {
  flame_lua_state *S = state_of(L);
  if (!S->opt.sandbox) {
    luaL_openlibs(L);
  } else {
    static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},         {LUA_TABLIBNAME, luaopen_table},
                                    {LUA_STRLIBNAME, luaopen_string},  {LUA_MATHLIBNAME, luaopen_math},
                                    {LUA_UTF8LIBNAME, luaopen_utf8},   {LUA_COLIBNAME, luaopen_coroutine},
                                    {NULL, NULL}};
    for (const luaL_Reg *l = libs; l->name; l++) {
      luaL_requiref(L, l->name, l->func, 1);
      lua_pop(L, 1);
    }
    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
    lua_getglobal(L, "load");
    lua_pushcclosure(L, sb_load, 1);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, sb_require);
    lua_setglobal(L, "require");
  }
  luaL_requiref(L, "flame", luaopen_flame, 1);
  if (S->opt.sandbox) sandbox_flame(L);
  return 0;
}

/* ---- the API ---- */
fl_status flame_lua_open(const flame_lua_options *opts, flame_lua_state **out) {
  *out = NULL;
  flame_lua_state *S = calloc(1, sizeof *S);
  if (!S) return fl_error(FL_ENOMEM, "flame_lua_open: out of host memory");
  if (opts) S->opt = *opts;
  if (S->opt.time_budget < 0 || S->opt.time_budget != S->opt.time_budget) {
    free(S);
    return fl_error(FL_EINVAL, "flame_lua_open: time_budget must be a number of seconds >= 0");
  }
  fl_status st = fl_context_new(&S->ctx);
  if (st != FL_OK) {
    free(S);
    return st;
  }
  for (int i = 0; i < FL_CTX_DEVICES; i++) atomic_store(&S->ctx->limit[i], S->opt.memory_limit);
  S->heap = lfl_heap_new();
  S->L = S->heap ? lua_newstate(l_alloc, S) : NULL;
  if (!S->L) {
    lfl_heap_free(S->heap);
    fl_context_release(S->ctx);
    free(S);
    return fl_error(FL_ENOMEM, "flame_lua_open: out of host memory for the Lua state");
  }
  *(flame_lua_state **)lua_getextraspace(S->L) = S;
  fl_context *prev;
  begin(S, &prev);
  lua_pushcfunction(S->L, open_libs);
  st = pcall(S, 0, 0);
  end(S, prev);
  if (st != FL_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "flame_lua_open: %s", S->err ? S->err : "failed");
    flame_lua_close(S);
    return fl_error(st, "%s", msg);
  }
  if (S->opt.lua_memory_limit) S->lua_limit = S->lua_bytes + S->opt.lua_memory_limit;
  *out = S;
  return FL_OK;
}

void flame_lua_close(flame_lua_state *S) {
  if (!S) return;
  fl_context *prev = fl_context_enter(S->ctx);
  fl_context_reset_stop(S->ctx); /* finalizers may run ops */
  S->lua_limit = S->lua_cap = 0;
  for (int i = 0; i + 1 < FL_CTX_DEVICES; i++) { /* tensors made on flame's own stream and used on the host's */
    fl_device d = {FL_CUDA, i};                  /* must not be reused before that work is done */
    if (fl_context_stream(S->ctx, d)) (void)fl_synchronize(d);
  }
  lua_close(S->L);
  lfl_heap_free(S->heap);
  fl_context_enter(prev);
  fl_context_drop_streams(S->ctx); /* now, while the host's streams are valid: the context may outlive S */
  fl_context_release(S->ctx); /* it lives on while tensors the host kept are charged to it */
  free(S->err);
  free(S);
}

const char *flame_lua_error(const flame_lua_state *S) { return S && S->err ? S->err : ""; }

static fl_status do_register(flame_lua_state *S, const char *name) { /* the loader at the top */
  lua_State *L = S->L;
  clear_error(S);
  if (!lua_checkstack(L, 4)) return fail(S, FL_ENOMEM, "flame_lua_register: Lua stack overflow");
  if (S->opt.sandbox) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, MODULES);
  } else {
    lua_getglobal(L, "package");
    if (!lua_istable(L, -1) || lua_getfield(L, -1, "preload") != LUA_TTABLE) {
      lua_pop(L, lua_istable(L, -1) ? 3 : 2);
      return fail(S, FL_EINVAL, "flame_lua_register: the state has no package.preload table");
    }
    lua_remove(L, -2);
  }
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  return FL_OK;
}

fl_status flame_lua_register(flame_lua_state *S, const char *name, lua_CFunction open) {
  lua_pushcfunction(S->L, open);
  return do_register(S, name);
}

fl_status flame_lua_register_source(flame_lua_state *S, const char *name, const char *source) {
  char chunk[256];
  snprintf(chunk, sizeof chunk, "=%s", name);
  if (luaL_loadbufferx(S->L, source, strlen(source), chunk, "t") != LUA_OK) {
    fl_status st = fail(S, FL_EINVAL, lua_tostring(S->L, -1));
    lua_pop(S->L, 1);
    return st;
  }
  return do_register(S, name);
}

static fl_status run_loaded(flame_lua_state *S, int rc) {
  clear_error(S);
  if (rc != LUA_OK) {
    fl_status st = fail(S, rc == LUA_ERRMEM ? FL_ENOMEM : FL_EINVAL, lua_tostring(S->L, -1));
    lua_pop(S->L, 1);
    return st;
  }
  fl_context *prev;
  begin(S, &prev);
  fl_status st = pcall(S, 0, 0);
  end(S, prev);
  return st;
}

fl_status flame_lua_run(flame_lua_state *S, const char *code, const char *name) {
  return run_loaded(S, luaL_loadbufferx(S->L, code, strlen(code), name ? name : "=chunk", S->opt.sandbox ? "t" : NULL));
}

fl_status flame_lua_run_file(flame_lua_state *S, const char *path) {
  return run_loaded(S, luaL_loadfilex(S->L, path, S->opt.sandbox ? "t" : NULL));
}

fl_status flame_lua_call(flame_lua_state *S, const char *fn, int nin, fl_tensor *const *in, int nout, fl_tensor **out) {
  lua_State *L = S->L;
  clear_error(S);
  for (int i = 0; i < nout; i++) out[i] = NULL;
  if (nin < 0 || nout < 0 || !lua_checkstack(L, nin + 4))
    return fail(S, FL_EINVAL, "flame_lua_call: bad argument or result count");
  if (lua_getglobal(L, fn) != LUA_TFUNCTION && !luaL_getmetafield(L, -1, "__call")) {
    char msg[300];
    snprintf(msg, sizeof msg, "flame_lua_call: the global '%s' is a %s, not a function", fn, luaL_typename(L, -1));
    lua_pop(L, 1);
    return fail(S, FL_EINVAL, msg);
  }
  if (lua_type(L, -1) != LUA_TFUNCTION) lua_pop(L, 1); /* a callable: call the value itself */
  for (int i = 0; i < nin; i++) { /* inputs made on other streams: not reused before the state's work is done */
    void *stream = in[i] ? fl_context_stream(S->ctx, fl_device_of(in[i])) : NULL;
    fl_status st = stream ? fl_tensor_record_stream(in[i], stream) : FL_OK;
    if (st != FL_OK) {
      lua_pop(L, i + 1);
      return fail(S, st, fl_last_error());
    }
    if (in[i]) flame_lua_push(L, fl_retain(in[i]));
    else lua_pushnil(L);
  }
  fl_context *prev;
  begin(S, &prev);
  fl_status st = pcall(S, nin, nout);
  end(S, prev);
  if (st != FL_OK) return st;
  for (int i = 0; i < nout && st == FL_OK; i++) {
    int idx = -nout + i;
    fl_tensor *t = flame_lua_totensor(L, idx);
    if (t) out[i] = fl_retain(t);
    else if (!lua_isnil(L, idx)) {
      char msg[200];
      snprintf(msg, sizeof msg, "flame_lua_call: %s's result %d is a %s, not a tensor or nil", fn, i + 1,
               luaL_typename(L, idx));
      st = fail(S, FL_EINVAL, msg);
    }
  }
  lua_pop(L, nout);
  if (st != FL_OK)
    for (int i = 0; i < nout; i++) fl_release(out[i]), out[i] = NULL;
  return st;
}

fl_status flame_lua_set_stream(flame_lua_state *S, int device, void *stream) {
  clear_error(S);
  fl_status st = fl_context_set_stream(S->ctx, (fl_device){FL_CUDA, device}, stream);
  return st == FL_OK ? FL_OK : fail(S, st, fl_last_error());
}

void flame_lua_interrupt(flame_lua_state *S) { fl_context_interrupt(S->ctx); }
fl_context *flame_lua_context(flame_lua_state *S) { return S->ctx; }
lua_State *flame_lua_lua(flame_lua_state *S) { return S->L; }
