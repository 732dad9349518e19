// Row-major GEMM on raw buffers through ATen's BLAS (MKL/OpenBLAS via at::mm_out). Called from
// inside at::parallel_for, where the BLAS runs single-threaded on each thread's block.
#pragma once

#include <ATen/ATen.h>

namespace tconv::cpu {

// Operand of a row-major GEMM: `rows x cols` logical matrix at `data` with leading dimension
// `ld`; `transposed` means memory holds its transpose (element (i, j) at data[j * ld + i]).
template <typename T>
struct MatRef {
  const T* data;
  int64_t ld;
  bool transposed;
};

template <typename T>
inline at::Tensor as_tensor(const T* data, int64_t rows, int64_t cols, int64_t ld, bool transposed) {
  auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const std::vector<int64_t> strides =
      transposed ? std::vector<int64_t>{1, ld} : std::vector<int64_t>{ld, 1};
  return at::from_blob(const_cast<T*>(data), {rows, cols}, strides, options);
}

// C (m x n, row-major, leading dimension ldc) = A (m x k) @ B (k x n) [+ C when accumulate].
template <typename T>
inline void gemm(int64_t m, int64_t n, int64_t k, MatRef<T> a, MatRef<T> b, T* c, int64_t ldc,
                 bool accumulate) {
  if (m == 0 || n == 0) return;
  at::Tensor out = as_tensor(c, m, n, ldc, false);
  if (k == 0) {
    if (!accumulate) out.zero_();
    return;
  }
  at::Tensor lhs = as_tensor(a.data, m, k, a.ld, a.transposed);
  at::Tensor rhs = as_tensor(b.data, k, n, b.ld, b.transposed);
  if (accumulate) {
    at::addmm_out(out, out, lhs, rhs);
  } else {
    at::mm_out(out, lhs, rhs);
  }
}

}  // namespace tconv::cpu
