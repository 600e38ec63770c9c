/* CUDA libraries loaded on first use (dlopen) instead of linked: a process that never runs the op that needs one
 * never maps it. cuBLAS and cuBLASLt alone are about 155 MB of resident memory at start-up (blas_lib.cu), and
 * cuDNN is optional at run time (conv_cudnn.cu). Each library lists its functions in an X-macro and binds them
 * into a struct of typed pointers with fc_dlsym. */
#ifndef FL_CUDA_DYNLIB_CUH
#define FL_CUDA_DYNLIB_CUH

#include <dlfcn.h>
#include <stddef.h>

/* dlopen (RTLD_NOW | RTLD_LOCAL) of the first of names (NULL-terminated) that loads: each as given, through the
 * loader's search path, then in the CUDA toolkit's library directory of the build (FC_CUDA_LIBDIR), since flame no
 * longer links these libraries and so carries no run path to them. NULL when none loads; err (n bytes) then holds
 * the loader's first message. */
void *fc_dlopen(const char *const *names, char *err, size_t n);

/* out = the symbol name of h, typed as out; false when h lacks it. */
template <typename F> bool fc_dlsym(void *h, const char *name, F *&out) {
  out = (F *)dlsym(h, name);
  return out != nullptr;
}

#endif
