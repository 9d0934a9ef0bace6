// Winograd F(m x m, 3x3) for a 3x3, stride 1, zero-padded ("same") convolution of NHWC float32
// (m = 4) or bfloat16 (m = 2): the input and output transforms as two ops; the n * n products in
// between (n = m + 2) are one batched matmul (tf.matmul, oneDNN), done by
// cornernet_tf.ops.winograd.
//
//   WinogradInput(x (B,H,W,C)) -> v (n*n, T, C)       v[k, t] = (B^T d_t B)[k]
//   WinogradOutput(m (n*n, T, K), bias (K), x, [skip]) -> y
//                                   y tile t = A^T m_t A + bias (+ skip), then optionally ReLU
//
// t runs over the m x m output tiles, T = B * ceil(H/m) * ceil(W/m); d_t is the n x n input
// patch of tile t (rows m*i-1 .. m*i+m, zeros outside the image), k = n * row + column. The
// matrices are those of Lavin & Gray (2016): F(4x4,3x3) with interpolation points 0, 1, -1, 2,
// -2 and infinity, F(2x2,3x3) with 0, 1, -1 and infinity (its transforms only add, so values
// rounded to bfloat16 stay close to a direct convolution's; docs/performance.md). The arithmetic
// is float32 for both types. Each op runs its tiles on TensorFlow's CPU threads, one 64-byte
// line of channels at a time (16 float32 or 32 bfloat16, contiguous in NHWC).
// A large v (kStreamBytes or more, more than the caches keep) is written with non-temporal stores:
// the matmul reads it from memory anyway, and the stores then skip reading the lines first
// (docs/performance.md, "Winograd convolutions", has the measured gain).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace cornernet {

using tensorflow::bfloat16;
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

constexpr int kLineBytes = 64;  // channels per step: one cache line
constexpr int64_t kStreamBytes = int64_t{16} << 20;

// The 1-D transforms of F(m, 3) along one axis of a tile, for L lanes at a time: row r of an
// operand is p[r * stride .. + L). Input: o = B^T d (n rows); Output: o = A^T v (m of n rows).
template <int M>
struct Transform;

template <>
struct Transform<4> {
  static constexpr int kN = 6;
  template <int L>
  static inline void Input(const float* d, int ds, float* o, int os) {
    for (int l = 0; l < L; ++l) {
      const float d0 = d[l], d1 = d[ds + l], d2 = d[2 * ds + l], d3 = d[3 * ds + l],
                  d4 = d[4 * ds + l], d5 = d[5 * ds + l];
      o[l] = 4 * d0 - 5 * d2 + d4;
      o[os + l] = -4 * (d1 + d2) + d3 + d4;
      o[2 * os + l] = 4 * (d1 - d2) - d3 + d4;
      o[3 * os + l] = 2 * (d3 - d1) - d2 + d4;
      o[4 * os + l] = 2 * (d1 - d3) - d2 + d4;
      o[5 * os + l] = 4 * d1 - 5 * d3 + d5;
    }
  }
  template <int L>
  static inline void Output(const float* v, int vs, float* o, int os) {
    for (int l = 0; l < L; ++l) {
      const float v1 = v[vs + l], v2 = v[2 * vs + l], v3 = v[3 * vs + l], v4 = v[4 * vs + l];
      const float a = v1 + v2, b = v1 - v2, c = v3 + v4, d = v3 - v4;
      o[l] = v[l] + a + c;
      o[os + l] = b + 2 * d;
      o[2 * os + l] = a + 4 * c;
      o[3 * os + l] = b + 8 * d + v[5 * vs + l];
    }
  }
};

template <>
struct Transform<2> {
  static constexpr int kN = 4;
  template <int L>
  static inline void Input(const float* d, int ds, float* o, int os) {
    for (int l = 0; l < L; ++l) {
      const float d0 = d[l], d1 = d[ds + l], d2 = d[2 * ds + l], d3 = d[3 * ds + l];
      o[l] = d0 - d2;
      o[os + l] = d1 + d2;
      o[2 * os + l] = d2 - d1;
      o[3 * os + l] = d1 - d3;
    }
  }
  template <int L>
  static inline void Output(const float* v, int vs, float* o, int os) {
    for (int l = 0; l < L; ++l) {
      const float v1 = v[vs + l], v2 = v[2 * vs + l];
      o[l] = v[l] + v1 + v2;
      o[os + l] = v1 - v2 - v[3 * vs + l];
    }
  }
};

