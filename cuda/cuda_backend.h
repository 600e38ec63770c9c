/* The CUDA backend's entry point, for the core (C). The table it returns is
 * valid for the whole process; getting it touches no CUDA API: the driver is
 * first asked about devices by the table's available() and device_count(),
 * and a device is initialised only by the first op that runs on it. */
#ifndef FL_CUDA_BACKEND_H
#define FL_CUDA_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

struct fl_backend;
const struct fl_backend *fl_cuda_backend(void);

#ifdef __cplusplus
}
#endif
#endif
