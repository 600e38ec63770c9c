/* The convolution front-end's calls into a backend's optional conv_direct
 * entry, checked without a GPU: a stand-in CPU table adds a conv_direct that
 * computes each problem by direct loops from nothing but fl_conv_geom and the
 * tensors (what a cuDNN entry gets), and records how it was asked. Its results
 * (forward, and the x/w gradients through autograd) must equal the im2col
 * path's; a run-time decline must fall back in "auto" and fail in "direct";
 * "gemm" must never call it. */
#include "internal.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures;
static void check(bool ok, const char *what) {
  printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) failures++;
}

static int calls[3], queries, bad_queries;
static bool decline;

/* What the front-end promises in the query: out, a, b of one float dtype, sub = the direction. */
static bool stand_in_supports(const fl_op_query *q) {
  if (q->kind != FL_OP_CONV_DIRECT) return true;
  queries++;
  if (q->n != 3 || q->sub < FL_CONV_FORWARD || q->sub > FL_CONV_WEIGHT || q->ts[0]->dtype != q->ts[1]->dtype ||
      q->ts[1]->dtype != q->ts[2]->dtype)
    bad_queries++;
  return q->ts[0]->dtype == FL_F64;
}

/* Every (image, out channel, output position, in channel of its group, kernel offset) pairs
 * one x element with one w and one y element; each direction accumulates its product. */
static fl_status stand_in_direct(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                                 const fl_conv_geom *g) {
  calls[dir]++;
  if (decline) return fl_error(FL_EUNSUPPORTED, "stand-in: declined");
  if (!fl_is_contiguous(out) || !fl_is_contiguous(a) || !fl_is_contiguous(b))
    return fl_error(FL_EINVAL, "stand-in: operands not contiguous");
  const fl_tensor *x = dir == FL_CONV_DATA ? out : a, *w = dir == FL_CONV_WEIGHT ? out : b;
  const fl_tensor *y = dir == FL_CONV_FORWARD ? out : dir == FL_CONV_DATA ? a : b;
  double *X = (double *)fl_data_ptr(x), *W = (double *)fl_data_ptr(w), *Y = (double *)fl_data_ptr(y);
  memset(fl_data_ptr(out), 0, (size_t)fl_numel(out) * sizeof(double));
  int64_t in[3] = {1, 1, 1}, k[3] = {1, 1, 1}, o[3] = {1, 1, 1}, s[3] = {1, 1, 1}, p[3] = {0, 0, 0}, d[3] = {1, 1, 1};
  for (int i = 0; i < g->nsp; i++) {
    int j = 3 - g->nsp + i;
    in[j] = g->in[i], k[j] = g->k[i], o[j] = g->out[i], s[j] = g->stride[i], p[j] = g->pad[i], d[j] = g->dil[i];
  }
  int64_t cin_g = g->cin / g->groups, cout_g = g->cout / g->groups;
  int64_t inv = in[0] * in[1] * in[2], kvol = k[0] * k[1] * k[2], L = o[0] * o[1] * o[2];
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t co = 0; co < g->cout; co++)
      for (int64_t l = 0; l < L; l++)
        for (int64_t ci = 0; ci < cin_g; ci++)
          for (int64_t kk = 0; kk < kvol; kk++) {
            int64_t ol[3] = {l / (o[1] * o[2]), l / o[2] % o[1], l % o[2]};
            int64_t kl[3] = {kk / (k[1] * k[2]), kk / k[2] % k[1], kk % k[2]}, il[3];
            bool ok = true;
            for (int e = 0; e < 3; e++) {
              il[e] = ol[e] * s[e] - p[e] + kl[e] * d[e];
              ok = ok && il[e] >= 0 && il[e] < in[e];
            }
            if (!ok) continue;
            int64_t c = co / cout_g * cin_g + ci;
            double *xv = &X[(n * g->cin + c) * inv + (il[0] * in[1] + il[1]) * in[2] + il[2]];
            double *wv = &W[(co * cin_g + ci) * kvol + kk], *yv = &Y[(n * g->cout + co) * L + l];
            if (dir == FL_CONV_FORWARD) *yv += *xv * *wv;
            else if (dir == FL_CONV_DATA) *xv += *yv * *wv;
            else *wv += *xv * *yv;
          }
  return FL_OK;
}

static double max_diff(const fl_tensor *a, const fl_tensor *b) {
  int64_t n = fl_numel(a);
  if (!b || n != fl_numel(b)) return INFINITY;
  double va[4096], vb[4096], m = 0;
  if (n > 4096 || fl_to_doubles(a, va) != FL_OK || fl_to_doubles(b, vb) != FL_OK) return INFINITY;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(va[i] - vb[i]));
  return m;
}

typedef struct {
  const char *name;
  int nsp;
  bool transposed;
  int64_t xs[5], ws[5];
  fl_conv_params p;
} conv_case;

/* y, dx, dw of one case under the current algo (f64, fixed inputs and upstream gradient). */
static fl_status run_case(const conv_case *c, fl_tensor **r) {
  fl_opts o = fl_default_opts();
  o.dtype = FL_F64;
  fl_tensor *x = NULL, *w = NULL, *y = NULL, *gy = NULL;
  fl_status st = FL_OK;
  fl_manual_seed(3);
  FL_CHECK(fl_randn(c->nsp + 2, c->xs, o, &x));
  FL_CHECK(fl_randn(c->nsp + 2, c->ws, o, &w));
  FL_CHECK(fl_set_requires_grad(x, true));
  FL_CHECK(fl_set_requires_grad(w, true));
  FL_CHECK(c->transposed ? fl_conv_transpose(c->nsp, x, w, NULL, &c->p, &y) : fl_conv(c->nsp, x, w, NULL, &c->p, &y));
  FL_CHECK(fl_randn(fl_ndim(y), fl_shape(y), o, &gy));
  FL_CHECK(fl_backward(y, gy, false));
  FL_CHECK(fl_detach(y, &r[0]));
  r[1] = fl_retain(fl_grad(x));
  r[2] = fl_retain(fl_grad(w));
done:
  fl_release(x), fl_release(w), fl_release(y), fl_release(gy);
  return st;
}

