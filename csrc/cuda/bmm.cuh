// The batched GEMMs of the CUDA conv kernels. float/double go through at::bmm (cuBLAS SGEMM/DGEMM).
// bfloat16/float16 operands are multiplied as they are, on tensor cores, with float32 accumulation
// into a float32 result (cublasGemmStridedBatchedEx, CUBLAS_COMPUTE_32F): the epilogues keep
// reading float32 sums (bias in float32, one rounding, NaN recompute), and the products of two
// 16-bit values are exact in float32, so only the summation order differs from a float32 GEMM on
// converted copies. cuBLAS picks a fixed algorithm per shape: the result is reproducible.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>

#include <climits>
#include <cstdint>
#include <type_traits>

namespace tconv::cuda {

// cuBLAS's (op, ld) for a row-major operand t of shape (batch, rows, cols) read through its
// strides: row-major (unit stride on cols) or column-major (unit stride on rows). False if neither.
inline bool blas_layout(const at::Tensor& t, cublasOperation_t& op, int64_t& ld) {
  const int64_t rows = t.size(1), cols = t.size(2);
  if (t.stride(2) == 1 && t.stride(1) >= std::max<int64_t>(cols, 1)) {
    op = CUBLAS_OP_N;  // as column-major it is t^T, which the swapped product wants
    ld = t.stride(1);
    return true;
  }
  if (t.stride(1) == 1 && t.stride(2) >= std::max<int64_t>(rows, 1)) {
    op = CUBLAS_OP_T;
    ld = t.stride(2);
    return true;
  }
  return false;
}

// c = a @ b (+ c if accumulate) per batch item; a (batch, M, K) and b (batch, K, N) 16-bit, c a
// contiguous float32 (batch, M, N). Row-major c is column-major c^T = b^T a^T: cuBLAS gets b first.
inline void bmm_16bit_acc32(const at::Tensor& a_in, const at::Tensor& b_in, at::Tensor& c,
                            bool accumulate) {
  const int64_t batch = a_in.size(0), M = a_in.size(1), K = a_in.size(2), N = b_in.size(2);
  TORCH_INTERNAL_ASSERT(c.scalar_type() == at::kFloat && c.is_contiguous() && c.size(0) == batch &&
                        c.size(1) == M && c.size(2) == N && b_in.size(1) == K &&
                        a_in.scalar_type() == b_in.scalar_type());
  if (batch == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate) c.zero_();
    return;
  }
  cublasOperation_t op_a, op_b;
  int64_t lda, ldb;
  at::Tensor a = a_in, b = b_in;
  if (!blas_layout(a, op_a, lda)) a = a.contiguous(), blas_layout(a, op_a, lda);
  if (!blas_layout(b, op_b, ldb)) b = b.contiguous(), blas_layout(b, op_b, ldb);
  TORCH_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                  batch <= INT_MAX,
              "tconv: a GEMM dimension exceeds cuBLAS's 32-bit sizes");
  const cudaDataType_t type = a.scalar_type() == at::kHalf ? CUDA_R_16F : CUDA_R_16BF;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  TORCH_CUDABLAS_CHECK(cublasGemmStridedBatchedEx(
      at::cuda::getCurrentCUDABlasHandle(),  // bound to the current stream
      op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha,
      b.const_data_ptr(), type, static_cast<int>(ldb), b.stride(0),
      a.const_data_ptr(), type, static_cast<int>(lda), a.stride(0), &beta,
      c.mutable_data_ptr(), CUDA_R_32F, static_cast<int>(N), M * N, static_cast<int>(batch),
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// c = a @ b (+ c if accumulate): operands in scalar_t, c in at::opmath_type<scalar_t>.
template <typename scalar_t>
void bmm_acc(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, bool accumulate) {
  if constexpr (std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>) {
    bmm_16bit_acc32(a, b, c, accumulate);
  } else if (accumulate) {
    c.baddbmm_(a, b);
  } else {
    at::bmm_out(c, a, b);
  }
}

}  // namespace tconv::cuda
