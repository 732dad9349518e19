// The polyphase W gather of the separable resampling (float32, AVX-512; AVX2 below): integer-factor
// downsampling, the backward of x2 / x4 upsampling. The other vectorised gathers:
// cpu/gather_lanes.h, cpu/gather_rows_transposed.h.
//
// Integer-factor downsampling tables (the backward of an x2 or x4 upsampling with
// align_corners=False) are, away from the borders, one filter at stride f:
//   out[d] = sum_j w[j] * src[f * d + c + j],  d in [interior_lo, interior_hi).
// Split 16 * f consecutive sources into their f phases (P_r[l] = src[base + f * l + r], two or
// three permutes per phase), and every tap j = f * q + r is phase r shifted by q lanes (one
// permute): one FMA per tap per 16 outputs, no per-lane index tables. For f = 4 the taps are
// grouped by shift instead (gather_row_polyphase4_grouped). The borders keep the scalar sum.
#pragma once

#include <cstdint>
#include <vector>

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
#include <immintrin.h>
#endif

#include "common/upsample_tables.h"
#include "cpu/simd_loads.h"

namespace tconv::cpu::CPU_CAPABILITY {

struct PolyphasePlan {
  bool usable = false;
  int64_t factor = 0, offset = 0, interior_lo = 0, interior_hi = 0;
  std::vector<float> weight;  // the interior's taps
};

inline PolyphasePlan make_polyphase_plan(const AxisTable<float>& t) {
  PolyphasePlan p;
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  if (t.dst < 32) return p;
  const int64_t mid = t.dst / 2, f = t.start[mid + 1] - t.start[mid];
  if ((f != 2 && f != 4) || t.taps > 16 * f) return p;  // tap j reads lane j / f + l < 32
#if defined(TCONV_CPU_AVX2)
  // The AVX2 kernels fix the tap count at compile time: 2, 4, 8 (and 16 for f = 4).
  if (!(t.taps == 2 || t.taps == 4 || t.taps == 8 || (f == 4 && t.taps == 16))) return p;
#endif
  const int64_t c = t.start[mid] - f * mid;
  auto interior = [&](int64_t d) {
    if (t.start[d] != f * d + c) return false;
    for (int64_t j = 0; j < t.taps; ++j)
      if (t.weight[d * t.taps + j] != t.weight[mid * t.taps + j]) return false;
    return true;
  };
  int64_t lo = mid, hi = mid + 1;
  while (lo > 0 && interior(lo - 1)) --lo;
  while (hi < t.dst && interior(hi)) ++hi;
  if (hi - lo < 32) return p;
  p.factor = f, p.offset = c, p.interior_lo = lo, p.interior_hi = hi;
  p.weight.assign(t.weight.begin() + mid * t.taps, t.weight.begin() + (mid + 1) * t.taps);
  p.usable = true;
#else
  (void)t;
#endif
  return p;
}

#if defined(TCONV_CPU_AVX512)
// Phases r < F of the 16 * F sources at row + at (zeros past the row's end): x is split by
// permutes with gather_row_polyphase's phase indices.
template <int F>
inline void load_phases(const float* row, int64_t at, int64_t src, const __m512i (&idx)[F],
                        __m512 (&phase)[F]) {
  constexpr int L = kFloatLanes;
  __m512 x[F];
  for (int k = 0; k < F; ++k) x[k] = load_before(row, at + k * L, src);
  for (int r = 0; r < F; ++r) {
    if constexpr (F == 2) {
      phase[r] = _mm512_permutex2var_ps(x[0], idx[r], x[1]);
    } else {  // lanes 0-7 from x0:x1, lanes 8-15 from x2:x3
      phase[r] = _mm512_mask_blend_ps(__mmask16(0xFF00), _mm512_permutex2var_ps(x[0], idx[r], x[1]),
                                      _mm512_permutex2var_ps(x[2], idx[r], x[3]));
    }
  }
}

// Destination d of table t from its own taps, tap by tap: the polyphase kernels' borders.
inline float gather_scalar(const float* row, const AxisTable<float>& t, int64_t d) {
  const float* s = row + t.start[d];
  const float* w = t.weight.data() + d * t.taps;
  float acc = w[0] * s[0];
  for (int64_t j = 1; j < t.taps; ++j) acc += w[j] * s[j];
  return acc;
}

// One row: `row` holds t.src floats, `out` receives t.dst floats (table t, plan p from it). TAPS > 0
// fixes the tap count at compile time: the taps loop unrolls, every tap's phase and lane shift is a
// constant and the phases stay in registers. With a run-time count they are indexed in memory and
// the loop was latency-bound (~5 cycles per tap, perf: the FMA chain and its stack reloads).
template <int F, int TAPS>
inline void gather_row_polyphase(const float* row, const AxisTable<float>& t, const PolyphasePlan& p,
                                 float* out) {
  constexpr int L = kFloatLanes;
  for (int64_t d = 0; d < p.interior_lo; ++d) out[d] = gather_scalar(row, t, d);
  const int64_t taps = TAPS > 0 ? TAPS : t.taps;
  const float* weight = p.weight.data();
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  __m512i phase_idx[F];  // source f * l + r of 32 (F = 2) or, per half, of 2 x 32 (F = 4)
  for (int r = 0; r < F; ++r)
    phase_idx[r] = _mm512_and_si512(_mm512_add_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32(F)),
                                                     _mm512_set1_epi32(r)),
                                    _mm512_set1_epi32(31));
  __m512 cur[F], next[F];
  int64_t d0 = p.interior_lo;
  load_phases<F>(row, F * d0 + p.offset, t.src, phase_idx, cur);
  for (; d0 < p.interior_hi; d0 += L) {
    load_phases<F>(row, F * (d0 + L) + p.offset, t.src, phase_idx, next);
    __m512 acc = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int64_t j = 0; j < taps; ++j) {
      const int64_t q = j / F, r = j % F;
      // tap j of the 16 outputs: lanes q..q+15 of phase r over this block and the next
      const __m512 v = q == 0 ? cur[r]
                              : _mm512_permutex2var_ps(cur[r], _mm512_add_epi32(lane, _mm512_set1_epi32(int(q))),
                                                       next[r]);
      acc = j == 0 ? _mm512_mul_ps(_mm512_set1_ps(weight[0]), v)
                   : _mm512_fmadd_ps(_mm512_set1_ps(weight[j]), v, acc);
    }
    const int64_t left = p.interior_hi - d0;
    if (left >= L) _mm512_storeu_ps(out + d0, acc);
    else _mm512_mask_storeu_ps(out + d0, __mmask16((1u << left) - 1), acc);
    for (int r = 0; r < F; ++r) cur[r] = next[r];
  }
  for (int64_t d = p.interior_hi; d < t.dst; ++d) out[d] = gather_scalar(row, t, d);
}

