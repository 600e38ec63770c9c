/* Whole files mapped read-only: the readers check and copy straight from the page cache, with no read
 * buffer in between. (A file truncated by another process while mapped would fault on access: the
 * readers take the size once, at open.) */
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

fl_status fl_map_file(const char *path, const char *op, fl_mapped *m) {
  m->data = NULL;
  m->size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fl_error(FL_EINVAL, "%s: %s: cannot open: %s", op, path, strerror(errno));
  struct stat sb;
  fl_status st = FL_OK;
  if (fstat(fd, &sb) != 0) st = fl_error(FL_EINVAL, "%s: %s: cannot stat: %s", op, path, strerror(errno));
  else if (S_ISDIR(sb.st_mode)) st = fl_error(FL_EINVAL, "%s: %s: is a directory", op, path);
  else if (!S_ISREG(sb.st_mode)) st = fl_error(FL_EINVAL, "%s: %s: not a regular file", op, path);
  else if (sb.st_size > 0) {
    void *d = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (d == MAP_FAILED)
      st = fl_error(FL_EINVAL, "%s: %s: mmap of %lld bytes failed: %s", op, path, (long long)sb.st_size, strerror(errno));
    else {
      /* the readers copy every byte, front to back: start reading ahead now */
      (void)posix_madvise(d, (size_t)sb.st_size, POSIX_MADV_WILLNEED);
      m->data = d;
      m->size = (size_t)sb.st_size;
    }
  }
  close(fd);
  return st;
}

void fl_unmap_file(fl_mapped *m) {
  if (m->data) munmap(m->data, m->size);
  m->data = NULL;
  m->size = 0;
}
