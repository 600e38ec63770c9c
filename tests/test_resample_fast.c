/* The 2-d fast paths of the CUDA pooling, interpolation and padding kernels (cuda/resample_fast.cuh) against
 * core/pool_geom.h's generic functions, on the host (no GPU needed): for many shapes, every window, gather range,
 * source pixel and flat-index split the fast kernels compute must equal the generic kernels'. The fast kernels
 * loop over these in the generic kernels' order, so equal index math means bit-identical results. Also: the
 * magic-number divisions, and that the makers refuse what the fast paths cannot do. Prints failures only. */
#include "../cuda/resample_fast.cuh"
#include <stdio.h>
#include <stdlib.h>
static long fails = 0, checked = 0;
#define CK(c, ...) do { checked++; if (!(c)) { if (fails++ < 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)
static uint64_t rng_state = 7;
static uint64_t rng(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static int64_t R(int64_t a, int64_t b) { return a + (int64_t)(rng() % (uint64_t)(b - a + 1)); }

static void check_udiv(void) {
  for (uint32_t d = 1; d < 1000; d++) {
    fc_udiv v = fc_udiv_make(d);
    for (int t = 0; t < 300; t++) {
      uint32_t n = t < 100 ? (uint32_t)t * d + (t % 3) - 1 : (uint32_t)(rng() & 0x7fffffff);
      if (n > 0x7fffffffu) continue;
      CK(fc_udiv_q(v, n) == n / d, "udiv %u/%u", n, d);
    }
    CK(fc_udiv_q(v, 0x7fffffffu) == 0x7fffffffu / d, "udiv max %u", d);
  }
  for (int t = 0; t < 50000; t++) {
    uint32_t d = (uint32_t)R(1, 0x7fffffff), n = (uint32_t)R(0, 0x7fffffff);
    fc_udiv v = fc_udiv_make(d);
    CK(fc_udiv_q(v, n) == n / d, "udiv %u/%u", n, d);
    CK(fc_udiv_q(v, 0x7fffffffu) == 0x7fffffffu / d, "udiv max %u", d);
    uint32_t m = (0x7fffffffu / d) * d; /* multiples and their neighbours */
    CK(fc_udiv_q(v, m) == m / d && fc_udiv_q(v, m - 1) == (m - 1) / d, "udiv edge %u", d);
  }
}

/* the plain split of e over [planes, rows, cols] against fc_split2 */
static void check_split(int64_t planes, int rows, int cols, fc_udiv rd, fc_udiv cd) {
  int64_t n = planes * rows * cols;
  int64_t step = n > 200000 ? n / 100000 : 1;
  for (int64_t e = 0; e < n; e += step) {
    int r, c;
    int p = fc_split2((uint32_t)e, cd, rd, &r, &c);
    CK(p == e / (rows * (int64_t)cols) && r == (e / cols) % rows && c == e % cols, "split %lld", (long long)e);
  }
}

static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t dil, bool ceil_mode) {
  int64_t num = in + 2 * p - dil * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil_mode && (o - 1) * s >= in + p) o--;
  return o;
}

