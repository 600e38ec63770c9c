/* The CUDA backend's communicator entries (nccl.cu), for the backend table. */
#ifndef FL_CUDA_NCCL_CUH
#define FL_CUDA_NCCL_CUH

#include "internal.h"

fl_status cuda_comm_unique_id(fl_device dev, void *id, size_t cap, size_t *n);
fl_status cuda_comm_init(fl_device dev, const void *id, size_t n, int rank, int world, void **comm);
void cuda_comm_destroy(void *comm, bool abort);
fl_status cuda_collective(void *comm, const fl_collective *c);
fl_status cuda_comm_wait(void *comm, double timeout_s);
fl_status cuda_comm_join(void *comm);

#endif
