/* Engine states (flame_lua.h, "States"): independent states on two threads, budgets, interrupts from another
 * thread, the tensor memory limit, the sandbox, the protected metatable, hooks across states and after close,
 * and the host's memory over open/close cycles. Linked with the binding (CMake target test_states). */
#include "check.h"
#include "flame_lua.h"
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static flame_lua_state *open_state(const flame_lua_options *o) {
  flame_lua_state *S = NULL;
  fl_status st = flame_lua_open(o, &S);
  CHECK(st == FL_OK && S, "flame_lua_open%s%s", st ? ": " : "", st ? fl_last_error() : "");
  return S;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A run that must fail with status want and a message containing frag. */
static void expect_fail(flame_lua_state *S, const char *code, fl_status want, const char *frag) {
  fl_status st = flame_lua_run(S, code, "=test");
  CHECK(st == want && contains(flame_lua_error(S), frag), "'%.50s' fails (%s) with '%s': got %s: %.300s", code,
        fl_status_name(want), frag, fl_status_name(st), flame_lua_error(S));
}

static void expect_ok(flame_lua_state *S, const char *code) {
  fl_status st = flame_lua_run(S, code, "=test");
  CHECK(st == FL_OK, "'%.60s' runs%s%.300s", code, st ? ": " : "", st ? flame_lua_error(S) : "");
}

/* ---- two states on two threads ---- */
static const char *worker_script =
    "local flame = require 'flame'\n"
    "function step(x, k)\n"
    "  local acc = x\n"
    "  for i = 1, 20 do acc = (acc * 0.5 + x):relu() end -- converges toward 2x where x > 0\n"
    "  local noise = flame.randn(x.shape[1])\n"
    "  return acc:sum(), noise:sum()\n"
    "end\n";

typedef struct {
  uint64_t seed;
  double sums[40], noise[40];
  int fails;
} worker;

static void *run_worker(void *p) {
  worker *w = p;
  flame_lua_state *S = NULL;
  if (flame_lua_open(NULL, &S) != FL_OK || flame_lua_run(S, worker_script, "=worker") != FL_OK) {
    w->fails++;
    flame_lua_close(S);
    return NULL;
  }
  char seed[64];
  snprintf(seed, sizeof seed, "flame.manual_seed(%llu)", (unsigned long long)w->seed);
  if (flame_lua_run(S, seed, "=seed") != FL_OK) w->fails++;
  int64_t n = 1 << 18; /* 1 MiB tensors: the collector pacing runs the state's collector often */
  fl_context *prev = fl_context_enter(flame_lua_context(S));
  fl_tensor *x = NULL;
  if (fl_arange(0, (double)n, 1, fl_default_opts(), &x) != FL_OK) w->fails++;
  fl_context_enter(prev);
  for (int i = 0; i < 40 && x; i++) {
    fl_tensor *out[2];
    if (flame_lua_call(S, "step", 1, &x, 2, out) != FL_OK || fl_item(out[0], &w->sums[i]) != FL_OK ||
        fl_item(out[1], &w->noise[i]) != FL_OK)
      w->fails++;
    else fl_release(out[0]), fl_release(out[1]);
  }
  fl_release(x);
  flame_lua_close(S);
  return NULL;
}

static void test_threads(void) {
  worker w[2] = {{.seed = 7}, {.seed = 7}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, run_worker, &w[i]);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  /* acc converges to 2x - eps; after 20 steps acc = x * (2 - 0.5^20) exactly in f32 terms up to rounding */
  double n = 1 << 18, want = (2 - pow(0.5, 20)) * n * (n - 1) / 2;
  int good = 1;
  for (int t = 0; t < 2; t++)
    for (int i = 0; i < 40; i++) good &= fabs(w[t].sums[i] - want) <= 1e-5 * want;
  CHECK(!w[0].fails && !w[1].fails && good, "two states on two threads compute the same sums (%.6g, want %.6g)",
        w[0].sums[39], want);
  /* each state has its own generator: the same seed gives the same draws, whatever the other thread did */
  int same = 1, varied = 0;
  for (int i = 0; i < 40; i++) same &= w[0].noise[i] == w[1].noise[i], varied |= w[0].noise[i] != w[0].noise[0];
  CHECK(same && varied, "each state draws its own random stream (same seed: same numbers)");
}

/* ---- budgets and interrupts ---- */
typedef struct {
  flame_lua_state *S;
  int ms;
} interrupter;

static void *interrupt_later(void *p) {
  interrupter *it = p;
  sleep_ms(it->ms);
  flame_lua_interrupt(it->S);
  return NULL;
}

static void test_budgets(void) {
  flame_lua_options o = {.time_budget = 0.2};
  flame_lua_state *S = open_state(&o);
  if (!S) return;
  expect_fail(S, "while true do end", FL_EINTERRUPTED, "time budget of 0.2 s exceeded");
  CHECK(contains(flame_lua_error(S), "stack traceback"), "the message carries the traceback");
  expect_fail(S, "while true do pcall(function() while true do end end) end", FL_EINTERRUPTED, "time budget");
  expect_fail(S, "local x = flame.ones(4) while true do x = x + 1 end", FL_EINTERRUPTED, "budget");
  expect_ok(S, "assert(flame.ones(3):sum():item() == 3)"); /* usable again */
  /* the deadline stops a single long op too (a sum over 2^34 expanded elements ran 53 s) */
  expect_fail(S, "local s = flame.ones(1):expand(2^34):sum() print('not stopped', s)", FL_EINTERRUPTED,
              "sum: budget exceeded");
  flame_lua_close(S);

  flame_lua_options oi = {.instruction_budget = 100000};
  S = open_state(&oi);
  if (!S) return;
  expect_fail(S, "local i = 0 while true do i = i + 1 end", FL_EINTERRUPTED, "instruction budget of 100000 exceeded");
  expect_ok(S, "local s = 0 for i = 1, 1000 do s = s + i end assert(s == 500500)");
  flame_lua_close(S);

  S = open_state(NULL);
  if (!S) return;
  pthread_t th;
  interrupter it = {S, 100};
  pthread_create(&th, NULL, interrupt_later, &it);
  expect_fail(S, "while true do end", FL_EINTERRUPTED, "interrupted");
  pthread_join(th, NULL);
  expect_ok(S, "x = 1 + 1");
  /* a single long op: a sum over 2^34 expanded elements stops between chunks */
  pthread_create(&th, NULL, interrupt_later, &it);
  expect_fail(S, "local s = flame.ones(1):expand(2^34):sum() print('not interrupted', s)", FL_EINTERRUPTED, "interrupted");
  pthread_join(th, NULL);
  expect_ok(S, "assert(flame.ones(1):expand(1000):sum():item() == 1000)");
  flame_lua_close(S);
}

/* ---- the tensor memory limit ---- */
static void test_memory_limit(void) {
  flame_lua_options o = {.memory_limit = (size_t)64 << 20};
  flame_lua_state *S = open_state(&o);
  if (!S) return;
  expect_fail(S, "local keep = {} while true do keep[#keep + 1] = flame.zeros(1 << 20) end", FL_EINVAL,
              "memory limit of 67108864 bytes on cpu reached");
  /* the held tensors are garbage now: the limit runs the state's collector and the next allocations fit */
  expect_ok(S, "for i = 1, 100 do local x = flame.zeros(1 << 20) assert(x:sum():item() == 0) end");
  size_t used = fl_context_memory_used(flame_lua_context(S), FL_CPU_DEVICE);
  CHECK(used <= ((size_t)64 << 20), "the state's charged bytes stay under its limit (%zu)", used);
  flame_lua_close(S);

  flame_lua_options ol = {.lua_memory_limit = (size_t)8 << 20};
  S = open_state(&ol);
  if (!S) return;
  expect_fail(S, "local t = {} for i = 1, 1e9 do t[i] = i end", FL_ENOMEM, "Lua heap limit of 8388608 bytes");
  expect_ok(S, "local t = {} for i = 1, 1000 do t[i] = i end");
  flame_lua_close(S);
}

/* ---- the sandbox ---- */
static int open_greeter(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, "hello");
  lua_setfield(L, -2, "word");
  return 1;
}