// Lanes q..q+15 of the 32 lanes lo:hi, for a compile-time q (valignd).
template <int Q>
inline __m512 shift_lanes(__m512 lo, __m512 hi) {
  if constexpr (Q == 0) return lo;
  else return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), Q));
}

// Factor 4 (the backward of x4), TAPS a multiple of 4: the same filter with its taps grouped by
// lane shift. G_q = sum_r w[4q + r] * P_r sums the block's own phases (FMAs only), and the
// output is G_0 + sum_{q > 0} (G_q shifted by q lanes over this block and the next): TAPS / 4 - 1
// shifts and adds instead of a shift per tap, and the phases split in two rounds of 2-way
// deinterleaves (8 permutes, not 8 permutes and 4 blends). Bicubic x4 (16 taps): 30 vector
// operations per 16 outputs instead of 44. A fixed order per output, but not the scalar one of
// the borders (tap by tap): interior and border outputs round differently (<= 1 ulp per add).
template <int TAPS>
inline void gather_row_polyphase4_grouped(const float* row, const AxisTable<float>& t, const PolyphasePlan& p,
                                          float* out) {
  constexpr int L = kFloatLanes, F = 4, G = TAPS / F;
  static_assert(TAPS % F == 0 && G >= 1 && G <= 4, "1 to 4 groups: the sum below names each");
  for (int64_t d = 0; d < p.interior_lo; ++d) out[d] = gather_scalar(row, t, d);
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i even = _mm512_add_epi32(lane, lane), odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  __m512 w[TAPS];
  for (int j = 0; j < TAPS; ++j) w[j] = _mm512_set1_ps(p.weight[j]);
  // G_0..G_{G-1} of the 16 outputs whose sources start at row + at (zeros past the row's end).
  auto groups = [&](int64_t at, __m512 (&g)[G]) {
    __m512 x[F];
    for (int k = 0; k < F; ++k) x[k] = load_before(row, at + k * L, t.src);
    const __m512 e01 = _mm512_permutex2var_ps(x[0], even, x[1]), o01 = _mm512_permutex2var_ps(x[0], odd, x[1]);
    const __m512 e23 = _mm512_permutex2var_ps(x[2], even, x[3]), o23 = _mm512_permutex2var_ps(x[2], odd, x[3]);
    const __m512 ph[F] = {_mm512_permutex2var_ps(e01, even, e23), _mm512_permutex2var_ps(o01, even, o23),
                          _mm512_permutex2var_ps(e01, odd, e23), _mm512_permutex2var_ps(o01, odd, o23)};
    for (int q = 0; q < G; ++q) {
      __m512 acc = _mm512_mul_ps(w[F * q], ph[0]);
      for (int r = 1; r < F; ++r) acc = _mm512_fmadd_ps(w[F * q + r], ph[r], acc);
      g[q] = acc;
    }
  };
  __m512 cur[G], next[G];
  int64_t d0 = p.interior_lo;
  groups(F * d0 + p.offset, cur);
  for (; d0 < p.interior_hi; d0 += L) {
    groups(F * (d0 + L) + p.offset, next);
    __m512 acc = cur[0];
    if constexpr (G > 1) acc = _mm512_add_ps(acc, shift_lanes<1>(cur[1], next[1]));
    if constexpr (G > 2) acc = _mm512_add_ps(acc, shift_lanes<2>(cur[2], next[2]));
    if constexpr (G > 3) acc = _mm512_add_ps(acc, shift_lanes<3>(cur[3], next[3]));
    const int64_t left = p.interior_hi - d0;
    if (left >= L) _mm512_storeu_ps(out + d0, acc);
    else _mm512_mask_storeu_ps(out + d0, __mmask16((1u << left) - 1), acc);
    for (int q = 0; q < G; ++q) cur[q] = next[q];
  }
  for (int64_t d = p.interior_hi; d < t.dst; ++d) out[d] = gather_scalar(row, t, d);
}

