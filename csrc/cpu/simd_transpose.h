// 16 x 16 float transpose in AVX-512 registers: the packing step of the CPU Gram matrix turns
// rows of X into (position, channel) panels with it, and the upsampling's W gather of 16 rows at
// once (cpu/vector_gather.h) goes through it. Without AVX-512 callers use scalar loops.
#pragma once

#include <cstdint>

#if defined(TCONV_CPU_AVX512)
#include <immintrin.h>
#endif

namespace tconv::cpu::CPU_CAPABILITY {

#if defined(TCONV_CPU_AVX512)
constexpr bool kHasTranspose16x16 = true;

// dst[k * 16 + r] = src[r * ld + k] for r, k < 16.
// Recursive block transpose: at distance d = 8, 4, 2, 1 rows i and i + d (bit d of i clear)
// swap their off-diagonal d x d blocks, i.e. row i takes columns j with bit d set from row i + d
// and row i + d takes columns j with bit d clear from row i. Two vpermt2ps per row pair.
struct TransposeIndices {
  alignas(64) int32_t lo[4][16];  // stage s uses distance d = 8 >> s
  alignas(64) int32_t hi[4][16];
};

constexpr TransposeIndices make_transpose_indices() {
  TransposeIndices t{};
  for (int s = 0; s < 4; ++s) {
    const int d = 8 >> s;
    for (int j = 0; j < 16; ++j) {
      t.lo[s][j] = (j & d) ? 16 + (j - d) : j;  // 16 + : from the second operand (row i + d)
      t.hi[s][j] = (j & d) ? 16 + j : j + d;
    }
  }
  return t;
}

inline constexpr TransposeIndices kTransposeIndices = make_transpose_indices();

template <int Stage>
inline void transpose_stage(__m512 (&r)[16]) {
  constexpr int d = 8 >> Stage;
  const __m512i idx_lo = _mm512_load_si512(kTransposeIndices.lo[Stage]);
  const __m512i idx_hi = _mm512_load_si512(kTransposeIndices.hi[Stage]);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    if (i & d) continue;
    const __m512 a = r[i], b = r[i + d];
    r[i] = _mm512_permutex2var_ps(a, idx_lo, b);
    r[i + d] = _mm512_permutex2var_ps(a, idx_hi, b);
  }
}

// dst[k * ld_dst + r] = src[r * ld + k] for r, k < 16.
inline void transpose_16x16(const float* src, int64_t ld, float* dst, int64_t ld_dst = 16) {
  __m512 r[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
  transpose_stage<0>(r);
  transpose_stage<1>(r);
  transpose_stage<2>(r);
  transpose_stage<3>(r);
#pragma GCC unroll 16
  for (int k = 0; k < 16; ++k) _mm512_storeu_ps(dst + k * ld_dst, r[k]);
}
#else
constexpr bool kHasTranspose16x16 = false;
inline void transpose_16x16(const float*, int64_t, float*, int64_t = 16) {}
#endif

}  // namespace tconv::cpu::CPU_CAPABILITY
