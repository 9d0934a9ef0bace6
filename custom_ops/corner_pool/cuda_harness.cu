// Standalone check of the CUDA kernels without TensorFlow (for a GPU machine without it):
//
//   python custom_ops/corner_pool/write_fixture.py tests/data/pools_public.npz FIXTURE_DIR
//   nvcc -O3 -std=c++17 -DGOOGLE_CUDA=1 -o harness custom_ops/corner_pool/cuda_harness.cu
//   ./harness FIXTURE_DIR
//
// Runs forward and backward of the four directions on the official fixtures (NHWC float32),
// compares (outputs exactly, gradients to 1e-6), then times [4,128,128,128] and prints the
// effective memory bandwidth against the device's peak. Exit code 0 when every case passes.
#include <cstdio>
#include <string>
#include <vector>

#include "corner_pool_gpu.cu"
#include "fixture.h"

using cornernet::PoolGeometry;

#define CHECK(call)                                                                   \
  do {                                                                                \
    cudaError_t status = (call);                                                      \
    if (status != cudaSuccess) {                                                      \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(status));            \
      std::exit(2);                                                                   \
    }                                                                                 \
  } while (0)

using cornernet::Direction;
using cornernet::kDirections;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int n, h, w, c;
  cornernet::ReadShape(dir, &n, &h, &w, &c);
  const size_t count = static_cast<size_t>(n) * h * w * c;
  float *x, *grad, *y, *dx;
  CHECK(cudaMalloc(&x, count * 4));
  CHECK(cudaMalloc(&grad, count * 4));
  CHECK(cudaMalloc(&y, count * 4));
  CHECK(cudaMalloc(&dx, count * 4));
  const std::vector<float> grad_host = cornernet::ReadFloats(dir + "/grad_out.bin", count);
  CHECK(cudaMemcpy(grad, grad_host.data(), count * 4, cudaMemcpyHostToDevice));
  int failures = 0;
  for (const char* inputs : {"ties", "rand"}) {
    const std::vector<float> x_host = cornernet::ReadFloats(dir + "/x_" + inputs + ".bin", count);
    CHECK(cudaMemcpy(x, x_host.data(), count * 4, cudaMemcpyHostToDevice));
    for (const Direction& d : kDirections) {
      PoolGeometry g(n, h, w, c, d.along_h, d.from_end);
      cornernet::LaunchCornerPoolForward(x, y, g, nullptr);
      cornernet::LaunchCornerPoolBackward(x, grad, dx, g, nullptr);
      CHECK(cudaDeviceSynchronize());
      std::vector<float> out(count), dgrad(count);
      CHECK(cudaMemcpy(out.data(), y, count * 4, cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(dgrad.data(), dx, count * 4, cudaMemcpyDeviceToHost));
      failures += !cornernet::CheckCase(dir, d, inputs, out, dgrad);
    }
  }
  CHECK(cudaFree(x));
  CHECK(cudaFree(grad));
  CHECK(cudaFree(y));
  CHECK(cudaFree(dx));

  // timing on [4, 128, 128, 128]
  const int64_t big = 4LL * 128 * 128 * 128;
  CHECK(cudaMalloc(&x, big * 4));
  CHECK(cudaMalloc(&grad, big * 4));
  CHECK(cudaMalloc(&y, big * 4));
  CHECK(cudaMalloc(&dx, big * 4));
  CHECK(cudaMemset(x, 0, big * 4));
  CHECK(cudaMemset(grad, 0, big * 4));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  int clock_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, 0);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0);
  const double peak = 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9;  // GB/s
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  std::printf("\n%s, peak %.0f GB/s; [4,128,128,128] float32, mean of 50 runs:\n", prop.name, peak);
  for (const Direction& d : kDirections) {
    PoolGeometry g(4, 128, 128, 128, d.along_h, d.from_end);
    for (int pass = 0; pass < 2; ++pass) {
      const bool backward = pass == 1;
      auto launch = [&] {
        if (backward) cornernet::LaunchCornerPoolBackward(x, grad, dx, g, nullptr);
        else cornernet::LaunchCornerPoolForward(x, y, g, nullptr);
      };
      launch();
      CHECK(cudaEventRecord(start));
      for (int i = 0; i < 50; ++i) launch();
      CHECK(cudaEventRecord(stop));
      CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      CHECK(cudaEventElapsedTime(&ms, start, stop));
      ms /= 50;
      // bytes moved: forward reads x, writes y; backward reads x twice and grad, writes dx twice
      // and reads it back once
      const double bytes = (backward ? 6.0 : 2.0) * big * 4;
      std::printf("  %-6s %-8s %8.3f ms  %7.0f GB/s  %5.1f%% of peak\n", d.name,
                  backward ? "backward" : "forward", ms, bytes / ms / 1e6,
                  100 * bytes / ms / 1e6 / peak);
    }
  }
  return failures ? 1 : 0;
}
