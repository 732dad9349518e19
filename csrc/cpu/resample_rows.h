// Row primitives of the separable resampling (cpu/separable_resample.h), shared by both memory
// formats: a weighted sum of rows (scalar, and float32 with register accumulators on AVX-512 /
// AVX2), non-temporal stores for destinations bigger than the caches, and the work measure of the
// parallel loops. The watch for non-finite sources is cpu/finite.h's NonfiniteWatch.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <type_traits>
#include <vector>

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
#include <immintrin.h>
#endif

#include "common/upsample_tables.h"
#include "cpu/finite.h"
#include "cpu/simd_loads.h"
#include "cpu/streaming_store.h"

namespace tconv::cpu::CPU_CAPABILITY {

// out[x] = sum_j w[j] * rows[j][x], x < width. TAPS > 0 fixes the tap count at compile time; with
// a run-time count (wide backward tables: 8-17 taps) the taps loop cannot be the inner one of a
// vector loop, so blocks of x accumulate tap by tap in a local array (same order of sums).
template <int TAPS, typename in_t, typename out_t, typename acc_t>
inline void combine_rows(const in_t* base, int64_t row_stride, const acc_t* w, int64_t taps,
                         int64_t width, out_t* __restrict out) {
  if constexpr (TAPS > 0) {
#pragma omp simd
    for (int64_t x = 0; x < width; ++x) {
      acc_t acc = w[0] * static_cast<acc_t>(base[x]);
      for (int64_t j = 1; j < TAPS; ++j) acc += w[j] * static_cast<acc_t>(base[j * row_stride + x]);
      out[x] = static_cast<out_t>(acc);
    }
  } else {
    constexpr int64_t kBlock = 256;
    acc_t acc[kBlock];
    for (int64_t x0 = 0; x0 < width; x0 += kBlock) {
      const int64_t nb = std::min(kBlock, width - x0);
      const in_t* b = base + x0;
#pragma omp simd
      for (int64_t x = 0; x < nb; ++x) acc[x] = w[0] * static_cast<acc_t>(b[x]);
      for (int64_t j = 1; j < taps; ++j) {
        const in_t* row = b + j * row_stride;
        const acc_t wj = w[j];
#pragma omp simd
        for (int64_t x = 0; x < nb; ++x) acc[x] += wj * static_cast<acc_t>(row[x]);
      }
#pragma omp simd
      for (int64_t x = 0; x < nb; ++x) out[x0 + x] = static_cast<out_t>(acc[x]);
    }
  }
}

#if defined(TCONV_CPU_AVX512)
// combine_rows for float32 with the accumulators in registers, 64 then 16 columns at a time and a
// masked tail, for any tap count (combine_rows<0> goes through memory); row_at(j) points at tap j's
// row. With `streaming` the stores are non-temporal: a destination far bigger than the caches is
// written once and not read back, so storing around the caches saves the read-for-ownership of
// every output line (a third of the traffic of an x2 upsampling). Same arithmetic as combine_rows
// (tap 0 first, then FMAs).
template <typename RowAt>
inline void combine_f32(RowAt row_at, const float* w, int64_t taps, int64_t width, float* out,
                        bool streaming) {
  int64_t x = 0;
  if ((reinterpret_cast<uintptr_t>(out) & 3) != 0) streaming = false;  // never 64-byte aligned
  if (streaming) {  // non-temporal stores need 64-byte alignment: peel the head
    const int64_t head = std::min<int64_t>(width, ((64 - (reinterpret_cast<uintptr_t>(out) & 63)) & 63) / 4);
    if (head > 0) {
      combine_f32(row_at, w, taps, head, out, false);
      x = head;
    }
  }
  auto store = [&](float* p, __m512 v) {
    if (streaming) _mm512_stream_ps(p, v);
    else _mm512_storeu_ps(p, v);
  };
  for (; x + 64 <= width; x += 64) {
    __m512 acc[4];
    const __m512 w0 = _mm512_set1_ps(w[0]);
    const float* row0 = row_at(0) + x;
    for (int k = 0; k < 4; ++k) acc[k] = _mm512_mul_ps(w0, _mm512_loadu_ps(row0 + 16 * k));
    for (int64_t j = 1; j < taps; ++j) {
      const __m512 wj = _mm512_set1_ps(w[j]);
      const float* row = row_at(j) + x;
      for (int k = 0; k < 4; ++k) acc[k] = _mm512_fmadd_ps(wj, _mm512_loadu_ps(row + 16 * k), acc[k]);
    }
    for (int k = 0; k < 4; ++k) store(out + x + 16 * k, acc[k]);
  }
  for (; x < width; x += 16) {
    const __mmask16 m = width - x >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (width - x)) - 1);
    __m512 acc = _mm512_mul_ps(_mm512_set1_ps(w[0]), _mm512_maskz_loadu_ps(m, row_at(0) + x));
    for (int64_t j = 1; j < taps; ++j)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), _mm512_maskz_loadu_ps(m, row_at(j) + x), acc);
    if (m == 0xFFFF) store(out + x, acc);
    else _mm512_mask_storeu_ps(out + x, m, acc);
  }
}
#elif defined(TCONV_CPU_AVX2)
// combine_f32 on 8 lanes: 64 (8 accumulators: a channels_last pixel of C = 64 in one pass) then 8
// columns at a time, a masked tail; non-temporal stores need 32-byte alignment. Same arithmetic
// (tap 0 first, then FMAs).
template <typename RowAt>
inline void combine_f32(RowAt row_at, const float* w, int64_t taps, int64_t width, float* out,
                        bool streaming) {
  int64_t x = 0;
  if ((reinterpret_cast<uintptr_t>(out) & 3) != 0) streaming = false;  // never 32-byte aligned
  if (streaming) {
    const int64_t head = std::min<int64_t>(width, ((32 - (reinterpret_cast<uintptr_t>(out) & 31)) & 31) / 4);
    if (head > 0) {
      combine_f32(row_at, w, taps, head, out, false);
      x = head;
    }
  }
  auto store = [&](float* p, __m256 v) {
    if (streaming) _mm256_stream_ps(p, v);
    else _mm256_storeu_ps(p, v);
  };
  for (; x + 64 <= width; x += 64) {
    __m256 acc[8];
    const __m256 w0 = _mm256_set1_ps(w[0]);
    const float* row0 = row_at(0) + x;
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_mul_ps(w0, _mm256_loadu_ps(row0 + 8 * k));
    for (int64_t j = 1; j < taps; ++j) {
      const __m256 wj = _mm256_set1_ps(w[j]);
      const float* row = row_at(j) + x;
      for (int k = 0; k < 8; ++k) acc[k] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(row + 8 * k), acc[k]);
    }
    for (int k = 0; k < 8; ++k) store(out + x + 8 * k, acc[k]);
  }
  for (; x + 8 <= width; x += 8) {
    __m256 acc = _mm256_mul_ps(_mm256_set1_ps(w[0]), _mm256_loadu_ps(row_at(0) + x));
    for (int64_t j = 1; j < taps; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), _mm256_loadu_ps(row_at(j) + x), acc);
    store(out + x, acc);
  }
  if (x < width) {
    const __m256i m = lanes_below(width - x);
    __m256 acc = _mm256_mul_ps(_mm256_set1_ps(w[0]), _mm256_maskload_ps(row_at(0) + x, m));
    for (int64_t j = 1; j < taps; ++j)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), _mm256_maskload_ps(row_at(j) + x, m), acc);
    _mm256_maskstore_ps(out + x, m, acc);
  }
}
#endif

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
inline void combine_rows_f32(const float* base, int64_t row_stride, const float* w, int64_t taps,
                             int64_t width, float* out, bool streaming) {
  combine_f32([=](int64_t j) { return base + j * row_stride; }, w, taps, width, out, streaming);
}
#endif