static void test_sandbox(void) {
  flame_lua_options o = {.sandbox = true};
  flame_lua_state *S = open_state(&o);
  if (!S) return;
  expect_ok(S, "assert(io == nil and os == nil and debug == nil and package == nil)");
  expect_ok(S, "assert(dofile == nil and loadfile == nil)");
  expect_ok(S, "assert(require('flame') == flame and string and table and math and utf8 and coroutine)");
  expect_fail(S, "require 'io'", FL_EINVAL, "module 'io' not found (a sandboxed state loads only the modules");
  expect_fail(S, "require 'socket.core'", FL_EINVAL, "module 'socket.core' not found");
  expect_ok(S, "local f, err = load(string.dump(function() return 1 end)) assert(f == nil and err:find('binary'), err)");
  expect_fail(S, "load('return 1', 'x', 'b')", FL_EINVAL, "text chunks only");
  expect_ok(S, "assert(load('return 1 + 1')() == 2)");
  expect_ok(S, "local env = {y = 5} assert(load('return y', 'c', 't', env)() == 5)");
  expect_fail(S, "flame.save({}, '/tmp/x.safetensors')", FL_EINVAL, "flame.save: not available in a sandboxed state");
  expect_fail(S, "flame.load('/etc/passwd')", FL_EINVAL, "flame.load: not available in a sandboxed state");
  fl_status st = flame_lua_run(S, "\x1bLua", "=binary");
  CHECK(st != FL_OK && contains(flame_lua_error(S), "binary"), "a binary chunk from the host is refused: %s",
        flame_lua_error(S));
  CHECK(flame_lua_register(S, "greeter", open_greeter) == FL_OK, "a host registers a module");
  CHECK(flame_lua_register_source(S, "twice", "return function(x) return x * 2 end") == FL_OK,
        "a host registers a Lua module");
  expect_ok(S, "assert(require('greeter').word == 'hello' and require('twice')(flame.ones(2)):sum():item() == 4)");
  flame_lua_close(S);

  S = open_state(NULL); /* without the sandbox, the full libraries */
  if (!S) return;
  expect_ok(S, "assert(io and os and debug and package and require('flame') == flame)");
  CHECK(flame_lua_register(S, "greeter", open_greeter) == FL_OK, "registering goes to package.preload");
  expect_ok(S, "assert(require('greeter').word == 'hello')");
  flame_lua_close(S);
}

