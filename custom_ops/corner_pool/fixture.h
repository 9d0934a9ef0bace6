// The official corner-pool fixtures as raw NHWC float32 files (write_fixture.py), for the CUDA
// harness and the kernel emulation: reading them and checking one case.
#ifndef CORNERNET_FIXTURE_H_
#define CORNERNET_FIXTURE_H_

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace cornernet {

struct Direction {
  const char* name;
  bool along_h, from_end;
};
constexpr Direction kDirections[] = {
    {"top", true, true}, {"bottom", true, false}, {"left", false, true}, {"right", false, false}};

// The NHWC shape of the fixture arrays (shape.txt).
inline void ReadShape(const std::string& dir, int* n, int* h, int* w, int* c) {
  if (!(std::ifstream(dir + "/shape.txt") >> *n >> *h >> *w >> *c)) {
    std::fprintf(stderr, "cannot read %s/shape.txt\n", dir.c_str());
    std::exit(2);
  }
}

inline std::vector<float> ReadFloats(const std::string& path, size_t count) {
  std::vector<float> data(count);
  std::ifstream file(path, std::ios::binary);
  if (!file.read(reinterpret_cast<char*>(data.data()), count * sizeof(float))) {
    std::fprintf(stderr, "cannot read %zu floats from %s\n", count, path.c_str());
    std::exit(2);
  }
  return data;
}

// Compares a forward output (exactly) and a gradient (to 1e-6) with the fixture's; prints a line.
inline bool CheckCase(const std::string& dir, const Direction& d, const std::string& inputs,
                      const std::vector<float>& y, const std::vector<float>& dx) {
  const std::string stem = dir + "/" + d.name + "_pool_" + inputs;
  const std::vector<float> want_y = ReadFloats(stem + "_out.bin", y.size());
  const std::vector<float> want_dx = ReadFloats(stem + "_grad.bin", dx.size());
  float y_err = 0, dx_err = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    y_err = std::fmax(y_err, std::fabs(y[i] - want_y[i]));
    dx_err = std::fmax(dx_err, std::fabs(dx[i] - want_dx[i]));
  }
  const bool ok = y_err == 0 && dx_err <= 1e-6f;
  std::printf("%-6s %-4s forward max err %.3g, backward max err %.3g: %s\n", d.name,
              inputs.c_str(), y_err, dx_err, ok ? "PASS" : "FAIL");
  return ok;
}

}  // namespace cornernet

#endif  // CORNERNET_FIXTURE_H_
