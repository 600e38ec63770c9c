/* The op profiler behind flame.profile (FLAME_PROFILE-free: it is switched on around a function). While it is on,
 * every kernel dispatch synchronises the device and charges the time since the previous dispatch to the previous
 * op, under the name "<op>" in the forward and "<Node>/<op>" inside a backward node, so the table splits a training
 * step into its kernels and their backward counterparts. The syncs slow the run down and fold each op's host
 * overhead into its time: use it to find where time goes, and bench/ to measure. Per thread. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROF_MAX 512

static _Thread_local bool on;
static _Thread_local fl_profile_entry table[PROF_MAX];
static _Thread_local int n_entries;
static _Thread_local char prev[96];
static _Thread_local double prev_t;
static _Thread_local const char *node_name; /* the backward node running now, or NULL */

static void charge(const char *name, double dt) {
  int i = 0;
  while (i < n_entries && strcmp(table[i].name, name) != 0) i++;
  if (i == n_entries) {
    if (n_entries == PROF_MAX) return;
    snprintf(table[i].name, sizeof table[i].name, "%s", name);
    table[i].seconds = 0, table[i].calls = 0;
    n_entries++;
  }
  table[i].seconds += dt, table[i].calls++;
}

const char *fl_profile_node(const char *name) {
  const char *p = node_name;
  node_name = name;
  return p;
}

void fl_profile_tick(const char *op, fl_device dev) {
  if (!on) return;
  const fl_backend *b = fl_backend_for(dev.type);
  if (b && b->synchronize) (void)b->synchronize(dev);
  double t = fl_now_s();
  if (prev[0]) charge(prev, t - prev_t);
  if (op) {
    if (node_name) snprintf(prev, sizeof prev, "%s/%s", node_name, op);
    else snprintf(prev, sizeof prev, "%s", op);
  } else {
    prev[0] = 0;
  }
  prev_t = t;
}

void fl_profile_start(void) {
  on = true;
  n_entries = 0;
  prev[0] = 0;
}

int fl_profile_stop(fl_device dev, const fl_profile_entry **out) {
  fl_profile_tick(NULL, dev); /* the last op's time */
  on = false;
  *out = table;
  return n_entries;
}
