// Non-temporal stores for outputs bigger than the caches, shared by the kernels that write such
// outputs once and never read them back (the resamplers, the transposed convolution's cell
// scatter): storing around the caches saves the read-for-ownership of every output line.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
#include <immintrin.h>
#endif

namespace tconv::cpu::CPU_CAPABILITY {

// Destinations of this size or more (the L3 of a typical server core complex) are written with
// non-temporal stores where a kernel supports them: they would not stay cached anyway.
constexpr size_t kStreamingBytes = size_t(32) << 20;

// Orders a thread's non-temporal stores before the parallel region ends and others may read them.
inline void streaming_fence() {
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  _mm_sfence();
#endif
}

// One vector of floats at out: non-temporally when `streaming` and out is vector-aligned, else a
// plain store (a row that starts unaligned keeps plain stores: the stream stores need alignment).
#if defined(TCONV_CPU_AVX512)
inline void store_floats(float* out, __m512 v, bool streaming) {
  if (streaming && (reinterpret_cast<uintptr_t>(out) & 63) == 0) _mm512_stream_ps(out, v);
  else _mm512_storeu_ps(out, v);
}
#elif defined(TCONV_CPU_AVX2)
inline void store_floats(float* out, __m256 v, bool streaming) {
  if (streaming && (reinterpret_cast<uintptr_t>(out) & 31) == 0) _mm256_stream_ps(out, v);
  else _mm256_storeu_ps(out, v);
}
#endif

// dst[i] = src[i] + bias for i < n. With `streaming`, float32 runs are stored non-temporally from
// the first vector-aligned element on (the head before it, and the tail, with plain stores); a
// thread that streamed calls streaming_fence() before its parallel region ends.
template <typename scalar_t, typename acc_t>
inline void store_plus_bias(const acc_t* src, acc_t bias, int64_t n, scalar_t* dst, bool streaming) {
  int64_t i = 0;
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
    if (streaming) {
#if defined(TCONV_CPU_AVX512)
      constexpr int64_t kLanes = 16;
#else
      constexpr int64_t kLanes = 8;
#endif
      constexpr uintptr_t kAlign = kLanes * sizeof(float);
      const int64_t head = std::min<int64_t>(n, ((kAlign - (reinterpret_cast<uintptr_t>(dst) & (kAlign - 1))) & (kAlign - 1)) / sizeof(float));
      for (; i < head; ++i) dst[i] = src[i] + bias;
#if defined(TCONV_CPU_AVX512)
      const __m512 b = _mm512_set1_ps(bias);
      for (; i + kLanes <= n; i += kLanes) _mm512_stream_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(src + i), b));
#else
      const __m256 b = _mm256_set1_ps(bias);
      for (; i + kLanes <= n; i += kLanes) _mm256_stream_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(src + i), b));
#endif
    }
#endif
  }
  for (; i < n; ++i) dst[i] = static_cast<scalar_t>(src[i] + bias);
}

}  // namespace tconv::cpu::CPU_CAPABILITY
