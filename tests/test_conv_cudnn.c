/* The CUDA backend's direct convolution entry (conv_direct, cuDNN) called
 * directly, below the conv front-end: forward, input gradient (also a
 * transposed convolution's forward) and weight gradient of small random
 * problems (1-D, 2-D, 3-D; stride, padding, dilation, groups, depthwise,
 * non-square kernels, the UNet's channel counts, pointers off 16-byte
 * alignment) against a naive f64 convolution here, through both cuDNN APIs:
 * the legacy one and the backend (graph) one (fl_set_cudnn_api). Each element
 * must be within tol * sum|terms| of the reference (f32 tight, bf16/f16
 * loose), the output is pre-filled with NaN so a partial write shows, a second
 * call (cached plan) must agree, and the two APIs must agree with each other
 * (bit for bit, or within the tolerance: they may pick different kernels).
 * One "PASS"/"FAIL" line per case, dtype and direction, then how many ran on
 * the graph API (a key without a usable engine takes the legacy one); the
 * UNet's shapes must run on it. Also: what supports() declines. FLAME_TEST_CONV_CASES=part,part runs only
 * the cases whose names contain one of the parts (the sanitizer's shorter run).
 * Passes with "skipped: ..." where there is no GPU or no loadable cuDNN. */
#include "check.h"
#include "internal.h"
#include <stdlib.h>

static const fl_device CUDA0 = {FL_CUDA, 0};

typedef struct {
  const char *name;
  int nsp;
  int64_t n, cin, cout, groups;
  int64_t in[3], k[3], stride[3], pad[3], dil[3];
  bool unet;      /* must run on the graph API (not fall back to the legacy one) */
  int64_t offset; /* elements before each operand's data in its storage */
} conv_case;

