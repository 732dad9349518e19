// Argument checks shared by every op (host code, CPU and CUDA).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace tconv {

// The ops compute in floating point only, as PyTorch's do ("... is not implemented for 'Long'").
inline void check_floating(const at::Tensor& t, const char* op) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, " is not implemented for '",
              t.scalar_type(), "': expected float16, bfloat16, float32 or float64");
}

}  // namespace tconv
