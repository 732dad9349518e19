// tconv::upsample_linear1d and tconv::upsample_trilinear3d: CompositeImplicitAutograd kernels built
// on tconv::upsample_bilinear2d (called through the dispatcher) and plain ATen view/copy ops, so
// every device, autograd mode, vmap, fake tensors and torch.compile come from the 2-D op:
// Note [1-D and 3-D ops as composites] (docs/ARCHITECTURE.md).
//
// Linear interpolation is separable, so
//   linear (N, C, L)            = the 2-D op on (N, C, ., L), the W axis resampled;
//   trilinear (N, C, D, H, W)   = a D pass (the 2-D op on a (., H*W, D, .) view: D is its H axis,
//                                 H*W its channels) then an H, W pass on (N, C*Do, H, W).
// The D pass runs first: it reads the small input.
//
// The axis the 2-D op must leave alone (its "dummy" axis) is not a 1 -> 1 axis: PyTorch computes
// an axis whose size does not change as the taps (x[i], x[i]) with weights (1, 0), so an Inf
// there would become Inf * 1 + Inf * 0 = NaN where PyTorch's 1-D/3-D ops keep Inf (Note [NaN/Inf]:
// tconv reproduces PyTorch's taps). Instead the dummy axis goes 2 -> 1 over two rows, weights
// chosen so that every element's result is that element's value exactly:
//   align_corners=False: rows (x, x) and the axis scale 0.25, so the source index is 1.5: both
//                        taps on row 1, weights (0.5, 0.5): 0.5 x + 0.5 x = x, Inf stays Inf;
//   align_corners=True:  rows (x, 0): the source index is 0, taps rows 0 and 1 with weights
//                        (1, 0): 1 x + 0 * 0 = x.
// (The scale of the dummy axis is the op's own argument; align_corners applies to both axes.)
// That costs one copy of the input (twice its size) per call, the price of PyTorch's NaN/Inf
// placement; the resampled axes' weights and order are PyTorch's.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "composite_buffers.h"
#include "cpu/dispatch.h"

