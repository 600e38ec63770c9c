/* Status codes plus a thread-local message: the library never aborts on bad input. */
#include "internal.h"
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char fl_msg[1024];

const char *fl_last_error(void) { return fl_msg; }

/* Process-wide rather than per thread: a Lua state may run on any thread,
 * and messages are formatted on whichever thread runs the op. */
static atomic_int msg_base; /* (every state that loads flame sets it, perhaps on several threads at once) */
void fl_set_message_base(int base) { atomic_store_explicit(&msg_base, base ? 1 : 0, memory_order_relaxed); }
/* Wrapping add: a message about an absurd index (math.maxinteger) must not be undefined behaviour. */
int64_t fl_mdim(int64_t d) { return (int64_t)((uint64_t)d + (uint64_t)atomic_load_explicit(&msg_base, memory_order_relaxed)); }
int64_t fl_mwrap(int64_t d) { return d < 0 ? d : fl_mdim(d); }

const char *fl_status_name(fl_status s) {
  static const char *names[] = {"ok", "invalid argument", "shape mismatch", "bad dtype", "bad device",
                                "index out of range", "out of memory", "not implemented",
                                "autograd error", "backend error", "interrupted"};
  return (unsigned)s < sizeof names / sizeof *names ? names[s] : "unknown status";
}

fl_status fl_error(fl_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(fl_msg, sizeof fl_msg, fmt, ap);
  va_end(ap);
  return s;
}

/* Backends report what failed; front-ends add which op was running, once. */
fl_status fl_error_context(fl_status s, const char *op) {
  if (s == FL_OK || !op) return s;
  size_t n = strlen(op);
  if (strncmp(fl_msg, op, n) == 0 && fl_msg[n] == ':') return s;
  char tmp[sizeof fl_msg];
  memcpy(tmp, fl_msg, sizeof tmp);
  int k = snprintf(fl_msg, sizeof fl_msg, "%s: ", op);
  if (k > 0 && (size_t)k < sizeof fl_msg) snprintf(fl_msg + k, sizeof fl_msg - (size_t)k, "%.*s", (int)(sizeof fl_msg - (size_t)k - 1), tmp);
  return s;
}

const char *fl_dims_str(int n, const int64_t *d, char *buf, size_t len) {
  size_t k = 0;
  k += snprintf(buf + k, len - k, "[");
  for (int i = 0; i < n && k < len; i++) k += snprintf(buf + k, len - k, i ? ", %lld" : "%lld", (long long)d[i]);
  if (k < len) snprintf(buf + k, len - k, "]");
  return buf;
}

const char *fl_shape_str(const fl_tensor *t, char *buf, size_t n) { return fl_dims_str(t->ndim, t->shape, buf, n); }

fl_desc fl_describe(const fl_tensor *t) {
  fl_desc d;
  char shape[96], dev[32];
  if (!t) {
    snprintf(d.s, sizeof d.s, "(nil)");
    return d;
  }
  fl_shape_str(t, shape, sizeof shape);
  fl_device_name(t->storage->device, dev, sizeof dev);
  snprintf(d.s, sizeof d.s, "%s%s on %s", fl_dtype_name(t->dtype), shape, dev);
  return d;
}