static const conv_case CASES[] = {
  {"1d k3 p1", 1, 2, 4, 6, 1, {17}, {3}, {1}, {1}, {1}, false, 0},
  {"1d groups2 k5 s2 p2 d2", 1, 2, 4, 4, 2, {20}, {5}, {2}, {2}, {2}, false, 0},
  {"2d k3 p1", 2, 2, 3, 5, 1, {9, 11}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, false, 0},
  {"2d depthwise k3 p1", 2, 2, 8, 8, 8, {10, 10}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, false, 0},
  {"2d depthwise x2 k5 p2 s2", 2, 2, 4, 8, 4, {11, 12}, {5, 5}, {2, 2}, {2, 2}, {1, 1}, false, 0},
  {"2d groups2 k3x2 s2x1 p1x0 d2x1", 2, 1, 6, 4, 2, {13, 9}, {3, 2}, {2, 1}, {1, 0}, {2, 1}, false, 0},
  {"2d 1x1 s2 groups4", 2, 3, 4, 8, 4, {8, 8}, {1, 1}, {2, 2}, {0, 0}, {1, 1}, false, 0},
  {"2d tensor-core sizes k3 p1", 2, 2, 16, 32, 1, {16, 16}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, false, 0},
  {"3d k3 p1", 3, 2, 3, 4, 1, {5, 6, 7}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, false, 0},
  {"3d odd cout k2x3x2 s1x2x2 p1x1x0 d1x1x2", 3, 2, 2, 3, 1, {3, 4, 5}, {2, 3, 2}, {1, 2, 2}, {1, 1, 0}, {1, 1, 2}, false, 0},
  {"3d groups2 k2x3x3 s2x1x2 p0x1x1 d1x2x1", 3, 1, 4, 4, 2, {6, 7, 5}, {2, 3, 3}, {2, 1, 2}, {0, 1, 1}, {1, 2, 1}, false, 0},
  /* examples/train.lua's UNet (channels 96/192, 8x8 to 32x32 images): these must run on the graph API */
  {"unet 2d k3 p1 96->96 8x8", 2, 2, 96, 96, 1, {8, 8}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, true, 0},
  {"unet 2d k3 p1 96->192 16x16", 2, 1, 96, 192, 1, {16, 16}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, true, 0},
  {"unet 2d 1x1 192->96 8x8", 2, 2, 192, 96, 1, {8, 8}, {1, 1}, {1, 1}, {0, 0}, {1, 1}, true, 0},
  {"unet 2d k3 s2 p1 96->96 16x16 (downsample)", 2, 1, 96, 96, 1, {16, 16}, {3, 3}, {2, 2}, {1, 1}, {1, 1},
   true, 0},
  /* every operand one element past a 16-byte boundary: the plans for unaligned pointers */
  {"2d k3 p1 unaligned", 2, 2, 3, 5, 1, {9, 11}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, false, 1},
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* xorshift: reproducible */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static fl_conv_geom geom_of(const conv_case *c) {
  fl_conv_geom g;
  memset(&g, 0, sizeof g);
  g.nsp = c->nsp, g.n = c->n, g.cin = c->cin, g.cout = c->cout, g.groups = c->groups;
  for (int i = 0; i < 3; i++) {
    bool used = i < c->nsp;
    g.in[i] = used ? c->in[i] : 1, g.k[i] = used ? c->k[i] : 1, g.stride[i] = used ? c->stride[i] : 1;
    g.pad[i] = used ? c->pad[i] : 0, g.dil[i] = used ? c->dil[i] : 1;
    g.out[i] = (g.in[i] + 2 * g.pad[i] - g.dil[i] * (g.k[i] - 1) - 1) / g.stride[i] + 1;
  }
  return g;
}

static int64_t prod3(const int64_t *v) { return v[0] * v[1] * v[2]; }

/* The naive convolution in f64, every direction from one loop over all
 * (image, out channel, output position, in channel of the group, tap) terms;
 * abs gets the sum of the terms' magnitudes (the error scale). */
static void reference(fl_conv_dir dir, const fl_conv_geom *g, const double *x, const double *w, const double *dy,
                      double *ref, double *abs) {
  const int64_t cg = g->cin / g->groups, og = g->cout / g->groups;
  const int64_t isz = prod3(g->in), osz = prod3(g->out), ksz = prod3(g->k);
  int64_t nref = dir == FL_CONV_FORWARD ? g->n * g->cout * osz : dir == FL_CONV_DATA ? g->n * g->cin * isz
                                                                                     : g->cout * cg * ksz;
  memset(ref, 0, sizeof(double) * (size_t)nref);
  memset(abs, 0, sizeof(double) * (size_t)nref);
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t co = 0; co < g->cout; co++)
      for (int64_t o = 0; o < osz; o++)
        for (int64_t ci = 0; ci < cg; ci++)
          for (int64_t k = 0; k < ksz; k++) {
            int64_t od = o / (g->out[1] * g->out[2]), oh = o / g->out[2] % g->out[1], ow = o % g->out[2];
            int64_t kd = k / (g->k[1] * g->k[2]), kh = k / g->k[2] % g->k[1], kw = k % g->k[2];
            int64_t id = od * g->stride[0] - g->pad[0] + kd * g->dil[0];
            int64_t ih = oh * g->stride[1] - g->pad[1] + kh * g->dil[1];
            int64_t iw = ow * g->stride[2] - g->pad[2] + kw * g->dil[2];
            if (id < 0 || id >= g->in[0] || ih < 0 || ih >= g->in[1] || iw < 0 || iw >= g->in[2]) continue;
            int64_t c = co / og * cg + ci;
            int64_t xi = ((n * g->cin + c) * g->in[0] + id) * g->in[1] * g->in[2] + ih * g->in[2] + iw;
            int64_t wi = (co * cg + ci) * ksz + k;
            int64_t yi = (n * g->cout + co) * osz + o;
            int64_t at = dir == FL_CONV_FORWARD ? yi : dir == FL_CONV_DATA ? xi : wi;
            double term = dir == FL_CONV_FORWARD ? x[xi] * w[wi] : dir == FL_CONV_DATA ? dy[yi] * w[wi] : x[xi] * dy[yi];
            ref[at] += term;
            abs[at] += fabs(term);
          }
}

/* A contiguous tensor of `shape` on the GPU whose data starts `offset` elements into its storage (a view). */
static fl_tensor *at_offset(fl_tensor *flat, int nd, const int64_t *shape, int64_t offset) {
  fl_tensor *part = NULL, *t = NULL;
  OK(fl_narrow(flat, 0, offset, fl_numel(flat) - offset, &part));
  if (part) OK(fl_view(part, nd, shape, &t));
  fl_release(part);
  return t;
}

