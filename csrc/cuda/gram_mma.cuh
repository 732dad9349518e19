// The inner product step of the CUDA Gram kernel, one specialisation per dtype: a warp adds the
// products of its (rows x depth) panel of X and its (columns x depth) panel of X, both in shared
// memory with the depth contiguous, into its accumulator fragments (nvcuda::wmma, sm_80+).
//   float16 / bfloat16  m16n16k16 tensor cores, float32 accumulators
//   float32             3xTF32 (x = hi + lo, acc += lo hi' + hi lo' + hi hi'): float32-level accuracy
//                       on tensor cores; plain TF32 only where cuBLAS may use it (allow_tf32)
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

// The wmma types for bfloat16, tf32 and double exist for sm_80+ only (and in the host pass).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define TCONV_GRAM_HAS_MMA 1
#else
#define TCONV_GRAM_HAS_MMA 0
#endif

namespace tconv::cuda {

#if TCONV_GRAM_HAS_MMA

namespace wmma = nvcuda::wmma;

// Fragment types of one wmma shape; `Elem` is the operand precision, `Shared` its storage type.
template <typename Scalar, typename Shared, typename Elem, typename Acc, int M, int N, int K>
struct WmmaShape {
  using scalar_t = Scalar;  // the op's dtype
  using shared_t = Shared;  // element type of the shared-memory panels (same bits as scalar_t)
  using acc_t = Acc;
  static constexpr int kM = M, kN = N, kK = K;
  using FragA = wmma::fragment<wmma::matrix_a, M, N, K, Elem, wmma::row_major>;
  using FragB = wmma::fragment<wmma::matrix_b, M, N, K, Elem, wmma::col_major>;
  using FragAcc = wmma::fragment<wmma::accumulator, M, N, K, Acc>;
};

// acc[i][j] += A_i B_j^T over kK positions, where A_i starts at a + i * kM * ld and B_j at
// b + j * kN * ld. `split` turns the loaded operands into what the mma consumes.
template <typename Shape, int FM, int FN, typename Split>
__device__ __forceinline__ void load_and_multiply(const typename Shape::shared_t* a,
                                                  const typename Shape::shared_t* b, int ld,
                                                  typename Shape::FragAcc (&acc)[FM][FN],
                                                  Split split) {
  typename Shape::FragA fa[FM];
  typename Shape::FragB fb[FN];
#pragma unroll
  for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(fa[i], a + i * Shape::kM * ld, ld);
#pragma unroll
  for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(fb[j], b + j * Shape::kN * ld, ld);
  split(fa, fb, acc);
}

template <typename Shape>
struct PlainMma : Shape {
  template <int FM, int FN>
  static __device__ __forceinline__ void step(const typename Shape::shared_t* a,
                                              const typename Shape::shared_t* b, int ld,
                                              typename Shape::FragAcc (&acc)[FM][FN]) {
    load_and_multiply<Shape, FM, FN>(a, b, ld, acc, [](auto& fa, auto& fb, auto& acc_) {
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc_[i][j], fa[i], fb[j], acc_[i][j]);
    });
  }
};

using HalfMma = PlainMma<WmmaShape<c10::Half, __half, __half, float, 16, 16, 16>>;
using BFloat16Mma = PlainMma<WmmaShape<c10::BFloat16, __nv_bfloat16, __nv_bfloat16, float, 16, 16, 16>>;
using DoubleMma = PlainMma<WmmaShape<double, double, double, double, 8, 8, 4>>;

using Tf32Shape = WmmaShape<float, float, wmma::precision::tf32, float, 16, 16, 8>;

// Plain TF32 (10-bit mantissa products), used only when allow_tf32 lets cuBLAS do the same.
struct Tf32Mma : Tf32Shape {
  template <int FM, int FN>
  static __device__ __forceinline__ void step(const float* a, const float* b, int ld,
                                              FragAcc (&acc)[FM][FN]) {
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
};

// 3xTF32: x = hi + lo with hi = tf32(x), lo = tf32(x - hi) (x - hi is exact), and
// x y ~ hi hi' + hi lo' + lo hi' (lo lo' is below float32's rounding). The small terms go first.
struct Tf32x3Mma : Tf32Shape {
  template <int FM, int FN>
  static __device__ __forceinline__ void step(const float* a, const float* b, int ld,
                                              FragAcc (&acc)[FM][FN]) {
    load_and_multiply<Tf32Shape, FM, FN>(a, b, ld, acc, [](auto& fa, auto& fb, auto& acc_) {
      FragA fa_lo[FM];
      FragB fb_lo[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int t = 0; t < fa[i].num_elements; ++t) {
          const float hi = wmma::__float_to_tf32(fa[i].x[t]);
          fa_lo[i].x[t] = wmma::__float_to_tf32(fa[i].x[t] - hi);
          fa[i].x[t] = hi;
        }
#pragma unroll
      for (int j = 0; j < FN; ++j)
#pragma unroll
        for (int t = 0; t < fb[j].num_elements; ++t) {
          const float hi = wmma::__float_to_tf32(fb[j].x[t]);
          fb_lo[j].x[t] = wmma::__float_to_tf32(fb[j].x[t] - hi);
          fb[j].x[t] = hi;
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
};

#else  // older GPUs: the same names and shapes, so the code parses; the kernels trap there and
       // the host takes the cuBLAS path instead (gram_matrix.cu)

template <typename Scalar, typename Shared, typename Acc, int M, int N, int K>
struct MmaUnavailable {
  using scalar_t = Scalar;
  using shared_t = Shared;
  using acc_t = Acc;
  static constexpr int kM = M, kN = N, kK = K;
};
using HalfMma = MmaUnavailable<c10::Half, __half, float, 16, 16, 16>;
using BFloat16Mma = MmaUnavailable<c10::BFloat16, __nv_bfloat16, float, 16, 16, 16>;
using DoubleMma = MmaUnavailable<double, double, double, 8, 8, 4>;
using Tf32Mma = MmaUnavailable<float, float, float, 16, 16, 8>;
using Tf32x3Mma = MmaUnavailable<float, float, float, 16, 16, 8>;

#endif  // TCONV_GRAM_HAS_MMA

}  // namespace tconv::cuda
