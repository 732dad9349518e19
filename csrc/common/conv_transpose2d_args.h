// Argument checks and the derived geometry of one 2-D transposed convolution (host code, shared
// by the CPU and CUDA kernels). Messages and exception types follow PyTorch's own convolution.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <optional>

#include "common/checks.h"
#include "common/conv_transpose2d_shape.h"

namespace tconv {

struct ConvTranspose2dGeometry {
  int64_t N, Cin, H, W;             // input
  int64_t Cout, Ho, Wo;             // output
  int64_t kH, kW, groups, Cin_g, Cout_g;
  int64_t sh, sw, ph, pw, dh, dw;   // stride, padding, dilation
  // How many input offsets a cell reads, per axis: cell (qh, qw) reads input rows qh - off_h for
  // 0 <= off_h < cell_offsets_h, and columns likewise (common/conv_transpose2d_shape.h).
  int64_t cell_offsets_h, cell_offsets_w;
  // The cells that hold at least one output: rows qh_lo .. qh_lo + Qh - 1 (output rows) and
  // columns qw_lo .. qw_lo + Qw - 1 (output columns).
  int64_t qh_lo, Qh, qw_lo, Qw;

  // Multiply-adds of the forward (each input pixel times each tap and output channel of its
  // group), and likewise of each backward: the work measure of the CPU kernels' parallel loops.
  int64_t multiply_adds() const { return N * Cin * H * W * Cout_g * kH * kW; }
};

inline void check_pair(c10::IntArrayRef v, const char* name) {
  TORCH_CHECK(v.size() == 2, "expected ", name,
              " to be a single integer value or a list of 2 values to match the convolution "
              "dimensions, but got ", name, "=", v);
}

// Checks everything but the input/weight channel match and returns the geometry.
inline ConvTranspose2dGeometry conv_transpose2d_geometry(
    c10::IntArrayRef input_sizes, c10::IntArrayRef weight_sizes, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef output_padding, int64_t groups,
    c10::IntArrayRef dilation) {
  check_pair(stride, "stride");
  check_pair(padding, "padding");
  check_pair(output_padding, "output_padding");
  check_pair(dilation, "dilation");
  TORCH_CHECK(input_sizes.size() == 4,
              "Expected 3D (unbatched) or 4D (batched) input to conv_transpose2d, but got input of size: ",
              input_sizes);
  TORCH_CHECK(weight_sizes.size() == 4,
              "Expected 4D weight (in_channels, out_channels/groups, kH, kW) for conv_transpose2d, but got weight of size: ",
              weight_sizes);
  TORCH_CHECK(groups > 0, "non-positive groups is not supported");
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, "non-positive stride is not supported");
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, "non-positive dilation is not supported");
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, "negative padding is not supported");
  TORCH_CHECK(output_padding[0] >= 0 && output_padding[1] >= 0,
              "negative output_padding is not supported");
  for (int d = 0; d < 2; ++d) {
    TORCH_CHECK(output_padding[d] < stride[d] || output_padding[d] < dilation[d],
                "output padding must be smaller than either stride or dilation, but got "
                "output_padding=", output_padding, ", stride=", stride, ", dilation=", dilation);
  }
  TORCH_CHECK(weight_sizes[0] >= 1, "Given groups=", groups,
              ", expected weight to be at least 1 at dimension 0, but got weight of size ",
              weight_sizes, " instead");
  TORCH_CHECK(weight_sizes[0] % groups == 0, "Given groups=", groups,
              ", expected weight to be divisible by ", groups,
              " at dimension 0, but got weight of size ", weight_sizes, " instead");
  TORCH_CHECK(weight_sizes[2] > 0 && weight_sizes[3] > 0,
              "kernel size should be greater than zero, but got weight of size ", weight_sizes);
  TORCH_CHECK(input_sizes[1] == weight_sizes[0], "Given transposed=1, weight of size ",
              weight_sizes, ", expected input", input_sizes, " to have ", weight_sizes[0],
              " channels, but got ", input_sizes[1], " channels instead");
  TORCH_CHECK(input_sizes[2] > 0 && input_sizes[3] > 0,
              "Only zero batch or zero channel inputs are supported, but got input shape: ",
              input_sizes);

  ConvTranspose2dGeometry g{};
  g.N = input_sizes[0]; g.Cin = input_sizes[1]; g.H = input_sizes[2]; g.W = input_sizes[3];
  g.kH = weight_sizes[2]; g.kW = weight_sizes[3];
  g.groups = groups; g.Cin_g = g.Cin / groups; g.Cout_g = weight_sizes[1]; g.Cout = g.Cout_g * groups;
  g.sh = stride[0]; g.sw = stride[1]; g.ph = padding[0]; g.pw = padding[1];
  g.dh = dilation[0]; g.dw = dilation[1];
  g.Ho = conv_transpose_out_size(g.H, g.kH, g.sh, g.ph, output_padding[0], g.dh);
  g.Wo = conv_transpose_out_size(g.W, g.kW, g.sw, g.pw, output_padding[1], g.dw);
  // An empty batch may have an empty output plane (PyTorch returns (0, Cout, 0, Wo)); a negative
  // size is an error either way.
  const bool empty_ok = g.N == 0 && g.Ho >= 0 && g.Wo >= 0;
  TORCH_CHECK((g.Ho > 0 && g.Wo > 0) || empty_ok, "Given input size per channel: (", g.H, " x ", g.W,
              "). Calculated output size per channel: (", g.Ho, " x ", g.Wo,
              "). Output size is too small");
  g.cell_offsets_h = cell_offsets(g.kH, g.sh, g.dh);
  g.cell_offsets_w = cell_offsets(g.kW, g.sw, g.dw);
  g.qh_lo = floor_div(g.ph, g.sh);
  g.Qh = floor_div(g.Ho - 1 + g.ph, g.sh) - g.qh_lo + 1;
  g.qw_lo = floor_div(g.pw, g.sw);
  g.Qw = floor_div(g.Wo - 1 + g.pw, g.sw) - g.qw_lo + 1;
  return g;
}