/* ---- the tensor metatable, hooks across states, calls with tensors ---- */
static void test_metatable_and_hooks(void) {
  flame_lua_state *A = open_state(NULL), *B = open_state(NULL);
  if (!A || !B) return;
  expect_ok(A, "local t = flame.zeros(2) assert(getmetatable(t) == 'flame.Tensor')");
  expect_fail(A, "local t = flame.zeros(2) getmetatable(t).__gc(t)", FL_EINVAL, "attempt to call a nil value");
  expect_fail(A, "setmetatable(flame.zeros(2), {})", FL_EINVAL, "bad argument #1 to 'setmetatable'");
  expect_ok(A, "function make() local x = flame.ones(3, {requires_grad = true}) local y = x * 2\n"
               "  y:register_hook(function(g) hooked = (hooked or 0) + 1 end) return y end\n"
               "function bw(y) y:sum():backward() end");
  expect_ok(B, "function bw(y) y:sum():backward() end");
  fl_tensor *y = NULL, *y2 = NULL;
  CHECK(flame_lua_call(A, "make", 0, NULL, 1, &y) == FL_OK && y, "a function returns a tensor to the host");
  CHECK(flame_lua_call(A, "make", 0, NULL, 1, &y2) == FL_OK && y2, "another one");
  fl_status st = flame_lua_call(B, "bw", 1, &y, 0, NULL);
  CHECK(st == FL_EINVAL && contains(flame_lua_error(B), "hook: it was made in another Lua state"),
        "a hook made in A refuses to run in B's backward: %s", flame_lua_error(B));
  CHECK(flame_lua_call(A, "bw", 1, &y2, 0, NULL) == FL_OK, "it runs in A%s", flame_lua_error(A));
  expect_ok(A, "assert(hooked == 1)");
  expect_fail(A, "function notensor() return 1 end assert(false)", FL_EINVAL, "assertion failed");
  fl_tensor *r = NULL;
  st = flame_lua_call(A, "notensor", 0, NULL, 1, &r);
  CHECK(st == FL_EINVAL && !r && contains(flame_lua_error(A), "result 1 is a number"), "a non-tensor result: %s",
        flame_lua_error(A));
  st = flame_lua_call(A, "nosuch", 0, NULL, 0, NULL);
  CHECK(st == FL_EINVAL && contains(flame_lua_error(A), "the global 'nosuch' is a nil"), "no such function: %s",
        flame_lua_error(A));
  flame_lua_close(A);
  /* the host keeps y (hooked in A) after A closed: backward in B runs, the closed state's hook does nothing */
  CHECK(flame_lua_call(B, "bw", 1, &y, 0, NULL) == FL_OK, "a hooked tensor outlives its state%s%s",
        flame_lua_error(B)[0] ? ": " : "", flame_lua_error(B));
  fl_release(y);
  fl_release(y2);
  flame_lua_close(B);
}

