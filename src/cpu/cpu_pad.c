/* CPU reflect and replicate padding over planes. The forward copies each
 * output element's bits from the input position fl_pad_src maps it to (any
 * dtype); the backward gathers each input-gradient element over the outputs
 * that read it (fl_pad_sources, core/pool_geom.h), as the CUDA kernel does. */
#include "cpu_planes.h"
#include <string.h>

typedef struct {
  const fl_pad_geom *g;
  const char *x;
  char *out;
  fl_dtype dt;
  int64_t nin, nout;
} pad_ctx;

static void pad_plane(const void *vc, int64_t p, double *a, double *b) {
  const pad_ctx *c = vc;
  const fl_pad_geom *g = c->g;
  const size_t es = fl_dtype_size(c->dt);
  const char *x = c->x + (size_t)(p * c->nin) * es;
  char *o = c->out + (size_t)(p * c->nout) * es;
  for (int64_t od = 0; od < g->out[0]; od++) {
    int64_t sd = fl_pad_src(g, 0, od);
    for (int64_t oh = 0; oh < g->out[1]; oh++) {
      int64_t sh = (sd * g->in[1] + fl_pad_src(g, 1, oh)) * g->in[2];
      for (int64_t ow = 0; ow < g->out[2]; ow++, o += es) memcpy(o, x + (size_t)(sh + fl_pad_src(g, 2, ow)) * es, es);
    }
  }
}

fl_status fl_cpu_pad(const fl_pad_geom *g, fl_tensor *out, const fl_tensor *x) {
  pad_ctx c = {g, fl_data_ptr(x), fl_data_ptr(out), x->dtype, fl_plane3(g->in), fl_plane3(g->out)};
  return fl_cpu_each_plane("pad", g->planes, 0, 0, g->planes * c.nout * 4, pad_plane, &c);
}

static void pad_grad_plane(const void *vc, int64_t p, double *a, double *b) {
  const pad_ctx *c = vc;
  const fl_pad_geom *g = c->g;
  const int64_t es = (int64_t)fl_dtype_size(c->dt), OH = g->out[1], OW = g->out[2];
  fl_load_f64(a, c->x + p * c->nout * es, es, c->nout, c->dt);
  int64_t k = 0, lo[3][3], hi[3][3];
  int n[3];
  for (int64_t id = 0; id < g->in[0]; id++) {
    n[0] = fl_pad_sources(g, 0, id, lo[0], hi[0]);
    for (int64_t ih = 0; ih < g->in[1]; ih++) {
      n[1] = fl_pad_sources(g, 1, ih, lo[1], hi[1]);
      for (int64_t iw = 0; iw < g->in[2]; iw++) {
        n[2] = fl_pad_sources(g, 2, iw, lo[2], hi[2]);
        double s = 0;
        for (int u = 0; u < n[0]; u++)
          for (int64_t od = lo[0][u]; od < hi[0][u]; od++)
            for (int v = 0; v < n[1]; v++)
              for (int64_t oh = lo[1][v]; oh < hi[1][v]; oh++)
                for (int w = 0; w < n[2]; w++)
                  for (int64_t ow = lo[2][w]; ow < hi[2][w]; ow++) s += a[(od * OH + oh) * OW + ow];
        b[k++] = s;
      }
    }
  }
  fl_store_f64(c->out + p * c->nin * es, es, b, c->nin, c->dt);
}

fl_status fl_cpu_pad_backward(const fl_pad_geom *g, fl_tensor *dx, const fl_tensor *dy) {
  pad_ctx c = {g, fl_data_ptr(dy), fl_data_ptr(dx), dy->dtype, fl_plane3(g->in), fl_plane3(g->out)};
  return fl_cpu_each_plane("pad backward", g->planes, c.nout, c.nin, g->planes * c.nout * 4, pad_grad_plane, &c);
}
