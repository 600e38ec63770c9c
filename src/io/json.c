/* The restricted JSON of file headers (safetensors; the npy header's Python literals share the cursor): a
 * strict reader for objects, arrays, strings and non-negative integers, and the string writer. Strict means RFC 8259
 * with nothing tolerated: a malformed header is an error, never a guess. */
#include "io.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool fl_utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t k;
    unsigned lo = 0x80, hi = 0xBF; /* the range of the first continuation byte */
    if (c >= 0xC2 && c <= 0xDF) k = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
      k = 2;
      if (c == 0xE0) lo = 0xA0;      /* overlong */
      else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
      k = 3;
      if (c == 0xF0) lo = 0x90;      /* overlong */
      else if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
    } else return false;
    if (n - i <= k) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t m = 2; m <= k; m++)
      if ((s[i + m] & 0xC0) != 0x80) return false;
    i += k + 1;
  }
  return true;
}

int fl_st_cmp(fl_st_str a, fl_st_str b) {
  size_t n = a.len < b.len ? a.len : b.len;
  int c = n ? memcmp(a.s, b.s, n) : 0;
  return c ? c : (a.len > b.len) - (a.len < b.len);
}

int fl_st_meta_cmp(const void *a, const void *b) { return fl_st_cmp(((const fl_st_meta *)a)->key, ((const fl_st_meta *)b)->key); }

/* ---- reading ---- */
void fl_json_init(fl_json *j, const char *s, size_t n, const char *what) {
  j->what = what;
  j->start = j->p = s;
  j->end = s + n;
  j->err[0] = 0;
}

bool fl_json_fail(fl_json *j, const char *fmt, ...) {
  if (j->err[0]) return false; /* keep the first (innermost) message */
  int k = snprintf(j->err, sizeof j->err, "invalid %s at byte %zu: ", j->what, (size_t)(j->p - j->start));
  if (k < 0 || (size_t)k >= sizeof j->err) return false;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->err + k, sizeof j->err - (size_t)k, fmt, ap);
  va_end(ap);
  return false;
}

void fl_json_ws(fl_json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* What stands at the cursor, for "expected X, found Y". */
static const char *found(const fl_json *j, char *buf, size_t n) {
  if (j->p >= j->end) return "the end of the header";
  unsigned char c = (unsigned char)*j->p;
  if (c >= 0x20 && c < 0x7F) snprintf(buf, n, "'%c'", c);
  else snprintf(buf, n, "byte 0x%02x", c);
  return buf;
}

bool fl_json_expect(fl_json *j, char c, const char *what) {
  fl_json_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return true;
  }
  char b[16];
  return fl_json_fail(j, "expected %s, found %s", what, found(j, b, sizeof b));
}

bool fl_json_accept(fl_json *j, char c) {
  fl_json_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return true;
  }
  return false;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool hex4(fl_json *j, unsigned *out) {
  if (j->end - j->p < 4) return fl_json_fail(j, "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(j->p[i]);
    if (h < 0) return fl_json_fail(j, "bad hex digit in a \\u escape");
    v = v << 4 | (unsigned)h;
  }
  j->p += 4;
  *out = v;
  return true;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The escape after a backslash; a \u escape needs 6 encoded bytes for at most 4 decoded ones (a
 * surrogate pair 12 for 4), so decoding stays within the encoded length. */
static bool escape(fl_json *j, char *o, size_t *k) {
  if (j->p >= j->end) return fl_json_fail(j, "unterminated string");
  char c = *j->p++;
  switch (c) {
  case '"': case '\\': case '/': o[(*k)++] = c; return true;
  case 'b': o[(*k)++] = '\b'; return true;
  case 'f': o[(*k)++] = '\f'; return true;
  case 'n': o[(*k)++] = '\n'; return true;
  case 'r': o[(*k)++] = '\r'; return true;
  case 't': o[(*k)++] = '\t'; return true;
  case 'u': break;
  default: j->p--; return fl_json_fail(j, "unknown escape '\\%c'", (unsigned char)c >= 0x20 && c != 0x7F ? c : '?');
  }
  unsigned cp;
  if (!hex4(j, &cp)) return false;
  if (cp >= 0xDC00 && cp <= 0xDFFF) return fl_json_fail(j, "lone trailing surrogate \\u%04x", cp);
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    unsigned lo;
    if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
      return fl_json_fail(j, "lone leading surrogate \\u%04x", cp);
    j->p += 2;
    if (!hex4(j, &lo)) return false;
    if (lo < 0xDC00 || lo > 0xDFFF) return fl_json_fail(j, "leading surrogate \\u%04x not followed by a trailing one", cp);
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  }
  *k += put_utf8(o + *k, cp);
  return true;
}

