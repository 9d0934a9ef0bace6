// The CUDA kernels of CornerPool / CornerPoolGrad (float32): one thread per (line, channel), so
// that neighbouring threads read neighbouring channels (coalesced, NHWC); each thread scans its
// line. Included by corner_pool_gpu.cu (the launchers) and by emulate_kernels.cc, which runs
// these same kernels on the CPU, thread by thread, to check their logic without a GPU.
#ifndef CORNERNET_CORNER_POOL_KERNELS_CUH_
#define CORNERNET_CORNER_POOL_KERNELS_CUH_

#include "corner_pool.h"

namespace cornernet {

// The running max along one line of one channel (`line`, `c`) from x into y.
CORNERNET_HOST_DEVICE inline void RunningMax(const float* __restrict__ x, float* __restrict__ y,
                                             const PoolGeometry& g, int64_t line, int64_t c) {
  float best = x[g.offset(line, 0) + c];
  y[g.offset(line, 0) + c] = best;
  for (int64_t k = 1; k < g.length; ++k) {
    const int64_t at = g.offset(line, k) + c;
    best = x[at] > best ? x[at] : best;
    y[at] = best;
  }
}

__global__ void CornerPoolForwardKernel(const float* __restrict__ x, float* __restrict__ y,
                                        PoolGeometry g) {
  const int64_t thread = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (thread >= g.lines * g.channels) return;
  RunningMax(x, y, g, thread / g.channels, thread % g.channels);
}

// As the CPU kernel: the running max into dx, then backward, summing gradients until the
// position where the running max rose (the arg-max), the order of the pure-TF gradient chain.
__global__ void CornerPoolBackwardKernel(const float* __restrict__ x,
                                         const float* __restrict__ grad, float* __restrict__ dx,
                                         PoolGeometry g) {
  const int64_t thread = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (thread >= g.lines * g.channels) return;
  const int64_t line = thread / g.channels;
  const int64_t c = thread % g.channels;
  RunningMax(x, dx, g, line, c);
  float sum = 0.0f;
  for (int64_t k = g.length - 1; k >= 0; --k) {
    const int64_t at = g.offset(line, k) + c;
    sum += grad[at];
    if (k == 0 || x[at] > dx[g.offset(line, k - 1) + c]) {
      dx[at] = sum;
      sum = 0.0f;
    } else {
      dx[at] = 0.0f;
    }
  }
}

}  // namespace cornernet

#endif  // CORNERNET_CORNER_POOL_KERNELS_CUH_
