/* flame.data's C part (the IDX reader, isatty for flame.progress) and the registration of flame.image's
 * (limage.c). The rest of flame.data, flame.image and flame.progress is Lua: lua/flame/data.lua, image.lua,
 * progress.lua. */
#include "lflame.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

extern const lfl_reg lfl_image_functions[]; /* limage.c */

/* luaL_error with C's printf formats (%zu, %02x, %lld), which lua_pushfstring lacks. */
static int fail(lua_State *L, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lua_pushstring(L, msg);
  return lua_error(L);
}

/* Reads exactly n bytes, or fails with "truncated". */
static void idx_read(lua_State *L, gzFile g, void *dst, size_t n, const char *path, const char *what) {
  size_t done = 0;
  while (done < n) {
    unsigned chunk = n - done > (1u << 30) ? (1u << 30) : (unsigned)(n - done);
    int r = gzread(g, (char *)dst + done, chunk);
    if (r <= 0) {
      int zerr = 0;
      const char *m = gzerror(g, &zerr);
      char why[160];
      snprintf(why, sizeof why, "%s", r < 0 && zerr != Z_OK && zerr != Z_BUF_ERROR ? m : "end of file");
      gzclose(g);
      fail(L, "read_idx: %s is truncated: %s needs %zu bytes, got %zu (%s)", path, what, n, done, why);
    }
    done += (size_t)r;
  }
}

