// Autograd kernels of every tconv operator (dispatch key Autograd, any device): reverse mode,
// forward mode and their compositions, in C++ so that a call costs what an ATen op's does.
//
// conv_transpose2d and its backward ops are bilinear, upsampling and its backward linear, the
// Gram backward bilinear and the Gram quadratic, so
//   - the backward of each op is again one of the ops (double backward, hessians);
//   - the tangent (forward-mode AD) of each op is the op applied to the tangents, one term per
//     argument that has one: d(f(x, w)) = f(dx, w) + f(x, dw); the Gram's is s (dX X^T + X dX^T).
//     The tangents are computed with the ops' ordinary (differentiable) calls, so
//     forward-over-reverse and reverse-over-forward work.
// Each kernel is written the way PyTorch's generated VariableType kernels are (a graph node with
// saved variables, the device kernel called below autograd, the tangent attached at forward-AD
// level 0, with the tangent formulas evaluated on the primals), because torch.func's transforms
// refuse C++ torch::autograd::Function and it has no forward mode. Level 0 is the only level eager
// forward AD uses; torch.func.jvp runs its own levels on top of it.
//
// A call with nothing to differentiate (no input requiring grad under grad mode, no forward grad)
// goes straight to the device kernel. Batching rules (vmap) are in tconv/_register_*.py.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <array>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_shape.h"
#include "common/gram_tiles.h"

namespace tconv::autograd {
namespace {

using at::IntArrayRef;
using at::Tensor;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;
// Sizes and conv hyper-parameters (2 or 4 values): on the stack, so a call that needs no graph
// allocates nothing for them.
using Ints = c10::SmallVector<int64_t, 4>;

// ---- the ops, through the dispatcher (differentiable calls) -----------------------------------

template <typename Sig>
c10::TypedOperatorHandle<Sig> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

using ConvSig = Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, IntArrayRef,
                       IntArrayRef, IntArrayRef, int64_t, IntArrayRef);
using ConvBackwardInputSig = Tensor(const Tensor&, const Tensor&, IntArrayRef, IntArrayRef, int64_t,
                                    IntArrayRef, IntArrayRef);
using ConvBackwardWeightSig = Tensor(const Tensor&, const Tensor&, IntArrayRef, IntArrayRef,
                                     IntArrayRef, int64_t, IntArrayRef);
using ConvBackwardBiasSig = Tensor(const Tensor&);
using UpsampleSig = Tensor(const Tensor&, IntArrayRef, bool, bool, std::optional<double>,
                           std::optional<double>);
using GramSig = Tensor(const Tensor&, bool);
using GramBackwardSig = Tensor(const Tensor&, const Tensor&, bool);
using PadFoldSig = Tensor(const Tensor&, IntArrayRef, c10::string_view);
using PadFoldFrameSig = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, IntArrayRef,
                               c10::string_view);

// The convolution hyper-parameters every conv op shares.
struct ConvParams {
  Ints stride, padding;
  int64_t groups;
  Ints dilation;
};

Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
                        const ConvParams& p, IntArrayRef output_padding) {
  static const auto op = find_op<ConvSig>("tconv::conv_transpose2d");
  return op.call(x, w, b, p.stride, p.padding, output_padding, p.groups, p.dilation);
}

Tensor conv_backward_input(const Tensor& gy, const Tensor& w, const ConvParams& p, IntArrayRef input_hw) {
  static const auto op = find_op<ConvBackwardInputSig>("tconv::conv_transpose2d_backward_input");
  return op.call(gy, w, p.stride, p.padding, p.groups, p.dilation, input_hw);
}

Tensor conv_backward_weight(const Tensor& gy, const Tensor& x, const ConvParams& p, IntArrayRef kernel_hw) {
  static const auto op = find_op<ConvBackwardWeightSig>("tconv::conv_transpose2d_backward_weight");
  return op.call(gy, x, kernel_hw, p.stride, p.padding, p.groups, p.dilation);
}

Tensor conv_backward_bias(const Tensor& gy) {
  static const auto op = find_op<ConvBackwardBiasSig>("tconv::conv_transpose2d_backward_bias");
  return op.call(gy);
}

// The output_padding that makes conv_transpose2d of an in_hw input exactly out_hw (the adjoint
// of a backward_input / backward_weight call, whose output size the forward must reproduce).
Ints output_padding_for(IntArrayRef out_hw, IntArrayRef in_hw, IntArrayRef kernel_hw, const ConvParams& p) {
  Ints op(2);
  for (int d = 0; d < 2; ++d)
    op[d] = out_hw[d] - conv_transpose_out_size(in_hw[d], kernel_hw[d], p.stride[d], p.padding[d],
                                                /*output_padding=*/0, p.dilation[d]);
  return op;
}

