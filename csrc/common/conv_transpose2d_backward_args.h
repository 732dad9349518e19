// Geometry of the transposed convolution whose output is grad_output (host code, shared by the
// CPU and CUDA backward kernels). output_padding is not an argument of the backward ops: it is
// whatever makes the forward output match grad_output.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common/conv_transpose2d_args.h"

namespace tconv {

inline ConvTranspose2dGeometry backward_geometry(const at::Tensor& grad_output,
                                                 c10::IntArrayRef input_sizes,
                                                 c10::IntArrayRef weight_sizes,
                                                 c10::IntArrayRef stride, c10::IntArrayRef padding,
                                                 int64_t groups, c10::IntArrayRef dilation) {
  TORCH_CHECK(grad_output.dim() == 4, "conv_transpose2d backward: expected 4-D grad_output, got ",
              grad_output.sizes());
  check_pair(stride, "stride");
  check_pair(padding, "padding");
  check_pair(dilation, "dilation");
  const int64_t op_h = grad_output.size(2) - conv_transpose_out_size(input_sizes[2], weight_sizes[2], stride[0], padding[0], 0, dilation[0]);
  const int64_t op_w = grad_output.size(3) - conv_transpose_out_size(input_sizes[3], weight_sizes[3], stride[1], padding[1], 0, dilation[1]);
  const ConvTranspose2dGeometry g = conv_transpose2d_geometry(
      input_sizes, weight_sizes, stride, padding, {op_h, op_w}, groups, dilation);
  TORCH_CHECK(grad_output.size(0) == g.N && grad_output.size(1) == g.Cout,
              "conv_transpose2d backward: grad_output of size ", grad_output.sizes(),
              " does not match input ", input_sizes, " and weight ", weight_sizes);
  return g;
}

// Checks of conv_transpose2d_backward_input's arguments; returns the geometry.
inline ConvTranspose2dGeometry check_backward_input_args(
    const at::Tensor& grad_output, const at::Tensor& weight, c10::IntArrayRef stride,
    c10::IntArrayRef padding, int64_t groups, c10::IntArrayRef dilation,
    c10::IntArrayRef input_hw) {
  check_floating(grad_output, "conv_transpose2d_backward_input");
  check_same_dtype_device(grad_output, weight, "weight");
  TORCH_CHECK(weight.dim() == 4 && input_hw.size() == 2,
              "conv_transpose2d_backward_input: expected 4-D weight and input_hw of 2 values");
  return backward_geometry(
      grad_output, {grad_output.size(0), weight.size(0), input_hw[0], input_hw[1]}, weight.sizes(),
      stride, padding, groups, dilation);
}

// Checks of conv_transpose2d_backward_weight's arguments; returns the geometry (the weight's
// sizes are (Cin, Cout_g, kH, kW)).
inline ConvTranspose2dGeometry check_backward_weight_args(
    const at::Tensor& grad_output, const at::Tensor& input, c10::IntArrayRef kernel_hw,
    c10::IntArrayRef stride, c10::IntArrayRef padding, int64_t groups, c10::IntArrayRef dilation) {
  check_floating(grad_output, "conv_transpose2d_backward_weight");
  check_same_dtype_device(grad_output, input, "input");
  TORCH_CHECK(input.dim() == 4 && kernel_hw.size() == 2,
              "conv_transpose2d_backward_weight: expected 4-D input and kernel_hw of 2 values");
  TORCH_CHECK(groups > 0 && grad_output.dim() == 4 && grad_output.size(1) % groups == 0,
              "conv_transpose2d_backward_weight: grad_output channels ", grad_output.sizes(),
              " not divisible by groups=", groups);
  return backward_geometry(grad_output, input.sizes(),
                           {input.size(1), grad_output.size(1) / groups, kernel_hw[0], kernel_hw[1]},
                           stride, padding, groups, dilation);
}

inline void check_backward_bias_args(const at::Tensor& grad_output) {
  check_floating(grad_output, "conv_transpose2d_backward_bias");
  TORCH_CHECK(grad_output.dim() == 4, "conv_transpose2d_backward_bias: expected 4-D grad_output, got ",
              grad_output.sizes());
}

}  // namespace tconv
