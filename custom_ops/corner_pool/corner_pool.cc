// The CornerPool and CornerPoolGrad ops: registration, shape checks and the multithreaded CPU
// kernels (and, built with -DGOOGLE_CUDA=1, the GPU kernels of corner_pool_gpu.cu).
//
// Forward: out[i] = max of x over the positions from the line's starting border to i.
// Backward (the official rule): out[i]'s gradient goes to the arg-max of that range; on ties to
// the element the scan met first (the one nearest the starting border).
#define EIGEN_USE_THREADS
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <string>
#include <vector>

#include "corner_pool.h"
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
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

Status SameShapeRank4(InferenceContext* c) {
  ShapeHandle shape;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &shape));
  for (int i = 1; i < c->num_inputs(); ++i) TF_RETURN_IF_ERROR(c->Merge(shape, c->input(i), &shape));
  c->set_output(0, shape);
  return Status();
}

REGISTER_OP("CornerNet>CornerPool")
    .Input("x: T")
    .Output("y: T")
    .Attr("direction: {'top', 'bottom', 'left', 'right'}")
    .Attr("T: {float, half, bfloat16}")
    .SetShapeFn(SameShapeRank4)
    .Doc("Corner pooling of an NHWC tensor: a running max from one border (CornerNet).");

REGISTER_OP("CornerNet>CornerPoolGrad")
    .Input("x: T")
    .Input("grad: T")
    .Output("dx: T")
    .Attr("direction: {'top', 'bottom', 'left', 'right'}")
    .Attr("T: {float, half, bfloat16}")
    .SetShapeFn(SameShapeRank4)
    .Doc("Gradient of CornerPool: each output's gradient to its arg-max (ties: nearest the border).");

// The shared part of the four op kernels: reads the direction, checks the inputs (x, and grad
// for the gradient op), allocates the output and calls Run when there is anything to pool.
class CornerPoolBase : public OpKernel {
 public:
  explicit CornerPoolBase(OpKernelConstruction* context) : OpKernel(context) {
    std::string direction;
    OP_REQUIRES_OK(context, context->GetAttr("direction", &direction));
    along_h_ = direction == "top" || direction == "bottom";
    from_end_ = direction == "top" || direction == "left";
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    OP_REQUIRES(context, x.dims() == 4,
                InvalidArgument("CornerPool: expected an NHWC tensor of rank 4, got shape ",
                                x.shape().DebugString()));
    const bool gradient = context->num_inputs() == 2;
    OP_REQUIRES(context, !gradient || context->input(1).shape() == x.shape(),
                InvalidArgument("CornerPoolGrad: grad shape ",
                                context->input(1).shape().DebugString(),
                                " differs from x shape ", x.shape().DebugString()));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &out));
    if (x.NumElements() == 0) return;
    const PoolGeometry g(x.dim_size(0), x.dim_size(1), x.dim_size(2), x.dim_size(3), along_h_,
                         from_end_);
    Run(context, g, x, gradient ? &context->input(1) : nullptr, out);
  }

 protected:
  // grad is null for the forward op.
  virtual void Run(OpKernelContext* context, const PoolGeometry& g, const Tensor& x,
                   const Tensor* grad, Tensor* out) = 0;

 private:
  bool along_h_ = true;
  bool from_end_ = true;
};

template <typename T>
void ForwardLines(const T* x, T* y, const PoolGeometry& g, int64_t begin, int64_t end) {
  const int64_t c_count = g.channels;
  for (int64_t line = begin; line < end; ++line) {
    const int64_t first = g.offset(line, 0);
    for (int64_t c = 0; c < c_count; ++c) y[first + c] = x[first + c];
    for (int64_t k = 1; k < g.length; ++k) {
      const T* prev = y + g.offset(line, k - 1);
      const int64_t at = g.offset(line, k);
      const T* in = x + at;
      T* out = y + at;
      for (int64_t c = 0; c < c_count; ++c) out[c] = in[c] > prev[c] ? in[c] : prev[c];
    }
  }
}