// A tensor's (H, W). Read one dimension at a time: Tensor::size() on a traced (symbolic) tensor
// would specialise every dimension, the batch included (torch.export with a dynamic batch).
int64_t dim_size(const Tensor& t, int64_t d) { return t.sym_size(d).guard_int(__FILE__, __LINE__); }
Ints spatial(const Tensor& t) { return {dim_size(t, 2), dim_size(t, 3)}; }

enum class Mode { Bilinear, Bicubic };

const c10::TypedOperatorHandle<UpsampleSig>& upsample_op(Mode mode, bool backward) {
  static const auto ops = std::vector<c10::TypedOperatorHandle<UpsampleSig>>{
      find_op<UpsampleSig>("tconv::upsample_bilinear2d"),
      find_op<UpsampleSig>("tconv::upsample_bilinear2d_backward"),
      find_op<UpsampleSig>("tconv::upsample_bicubic2d"),
      find_op<UpsampleSig>("tconv::upsample_bicubic2d_backward")};
  return ops[(mode == Mode::Bicubic ? 2 : 0) + (backward ? 1 : 0)];
}

// The resampling parameters shared by an upsampling op and its backward.
struct UpsampleParams {
  Mode mode;
  bool align_corners, antialias;
  std::optional<double> scale_h, scale_w;
};

// forward: (N, C, H, W) -> (N, C, size); backward (the adjoint): (N, C, Ho, Wo) -> (N, C, size).
Tensor resample(const Tensor& t, IntArrayRef size, const UpsampleParams& p, bool backward) {
  return upsample_op(p.mode, backward).call(t, size, p.align_corners, p.antialias, p.scale_h, p.scale_w);
}

Tensor gram_matrix(const Tensor& x, bool normalize) {
  static const auto op = find_op<GramSig>("tconv::gram_matrix");
  return op.call(x, normalize);
}

Tensor gram_matrix_backward(const Tensor& gg, const Tensor& x, bool normalize) {
  static const auto op = find_op<GramBackwardSig>("tconv::gram_matrix_backward");
  return op.call(gg, x, normalize);
}

// s of the Gram ops for features x (N, C, L) (common/gram_tiles.h).
double gram_scale(const Tensor& x, bool normalize) {
  return tconv::gram_scale(dim_size(x, 1), dim_size(x, 2), normalize);
}

Tensor pad_fold2d(const Tensor& t, IntArrayRef pad, c10::string_view mode) {
  static const auto op = find_op<PadFoldSig>("tconv::pad_fold2d");
  return op.call(t, pad, mode);
}

Tensor pad_fold2d_frame(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                        const Tensor& right, IntArrayRef pad, c10::string_view mode) {
  static const auto op = find_op<PadFoldFrameSig>("tconv::pad_fold2d_frame");
  return op.call(center, top, bottom, left, right, pad, mode);
}

// ---- forward mode, graph nodes, and the no-autograd shortcut -----------------------------------

bool has_tangent(const Tensor& t) { return t.defined() && t._fw_grad(/*level=*/0).defined(); }
bool has_tangent(const std::optional<Tensor>& t) { return t.has_value() && has_tangent(*t); }

Tensor tangent(const Tensor& t) { return t.defined() ? t._fw_grad(/*level=*/0) : Tensor(); }

// The primal of a dual tensor (a view without its forward grad): what tangent formulas read, so
// that a tangent never carries a tangent of its own at the same level.
Tensor primal(const Tensor& t) { return has_tangent(t) ? t._fw_primal(/*level=*/0) : t; }

// Sum of the tangent terms that exist (undefined when none does).
Tensor add_terms(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return a + b;
}

// The tangent of an op f bilinear in (a, b): f(da, b) + f(a, db), a term for each argument that
// has a tangent (undefined when neither has).
template <typename F>
Tensor bilinear_tangent(const Tensor& a, const Tensor& b, const F& f) {
  Tensor t;
  if (has_tangent(a)) t = f(tangent(a), primal(b));
  if (has_tangent(b)) t = add_terms(t, f(primal(a), tangent(b)));
  return t;
}

void set_tangent(Tensor& out, const Tensor& t) {
  if (t.defined()) out._set_fw_grad(t, /*level=*/0, /*is_inplace_op=*/false);
}

// Runs a device kernel below autograd.
template <typename F>
Tensor below_autograd(F&& f) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return f();
}

// A backward node: the ops' saved inputs and their backward formula (Derived::backward).
template <typename Derived, int SAVED>
struct BackwardNode : torch::autograd::TraceableFunction {
  std::array<SavedVariable, SAVED> saved;

