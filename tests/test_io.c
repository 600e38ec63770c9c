/* C tests of the checkpoint files (src/io): a write that fails midway (the file-size limit, a real
 * write(2) error) leaves the old file byte-identical and no temporary file; the reader parses from memory
 * and names its label in messages. The Lua specs (spec/io_spec.lua) cover the rest. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "check.h"
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

static char dir[64];

static long read_file(const char *path, char *buf, long cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  long n = (long)fread(buf, 1, (size_t)cap, f);
  fclose(f);
  return n;
}

static int entries(void) { /* names in dir besides . and .. */
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  if (d) closedir(d);
  return n;
}

static void failed_write_keeps_the_old_file(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
  double v[3] = {1, 2, 3};
  fl_tensor *small = from(v, 1, (int64_t[]){3}, FL_F32, false), *big = NULL;
  OK(fl_zeros(1, (int64_t[]){1 << 18}, opts(FL_F32, false), &big)); /* 1 MiB of data */
  fl_st_entry e1 = {{"w", 1}, small};
  OK(fl_save_safetensors(path, 1, &e1, 0, NULL));
  static char before[4096], after[4096];
  long nb = read_file(path, before, sizeof before);
  CHECK(nb > 0 && entries() == 1, "the first save wrote %ld bytes", nb);

  /* a file-size limit of 64 KiB: the temporary file's writes fail with EFBIG part way through the data */
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 64 << 10;
  signal(SIGXFSZ, SIG_IGN);
  setrlimit(RLIMIT_FSIZE, &lim);
  fl_st_entry e2[2] = {{{"w", 1}, small}, {{"big", 3}, big}};
  fl_status st = fl_save_safetensors(path, 2, e2, 0, NULL);
  setrlimit(RLIMIT_FSIZE, &old);
  CHECK(st != FL_OK && contains(fl_last_error(), "save: ") && contains(fl_last_error(), "writing"),
        "a failing write is an error: %s", fl_last_error());
  long na = read_file(path, after, sizeof after);
  CHECK(na == nb && memcmp(before, after, (size_t)nb) == 0, "the old file is byte-identical");
  CHECK(entries() == 1, "no temporary file is left (%d entries)", entries());

  /* without the limit the same save replaces the file */
  OK(fl_save_safetensors(path, 2, e2, 0, NULL));
  fl_safetensors *f = NULL;
  OK(fl_safetensors_open(path, &f));
  CHECK(f && fl_safetensors_count(f) == 2, "the new file has both tensors");
  fl_safetensors_close(f);
  CHECK(entries() == 1, "still one file");
  fl_release(small);
  fl_release(big);
}

static void parses_from_memory(void) {
  static const char file[] = "\x38\0\0\0\0\0\0\0" /* 56: the header's 54 bytes and 2 spaces */
                             "{\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}  "
                             "\x07\0\0\0\xf9\xff\xff\xff";
  CHECK(sizeof file - 1 == 8 + 56 + 8, "the fixture is %zu bytes", sizeof file - 1);
  fl_safetensors *f = NULL;
  OK(fl_safetensors_parse(file, sizeof file - 1, "buf", &f));
  if (f) {
    fl_st_info info;
    fl_safetensors_info(f, 0, &info);
    CHECK(info.name.len == 1 && info.name.s[0] == 'b' && info.dtype == FL_I32 && info.ndim == 1 &&
              info.shape[0] == 2 && info.offset == 0 && info.nbytes == 8,
          "the entry's name, dtype, shape and offsets");
    fl_tensor *t = NULL;
    OK(fl_safetensors_load(f, 0, FL_CPU_DEVICE, &t));
    CHECK(values_are(t, (double[]){7, -7}, 2, 0), "the values");
    fl_release(t);
    fl_safetensors_close(f);
  }
  f = (fl_safetensors *)1;
  CHECK(fl_safetensors_parse(file, 20, "buf", &f) != FL_OK && f == NULL &&
            contains(fl_last_error(), "load: buf: header length 56 runs past the end"),
        "a truncated buffer: %s", fl_last_error());
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/flame_test_io_XXXXXX");
  if (!mkdtemp(dir)) {
    printf("FAIL - mkdtemp\n");
    return 1;
  }
  failed_write_keeps_the_old_file();
  parses_from_memory();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
