// Winograd F(4x4, 3x3) for a 3x3, stride 1, zero-padded ("same") convolution of NHWC float32:
// the input and output transforms as two ops; the 36 products in between are one batched matmul
// (tf.matmul, oneDNN), done by cornernet_tf.ops.winograd.
//
//   WinogradInput(x (B,H,W,C)) -> v (36, T, C)        v[k, t] = (B^T d_t B)[k]
//   WinogradOutput(m (36, T, K), bias (K), x, [skip]) -> y
//                                   y tile t = A^T m_t A + bias (+ skip), then optionally ReLU
//
// t runs over the 4x4 output tiles, T = B * ceil(H/4) * ceil(W/4); d_t is the 6x6 input patch of
// tile t (rows 4i-1 .. 4i+4, zeros outside the image), k = 6 * row + column of the 6x6 tile. The
// matrices are those of Lavin & Gray (2016), interpolation points 0, 1, -1, 2, -2 and infinity.
// Each op runs its tiles on TensorFlow's CPU threads, 16 channels at a time (contiguous in NHWC).
// A large v (over kStreamBytes, more than the caches hold) is written with non-temporal stores:
// the matmul reads it from memory anyway, and the stores then skip reading the lines first
// (docs/performance.md, "Winograd convolutions", has the measured gain).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace cornernet {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

constexpr int kLanes = 16;  // channels per step
constexpr int64_t kStreamBytes = int64_t{16} << 20;

// dst[0..kLanes) = src, dst 16-byte aligned, bypassing the caches where the CPU can.
inline void StreamLanes(float* dst, const float* src) {
#if defined(__SSE2__)
  for (int l = 0; l < kLanes; l += 4) _mm_stream_ps(dst + l, _mm_loadu_ps(src + l));
#else
  std::copy(src, src + kLanes, dst);
#endif
}

// The number of 4-wide tiles of a side (shape inference: unknown stays unknown).
DimensionHandle Tiles(InferenceContext* c, DimensionHandle side) {
  if (!c->ValueKnown(side)) return c->UnknownDim();
  return c->MakeDim((c->Value(side) + 3) / 4);
}

REGISTER_OP("CornerNet>WinogradInput")
    .Input("x: float")
    .Output("v: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
      DimensionHandle tiles;
      TF_RETURN_IF_ERROR(c->Multiply(Tiles(c, c->Dim(x, 1)), Tiles(c, c->Dim(x, 2)), &tiles));
      TF_RETURN_IF_ERROR(c->Multiply(c->Dim(x, 0), tiles, &tiles));
      c->set_output(0, c->MakeShape({c->MakeDim(36), tiles, c->Dim(x, 3)}));
      return Status();
    })
    .Doc("Winograd F(4x4,3x3) input transform of an NHWC tensor: (36, tiles, C).");

REGISTER_OP("CornerNet>WinogradOutput")
    .Input("m: float")
    .Input("bias: float")
    .Input("x: float")
    .Input("skip: N * float")
    .Attr("N: int >= 0 = 0")
    .Attr("relu: bool = false")
    .Output("y: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle m, x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &m));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &x));
      ShapeHandle y = c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), c->Dim(x, 2), c->Dim(m, 2)});
      for (int i = 3; i < c->num_inputs(); ++i) TF_RETURN_IF_ERROR(c->Merge(y, c->input(i), &y));
      c->set_output(0, y);
      return Status();
    })
    .Doc("Winograd F(4x4,3x3) output transform, + bias (+ skip), optional ReLU: NHWC, x's B, H, W.");

// out[i] = (B^T in)[i] for 6 rows of kLanes values.
inline void InputRows(const float in[6][kLanes], float out[6][kLanes]) {
  for (int l = 0; l < kLanes; ++l) {
    const float d0 = in[0][l], d1 = in[1][l], d2 = in[2][l], d3 = in[3][l], d4 = in[4][l],
                d5 = in[5][l];
    out[0][l] = 4 * d0 - 5 * d2 + d4;
    out[1][l] = -4 * (d1 + d2) + d3 + d4;
    out[2][l] = 4 * (d1 - d2) - d3 + d4;
    out[3][l] = 2 * (d3 - d1) - d2 + d4;
    out[4][l] = 2 * (d1 - d3) - d2 + d4;
    out[5][l] = 4 * d1 - 5 * d3 + d5;
  }
}

