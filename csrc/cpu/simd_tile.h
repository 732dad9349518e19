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

// Three tiles of one tile column at once, for 16-register ISAs (AVX2): the W x W tile above keeps
// W = 8 accumulators and makes 9 loads per 8 FMAs, about 80% of the FMA rate on Zen 4; three row
// panels against 4 columns at a time make 12 accumulators and 7 loads per 12 FMAs (~98%).
// a points at 3 panels `panel_stride` apart, sums at their 3 tiles (tile r at sums + r * W * W,
// same layout as above). Every sum still runs k in order from its start: bitwise the same
// result as tile_multiply_accumulate per tile.
template <typename T>
inline void block3_multiply_accumulate(const T* a, int64_t panel_stride, const T* b, int64_t len,
                                       T* sums, bool first) {
  constexpr int W = kLanes<T>;
  static_assert(W % 4 == 0, "4 columns per pass");
  using V = typename SimdVector<T>::type;
  const T* a1 = a + panel_stride;
  const T* a2 = a + 2 * panel_stride;
  for (int c0 = 0; c0 < W; c0 += 4) {
    // Named accumulators, not an array: GCC keeps a 2-D array of vectors in memory.
    V s00{}, s01{}, s02{}, s03{}, s10{}, s11{}, s12{}, s13{}, s20{}, s21{}, s22{}, s23{};
    V* acc[12] = {&s00, &s01, &s02, &s03, &s10, &s11, &s12, &s13, &s20, &s21, &s22, &s23};
    if (!first) {
      for (int e = 0; e < 12; ++e)
        std::memcpy(acc[e], sums + e / 4 * W * W + (c0 + e % 4) * W, sizeof(V));
    }
    for (int64_t k = 0; k < len; ++k) {
      V v0, v1, v2;
      std::memcpy(&v0, a + k * W, sizeof(V));
      std::memcpy(&v1, a1 + k * W, sizeof(V));
      std::memcpy(&v2, a2 + k * W, sizeof(V));
      const T* bk = b + k * W + c0;
      T s = bk[0];
      s00 += v0 * s, s10 += v1 * s, s20 += v2 * s;
      s = bk[1];
      s01 += v0 * s, s11 += v1 * s, s21 += v2 * s;
      s = bk[2];
      s02 += v0 * s, s12 += v1 * s, s22 += v2 * s;
      s = bk[3];
      s03 += v0 * s, s13 += v1 * s, s23 += v2 * s;
    }
    for (int e = 0; e < 12; ++e)
      std::memcpy(sums + e / 4 * W * W + (c0 + e % 4) * W, acc[e], sizeof(V));
  }
}

}  // namespace tconv::cpu::CPU_CAPABILITY