// The tap counts of the backward of x2 / x4 bilinear and bicubic (4, 8, 8, 16) at compile time.
inline void gather_row_polyphase_any(const float* row, const AxisTable<float>& t, const PolyphasePlan& p,
                                     float* out) {
  if (p.factor == 2) {
    switch (t.taps) {
      case 4: return gather_row_polyphase<2, 4>(row, t, p, out);
      case 8: return gather_row_polyphase<2, 8>(row, t, p, out);
      default: return gather_row_polyphase<2, 0>(row, t, p, out);
    }
  }
  switch (t.taps) {
    case 8: return gather_row_polyphase4_grouped<8>(row, t, p, out);
    case 16: return gather_row_polyphase4_grouped<16>(row, t, p, out);
    default: return gather_row_polyphase<4, 0>(row, t, p, out);
  }
}
#elif defined(TCONV_CPU_AVX2)
inline float gather_scalar(const float* row, const AxisTable<float>& t, int64_t d) {
  const float* s = row + t.start[d];
  const float* w = t.weight.data() + d * t.taps;
  float acc = w[0] * s[0];
  for (int64_t j = 1; j < t.taps; ++j) acc += w[j] * s[j];
  return acc;
}

// Lanes q..q+7 of the 16 lanes lo:hi: a 128-bit lane swap and a byte align (no valignd in AVX2).
template <int Q>
inline __m256 shift_lanes(__m256 lo, __m256 hi) {
  if constexpr (Q == 0) return lo;
  else {
    const __m256 mid = _mm256_permute2f128_ps(lo, hi, 0x21);  // lanes 4..11
    if constexpr (Q == 4) return mid;
    else if constexpr (Q < 4)
      return _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(mid), _mm256_castps_si256(lo), 4 * Q));
    else
      return _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(hi), _mm256_castps_si256(mid), 4 * (Q - 4)));
  }
}

// Taps J.. of the 8 outputs, tap by tap (tap 0 first): tap j = F q + r is phase r shifted by q.
template <int F, int TAPS, int J = 0>
inline __m256 sum_phase_taps(const __m256 (&cur)[F], const __m256 (&next)[F], const float* w, __m256 acc) {
  if constexpr (J == TAPS) {
    return acc;
  } else {
    const __m256 v = shift_lanes<J / F>(cur[J % F], next[J % F]);
    acc = J == 0 ? _mm256_mul_ps(_mm256_set1_ps(w[0]), v) : _mm256_fmadd_ps(_mm256_set1_ps(w[J]), v, acc);
    return sum_phase_taps<F, TAPS, J + 1>(cur, next, w, acc);
  }
}

// Factor 2, TAPS taps (2, 4 or 8): phases by vshufps (even / odd within 128-bit lanes) and vpermpd.
template <int TAPS>
inline void gather_row_polyphase2(const float* row, const AxisTable<float>& t, const PolyphasePlan& p, float* out) {
  constexpr int L = 8, F = 2;
  for (int64_t d = 0; d < p.interior_lo; ++d) out[d] = gather_scalar(row, t, d);
  auto phases = [&](int64_t at, __m256 (&ph)[F]) {
    const __m256 x0 = load_before(row, at, t.src), x1 = load_before(row, at + L, t.src);
    ph[0] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(x0, x1, 0x88)), 0xD8));
    ph[1] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(x0, x1, 0xDD)), 0xD8));
  };
  __m256 cur[F], next[F];
  int64_t d0 = p.interior_lo;
  phases(F * d0 + p.offset, cur);
  for (; d0 < p.interior_hi; d0 += L) {
    phases(F * (d0 + L) + p.offset, next);
    const __m256 acc = sum_phase_taps<F, TAPS>(cur, next, p.weight.data(), _mm256_setzero_ps());
    const int64_t left = p.interior_hi - d0;
    if (left >= L) _mm256_storeu_ps(out + d0, acc);
    else _mm256_maskstore_ps(out + d0, lanes_below(left), acc);
    for (int r = 0; r < F; ++r) cur[r] = next[r];
  }
  for (int64_t d = p.interior_hi; d < t.dst; ++d) out[d] = gather_scalar(row, t, d);
}