/* A contiguous random tensor on the GPU in dt, `offset` elements into its storage, and its values as rounded to dt. */
static fl_tensor *random_on_gpu(int nd, const int64_t *shape, fl_dtype dt, int64_t offset, double **vals) {
  int64_t n = 1;
  for (int i = 0; i < nd; i++) n *= shape[i];
  double *v = malloc(sizeof(double) * (size_t)(n + offset));
  for (int64_t i = 0; i < n + offset; i++) v[i] = 2 * urand() - 1;
  fl_tensor *h = NULL, *d = NULL, *flat = NULL;
  fl_opts o = fl_default_opts();
  o.dtype = dt;
  o.device = FL_CPU_DEVICE;
  int64_t all = n + offset;
  OK(fl_from_doubles(v, 1, &all, o, &h));
  if (h) OK(fl_to_doubles(h, v)); /* the rounded values: the reference uses what the GPU sees */
  if (h) OK(fl_to(h, dt, CUDA0, &flat));
  if (flat) d = at_offset(flat, nd, shape, offset);
  fl_release(h), fl_release(flat);
  memmove(v, v + offset, sizeof(double) * (size_t)n);
  *vals = v;
  return d;
}

static double tol_of(fl_dtype dt) { return dt == FL_F32 ? 2e-5 : dt == FL_F16 ? 4e-3 : 2e-2; }

static int shape_of(const fl_conv_geom *g, int64_t lead, int64_t ch, const int64_t *sp, int64_t *shape) {
  shape[0] = lead, shape[1] = ch;
  for (int i = 0; i < g->nsp; i++) shape[2 + i] = sp[i];
  return g->nsp + 2;
}

static const char *const DIRS[] = {"forward", "input grad", "weight grad"};
static const char *const APIS[] = {"legacy", "graph"};
static int graph_ran, graph_runs; /* problems the graph API ran / was asked to run */

/* The largest error of res against ref, relative to the terms' scale; NaN (an unwritten element) counts as infinite. */
static double worst_error(const double *res, const double *ref, const double *abs, int64_t n, int64_t *at) {
  double worst = 0;
  *at = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs(res[i] - ref[i]) / (abs[i] + 1e-6);
    if (!(e <= worst)) worst = isnan(e) ? INFINITY : e, *at = i;
  }
  return worst;
}

/* One API on one problem: res gets its result; true when it matched the reference, a second call (the cached
 * plan) agreed, and the graph API ran where the case needs it. *ran: the API that ran (-1: the call failed). */
static bool run_api(const fl_backend *be, const conv_case *c, fl_dtype dt, fl_conv_dir dir, fl_cudnn_api api,
                    fl_tensor *tout, const fl_tensor *ta, const fl_tensor *tb, const fl_conv_geom *g,
                    const double *ref, const double *abs, double *res, int *ran) {
  int64_t n = fl_numel(tout), at;
  double *again = malloc(sizeof(double) * (size_t)n);
  fl_set_cudnn_api(api);
  fl_cudnn_note_ran((fl_cudnn_api)-1);
  *ran = -1;
  OK(fl_fill_(tout, NAN));
  fl_status st = be->conv_direct(dir, tout, ta, tb, g);
  CHECK(st == FL_OK, "%s %s %s (%s API): runs%s%s", c->name, fl_dtype_name(dt), DIRS[dir], APIS[api],
        st ? " -- " : "", st ? fl_last_error() : "");
  bool good = st == FL_OK;
  if (good) {
    *ran = fl_cudnn_last_ran();
    OK(fl_to_doubles(tout, res));
    double worst = worst_error(res, ref, abs, n, &at);
    CHECK(worst <= tol_of(dt), "%s %s %s (%s API): max error %.3g of the terms' scale (tol %.1g; element %lld: %.9g vs %.9g)",
          c->name, fl_dtype_name(dt), DIRS[dir], APIS[api], worst, tol_of(dt), (long long)at, res[at], ref[at]);
    good = worst <= tol_of(dt);
    OK(fl_fill_(tout, NAN));
    OK(be->conv_direct(dir, tout, ta, tb, g)); /* the cached plan */
    OK(fl_to_doubles(tout, again));
    /* a nondeterministic algorithm (atomics) may sum in another order: within tolerance, and all written */
    double diff = worst_error(again, res, abs, n, &at);
    CHECK(diff <= tol_of(dt), "%s %s %s (%s API): a second call (cached plan) agrees (%.3g)", c->name,
          fl_dtype_name(dt), DIRS[dir], APIS[api], diff);
    good = good && diff <= tol_of(dt);
  }
  if (api == FL_CUDNN_GRAPH) {
    graph_runs++;
    graph_ran += *ran == FL_CUDNN_GRAPH;
    if (c->unet)
      CHECK(*ran == FL_CUDNN_GRAPH, "%s %s %s: ran on the graph API (ran: %s)", c->name, fl_dtype_name(dt),
            DIRS[dir], *ran < 0 ? "none" : APIS[*ran]);
    good = good && (!c->unet || *ran == FL_CUDNN_GRAPH);
  }
  free(again);
  return good;
}

