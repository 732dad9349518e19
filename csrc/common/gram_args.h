// Argument checks of the Gram-matrix ops (host code, shared by the CPU and CUDA kernels). The ops
// take batched feature matrices (N, C, L); tconv.gram_matrix reshapes images to that.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common/checks.h"

namespace tconv {

inline void check_gram_features(const at::Tensor& features, const char* op) {
  TORCH_CHECK(features.dim() == 3, op, ": expected features of shape (N, C, L), but got size ",
              features.sizes());
  check_floating(features, op);
}

// grad_gram must be (N, C, C) for features (N, C, L), same dtype and device.
inline void check_gram_grad(const at::Tensor& grad_gram, const at::Tensor& features, const char* op) {
  check_gram_features(features, op);
  TORCH_CHECK(grad_gram.scalar_type() == features.scalar_type(), op, ": grad_gram type (",
              grad_gram.scalar_type(), ") and features type (", features.scalar_type(),
              ") should be the same");
  TORCH_CHECK(grad_gram.device() == features.device(), op, ": grad_gram (", grad_gram.device(),
              ") and features (", features.device(), ") should be on the same device");
  const int64_t n = features.size(0), c = features.size(1);
  TORCH_CHECK(grad_gram.dim() == 3 && grad_gram.size(0) == n && grad_gram.size(1) == c &&
                  grad_gram.size(2) == c,
              op, ": expected grad_gram of size [", n, ", ", c, ", ", c, "] for features of size ",
              features.sizes(), ", but got ", grad_gram.sizes());
}

}  // namespace tconv