// Factor 4 with the AVX-512 path's grouping by lane shift (same order of sums), TAPS 2, 4, 8 or 16
// (below 4: one group, tap by tap). Two rounds of in-lane vshufps leave every phase in the lane
// order 0 2 4 6 1 3 5 7; each group is put in order once (one vpermps), not each phase.
template <int TAPS>
inline void gather_row_polyphase4_grouped(const float* row, const AxisTable<float>& t, const PolyphasePlan& p,
                                          float* out) {
  constexpr int L = 8, F = 4, G = (TAPS + F - 1) / F, R = TAPS < F ? TAPS : F;
  static_assert((TAPS % F == 0 || TAPS < F) && G >= 1 && G <= 4, "1 to 4 groups: the sum below names each");
  for (int64_t d = 0; d < p.interior_lo; ++d) out[d] = gather_scalar(row, t, d);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256 w[TAPS];
  for (int j = 0; j < TAPS; ++j) w[j] = _mm256_set1_ps(p.weight[j]);
  auto groups = [&](int64_t at, __m256 (&g)[G]) {
    __m256 x[F];
    for (int k = 0; k < F; ++k) x[k] = load_before(row, at + k * L, t.src);
    const __m256 e01 = _mm256_shuffle_ps(x[0], x[1], 0x88), o01 = _mm256_shuffle_ps(x[0], x[1], 0xDD);
    const __m256 e23 = _mm256_shuffle_ps(x[2], x[3], 0x88), o23 = _mm256_shuffle_ps(x[2], x[3], 0xDD);
    const __m256 ph[F] = {_mm256_shuffle_ps(e01, e23, 0x88), _mm256_shuffle_ps(o01, o23, 0x88),
                          _mm256_shuffle_ps(e01, e23, 0xDD), _mm256_shuffle_ps(o01, o23, 0xDD)};
    for (int q = 0; q < G; ++q) {
      __m256 acc = _mm256_mul_ps(w[F * q], ph[0]);
      for (int r = 1; r < R; ++r) acc = _mm256_fmadd_ps(w[F * q + r], ph[r], acc);
      g[q] = _mm256_permutevar8x32_ps(acc, order);
    }
  };
  __m256 cur[G], next[G];
  int64_t d0 = p.interior_lo;
  groups(F * d0 + p.offset, cur);
  for (; d0 < p.interior_hi; d0 += L) {
    groups(F * (d0 + L) + p.offset, next);
    __m256 acc = cur[0];
    if constexpr (G > 1) acc = _mm256_add_ps(acc, shift_lanes<1>(cur[1], next[1]));
    if constexpr (G > 2) acc = _mm256_add_ps(acc, shift_lanes<2>(cur[2], next[2]));
    if constexpr (G > 3) acc = _mm256_add_ps(acc, shift_lanes<3>(cur[3], next[3]));
    const int64_t left = p.interior_hi - d0;
    if (left >= L) _mm256_storeu_ps(out + d0, acc);
    else _mm256_maskstore_ps(out + d0, lanes_below(left), acc);
    for (int q = 0; q < G; ++q) cur[q] = next[q];
  }
  for (int64_t d = p.interior_hi; d < t.dst; ++d) out[d] = gather_scalar(row, t, d);
}

// The tap counts make_polyphase_plan accepts on AVX2.
inline void gather_row_polyphase_any(const float* row, const AxisTable<float>& t, const PolyphasePlan& p,
                                     float* out) {
  if (p.factor == 2) {
    switch (t.taps) {
      case 2: return gather_row_polyphase2<2>(row, t, p, out);
      case 4: return gather_row_polyphase2<4>(row, t, p, out);
      default: return gather_row_polyphase2<8>(row, t, p, out);
    }
  }
  switch (t.taps) {
    case 2: return gather_row_polyphase4_grouped<2>(row, t, p, out);
    case 4: return gather_row_polyphase4_grouped<4>(row, t, p, out);
    case 8: return gather_row_polyphase4_grouped<8>(row, t, p, out);
    default: return gather_row_polyphase4_grouped<16>(row, t, p, out);
  }
}
#endif

}  // namespace tconv::cpu::CPU_CAPABILITY