// float32 <-> the tensor's type, the bits of a bfloat16 as uint16_t: the upper half of a
// float32, rounded to nearest even; written out so that the compiler vectorizes the loops. A NaN
// stays NaN without a test: every float32 here is computed from bfloat16 values, so a NaN's lower
// 16 bits are zero (arithmetic passes an operand's payload on, or makes 0x7fc00000), and the
// rounding carry cannot reach its upper half.
template <typename T>
using Bits = std::conditional_t<std::is_same_v<T, float>, float, uint16_t>;

inline float ToFloat(float value) { return value; }
inline float ToFloat(uint16_t half) {
  const uint32_t bits = uint32_t{half} << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}
template <typename B>
inline B FromFloat(float value);
template <>
inline float FromFloat<float>(float value) { return value; }
template <>
inline uint16_t FromFloat<uint16_t>(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

template <typename T>
const Bits<T>* BitsOf(const Tensor& tensor) {
  return reinterpret_cast<const Bits<T>*>(tensor.flat<T>().data());
}

// p[0..L) = from[0..n) as float32, zeros after n (or everywhere when from is null).
template <int L, typename T>
inline void LoadLine(const T* from, int n, float* p) {
  if (from != nullptr && n == L) {
    for (int l = 0; l < L; ++l) p[l] = ToFloat(from[l]);
    return;
  }
  std::fill(p, p + L, 0.0f);
  if (from != nullptr)
    for (int l = 0; l < n; ++l) p[l] = ToFloat(from[l]);
}

// dst[0..64 bytes) = src, dst 16-byte aligned, bypassing the caches where the CPU can.
inline void StreamLine(void* dst, const void* src) {
#if defined(__SSE2__)
  auto* to = static_cast<__m128i*>(dst);
  const auto* from = static_cast<const __m128i*>(src);
  for (int i = 0; i < kLineBytes / 16; ++i) _mm_stream_si128(to + i, _mm_loadu_si128(from + i));
#else
  std::memcpy(dst, src, kLineBytes);
#endif
}

// The number of m-wide tiles of a side (shape inference: unknown stays unknown).
DimensionHandle Tiles(InferenceContext* c, DimensionHandle side, int m) {
  if (!c->ValueKnown(side)) return c->UnknownDim();
  return c->MakeDim((c->Value(side) + m - 1) / m);
}

REGISTER_OP("CornerNet>WinogradInput")
    .Input("x: T")
    .Output("v: T")
    .Attr("T: {float, bfloat16} = DT_FLOAT")
    .Attr("tile: int = 4")
    .SetShapeFn([](InferenceContext* c) {
      int m;
      TF_RETURN_IF_ERROR(c->GetAttr("tile", &m));
      if (m != 2 && m != 4) return InvalidArgument("WinogradInput: tile must be 2 or 4, got ", m);
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
      DimensionHandle tiles;
      TF_RETURN_IF_ERROR(
          c->Multiply(Tiles(c, c->Dim(x, 1), m), Tiles(c, c->Dim(x, 2), m), &tiles));
      TF_RETURN_IF_ERROR(c->Multiply(c->Dim(x, 0), tiles, &tiles));
      c->set_output(0, c->MakeShape({c->MakeDim((m + 2) * (m + 2)), tiles, c->Dim(x, 3)}));
      return Status();
    })
    .Doc("Winograd F(tile x tile, 3x3) input transform of an NHWC tensor: ((tile+2)^2, tiles, C).");

REGISTER_OP("CornerNet>WinogradOutput")
    .Input("m: T")
    .Input("bias: T")
    .Input("x: T")
    .Input("skip: N * T")
    .Attr("T: {float, bfloat16} = DT_FLOAT")
    .Attr("tile: int = 4")
    .Attr("N: int >= 0 = 0")
    .Attr("relu: bool = false")
    .Output("y: T")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle m, x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &m));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &x));
      ShapeHandle y = c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), c->Dim(x, 2), c->Dim(m, 2)});
      for (int i = 3; i < c->num_inputs(); ++i) TF_RETURN_IF_ERROR(c->Merge(y, c->input(i), &y));
      c->set_output(0, y);
      return Status();
    })
    .Doc("Winograd F(tile x tile, 3x3) output transform, + bias (+ skip), optional ReLU: NHWC.");

struct Tiling {
  int64_t batch, height, width, rows, cols, tiles;
  Tiling(int64_t b, int64_t h, int64_t w, int m)
      : batch(b), height(h), width(w), rows((h + m - 1) / m), cols((w + m - 1) / m),
        tiles(b * rows * cols) {}
};

