// CUDA backward of tconv::gram_matrix: for G = s * X X^T,
//     dX = s * (dG + dG^T) X.
// A small kernel forms the symmetric S = s * (dG + dG^T) once per batch item (reading dG through
// its strides: autograd often hands in expanded or transposed gradients), then cuBLAS (at::bmm,
// a fixed reduction order per shape; deterministic with CUBLAS_WORKSPACE_CONFIG) carries the
// dense GEMM. float16 / bfloat16 take the float32 path and round once at the end, like the CPU
// kernel: S = s (dG + dG^T) with s = 1 / (C L) is far below float16's normal range for real
// layer shapes, and dG + dG^T can exceed 65504.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/gram_args.h"
#include "common/gram_tiles.h"
#include "common/macros.h"
#include "cuda/launch.cuh"

namespace tconv::cuda {
namespace {

using at::Tensor;

// sym[n][r][c] = s * (dG[n][r][c] + dG[n][c][r]) in acc_t, contiguous (N, C, C). The same sum in
// the same order for (r, c) and (c, r): S is exactly symmetric.
template <typename scalar_t, typename acc_t>
__global__ void symmetrize_grad_kernel(const scalar_t* __restrict__ grad, int64_t stride_n,
                                       int64_t stride_r, int64_t stride_c, int64_t N, int64_t C,
                                       acc_t scale, acc_t* __restrict__ sym) {
  TCONV_GRID_STRIDE_LOOP(e, N * C * C) {
    const int64_t c = e % C, r = (e / C) % C, n = e / (C * C);
    const scalar_t* g = grad + n * stride_n;
    const int64_t lo = r < c ? r : c, hi = r < c ? c : r;
    sym[e] = scale * (static_cast<acc_t>(g[lo * stride_r + hi * stride_c]) +
                      static_cast<acc_t>(g[hi * stride_r + lo * stride_c]));
  }
}

Tensor gram_matrix_backward_cuda(const Tensor& grad_gram, const Tensor& features, bool normalize) {
  check_gram_grad(grad_gram, features, "gram_matrix_backward");
  const c10::cuda::CUDAGuard device_guard(features.device());
  const int64_t N = features.size(0), C = features.size(1), L = features.size(2);
  const auto dtype = features.scalar_type();
  Tensor dx = at::empty({N, C, L}, features.options());  // contiguous, like the CPU kernel
  if (dx.numel() == 0) return dx;

  const auto acc_type = at::toOpMathType(dtype);
  Tensor sym = at::empty({N, C, C}, features.options().dtype(acc_type));
  TCONV_DISPATCH_FLOATING_TYPES(dtype, "gram_matrix_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    symmetrize_grad_kernel<scalar_t, acc_t>
        <<<blocks_for(sym.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            grad_gram.const_data_ptr<scalar_t>(), grad_gram.stride(0), grad_gram.stride(1),
            grad_gram.stride(2), N, C, static_cast<acc_t>(gram_scale(C, L, normalize)),
            sym.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  if (acc_type == dtype) {
    at::bmm_out(dx, sym, features);  // cuBLAS reads X in place (contiguous or transposed)
  } else {
    dx.copy_(at::bmm(sym, features.to(acc_type)));  // float32 GEMM, rounded once
  }
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("gram_matrix_backward", &gram_matrix_backward_cuda);
}

}  // namespace tconv::cuda