/* Per-state grad mode and generator, entered through the context. */
static void test_modes(void) {
  flame_lua_state *A = open_state(NULL), *B = open_state(NULL);
  if (!A || !B) return;
  expect_ok(A, "flame.set_grad_enabled(false)");
  expect_ok(B, "assert(flame.is_grad_enabled())");
  expect_ok(A, "assert(not flame.is_grad_enabled()) flame.set_grad_enabled(true)");
  CHECK(fl_grad_enabled(), "the host thread's own grad mode is untouched");
  expect_ok(A, "flame.manual_seed(3) a1 = flame.rand(4)");
  expect_ok(B, "flame.manual_seed(3) b1 = flame.rand(4) b2 = flame.rand(4)");
  expect_ok(A, "a2 = flame.rand(4)");
  expect_ok(B, "function get() return b2 end");
  fl_tensor *b2 = NULL;
  CHECK(flame_lua_call(B, "get", 0, NULL, 1, &b2) == FL_OK && b2, "get b2");
  fl_tensor *args[1] = {b2};
  expect_ok(A, "function same(t) assert((t - a2):abs():max():item() == 0, 'the generators are not per state') end");
  CHECK(flame_lua_call(A, "same", 1, args, 0, NULL) == FL_OK, "a tensor of B passed to A%s%s",
        flame_lua_error(A)[0] ? ": " : "", flame_lua_error(A));
  fl_release(b2);
  flame_lua_close(A);
  flame_lua_close(B);
}