static long pool_taken = 0, pool_total = 0;
static void check_pool_geom(const fl_pool_geom *gp) {
  const fl_pool_geom g = *gp;
  pool_total++;
  fc_pool2d f;
  if (!fc_pool2d_make(&g, &f)) return;
  pool_taken++;
  for (int d = 0; d < 2; d++) {
    for (int64_t o = 0; o < g.out[d + 1]; o++) {
      int64_t lo, hi, dv;
      int l, h, v;
      fl_pool_window(&g, d + 1, o, &lo, &hi, &dv);
      fc_pool2d_window(&f, d, (int)o, &l, &h, &v);
      CK(lo == l && hi == h && dv == v, "window kind %d d %d o %lld: %lld %lld %lld vs %d %d %d", g.kind, d, (long long)o,
         (long long)lo, (long long)hi, (long long)dv, l, h, v);
    }
    for (int64_t i = 0; i < g.in[d + 1]; i++) {
      int64_t lo, hi;
      int l, h;
      fl_pool_range(&g, d + 1, i, &lo, &hi);
      fc_pool2d_range(&f, d, (int)i, &l, &h);
      CK(lo == l && hi == h, "range kind %d d %d i %lld: %lld %lld vs %d %d", g.kind, d, (long long)i, (long long)lo,
         (long long)hi, l, h);
    }
  }
  /* dim 0 (the padded one) must be the identity: window [0, 1), div 1, range [0, 1) */
  int64_t lo, hi, dv;
  fl_pool_window(&g, 0, 0, &lo, &hi, &dv);
  CK(lo == 0 && hi == 1 && dv == 1, "dim0 window");
  fl_pool_range(&g, 0, 0, &lo, &hi);
  CK(lo == 0 && hi == 1, "dim0 range");
  check_split(g.planes, f.out[0], f.out[1], f.out_div[0], f.out_div[1]);
  check_split(g.planes, f.in[0], f.in[1], f.in_div[0], f.in_div[1]);
}

static void check_pool(void) {
  for (int t = 0; t < 8000; t++) {
    fl_pool_geom g = {0};
    g.kind = (int)R(0, 2);
    g.count_include_pad = R(0, 1);
    g.planes = R(1, 3);
    g.base = R(0, 1);
    const bool ceil_mode = R(0, 1);
    bool ok = true;
    for (int d = 0; d < 3; d++) g.in[d] = g.out[d] = g.k[d] = g.stride[d] = g.dil[d] = 1, g.pad[d] = 0;
    int nsp = (int)R(1, 2);
    for (int d = 3 - nsp; d < 3; d++) {
      g.in[d] = R(1, t < 200 ? 300 : 40);
      if (g.kind == FL_POOL_ADAPTIVE_AVG) { g.out[d] = R(1, 2 * g.in[d] + 3); continue; }
      int64_t k = R(1, 6), s = R(0, 2) == 0 ? k : R(1, 5), dil = g.kind == FL_POOL_MAX ? R(1, 3) : 1, p = R(0, k / 2);
      if (R(0, 3) == 0) p = 0;
      g.k[d] = k, g.stride[d] = s, g.dil[d] = dil, g.pad[d] = p;
      int64_t o = pool_out_size(g.in[d], k, s, p, dil, ceil_mode);
      if (o <= 0 || (k - 1) * dil + 1 > g.in[d] + 2 * p) ok = false;
      g.out[d] = o;
    }
    if (ok) check_pool_geom(&g);
  }
  /* the bench shapes, at full size */
  fc_pool2d f0;
  fl_pool_geom g = {FL_POOL_MAX, false, 32 * 128, {1, 64, 64}, {1, 32, 32}, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, {1, 1, 1}, 0};
  check_pool_geom(&g);
  g.kind = FL_POOL_AVG;
  check_pool_geom(&g);
  fl_pool_geom h = {FL_POOL_MAX, true, 32 * 128, {1, 64, 64}, {1, 32, 32}, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, {1, 1, 1}, 1};
  check_pool_geom(&h);
  h.kind = FL_POOL_AVG;
  check_pool_geom(&h);
  fl_pool_geom a = {FL_POOL_ADAPTIVE_AVG, false, 32 * 128, {1, 64, 64}, {1, 7, 7}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 0};
  check_pool_geom(&a);
  CK(fc_pool2d_make(&g, &f0) && fc_pool2d_make(&h, &f0) && fc_pool2d_make(&a, &f0), "bench pool not taken");
  /* refused: a real 3-d pool, and 2^32 elements */
  fl_pool_geom r = h;
  r.in[0] = 2, r.out[0] = 1, r.k[0] = 2, r.stride[0] = 2;
  fc_pool2d f;
  CK(!fc_pool2d_make(&r, &f), "3-d taken");
  r = h;
  r.planes = 1 << 20;
  CK(!fc_pool2d_make(&r, &f), "2^32 elements taken");
}