namespace tconv {
namespace {

using at::IntArrayRef;
using at::Tensor;

using UpsampleSig = Tensor(const Tensor&, IntArrayRef, bool, bool, std::optional<double>,
                           std::optional<double>);

Tensor tconv_upsample_bilinear2d(const Tensor& x, IntArrayRef size, bool align_corners,
                           std::optional<double> scale_h, std::optional<double> scale_w) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv::upsample_bilinear2d", "")
                             .typed<UpsampleSig>();
  return op.call(x, size, align_corners, /*antialias=*/false, scale_h, scale_w);
}

int64_t dim_size(const Tensor& t, int64_t d) { return t.sym_size(d).guard_int(__FILE__, __LINE__); }

// (..., 1, K) -> (..., 2, K), contiguous: the two rows of the dummy axis (see above).
// Only one row is ever read by the 2-D op's taps (row 1 with align_corners=False, row 0 with
// align_corners=True), so only that row carries x's gradient: the other is x detached (or zeros),
// and the backward of the rows is one narrow (a view), not a sum of the two rows' gradients.
// The buffer filled in place is for calls autograd does not record: recorded, its two copy_
// calls would make CopySlices nodes whose backward clones and zero-fills the rows' gradient
// (twice the input's size) once per row, most of the trilinear backward's time.
Tensor dummy_rows(const Tensor& x, bool align_corners) {
  auto sizes = x.sizes().vec();
  const int64_t axis = x.dim() - 2;
  sizes[axis] = 2;
  const bool recorded = at::GradMode::is_enabled() && x.requires_grad();
  if (!recorded && plain_cpu_call({&x})) {
    Tensor rows = cached_buffer(sizes, x);
    rows.narrow(axis, 0, 1).copy_(x);
    if (align_corners) rows.narrow(axis, 1, 1).zero_();
    else rows.narrow(axis, 1, 1).copy_(x);
    return rows;
  }
  if (align_corners) return at::constant_pad_nd(x, {0, 0, 0, 1}).contiguous();
  return at::cat({x.detach(), x}, axis);
}

// The dummy axis' scale factor: 0.25 makes the source index 1.5 (align_corners=False); ignored
// with align_corners=True.
std::optional<double> dummy_scale(bool align_corners) {
  return align_corners ? std::nullopt : std::optional<double>(0.25);
}

void check_input(const Tensor& input, int64_t dims, const char* name) {
  TORCH_CHECK_NOT_IMPLEMENTED(at::isFloatingType(input.scalar_type()), "\"", name,
                              "\" not implemented for '", input.scalar_type(), "'");
  TORCH_CHECK(input.dim() == dims + 2, name, ": expected a ", dims + 2, "-D input, but got ",
              input.dim(), " dimensions");
}

// ATen's order: the sizes first, then the data (an empty batch is fine, no channels is not).
void check_nonempty(const Tensor& input) {
  int64_t rest = 1;
  for (int64_t d = 1; d < input.dim(); ++d) rest *= dim_size(input, d);
  TORCH_CHECK(rest != 0, "Non-empty ", input.dim(), "D data tensor expected but got a tensor with sizes ",
              input.sizes());
}

Tensor upsample_linear1d_composite(const Tensor& input, IntArrayRef output_size, bool align_corners,
                                   std::optional<double> scale) {
  const Tensor x = dummy_rows(input.unsqueeze(2), align_corners);  // (N, C, 2, L)
  const int64_t size[2] = {1, output_size[0]};
  return tconv_upsample_bilinear2d(x, size, align_corners, dummy_scale(align_corners), scale).squeeze(2);
}

Tensor upsample_trilinear3d_composite(const Tensor& input, IntArrayRef output_size, bool align_corners,
                                      std::optional<double> scale_d, std::optional<double> scale_h,
                                      std::optional<double> scale_w) {
  const int64_t N = dim_size(input, 0), C = dim_size(input, 1), D = dim_size(input, 2),
                H = dim_size(input, 3), W = dim_size(input, 4);
  const int64_t Do = output_size[0], Ho = output_size[1], Wo = output_size[2];
  const bool cl = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d;
  const int64_t d_size[2] = {Do, 1}, hw_size[2] = {Ho, Wo};
  if (cl) {
    // memory (N, D, H, W, C): the D pass on (N, H*W*C, D, .) channels_last, then the H, W pass
    // on (N*Do, C, H, W) channels_last; the output is channels_last_3d, as PyTorch's.
    const Tensor x = input.permute({0, 2, 3, 4, 1}).reshape({N, D, 1, H * W * C});
    const Tensor a = tconv_upsample_bilinear2d(dummy_rows(x, align_corners).permute({0, 3, 1, 2}), d_size,
                                         align_corners, scale_d, dummy_scale(align_corners));
    // a: (N, HWC, Do, 1) channels_last, memory (N, Do, H, W, C)
    const Tensor planes = a.permute({0, 2, 3, 1}).reshape({N * Do, H, W, C}).permute({0, 3, 1, 2});
    const Tensor y = tconv_upsample_bilinear2d(planes, hw_size, align_corners, scale_h, scale_w);
    // y: (N*Do, C, Ho, Wo) channels_last, memory (N, Do, Ho, Wo, C)
    return y.permute({0, 2, 3, 1}).reshape({N, Do, Ho, Wo, C}).permute({0, 4, 1, 2, 3});
  }
  const Tensor x = input.contiguous().view({N * C, D, 1, H * W});
  const Tensor a = tconv_upsample_bilinear2d(dummy_rows(x, align_corners).permute({0, 3, 1, 2}), d_size,
                                       align_corners, scale_d, dummy_scale(align_corners));
  // a: (N*C, HW, Do, 1) channels_last, memory (N, C, Do, H, W)
  const Tensor planes = a.permute({0, 2, 3, 1}).reshape({N, C * Do, H, W});
  return tconv_upsample_bilinear2d(planes, hw_size, align_corners, scale_h, scale_w)
      .view({N, C, Do, Ho, Wo});
}

// ---- plain eager CPU calls on the volume kernel ----------------------------------------------
// Note [linear resampling of volumes] (docs/ARCHITECTURE.md): a plain eager CPU call (no torch.func
// transform, fake tensor, dispatch mode, autocast or forward-mode tangent) runs the volume kernel
// below autograd (contiguous or channels_last_3d): no dummy axis, no intermediate. When the input
// requires a gradient, UpsampleLinearNdBackward computes it with the volume kernel too. Everything
// else takes the composites above.

Tensor upsample_linear_composite(const Tensor& input, IntArrayRef output_size, bool align_corners,
                                 const std::vector<std::optional<double>>& scales) {
  if (output_size.size() == 1) return upsample_linear1d_composite(input, output_size, align_corners, scales[0]);
  return upsample_trilinear3d_composite(input, output_size, align_corners, scales[0], scales[1], scales[2]);
}

std::vector<double> user_scales(const std::vector<std::optional<double>>& scales) {
  std::vector<double> s;
  for (const auto& v : scales) s.push_back(v.value_or(0.));
  return s;
}

// The gradient of an upsample_linear1d / upsample_trilinear3d the volume kernel computed. It saves
// no tensor: the op is linear, its gradient a function of grad_output alone. Differentiated itself
// (create_graph: double backward), or for a grad_output the kernel does not take, it is the
// composite's gradient at any point (zeros), through the composite's graph (reentrant).
struct UpsampleLinearNdBackward : torch::autograd::TraceableFunction {
  std::vector<int64_t> input_size, output_size;
  bool align_corners = false;
  std::vector<std::optional<double>> scales;