template <typename in_t, typename out_t, typename acc_t>
inline void combine_rows_any(const in_t* base, int64_t row_stride, const acc_t* w, int64_t taps,
                             int64_t width, out_t* out) {
  switch (taps) {
    case 1: return combine_rows<1>(base, row_stride, w, taps, width, out);
    case 2: return combine_rows<2>(base, row_stride, w, taps, width, out);
    case 3: return combine_rows<3>(base, row_stride, w, taps, width, out);
    case 4: return combine_rows<4>(base, row_stride, w, taps, width, out);
    default:
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
      if constexpr (std::is_same_v<in_t, float> && std::is_same_v<out_t, float>)
        return combine_rows_f32(base, row_stride, w, taps, width, out, false);
#endif
      return combine_rows<0>(base, row_stride, w, taps, width, out);
  }
}

// Row combination into the final destination: non-temporal stores when `streaming` (float32).
template <typename in_t, typename out_t, typename acc_t>
inline void combine_rows_to_dst(const in_t* base, int64_t row_stride, const acc_t* w, int64_t taps,
                                int64_t width, out_t* out, bool streaming) {
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  if constexpr (std::is_same_v<in_t, float> && std::is_same_v<out_t, float>) {
    if (streaming) return combine_rows_f32(base, row_stride, w, taps, width, out, true);
  }
#endif
  (void)streaming;
  combine_rows_any(base, row_stride, w, taps, width, out);
}

// out[x] = sum_j w[j] * rows[j][x] for rows anywhere (slots of a ring buffer): float32 with register
// accumulators (combine_f32), other types in blocks of x that accumulate tap by tap like
// combine_rows<0>; the block is stored non-temporally when streaming.
template <typename out_t, typename acc_t>
inline void combine_row_pointers(const acc_t* const* rows, const acc_t* w, int64_t taps, int64_t width,
                                 out_t* out, bool streaming) {
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  if constexpr (std::is_same_v<acc_t, float> && std::is_same_v<out_t, float>)
    return combine_f32([=](int64_t j) { return rows[j]; }, w, taps, width, out, streaming);
#endif
  constexpr int64_t kBlock = 256;
  acc_t acc[kBlock];
  for (int64_t x0 = 0; x0 < width; x0 += kBlock) {
    const int64_t nb = std::min(kBlock, width - x0);
#pragma omp simd
    for (int64_t x = 0; x < nb; ++x) acc[x] = w[0] * rows[0][x0 + x];
    for (int64_t j = 1; j < taps; ++j) {
      const acc_t* row = rows[j] + x0;
      const acc_t wj = w[j];
#pragma omp simd
      for (int64_t x = 0; x < nb; ++x) acc[x] += wj * row[x];
    }
    const acc_t one = 1;  // a 1-tap combination of acc is a plain (possibly streaming) copy
    combine_rows_to_dst(acc, 0, &one, 1, nb, out + x0, streaming);
  }
}

// Work of a separable resampling (cpu/parallel.h): the source read, and each destination element's
// taps along both axes.
template <typename acc_t>
int64_t resample_work(const at::Tensor& src, const at::Tensor& dst, const AxisTable<acc_t>& th,
                      const AxisTable<acc_t>& tw) {
  return src.numel() + dst.numel() * (th.taps + tw.taps);
}

}  // namespace tconv::cpu::CPU_CAPABILITY