// out[i] = (A^T in)[i] for 4 of 6 rows of kLanes values.
inline void OutputRows(const float in[6][kLanes], float out[4][kLanes]) {
  for (int l = 0; l < kLanes; ++l) {
    const float m0 = in[0][l], m1 = in[1][l], m2 = in[2][l], m3 = in[3][l], m4 = in[4][l],
                m5 = in[5][l];
    const float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
    out[0][l] = m0 + a + c;
    out[1][l] = b + 2 * d;
    out[2][l] = a + 4 * c;
    out[3][l] = b + 8 * d + m5;
  }
}

struct Tiling {
  int64_t batch, height, width, rows, cols, tiles;
  Tiling(int64_t b, int64_t h, int64_t w)
      : batch(b), height(h), width(w), rows((h + 3) / 4), cols((w + 3) / 4),
        tiles(b * ((h + 3) / 4) * ((w + 3) / 4)) {}
};

class WinogradInputOp : public OpKernel {
 public:
  explicit WinogradInputOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    OP_REQUIRES(context, x.dims() == 4,
                InvalidArgument("WinogradInput: x must be NHWC, got shape ", x.shape().DebugString()));
    const Tiling g(x.dim_size(0), x.dim_size(1), x.dim_size(2));
    const int64_t channels = x.dim_size(3);
    Tensor* v = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({36, g.tiles, channels}), &v));
    if (g.tiles == 0 || channels == 0) return;
    const float* in = x.flat<float>().data();
    float* out = v->flat<float>().data();
    // streaming needs whole, aligned 16-lane groups
    const bool stream = v->TotalBytes() > kStreamBytes && channels % kLanes == 0 &&
                        reinterpret_cast<uintptr_t>(out) % 16 == 0;
    auto work = [&](int64_t begin, int64_t end) {
      float patch[6][6][kLanes], rows[6][6][kLanes], column[6][kLanes], done[6][kLanes];
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / (g.rows * g.cols), i = t / g.cols % g.rows, j = t % g.cols;
        const float* source[6][6];
        for (int r = 0; r < 6; ++r) {
          const int64_t y = 4 * i - 1 + r;
          for (int s = 0; s < 6; ++s) {
            const int64_t xx = 4 * j - 1 + s;
            const bool inside = y >= 0 && y < g.height && xx >= 0 && xx < g.width;
            source[r][s] = inside ? in + ((b * g.height + y) * g.width + xx) * channels : nullptr;
          }
        }
        for (int64_t c0 = 0; c0 < channels; c0 += kLanes) {
          const int n = static_cast<int>(std::min<int64_t>(kLanes, channels - c0));
          for (int r = 0; r < 6; ++r)
            for (int s = 0; s < 6; ++s) {
              float* p = patch[r][s];
              if (source[r][s] == nullptr || n < kLanes) std::fill(p, p + kLanes, 0.0f);
              if (source[r][s] != nullptr) std::copy(source[r][s] + c0, source[r][s] + c0 + n, p);
            }
          // B^T d: along the rows of the patch, for each column
          for (int s = 0; s < 6; ++s) {
            for (int r = 0; r < 6; ++r) std::copy(patch[r][s], patch[r][s] + kLanes, column[r]);
            InputRows(column, done);
            for (int r = 0; r < 6; ++r) std::copy(done[r], done[r] + kLanes, rows[r][s]);
          }
          // (B^T d) B: along the columns, for each row
          for (int r = 0; r < 6; ++r) {
            InputRows(rows[r], done);
            for (int s = 0; s < 6; ++s) {
              float* target = out + ((6 * r + s) * g.tiles + t) * channels + c0;
              if (stream) {
                StreamLanes(target, done[s]);
              } else {
                std::copy(done[s], done[s] + n, target);
              }
            }
          }
        }
      }
#if defined(__SSE2__)
      if (stream) _mm_sfence();  // this thread's streamed lines are visible before the matmul
#endif
    };
    auto* threads = context->device()->tensorflow_cpu_worker_threads();
    const int64_t cost = 36 * channels * 12;
    tensorflow::Shard(threads->num_threads, threads->workers, g.tiles, cost, work);
  }
};

