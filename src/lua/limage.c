/* flame.image's C part: PNG encoding (libpng's simplified API) and PNG/JPEG decoding (libpng, libjpeg-turbo).
 * No codec is written here: the libraries read and write the files; this file converts between their 8-bit
 * interleaved [H, W, C] buffers and flame's [C, H, W] f32 tensors. Registered by ldata.c into flame.image. */
#include "lflame.h"
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef FLAME_HAVE_JPEG
#include <jpeglib.h>
#endif

/* Scratch memory as a userdata on the Lua stack: a Lua error unwinding past it leaks nothing. */
static unsigned char *scratch(lua_State *L, size_t n) {
  unsigned char *p = lua_newuserdatauv(L, n ? n : 1, 0);
  return p;
}

/* [C, H, W] f32 in [0, 1] from the first c of the `stride` interleaved 8-bit samples per pixel of an h x w
 * buffer; pushes the tensor. */
static void push_chw(lua_State *L, const unsigned char *buf, int64_t h, int64_t w, int stride, int c) {
  float *f = (float *)scratch(L, (size_t)(h * w * c) * sizeof(float));
  for (int k = 0; k < c; k++)
    for (int64_t i = 0; i < h * w; i++) f[k * h * w + i] = (float)buf[i * stride + k] / 255.0f;
  int64_t shape[3] = {c, h, w};
  fl_tensor *t = NULL;
  fl_opts o = fl_default_opts();
  o.dtype = FL_F32;
  o.device = FL_CPU_DEVICE;
  o.requires_grad = false;
  LFL_CHECK(L, fl_from_host(f, 3, shape, o, &t));
  lua_pop(L, 1);
  lfl_push(L, t);
}

static png_uint_32 png_format(int c) {
  return c == 1 ? PNG_FORMAT_GRAY : c == 2 ? PNG_FORMAT_GA : c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
}

static void load_png(lua_State *L, const char *path, int channels) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path))
    luaL_error(L, "image.load: %s: not a readable PNG (%s)", path, img.message);
  /* 8-bit sRGB samples always (16-bit files are reduced); palette files are expanded */
  int c = channels ? channels : (int)PNG_IMAGE_SAMPLE_CHANNELS(img.format & ~PNG_FORMAT_FLAG_COLORMAP);
  /* Dropping alpha: libpng would composite onto a background; PIL's convert drops the alpha instead, so decode
   * with it (gray+alpha, RGBA) and leave it out below. */
  int dc = (img.format & PNG_FORMAT_FLAG_ALPHA) && (c == 1 || c == 3) ? c + 1 : c;
  img.format = png_format(dc);
  /* sized here in size_t: PNG_IMAGE_SIZE multiplies in 32 bits and wraps for huge images (libpng's default
   * limits keep width and height <= 1000000, so the row stride fits in png_int_32) */
  size_t n = (size_t)img.width * (size_t)dc * (size_t)img.height;
  unsigned char *buf = scratch(L, n);
  if (!png_image_finish_read(&img, NULL, buf, (png_int_32)(img.width * (png_uint_32)dc), NULL)) {
    char msg[sizeof img.message + 1];
    memcpy(msg, img.message, sizeof img.message);
    msg[sizeof img.message] = 0;
    png_image_free(&img);
    luaL_error(L, "image.load: %s: bad PNG data (%s)", path, msg);
  }
  push_chw(L, buf, img.height, img.width, dc, c);
  lua_remove(L, -2);
}

#ifdef FLAME_HAVE_JPEG
typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} jerr_t;
static void jpeg_fail(j_common_ptr cinfo) {
  jerr_t *e = (jerr_t *)cinfo->err;
  cinfo->err->format_message(cinfo, e->msg);
  longjmp(e->jump, 1);
}
static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo, (void)level; } /* warnings are not printed */

/* Decodes into a buffer on the Lua stack; returns NULL with the library's message in err on failure (the Lua
 * error is raised by the caller after the longjmp target is gone). */