  std::string name() const override { return Derived::kName; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& v : saved) v.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list out(num_outputs());
    if (!grads[0].defined()) return out;  // no gradient flows: every input gets none
    std::array<Tensor, SAVED> unpacked;
    for (int i = 0; i < SAVED; ++i) unpacked[i] = saved[i].unpack(getptr());
    static_cast<Derived*>(this)->backward(grads[0], unpacked.data(), out);
    return out;
  }

  bool needs(size_t i) const { return task_should_compute_output(i); }
};

// Connects `out` to a new node of type N taking gradients for `inputs` (undefined ones get none)
// and saving `to_save`; returns the node, or nullptr when no input needs a gradient.
template <typename N, typename... Inputs>
c10::intrusive_ptr<N> make_node(std::initializer_list<Tensor> to_save, const Inputs&... inputs) {
  if (!torch::autograd::compute_requires_grad(inputs...)) return nullptr;
  auto node = c10::make_intrusive<N>();
  node->set_next_edges(torch::autograd::collect_next_edges(inputs...));
  int i = 0;
  for (const Tensor& t : to_save) node->saved[i++] = SavedVariable(t, /*is_output=*/false);
  return node;
}

template <typename N>
void connect(Tensor& out, const c10::intrusive_ptr<N>& node) {
  if (node) torch::autograd::set_history(out, node);
}

// True when the call has nothing to differentiate: the device kernel alone gives the answer.
template <typename... Ts>
bool nothing_to_differentiate(const Ts&... ts) {
  return !torch::autograd::compute_requires_grad(ts...) && !(has_tangent(ts) || ...);
}

// ---- conv_transpose2d ---------------------------------------------------------------------------

ConvParams conv_params(IntArrayRef stride, IntArrayRef padding, int64_t groups, IntArrayRef dilation) {
  return {Ints(stride.begin(), stride.end()), Ints(padding.begin(), padding.end()), groups,
          Ints(dilation.begin(), dilation.end())};
}

