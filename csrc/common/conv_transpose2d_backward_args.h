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

}  // namespace tconv
