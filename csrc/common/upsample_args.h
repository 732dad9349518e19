// Argument checks and geometry of one 2-D bilinear/bicubic resampling (host code, shared by the
// CPU and CUDA kernels). Messages and exception types follow ATen's upsample_2d_common_check.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

#include "common/upsample_index.h"

namespace tconv {

struct Upsample2dGeometry {
  int64_t N, C, H, W;   // input
  int64_t Ho, Wo;       // output
  double scale_h, scale_w;  // the user's scale factors, <= 0 when not given
};

inline void check_upsample_sizes(int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
  TORCH_CHECK(H > 0 && W > 0 && Ho > 0 && Wo > 0,
              "Input and output sizes should be greater than 0, but got input (H: ", H, ", W: ", W,
              ") output (H: ", Ho, ", W: ", Wo, ")");
}

// Forward: input (N, C, H, W) and the output's (Ho, Wo).
inline Upsample2dGeometry upsample2d_geometry(const at::Tensor& input, c10::IntArrayRef output_size,
                                              std::optional<double> scale_h,
                                              std::optional<double> scale_w) {
  TORCH_CHECK(output_size.size() == 2, "It is expected output_size equals to 2, but got size ",
              output_size.size());
  TORCH_CHECK(input.dim() == 4, "It is expected input_size equals to 4, but got size ", input.dim(),
              " (tconv upsampling takes (N, C, H, W) input)");
  const auto s = input.sizes();
  TORCH_CHECK(input.numel() != 0 || s[1] * s[2] * s[3] != 0,
              "Non-empty 4D data tensor expected but got a tensor with sizes ", s);
  check_upsample_sizes(s[2], s[3], output_size[0], output_size[1]);
  return {s[0], s[1], s[2], s[3], output_size[0], output_size[1], scale_h.value_or(0.),
          scale_w.value_or(0.)};
}

// Backward: grad_output (N, C, Ho, Wo) and the input's (H, W).
inline Upsample2dGeometry upsample2d_backward_geometry(const at::Tensor& grad_output,
                                                       c10::IntArrayRef input_size,
                                                       std::optional<double> scale_h,
                                                       std::optional<double> scale_w) {
  TORCH_CHECK(input_size.size() == 2, "It is expected input_size equals to 2, but got size ",
              input_size.size());
  TORCH_CHECK(grad_output.dim() == 4, "Expected grad_output to be a 4-D tensor, but got ",
              grad_output.dim(), " dimensions");
  const auto s = grad_output.sizes();
  check_upsample_sizes(input_size[0], input_size[1], s[2], s[3]);
  return {s[0], s[1], input_size[0], input_size[1], s[2], s[3], scale_h.value_or(0.),
          scale_w.value_or(0.)};
}

}  // namespace tconv