static long near_taken = 0, near_total = 0;
static void check_near_geom(const fl_interp_geom *gp) {
  const fl_interp_geom g = *gp;
  near_total++;
  fc_near2d f;
  if (!fc_near2d_make(&g, &f)) return;
  near_taken++;
  for (int d = 0; d < 2; d++) {
    const int64_t fac = f.f[d];
    CK(fac * g.in[d + 1] == g.out[d + 1], "factor");
    for (int64_t o = 0; o < g.out[d + 1]; o++) {
      CK(fc_udiv_q(f.f_div[d], (uint32_t)o) == o / fac, "f div");
      /* what the generic forward reads: fl_nearest_src in the interpolated dims, o in the others */
      int64_t src = d + 1 < FL_PG_DIMS - g.nsp ? o : fl_nearest_src(&g, d + 1, o);
      CK(src == o / fac, "near src d %d o %lld", d, (long long)o);
      CK(fl_interp_weight_f(&g, d + 1, o, o / fac) == 1.0f && fl_interp_weight_d(&g, d + 1, o, o / fac) == 1.0, "w");
    }
    for (int64_t i = 0; i < g.in[d + 1]; i++) {
      for (int f64 = 0; f64 < 2; f64++) {
        int64_t lo, hi;
        fl_interp_range(&g, d + 1, i, &lo, &hi, f64);
        CK(lo == i * fac && hi == (i + 1) * fac, "near range d %d i %lld: %lld %lld fac %lld", d, (long long)i,
           (long long)lo, (long long)hi, (long long)fac);
      }
    }
  }
  int64_t lo, hi;
  fl_interp_range(&g, 0, 0, &lo, &hi, false);
  CK(lo == 0 && hi == 1 && fl_interp_weight_f(&g, 0, 0, 0) == 1.0f, "dim0");
  check_split(g.planes, f.out[0], f.out[1], f.out_div[0], f.out_div[1]);
  check_split(g.planes, f.in[0], f.in[1], f.in_div[0], f.in_div[1]);
}

static fl_interp_geom near_geom(int nsp, const int64_t *in, const int64_t *out, const double *scale) {
  fl_interp_geom g = {0};
  g.nsp = nsp, g.planes = R(1, 3);
  for (int k = 0; k < 3; k++) g.in[k] = g.out[k] = 1, g.scale[k] = 1, g.scale_f[k] = 1;
  for (int j = 0; j < nsp; j++) {
    int k = 3 - nsp + j;
    g.in[k] = in[j];
    g.out[k] = scale ? (int64_t)floor((double)in[j] * scale[j]) : out[j];
    if (scale) g.scale[k] = 1.0 / scale[j], g.scale_f[k] = (float)(1.0 / scale[j]);
    else g.scale[k] = (double)g.in[k] / (double)g.out[k], g.scale_f[k] = (float)g.in[k] / (float)g.out[k];
  }
  return g;
}

static void check_nearest(void) {
  for (int t = 0; t < 5000; t++) {
    int nsp = (int)R(1, 2);
    int64_t in[2], out[2];
    double sc[2];
    for (int j = 0; j < nsp; j++) {
      in[j] = R(1, t < 100 ? 2000 : 60);
      int64_t f = R(1, 6);
      out[j] = R(0, 3) ? f * in[j] : R(1, 200);
      sc[j] = R(0, 3) ? (double)f : (double)R(5, 40) / 10.0;
    }
    const bool by_scale = R(0, 1);
    fl_interp_geom g = near_geom(nsp, in, out, by_scale ? sc : NULL);
    if (g.out[1] > 0 && g.out[2] > 0) check_near_geom(&g);
  }
  int64_t in[2] = {64, 64};
  double two[2] = {2, 2}, three[2] = {3, 3};
  fl_interp_geom g = near_geom(2, in, NULL, two);
  g.planes = 32 * 128;
  fc_near2d f;
  CK(fc_near2d_make(&g, &f), "bench 2x not taken");
  check_near_geom(&g);
  g = near_geom(2, in, NULL, three);
  g.planes = 32 * 128;
  CK(fc_near2d_make(&g, &f), "bench 3x not taken");
  check_near_geom(&g);
  /* large factor-3 sizes: f32's 1/3 rounds up, and floor(o (1/3 in f32)) leaves o / 3 from o = 12582914 on:
   * the maker must see it and refuse (out = 1.5e7, below its size bound) */
  int64_t big[2] = {1, 5000000};
  g = near_geom(2, big, NULL, three);
  g.planes = 1;
  CK(!fc_near2d_make(&g, &f), "inexact factor-3 nearest taken");
  big[1] = 1000000;
  g = near_geom(2, big, NULL, three);
  g.planes = 1;
  check_near_geom(&g);
  /* bilinear never */
  g = near_geom(2, in, NULL, two);
  g.linear = true;
  CK(!fc_near2d_make(&g, &f), "bilinear taken");
}