/* One direction of one case in one dtype, through both APIs. */
static void run_case(const fl_backend *be, const conv_case *c, fl_dtype dt, fl_conv_dir dir) {
  fl_conv_geom g = geom_of(c);
  /* the spatial sizes of the nsp used dims, at the front as the tensors want them */
  int64_t in[3], k[3], out[3], xs[5], ws[5], ys[5];
  for (int i = 0; i < 3; i++) in[i] = g.in[i], k[i] = g.k[i], out[i] = g.out[i];
  int nd = shape_of(&g, g.n, g.cin, in, xs);
  shape_of(&g, g.cout, g.cin / g.groups, k, ws);
  shape_of(&g, g.n, g.cout, out, ys);
  /* the reference indexes [d, h, w] with unit leading dims: shift the used ones to the back */
  fl_conv_geom r = g;
  for (int i = 0; i < 3; i++) {
    int src = i - (3 - c->nsp);
    r.in[i] = src >= 0 ? g.in[src] : 1, r.k[i] = src >= 0 ? g.k[src] : 1, r.out[i] = src >= 0 ? g.out[src] : 1;
    r.stride[i] = src >= 0 ? g.stride[src] : 1, r.pad[i] = src >= 0 ? g.pad[src] : 0;
    r.dil[i] = src >= 0 ? g.dil[src] : 1;
  }
  double *x, *w, *dy, *o;
  fl_tensor *tx = random_on_gpu(nd, xs, dt, c->offset, &x), *tw = random_on_gpu(nd, ws, dt, c->offset, &w);
  fl_tensor *tdy = random_on_gpu(nd, ys, dt, c->offset, &dy);
  const int64_t *oshape = dir == FL_CONV_FORWARD ? ys : dir == FL_CONV_DATA ? xs : ws;
  fl_tensor *tout = random_on_gpu(nd, oshape, dt, c->offset, &o);
  const fl_tensor *ta = dir == FL_CONV_DATA ? tdy : tx, *tb = dir == FL_CONV_WEIGHT ? tdy : tw;
  if (!tx || !tw || !tdy || !tout) goto done;
  {
    const fl_tensor *ts[3] = {tout, ta, tb};
    const fl_backend *got = NULL;
    CHECK(fl_op_supported(FL_OP_CONV_DIRECT, 0, 3, ts, &got) && got == be, "%s %s %s: supported",
          c->name, fl_dtype_name(dt), DIRS[dir]);
    int64_t n = fl_numel(tout), at;
    double *ref = malloc(sizeof(double) * (size_t)n), *abs = malloc(sizeof(double) * (size_t)n);
    double *res[2] = {malloc(sizeof(double) * (size_t)n), malloc(sizeof(double) * (size_t)n)};
    reference(dir, &r, x, w, dy, ref, abs);
    int ran[2];
    bool good = true;
    for (int api = 0; api < 2; api++)
      good = run_api(be, c, dt, dir, (fl_cudnn_api)api, tout, ta, tb, &g, ref, abs, res[api], &ran[api]) && good;
    bool same = good && memcmp(res[0], res[1], sizeof(double) * (size_t)n) == 0;
    double diff = good ? worst_error(res[1], res[0], abs, n, &at) : INFINITY;
    CHECK(diff <= tol_of(dt), "%s %s %s: the graph API agrees with the legacy one (%.3g)", c->name, fl_dtype_name(dt),
          DIRS[dir], diff);
    good = good && diff <= tol_of(dt);
    printf("%s conv %s %s %s: graph API %s, %s\n", good ? "PASS" : "FAIL", c->name, fl_dtype_name(dt), DIRS[dir],
           ran[1] == FL_CUDNN_GRAPH ? "ran" : ran[1] == FL_CUDNN_LEGACY ? "took the legacy API" : "failed",
           same ? "bit-identical to legacy" : good ? "within tolerance of legacy" : "mismatch");
    free(ref), free(abs), free(res[0]), free(res[1]);
  }
done:
  free(x), free(w), free(dy), free(o);
  fl_release(tx), fl_release(tw), fl_release(tdy), fl_release(tout);
}

