// Runs the CUDA kernels of corner_pool_kernels.cuh on the CPU, one emulated thread after another,
// on the official fixtures: it checks their indexing and tie logic where no GPU is available
// (each thread writes only its own (line, channel) elements, so the serial order is exact).
//
//   python custom_ops/corner_pool/write_fixture.py tests/data/pools_public.npz FIXTURE_DIR
//   g++ -O2 -std=c++17 -o emulate custom_ops/corner_pool/emulate_kernels.cc && ./emulate FIXTURE_DIR
#include "fixture.h"

#define __global__
struct EmulatedIndex {
  unsigned x = 0;
};
static EmulatedIndex blockIdx, blockDim, threadIdx;
#include "corner_pool_kernels.cuh"

template <typename Kernel>
static void Launch(const cornernet::PoolGeometry& g, Kernel kernel) {
  blockDim.x = 256;
  for (int64_t thread = 0; thread < g.lines * g.channels; ++thread) {
    blockIdx.x = static_cast<unsigned>(thread / 256);
    threadIdx.x = static_cast<unsigned>(thread % 256);
    kernel();
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int n, h, w, c;
  cornernet::ReadShape(dir, &n, &h, &w, &c);
  const size_t count = static_cast<size_t>(n) * h * w * c;
  const std::vector<float> grad = cornernet::ReadFloats(dir + "/grad_out.bin", count);
  int failures = 0;
  for (const char* inputs : {"ties", "rand"}) {
    const std::vector<float> x = cornernet::ReadFloats(dir + "/x_" + inputs + ".bin", count);
    for (const auto& d : cornernet::kDirections) {
      cornernet::PoolGeometry g(n, h, w, c, d.along_h, d.from_end);
      std::vector<float> y(count), dx(count);
      Launch(g, [&] { cornernet::CornerPoolForwardKernel(x.data(), y.data(), g); });
      Launch(g, [&] { cornernet::CornerPoolBackwardKernel(x.data(), grad.data(), dx.data(), g); });
      failures += !cornernet::CheckCase(dir, d, inputs, y, dx);
    }
  }
  return failures ? 1 : 0;
}
