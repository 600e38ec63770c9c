/* Two engine states on two threads: a host that serves a model from several threads at once (a game's worker
 * threads, a tool's batch jobs). The host loads a small classifier (3x3 convolution, GroupNorm, SiLU, linear)
 * from a safetensors file once, hands the same weight tensors to one state per thread, and each thread runs the
 * model on its own frames: its input and output buffers are the host's, wrapped without copies. The results
 * must equal those of a single state running every frame on one thread. Build: the CMake target threads; run:
 * threads (also a ctest, and under ThreadSanitizer in scripts/tsan). See docs/embedding.md, "States".
 *
 * What is per state and what is shared: each state has its own Lua interpreter, random generator, grad mode,
 * memory accounting and stop flag, so the threads need no lock of their own. One thread drives a state at a
 * time. Tensors may cross states and threads (refcounts are atomic): here both states read the same weights. */
#include "flame.h"
#include "flame_lua.h"
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define B 4        /* images per frame */
#define HW 16      /* image side */
#define C 8        /* conv channels */
#define CLASSES 10 /* outputs */
#define FRAMES 24  /* frames per thread */
#define THREADS 2

/* The model, written by the host's user in Lua: init takes the weights, forward(x, out) writes out. */
static const char *model_script =
    "local F = flame.F\n"
    "local P\n"
    "function init(cw, cb, gw, gb, fw, fb) P = {cw = cw, cb = cb, gw = gw, gb = gb, fw = fw, fb = fb} end\n"
    "function forward(x, out) -- x [B, 1, 16, 16], out [B, 10]: the host's buffers\n"
    "  local h = F.conv2d(x, P.cw, P.cb, {padding = 1})\n"
    "  h = F.group_norm(h, 4, P.gw, P.gb):silu()\n"
    "  out:copy_(F.linear(h:flatten(2), P.fw, P.fb))\n"
    "end\n";

/* The weights in the file's names, in init's order, with their shapes. */
static const struct {
  const char *name;
  int ndim;
  int64_t shape[4];
} params[6] = {{"conv.weight", 4, {C, 1, 3, 3}}, {"conv.bias", 1, {C}},           {"norm.weight", 1, {C}},
               {"norm.bias", 1, {C}},            {"fc.weight", 2, {CLASSES, C * HW * HW}}, {"fc.bias", 1, {CLASSES}}};

/* A reproducible pseudo-random float in [-scale, scale). */
static float noise(uint32_t *s, float scale) {
  *s = *s * 1664525u + 1013904223u;
  return scale * ((float)(*s >> 8) / (float)(1u << 23) - 1.0f);
}

/* The model file: what a training run would have saved. */
static fl_status save_model(const char *path) {
  fl_tensor *t[6] = {0};
  fl_st_entry e[6];
  fl_status st = FL_OK;
  uint32_t seed = 1;
  for (int i = 0; i < 6 && st == FL_OK; i++) {
    int64_t n = 1;
    for (int d = 0; d < params[i].ndim; d++) n *= params[i].shape[d];
    static float buf[CLASSES * C * HW * HW];
    for (int64_t j = 0; j < n; j++) buf[j] = noise(&seed, i == 4 ? 0.02f : 0.5f) + (i == 2 ? 1.0f : 0.0f);
    st = fl_from_host(buf, params[i].ndim, params[i].shape, fl_default_opts(), &t[i]);
    e[i] = (fl_st_entry){{params[i].name, strlen(params[i].name)}, t[i]};
  }
  if (st == FL_OK) st = fl_save_safetensors(path, 6, e, 0, NULL);
  for (int i = 0; i < 6; i++) fl_release(t[i]);
  return st;
}

/* Loads the weights by name, in init's order. */
static fl_status load_model(const char *path, fl_tensor **w) {
  fl_safetensors *f = NULL;
  fl_status st = fl_safetensors_open(path, &f);
  for (size_t i = 0; st == FL_OK && i < fl_safetensors_count(f); i++) {
    fl_st_info info;
    fl_safetensors_info(f, i, &info);
    for (int k = 0; k < 6; k++)
      if (strlen(params[k].name) == info.name.len && !memcmp(params[k].name, info.name.s, info.name.len))
        st = fl_safetensors_load(f, i, FL_CPU_DEVICE, &w[k]);
  }
  fl_safetensors_close(f);
  return st;
}

/* One state's work: open it, give it the weights, run frames [first, first + n) of the host's buffers. */
typedef struct {
  fl_tensor *const *weights;
  const float *in;   /* [frames][B * HW * HW] */
  float *out;        /* [frames][B * CLASSES] */
  int first, n;
  pthread_barrier_t *start; /* NULL: no other thread to wait for */
  char error[512];
} job;

