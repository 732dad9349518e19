// 16 x 16 float transpose in AVX-512 registers: the packing step of the CPU Gram matrix turns
// rows of X into (position, channel) panels with it, and the upsampling's W gather of 16 rows at
// once (cpu/gather_rows_transposed.h) goes through it. The AVX2 build has an 8 x 8 one (the
// Gram's 8-lane panels) and a 16 x 16 one made of four. Without either, callers use scalar loops.
#pragma once

#include <cstdint>

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
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
#endif

#if defined(TCONV_CPU_AVX2)
constexpr bool kHasTranspose8x8 = true;

// dst[k * ld_dst + r] = src[r * ld + k] for r, k < 8: 2 x 2 blocks (unpack), 4 x 4 (shuffle),
// then the 128-bit halves (permute2f128).
inline void transpose_8x8(const float* src, int64_t ld, float* dst, int64_t ld_dst = 8) {
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(dst + k * ld_dst, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
    _mm256_storeu_ps(dst + (k + 4) * ld_dst, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
  }
}

// The 16 x 16 transpose as its four 8 x 8 blocks (the direct tiles' NCHW staging).
constexpr bool kHasTranspose16x16 = true;
inline void transpose_16x16(const float* src, int64_t ld, float* dst, int64_t ld_dst = 16) {
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 16; j += 8) transpose_8x8(src + i * ld + j, ld, dst + j * ld_dst + i, ld_dst);
}
#else
constexpr bool kHasTranspose8x8 = false;
inline void transpose_8x8(const float*, int64_t, float*, int64_t = 8) {}
#if !defined(TCONV_CPU_AVX512)
constexpr bool kHasTranspose16x16 = false;
inline void transpose_16x16(const float*, int64_t, float*, int64_t = 16) {}
#endif
#endif

// One vector's worth of rows (16 on AVX-512, 8 on AVX2): dst[k * ld_dst + r] = src[r * ld + k].
inline void transpose_lanes(const float* src, int64_t ld, float* dst, int64_t ld_dst) {
#if defined(TCONV_CPU_AVX512)
  transpose_16x16(src, ld, dst, ld_dst);
#else
  transpose_8x8(src, ld, dst, ld_dst);
#endif
}

}  // namespace tconv::cpu::CPU_CAPABILITY
