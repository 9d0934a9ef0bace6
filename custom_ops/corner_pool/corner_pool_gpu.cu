// Launchers of the CUDA kernels (corner_pool_kernels.cuh), called by the GPU op kernels of
// corner_pool.cc. Built by custom_ops/build.py with nvcc when it exists.
#include <cuda_runtime.h>

#include "corner_pool_kernels.cuh"

namespace cornernet {

static unsigned Blocks(const PoolGeometry& g, unsigned threads) {
  return static_cast<unsigned>((g.lines * g.channels + threads - 1) / threads);
}

void LaunchCornerPoolForward(const float* x, float* y, const PoolGeometry& g, void* stream) {
  const unsigned threads = 256;
  CornerPoolForwardKernel<<<Blocks(g, threads), threads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, y, g);
}

void LaunchCornerPoolBackward(const float* x, const float* grad, float* dx, const PoolGeometry& g,
                              void* stream) {
  const unsigned threads = 256;
  CornerPoolBackwardKernel<<<Blocks(g, threads), threads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, grad, dx, g);
}

}  // namespace cornernet