  std::string name() const override { return "tconv::UpsampleLinearNdBackward"; }
  void release_variables() override {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    torch::autograd::variable_list out(1);
    const Tensor& gy = grads[0];
    if (!gy.defined() || !task_should_compute_output(0)) return out;
    if (!at::GradMode::is_enabled() && plain_cpu_call({&gy})) {
      out[0] = cpu::upsample_linear_nd_backward(gy, input_size, align_corners, user_scales(scales));
      return out;
    }
    const bool create_graph = at::GradMode::is_enabled();
    at::AutoGradMode enable_grad(true);
    const Tensor x0 = at::zeros(input_size, gy.options()).requires_grad_(true);
    const Tensor y = upsample_linear_composite(x0, output_size, align_corners, scales);
    out[0] = torch::autograd::grad({y}, {x0}, {gy}, /*retain_graph=*/create_graph, create_graph)[0];
    return out;
  }
};

Tensor upsample_linear(const Tensor& input, IntArrayRef output_size, bool align_corners,
                       const std::vector<std::optional<double>>& scales) {
  if (!cpu_kernels_may_serve({&input})) return upsample_linear_composite(input, output_size, align_corners, scales);
  Tensor y;
  {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    y = cpu::upsample_linear_nd(input, output_size, align_corners, user_scales(scales));
  }
  if (torch::autograd::compute_requires_grad(input)) {
    auto node = c10::make_intrusive<UpsampleLinearNdBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(input));
    node->input_size = input.sizes().vec();
    node->output_size = output_size.vec();
    node->align_corners = align_corners;
    node->scales = scales;
    torch::autograd::set_history(y, node);
  }
  return y;
}

Tensor upsample_linear1d(const Tensor& input, IntArrayRef output_size, bool align_corners,
                         std::optional<double> scale) {
  TORCH_CHECK(output_size.size() == 1, "It is expected output_size equals to 1, but got size ",
              output_size.size());
  check_input(input, 1, "upsample_linear1d");
  const int64_t L = dim_size(input, 2);
  TORCH_CHECK(L > 0 && output_size[0] > 0, "Input and output sizes should be greater than 0, but "
              "got input (W: ", L, ") and output (W: ", output_size[0], ")");
  check_nonempty(input);
  return upsample_linear(input, output_size, align_corners, {scale});
}

Tensor upsample_trilinear3d(const Tensor& input, IntArrayRef output_size, bool align_corners,
                            std::optional<double> scale_d, std::optional<double> scale_h,
                            std::optional<double> scale_w) {
  TORCH_CHECK(output_size.size() == 3, "It is expected output_size equals to 3, but got size ",
              output_size.size());
  check_input(input, 3, "upsample_trilinear3d");
  const int64_t D = dim_size(input, 2), H = dim_size(input, 3), W = dim_size(input, 4);
  const int64_t Do = output_size[0], Ho = output_size[1], Wo = output_size[2];
  TORCH_CHECK(D > 0 && H > 0 && W > 0 && Do > 0 && Ho > 0 && Wo > 0,
              "Input and output sizes should be greater than 0, but got input (D: ", D, ", H: ", H,
              ", W: ", W, ") output (D: ", Do, ", H: ", Ho, ", W: ", Wo, ")");
  check_nonempty(input);
  return upsample_linear(input, output_size, align_corners, {scale_d, scale_h, scale_w});
}

void register_kernels(torch::Library& m) {
  m.impl("upsample_linear1d", &upsample_linear1d);
  m.impl("upsample_trilinear3d", &upsample_trilinear3d);
}

}  // namespace

TCONV_REGISTER_COMPOSITES(register_kernels)

}  // namespace tconv
