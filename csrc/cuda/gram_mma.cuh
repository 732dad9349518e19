// The inner product step of the CUDA Gram kernel, one specialisation per dtype: a warp adds the
// products of its (rows x depth) panel of X and its (columns x depth) panel of X, both in shared
// memory with the depth contiguous, into its accumulator fragments (nvcuda::wmma, sm_80+).
//   float16 / bfloat16  m16n16k16 tensor cores, float32 accumulators
//   float32             3xTF32 (x = hi + lo, acc += lo hi' + hi lo' + hi hi'): float32-level accuracy
//                       on tensor cores; plain TF32 only where cuBLAS may use it (allow_tf32).
//                       The split cannot carry Inf / NaN (inf - inf): step() flags such inputs
//                       (kFlagsNonFinite) and the kernel recomputes those tiles directly.
//   float64             m8n8k4 double tensor cores
// The second panel is read as a col_major B operand: element (k, n) at n * ld + k is X[n][k], so
// the product is X_rows X_cols^T without a transpose.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

// The wmma types for bfloat16, tf32 and double exist for sm_80+ only (and in the host pass). Older
// GPUs get the cuBLAS path (gram_matrix.cu); there the kernel compiles to a trap.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define TCONV_GRAM_HAS_MMA 1
#else
#define TCONV_GRAM_HAS_MMA 0
#endif

namespace tconv::cuda {

#if TCONV_GRAM_HAS_MMA
namespace wmma = nvcuda::wmma;
#endif

// One wmma shape: the op's dtype, the shared-memory element type (same bits as scalar_t), the
// accumulator type, and the fragments (sm_80+ passes only: the kernel template takes the same
// types in every pass, and its body is compiled for sm_80+ only).
template <typename Scalar, typename Shared, typename Acc, int M, int N, int K, bool kTf32 = false>
struct WmmaShape {
  using scalar_t = Scalar;
  using shared_t = Shared;
  using acc_t = Acc;
  static constexpr int kM = M, kN = N, kK = K;
#if TCONV_GRAM_HAS_MMA
  using Elem = std::conditional_t<kTf32, wmma::precision::tf32, Shared>;
  using FragA = wmma::fragment<wmma::matrix_a, M, N, K, Elem, wmma::row_major>;
  using FragB = wmma::fragment<wmma::matrix_b, M, N, K, Elem, wmma::col_major>;
  using FragAcc = wmma::fragment<wmma::accumulator, M, N, K, Acc>;
#endif
};

#if TCONV_GRAM_HAS_MMA
// acc[i][j] += A_i B_j^T over kK positions, where A_i starts at a + i * kM * ld and B_j at
// b + j * kN * ld. `multiply` turns the loaded operands into what the mma consumes and multiplies.
template <typename Shape, int FM, int FN, typename Multiply>
__device__ __forceinline__ void load_and_multiply(const typename Shape::shared_t* a,
                                                  const typename Shape::shared_t* b, int ld,
                                                  typename Shape::FragAcc (&acc)[FM][FN],
                                                  Multiply multiply) {
  typename Shape::FragA fa[FM];
  typename Shape::FragB fb[FN];
#pragma unroll
  for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(fa[i], a + i * Shape::kM * ld, ld);
#pragma unroll
  for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(fb[j], b + j * Shape::kN * ld, ld);
  multiply(fa, fb, acc);
}
#endif

template <typename Shape>
struct PlainMma : Shape {
  static constexpr bool kFlagsNonFinite = false;  // products carry Inf / NaN as a matmul does
#if TCONV_GRAM_HAS_MMA
  template <int FM, int FN>
  static __device__ __forceinline__ void step(const typename Shape::shared_t* a,
                                              const typename Shape::shared_t* b, int ld,
                                              typename Shape::FragAcc (&acc)[FM][FN], bool&) {
    load_and_multiply<Shape, FM, FN>(a, b, ld, acc, [](auto& fa, auto& fb, auto& acc_) {
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc_[i][j], fa[i], fb[j], acc_[i][j]);
    });
  }
#endif
};

using HalfMma = PlainMma<WmmaShape<c10::Half, __half, float, 16, 16, 16>>;
using BFloat16Mma = PlainMma<WmmaShape<c10::BFloat16, __nv_bfloat16, float, 16, 16, 16>>;
using DoubleMma = PlainMma<WmmaShape<double, double, double, 8, 8, 4>>;

using Tf32Shape = WmmaShape<float, float, float, 16, 16, 8, /*kTf32=*/true>;

// Plain TF32 (10-bit mantissa products), used only when allow_tf32 lets cuBLAS do the same.
struct Tf32Mma : Tf32Shape {
  static constexpr bool kFlagsNonFinite = false;  // tf32(inf) = inf, tf32(nan) = nan
#if TCONV_GRAM_HAS_MMA
  template <int FM, int FN>
  static __device__ __forceinline__ void step(const float* a, const float* b, int ld,
                                              FragAcc (&acc)[FM][FN], bool&) {
    load_and_multiply<Tf32Shape, FM, FN>(a, b, ld, acc, [](auto& fa, auto& fb, auto& acc_) {
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int t = 0; t < fa[i].num_elements; ++t) fa[i].x[t] = wmma::__float_to_tf32(fa[i].x[t]);
#pragma unroll
      for (int j = 0; j < FN; ++j)
#pragma unroll
        for (int t = 0; t < fb[j].num_elements; ++t) fb[j].x[t] = wmma::__float_to_tf32(fb[j].x[t]);
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc_[i][j], fa[i], fb[j], acc_[i][j]);
    });
  }
#endif
};

// 3xTF32: x = hi + lo with hi = tf32(x), lo = tf32(x - hi) (x - hi is exact), and
// x y ~ hi hi' + hi lo' + lo hi' (lo lo' is below float32's rounding). The small terms go first.
// lo is not finite exactly when x is Inf / NaN (or rounds to Inf): `non_finite` is set then.
struct Tf32x3Mma : Tf32Shape {
  static constexpr bool kFlagsNonFinite = true;
#if TCONV_GRAM_HAS_MMA
  template <int FM, int FN>
  static __device__ __forceinline__ void step(const float* a, const float* b, int ld,
                                              FragAcc (&acc)[FM][FN], bool& non_finite) {
    load_and_multiply<Tf32Shape, FM, FN>(a, b, ld, acc, [&](auto& fa, auto& fb, auto& acc_) {
      FragA fa_lo[FM];
      FragB fb_lo[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int t = 0; t < fa[i].num_elements; ++t) {
          const float hi = wmma::__float_to_tf32(fa[i].x[t]);
          fa_lo[i].x[t] = wmma::__float_to_tf32(fa[i].x[t] - hi);
          fa[i].x[t] = hi;
          non_finite |= !isfinite(fa_lo[i].x[t]);
        }
#pragma unroll
      for (int j = 0; j < FN; ++j)
#pragma unroll
        for (int t = 0; t < fb[j].num_elements; ++t) {
          const float hi = wmma::__float_to_tf32(fb[j].x[t]);
          fb_lo[j].x[t] = wmma::__float_to_tf32(fb[j].x[t] - hi);
          fb[j].x[t] = hi;
          non_finite |= !isfinite(fb_lo[j].x[t]);
        }
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) {
          wmma::mma_sync(acc_[i][j], fa_lo[i], fb[j], acc_[i][j]);
          wmma::mma_sync(acc_[i][j], fa[i], fb_lo[j], acc_[i][j]);
          wmma::mma_sync(acc_[i][j], fa[i], fb[j], acc_[i][j]);
        }
    });
  }
#endif
};

}  // namespace tconv::cuda