class WinogradOutputOp : public OpKernel {
 public:
  explicit WinogradOutputOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("relu", &relu_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& m = context->input(0);
    const Tensor& bias = context->input(1);
    const Tensor& x = context->input(2);
    OP_REQUIRES(context, x.dims() == 4 && m.dims() == 3,
                InvalidArgument("WinogradOutput: expected m (36, tiles, K) and NHWC x, got ",
                                m.shape().DebugString(), " and ", x.shape().DebugString()));
    const Tiling g(x.dim_size(0), x.dim_size(1), x.dim_size(2));
    const int64_t channels = m.dim_size(2);
    OP_REQUIRES(context, m.dim_size(0) == 36 && m.dim_size(1) == g.tiles,
                InvalidArgument("WinogradOutput: m must be (36, ", g.tiles, ", K) for x of shape ",
                                x.shape().DebugString(), ", got ", m.shape().DebugString()));
    OP_REQUIRES(context, bias.dims() == 1 && bias.dim_size(0) == channels,
                InvalidArgument("WinogradOutput: bias must be (", channels, "), got ",
                                bias.shape().DebugString()));
    const TensorShape shape({g.batch, g.height, g.width, channels});
    const float* skip = nullptr;
    if (context->num_inputs() > 3) {
      const Tensor& other = context->input(3);
      OP_REQUIRES(context, other.shape() == shape,
                  InvalidArgument("WinogradOutput: skip must be ", shape.DebugString(), ", got ",
                                  other.shape().DebugString()));
      skip = other.flat<float>().data();
    }
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, shape, &y));
    if (g.tiles == 0 || channels == 0) return;
    const float* in = m.flat<float>().data();
    const float* add = bias.flat<float>().data();
    float* out = y->flat<float>().data();
    const bool relu = relu_;
    auto work = [&](int64_t begin, int64_t end) {
      float tile[6][6][kLanes], column[6][kLanes], half[4][6][kLanes], done[4][kLanes];
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / (g.rows * g.cols), i = t / g.cols % g.rows, j = t % g.cols;
        for (int64_t c0 = 0; c0 < channels; c0 += kLanes) {
          const int n = static_cast<int>(std::min<int64_t>(kLanes, channels - c0));
          for (int k = 0; k < 36; ++k) {
            const float* source = in + (k * g.tiles + t) * channels + c0;
            float* p = tile[k / 6][k % 6];
            if (n < kLanes) std::fill(p, p + kLanes, 0.0f);
            std::copy(source, source + n, p);
          }
          // A^T m: along the rows, for each column
          for (int s = 0; s < 6; ++s) {
            for (int r = 0; r < 6; ++r) std::copy(tile[r][s], tile[r][s] + kLanes, column[r]);
            OutputRows(column, done);
            for (int r = 0; r < 4; ++r) std::copy(done[r], done[r] + kLanes, half[r][s]);
          }
          // (A^T m) A, + bias, ReLU: along the columns, for each of the 4 output rows
          for (int r = 0; r < 4; ++r) {
            const int64_t yy = 4 * i + r;
            if (yy >= g.height) break;
            OutputRows(half[r], done);
            for (int s = 0; s < 4; ++s) {
              const int64_t xx = 4 * j + s;
              if (xx >= g.width) break;
              const int64_t at = ((b * g.height + yy) * g.width + xx) * channels + c0;
              for (int l = 0; l < n; ++l) {
                float value = done[s][l] + add[c0 + l];
                if (skip != nullptr) value += skip[at + l];
                out[at + l] = relu && value < 0 ? 0.0f : value;
              }
            }
          }
        }
      }
    };
    auto* threads = context->device()->tensorflow_cpu_worker_threads();
    const int64_t cost = 36 * channels * 10;
    tensorflow::Shard(threads->num_threads, threads->workers, g.tiles, cost, work);
  }

 private:
  bool relu_;
};

REGISTER_KERNEL_BUILDER(Name("CornerNet>WinogradInput").Device(DEVICE_CPU), WinogradInputOp);
REGISTER_KERNEL_BUILDER(Name("CornerNet>WinogradOutput").Device(DEVICE_CPU), WinogradOutputOp);

}  // namespace cornernet
