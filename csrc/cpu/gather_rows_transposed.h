// The transposed W gather of the separable resampling (float32, AVX-512; AVX2 below): kFloatLanes
// rows at once, for tables whose sources spread too wide for the lane windows (cpu/gather_lanes.h).
#pragma once

#include <cstdint>

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
#include <immintrin.h>
#endif

#include "common/upsample_tables.h"
#include "cpu/simd_loads.h"
#include "cpu/simd_transpose.h"

namespace tconv::cpu::CPU_CAPABILITY {

#if defined(TCONV_CPU_AVX512)
// 16 rows at once, for tables whose sources spread too wide for the lane windows (downsampling:
// the backward of an x2-x4 upsampling). Transposed, the 16 rows become 16-float pixel vectors and
// the gather is one FMA per tap per 16 rows, as in the channels_last layout:
//   dst[r * dst_stride + d] = sum_j w[d, j] * src[r * src_stride + start[d] + j],  r < 16.
// scratch holds (t.src + t.dst) * 16 floats. Same sum order as the per-row gathers.
inline void gather_16_rows_transposed(const float* src, int64_t src_stride, const AxisTable<float>& t,
                                      float* dst, int64_t dst_stride, float* scratch) {
  constexpr int L = kFloatLanes;
  float* pixels = scratch;                 // (t.src, 16): pixels[s * 16 + r] = src row r, column s
  float* gathered = scratch + t.src * L;   // (t.dst, 16)
  int64_t s = 0;
  for (; s + L <= t.src; s += L) transpose_16x16(src + s, src_stride, pixels + s * L);
  for (; s < t.src; ++s)
    for (int r = 0; r < L; ++r) pixels[s * L + r] = src[r * src_stride + s];
  const int64_t taps = t.taps;
  for (int64_t d = 0; d < t.dst; ++d) {
    const float* p = pixels + t.start[d] * L;
    const float* w = t.weight.data() + d * taps;
    __m512 acc = _mm512_mul_ps(_mm512_set1_ps(w[0]), _mm512_loadu_ps(p));
    for (int64_t j = 1; j < taps; ++j)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), _mm512_loadu_ps(p + j * L), acc);
    _mm512_storeu_ps(gathered + d * L, acc);
  }
  int64_t d = 0;
  for (; d + L <= t.dst; d += L) transpose_16x16(gathered + d * L, L, dst + d, dst_stride);
  for (; d < t.dst; ++d)
    for (int r = 0; r < L; ++r) dst[r * dst_stride + d] = gathered[d * L + r];
}
#elif defined(TCONV_CPU_AVX2)
// dst[k * ld_dst + r] = src[r * ld + k] for r, k < 8 (unpack, shuffle, 128-bit lane swap).
inline void transpose_8x8(const float* src, int64_t ld, float* dst, int64_t ld_dst) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
  for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44), r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44), r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(dst + k * ld_dst, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
    _mm256_storeu_ps(dst + (k + 4) * ld_dst, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
  }
}

// 8 rows at once through 8 x 8 transposes (see gather_16_rows_transposed); scratch holds
// (t.src + t.dst) * 8 floats.
inline void gather_8_rows_transposed(const float* src, int64_t src_stride, const AxisTable<float>& t, float* dst,
                                     int64_t dst_stride, float* scratch) {
  constexpr int L = kFloatLanes;
  float* pixels = scratch;
  float* gathered = scratch + t.src * L;
  int64_t s = 0;
  for (; s + L <= t.src; s += L) transpose_8x8(src + s, src_stride, pixels + s * L, L);
  for (; s < t.src; ++s)
    for (int r = 0; r < L; ++r) pixels[s * L + r] = src[r * src_stride + s];
  const int64_t taps = t.taps;
  for (int64_t d = 0; d < t.dst; ++d) {
    const float* p = pixels + t.start[d] * L;
    const float* w = t.weight.data() + d * taps;
    __m256 acc = _mm256_mul_ps(_mm256_set1_ps(w[0]), _mm256_loadu_ps(p));
    for (int64_t j = 1; j < taps; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), _mm256_loadu_ps(p + j * L), acc);
    _mm256_storeu_ps(gathered + d * L, acc);
  }
  int64_t d = 0;
  for (; d + L <= t.dst; d += L) transpose_8x8(gathered + d * L, L, dst + d, dst_stride);
  for (; d < t.dst; ++d)
    for (int r = 0; r < L; ++r) dst[r * dst_stride + d] = gathered[d * L + r];
}
#endif

}  // namespace tconv::cpu::CPU_CAPABILITY