static double idx_value(const unsigned char *p, int code) {
  switch (code) {
  case 0x08: return p[0];
  case 0x09: return (signed char)p[0];
  case 0x0B: return (int16_t)(uint16_t)(p[0] << 8 | p[1]);
  case 0x0C: return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
  case 0x0D: {
    uint32_t u = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  default: {
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | p[i];
    double d;
    memcpy(&d, &u, 8);
    return d;
  }
  }
}

/* read_idx(path, {dtype}): an IDX file (plain or gzip: zlib reads both) as a tensor of the header's dims. Integer
 * element types (u8, i8, i16, i32) give i64 and float ones f32/f64 unless dtype names one of f32, f64, i32, i64. */
static int l_read_idx(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const keys[] = {"dtype", NULL};
  int o = lfl_options(L, 2, keys);
  errno = 0;
  gzFile g = gzopen(path, "rb");
  if (!g) return fail(L, "read_idx: cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
  unsigned char head[4];
  idx_read(L, g, head, 4, path, "the header");
  static const int sizes[16] = {[0x08] = 1, [0x09] = 1, [0x0B] = 2, [0x0C] = 4, [0x0D] = 4, [0x0E] = 8};
  if (head[0] || head[1]) {
    gzclose(g);
    return fail(L, "read_idx: %s is not an IDX file (bad magic: the first two bytes are 0x%02x 0x%02x, not 0)",
                      path, head[0], head[1]);
  }
  int code = head[2], nd = head[3];
  if (code >= 16 || !sizes[code]) {
    gzclose(g);
    return fail(L, "read_idx: %s: unknown element type 0x%02x (IDX has 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, "
                      "0x0D f32, 0x0E f64)", path, code);
  }
  if (nd < 1 || nd > FL_MAX_DIMS) {
    gzclose(g);
    return fail(L, "read_idx: %s: %d dims (1 to %d are supported)", path, nd, FL_MAX_DIMS);
  }
  unsigned char dimb[4 * FL_MAX_DIMS];
  idx_read(L, g, dimb, (size_t)(4 * nd), path, "the dims");
  int64_t shape[FL_MAX_DIMS], numel = 1;
  for (int i = 0; i < nd; i++) {
    const unsigned char *p = dimb + 4 * i;
    shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    if (shape[i] && numel > ((int64_t)1 << 40) / shape[i]) {
      gzclose(g);
      return fail(L, "read_idx: %s: dims too large (more than 2^40 elements)", path);
    }
    numel *= shape[i];
  }
  fl_dtype dt = code == 0x0D ? FL_F32 : code == 0x0E ? FL_F64 : FL_I64;
  if (o && lfl_rawfield(L, o, "dtype") == LUA_TNIL) lua_pop(L, 1);
  else if (o) {
    const char *name = luaL_checkstring(L, -1);
    if (fl_dtype_parse(name, &dt) != FL_OK || (dt != FL_F32 && dt != FL_F64 && dt != FL_I32 && dt != FL_I64)) {
      gzclose(g);
      return fail(L, "read_idx: dtype must be f32, f64, i32 or i64, got '%s'", name);
    }
    lua_pop(L, 1);
  }
  int es = sizes[code];
  size_t raw_n = (size_t)numel * (size_t)es;
  unsigned char *raw = lua_newuserdatauv(L, raw_n ? raw_n : 1, 0);
  char what[64];
  snprintf(what, sizeof what, "the data (%lld elements)", (long long)numel);
  idx_read(L, g, raw, raw_n, path, what);
  unsigned char extra;
  int more = gzread(g, &extra, 1);
  gzclose(g);
  if (more > 0)
    return fail(L, "read_idx: %s has bytes after the %lld elements its header declares", path,
                      (long long)numel);
  void *out = lua_newuserdatauv(L, (size_t)numel * fl_dtype_size(dt) + 1, 0);
  for (int64_t i = 0; i < numel; i++) {
    double v = idx_value(raw + i * es, code);
    switch (dt) {
    case FL_F32: ((float *)out)[i] = (float)v; break;
    case FL_F64: ((double *)out)[i] = v; break;
    case FL_I32: ((int32_t *)out)[i] = (int32_t)v; break; /* exact: IDX integers fit in i32 */
    default: ((int64_t *)out)[i] = (int64_t)v; break;
    }
  }
  fl_opts op = fl_default_opts();
  op.dtype = dt, op.device = FL_CPU_DEVICE, op.requires_grad = false;
  fl_tensor *t = NULL;
  LFL_CHECK(L, fl_from_host(out, nd, shape, op, &t));
  lua_pop(L, 2);
  lfl_push(L, t);
  return 1;
}

/* _isatty(file): whether a Lua file handle is a terminal (flame.progress redraws in place only there). */
static int l_isatty(lua_State *L) {
  luaL_Stream *s = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  lua_pushboolean(L, s->closef && s->f && isatty(fileno(s->f)));
  return 1;
}

/* _listdir(path): the entries of a directory (without . and ..) as {name = ..., dir = bool}, sorted by name
 * (byte order), for ImageFolder. */
static int entry_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d) return luaL_error(L, "cannot list %s: %s", path, strerror(errno));
  lua_newtable(L);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    lua_pushstring(L, e->d_name); /* a memory error here would leak d: a directory handle, not worth a box */
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  /* sort in C: Lua's table.sort is not stable nor byte-ordered under every locale */
  const char **names = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -2, i + 1);
    names[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the table */
  }
  qsort(names, (size_t)n, sizeof *names, entry_cmp);
  lua_createtable(L, n, 0);
  size_t plen = strlen(path);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, names[i]);
    lua_setfield(L, -2, "name");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, path, plen);
    luaL_addchar(&b, '/');
    luaL_addstring(&b, names[i]);
    luaL_pushresult(&b);
    struct stat st;
    lua_pushboolean(L, stat(lua_tostring(L, -1), &st) == 0 && S_ISDIR(st.st_mode));
    lua_setfield(L, -3, "dir");
    lua_pop(L, 1);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const lfl_reg data_functions[] = {
    {"_listdir", l_listdir, 1},
    {"read_idx", l_read_idx, 2},
    {"_isatty", l_isatty, 1},
    {NULL, NULL, 0},
};

/* Fills the flame module table at -1: flame.data and flame.image (their Lua parts add to them). */
void lfl_open_data(lua_State *L) {
  lua_newtable(L);
  lfl_setfuncs(L, data_functions);
  lua_setfield(L, -2, "data");
  lua_newtable(L);
  lfl_setfuncs(L, lfl_image_functions);
  lua_setfield(L, -2, "image");
}
