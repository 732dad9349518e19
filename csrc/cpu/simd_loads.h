// Masked loads of float32 rows shared by the vectorised kernels of the separable resampling (the W
// gathers, cpu/gather_lanes.h and cpu/gather_polyphase.h, and the AVX2 row combination): a vector
// of kFloatLanes floats that may run past a row's end reads zeros there.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
#include <immintrin.h>
#endif

namespace tconv::cpu::CPU_CAPABILITY {

// Floats per vector of the vectorised float32 kernels: 8 on AVX2, 16 on AVX-512 (and the baseline,
// whose kernels are scalar).
#if defined(TCONV_CPU_AVX2)
constexpr int kFloatLanes = 8;
#else
constexpr int kFloatLanes = 16;
#endif

#if defined(TCONV_CPU_AVX512)
// The 16 floats at row + at, zeros at and past row + src: windows and phase blocks may run past the
// row's end, where no lane reads (a table's starts are at most src - taps).
inline __m512 load_before(const float* row, int64_t at, int64_t src) {
  constexpr int L = kFloatLanes;
  const int64_t avail = src - at;
  const __mmask16 m = avail >= L ? __mmask16(0xFFFF) : avail <= 0 ? __mmask16(0) : __mmask16((1u << avail) - 1);
  return _mm512_maskz_loadu_ps(m, row + at);
}
#elif defined(TCONV_CPU_AVX2)
// Lanes below n (n clamped to [0, 8]) as a vector mask for vmaskmovps.
inline __m256i lanes_below(int64_t n) {
  const int c = int(std::clamp<int64_t>(n, 0, 8));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The 8 floats at row + at, zeros at and past row + src (see the AVX-512 load_before).
inline __m256 load_before(const float* row, int64_t at, int64_t src) {
  if (src - at >= 8) return _mm256_loadu_ps(row + at);
  return _mm256_maskload_ps(row + at, lanes_below(src - at));
}
#endif

}  // namespace tconv::cpu::CPU_CAPABILITY