static unsigned char *decode_jpeg(lua_State *L, FILE *f, int channels, int64_t *h, int64_t *w, int *c,
                                  char *err, size_t errn) {
  struct jpeg_decompress_struct cinfo;
  jerr_t jerr;
  unsigned char *volatile buf = NULL;
  cinfo.err = jpeg_std_error(&jerr.pub);
  jerr.pub.error_exit = jpeg_fail;
  jerr.pub.emit_message = jpeg_quiet;
  if (setjmp(jerr.jump)) {
    snprintf(err, errn, "%s", jerr.msg);
    jpeg_destroy_decompress(&cinfo);
    return NULL;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  int cc = channels ? channels : cinfo.num_components == 1 ? 1 : 3;
  if (cc == 2) cc = 1; /* gray+alpha has no JPEG meaning: gray, then the alpha is added below */
  cinfo.out_color_space = cc == 1 ? JCS_GRAYSCALE : cc == 3 ? JCS_RGB : JCS_EXT_RGBA;
  jpeg_start_decompress(&cinfo);
  int oc = cinfo.output_components;
  size_t stride = (size_t)cinfo.output_width * (size_t)oc;
  buf = scratch(L, stride * cinfo.output_height); /* Lua memory errors here are raised as Lua errors: fine, the
                                                     decompressor holds only its own malloc'd state (leaked) */
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = buf + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  *h = cinfo.output_height, *w = cinfo.output_width, *c = oc;
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return buf;
}
#endif

/* _load(path, channels): [C, H, W] f32 in [0, 1]; channels 0 keeps the file's (1, 2, 3 or 4). */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int channels = (int)luaL_optinteger(L, 2, 0);
  if (channels < 0 || channels > 4)
    return luaL_error(L, "image.load: channels must be 1, 2, 3 or 4, got %d", channels);
  FILE *f = fopen(path, "rb");
  if (!f) return luaL_error(L, "image.load: cannot open %s: %s", path, strerror(errno));
  unsigned char sig[8] = {0};
  size_t got = fread(sig, 1, 8, f);
  if (got == 8 && !png_sig_cmp(sig, 0, 8)) {
    fclose(f);
    load_png(L, path, channels);
    return 1;
  }
  if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF) {
#ifdef FLAME_HAVE_JPEG
    rewind(f);
    char err[JMSG_LENGTH_MAX + 1];
    int64_t h = 0, w = 0;
    int c = 0;
    unsigned char *buf = decode_jpeg(L, f, channels == 2 ? 1 : channels, &h, &w, &c, err, sizeof err);
    fclose(f);
    if (!buf) return luaL_error(L, "image.load: %s: bad JPEG data (%s)", path, err);
    if (channels == 2) { /* gray + opaque alpha */
      unsigned char *ga = scratch(L, (size_t)(h * w * 2));
      for (int64_t i = 0; i < h * w; i++) ga[2 * i] = buf[i], ga[2 * i + 1] = 255;
      buf = ga, c = 2;
    }
    push_chw(L, buf, h, w, c, c);
    return 1;
#else
    fclose(f);
    return luaL_error(L, "image.load: %s is a JPEG, and this build has no libjpeg (install libjpeg62-turbo-dev "
                         "and rebuild)", path);
#endif
  }
  fclose(f);
  return luaL_error(L, "image.load: %s is neither PNG nor JPEG (by its first bytes)", path);
}

/* _save_png(path, t, range): t [C, H, W] (C 1 to 4) or [H, W], any float dtype and device; range 0: values in
 * [0, 1], 1: in [-1, 1]. Clamped, then rounded to 8 bits as torchvision's save_image (x * 255 + 0.5, truncated).
 * Written to a temporary file in the same directory, flushed, fsynced, then renamed over path. */
static int l_save_png(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fl_tensor *t = lfl_check(L, 2);
  int range = (int)luaL_checkinteger(L, 3);
  int nd = fl_ndim(t);
  const int64_t *sh = fl_shape(t);
  char sbuf[128];
  if (!fl_dtype_is_float(fl_dtype_of(t)))
    return luaL_error(L, "image.save: needs a float tensor, got %s", fl_dtype_name(fl_dtype_of(t)));
  if (nd != 2 && nd != 3)
    return luaL_error(L, "image.save: needs [C, H, W] or [H, W], got shape %s", fl_shape_str(t, sbuf, sizeof sbuf));
  int64_t c = nd == 3 ? sh[0] : 1, h = sh[nd - 2], w = sh[nd - 1];
  if (c < 1 || c > 4)
    return luaL_error(L, "image.save: needs 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels, got shape %s",
                      fl_shape_str(t, sbuf, sizeof sbuf));
  if (h < 1 || w < 1 || h > 1000000 || w > 1000000)
    return luaL_error(L, "image.save: height and width must be in 1..1000000, got shape %s",
                      fl_shape_str(t, sbuf, sizeof sbuf));
  size_t n = (size_t)(c * h * w);
  double *v = (double *)scratch(L, n * sizeof(double));
  LFL_CHECK(L, fl_to_doubles(t, v));
  unsigned char *px = scratch(L, n);
  for (int64_t k = 0; k < c; k++)
    for (int64_t i = 0; i < h * w; i++) {
      double x = v[k * h * w + i];
      if (range) x = (x + 1.0) * 0.5;
      x = x * 255.0 + 0.5;
      x = isnan(x) ? 0.0 : x < 0.0 ? 0.0 : x > 255.0 ? 255.0 : x;
      px[i * c + k] = (unsigned char)x;
    }
  size_t plen = strlen(path);
  char *tmp = (char *)scratch(L, plen + 16);
  snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return luaL_error(L, "image.save: cannot create a temporary file beside %s: %s", path, strerror(errno));
  FILE *f = fdopen(fd, "wb");
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w, img.height = (png_uint_32)h, img.format = png_format((int)c);
  int ok = f && png_image_write_to_stdio(&img, f, 0, px, 0, NULL);
  char msg[sizeof img.message + 1] = "";
  if (!ok) snprintf(msg, sizeof msg, "%s", f ? img.message : strerror(errno));
  if (ok && (fflush(f) != 0 || fsync(fd) != 0)) ok = 0, snprintf(msg, sizeof msg, "%s", strerror(errno));
  if (f ? fclose(f) != 0 : close(fd) != 0) {
    if (ok) snprintf(msg, sizeof msg, "%s", strerror(errno));
    ok = 0;
  }
  if (ok && rename(tmp, path) != 0) ok = 0, snprintf(msg, sizeof msg, "%s", strerror(errno));
  if (!ok) {
    remove(tmp);
    return luaL_error(L, "image.save: cannot write %s: %s", path, msg);
  }
  return 0;
}

/* Whether this build decodes JPEG. */
static int l_formats(lua_State *L) {
  lua_newtable(L);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "png");
#ifdef FLAME_HAVE_JPEG
  lua_pushboolean(L, 1);
#else
  lua_pushboolean(L, 0);
#endif
  lua_setfield(L, -2, "jpeg");
  return 1;
}

const lfl_reg lfl_image_functions[] = {
    {"_load", l_load, 2},
    {"_save_png", l_save_png, 3},
    {"formats", l_formats, LFL_NOARGS},
    {NULL, NULL, 0},
};