static long pad_taken = 0, pad_total = 0;
static void check_pad(void) {
  for (int t = 0; t < 10000; t++) {
    fl_pad_geom g = {0};
    g.mode = R(0, 1) ? FL_PAD_REFLECT : FL_PAD_REPLICATE;
    g.planes = R(1, 3);
    for (int d = 0; d < 3; d++) g.in[d] = g.out[d] = 1, g.before[d] = 0;
    int nsp = (int)R(1, 2);
    bool ok = true;
    for (int d = 3 - nsp; d < 3; d++) {
      int64_t in = R(1, t < 100 ? 500 : 30), b, a;
      if (g.mode == FL_PAD_REFLECT) b = R(-(in - 1), in - 1), a = R(-(in - 1), in - 1);
      else b = R(-in + 1, 2 * in), a = R(-in + 1, 2 * in);
      g.in[d] = in, g.before[d] = b, g.out[d] = in + b + a;
      if (g.out[d] <= 0) ok = false;
    }
    if (!ok) continue;
    pad_total++;
    fc_pad2d f;
    if (!fc_pad2d_make(&g, &f)) continue;
    pad_taken++;
    for (int d = 0; d < 2; d++) {
      for (int64_t o = 0; o < g.out[d + 1]; o++)
        CK(fl_pad_src(&g, d + 1, o) == fc_pad2d_src(&f, d, (int)o), "pad src");
      for (int64_t i = 0; i < g.in[d + 1]; i++) {
        int64_t lo[3], hi[3];
        int l[3], h[3];
        int n = fl_pad_sources(&g, d + 1, i, lo, hi), m = fc_pad2d_sources(&f, d, (int)i, l, h);
        CK(n == m, "pad sources count");
        for (int k = 0; k < n && k < m; k++) CK(lo[k] == l[k] && hi[k] == h[k], "pad sources");
      }
    }
    int64_t lo[3], hi[3];
    CK(fl_pad_src(&g, 0, 0) == 0 && fl_pad_sources(&g, 0, 0, lo, hi) == 1 && lo[0] == 0 && hi[0] == 1, "pad dim0");
    check_split(g.planes, f.out[0], f.out[1], f.out_div[0], f.out_div[1]);
    check_split(g.planes, f.in[0], f.in[1], f.in_div[0], f.in_div[1]);
  }
}

int main(void) {
  check_udiv();
  check_pool();
  check_nearest();
  check_pad();
  /* the fast paths must not be vacuous: most random shapes take them */
  CK(pool_taken * 10 > pool_total * 9 && near_taken * 2 > near_total && pad_taken * 10 > pad_total * 9, "fast paths rarely taken");
  printf("%s - checks %ld, failures %ld; taken: pool %ld/%ld nearest %ld/%ld pad %ld/%ld\n", fails ? "FAIL" : "ok  ", checked, fails, pool_taken,
         pool_total, near_taken, near_total, pad_taken, pad_total);
  return fails != 0;
}
