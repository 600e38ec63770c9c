// The floor under any small CUDA op on a machine: the host time of a kernel
// launch through the CUDA runtime, call to return, measured the way
// bench/gpu_overhead.lua measures flame's small ops (200 launches per sample,
// median of 51, never filling the launch queue). Not part of the library.
//   nvcc -O2 -arch=sm_90 bench/launch_floor.cu -o /tmp/launch_floor && /tmp/launch_floor
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
#include <cuda_runtime.h>

struct big_args { long long v[36]; }; // about the size of flame's elementwise launch parameters

__global__ void empty_kernel() {}
__global__ void args_kernel(big_args a, float *out) { if (threadIdx.x == 0 && a.v[0] == 42) out[0] = 1; }

template <class F>
static double host_time(F launch, cudaStream_t s) {
  std::vector<double> ts;
  launch();
  cudaStreamSynchronize(s);
  for (int r = 0; r < 51; r++) {
    cudaStreamSynchronize(s);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; i++) launch();
    auto t1 = std::chrono::steady_clock::now();
    ts.push_back(std::chrono::duration<double>(t1 - t0).count() / 200);
    cudaStreamSynchronize(s);
  }
  std::sort(ts.begin(), ts.end());
  return ts[25];
}

int main() {
  cudaStream_t s;
  if (cudaStreamCreate(&s) != cudaSuccess) { std::printf("no CUDA device\n"); return 1; }
  float *out;
  cudaMalloc(&out, 4);
  big_args a = {};
  double t0 = host_time([&] { empty_kernel<<<1, 32, 0, s>>>(); }, s);
  double t1 = host_time([&] { args_kernel<<<1, 256, 0, s>>>(a, out); }, s);
  double t2 = host_time([&] { args_kernel<<<1, 256, 0, s>>>(a, out); (void)cudaGetLastError(); }, s);
  std::printf("| empty kernel launch (runtime API) | %.2f us |\n", t0 * 1e6);
  std::printf("| kernel with 288-byte parameters | %.2f us |\n", t1 * 1e6);
  std::printf("| same + cudaGetLastError | %.2f us |\n", t2 * 1e6);
  return cudaGetLastError() == cudaSuccess ? 0 : 1;
}
