// tconv::conv_transpose1d and tconv::conv_transpose3d: CompositeImplicitAutograd kernels built on
// tconv::conv_transpose2d (called through the dispatcher) and plain ATen view/slice ops, so every
// device, autograd mode (reverse, forward, double backward), vmap, fake tensors and torch.compile
// come from the 2-D op: Note [1-D and 3-D ops as composites] (docs/ARCHITECTURE.md).
//
// 1-D: (N, C, L) is the 2-D op's (N, C, 1, L), the weight (Cin, Cout/g, 1, k), the H axis a
//      1-tap stride-1 axis.
// 3-D: Note [3-D depth cells] (below): per depth phase, one 2-D transposed convolution of the
//      depth cells whose input channels are the phase's taps' input slices, then the phases
//      stacked in depth order. Where that is not exact or not allowed (a non-finite weight; any
//      call but a plain eager CPU one) and for the k2 s2 layer: the depth taps folded into the
//      output channels: one 2-D transposed convolution of the N*D depth slices
//      (N*D, Cin, H, W) with the weight (Cin, Cout/g * kD, kH, kW) gives, per input slice id and
//      depth tap kd, the plane that lands on output slice od = id * sd - pd + kd * dd; those
//      planes are summed along depth in a fixed order (one strided slice addition per kd; no
//      index_add / scatter_add, which are atomics on CUDA). When kD == sd, pd == 0, dd == 1 and
//      opd == 0 (the k2 s2 U-Net layer) every output slice gets exactly one plane: the fold is
//      one permuting copy.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <utility>
#include <optional>
#include <sstream>
#include <vector>

#include "common/checks.h"
#include "cpu/dispatch.h"
#include "composite_buffers.h"
#include "common/int_math.h"

namespace tconv {
namespace {

using at::IntArrayRef;
using at::Tensor;

using ConvSig = Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, IntArrayRef,
                       IntArrayRef, IntArrayRef, int64_t, IntArrayRef);

Tensor tconv_conv_transpose2d(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
                        IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                        int64_t groups, IntArrayRef dilation) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv::conv_transpose2d", "")
                             .typed<ConvSig>();
  return op.call(x, w, b, stride, padding, output_padding, groups, dilation);
}

Tensor conv_backward_bias_2d(const Tensor& grad_output) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv::conv_transpose2d_backward_bias", "")
                             .typed<Tensor(const Tensor&)>();
  return op.call(grad_output);
}

// A size read one dimension at a time (as csrc/autograd.cpp does: sizes() of a traced tensor
// would specialise every dimension).
int64_t dim_size(const Tensor& t, int64_t d) { return t.sym_size(d).guard_int(__FILE__, __LINE__); }

std::vector<int64_t> sizes_of(const Tensor& t) {
  std::vector<int64_t> s(t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) s[d] = dim_size(t, d);
  return s;
}

void check_list(IntArrayRef v, size_t n, const char* name) {
  TORCH_CHECK(v.size() == n, "expected ", name, " to be a single integer value or a list of ", n,
              " values to match the convolution dimensions, but got ", name, "=", v);
}

