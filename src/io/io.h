/* What the file formats of src/io share: a strict reader for the small JSON of file headers, the JSON
 * string writer, UTF-8 checks, a growable byte buffer, and atomic file replacement. Host C only. */
#ifndef FL_IO_H
#define FL_IO_H

#include "internal.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "src/io reads and writes little-endian files by copying bytes: a big-endian host needs byte swaps here"
#endif

/* Bytewise order of names (memcmp, then the shorter first): Rust's order of Strings, the reference's. */
int fl_st_cmp(fl_st_str a, fl_st_str b);
int fl_st_meta_cmp(const void *a, const void *b); /* fl_st_meta by key, for qsort */

/* ---- UTF-8 ---- */
/* Whether s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF). */
bool fl_utf8_valid(const char *s, size_t n);

/* ---- reading JSON (json.c) ----
 * A cursor over a header already known to be UTF-8. Every function skips leading whitespace (space, tab, CR,
 * LF, as RFC 8259) and, on failure, leaves a message in err (with the byte position) and returns false;
 * nothing is allocated, so a caller just stops at the first false. */
typedef struct {
  const char *start, *p, *end;
  const char *what; /* "JSON header": messages read "invalid <what> at byte <i>: ..." */
  char err[200];
} fl_json;
void fl_json_init(fl_json *j, const char *s, size_t n, const char *what);
bool fl_json_fail(fl_json *j, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void fl_json_ws(fl_json *j);
/* Consumes c (after whitespace) and returns true, or fails naming what was expected. */
bool fl_json_expect(fl_json *j, char c, const char *what);
/* After whitespace: whether the next byte is c (consumed when it is). */
bool fl_json_accept(fl_json *j, char c);
/* A string into out (escapes decoded, \u0000 kept, lone surrogates and raw control bytes rejected); out
 * needs room for the encoded length: the decoded bytes never outnumber the encoded ones. *len gets the
 * decoded length; out[*len] is set to 0. */
bool fl_json_string(fl_json *j, char *out, size_t *len);
/* A non-negative integer up to INT64_MAX: no sign, fraction, exponent or leading zero. */
bool fl_json_uint(fl_json *j, int64_t *out);
/* The literal null. */
bool fl_json_null(fl_json *j);
/* Whether only whitespace remains. */
bool fl_json_at_end(fl_json *j);

/* ---- writing (json.c) ---- */
typedef struct {
  char *data;
  size_t len, cap;
  bool oom;
} fl_buf;
void fl_buf_add(fl_buf *b, const void *s, size_t n); /* sets oom instead of failing */
void fl_buf_addf(fl_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void fl_buf_free(fl_buf *b);
/* s[0..n) (UTF-8) as a JSON string, escaped as serde_json does: \" \\ \b \f \n \r \t, other control
 * bytes as \u00xx, everything else (/ and non-ASCII included) as is. */
void fl_json_put_string(fl_buf *b, const char *s, size_t n);
/* A name for messages: quoted, control bytes escaped, cut to about 60 bytes. */
typedef struct { char s[96]; } fl_name_str;
fl_name_str fl_show_name(const char *s, size_t n);

/* ---- atomic replacement of a file (atomic_file.c) ----
 * open creates a temporary file next to path (same directory, so rename is atomic); write appends;
 * commit flushes it to disk (fsync), renames it over path and syncs the directory; abort (also safe
 * after a failed commit, and after a failed open) removes it. path keeps its old contents until the
 * rename, so an error or a crash leaves either the old file or the new one, never a torn one. */
typedef struct {
  int fd;
  char *tmp;
  const char *path, *op;
} fl_atomic_file;
fl_status fl_atomic_open(fl_atomic_file *f, const char *path, const char *op);
fl_status fl_atomic_write(fl_atomic_file *f, const void *data, size_t n);
fl_status fl_atomic_commit(fl_atomic_file *f);
void fl_atomic_abort(fl_atomic_file *f);

/* ---- tensors and host bytes (host_copy.c) ---- */
/* Writes a tensor's elements (row-major, its dtype's bytes) to f: straight from a contiguous CPU
 * tensor, else through a host copy of a bounded size. */
fl_status fl_atomic_write_tensor(fl_atomic_file *f, const fl_tensor *t);
/* n bytes of host memory (the elements, row-major) into the new contiguous tensor t on any device: a memcpy
 * on the CPU, the backend's host-to-device copy elsewhere. Bool bytes other than 0 and 1 become 1. */
fl_status fl_io_copy_in(fl_tensor *t, const void *src, size_t n, const char *op);

/* ---- reading whole files (map_file.c) ---- */
/* A regular file mapped read-only (size 0: data NULL); messages "<op>: <path>: ...". */
typedef struct {
  void *data;
  size_t size;
} fl_mapped;
fl_status fl_map_file(const char *path, const char *op, fl_mapped *m);
void fl_unmap_file(fl_mapped *m); /* after a failed map too */

/* ---- safetensors (safetensors.c) ---- */
const char *fl_st_dtype_name(fl_dtype dt); /* "F32", ... */

#endif
