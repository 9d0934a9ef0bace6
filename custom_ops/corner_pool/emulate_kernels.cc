// Runs the CUDA kernels of corner_pool_kernels.cuh on the CPU, one emulated thread after another,
// on the official fixtures: it checks their indexing and tie logic where no GPU is available
// (each thread writes only its own (line, channel) elements, so the serial order is exact).
//
//   python custom_ops/corner_pool/write_fixture.py tests/data/pools_public.npz FIXTURE_DIR
//   g++ -O2 -std=c++17 -o emulate custom_ops/corner_pool/emulate_kernels.cc && ./emulate FIXTURE_DIR
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

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

static std::vector<float> Read(const std::string& path, size_t count) {
  std::vector<float> data(count);
  std::ifstream file(path, std::ios::binary);
  if (!file.read(reinterpret_cast<char*>(data.data()), count * sizeof(float))) {
    std::fprintf(stderr, "cannot read %zu floats from %s\n", count, path.c_str());
    std::exit(2);
  }
  return data;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int n, h, w, c;
  std::ifstream(dir + "/shape.txt") >> n >> h >> w >> c;  // NHWC
  const size_t count = static_cast<size_t>(n) * h * w * c;
  const std::vector<float> grad = Read(dir + "/grad_out.bin", count);
  struct Direction {
    const char* name;
    bool along_h, from_end;
  } directions[] = {{"top", true, true}, {"bottom", true, false}, {"left", false, true},
                    {"right", false, false}};
  int failures = 0;
  for (const char* inputs : {"ties", "rand"}) {
    const std::vector<float> x = Read(dir + "/x_" + inputs + ".bin", count);
    for (const auto& d : directions) {
      cornernet::PoolGeometry g(n, h, w, c, d.along_h, d.from_end);
      std::vector<float> y(count), dx(count);
      Launch(g, [&] { cornernet::CornerPoolForwardKernel(x.data(), y.data(), g); });
      Launch(g, [&] { cornernet::CornerPoolBackwardKernel(x.data(), grad.data(), dx.data(), g); });
      const std::string stem = dir + "/" + d.name + "_pool_" + inputs;
      const std::vector<float> want_y = Read(stem + "_out.bin", count);
      const std::vector<float> want_dx = Read(stem + "_grad.bin", count);
      float y_err = 0, dx_err = 0;
      for (size_t i = 0; i < count; ++i) {
        y_err = std::fmax(y_err, std::fabs(y[i] - want_y[i]));
        dx_err = std::fmax(dx_err, std::fabs(dx[i] - want_dx[i]));
      }
      const bool ok = y_err == 0 && dx_err <= 1e-6f;
      failures += !ok;
      std::printf("%-6s %-4s forward max err %.3g, backward max err %.3g: %s\n", d.name, inputs,
                  y_err, dx_err, ok ? "PASS" : "FAIL");
    }
  }
  return failures ? 1 : 0;
}