/* supports() declines what cuDNN cannot take, so the front-end takes im2col. */
static void declines(const fl_backend *be) {
  int64_t s3[3] = {2, 3, 8}, s2[2] = {3, 8}, s6[6] = {1, 1, 1, 1, 1, 1};
  fl_opts o = fl_default_opts();
  o.device = CUDA0;
  fl_tensor *f32 = NULL, *f64 = NULL, *i32 = NULL, *rank2 = NULL, *rank6 = NULL, *empty = NULL, *tr = NULL;
  o.dtype = FL_F32;
  OK(fl_zeros(3, s3, o, &f32));
  OK(fl_zeros(2, s2, o, &rank2));
  OK(fl_zeros(6, s6, o, &rank6));
  int64_t s0[3] = {0, 3, 8};
  OK(fl_zeros(3, s0, o, &empty));
  if (f32) OK(fl_transpose(f32, 1, 2, &tr));
  o.dtype = FL_F64;
  OK(fl_zeros(3, s3, o, &f64));
  o.dtype = FL_I32;
  OK(fl_zeros(3, s3, o, &i32));
  struct { const char *what; const fl_tensor *t; } bad[] = {
    {"f64", f64}, {"i32", i32}, {"rank 2", rank2}, {"rank 6", rank6}, {"an empty tensor", empty},
    {"a non-contiguous tensor", tr},
  };
  if (f32) {
    const fl_tensor *ts[3] = {f32, f32, f32};
    fl_op_query q = {FL_OP_CONV_DIRECT, 0, 3, ts};
    CHECK(be->supports(&q), "supports: three contiguous f32 tensors");
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (!bad[i].t || !f32) continue;
    for (int pos = 0; pos < 3; pos++) {
      const fl_tensor *ts[3] = {f32, f32, f32};
      ts[pos] = bad[i].t;
      fl_op_query q = {FL_OP_CONV_DIRECT, 0, 3, ts};
      CHECK(!be->supports(&q), "supports declines %s as operand %d", bad[i].what, pos);
    }
  }
  fl_release(f32), fl_release(f64), fl_release(i32), fl_release(rank2), fl_release(rank6), fl_release(empty);
  fl_release(tr);
}

/* Whether name contains one of the comma-separated parts of only (all names when only is NULL or empty). */
static bool selected(const char *name, const char *only) {
  if (!only || !*only) return true;
  for (const char *p = only; *p;) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    for (const char *s = name; n && *s; s++)
      if (strncmp(s, p, n) == 0) return true;
    p += n + (e ? 1 : 0);
  }
  return false;
}

int main(void) {
  if (!fl_device_available(FL_CUDA)) {
    printf("skipped: no GPU\n");
    return 0;
  }
  const fl_backend *be = fl_backend_for(FL_CUDA);
  int64_t s3[3] = {1, 1, 4};
  fl_tensor *probe = NULL;
  fl_opts o = fl_default_opts();
  o.device = CUDA0;
  OK(fl_zeros(3, s3, o, &probe));
  const fl_tensor *ts[3] = {probe, probe, probe};
  const fl_backend *got;
  bool have = probe && fl_op_supported(FL_OP_CONV_DIRECT, 0, 3, ts, &got);
  fl_release(probe);
  if (!have) {
    printf("skipped: the CUDA backend has no usable conv_direct (no cuDNN)\n");
    return failures ? 1 : 0;
  }
  declines(be);
  static const fl_dtype DTYPES[] = {FL_F32, FL_BF16, FL_F16};
  fl_cudnn_api was = fl_get_cudnn_api();
  const char *only = getenv("FLAME_TEST_CONV_CASES"); /* comma-separated parts of case names (the sanitizer's subset) */
  for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++)
    for (int d = 0; d < 3 && selected(CASES[c].name, only); d++)
      for (int dir = 0; dir < 3; dir++) run_case(be, &CASES[c], DTYPES[d], (fl_conv_dir)dir);
  fl_set_cudnn_api(was);
  printf("graph API: ran %d of %d problems (the rest took the legacy API)\n", graph_ran, graph_runs);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
