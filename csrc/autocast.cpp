// Autocast kernels of the tconv operators (AutocastCPU, AutocastCUDA): the casts PyTorch's own
// counterparts get under torch.autocast, so mixed-dtype calls work instead of failing.
//
//   conv_transpose2d   lower precision (the autocast dtype, like F.conv_transpose2d): input,
//                      weight and bias are cast to torch.get_autocast_dtype(device). float64
//                      tensors are left alone (at::autocast's eligibility rule).
//   gram_matrix        float32 (like PyTorch's fp32-list ops: norms, losses): float16/bfloat16
//                      features are cast to float32 and the Gram is returned in float32. The
//                      kernel accumulates in float32 anyway; returning float32 keeps the style
//                      loss (small differences of Gram entries) free of bf16/fp16 rounding.
//   upsample_*         no kernel here: PyTorch's upsample ops are in no autocast list, so they
//                      run in the input's dtype (the Autocast fallthrough does exactly that).
//   backward ops       no kernel here: autograd records the forward op on the cast tensors, so
//                      its backward ops see consistent dtypes.
//
// Each kernel excludes its autocast key, casts (cached_cast: the same cache as PyTorch's ops, so
// an fp32 weight is cast once per autocast region) and redispatches.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

namespace tconv::autocast {
namespace {

using at::Tensor;

template <c10::DeviceType D>
Tensor conv_transpose2d_autocast(const Tensor& input, const Tensor& weight,
                                 const std::optional<Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef output_padding,
                                 int64_t groups, at::IntArrayRef dilation) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(
      at::autocast::get_autocast_dispatch_key_from_device_type(D));
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv::conv_transpose2d", "")
                             .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&,
                                           at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                                           int64_t, at::IntArrayRef)>();
  const at::ScalarType dtype = at::autocast::get_autocast_dtype(D);
  return op.call(at::autocast::cached_cast(dtype, input, D),
                 at::autocast::cached_cast(dtype, weight, D),
                 at::autocast::cached_cast(dtype, bias, D), stride, padding, output_padding,
                 groups, dilation);
}

template <c10::DeviceType D>
Tensor gram_matrix_autocast(const Tensor& features, bool normalize) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(
      at::autocast::get_autocast_dispatch_key_from_device_type(D));
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv::gram_matrix", "")
                             .typed<Tensor(const Tensor&, bool)>();
  return op.call(at::autocast::cached_cast(at::kFloat, features, D), normalize);
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, AutocastCPU, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_autocast<c10::DeviceType::CPU>);
  m.impl("gram_matrix", &gram_matrix_autocast<c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(tconv, AutocastCUDA, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_autocast<c10::DeviceType::CUDA>);
  m.impl("gram_matrix", &gram_matrix_autocast<c10::DeviceType::CUDA>);
}

}  // namespace tconv::autocast
