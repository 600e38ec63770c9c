/* A tool host: an image editor that lets users script a filter in Lua. It opens a sandboxed engine state with a
 * tensor memory limit and a time budget, loads a small denoiser (a 3x3 convolution stored as safetensors), and
 * runs the user's `frame(image, out)` each frame on its own image buffers, wrapped without copies. A script that errors, loops forever or
 * allocates without bound costs that one frame (the host keeps showing the last good one) and the tool goes on
 * serving the next. Build: the CMake target image_tool; run: image_tool (also a ctest). */
#include "flame.h"
#include "flame_lua.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define H 48
#define W 64

static const char *filter_script =
    "local F = flame.F\n"
    "model = model or {} -- kept when the script is loaded again\n"
    "function init(w, b) model.weight, model.bias = w, b end\n"
    "function frame(img, out) -- the host's buffers, [1, 1, H, W] in [0, 1]: read img, write out\n"
    "  out:copy_(F.conv2d(img, model.weight, model.bias, {padding = 1}):clamp(0, 1))\n"
    "end\n";

/* What users might type instead: each breaks one frame. */
static const struct {
  const char *what, *code, *expect;
} broken[] = {
    {"an error", "function frame(img) return img + nil end", "expected a tensor or a number, got nil"},
    {"an endless loop", "function frame(img) while true do end end", "time budget of 1 s exceeded"},
    {"unbounded allocation", "function frame(img) local keep = {} while true do keep[#keep + 1] = flame.zeros(1 << 20) end end",
     "memory limit of 33554432 bytes on cpu reached"},
    {"an endless loop of ops", "function frame(img) local x = img while true do x = x * 1 end end", "budget exceeded"},
};

/* The host's own reference: the 3x3 box blur with zero padding, clamped. */
static float reference(const float *img, int y, int x) {
  float s = 0;
  for (int dy = -1; dy <= 1; dy++)
    for (int dx = -1; dx <= 1; dx++)
      if (y + dy >= 0 && y + dy < H && x + dx >= 0 && x + dx < W) s += img[(y + dy) * W + x + dx] / 9.0f;
  return s < 0 ? 0 : s > 1 ? 1 : s;
}

/* The model file: what a training run would have saved. */
static fl_status save_model(const char *path) {
  float w[9], b[1] = {0};
  for (int i = 0; i < 9; i++) w[i] = 1.0f / 9;
  int64_t ws[4] = {1, 1, 3, 3}, bs[1] = {1};
  fl_tensor *tw = NULL, *tb = NULL;
  fl_status st = fl_from_host(w, 4, ws, fl_default_opts(), &tw);
  if (st == FL_OK) st = fl_from_host(b, 1, bs, fl_default_opts(), &tb);
  fl_st_entry e[2] = {{{"weight", 6}, tw}, {{"bias", 4}, tb}};
  if (st == FL_OK) st = fl_save_safetensors(path, 2, e, 0, NULL);
  fl_release(tw);
  fl_release(tb);
  return st;
}

/* Loads the model's tensors by name into w, b. */
static fl_status load_model(const char *path, fl_tensor **w, fl_tensor **b) {
  fl_safetensors *f = NULL;
  fl_status st = fl_safetensors_open(path, &f);
  for (size_t i = 0; st == FL_OK && i < fl_safetensors_count(f); i++) {
    fl_st_info info;
    fl_safetensors_info(f, i, &info);
    fl_tensor **dst = info.name.len == 6 && !memcmp(info.name.s, "weight", 6) ? w : b;
    st = fl_safetensors_load(f, i, FL_CPU_DEVICE, dst);
  }
  fl_safetensors_close(f);
  return st;
}

/* One frame, with no copies: the host's image and output buffers are wrapped as tensors (fl_tensor_from_blob);
 * the script reads one and writes the other. (The buffers outlive the program's tensors: no deleter.) */
