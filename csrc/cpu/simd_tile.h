// The register-blocked microkernel of the CPU Gram matrix: one W x W tile of A B^T where both
// operands are packed panels in (k, W) order. W is one SIMD vector of the accumulation type
// (16 floats / 8 doubles with AVX-512, half that otherwise), written with GCC/Clang vector
// extensions so the compiler emits the machine's widest FMA without intrinsics.
#pragma once

#include <cstdint>
#include <cstring>

namespace tconv::cpu::CPU_CAPABILITY {

#if defined(TCONV_CPU_AVX512)
constexpr int kVectorBytes = 64;
#else
constexpr int kVectorBytes = 32;
#endif

template <typename T>
constexpr int kLanes = kVectorBytes / static_cast<int>(sizeof(T));

template <typename T>
struct SimdVector {
  typedef T type __attribute__((vector_size(kVectorBytes)));
};

// sum[c * W + r] (+)= sum over k < len of a[k * W + r] * b[k * W + c]: W accumulators (one per
// tile column) stay in registers for the whole k loop; `first` starts the sums at zero.
// The k loop runs in order, so the rounding never depends on how the caller splits work.
template <typename T>
inline void tile_multiply_accumulate(const T* a, const T* b, int64_t len, T* sum, bool first) {
  constexpr int W = kLanes<T>;
  using V = typename SimdVector<T>::type;
  V acc[W];
  for (int c = 0; c < W; ++c) {
    if (first) {
      acc[c] = V{};
    } else {
      std::memcpy(&acc[c], sum + c * W, sizeof(V));
    }
  }
  for (int64_t k = 0; k < len; ++k) {
    V va;
    std::memcpy(&va, a + k * W, sizeof(V));
    const T* bk = b + k * W;
#pragma GCC unroll 16
    for (int c = 0; c < W; ++c) acc[c] += va * bk[c];
  }
  for (int c = 0; c < W; ++c) std::memcpy(sum + c * W, &acc[c], sizeof(V));
}

}  // namespace tconv::cpu::CPU_CAPABILITY