// PyTorch's checks of a transposed convolution of `dims` spatial dimensions, with its messages,
// on the caller's shapes (before any reshaping). The dtype/device checks are the 2-D op's.
void check_conv_transpose_nd(const char* name, size_t dims, const Tensor& input,
                             const Tensor& weight, const std::optional<Tensor>& bias,
                             IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                             int64_t groups, IntArrayRef dilation) {
  const auto in = sizes_of(input);
  TORCH_CHECK(in.size() == dims + 2, "Expected ", dims + 1, "D (unbatched) or ", dims + 2,
              "D (batched) input to ", name, ", but got input of size: ", IntArrayRef(in));
  check_list(stride, dims, "stride");
  check_list(padding, dims, "padding");
  check_list(output_padding, dims, "output_padding");
  check_list(dilation, dims, "dilation");
  const auto ws = sizes_of(weight);
  TORCH_CHECK(ws.size() == dims + 2, "Expected ", dims + 2, "D weight (in_channels, "
              "out_channels/groups, kernel...) for ", name, ", but got weight of size: ",
              IntArrayRef(ws));
  check_floating(input, name);
  TORCH_CHECK(groups > 0, "non-positive groups is not supported");
  for (size_t d = 0; d < dims; ++d) {
    TORCH_CHECK(stride[d] > 0, "non-positive stride is not supported");
    TORCH_CHECK(dilation[d] > 0, "non-positive dilation is not supported");
    TORCH_CHECK(padding[d] >= 0, "negative padding is not supported");
    TORCH_CHECK(output_padding[d] >= 0, "negative output_padding is not supported");
    TORCH_CHECK(output_padding[d] < stride[d] || output_padding[d] < dilation[d],
                "output padding must be smaller than either stride or dilation, but got "
                "output_padding=", output_padding, ", stride=", stride, ", dilation=", dilation);
  }
  TORCH_CHECK(ws[0] >= 1, "Given groups=", groups,
              ", expected weight to be at least 1 at dimension 0, but got weight of size ",
              IntArrayRef(ws), " instead");
  TORCH_CHECK(ws[0] % groups == 0, "Given groups=", groups, ", expected weight to be divisible by ",
              groups, " at dimension 0, but got weight of size ", IntArrayRef(ws), " instead");
  for (size_t d = 0; d < dims; ++d)
    TORCH_CHECK(ws[d + 2] > 0, "kernel size should be greater than zero, but got weight of size ",
                IntArrayRef(ws));
  TORCH_CHECK(in[1] == ws[0], "Given transposed=1, weight of size ", IntArrayRef(ws),
              ", expected input", IntArrayRef(in), " to have ", ws[0], " channels, but got ", in[1],
              " channels instead");
  for (size_t d = 0; d < dims; ++d)
    TORCH_CHECK(in[d + 2] > 0, "Only zero batch or zero channel inputs are supported, but got "
                "input shape: ", IntArrayRef(in));
  if (bias.has_value() && bias->defined()) {
    const int64_t cout = ws[1] * groups;
    TORCH_CHECK(bias->dim() == 1 && dim_size(*bias, 0) == cout, "Given transposed=1, weight of size ",
                IntArrayRef(ws), ", expected bias to be 1-dimensional with ", cout,
                " elements, but got bias of size ", bias->sizes(), " instead");
  }
  std::vector<int64_t> out(dims);
  bool positive = true;
  for (size_t d = 0; d < dims; ++d) {
    out[d] = (in[d + 2] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (ws[d + 2] - 1) +
             output_padding[d] + 1;
    positive = positive && out[d] > 0;
  }
  if (!positive && !(in[0] == 0 && *std::min_element(out.begin(), out.end()) >= 0)) {
    std::ostringstream ins, outs;
    for (size_t d = 0; d < dims; ++d) {
      ins << (d ? " x " : "") << in[d + 2];
      outs << (d ? " x " : "") << out[d];
    }
    TORCH_CHECK(false, "Given input size per channel: (", ins.str(),
                "). Calculated output size per channel: (", outs.str(), "). Output size is too small");
  }
}

// Whether a tensor is differentiated: by autograd, or carrying a forward-mode tangent.
bool differentiated(const Tensor& t) {
  return (at::GradMode::is_enabled() && t.requires_grad()) || t._fw_grad(/*level=*/0).defined();
}

// ---- 1-D ------------------------------------------------------------------------------------------

Tensor conv_transpose1d(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                        IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                        int64_t groups, IntArrayRef dilation) {
  check_conv_transpose_nd("conv_transpose1d", 1, input, weight, bias, stride, padding,
                          output_padding, groups, dilation);
  const int64_t s[2] = {1, stride[0]}, p[2] = {0, padding[0]}, op[2] = {0, output_padding[0]},
                d[2] = {1, dilation[0]};
  return tconv_conv_transpose2d(input.unsqueeze(2), weight.unsqueeze(2), bias, s, p, op, groups, d)
      .squeeze(2);
}

// ---- 3-D ------------------------------------------------------------------------------------------

// Note [3-D depth cells]: the depth taps as input channels. Output slice od reads input slice
// id = q - off through depth tap kd, where od + pd = q * sd + r (cell q, phase r) and
// kd * dd = off * sd + r. So for each depth phase r, one 2-D transposed convolution of the cells
// q (a batch of N * Q_r images) whose input channels are (group, tap of the phase, ci): the input
// slices q - off side by side (zero slices where q - off lies outside the input), and whose weight
// rows are the taps' weight planes, gives every output slice of the phase whole, bias included,
// with no sum along depth afterwards. Its reduction is taps * Cin deep instead of Cin: the
// 64->32 k4 s2 p1 layer's GEMMs reduce over 128 instead of 64 and the 32->32 k3 s1 layer's over
// 96 instead of 32, where the BLAS runs near its rate, and the intermediate is the input times
// the taps instead of the output times kD. The phases' slices are then stacked in depth order
// (one copy). The zero slices at the borders are the only extra multiply-adds
// ((Q_r * taps - real) / real: 6% on 16 slices with 2 taps a phase).
// Where the depth cells give PyTorch's result exactly: a plain eager CPU call (no torch.func
// transform, which hands the composite unwrapped tensors while it is active; no fake tensor:
// the check below reads the weight) with a finite weight. The zero slices at the depth borders
// multiply weights that PyTorch's sum never reads, so a NaN or Inf there would put NaN where
// PyTorch has none (Note [NaN/Inf]): such calls take the fold below instead.
// A plain eager CPU call (plain_cpu_call) outside a torch.func transform (which hands a composite
// unwrapped tensors while it is active).
bool plain_eager_cpu_call(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias) {
  return tconv::plain_eager_cpu_call({&input, &weight, bias.has_value() ? &*bias : nullptr});
}

bool depth_cells_exact(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias) {
  if (!plain_eager_cpu_call(input, weight, bias)) return false;
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // a check, not part of the graph
  return at::isfinite(weight).all().item<bool>();
}

Tensor conv_transpose3d_depth_cells(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                                    IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                                    int64_t groups, IntArrayRef dilation, bool cl_in, bool cl) {
  const int64_t N = dim_size(input, 0), Cin = dim_size(input, 1), D = dim_size(input, 2),
                H = dim_size(input, 3), W = dim_size(input, 4);
  const int64_t Cout_g = dim_size(weight, 1), kD = dim_size(weight, 2), kH = dim_size(weight, 3),
                kW = dim_size(weight, 4);
  const int64_t Cin_g = Cin / groups, Cout = Cout_g * groups;
  const int64_t sd = stride[0], pd = padding[0], dd = dilation[0], opd = output_padding[0];
  const int64_t Do = (D - 1) * sd - 2 * pd + dd * (kD - 1) + opd + 1;
  const int64_t Ho = (H - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kH - 1) + output_padding[1] + 1;
  const int64_t Wo = (W - 1) * stride[2] - 2 * padding[2] + dilation[2] * (kW - 1) + output_padding[2] + 1;
  const int64_t s2[2] = {stride[1], stride[2]}, p2[2] = {padding[1], padding[2]},
                op2[2] = {output_padding[1], output_padding[2]}, d2[2] = {dilation[1], dilation[2]};
  // (N, groups, Cin_g, D, H, W) in the input's memory order, and the weight by group.
  const Tensor xg = input.reshape({N, groups, Cin_g, D, H, W});
  const Tensor wg = weight.reshape({groups, Cin_g, Cout_g, kD, kH, kW});
  const bool has_bias = bias.has_value() && bias->defined();
  // A call that neither autograd mode differentiates writes its intermediate and result into
  // output-cache buffers (composite_buffers.h); otherwise functional ops only (a copy_ into a
  // buffer would record a CopySlices node per slab).
  const bool buffers = !differentiated(input) && !differentiated(weight) && !(has_bias && differentiated(*bias));

  // Per phase r: Y_r (N, Q_r, Cout, Ho, Wo), its first cell q_lo[r]; empty where no tap has the phase.
  std::vector<Tensor> Y(sd);
  std::vector<int64_t> q_lo(sd, 0);
  for (int64_t r = 0; r < sd; ++r) {
    // output slices od = q * sd + r - pd in [0, Do)
    q_lo[r] = ceil_div(std::max<int64_t>(pd - r, 0), sd);
    const int64_t q_hi = Do - 1 + pd - r >= 0 ? floor_div(Do - 1 + pd - r, sd) + 1 : 0;
    const int64_t Q = q_hi - q_lo[r];
    std::vector<int64_t> kds, offs;
    for (int64_t kd = 0; kd < kD; ++kd)
      if (kd * dd % sd == r) {
        kds.push_back(kd);
        offs.push_back(kd * dd / sd);
      }
    if (Q <= 0 || kds.empty()) continue;
    const int64_t T = static_cast<int64_t>(kds.size());
    // weight rows (group, tap, ci): (groups, T, Cin_g, Cout_g, kH, kW)
    std::vector<Tensor> tap_weights;  // stack, not index_select: no index tensor to build (torch.func)
    for (const int64_t kd : kds) tap_weights.push_back(wg.select(3, kd));
    const Tensor w2 = at::stack(tap_weights, 1).reshape({groups * T * Cin_g, Cout_g, kH, kW});
    const std::vector<int64_t> x2_mem = cl_in ? std::vector<int64_t>{N, Q, H, W, groups, T, Cin_g}
                                              : std::vector<int64_t>{N, Q, groups, T, Cin_g, H, W};
    const int64_t tap_dim = cl_in ? 5 : 3;
    const auto as_images = [&](const Tensor& mem) {  // x2_mem -> (N * Q, T * Cin, H, W)
      return cl_in ? mem.view({N * Q, H, W, groups * T * Cin_g}).permute({0, 3, 1, 2})
                   : mem.view({N * Q, groups * T * Cin_g, H, W});
    };
    const auto in_x2_order = [&](const Tensor& slab) {  // (N, groups, Cin_g, Q', H, W) -> x2_mem order less tap
      return cl_in ? slab.permute({0, 3, 4, 5, 1, 2}) : slab.permute({0, 3, 1, 2, 4, 5});
    };
    if (buffers) {
      // The slabs copied into one output-cache buffer (composite_buffers.h); cells whose slice
      // q - off lies outside the input are zero-filled.
      const Tensor mem = cached_buffer(x2_mem, input);
      for (int64_t t = 0; t < T; ++t) {
        const Tensor dst = mem.select(tap_dim, t);  // (N, Q, ...) less the tap
        const int64_t j_lo = std::clamp<int64_t>(offs[t] - q_lo[r], 0, Q);
        const int64_t j_hi = std::clamp<int64_t>(D + offs[t] - q_lo[r], j_lo, Q);
        if (j_lo > 0) dst.narrow(1, 0, j_lo).zero_();
        if (j_hi < Q) dst.narrow(1, j_hi, Q - j_hi).zero_();
        if (j_hi > j_lo) dst.narrow(1, j_lo, j_hi - j_lo).copy_(in_x2_order(xg.narrow(3, q_lo[r] + j_lo - offs[t], j_hi - j_lo)));
      }
      Y[r] = tconv_conv_transpose2d(as_images(mem), w2, bias, s2, p2, op2, groups, d2).view({N, Q, Cout, Ho, Wo});
      continue;
    }
    // Input slices q - off for q in [q_lo, q_hi): zero-padded along depth where outside.
    const int64_t pad_lo = std::max<int64_t>(*std::max_element(offs.begin(), offs.end()) - q_lo[r], 0);
    const int64_t pad_hi = std::max<int64_t>(q_hi - 1 - *std::min_element(offs.begin(), offs.end()) - (D - 1), 0);
    const Tensor xp = pad_lo > 0 || pad_hi > 0 ? at::constant_pad_nd(xg, {0, 0, 0, 0, pad_lo, pad_hi}) : xg;
    std::vector<Tensor> slabs;  // (N, Q, groups, 1, Cin_g, H, W) or (N, Q, H, W, groups, 1, Cin_g)
    for (const int64_t off : offs)
      slabs.push_back(in_x2_order(xp.narrow(3, q_lo[r] - off + pad_lo, Q)).unsqueeze(tap_dim));
    const Tensor y2 = tconv_conv_transpose2d(as_images(at::cat(slabs, tap_dim)), w2, bias, s2, p2, op2, groups, d2);
    Y[r] = y2.view({N, Q, Cout, Ho, Wo});
  }
  // The output in memory order ((N, Do, Ho, Wo, Cout) for channels_last_3d, else
  // (N, Cout, Do, Ho, Wo)), written by one copy. Output slice od = u * sd + v of phase r =
  // (v + pd) % sd is Y_r's cell u + (v + pd) / sd - q_lo[r].
  // The result's type is the 2-D op's (bfloat16 under autocast).
  at::TensorOptions out_options = input.options();
  for (const Tensor& y : Y)
    if (y.defined()) out_options = y.options();
  const auto phase_slices = [&](int64_t v) {  // (N, U_v, Cout, Ho, Wo): the slices od = u * sd + v
    const int64_t r = (v + pd) % sd, U = Do > v ? ceil_div(Do - v, sd) : 0;
    if (Y[r].defined()) {
      // (No narrow of all of Y_r: its backward would build a zero-filled Y_r-sized gradient
      // and copy the slices' into it.)
      const int64_t first = (v + pd) / sd - q_lo[r];
      return first == 0 && U == dim_size(Y[r], 1) ? Y[r] : Y[r].narrow(1, first, U);
    }
    const Tensor blank = has_bias ? bias->view({1, 1, Cout, 1, 1}).to(out_options.dtype())
                                  : at::zeros({1, 1, 1, 1, 1}, out_options);
    return blank.expand({N, U, Cout, Ho, Wo});
  };
  const auto in_memory_order = [&](const Tensor& t) {  // (N, U, Cout, Ho, Wo) -> memory order
    return cl ? t.permute({0, 1, 3, 4, 2}) : t.permute({0, 2, 1, 3, 4});
  };
  const int64_t dep = cl ? 1 : 2;
  std::vector<int64_t> mem_sizes = cl ? std::vector<int64_t>{N, Do, Ho, Wo, Cout}
                                      : std::vector<int64_t>{N, Cout, Do, Ho, Wo};
  Tensor mem;
  if (buffers) {
    mem = cpu::empty_output(mem_sizes, out_options);
    for (int64_t v = 0; v < std::min(sd, Do); ++v)
      mem.slice(dep, v, Do, sd).copy_(in_memory_order(phase_slices(v)));
  } else if (Do % sd == 0) {
    // Every phase has Do / sd slices: stacked after depth, they interleave into depth order.
    std::vector<Tensor> phases;
    for (int64_t v = 0; v < sd; ++v) phases.push_back(in_memory_order(phase_slices(v)));
    // contiguous(): cat and stack may give channels_last_3d from channels_last inputs (no copy otherwise)
    mem = at::stack(phases, dep + 1).contiguous().view(mem_sizes);
  } else {
    // Slice by slice; unbind, not select: its backward stacks the slices' gradients once, where
    // select's would build a zero-filled Y-sized gradient per slice.
    std::vector<std::vector<Tensor>> unbound(sd);
    for (int64_t v = 0; v < sd; ++v) unbound[v] = at::unbind(in_memory_order(phase_slices(v)), dep);
    std::vector<Tensor> slices;
    slices.reserve(Do);
    for (int64_t od = 0; od < Do; ++od) slices.push_back(unbound[od % sd][od / sd].unsqueeze(dep));
    mem = at::cat(slices, dep).contiguous();
  }
  return cl ? mem.permute({0, 4, 1, 2, 3}) : mem;
}

// The composite over the 2-D op (Note [1-D and 3-D ops as composites]): every device, type and
// autograd mode. The caller has checked the arguments; cl_in, cl: the input's and the output's
// layout (channels_last_3d).
Tensor conv_transpose3d_composite(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                                  IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                                  int64_t groups, IntArrayRef dilation, bool cl_in, bool cl) {
  const int64_t N = dim_size(input, 0), Cin = dim_size(input, 1), D = dim_size(input, 2),
                H = dim_size(input, 3), W = dim_size(input, 4);
  const int64_t Cout_g = dim_size(weight, 1), kD = dim_size(weight, 2), kH = dim_size(weight, 3),
                kW = dim_size(weight, 4);
  const int64_t Cout = Cout_g * groups;
  const int64_t sd = stride[0], pd = padding[0], dd = dilation[0], opd = output_padding[0];
  const int64_t Do = (D - 1) * sd - 2 * pd + dd * (kD - 1) + opd + 1;
  const bool has_bias = bias.has_value() && bias->defined();
  const bool one_plane = kD == sd && pd == 0 && dd == 1 && opd == 0;
  if (!one_plane && depth_cells_exact(input, weight, bias))  // Note [3-D depth cells]
    return conv_transpose3d_depth_cells(input, weight, bias, stride, padding, output_padding, groups, dilation,
                                        cl_in, cl);
  const bool plain = plain_cpu_call({&input, &weight, bias.has_value() ? &*bias : nullptr});
  // The N*D depth slices as a batch of 2-D images: a free view of channels_last_3d data (it
  // becomes channels_last 2-D), one copy of contiguous data.
  Tensor x;
  if (plain && !cl_in) {
    x = cached_buffer({N, D, Cin, H, W}, input);
    x.copy_(input.permute({0, 2, 1, 3, 4}));
    x = x.view({N * D, Cin, H, W});
  } else {
    x = input.permute({0, 2, 1, 3, 4}).reshape({N * D, Cin, H, W});
  }
  // (Cin, Cout_g, kD, kH, kW) -> (Cin, Cout_g * kD, kH, kW): output channel co * kD + kd of the
  // 2-D op is channel co, depth tap kd (group j's channels j * Cout_g * kD ... stay together).
  const Tensor w = weight.reshape({Cin, Cout_g * kD, kH, kW});
  const int64_t s2[2] = {stride[1], stride[2]}, p2[2] = {padding[1], padding[2]},
                op2[2] = {output_padding[1], output_padding[2]}, d2[2] = {dilation[1], dilation[2]};
  const Tensor planes = tconv_conv_transpose2d(x, w, std::nullopt, s2, p2, op2, groups, d2);
  const int64_t Ho = dim_size(planes, 2), Wo = dim_size(planes, 3);
  // (N, D, Cout, kD, Ho, Wo), whatever the 2-D op's memory format.
  const Tensor y = planes.view({N, D, Cout, kD, Ho, Wo});

  // The fold, in the output's memory order: `mem` holds the output with depth at dimension `dep`
  // ((N, Do, Ho, Wo, Cout) for channels_last_3d, else (N, Cout, Do, Ho, Wo)), and `tap(kd)` is
  // the (.., D, ..) planes of depth tap kd in the same order.
  const std::vector<int64_t> mem_sizes = cl ? std::vector<int64_t>{N, Do, Ho, Wo, Cout}
                                            : std::vector<int64_t>{N, Cout, Do, Ho, Wo};
  const int64_t dep = cl ? 1 : 2;
  // unbind, not select: its backward stacks the kD gradients once, where select's would build a
  // zero-filled y-sized gradient per tap.
  const auto taps = one_plane ? std::vector<Tensor>{} : at::unbind(y, 3);
  const auto tap = [&](int64_t kd) {
    return cl ? taps[kd].permute({0, 1, 3, 4, 2}) : taps[kd].permute({0, 2, 1, 3, 4});
  };
  const Tensor bias_mem = has_bias ? (cl ? bias->view({1, 1, 1, 1, Cout}) : bias->view({1, Cout, 1, 1, 1}))
                                   : Tensor();
  Tensor mem;
  if (one_plane) {
    // Each output slice od = id * kD + kd gets one plane: one permuting copy. (The bias stays out
    // of the 2-D op: its bias gradient over the Cout * kD planes cost 3 ms more in the k2 s2
    // layer's backward than the 0.3 ms add below saves.)
    const Tensor perm = cl ? y.permute({0, 1, 3, 4, 5, 2}) : y.permute({0, 2, 1, 3, 4, 5});
    if (plain) {
      mem = cached_buffer(mem_sizes, y);
      mem.view(perm.sizes()).copy_(perm);
      if (has_bias) mem.add_(bias_mem);
    } else {
      mem = perm.contiguous().view(mem_sizes);
      if (has_bias) mem = mem + bias_mem;
    }
  } else {
    // A fixed-order sum: the bias (or zeros), then one strided slice addition per depth tap.
    if (plain) {
      mem = cached_buffer(mem_sizes, y);
      if (has_bias) mem.copy_(bias_mem.expand(mem_sizes));
      else mem.zero_();
    } else {
      // new_zeros: under vmap a batched tensor when y is, so the in-place sums below are legal.
      mem = y.new_zeros(mem_sizes);
    }
    for (int64_t kd = 0; kd < kD; ++kd) {
      const int64_t offset = kd * dd - pd;  // od = id * sd + offset
      const int64_t id_lo = offset >= 0 ? 0 : ceil_div(-offset, sd);
      const int64_t id_hi = Do - 1 - offset >= 0 ? std::min(D, floor_div(Do - 1 - offset, sd) + 1) : 0;
      if (id_hi <= id_lo) continue;
      const int64_t od_lo = id_lo * sd + offset;
      mem.slice(dep, od_lo, od_lo + (id_hi - id_lo - 1) * sd + 1, sd)
          .add_(tap(kd).slice(dep, id_lo, id_hi));
    }
    if (has_bias && !plain) mem = mem + bias_mem;
  }
  const Tensor acc = cl ? mem.permute({0, 4, 1, 2, 3}) : mem;
  return acc;
}

// ---- 3-D on the CPU kernels --------------------------------------------------------------------

// A plain eager CPU call outside autocast (whose 2-D op computes in bfloat16) and forward-mode AD:
// the CPU kernels may serve it (Note [3-D transposed convolution]; they check the types).
bool kernels_may_serve(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias) {
  return cpu_kernels_may_serve({&input, &weight, bias.has_value() ? &*bias : nullptr});
}

// The backward of a conv_transpose3d the CPU kernels computed: grad_input and grad_weight by the
// kernels where they serve, the bias gradient by the 2-D op's; where they do not, and when the
// gradients are differentiated themselves (create_graph: double backward), through the
// composite's graph (torch::autograd::grad of the same call, reentrant), whose every op
// differentiates.
struct ConvTranspose3dBackward : torch::autograd::TraceableFunction {
  torch::autograd::SavedVariable input, weight, bias;
  bool has_bias = false, cl_in = false, cl = false;
  std::vector<int64_t> stride, padding, output_padding, dilation;
  int64_t groups = 1;

  std::string name() const override { return "tconv::ConvTranspose3dBackward"; }
  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    input.reset_data();
    weight.reset_data();
    bias.reset_data();
  }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    torch::autograd::variable_list out(3);
    const Tensor& gy = grads[0];
    if (!gy.defined()) return out;
    const Tensor x = input.unpack(getptr()), w = weight.unpack(getptr());
    const Tensor b = has_bias ? bias.unpack(getptr()) : Tensor();
    const bool need[3] = {task_should_compute_output(0), task_should_compute_output(1),
                          has_bias && task_should_compute_output(2)};
    if (!at::GradMode::is_enabled() && plain_cpu_call({&gy})) {
      // A gradient dense in neither layout (a channel slice of torch.cat's gradient: a 3-D U-Net's
      // up layers) made dense once, in the kernels' layout, for all three (as ConvTranspose2dBackward).
      const auto fmt = cl ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
      const Tensor g = gy.dim() == 5 && !gy.is_contiguous() && !gy.is_contiguous(at::MemoryFormat::ChannelsLast3d)
                           ? gy.contiguous(fmt)
                           : gy;
      std::optional<Tensor> gx, gw;
      if (need[0]) gx = cpu::conv_transpose3d_backward_input(g, w, stride, padding, groups, dilation, x.sizes(), cl);
      if (need[1]) gw = cpu::conv_transpose3d_backward_weight(g, x, w.sizes(), stride, padding, groups, dilation, cl);
      if ((!need[0] || gx) && (!need[1] || gw)) {
        if (need[0]) out[0] = *gx;
        if (need[1]) out[1] = *gw;
        if (need[2])  // (N, C, D * H, W): a view of either layout
          out[2] = conv_backward_bias_2d(g.reshape({g.size(0), g.size(1), g.size(2) * g.size(3), g.size(4)}));
        return out;
      }
    }
    const bool create_graph = at::GradMode::is_enabled();
    at::AutoGradMode enable_grad(true);
    // create_graph: the gradients as functions of the saved tensors and gy; else of detached copies.
    const auto leaf = [&](const Tensor& t, bool needed) { return create_graph ? t : t.detach().requires_grad_(needed); };
    const Tensor xr = leaf(x, need[0]), wr = leaf(w, need[1]), br = has_bias ? leaf(b, need[2]) : Tensor();
    const Tensor y = conv_transpose3d_composite(xr, wr, has_bias ? std::optional<Tensor>(br) : std::nullopt, stride,
                                                padding, output_padding, groups, dilation, cl_in, cl);
    std::vector<Tensor> inputs;
    for (const auto& [t, needed] : {std::pair{xr, need[0]}, std::pair{wr, need[1]}, std::pair{br, need[2]}})
      if (needed) inputs.push_back(t);
    const auto g = torch::autograd::grad({y}, inputs, {gy}, /*retain_graph=*/create_graph, create_graph,
                                         /*allow_unused=*/true);
    for (size_t i = 0, j = 0; i < 3; ++i)
      if (need[i]) out[i] = g[j++];
    return out;
  }
};

