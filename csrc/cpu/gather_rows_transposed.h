// The transposed W gather of the separable resampling (float32, AVX-512 and AVX2): kFloatLanes
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
using FloatVector = __m512;  // kFloatLanes floats
inline FloatVector load_floats(const float* p) { return _mm512_loadu_ps(p); }
inline FloatVector scale_floats(float w, FloatVector v) { return _mm512_mul_ps(_mm512_set1_ps(w), v); }
inline FloatVector fmadd_floats(float w, FloatVector v, FloatVector acc) { return _mm512_fmadd_ps(_mm512_set1_ps(w), v, acc); }
inline void store_floats(float* p, FloatVector v) { _mm512_storeu_ps(p, v); }
#elif defined(TCONV_CPU_AVX2)
using FloatVector = __m256;
inline FloatVector load_floats(const float* p) { return _mm256_loadu_ps(p); }
inline FloatVector scale_floats(float w, FloatVector v) { return _mm256_mul_ps(_mm256_set1_ps(w), v); }
inline FloatVector fmadd_floats(float w, FloatVector v, FloatVector acc) { return _mm256_fmadd_ps(_mm256_set1_ps(w), v, acc); }
inline void store_floats(float* p, FloatVector v) { _mm256_storeu_ps(p, v); }
#endif

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
// L = kFloatLanes rows at once (16 on AVX-512, 8 on AVX2), for tables whose sources spread too
// wide for the lane windows (downsampling: the backward of an x2-x4 upsampling). Transposed, the
// L rows become L-float pixel vectors and the gather is one FMA per tap per L rows, as in the
// channels_last layout:
//   dst[r * dst_stride + d] = sum_j w[d, j] * src[r * src_stride + start[d] + j],  r < L.
// scratch holds (t.src + t.dst) * L floats. Same sum order as the per-row gathers.
inline void gather_rows_transposed(const float* src, int64_t src_stride, const AxisTable<float>& t, float* dst,
                                   int64_t dst_stride, float* scratch) {
  constexpr int L = kFloatLanes;
  float* pixels = scratch;                 // (t.src, L): pixels[s * L + r] = src row r, column s
  float* gathered = scratch + t.src * L;   // (t.dst, L)
  int64_t s = 0;
  for (; s + L <= t.src; s += L) transpose_lanes(src + s, src_stride, pixels + s * L, L);
  for (; s < t.src; ++s)
    for (int r = 0; r < L; ++r) pixels[s * L + r] = src[r * src_stride + s];
  const int64_t taps = t.taps;
  for (int64_t d = 0; d < t.dst; ++d) {
    const float* p = pixels + t.start[d] * L;
    const float* w = t.weight.data() + d * taps;
    FloatVector acc = scale_floats(w[0], load_floats(p));
    for (int64_t j = 1; j < taps; ++j) acc = fmadd_floats(w[j], load_floats(p + j * L), acc);
    store_floats(gathered + d * L, acc);
  }
  int64_t d = 0;
  for (; d + L <= t.dst; d += L) transpose_lanes(gathered + d * L, L, dst + d, dst_stride);
  for (; d < t.dst; ++d)
    for (int r = 0; r < L; ++r) dst[r * dst_stride + d] = gathered[d * L + r];
}
#endif

}  // namespace tconv::cpu::CPU_CAPABILITY
