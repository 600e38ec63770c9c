/* Atomic replacement of a file: write a temporary file in the target's directory, fsync it, rename it over
 * the target, fsync the directory. rename(2) within one file system replaces the name in one step, so a
 * reader (or a crash) sees the old file or the complete new one. */
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static fl_status sys_error(const fl_atomic_file *f, const char *what, const char *name, int err) {
  return fl_error(FL_EINVAL, "%s: %s: %s %s failed: %s", f->op, f->path, what, name, strerror(err));
}

/* The mode a new file gets: the old file's if there is one, else 0666 less the umask. */
static mode_t new_mode(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
  mode_t mask = umask(0); /* read it: umask has no getter (not thread-safe; set back at once) */
  umask(mask);
  return 0666 & ~mask;
}

fl_status fl_atomic_open(fl_atomic_file *f, const char *path, const char *op) {
  f->fd = -1;
  f->tmp = NULL;
  f->path = path;
  f->op = op;
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return fl_error(FL_EINVAL, "%s: %s: is a directory", op, path);
  size_t n = strlen(path);
  f->tmp = malloc(n + 16);
  if (!f->tmp) return fl_error(FL_ENOMEM, "%s: %s: out of host memory", op, path);
  memcpy(f->tmp, path, n);
  memcpy(f->tmp + n, ".tmp-XXXXXX", 12);
  f->fd = mkstemp(f->tmp);
  if (f->fd < 0) {
    fl_status s = sys_error(f, "creating the temporary file", f->tmp, errno);
    free(f->tmp);
    f->tmp = NULL;
    return s;
  }
  if (fchmod(f->fd, new_mode(path)) != 0) {
    fl_status s = sys_error(f, "chmod of", f->tmp, errno);
    fl_atomic_abort(f);
    return s;
  }
  return FL_OK;
}

fl_status fl_atomic_write(fl_atomic_file *f, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    size_t chunk = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
    ssize_t k = write(f->fd, p, chunk);
    if (k < 0) {
      if (errno == EINTR) continue;
      return sys_error(f, "writing", f->tmp, errno);
    }
    if (k == 0) return sys_error(f, "writing", f->tmp, EIO);
    p += k;
    n -= (size_t)k;
  }
  return FL_OK;
}

/* Syncs the directory that holds path, so that the rename itself survives a crash. Best effort: some
 * file systems refuse fsync on a directory, and the new file is in place either way. */
static void sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
  if (!dir) return;
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

fl_status fl_atomic_commit(fl_atomic_file *f) {
  if (fsync(f->fd) != 0) return sys_error(f, "fsync of", f->tmp, errno);
  int fd = f->fd;
  f->fd = -1;
  if (close(fd) != 0) return sys_error(f, "closing", f->tmp, errno);
  if (rename(f->tmp, f->path) != 0) return sys_error(f, "renaming", f->tmp, errno);
  free(f->tmp);
  f->tmp = NULL;
  sync_dir(f->path);
  return FL_OK;
}

void fl_atomic_abort(fl_atomic_file *f) {
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  if (f->tmp) unlink(f->tmp);
  free(f->tmp);
  f->tmp = NULL;
}

