// The CPU kernels of every tconv operator, registered once: each call runs the build of the
// kernels (cpu/capability/) for the CPU capability ATen chose at start-up, the CPU's best (AVX512,
// AVX2, DEFAULT) unless ATEN_CPU_CAPABILITY asks for a lower one, so tconv and PyTorch always run
// at the same level (never above what the CPU has). One binary serves every x86-64 CPU; other
// CPUs have the DEFAULT build only.
#include <ATen/Version.h>
#include <torch/library.h>

#include <string>

#define CPU_CAPABILITY DEFAULT
#include "cpu/kernels.h"
#undef CPU_CAPABILITY
#if defined(__x86_64__) || defined(_M_X64)
#define TCONV_CPU_HAS_X86_BUILDS 1
#define CPU_CAPABILITY AVX2
#include "cpu/kernels.h"
#undef CPU_CAPABILITY
#define CPU_CAPABILITY AVX512
#include "cpu/kernels.h"
#undef CPU_CAPABILITY
#endif

#include "cpu/dispatch.h"

namespace tconv::cpu {

CpuCapability cpu_capability() {
  static const CpuCapability capability = [] {
#if defined(TCONV_CPU_HAS_X86_BUILDS)
    // ATen's choice (at::get_cpu_capability: the CPU's best, or ATEN_CPU_CAPABILITY), capped at
    // the instruction sets the CPU has: torch 2.13 reports a forced "avx512" as AVX512 on an
    // AVX2-only CPU (AMD Zen 3), where those kernels would fault. The sets are the builds'
    // (cpu/capability/begin.h).
    __builtin_cpu_init();
    const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
    const bool has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                            __builtin_cpu_supports("avx512cd");
    const std::string aten = at::get_cpu_capability();
    if (aten == "AVX512" && has_avx512) return CpuCapability::AVX512;
    if ((aten == "AVX512" || aten == "AVX2") && has_avx2) return CpuCapability::AVX2;
#endif
    return CpuCapability::DEFAULT;
  }();
  return capability;
}

const char* cpu_capability_name() {
  switch (cpu_capability()) {
    case CpuCapability::AVX512: return "avx512";
    case CpuCapability::AVX2: return "avx2";
    default: return "default";
  }
}

namespace {

using at::IntArrayRef;
using at::Tensor;

#if defined(TCONV_CPU_HAS_X86_BUILDS)
#define TCONV_CPU_DISPATCH(fn, ...)                                  \
  switch (cpu_capability()) {                                        \
    case CpuCapability::AVX512: return AVX512::fn(__VA_ARGS__);      \
    case CpuCapability::AVX2: return AVX2::fn(__VA_ARGS__);          \
    default: return DEFAULT::fn(__VA_ARGS__);                        \
  }
#else
#define TCONV_CPU_DISPATCH(fn, ...) return DEFAULT::fn(__VA_ARGS__);
#endif

Tensor conv_transpose2d(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                        IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
                        IntArrayRef dilation) {
  TCONV_CPU_DISPATCH(conv_transpose2d_cpu, input, weight, bias, stride, padding, output_padding, groups, dilation)
}

Tensor _conv_transpose2d_padded(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                                IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
                                IntArrayRef dilation, c10::string_view padding_mode) {
  TCONV_CPU_DISPATCH(conv_transpose2d_padded_cpu, input, weight, bias, stride, padding, output_padding, groups,
                     dilation, padding_mode)
}

Tensor conv_transpose2d_backward_input(const Tensor& grad_output, const Tensor& weight, IntArrayRef stride,
                                       IntArrayRef padding, int64_t groups, IntArrayRef dilation,
                                       IntArrayRef input_hw) {
  TCONV_CPU_DISPATCH(conv_transpose2d_backward_input_cpu, grad_output, weight, stride, padding, groups, dilation,
                     input_hw)
}

Tensor conv_transpose2d_backward_weight(const Tensor& grad_output, const Tensor& input, IntArrayRef kernel_hw,
                                        IntArrayRef stride, IntArrayRef padding, int64_t groups,
                                        IntArrayRef dilation) {
  TCONV_CPU_DISPATCH(conv_transpose2d_backward_weight_cpu, grad_output, input, kernel_hw, stride, padding, groups,
                     dilation)
}

Tensor conv_transpose2d_backward_bias(const Tensor& grad_output) {
  TCONV_CPU_DISPATCH(conv_transpose2d_backward_bias_cpu, grad_output)
}

Tensor upsample_bilinear2d(const Tensor& input, IntArrayRef size, bool align_corners, bool antialias,
                           std::optional<double> scale_h, std::optional<double> scale_w) {
  TCONV_CPU_DISPATCH(upsample_bilinear2d_cpu, input, size, align_corners, antialias, scale_h, scale_w)
}

Tensor upsample_bicubic2d(const Tensor& input, IntArrayRef size, bool align_corners, bool antialias,
                          std::optional<double> scale_h, std::optional<double> scale_w) {
  TCONV_CPU_DISPATCH(upsample_bicubic2d_cpu, input, size, align_corners, antialias, scale_h, scale_w)
}

Tensor upsample_bilinear2d_backward(const Tensor& grad_output, IntArrayRef size, bool align_corners,
                                    bool antialias, std::optional<double> scale_h, std::optional<double> scale_w) {
  TCONV_CPU_DISPATCH(upsample_bilinear2d_backward_cpu, grad_output, size, align_corners, antialias, scale_h, scale_w)
}

Tensor upsample_bicubic2d_backward(const Tensor& grad_output, IntArrayRef size, bool align_corners,
                                   bool antialias, std::optional<double> scale_h, std::optional<double> scale_w) {
  TCONV_CPU_DISPATCH(upsample_bicubic2d_backward_cpu, grad_output, size, align_corners, antialias, scale_h, scale_w)
}

Tensor gram_matrix(const Tensor& features, bool normalize) {
  TCONV_CPU_DISPATCH(gram_matrix_cpu, features, normalize)
}

Tensor gram_matrix_backward(const Tensor& grad_gram, const Tensor& features, bool normalize) {
  TCONV_CPU_DISPATCH(gram_matrix_backward_cpu, grad_gram, features, normalize)
}

Tensor pad_fold2d(const Tensor& input, IntArrayRef pad, c10::string_view mode) {
  TCONV_CPU_DISPATCH(pad_fold2d_cpu, input, pad, mode)
}

Tensor pad_fold2d_frame(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                        const Tensor& right, IntArrayRef pad, c10::string_view mode) {
  TCONV_CPU_DISPATCH(pad_fold2d_frame_cpu, center, top, bottom, left, right, pad, mode)
}

void pad_fold2d_frame_(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                       const Tensor& right, IntArrayRef pad, c10::string_view mode) {
  TCONV_CPU_DISPATCH(pad_fold2d_frame__cpu, center, top, bottom, left, right, pad, mode)
}

Tensor upsample_taps2d(const Tensor& taps, const std::optional<Tensor>& bias, IntArrayRef kernel_size,
                       IntArrayRef scale, IntArrayRef padding, c10::string_view mode, bool channels_last) {
  TCONV_CPU_DISPATCH(upsample_taps2d_cpu, taps, bias, kernel_size, scale, padding, mode, channels_last)
}

Tensor upsample_taps2d_backward(const Tensor& grad_output, IntArrayRef kernel_size, IntArrayRef scale,
                                IntArrayRef padding, c10::string_view mode, IntArrayRef input_hw) {
  TCONV_CPU_DISPATCH(upsample_taps2d_backward_cpu, grad_output, kernel_size, scale, padding, mode, input_hw)
}

Tensor _upsample_conv2d_mixed(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                              IntArrayRef scale, IntArrayRef padding, c10::string_view mode) {
  TCONV_CPU_DISPATCH(_upsample_conv2d_mixed_cpu, input, weight, bias, scale, padding, mode)
}

std::tuple<Tensor, Tensor> _upsample_conv2d_mixed_backward(const Tensor& grad_output, const Tensor& input,
                                                           const Tensor& weight, IntArrayRef scale, IntArrayRef padding,
                                                           c10::string_view mode, std::array<bool, 2> output_mask) {
  TCONV_CPU_DISPATCH(_upsample_conv2d_mixed_backward_cpu, grad_output, input, weight, scale, padding, mode, output_mask)
}

}  // namespace

std::optional<at::Tensor> conv_transpose3d_forward(const at::Tensor& input, const at::Tensor& weight,
                                                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                                   at::IntArrayRef padding, at::IntArrayRef output_padding,
                                                   int64_t groups, at::IntArrayRef dilation, bool channels_last) {
  TCONV_CPU_DISPATCH(conv_transpose3d_forward_cpu, input, weight, bias, stride, padding, output_padding, groups,
                     dilation, channels_last)
}

std::optional<at::Tensor> conv_transpose3d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                                          at::IntArrayRef stride, at::IntArrayRef padding,
                                                          int64_t groups, at::IntArrayRef dilation,
                                                          at::IntArrayRef input_sizes, bool channels_last) {
  TCONV_CPU_DISPATCH(conv_transpose3d_backward_input_cpu, grad_output, weight, stride, padding, groups, dilation,
                     input_sizes, channels_last)
}