// Two passes per line, dx as scratch: the running max forward, then backward, summing the
// gradients of the positions whose arg-max is the same element (the positions since the running
// max last rose strictly). Summing from the far end adds in the order of the pure-TF chain of
// tf.maximum gradients, so the results are bit-identical to the "tf" implementation.
template <typename T>
void BackwardLines(const T* x, const T* grad, T* dx, const PoolGeometry& g, int64_t begin,
                   int64_t end) {
  const int64_t c_count = g.channels;
  std::vector<T> sum(c_count);
  for (int64_t line = begin; line < end; ++line) {
    ForwardLines(x, dx, g, line, line + 1);
    for (int64_t c = 0; c < c_count; ++c) sum[c] = T(0);
    for (int64_t k = g.length - 1; k >= 0; --k) {
      const int64_t at = g.offset(line, k);
      const T* before = k > 0 ? dx + g.offset(line, k - 1) : nullptr;  // running max at k - 1
      for (int64_t c = 0; c < c_count; ++c) {
        sum[c] += grad[at + c];
        if (k == 0 || x[at + c] > before[c]) {  // the running max rose here: the arg-max
          dx[at + c] = sum[c];
          sum[c] = T(0);
        } else {
          dx[at + c] = T(0);
        }
      }
    }
  }
}

template <typename T>
class CornerPoolCpu : public CornerPoolBase {
 public:
  using CornerPoolBase::CornerPoolBase;

 protected:
  void Run(OpKernelContext* context, const PoolGeometry& g, const Tensor& x, const Tensor* grad,
           Tensor* out) override {
    const T* in = x.flat<T>().data();
    const T* g_in = grad ? grad->flat<T>().data() : nullptr;
    T* result = out->flat<T>().data();
    const int64_t cost = g.length * g.channels * (grad ? 8 : 4);  // per line
    auto* threads = context->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, g.lines, cost,
                      [&](int64_t begin, int64_t end) {
                        if (grad) {
                          BackwardLines(in, g_in, result, g, begin, end);
                        } else {
                          ForwardLines(in, result, g, begin, end);
                        }
                      });
  }
};

#define REGISTER_CPU(T)                                                                  \
  REGISTER_KERNEL_BUILDER(                                                               \
      Name("CornerNet>CornerPool").Device(DEVICE_CPU).TypeConstraint<T>("T"),            \
      CornerPoolCpu<T>);                                                                 \
  REGISTER_KERNEL_BUILDER(                                                               \
      Name("CornerNet>CornerPoolGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),        \
      CornerPoolCpu<T>);
REGISTER_CPU(float);
REGISTER_CPU(Eigen::half);
REGISTER_CPU(tensorflow::bfloat16);

#if GOOGLE_CUDA
using tensorflow::DEVICE_GPU;

class CornerPoolGpu : public CornerPoolBase {
 public:
  using CornerPoolBase::CornerPoolBase;

 protected:
  void Run(OpKernelContext* context, const PoolGeometry& g, const Tensor& x, const Tensor* grad,
           Tensor* out) override {
    void* stream = context->eigen_gpu_device().stream();
    if (grad) {
      LaunchCornerPoolBackward(x.flat<float>().data(), grad->flat<float>().data(),
                               out->flat<float>().data(), g, stream);
    } else {
      LaunchCornerPoolForward(x.flat<float>().data(), out->flat<float>().data(), g, stream);
    }
  }
};

REGISTER_KERNEL_BUILDER(
    Name("CornerNet>CornerPool").Device(DEVICE_GPU).TypeConstraint<float>("T"), CornerPoolGpu);
REGISTER_KERNEL_BUILDER(
    Name("CornerNet>CornerPoolGrad").Device(DEVICE_GPU).TypeConstraint<float>("T"), CornerPoolGpu);
#endif  // GOOGLE_CUDA

}  // namespace cornernet