Tensor conv_transpose3d(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                        IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                        int64_t groups, IntArrayRef dilation) {
  check_conv_transpose_nd("conv_transpose3d", 3, input, weight, bias, stride, padding,
                          output_padding, groups, dilation);
  const bool cl_in = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d;
  // The output's memory format is PyTorch's on the CPU: channels_last_3d when the input or the
  // weight is and the type is one oneDNN takes (float32, bfloat16), else contiguous.
  const bool cl = (cl_in || weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d) &&
                  (input.scalar_type() == at::kFloat || input.scalar_type() == at::kBFloat16);
  if (kernels_may_serve(input, weight, bias)) {
    std::optional<Tensor> y;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      y = cpu::conv_transpose3d_forward(input, weight, bias, stride, padding, output_padding, groups, dilation, cl);
    }
    if (y) {
      const Tensor b = bias.has_value() ? *bias : Tensor();
      if (torch::autograd::compute_requires_grad(input, weight, b)) {
        auto node = c10::make_intrusive<ConvTranspose3dBackward>();
        node->set_next_edges(torch::autograd::collect_next_edges(input, weight, b));
        node->input = torch::autograd::SavedVariable(input, /*is_output=*/false);
        node->weight = torch::autograd::SavedVariable(weight, /*is_output=*/false);
        node->has_bias = b.defined();
        if (b.defined()) node->bias = torch::autograd::SavedVariable(b, /*is_output=*/false);
        node->stride = stride.vec(), node->padding = padding.vec(), node->output_padding = output_padding.vec();
        node->dilation = dilation.vec(), node->groups = groups, node->cl_in = cl_in, node->cl = cl;
        torch::autograd::set_history(*y, node);
      }
      return *y;
    }
  }
  return conv_transpose3d_composite(input, weight, bias, stride, padding, output_padding, groups, dilation, cl_in, cl);
}

void register_kernels(torch::Library& m) {
  m.impl("conv_transpose1d", &conv_transpose1d);
  m.impl("conv_transpose3d", &conv_transpose3d);
}

}  // namespace

TCONV_REGISTER_COMPOSITES(register_kernels)

}  // namespace tconv