std::optional<at::Tensor> conv_transpose3d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                                           at::IntArrayRef weight_sizes, at::IntArrayRef stride,
                                                           at::IntArrayRef padding, int64_t groups,
                                                           at::IntArrayRef dilation, bool channels_last) {
  TCONV_CPU_DISPATCH(conv_transpose3d_backward_weight_cpu, grad_output, input, weight_sizes, stride, padding, groups,
                     dilation, channels_last)
}

at::Tensor upsample_linear_nd(const at::Tensor& input, at::IntArrayRef output_size, bool align_corners,
                              at::ArrayRef<double> scales) {
  TCONV_CPU_DISPATCH(upsample_linear_nd_cpu, input, output_size, align_corners, scales)
}

at::Tensor upsample_linear_nd_backward(const at::Tensor& grad_output, at::IntArrayRef input_size, bool align_corners,
                                       at::ArrayRef<double> scales) {
  TCONV_CPU_DISPATCH(upsample_linear_nd_backward_cpu, grad_output, input_size, align_corners, scales)
}

TORCH_LIBRARY_IMPL(tconv, CPU, m) {
  m.impl("conv_transpose2d", &conv_transpose2d);
  m.impl("_conv_transpose2d_padded", &_conv_transpose2d_padded);
  m.impl("conv_transpose2d_backward_input", &conv_transpose2d_backward_input);
  m.impl("conv_transpose2d_backward_weight", &conv_transpose2d_backward_weight);
  m.impl("conv_transpose2d_backward_bias", &conv_transpose2d_backward_bias);
  m.impl("upsample_bilinear2d", &upsample_bilinear2d);
  m.impl("upsample_bicubic2d", &upsample_bicubic2d);
  m.impl("upsample_bilinear2d_backward", &upsample_bilinear2d_backward);
  m.impl("upsample_bicubic2d_backward", &upsample_bicubic2d_backward);
  m.impl("gram_matrix", &gram_matrix);
  m.impl("gram_matrix_backward", &gram_matrix_backward);
  m.impl("pad_fold2d", &pad_fold2d);
  m.impl("pad_fold2d_frame", &pad_fold2d_frame);
  m.impl("pad_fold2d_frame_", &pad_fold2d_frame_);
  m.impl("upsample_taps2d", &upsample_taps2d);
  m.impl("upsample_taps2d_backward", &upsample_taps2d_backward);
  m.impl("_upsample_conv2d_mixed", &_upsample_conv2d_mixed);
  m.impl("_upsample_conv2d_mixed_backward", &_upsample_conv2d_mixed_backward);
}

}  // namespace tconv::cpu