bool fl_json_string(fl_json *j, char *out, size_t *len) {
  if (!fl_json_expect(j, '"', "a string")) return false;
  size_t k = 0;
  for (;;) {
    if (j->p >= j->end) return fl_json_fail(j, "unterminated string");
    unsigned char c = (unsigned char)*j->p;
    if (c == '"') break;
    if (c < 0x20) return fl_json_fail(j, "control byte 0x%02x in a string (must be escaped)", c);
    j->p++;
    if (c == '\\') {
      if (!escape(j, out, &k)) return false;
    } else out[k++] = (char)c;
  }
  j->p++;
  out[k] = 0;
  *len = k;
  return true;
}

bool fl_json_uint(fl_json *j, int64_t *out) {
  fl_json_ws(j);
  char b[16];
  if (j->p < j->end && *j->p == '-') return fl_json_fail(j, "negative number where a size or offset belongs");
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return fl_json_fail(j, "expected an integer, found %s", found(j, b, sizeof b));
  const char *s = j->p;
  uint64_t v = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    unsigned d = (unsigned)(*j->p - '0');
    if (v > ((uint64_t)INT64_MAX - d) / 10) {
      j->p = s;
      return fl_json_fail(j, "integer too large (over 2^63 - 1)");
    }
    v = v * 10 + d;
    j->p++;
  }
  if (*s == '0' && j->p - s > 1) {
    j->p = s;
    return fl_json_fail(j, "integer with a leading zero");
  }
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
    return fl_json_fail(j, "not an integer (fraction or exponent)");
  *out = (int64_t)v;
  return true;
}

bool fl_json_null(fl_json *j) {
  fl_json_ws(j);
  if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
    j->p += 4;
    return true;
  }
  return false;
}

bool fl_json_at_end(fl_json *j) {
  fl_json_ws(j);
  return j->p == j->end;
}

/* ---- writing ---- */
void fl_buf_add(fl_buf *b, const void *s, size_t n) {
  if (b->oom) return;
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
      if (cap > SIZE_MAX / 2) {
        b->oom = true;
        return;
      }
      cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) {
      b->oom = true;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
}

void fl_buf_addf(fl_buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= sizeof tmp) b->oom = true; /* only short numbers go through here */
  else fl_buf_add(b, tmp, (size_t)k);
}

void fl_buf_free(fl_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void fl_json_put_string(fl_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  fl_buf_add(b, "\"", 1);
  size_t run = 0; /* bytes copied as they are, in one add */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *e = NULL;
    char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    switch (c) {
    case '"': e = "\\\""; break;
    case '\\': e = "\\\\"; break;
    case '\b': e = "\\b"; break;
    case '\f': e = "\\f"; break;
    case '\n': e = "\\n"; break;
    case '\r': e = "\\r"; break;
    case '\t': e = "\\t"; break;
    default:
      if (c >= 0x20) continue;
    }
    fl_buf_add(b, s + run, i - run);
    if (e) fl_buf_add(b, e, strlen(e));
    else fl_buf_add(b, u, 6);
    run = i + 1;
  }
  fl_buf_add(b, s + run, n - run);
  fl_buf_add(b, "\"", 1);
}

fl_name_str fl_show_name(const char *s, size_t n) {
  fl_name_str r;
  size_t k = 0, cap = 60;
  r.s[k++] = '\'';
  for (size_t i = 0; i < n; i++) {
    if (k >= cap) { /* cut before the last character, which may be a partial UTF-8 sequence */
      while (k > 1 && ((unsigned char)r.s[k - 1] & 0xC0) == 0x80) k--;
      if (k > 1 && (unsigned char)r.s[k - 1] >= 0xC0) k--;
      memcpy(r.s + k, "...", 3);
      k += 3;
      break;
    }
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7F) k += (size_t)snprintf(r.s + k, sizeof r.s - k, "\\x%02x", c);
    else r.s[k++] = (char)c;
  }
  r.s[k++] = '\'';
  r.s[k] = 0;
  return r;
}