template <typename T, int M>
void TransformInput(OpKernelContext* context, const Tensor& x, Tensor* v) {
  using B = Bits<T>;
  constexpr int N = Transform<M>::kN, L = kLineBytes / sizeof(B);
  const Tiling g(x.dim_size(0), x.dim_size(1), x.dim_size(2), M);
  const int64_t channels = x.dim_size(3);
  const B* in = BitsOf<T>(x);
  B* out = reinterpret_cast<B*>(v->flat<T>().data());
  // streaming needs whole, aligned lines
  const bool stream = v->TotalBytes() >= kStreamBytes && channels % L == 0 &&
                      reinterpret_cast<uintptr_t>(out) % 16 == 0;
  auto work = [&](int64_t begin, int64_t end) {
    float patch[N][N][L], rows[N][N][L];
    alignas(16) B lines[N][L];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / (g.rows * g.cols), i = t / g.cols % g.rows, j = t % g.cols;
      const B* source[N][N];
      for (int r = 0; r < N; ++r) {
        const int64_t y = M * i - 1 + r;
        for (int s = 0; s < N; ++s) {
          const int64_t xx = M * j - 1 + s;
          const bool inside = y >= 0 && y < g.height && xx >= 0 && xx < g.width;
          source[r][s] = inside ? in + ((b * g.height + y) * g.width + xx) * channels : nullptr;
        }
      }
      for (int64_t c0 = 0; c0 < channels; c0 += L) {
        const int n = static_cast<int>(std::min<int64_t>(L, channels - c0));
        for (int r = 0; r < N; ++r)
          for (int s = 0; s < N; ++s)
            LoadLine<L>(source[r][s] == nullptr ? nullptr : source[r][s] + c0, n, patch[r][s]);
        // B^T d: along the rows of the patch, for each column
        for (int s = 0; s < N; ++s)
          Transform<M>::template Input<L>(patch[0][s], N * L, rows[0][s], N * L);
        // (B^T d) B: along the columns, for each row
        for (int r = 0; r < N; ++r) {
          float done[N][L];
          Transform<M>::template Input<L>(rows[r][0], L, done[0], L);
          // to the tensor type, then stored (streamed) a line at a time
          for (int s = 0; s < N; ++s)
            for (int l = 0; l < L; ++l) lines[s][l] = FromFloat<B>(done[s][l]);
          for (int s = 0; s < N; ++s) {
            B* target = out + ((N * r + s) * g.tiles + t) * channels + c0;
            if (stream) {
              StreamLine(target, lines[s]);
            } else {
              std::copy(lines[s], lines[s] + n, target);
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
  const int64_t cost = N * N * channels * 12;
  tensorflow::Shard(threads->num_threads, threads->workers, g.tiles, cost, work);
}

template <typename T, int M>
void TransformOutput(OpKernelContext* context, const Tensor& m, const Tensor& bias,
                     const Tensor* skip_tensor, bool relu, Tensor* y) {
  using B = Bits<T>;
  constexpr int N = Transform<M>::kN, L = kLineBytes / sizeof(B);
  const Tiling g(y->dim_size(0), y->dim_size(1), y->dim_size(2), M);
  const int64_t channels = m.dim_size(2);
  const B* in = BitsOf<T>(m);
  const B* add = BitsOf<T>(bias);
  const B* skip = skip_tensor == nullptr ? nullptr : BitsOf<T>(*skip_tensor);
  B* out = reinterpret_cast<B*>(y->flat<T>().data());
  auto work = [&](int64_t begin, int64_t end) {
    float tile[N][N][L], half[M][N][L];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / (g.rows * g.cols), i = t / g.cols % g.rows, j = t % g.cols;
      for (int64_t c0 = 0; c0 < channels; c0 += L) {
        const int n = static_cast<int>(std::min<int64_t>(L, channels - c0));
        for (int k = 0; k < N * N; ++k)
          LoadLine<L>(in + (k * g.tiles + t) * channels + c0, n, tile[k / N][k % N]);
        // A^T m: along the rows, for each column
        for (int s = 0; s < N; ++s)
          Transform<M>::template Output<L>(tile[0][s], N * L, half[0][s], N * L);
        // (A^T m) A, + bias (+ skip), ReLU: along the columns, for each of the m output rows
        for (int r = 0; r < M; ++r) {
          const int64_t yy = M * i + r;
          if (yy >= g.height) break;
          float done[M][L];
          Transform<M>::template Output<L>(half[r][0], L, done[0], L);
          for (int s = 0; s < M; ++s) {
            const int64_t xx = M * j + s;
            if (xx >= g.width) break;
            const int64_t at = ((b * g.height + yy) * g.width + xx) * channels + c0;
            for (int l = 0; l < n; ++l) {
              float value = done[s][l] + ToFloat(add[c0 + l]);
              if (skip != nullptr) value += ToFloat(skip[at + l]);
              out[at + l] = FromFloat<B>(relu && value < 0 ? 0.0f : value);
            }
          }
        }
      }
    }
  };
  auto* threads = context->device()->tensorflow_cpu_worker_threads();
  const int64_t cost = N * N * channels * 10;
  tensorflow::Shard(threads->num_threads, threads->workers, g.tiles, cost, work);
}

template <typename T>
class WinogradInputOp : public OpKernel {
 public:
  explicit WinogradInputOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("tile", &tile_));
    OP_REQUIRES(context, tile_ == 2 || tile_ == 4,
                InvalidArgument("WinogradInput: tile must be 2 or 4, got ", tile_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    OP_REQUIRES(context, x.dims() == 4,
                InvalidArgument("WinogradInput: x must be NHWC, got shape ", x.shape().DebugString()));
    const Tiling g(x.dim_size(0), x.dim_size(1), x.dim_size(2), tile_);
    const int64_t positions = (tile_ + 2) * (tile_ + 2);
    Tensor* v = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({positions, g.tiles, x.dim_size(3)}), &v));
    if (g.tiles == 0 || x.dim_size(3) == 0) return;
    if (tile_ == 4) {
      TransformInput<T, 4>(context, x, v);
    } else {
      TransformInput<T, 2>(context, x, v);
    }
  }

 private:
  int tile_;
};

template <typename T>
class WinogradOutputOp : public OpKernel {
 public:
  explicit WinogradOutputOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("relu", &relu_));
    OP_REQUIRES_OK(context, context->GetAttr("tile", &tile_));
    OP_REQUIRES(context, tile_ == 2 || tile_ == 4,
                InvalidArgument("WinogradOutput: tile must be 2 or 4, got ", tile_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& m = context->input(0);
    const Tensor& bias = context->input(1);
    const Tensor& x = context->input(2);
    OP_REQUIRES(context, x.dims() == 4 && m.dims() == 3,
                InvalidArgument("WinogradOutput: expected m (n*n, tiles, K) and NHWC x, got ",
                                m.shape().DebugString(), " and ", x.shape().DebugString()));
    const Tiling g(x.dim_size(0), x.dim_size(1), x.dim_size(2), tile_);
    const int64_t positions = (tile_ + 2) * (tile_ + 2);
    const int64_t channels = m.dim_size(2);
    OP_REQUIRES(context, m.dim_size(0) == positions && m.dim_size(1) == g.tiles,
                InvalidArgument("WinogradOutput: m must be (", positions, ", ", g.tiles,
                                ", K) for x of shape ", x.shape().DebugString(), " and tile ",
                                tile_, ", got ", m.shape().DebugString()));
    OP_REQUIRES(context, bias.dims() == 1 && bias.dim_size(0) == channels,
                InvalidArgument("WinogradOutput: bias must be (", channels, "), got ",
                                bias.shape().DebugString()));
    const TensorShape shape({g.batch, g.height, g.width, channels});
    const Tensor* skip = nullptr;
    if (context->num_inputs() > 3) {
      skip = &context->input(3);
      OP_REQUIRES(context, skip->shape() == shape,
                  InvalidArgument("WinogradOutput: skip must be ", shape.DebugString(), ", got ",
                                  skip->shape().DebugString()));
    }
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, shape, &y));
    if (g.tiles == 0 || channels == 0) return;
    if (tile_ == 4) {
      TransformOutput<T, 4>(context, m, bias, skip, relu_, y);
    } else {
      TransformOutput<T, 2>(context, m, bias, skip, relu_, y);
    }
  }

 private:
  bool relu_;
  int tile_;
};

#define REGISTER(T)                                                                        \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name("CornerNet>WinogradInput").Device(DEVICE_CPU).TypeConstraint<T>("T"),           \
      WinogradInputOp<T>);                                                                 \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name("CornerNet>WinogradOutput").Device(DEVICE_CPU).TypeConstraint<T>("T"),          \
      WinogradOutputOp<T>);
REGISTER(float)
REGISTER(bfloat16)
#undef REGISTER

}  // namespace cornernet
