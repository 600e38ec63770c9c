/* How messages number dims and indices: a C host (the default base 0) reads
 * the 0-based numbers it passed; after fl_set_message_base(1), as the Lua
 * binding sets it, the same errors count from 1. Exit status 1 on failure. */
#include "flame.h"
#include <stdio.h>
#include <string.h>

static int failures;

static void expect(fl_status st, const char *frag) {
  bool ok = st != FL_OK && strstr(fl_last_error(), frag);
  if (!ok) failures++;
  printf("%s - '%s' in '%s'\n", ok ? "ok  " : "FAIL", frag, st != FL_OK ? fl_last_error() : "(no error)");
}

/* The same bad calls at either base; frags[base][k] is what call k must say. */
static void run(int base, const char *const *frags) {
  fl_set_message_base(base);
  fl_opts o = fl_default_opts();
  fl_tensor *a, *b, *c, *r, *idx;
  int64_t s23[] = {2, 3}, s45[] = {4, 5}, s3[] = {3}, i1[] = {1, 1};
  fl_zeros(2, s23, o, &a);
  fl_zeros(2, s45, o, &b);
  fl_zeros(1, s3, o, &c);
  expect(fl_add(a, b, 1, &r), frags[0]);
  expect(fl_select(c, 0, 3, &r), frags[1]);
  expect(fl_narrow(a, 1, 2, 5, &r), frags[2]);
  int64_t bad = 3;
  fl_opts io = {FL_I64, FL_CPU_DEVICE, false};
  fl_from_host(&bad, 2, i1, io, &idx);
  expect(fl_gather(a, 1, idx, &r), frags[3]);
  fl_tensor *two[] = {a, b};
  expect(fl_cat(2, two, 0, &r), frags[4]);
  int perm[] = {1, 1};
  expect(fl_permute(a, perm, &r), frags[5]);
  expect(fl_transpose(a, 0, 2, &r), frags[6]);
  fl_release(a), fl_release(b), fl_release(c), fl_release(idx);
}

int main(void) {
  static const char *const zero[] = {"(dim 0: 2 vs 4)", "index 3 out of range for dim 0 of size 3",
                                     "start 2 with length 5 is out of bounds for dim 1", "index 3 out of range for dim 1 of size 3",
                                     "element 1 f32[4, 5] on cpu does not match element 0", "dim 1 repeated",
                                     "dim 2 out of range for f32[2, 3] on cpu (expected 0..1 or -2..-1)"};
  static const char *const one[] = {"(dim 1: 2 vs 4)", "index 4 out of range for dim 1 of size 3",
                                    "start 3 with length 5 is out of bounds for dim 2", "index 4 out of range for dim 2 of size 3",
                                    "element 2 f32[4, 5] on cpu does not match element 1", "dim 2 repeated",
                                    "dim 3 out of range for f32[2, 3] on cpu (expected 1..2 or -2..-1)"};
  run(0, zero);
  run(1, one);
  run(0, zero); /* and back */
  printf("%s\n", failures ? "FAILED" : "all passed");
  return failures != 0;
}