static fl_status run_frame(flame_lua_state *S, float *img, float *out) {
  int64_t shape[4] = {1, 1, H, W};
  fl_tensor *t[2] = {NULL, NULL};
  fl_status st = fl_tensor_from_blob(img, 4, shape, NULL, FL_F32, FL_CPU_DEVICE, NULL, NULL, &t[0]);
  if (st == FL_OK) st = fl_tensor_from_blob(out, 4, shape, NULL, FL_F32, FL_CPU_DEVICE, NULL, NULL, &t[1]);
  if (st == FL_OK) st = flame_lua_call(S, "frame", 2, t, 0, NULL);
  fl_release(t[0]);
  fl_release(t[1]);
  return st;
}

int main(void) {
  char model[] = "/tmp/image_tool_model_XXXXXX";
  int fd = mkstemp(model);
  if (fd < 0) return perror("image_tool: mkstemp"), 1;
  close(fd);
  /* A second a frame: at 0.25 s a loaded machine (2 cores, 8 jobs) let the unbounded-allocation frame run into the
   * time budget before the 32 MB limit stopped it, which is the stop that frame is there to show. */
  flame_lua_options o = {.sandbox = true, .memory_limit = (size_t)32 << 20, .time_budget = 1.0};
  flame_lua_state *S = NULL;
  fl_tensor *w = NULL, *b = NULL;
  int bad = 0;
  if (save_model(model) != FL_OK || load_model(model, &w, &b) != FL_OK) {
    fprintf(stderr, "image_tool: the model: %s\n", fl_last_error());
    bad = 1;
    goto done;
  }
  if (flame_lua_open(&o, &S) != FL_OK) {
    fprintf(stderr, "image_tool: %s\n", fl_last_error());
    bad = 1;
    goto done;
  }
  fl_tensor *wb[2] = {w, b};
  if (flame_lua_run(S, filter_script, "=filter.lua") != FL_OK || flame_lua_call(S, "init", 2, wb, 0, NULL) != FL_OK) {
    fprintf(stderr, "image_tool: the filter: %s\n", flame_lua_error(S));
    bad = 1;
    goto done;
  }

  static float img[H * W], shown[H * W], next[H * W];
  int nbroken = (int)(sizeof broken / sizeof *broken);
  for (int f = 0; f < 2 * nbroken + 2; f++) {
    for (int i = 0; i < H * W; i++) img[i] = 0.5f + 0.5f * sinf(0.37f * (float)i + (float)f); /* the next frame */
    int breaking = f % 2 == 1 && f / 2 < nbroken; /* every other frame, a user's broken edit */
    if (breaking && flame_lua_run(S, broken[f / 2].code, "=edit.lua") != FL_OK) {
      fprintf(stderr, "image_tool: loading edit %d: %s\n", f / 2, flame_lua_error(S));
      bad = 1;
    }
    fl_status st = run_frame(S, img, next); /* shown only if the frame succeeds: a broken one may have half-written it */
    if (st == FL_OK) memcpy(shown, next, sizeof shown);
    if (breaking) {
      const char *msg = flame_lua_error(S);
      int ok = st != FL_OK && strstr(msg, broken[f / 2].expect);
      printf("frame %d: %s: %s (%.*s)\n", f, broken[f / 2].what, ok ? "skipped, last frame kept" : "NOT STOPPED",
             (int)strcspn(msg, "\n"), st == FL_OK ? "it ran" : msg);
      bad |= !ok;
      if (flame_lua_run(S, filter_script, "=filter.lua") != FL_OK) bad = 1; /* the user's undo */
      continue;
    }
    double err = 0;
    for (int y = 0; y < H && st == FL_OK; y++)
      for (int x = 0; x < W; x++) err = fmax(err, fabs(shown[y * W + x] - reference(img, y, x)));
    printf("frame %d: filtered, max error %.2g%s%s\n", f, err, st ? ": " : "", st ? flame_lua_error(S) : "");
    bad |= st != FL_OK || err > 1e-5;
  }
  printf("tensor bytes charged to the state after the frames: %zu\n",
         fl_context_memory_used(flame_lua_context(S), FL_CPU_DEVICE));
done:
  flame_lua_close(S);
  fl_release(w);
  fl_release(b);
  remove(model);
  return bad;
}