static void *run_job(void *p) {
  job *j = p;
  flame_lua_state *S = NULL;
  flame_lua_options o = {.sandbox = true, .memory_limit = (size_t)64 << 20};
  if (flame_lua_open(&o, &S) != FL_OK) {
    snprintf(j->error, sizeof j->error, "open: %s", fl_last_error());
    return NULL;
  }
  if (flame_lua_run(S, model_script, "=model.lua") != FL_OK || flame_lua_call(S, "init", 6, j->weights, 0, NULL) != FL_OK)
    snprintf(j->error, sizeof j->error, "the model: %s", flame_lua_error(S));
  if (j->start) pthread_barrier_wait(j->start); /* both threads run their frames at the same time */
  int64_t xs[4] = {B, 1, HW, HW}, ys[2] = {B, CLASSES};
  for (int f = j->first; f < j->first + j->n && !j->error[0]; f++) {
    fl_tensor *t[2] = {NULL, NULL}; /* the host's buffers as tensors: no copies, no deleter (the host owns them) */
    fl_status st = fl_tensor_from_blob((void *)(j->in + (size_t)f * B * HW * HW), 4, xs, NULL, FL_F32, FL_CPU_DEVICE,
                                       NULL, NULL, &t[0]);
    if (st == FL_OK)
      st = fl_tensor_from_blob(j->out + (size_t)f * B * CLASSES, 2, ys, NULL, FL_F32, FL_CPU_DEVICE, NULL, NULL, &t[1]);
    if (st == FL_OK && flame_lua_call(S, "forward", 2, t, 0, NULL) != FL_OK)
      snprintf(j->error, sizeof j->error, "frame %d: %s", f, flame_lua_error(S));
    else if (st != FL_OK)
      snprintf(j->error, sizeof j->error, "frame %d: %s", f, fl_last_error());
    fl_release(t[0]);
    fl_release(t[1]);
  }
  flame_lua_close(S);
  return NULL;
}

int main(void) {
  char path[] = "/tmp/threads_model_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return perror("threads: mkstemp"), 1;
  close(fd);
  fl_tensor *w[6] = {0};
  if (save_model(path) != FL_OK || load_model(path, w) != FL_OK) {
    fprintf(stderr, "threads: the model file: %s\n", fl_last_error());
    remove(path);
    return 1;
  }
  remove(path);

  static float in[THREADS * FRAMES][B * HW * HW], ref[THREADS * FRAMES][B * CLASSES], out[THREADS * FRAMES][B * CLASSES];
  uint32_t seed = 7;
  for (int f = 0; f < THREADS * FRAMES; f++)
    for (int i = 0; i < B * HW * HW; i++) in[f][i] = noise(&seed, 1.0f);

  /* The reference: one state on this thread runs every frame. */
  job single = {.weights = w, .in = in[0], .out = ref[0], .first = 0, .n = THREADS * FRAMES};
  run_job(&single);
  int bad = single.error[0] != 0;
  if (bad) fprintf(stderr, "threads: single-threaded run: %s\n", single.error);

  /* Then one state per thread, each with its share of the frames, at the same time. */
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, THREADS);
  job jobs[THREADS];
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) {
    jobs[t] = (job){.weights = w, .in = in[0], .out = out[0], .first = t * FRAMES, .n = FRAMES, .start = &start};
    pthread_create(&th[t], NULL, run_job, &jobs[t]);
  }
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  pthread_barrier_destroy(&start);

  for (int t = 0; t < THREADS && !bad; t++) {
    if (jobs[t].error[0]) {
      fprintf(stderr, "threads: thread %d: %s\n", t + 1, jobs[t].error);
      bad = 1;
      continue;
    }
    double diff = 0, mag = 0;
    for (int f = t * FRAMES; f < (t + 1) * FRAMES; f++)
      for (int i = 0; i < B * CLASSES; i++) diff = fmax(diff, fabs(out[f][i] - ref[f][i])), mag = fmax(mag, fabs(ref[f][i]));
    /* the same kernels on the same data: equal but for the order of BLAS's sums under threading */
    int ok = diff <= 1e-5 * mag && mag > 0;
    printf("thread %d: %d frames of %d images, logits up to %.3g, max difference from the single-threaded run %.3g: %s\n",
           t + 1, FRAMES, B, mag, diff, ok ? "ok" : "WRONG");
    bad |= !ok;
  }
  for (int i = 0; i < 6; i++) fl_release(w[i]);
  return bad;
}
