/* The backend table: one fl_backend per device type. The built-in CPU (and,
 * when compiled, CUDA) backends register on first use; a host may replace one. */
#include "internal.h"
#include <pthread.h>

static const fl_backend *backends[FL_NDEVTYPES];

const fl_backend *fl_cpu_backend(void);
#ifdef FLAME_HAVE_CUDA
const fl_backend *fl_cuda_backend(void);
#endif

static void register_builtin_once(void) {
  if (!backends[FL_CPU]) backends[FL_CPU] = fl_cpu_backend();
#ifdef FLAME_HAVE_CUDA
  if (!backends[FL_CUDA]) backends[FL_CUDA] = fl_cuda_backend();
#endif
}

/* Once per process, whichever thread (state) gets here first. */
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static void register_builtin(void) { pthread_once(&builtin_once, register_builtin_once); }

const fl_backend *fl_backend_for(fl_devtype t) {
  register_builtin();
  return (unsigned)t < FL_NDEVTYPES ? backends[t] : NULL;
}

void fl_register_backend(fl_devtype t, const fl_backend *b) { /* (not while other threads run ops) */
  register_builtin();
  if ((unsigned)t < FL_NDEVTYPES) backends[t] = b;
}

/* A process-wide setting the backends read: TF32 tensor cores for f32 matmul. */
static bool allow_tf32;
void fl_set_allow_tf32(bool on) { allow_tf32 = on; }
bool fl_get_allow_tf32(void) { return allow_tf32; }
