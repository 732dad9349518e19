// Which build of the CPU kernels runs (cpu/dispatch.cpp): tconv.cpu_capability() in Python.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace tconv::cpu {

enum class CpuCapability { DEFAULT, AVX2, AVX512 };

CpuCapability cpu_capability();
const char* cpu_capability_name();  // "default", "avx2" or "avx512"

// conv_transpose3d's forward on the CPU kernels where they serve it (Note [3-D transposed
// convolution], cpu/conv_transpose3d.cpp), else nothing: the composite (csrc/conv_transpose_nd.cpp)
// calls it on plain eager calls that no autograd mode differentiates. channels_last: the output's
// memory format.
std::optional<at::Tensor> conv_transpose3d_forward(const at::Tensor& input, const at::Tensor& weight,
                                                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                                   at::IntArrayRef padding, at::IntArrayRef output_padding,
                                                   int64_t groups, at::IntArrayRef dilation, bool channels_last);
// Its gradients likewise (the composite's node for plain eager calls, csrc/conv_transpose_nd.cpp):
// grad_input in input_sizes, grad_weight in weight_sizes; channels_last: the operands' layout.
std::optional<at::Tensor> conv_transpose3d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                                          at::IntArrayRef stride, at::IntArrayRef padding,
                                                          int64_t groups, at::IntArrayRef dilation,
                                                          at::IntArrayRef input_sizes, bool channels_last);
std::optional<at::Tensor> conv_transpose3d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                                           at::IntArrayRef weight_sizes, at::IntArrayRef stride,
                                                           at::IntArrayRef padding, int64_t groups,
                                                           at::IntArrayRef dilation, bool channels_last);

// upsample_linear1d ((N, C, L)) and upsample_trilinear3d ((N, C, D, H, W)) on the volume kernel
// (Note [linear resampling of volumes], cpu/resample_volume.h), contiguous; the composites
// (csrc/upsample_nd.cpp) call them on plain eager calls. scales: the user's, <= 0 when not given;
// input_size: the input's full size.
at::Tensor upsample_linear_nd(const at::Tensor& input, at::IntArrayRef output_size, bool align_corners,
                              at::ArrayRef<double> scales);
at::Tensor upsample_linear_nd_backward(const at::Tensor& grad_output, at::IntArrayRef input_size, bool align_corners,
                                       at::ArrayRef<double> scales);

}  // namespace tconv::cpu