// grad as it is when dense in some layout, else a dense copy: channels_last when grad, x or w
// suggests it (the kernels then all take that layout), else contiguous. Batched gradients (vmap)
// and tensor subclasses pass as they are: their layout is not theirs to ask.
Tensor dense_for_conv(const Tensor& grad, const Tensor& x, const Tensor& w) {
  if (grad.dim() != 4 || grad.layout() != at::kStrided || grad.key_set().has_any(c10::functorch_transforms_ks) ||
      grad.key_set().has(c10::DispatchKey::Python))
    return grad;
  if (grad.is_contiguous() || grad.is_contiguous(at::MemoryFormat::ChannelsLast)) return grad;
  const bool cl = grad.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                  conv_memory_format(x, w) == at::MemoryFormat::ChannelsLast;
  return grad.contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

// y = T(x, w) + b.  dx = BI(dy, w), dw = BW(dy, x), db = BB(dy).
struct ConvTranspose2dBackward : BackwardNode<ConvTranspose2dBackward, 2> {
  static constexpr const char* kName = "tconv::ConvTranspose2dBackward";
  ConvParams p;
  void backward(const Tensor& grad, const Tensor* s, variable_list& out) {
    const Tensor &x = s[0], &w = s[1];
    // A gradient that is dense in neither layout (a channel slice of a torch.cat's gradient: every
    // U-Net up layer's) is made dense once here, in one layout for all three kernels, rather than
    // once per kernel: 64->32 k2 s2 at 2x64x64, all three gradients, 1.90 -> 1.27 ms (Zen 5).
    const Tensor gy = dense_for_conv(grad, x, w);
    if (needs(0)) out[0] = conv_backward_input(gy, w, p, spatial(x));
    if (needs(1)) out[1] = conv_backward_weight(gy, x, p, spatial(w));
    if (needs(2)) out[2] = conv_backward_bias(gy);
  }
};

Tensor conv_transpose2d_autograd(const Tensor& input, const Tensor& weight,
                                 const std::optional<Tensor>& bias, IntArrayRef stride,
                                 IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
                                 IntArrayRef dilation) {
  const ConvParams p = conv_params(stride, padding, groups, dilation);
  auto compute = [&] { return below_autograd([&] { return conv_transpose2d(input, weight, bias, p, output_padding); }); };
  const Tensor b = bias.has_value() ? *bias : Tensor();
  if (nothing_to_differentiate(input, weight, b)) return compute();
  auto node = make_node<ConvTranspose2dBackward>({input, weight}, input, weight, b);
  if (node) node->p = p;
  Tensor y = compute();
  connect(y, node);
  Tensor t = bilinear_tangent(input, weight, [&](const Tensor& x, const Tensor& w) {
    return conv_transpose2d(x, w, std::nullopt, p, output_padding);
  });
  if (has_tangent(b)) {
    const Tensor tb = tangent(b).view({1, -1, 1, 1});
    t = t.defined() ? t + tb : tb.expand_symint(y.sym_sizes());
  }
  set_tangent(y, t);
  return y;
}

// gx = BI(gy, w): bilinear.  d/dgy: T(g, w) sized like gy;  d/dw: BW(gy, g).
struct ConvBackwardInputBackward : BackwardNode<ConvBackwardInputBackward, 2> {
  static constexpr const char* kName = "tconv::ConvTranspose2dBackwardInputBackward";
  ConvParams p;
  void backward(const Tensor& g, const Tensor* s, variable_list& out) {
    const Tensor &gy = s[0], &w = s[1];
    if (needs(0))
      out[0] = conv_transpose2d(g, w, std::nullopt, p, output_padding_for(spatial(gy), spatial(g), spatial(w), p));
    if (needs(1)) out[1] = conv_backward_weight(gy, g, p, spatial(w));
  }
};

Tensor conv_backward_input_autograd(const Tensor& grad_output, const Tensor& weight, IntArrayRef stride,
                                    IntArrayRef padding, int64_t groups, IntArrayRef dilation,
                                    IntArrayRef input_hw) {
  const ConvParams p = conv_params(stride, padding, groups, dilation);
  auto compute = [&] { return below_autograd([&] { return conv_backward_input(grad_output, weight, p, input_hw); }); };
  if (nothing_to_differentiate(grad_output, weight)) return compute();
  auto node = make_node<ConvBackwardInputBackward>({grad_output, weight}, grad_output, weight);
  if (node) node->p = p;
  Tensor out = compute();
  connect(out, node);
  set_tangent(out, bilinear_tangent(grad_output, weight, [&](const Tensor& gy, const Tensor& w) {
                return conv_backward_input(gy, w, p, input_hw);
              }));
  return out;
}

// gw = BW(gy, x): bilinear.  d/dgy: T(x, g) sized like gy;  d/dx: BI(gy, g).
struct ConvBackwardWeightBackward : BackwardNode<ConvBackwardWeightBackward, 2> {
  static constexpr const char* kName = "tconv::ConvTranspose2dBackwardWeightBackward";
  ConvParams p;
  void backward(const Tensor& g, const Tensor* s, variable_list& out) {
    const Tensor &gy = s[0], &x = s[1];
    if (needs(0))
      out[0] = conv_transpose2d(x, g, std::nullopt, p, output_padding_for(spatial(gy), spatial(x), spatial(g), p));
    if (needs(1)) out[1] = conv_backward_input(gy, g, p, spatial(x));
  }
};

Tensor conv_backward_weight_autograd(const Tensor& grad_output, const Tensor& input, IntArrayRef kernel_hw,
                                     IntArrayRef stride, IntArrayRef padding, int64_t groups,
                                     IntArrayRef dilation) {
  const ConvParams p = conv_params(stride, padding, groups, dilation);
  auto compute = [&] { return below_autograd([&] { return conv_backward_weight(grad_output, input, p, kernel_hw); }); };
  if (nothing_to_differentiate(grad_output, input)) return compute();
  auto node = make_node<ConvBackwardWeightBackward>({grad_output, input}, grad_output, input);
  if (node) node->p = p;
  Tensor out = compute();
  connect(out, node);
  set_tangent(out, bilinear_tangent(grad_output, input, [&](const Tensor& gy, const Tensor& x) {
                return conv_backward_weight(gy, x, p, kernel_hw);
              }));
  return out;
}

// gb = BB(gy), the per-channel sum: linear; its adjoint broadcasts g over gy's shape.
struct ConvBackwardBiasBackward : BackwardNode<ConvBackwardBiasBackward, 0> {
  static constexpr const char* kName = "tconv::ConvTranspose2dBackwardBiasBackward";
  std::vector<c10::SymInt> shape;
  void backward(const Tensor& g, const Tensor*, variable_list& out) {
    if (needs(0)) out[0] = g.view({1, -1, 1, 1}).expand_symint(shape);
  }
};

Tensor conv_backward_bias_autograd(const Tensor& grad_output) {
  auto compute = [&] { return below_autograd([&] { return conv_backward_bias(grad_output); }); };
  if (nothing_to_differentiate(grad_output)) return compute();
  auto node = make_node<ConvBackwardBiasBackward>({}, grad_output);
  if (node) node->shape = grad_output.sym_sizes().vec();
  Tensor out = compute();
  connect(out, node);
  if (has_tangent(grad_output)) set_tangent(out, conv_backward_bias(tangent(grad_output)));
  return out;
}

// ---- upsampling -------------------------------------------------------------------------------

// y = A x (an upsampling op) or y = A^T x (its backward op); the derivative is the other one.
struct ResampleBackward : BackwardNode<ResampleBackward, 0> {
  static constexpr const char* kName = "tconv::UpsampleBackward";
  UpsampleParams p;
  bool adjoint;  // of the op this node differentiates: true for an upsampling op
  Ints input_hw;
  void backward(const Tensor& g, const Tensor*, variable_list& out) {
    if (needs(0)) out[0] = resample(g, input_hw, p, adjoint);
  }
};

template <Mode MODE, bool BACKWARD>
Tensor resample_autograd(const Tensor& x, IntArrayRef size, bool align_corners, bool antialias,
                         std::optional<double> scale_h, std::optional<double> scale_w) {
  const UpsampleParams p{MODE, align_corners, antialias, scale_h, scale_w};
  auto compute = [&] { return below_autograd([&] { return resample(x, size, p, BACKWARD); }); };
  if (nothing_to_differentiate(x)) return compute();
  auto node = make_node<ResampleBackward>({}, x);
  if (node) {
    node->p = p;
    node->adjoint = !BACKWARD;
    node->input_hw = spatial(x);
  }
  Tensor y = compute();
  connect(y, node);
  if (has_tangent(x)) set_tangent(y, resample(tangent(x), size, p, BACKWARD));
  return y;
}

// ---- Gram matrix ----------------------------------------------------------------------------------

// s (X dX^T + dX X^T): the tangent of G = s X X^T, exactly symmetric like G.
Tensor gram_tangent(const Tensor& x, const Tensor& dx, bool normalize) {
  const Tensor cross = at::matmul(dx, x.mT());
  return (cross + cross.mT()) * gram_scale(x, normalize);
}

// G = s X X^T.  dX = B(dG, X) = s (dG + dG^T) X.
struct GramBackward : BackwardNode<GramBackward, 1> {
  static constexpr const char* kName = "tconv::GramMatrixBackward";
  bool normalize;
  void backward(const Tensor& g, const Tensor* s, variable_list& out) {
    if (needs(0)) out[0] = gram_matrix_backward(g, s[0], normalize);
  }
};

Tensor gram_matrix_autograd(const Tensor& features, bool normalize) {
  auto compute = [&] { return below_autograd([&] { return gram_matrix(features, normalize); }); };
  if (nothing_to_differentiate(features)) return compute();
  auto node = make_node<GramBackward>({features}, features);
  if (node) node->normalize = normalize;
  Tensor g = compute();
  connect(g, node);
  if (has_tangent(features)) set_tangent(g, gram_tangent(primal(features), tangent(features), normalize));
  return g;
}

// dX = B(dG, X), linear in each argument:
//   d/dX  <H, B(dG, X)> = B(dG, H)                (s (dG + dG^T) is symmetric)
//   d/ddG <H, B(dG, X)> = s (H X^T + X H^T)
struct GramBackwardBackward : BackwardNode<GramBackwardBackward, 2> {
  static constexpr const char* kName = "tconv::GramMatrixBackwardBackward";
  bool normalize;
  void backward(const Tensor& h, const Tensor* s, variable_list& out) {
    const Tensor &gg = s[0], &x = s[1];
    if (needs(0)) out[0] = gram_tangent(x, h, normalize);
    if (needs(1)) out[1] = gram_matrix_backward(gg, h, normalize);
  }
};

Tensor gram_matrix_backward_autograd(const Tensor& grad_gram, const Tensor& features, bool normalize) {
  auto compute = [&] { return below_autograd([&] { return gram_matrix_backward(grad_gram, features, normalize); }); };
  if (nothing_to_differentiate(grad_gram, features)) return compute();
  auto node = make_node<GramBackwardBackward>({grad_gram, features}, grad_gram, features);
  if (node) node->normalize = normalize;
  Tensor out = compute();
  connect(out, node);
  set_tangent(out, bilinear_tangent(grad_gram, features, [&](const Tensor& gg, const Tensor& x) {
                return gram_matrix_backward(gg, x, normalize);
              }));
  return out;
}

// ---- pad_fold2d ------------------------------------------------------------------------------------

// y = P^T(x), the adjoint of F.pad(., pad, mode): linear.  dx = F.pad(dy, pad, mode) (ATen's op,
// differentiable: its backward is again P^T, through ATen's padding backward), tangent P^T(dx).
struct PadFoldBackward : BackwardNode<PadFoldBackward, 0> {
  static constexpr const char* kName = "tconv::PadFold2dBackward";
  Ints pad;
  std::string mode;
  void backward(const Tensor& g, const Tensor*, variable_list& out) {
    if (needs(0)) out[0] = at::pad(g, pad, mode);
  }
};

Tensor pad_fold2d_autograd(const Tensor& input, IntArrayRef pad, c10::string_view mode) {
  auto compute = [&] { return below_autograd([&] { return pad_fold2d(input, pad, mode); }); };
  if (nothing_to_differentiate(input)) return compute();
  auto node = make_node<PadFoldBackward>({}, input);
  if (node) {
    node->pad = Ints(pad.begin(), pad.end());
    node->mode = std::string(mode);
  }
  Tensor y = compute();
  connect(y, node);
  if (has_tangent(input)) set_tangent(y, pad_fold2d(tangent(input), pad, mode));
  return y;
}

// y = P^T(center, frame): pad_fold2d of the padded tensor given in pieces, linear in each. The
// adjoint of the pieces is F.pad(dy): dcenter = dy (F.pad's interior), each strip its part of the
// frame of F.pad(dy, pad, mode). Tangent: the op on the tangents (zeros for a piece without one).
struct PadFoldFrameBackward : BackwardNode<PadFoldFrameBackward, 0> {
  static constexpr const char* kName = "tconv::PadFold2dFrameBackward";
  Ints pad;
  std::string mode;
  void backward(const Tensor& g, const Tensor*, variable_list& out) {
    if (needs(0)) out[0] = g;
    if (!(needs(1) || needs(2) || needs(3) || needs(4))) return;
    const Tensor full = at::pad(g, pad, mode);
    const int64_t h = dim_size(g, 2), w = dim_size(g, 3);
    if (needs(1)) out[1] = full.narrow(2, 0, pad[2]);
    if (needs(2)) out[2] = full.narrow(2, pad[2] + h, pad[3]);
    if (needs(3)) out[3] = full.narrow(2, pad[2], h).narrow(3, 0, pad[0]);
    if (needs(4)) out[4] = full.narrow(2, pad[2], h).narrow(3, pad[0] + w, pad[1]);
  }
};

Tensor pad_fold2d_frame_autograd(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                                 const Tensor& right, IntArrayRef pad, c10::string_view mode) {
  auto compute = [&] {
    return below_autograd([&] { return pad_fold2d_frame(center, top, bottom, left, right, pad, mode); });
  };
  if (nothing_to_differentiate(center, top, bottom, left, right)) return compute();
  auto node = make_node<PadFoldFrameBackward>({}, center, top, bottom, left, right);
  if (node) {
    node->pad = Ints(pad.begin(), pad.end());
    node->mode = std::string(mode);
  }
  Tensor y = compute();
  connect(y, node);
  if (has_tangent(center) || has_tangent(top) || has_tangent(bottom) || has_tangent(left) || has_tangent(right)) {
    const auto tan = [](const Tensor& t) { return has_tangent(t) ? tangent(t) : at::zeros_like(t); };
    set_tangent(y, pad_fold2d_frame(tan(center), tan(top), tan(bottom), tan(left), tan(right), pad, mode));
  }
  return y;
}

// ---- upsample_taps2d --------------------------------------------------------------------------------

using TapsSig = Tensor(const Tensor&, const std::optional<Tensor>&, IntArrayRef, IntArrayRef, IntArrayRef,
                       c10::string_view, bool);
using TapsBackwardSig = Tensor(const Tensor&, IntArrayRef, IntArrayRef, IntArrayRef, c10::string_view, IntArrayRef);

struct TapsParams {
  Ints kernel, scale, padding, input_hw;
  std::string mode;
  bool channels_last;  // of the forward op's output
};

Tensor upsample_taps2d(const Tensor& taps, const std::optional<Tensor>& bias, const TapsParams& p) {
  static const auto op = find_op<TapsSig>("tconv::upsample_taps2d");
  return op.call(taps, bias, p.kernel, p.scale, p.padding, p.mode, p.channels_last);
}

Tensor upsample_taps2d_backward(const Tensor& grad, const TapsParams& p) {
  static const auto op = find_op<TapsBackwardSig>("tconv::upsample_taps2d_backward");
  return op.call(grad, p.kernel, p.scale, p.padding, p.mode, p.input_hw);
}

TapsParams taps_params(IntArrayRef kernel, IntArrayRef scale, IntArrayRef padding, c10::string_view mode,
                       IntArrayRef input_hw, bool channels_last) {
  return {Ints(kernel.begin(), kernel.end()), Ints(scale.begin(), scale.end()), Ints(padding.begin(), padding.end()),
          Ints(input_hw.begin(), input_hw.end()), std::string(mode), channels_last};
}

// y = U(taps) + b, U linear (its adjoint: the backward op).  dtaps = U^T(dy), db = sum of dy.
struct UpsampleTapsBackward : BackwardNode<UpsampleTapsBackward, 0> {
  static constexpr const char* kName = "tconv::UpsampleTaps2dBackward";
  TapsParams p;
  void backward(const Tensor& g, const Tensor*, variable_list& out) {
    if (needs(0)) out[0] = upsample_taps2d_backward(g, p);
    if (needs(1)) out[1] = g.sum({0, 2, 3});
  }
};

Tensor upsample_taps2d_autograd(const Tensor& taps, const std::optional<Tensor>& bias, IntArrayRef kernel,
                                IntArrayRef scale, IntArrayRef padding, c10::string_view mode, bool channels_last) {
  const Tensor b = bias.has_value() ? *bias : Tensor();
  const Ints hw = taps.dim() == 5 ? Ints{dim_size(taps, 3), dim_size(taps, 4)} : Ints{};
  const TapsParams p = taps_params(kernel, scale, padding, mode, hw, channels_last);
  auto compute = [&] { return below_autograd([&] { return upsample_taps2d(taps, bias, p); }); };
  if (nothing_to_differentiate(taps, b)) return compute();
  auto node = make_node<UpsampleTapsBackward>({}, taps, b);
  if (node) node->p = p;
  Tensor y = compute();
  connect(y, node);
  Tensor t;
  if (has_tangent(taps)) t = upsample_taps2d(tangent(taps), std::nullopt, p);
  if (has_tangent(b)) t = add_terms(t, tangent(b).view({1, -1, 1, 1}).expand(y.sizes()).contiguous());
  set_tangent(y, t);
  return y;
}

// dtaps = U^T(dy), linear: its derivative is U (no bias).
struct UpsampleTapsBackwardBackward : BackwardNode<UpsampleTapsBackwardBackward, 0> {
  static constexpr const char* kName = "tconv::UpsampleTaps2dBackwardBackward";
  TapsParams p;
  void backward(const Tensor& h, const Tensor*, variable_list& out) {
    if (needs(0)) out[0] = upsample_taps2d(h, std::nullopt, p);
  }
};

Tensor upsample_taps2d_backward_autograd(const Tensor& grad_output, IntArrayRef kernel, IntArrayRef scale,
                                         IntArrayRef padding, c10::string_view mode, IntArrayRef input_hw) {
  const TapsParams p = taps_params(kernel, scale, padding, mode, input_hw, /*channels_last=*/false);
  auto compute = [&] { return below_autograd([&] { return upsample_taps2d_backward(grad_output, p); }); };
  if (nothing_to_differentiate(grad_output)) return compute();
  auto node = make_node<UpsampleTapsBackwardBackward>({}, grad_output);
  if (node) node->p = p;
  Tensor out = compute();
  connect(out, node);
  if (has_tangent(grad_output)) set_tangent(out, upsample_taps2d_backward(tangent(grad_output), p));
  return out;
}

// ---- _upsample_conv2d_mixed --------------------------------------------------------------------------

using MixedSig = Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, IntArrayRef, IntArrayRef,
                        c10::string_view);
using MixedBackwardSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, IntArrayRef,
                                                    IntArrayRef, c10::string_view, std::array<bool, 2>);

Tensor upsample_conv2d_mixed(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, const TapsParams& p) {
  static const auto op = find_op<MixedSig>("tconv::_upsample_conv2d_mixed");
  return op.call(x, w, b, p.scale, p.padding, p.mode);
}

// Whether the banded backward op may take a tensor: a plain strided CPU tensor. A batched
// gradient (vmap over the backward, is_grads_batched) or a tensor subclass takes the composite,
// whose ops have batching rules.
bool plain_cpu(const Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.layout() == at::kStrided &&
         !t.key_set().has_any(c10::functorch_transforms_ks) && !t.key_set().has(c10::DispatchKey::Python);
}

// y = sum_a shift_a(Up(W_a x)) + b (Note [mix first]): bilinear in (x, w).  dx and dw come from the
// banded backward op (Note [banded backward]), which never holds the taps' gradient; where they
// must be differentiable themselves (create_graph) or the gradient is batched, from the
// composite's differentiable ops: G = U^T(dy), then the 1x1 convolution's backward ops with
// w_taps[c, a Cout + o] = w[o, c, a], as tconv/functional.py builds the taps. db = sum of dy.
struct UpsampleConvMixedBackward : BackwardNode<UpsampleConvMixedBackward, 2> {
  static constexpr const char* kName = "tconv::UpsampleConv2dMixedBackward";
  TapsParams p;
  void backward(const Tensor& gy, const Tensor* s, variable_list& out) {
    const Tensor &x = s[0], &w = s[1];
    if (needs(2)) out[2] = gy.sum({0, 2, 3});
    if (!needs(0) && !needs(1)) return;
    if (!at::GradMode::is_enabled() && plain_cpu(gy) && plain_cpu(x) && plain_cpu(w)) {
      static const auto op = find_op<MixedBackwardSig>("tconv::_upsample_conv2d_mixed_backward");
      auto [gx, gw] = op.call(gy, x, w, p.scale, p.padding, p.mode, {needs(0), needs(1)});
      if (needs(0)) out[0] = gx;
      if (needs(1)) out[1] = gw;
      return;
    }
    const int64_t cout = dim_size(w, 0), cin = dim_size(w, 1), kk = dim_size(w, 2) * dim_size(w, 3);
    const Tensor taps_grad = upsample_taps2d_backward(gy, p);  // (N, kh kw, Cout, H, W)
    const Tensor g = taps_grad.reshape({dim_size(taps_grad, 0), kk * cout, p.input_hw[0], p.input_hw[1]});
    const ConvParams one{{1, 1}, {0, 0}, 1, {1, 1}};
    if (needs(0)) {
      const Tensor w_taps = w.reshape({cout, cin, kk}).permute({1, 2, 0}).reshape({cin, kk * cout, 1, 1});
      out[0] = conv_backward_input(g, w_taps, one, spatial(x));
    }
    if (needs(1))
      out[1] = conv_backward_weight(g, x, one, {1, 1}).reshape({cin, kk, cout}).permute({2, 0, 1}).reshape(w.sizes());
  }
};

