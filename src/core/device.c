/* Devices: names, parsing, availability, and the backend lookup that names the
 * device when it does not exist. The table itself is core/backend_registry.c. */
#include "context.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const fl_device FL_CPU_DEVICE = {FL_CPU, 0};

static const char *devtype_name(fl_devtype t) { return t == FL_CUDA ? "cuda" : "cpu"; }

void fl_device_name(fl_device d, char *buf, size_t n) {
  if (d.type == FL_CPU) snprintf(buf, n, "cpu");
  else snprintf(buf, n, "%s:%d", devtype_name(d.type), d.index);
}

bool fl_device_eq(fl_device a, fl_device b) { return a.type == b.type && (a.type == FL_CPU || a.index == b.index); }

bool fl_device_available(fl_devtype t) {
  const fl_backend *b = fl_backend_for(t);
  return b && (!b->available || b->available());
}

int fl_device_count(fl_devtype t) {
  const fl_backend *b = fl_backend_for(t);
  if (!fl_device_available(t)) return 0;
  return b->device_count ? b->device_count() : 1;
}

fl_status fl_device_parse(const char *name, fl_device *out) {
  if (!strcmp(name, "cpu")) {
    *out = FL_CPU_DEVICE;
    return FL_OK;
  }
  if (!strncmp(name, "cuda", 4)) {
    const char *p = name + 4;
    long idx = 0;
    if (*p == ':') {
      char *end;
      idx = strtol(p + 1, &end, 10);
      if (end == p + 1 || *end || idx < 0) return fl_error(FL_EDEVICE, "bad device '%s' (expected cpu, cuda or cuda:N)", name);
      if (idx > INT_MAX) return fl_error(FL_EDEVICE, "bad device '%s' (device ordinal out of range)", name);
    } else if (*p) {
      return fl_error(FL_EDEVICE, "bad device '%s' (expected cpu, cuda or cuda:N)", name);
    }
    out->type = FL_CUDA;
    out->index = (int)idx;
    return FL_OK;
  }
  return fl_error(FL_EDEVICE, "bad device '%s' (expected cpu, cuda or cuda:N)", name);
}

/* The backend for a device that exists: names the device when it does not. */
/* Every op passes here, so the message is formatted only on the error paths. */
static fl_status backend_for_device(const char *op, fl_device d, const fl_backend **out) {
  const fl_backend *b = fl_backend_for(d.type);
  int n = !b ? 0 : d.type == FL_CPU ? 1 : fl_device_count(d.type); /* 0: the backend finds no device */
  if (b && d.index < n) {
    *out = b;
    return FL_OK;
  }
  char dn[32];
  fl_device_name(d, dn, sizeof dn);
  if (!b) return fl_error(FL_EDEVICE, "%s: device %s is not built into this FLAME (no CUDA backend compiled)", op, dn);
  if (n == 0) return fl_error(FL_EDEVICE, "%s: device %s is not available (no GPU found)", op, dn);
  return fl_error(FL_EDEVICE, "%s: device %s does not exist (%d device(s))", op, dn, n);
}

fl_status fl_device_check(const char *op, fl_device d) {
  const fl_backend *b;
  return backend_for_device(op, d, &b);
}

fl_status fl_backend_of(const char *op, const fl_tensor *t, const fl_backend **out) {
  return backend_for_device(op, t->storage->device, out);
}

fl_status fl_synchronize(fl_device d) {
  const fl_backend *b = NULL;
  FL_TRY(backend_for_device("synchronize", d, &b));
  return b->synchronize ? b->synchronize(d) : FL_OK;
}

fl_status fl_memory_stats_get(fl_device d, fl_memory_stats *out) {
  const fl_backend *b = NULL;
  FL_TRY(backend_for_device("memory_stats", d, &b));
  memset(out, 0, sizeof *out);
  return b->memory_stats ? b->memory_stats(d, out) : FL_OK;
}

fl_status fl_empty_cache(fl_device d) {
  const fl_backend *b = NULL;
  FL_TRY(backend_for_device("empty_cache", d, &b));
  return b->empty_cache ? b->empty_cache(d) : FL_OK;
}

/* ---- allocation with the host's OOM handler and collector pacing, both the current context's ---- */
void fl_set_oom_handler(fl_oom_handler fn, void *ud) {
  fl_ctx_handlers *h = fl_ctx_handlers_cur();
  h->oom_fn = fn;
  h->oom_ud = ud;
}
void fl_set_alloc_observer(fl_alloc_observer fn, void *ud) {
  fl_ctx_handlers *h = fl_ctx_handlers_cur();
  h->obs_fn = fn;
  h->obs_ud = ud;
}

fl_status fl_device_alloc(fl_device dev, size_t nbytes, void **ptr) {
  const fl_backend *b = NULL;
  FL_TRY(backend_for_device("alloc", dev, &b)); /* even for 0 bytes: no tensor on a device that does not exist */
  if (nbytes == 0) {
    *ptr = NULL;
    return FL_OK;
  }
  fl_ctx_handlers *c = fl_ctx_handlers_cur();
  fl_status s = b->alloc(dev, nbytes, ptr);
  if (s == FL_ENOMEM && c->oom_fn) { /* let the host free unreachable tensors, then retry once */
    c->oom_fn(c->oom_ud, nbytes);
    s = b->alloc(dev, nbytes, ptr);
  }
  if (s == FL_OK && c->obs_fn) c->obs_fn(c->obs_ud, nbytes);
  return s;
}

void fl_device_free(fl_device dev, void *ptr, size_t nbytes) {
  const fl_backend *b = fl_backend_for(dev.type);
  if (b && ptr) b->free(dev, ptr, nbytes);
}
