// The CPU kernels' entry points, declared for the capability CPU_CAPABILITY (DEFAULT, AVX2 or
// AVX512). No include guard: cpu/dispatch.cpp includes this once per capability, and each
// capability's build of the kernels (cpu/capability/) once for its own.
#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <array>
#include <optional>
#include <tuple>

namespace tconv::cpu::CPU_CAPABILITY {

using at::IntArrayRef;
using at::Tensor;

Tensor conv_transpose2d_cpu(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                            IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                            int64_t groups, IntArrayRef dilation);
Tensor conv_transpose2d_padded_cpu(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                                   IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                                   int64_t groups, IntArrayRef dilation, c10::string_view padding_mode);
Tensor conv_transpose2d_backward_input_cpu(const Tensor& grad_output, const Tensor& weight, IntArrayRef stride,
                                           IntArrayRef padding, int64_t groups, IntArrayRef dilation,
                                           IntArrayRef input_hw);
Tensor conv_transpose2d_backward_weight_cpu(const Tensor& grad_output, const Tensor& input,
                                            IntArrayRef kernel_hw, IntArrayRef stride, IntArrayRef padding,
                                            int64_t groups, IntArrayRef dilation);
Tensor conv_transpose2d_backward_bias_cpu(const Tensor& grad_output);
std::optional<Tensor> conv_transpose3d_forward_cpu(const Tensor& input, const Tensor& weight,
                                                   const std::optional<Tensor>& bias, IntArrayRef stride,
                                                   IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
                                                   IntArrayRef dilation, bool channels_last);
std::optional<Tensor> conv_transpose3d_backward_input_cpu(const Tensor& grad_output, const Tensor& weight,
                                                          IntArrayRef stride, IntArrayRef padding, int64_t groups,
                                                          IntArrayRef dilation, IntArrayRef input_sizes,
                                                          bool channels_last);
std::optional<Tensor> conv_transpose3d_backward_weight_cpu(const Tensor& grad_output, const Tensor& input,
                                                           IntArrayRef weight_sizes, IntArrayRef stride,
                                                           IntArrayRef padding, int64_t groups, IntArrayRef dilation,
                                                           bool channels_last);

Tensor upsample_bilinear2d_cpu(const Tensor& input, IntArrayRef output_size, bool align_corners,
                               bool antialias, std::optional<double> scale_h, std::optional<double> scale_w);
Tensor upsample_bicubic2d_cpu(const Tensor& input, IntArrayRef output_size, bool align_corners,
                              bool antialias, std::optional<double> scale_h, std::optional<double> scale_w);
Tensor upsample_bilinear2d_backward_cpu(const Tensor& grad_output, IntArrayRef input_size, bool align_corners,
                                        bool antialias, std::optional<double> scale_h,
                                        std::optional<double> scale_w);
Tensor upsample_bicubic2d_backward_cpu(const Tensor& grad_output, IntArrayRef input_size, bool align_corners,
                                       bool antialias, std::optional<double> scale_h,
                                       std::optional<double> scale_w);
// upsample_linear1d / upsample_trilinear3d on contiguous tensors (cpu/resample_volume.h); scales <= 0:
// not given. The backward's input_size is the input's full size.
Tensor upsample_linear_nd_cpu(const Tensor& input, IntArrayRef output_size, bool align_corners,
                              at::ArrayRef<double> scales);
Tensor upsample_linear_nd_backward_cpu(const Tensor& grad_output, IntArrayRef input_size, bool align_corners,
                                       at::ArrayRef<double> scales);

Tensor gram_matrix_cpu(const Tensor& features, bool normalize);
Tensor gram_matrix_backward_cpu(const Tensor& grad_gram, const Tensor& features, bool normalize);

Tensor pad_fold2d_cpu(const Tensor& input, IntArrayRef pad, c10::string_view mode);
Tensor pad_fold2d_frame_cpu(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                            const Tensor& right, IntArrayRef pad, c10::string_view mode);
void pad_fold2d_frame__cpu(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                           const Tensor& right, IntArrayRef pad, c10::string_view mode);

Tensor upsample_taps2d_cpu(const Tensor& taps, const std::optional<Tensor>& bias, IntArrayRef kernel_size,
                           IntArrayRef scale, IntArrayRef padding, c10::string_view mode, bool channels_last);
Tensor upsample_taps2d_backward_cpu(const Tensor& grad_output, IntArrayRef kernel_size, IntArrayRef scale,
                                    IntArrayRef padding, c10::string_view mode, IntArrayRef input_hw);

Tensor _upsample_conv2d_mixed_cpu(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                                  IntArrayRef scale, IntArrayRef padding, c10::string_view mode);
std::tuple<Tensor, Tensor> _upsample_conv2d_mixed_backward_cpu(const Tensor& grad_output, const Tensor& input,
                                                               const Tensor& weight, IntArrayRef scale,
                                                               IntArrayRef padding, c10::string_view mode,
                                                               std::array<bool, 2> output_mask);

}  // namespace tconv::cpu::CPU_CAPABILITY
