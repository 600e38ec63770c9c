/* fc_dlopen (dynlib.cuh): the one way the CUDA backend opens a library at run time. */
#include "dynlib.cuh"
#include <stdio.h>
#include <string.h>

void *fc_dlopen(const char *const *names, char *err, size_t n) {
  /* cuDNN's and cuBLAS's engines are C++. A flame library linked with a static libstdc++ carries its own copy of
   * it; when that library is a Lua module (dlopen'ed RTLD_LOCAL by require), cuDNN bound to the system libstdc++
   * instead and crashed inside it while finalizing some engines (seen on an H200, cuDNN 9.14: SIGSEGV in
   * std::ostream::_M_insert<long>). Promoting our own library to the global scope first (what flame-lua, the C
   * tests and package.loadlib(path, "*") have anyway) makes the library use the same C++ runtime as we do. */
  Dl_info self;
  if (dladdr((void *)&fc_dlopen, &self) && self.dli_fname) (void)dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
  if (n) err[0] = 0;
  for (int pass = 0; pass < 2; pass++)
    for (const char *const *p = names; *p; p++) {
      char path[4096];
      const char *name = *p;
#ifdef FC_CUDA_LIBDIR
      if (pass == 1 && snprintf(path, sizeof path, "%s/%s", FC_CUDA_LIBDIR, *p) < (int)sizeof path) name = path;
#endif
      if (pass == 1 && name == *p) continue;
      void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (h) return h;
      const char *e = dlerror();
      if (n && !err[0] && e) snprintf(err, n, "%s", e);
    }
  return nullptr;
}