int main(void) {
  fl_backend stand_in = *fl_backend_for(FL_CPU);
  stand_in.name = "cpu-with-direct";
  stand_in.supports = stand_in_supports;
  stand_in.conv_direct = stand_in_direct;
  fl_register_backend(FL_CPU, &stand_in);

  conv_case cases[4];
  for (int i = 0; i < 4; i++) cases[i].p = fl_conv_default_params();
  cases[0] = (conv_case){"conv2d stride, padding, dilation, groups", 2, false, {2, 4, 7, 6}, {6, 2, 3, 2}, cases[0].p};
  cases[0].p.stride[0] = 2, cases[0].p.padding[1] = 1, cases[0].p.dilation[1] = 2, cases[0].p.groups = 2;
  cases[1] = (conv_case){"conv3d", 3, false, {1, 2, 3, 4, 5}, {3, 2, 2, 2, 3}, cases[1].p};
  cases[1].p.padding[0] = 1, cases[1].p.stride[2] = 2;
  cases[2] = (conv_case){"conv1d depthwise", 1, false, {2, 3, 9}, {3, 1, 3}, cases[2].p};
  cases[2].p.groups = 3, cases[2].p.padding[0] = 2, cases[2].p.dilation[0] = 2;
  cases[3] = (conv_case){"conv_transpose2d, output_padding at or above the stride", 2, true, {1, 4, 3, 3}, {4, 3, 3, 2},
                         cases[3].p};
  cases[3].p.stride[1] = 2, cases[3].p.padding[0] = 1, cases[3].p.output_padding[0] = 1, cases[3].p.dilation[0] = 2,
  cases[3].p.output_padding[1] = 1, cases[3].p.groups = 2;

  char what[160];
  for (int i = 0; i < 4; i++) {
    const conv_case *c = &cases[i];
    fl_tensor *gemm[3] = {0}, *direct[3] = {0}, *fallback[3] = {0};
    memset(calls, 0, sizeof calls);
    fl_set_conv_algo(FL_CONV_GEMM);
    fl_status st = run_case(c, gemm);
    snprintf(what, sizeof what, "%s: the gemm path runs and never calls conv_direct", c->name);
    check(st == FL_OK && calls[0] + calls[1] + calls[2] == 0, what);
    fl_set_conv_algo(FL_CONV_AUTO);
    queries = bad_queries = 0;
    st = run_case(c, direct);
    snprintf(what, sizeof what, "%s: auto asks supports() with (out, a, b) and calls conv_direct once per problem",
             c->name);
    check(st == FL_OK && queries == 3 && bad_queries == 0 && calls[0] == 1 && calls[1] == 1 && calls[2] == 1, what);
    if (st != FL_OK) printf("     (%s)\n", fl_last_error());
    snprintf(what, sizeof what, "%s: the direct loops from fl_conv_geom give the im2col path's y, dx, dw", c->name);
    check(max_diff(direct[0], gemm[0]) < 1e-12 && max_diff(direct[1], gemm[1]) < 1e-12 &&
              max_diff(direct[2], gemm[2]) < 1e-12,
          what);
    decline = true;
    st = run_case(c, fallback);
    snprintf(what, sizeof what, "%s: a run-time decline falls back to the im2col path in auto", c->name);
    check(st == FL_OK && max_diff(fallback[0], gemm[0]) < 1e-12 && max_diff(fallback[2], gemm[2]) < 1e-12, what);
    decline = false;
    for (int j = 0; j < 3; j++) fl_release(gemm[j]), fl_release(direct[j]), fl_release(fallback[j]);
  }

  /* "direct": a decline is the error; a dtype supports() refuses is the no-path error */
  fl_tensor *r[3] = {0};
  fl_set_conv_algo(FL_CONV_DIRECT);
  decline = true;
  fl_status st = run_case(&cases[0], r);
  check(st == FL_EUNSUPPORTED && strstr(fl_last_error(), "conv2d: stand-in: declined"),
        "direct: a run-time decline is the error, prefixed with the op");
  printf("     (%s)\n", fl_last_error());
  decline = false;
  fl_opts o = fl_default_opts();
  fl_tensor *x = NULL, *w = NULL, *y = NULL;
  fl_ones(4, (int64_t[]){1, 1, 3, 3}, o, &x);
  fl_ones(4, (int64_t[]){1, 1, 3, 3}, o, &w);
  st = fl_conv(2, x, w, NULL, NULL, &y);
  check(st == FL_EUNSUPPORTED && strstr(fl_last_error(), "conv2d: no direct convolution path on cpu"),
        "direct: a case supports() declines is the no-path error");
  printf("     (%s)\n", fl_last_error());
  check(fl_set_conv_algo(FL_CONV_AUTO) == FL_CONV_DIRECT && fl_get_conv_algo() == FL_CONV_AUTO,
        "fl_set_conv_algo returns the previous setting");
  fl_release(x), fl_release(w), fl_release(y);
  for (int j = 0; j < 3; j++) fl_release(r[j]);
  printf("%s\n", failures ? "FAILED" : "all passed");
  return failures != 0;
}
