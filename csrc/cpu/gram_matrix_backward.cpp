// CPU backward of tconv::gram_matrix: for G = s * X X^T,
//     dX = s * (dG + dG^T) X,
// a symmetric (C x C) times general (C x L) product. S = s * (dG + dG^T) is formed once per batch
// item, then dX is cut into fixed (row block x column chunk) pieces, each one BLAS GEMM (gemm.h)
// reading X in place (contiguous or channels-last) and writing dX in place. The pieces depend on
// the shape only, so results do not depend on the thread count. float16 / bfloat16 run the float32
// path on converted copies and round once at the end.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "common/gram_args.h"
#include "common/gram_tiles.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"
#include "cpu/kernels.h"

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

constexpr int64_t kRowBlock = 256;     // rows of dX per GEMM
constexpr int64_t kColumnChunk = 512;  // columns (positions) of dX per GEMM

template <typename scalar_t>
void gram_backward(const Tensor& grad_gram, const Tensor& x, Tensor& dx, double scale) {
  const int64_t N = x.size(0), C = x.size(1), L = x.size(2);
  // S = s * (dG + dG^T), contiguous (N, C, C).
  Tensor sym = at::empty({N, C, C}, x.options());
  scalar_t* sp = sym.mutable_data_ptr<scalar_t>();
  const scalar_t* gp = grad_gram.const_data_ptr<scalar_t>();
  const int64_t gN = grad_gram.stride(0), gR = grad_gram.stride(1), gC = grad_gram.stride(2);
  const scalar_t s = static_cast<scalar_t>(scale);
  parallel_for_work(0, N * C, N * C * C, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / C, r = item % C;
      const scalar_t* g = gp + n * gN;
      for (int64_t c = 0; c < C; ++c)
        sp[item * C + c] = s * (g[r * gR + c * gC] + g[c * gR + r * gC]);
    }
  });

  // X as a GEMM operand: rows (channels) with contiguous positions, or channels-last.
  const bool channels_last = x.stride(1) == 1 && x.stride(2) != 1;
  const int64_t ld = channels_last ? x.stride(2) : x.stride(1);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
  const int64_t row_blocks = ceil_div(C, kRowBlock), chunks = ceil_div(L, kColumnChunk);
  parallel_for_work(0, N * row_blocks * chunks, N * C * C * L, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / (row_blocks * chunks);
      const int64_t r0 = (item / chunks) % row_blocks * kRowBlock;
      const int64_t k0 = item % chunks * kColumnChunk;
      const int64_t rows = std::min(kRowBlock, C - r0), cols = std::min(kColumnChunk, L - k0);
      const scalar_t* xk = xp + n * x.stride(0) + k0 * x.stride(2);
      gemm<scalar_t>(rows, cols, C, {sp + (n * C + r0) * C, C, false}, {xk, ld, channels_last},
                     dp + (n * C + r0) * L + k0, L, false);
    }
  });
}

}  // namespace

// Entry point (cpu/kernels.h), compiled once per CPU capability (cpu/capability/).
Tensor gram_matrix_backward_cpu(const Tensor& grad_gram, const Tensor& features, bool normalize) {
  check_gram_grad(grad_gram, features, "gram_matrix_backward");
  const int64_t C = features.size(1), L = features.size(2);
  const auto dtype = features.scalar_type();
  if (dtype == at::kHalf || dtype == at::kBFloat16) {  // float32 accumulation, one rounding
    return gram_matrix_backward_cpu(grad_gram.to(at::kFloat), features.to(at::kFloat), normalize)
        .to(dtype);
  }
  Tensor dx = at::empty(features.sizes(), features.options());
  if (dx.numel() == 0) return dx;
  // The GEMM reads X in place when positions or channels are contiguous.
  const bool gemm_operand = features.stride(2) == 1 || features.stride(1) == 1;
  const Tensor x = gemm_operand ? features : features.contiguous();
  AT_DISPATCH_FLOATING_TYPES(dtype, "gram_matrix_backward", [&] {
    gram_backward<scalar_t>(grad_gram, x, dx, gram_scale(C, L, normalize));
  });
  return dx;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
