// Corner pooling (CornerNet section 3.4) on NHWC tensors: the shared geometry of the CPU and
// CUDA kernels. A "line" is one column (top, bottom: along H) or one row (left, right: along
// W) of one image; every line is scanned from its starting border, one channel vector at a time.
#ifndef CORNERNET_CORNER_POOL_H_
#define CORNERNET_CORNER_POOL_H_

#include <cstdint>

#ifdef __CUDACC__
#define CORNERNET_HOST_DEVICE __host__ __device__
#else
#define CORNERNET_HOST_DEVICE
#endif

namespace cornernet {

struct PoolGeometry {
  int64_t lines;   // N * W (along H) or N * H (along W)
  int64_t length;  // H or W: the positions on a line
  int64_t stride;  // elements between successive positions: W * C or C
  int64_t channels;
  int64_t width;   // W, to find a column's first element
  bool along_h;
  bool from_end;   // top, left: the scan starts at the last row / column

  CORNERNET_HOST_DEVICE PoolGeometry(int64_t n, int64_t h, int64_t w, int64_t c, bool along_h_, bool from_end_)
      : lines(along_h_ ? n * w : n * h),
        length(along_h_ ? h : w),
        stride(along_h_ ? w * c : c),
        channels(c),
        width(w),
        along_h(along_h_),
        from_end(from_end_) {}

  // Offset of position `k` of the scan (k = 0 is the starting border) on line `line`.
  CORNERNET_HOST_DEVICE inline int64_t offset(int64_t line, int64_t k) const {
    const int64_t base = along_h ? ((line / width) * length * width + line % width) * channels
                                 : line * length * channels;
    const int64_t position = from_end ? length - 1 - k : k;
    return base + position * stride;
  }
};

#if GOOGLE_CUDA
// CUDA launchers (corner_pool_gpu.cu): one thread per (line, channel), coalesced over channels.
void LaunchCornerPoolForward(const float* x, float* y, const PoolGeometry& g, void* stream);
void LaunchCornerPoolBackward(const float* x, const float* grad, float* dx, const PoolGeometry& g,
                              void* stream);
#endif

}  // namespace cornernet

#endif  // CORNERNET_CORNER_POOL_H_
