/* FLAME's Lua binding, for hosts that embed a Lua 5.4 interpreter.
 *
 *   lua_State *L = luaL_newstate();
 *   luaL_openlibs(L);
 *   luaL_requiref(L, "flame", luaopen_flame, 1);   (also sets the global flame)
 *
 * then hand tensors made with the C API (flame.h) to Lua and take them back. */
#ifndef FLAME_LUA_H
#define FLAME_LUA_H

#include "flame.h"
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registry field (an integer) that a host with a terminal sets to its width, as flame-lua's REPL does: tensors
 * then print wrapped at that width unless flame.set_printoptions set a linewidth (PyTorch's 80 otherwise). */
#define FLAME_TERM_WIDTH_KEY "flame.term_width"

/* Opens the module: returns the flame table (the Lua library is built in). */
int luaopen_flame(lua_State *L);
/* Pushes t as a Lua tensor, taking over the caller's reference. */
void flame_lua_push(lua_State *L, fl_tensor *t);
/* The tensor at idx (borrowed: fl_retain it to keep it), or NULL if it is not one. */
fl_tensor *flame_lua_totensor(lua_State *L, int idx);

/* ==== States (src/lua/lstate.c; docs/embedding.md, "States") ====
 * An engine state: a Lua state with flame loaded, its own fl_context (random generator, grad and autocast
 * modes, OOM handler, tensor memory limit, stop flag), optional sandboxing and budgets. Every function returns
 * a status; a failed one leaves its message, with the Lua traceback, in flame_lua_error(S) (and a copy, cut to
 * fit, in fl_last_error()). Nothing here aborts, exits or prints. States are independent: several may run at
 * once on different threads, one thread per state at a time. */
typedef struct flame_lua_state flame_lua_state;

typedef struct {
  /* Only base (without dofile, loadfile; load takes text chunks only), table, string, math, utf8, coroutine
   * and flame (without the functions that touch files): no io, os, debug or package; require finds only the
   * modules registered with flame_lua_register. */
  bool sandbox;
  size_t memory_limit;         /* tensor bytes charged to the state on each device; 0: none */
  size_t lua_memory_limit;     /* bytes of Lua heap beyond what the opened state holds; 0: none */
  uint64_t instruction_budget; /* Lua VM instructions per call (in steps of 1000); 0: none */
  double time_budget;          /* seconds of wall time per call, checked by the hook and between ops; 0: none */
} flame_lua_options;

/* opts NULL: no sandbox, no limits. On failure *out is NULL and fl_last_error() says why. */
fl_status flame_lua_open(const flame_lua_options *opts, flame_lua_state **out);
/* Closes the Lua state and releases everything it owns (tensors the host still holds stay valid). */
void flame_lua_close(flame_lua_state *S);
/* The last failure's message with its traceback ("" when none). Valid until the next call on S. */
const char *flame_lua_error(const flame_lua_state *S);
/* Makes `require(name)` return what open(L) returns (a sandbox's only modules, besides flame). */
fl_status flame_lua_register(flame_lua_state *S, const char *name, lua_CFunction open);
/* The same for a module written in Lua (text). */
fl_status flame_lua_register_source(flame_lua_state *S, const char *name, const char *source);
/* Runs a chunk of Lua text (name: for messages, NULL: "=chunk"). */
fl_status flame_lua_run(flame_lua_state *S, const char *code, const char *name);
/* Runs the Lua file at path (text only in a sandbox). */
fl_status flame_lua_run_file(flame_lua_state *S, const char *path);
/* Calls the global function fn with nin tensors (borrowed; NULL passes nil) and takes nout results: out[i] is
 * a new reference the caller releases, or NULL for nil; any other result is an error. */
fl_status flame_lua_call(flame_lua_state *S, const char *fn, int nin, fl_tensor *const *in, int nout, fl_tensor **out);
/* The host's CUDA stream (a cudaStream_t as void *; NULL: flame's own) for the state's work on cuda:<device>:
 * fl_context_set_stream on the state's context (flame.h says what it orders and when it waits). flame_lua_call
 * records its CUDA inputs on that stream (fl_tensor_record_stream), so a tensor made on another stream is not
 * reused before the state's work on it is done; flame_lua_close unsets the streams, so the host may destroy
 * them after it. */
fl_status flame_lua_set_stream(flame_lua_state *S, int device, void *stream);
/* From any thread: the running call (or the next op or hook of it) fails with "interrupted". */
void flame_lua_interrupt(flame_lua_state *S);
/* For the C API around the state: its context (memory use, per-device limits) and its Lua state. Plain Lua API
 * calls on flame_lua_lua(S) must run with the context entered: fl_context_enter(flame_lua_context(S)). */
fl_context *flame_lua_context(flame_lua_state *S);
lua_State *flame_lua_lua(flame_lua_state *S);

#ifdef __cplusplus
}
#endif
#endif