Tensor upsample_conv2d_mixed_autograd(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                                      IntArrayRef scale, IntArrayRef padding, c10::string_view mode) {
  const Tensor b = bias.has_value() ? *bias : Tensor();
  auto compute = [&] {
    return below_autograd([&] {
      static const auto op = find_op<MixedSig>("tconv::_upsample_conv2d_mixed");
      return op.call(input, weight, bias, scale, padding, mode);
    });
  };
  if (nothing_to_differentiate(input, weight, b) || input.dim() != 4 || weight.dim() != 4) return compute();
  const TapsParams p = taps_params({dim_size(weight, 2), dim_size(weight, 3)}, scale, padding, mode, spatial(input),
                                   /*channels_last=*/false);
  auto node = make_node<UpsampleConvMixedBackward>({input, weight}, input, weight, b);
  if (node) node->p = p;
  Tensor y = compute();
  connect(y, node);
  Tensor t = bilinear_tangent(input, weight, [&](const Tensor& x, const Tensor& w) {
    return upsample_conv2d_mixed(x, w, std::nullopt, p);
  });
  if (has_tangent(b)) {
    const Tensor tb = tangent(b).view({1, -1, 1, 1});
    t = t.defined() ? t + tb : tb.expand_symint(y.sym_sizes());
  }
  set_tangent(y, t);
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, Autograd, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_autograd);
  m.impl("conv_transpose2d_backward_input", &conv_backward_input_autograd);
  m.impl("conv_transpose2d_backward_weight", &conv_backward_weight_autograd);
  m.impl("conv_transpose2d_backward_bias", &conv_backward_bias_autograd);
  m.impl("upsample_bilinear2d", &resample_autograd<Mode::Bilinear, false>);
  m.impl("upsample_bilinear2d_backward", &resample_autograd<Mode::Bilinear, true>);
  m.impl("upsample_bicubic2d", &resample_autograd<Mode::Bicubic, false>);
  m.impl("upsample_bicubic2d_backward", &resample_autograd<Mode::Bicubic, true>);
  m.impl("gram_matrix", &gram_matrix_autograd);
  m.impl("gram_matrix_backward", &gram_matrix_backward_autograd);
  m.impl("pad_fold2d", &pad_fold2d_autograd);
  m.impl("pad_fold2d_frame", &pad_fold2d_frame_autograd);
  m.impl("upsample_taps2d", &upsample_taps2d_autograd);
  m.impl("upsample_taps2d_backward", &upsample_taps2d_backward_autograd);
  m.impl("_upsample_conv2d_mixed", &upsample_conv2d_mixed_autograd);
}

}  // namespace tconv::autograd