/* The C API's contexts without Lua: the stop flag fails the next op, the limit and the charge follow storages. */
static void test_contexts(void) {
  fl_context *c = NULL;
  OK(fl_context_new(&c));
  if (!c) return;
  fl_context *prev = fl_context_enter(c);
  CHECK(fl_context_current() == c && prev == NULL, "a context is entered on this thread");
  int64_t shape[1] = {100};
  fl_tensor *a = NULL, *b = NULL, *s = NULL;
  OK(fl_ones(1, shape, fl_default_opts(), &a));
  CHECK(fl_context_memory_used(c, FL_CPU_DEVICE) == 400, "its storage is charged to it (%zu)",
        fl_context_memory_used(c, FL_CPU_DEVICE));
  fl_context_interrupt(c);
  fl_status st = fl_add(a, a, 1, &s);
  CHECK(st == FL_EINTERRUPTED && !strcmp(fl_last_error(), "add: interrupted"), "an interrupted context fails the next op: %s",
        fl_last_error());
  CHECK(fl_context_check(c) == FL_EINTERRUPTED, "fl_context_check says so");
  fl_context_reset_stop(c);
  OK(fl_add(a, a, 1, &s));
  fl_release(s);
  OK(fl_context_set_memory_limit(c, FL_CPU_DEVICE, 1000));
  shape[0] = 200;
  st = fl_zeros(1, shape, fl_default_opts(), &b);
  CHECK(st == FL_ENOMEM && contains(fl_last_error(), "memory limit of 1000 bytes on cpu reached: allocating 800 bytes with 400 in use"),
        "past the limit: %s", fl_last_error());
  fl_context_enter(prev);
  OK(fl_zeros(1, shape, fl_default_opts(), &b)); /* the default context has no limit */
  fl_release(b);
  fl_context_release(c); /* a still charges it: it lives on until a is freed */
  CHECK(fl_grad_enabled(), "the default context's modes are untouched");
  fl_release(a);
}

/* ---- the host's memory over open/close cycles ---- */
static double rss_mb(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  fclose(f);
  return resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

static const char *cycle_script =
    "local x = flame.randn(512, 512) local y = x:matmul(x):relu() local z = flame.randn(256, 1024) * 2\n"
    "assert((y:sum() + z:mean()):item() == (y:sum() + z:mean()):item())";

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CYCLES 6 /* the sanitizers keep freed memory in quarantine: the resident size says nothing here */
#else
#define CYCLES 50
#endif

static void test_cycles(void) {
  double at5 = 0;
  for (int i = 0; i < CYCLES; i++) {
    flame_lua_state *S = NULL;
    if (flame_lua_open(NULL, &S) != FL_OK || flame_lua_run(S, cycle_script, "=cycle") != FL_OK) {
      CHECK(0, "cycle %d: %s", i, S ? flame_lua_error(S) : fl_last_error());
      flame_lua_close(S);
      return;
    }
    flame_lua_close(S);
    /* and the probe's way: a plain Lua state, require "flame", lua_close */
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "flame", luaopen_flame, 1);
    lua_pop(L, 1);
    if (luaL_dostring(L, cycle_script) != LUA_OK) CHECK(0, "plain cycle %d: %s", i, lua_tostring(L, -1));
    lua_close(L);
    if (i == 4) at5 = rss_mb();
  }
  double at50 = rss_mb();
  if (CYCLES < 50) at50 = at5;
  CHECK(at50 - at5 < 16, "%d open/run/close cycles: resident memory %.1f MB after 5, %.1f MB after them", CYCLES, at5,
        at50);
}

/* Two plain states on one thread: closing one leaves the other's allocations safe (no collector of a closed
 * state runs). */
static void test_plain_states(void) {
  lua_State *A = luaL_newstate(), *B = luaL_newstate();
  luaL_openlibs(A);
  luaL_openlibs(B);
  luaL_requiref(A, "flame", luaopen_flame, 1);
  luaL_requiref(B, "flame", luaopen_flame, 1);
  lua_settop(A, 0);
  lua_settop(B, 0);
  lua_close(B);
  int rc = luaL_dostring(A, "for i = 1, 200 do local x = flame.zeros(1 << 18) end return true");
  CHECK(rc == LUA_OK, "a plain state allocates after another closed%s%s", rc ? ": " : "", rc ? lua_tostring(A, -1) : "");
  lua_close(A);
}

int main(void) {
  test_threads();
  test_budgets();
  test_memory_limit();
  test_sandbox();
  test_metatable_and_hooks();
  test_modes();
  test_contexts();
  test_plain_states();
  test_cycles();
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