inline void check_same_dtype_device(const at::Tensor& input, const at::Tensor& other,
                                    const char* what) {
  TORCH_CHECK(input.scalar_type() == other.scalar_type(), "Input type (", input.scalar_type(),
              ") and ", what, " type (", other.scalar_type(), ") should be the same");
  TORCH_CHECK(input.device() == other.device(), "Input (", input.device(), ") and ", what, " (",
              other.device(), ") should be on the same device");
}

inline void check_bias(const at::Tensor& input, const at::Tensor& bias, int64_t cout,
                       c10::IntArrayRef weight_sizes) {
  check_same_dtype_device(input, bias, "bias");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == cout, "Given transposed=1, weight of size ",
              weight_sizes, ", expected bias to be 1-dimensional with ", cout,
              " elements, but got bias of size ", bias.sizes(), " instead");
}

// Every check of the forward op's arguments (device-independent); returns the geometry.
inline ConvTranspose2dGeometry check_conv_transpose2d_args(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef output_padding,
    int64_t groups, c10::IntArrayRef dilation) {
  check_floating(input, "conv_transpose2d");
  check_same_dtype_device(input, weight, "weight");
  const ConvTranspose2dGeometry g = conv_transpose2d_geometry(
      input.sizes(), weight.sizes(), stride, padding, output_padding, groups, dilation);
  if (bias.has_value() && bias->defined()) check_bias(input, *bias, g.Cout, weight.sizes());
  return g;
}

// Like PyTorch's convolutions: channels_last output when the input or the weight is channels_last.
inline at::MemoryFormat conv_memory_format(const at::Tensor& input, const at::Tensor& weight) {
  const bool cl = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                  weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

}  // namespace tconv
