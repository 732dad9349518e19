// The lane-window W gather of the separable resampling (float32, AVX-512; AVX2 below each AVX-512
// part): out[d] = sum_j w[d, j] * row[start[d] + j] for 16 destinations at a time (AVX2: 8). The
// other vectorised gathers: cpu/gather_polyphase.h, cpu/gather_rows_transposed.h.
//
// A scalar gather loads each tap separately, which made the contiguous layout's W pass 3x slower
// than the vectorised row combination. But consecutive destinations read nearby sources: the 16 of
// an upsampling read a window of at most 32, so two vector loads of the window and one in-register
// permutation per tap (vpermt2ps) replace 16 x taps scalar loads. A downsampling (the backward's
// transposed tables) spreads wider, so a block of 16 lanes is split into groups of 8 or 4 lanes,
// each with its own 32-source window, merged under lane masks. The windows, permutation indices
// and weights are precomputed once per call from the AxisTable (a "lane plan"); tables whose
// 4-lane groups span more than 32 sources keep the scalar gather. The sum order per destination
// is the scalar one (tap 0 first), so both give the same floats.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
#include <immintrin.h>
#endif

#include "common/int_math.h"
#include "common/upsample_tables.h"
#include "cpu/simd_loads.h"
#include "cpu/streaming_store.h"

namespace tconv::cpu::CPU_CAPABILITY {

struct GatherLanePlan {
  // AVX2: 8 lanes; a window is two vectors, picked by two vpermps and a blend on index bit 3.
  static constexpr int kLanes = kFloatLanes, kWindow = 2 * kFloatLanes;
  bool usable = false;
  // AVX2: every index < 8, so a window is one vector and a tap one vpermps (x2 / x4 upsampling).
  bool narrow = false;
  int64_t taps = 0, dst = 0, src = 0, group = kLanes;  // lanes per window: 16, 8 or 4 (AVX2: 8 or 4)
  std::vector<int64_t> window;  // per (block, group): first source of its window, -1 past dst
  std::vector<int32_t> index;   // (block, tap, lane): source - window, in [0, kWindow)
  std::vector<float> weight;    // (block, tap, lane); 0 for lanes past dst
  // Blocks [uniform_lo, uniform_hi) of one 16-lane window share block uniform_lo's indices and
  // weights, their windows `step` sources apart (an integer-factor upsampling away from the
  // borders): the indices and weights can stay in registers.
  int64_t uniform_lo = 0, uniform_hi = 0, step = 0;
};

inline GatherLanePlan make_gather_lane_plan(const AxisTable<float>& t) {
  GatherLanePlan p;
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  constexpr int L = GatherLanePlan::kLanes;
  auto spans_fit = [&](int64_t group) {  // start is non-decreasing: a group's span is last - first
    for (int64_t d0 = 0; d0 < t.dst; d0 += group) {
      const int64_t d1 = std::min(t.dst, d0 + group);
      if (t.start[d1 - 1] + t.taps - t.start[d0] > GatherLanePlan::kWindow) return false;
    }
    return true;
  };
  int64_t group = L;
  while (group >= 4 && !spans_fit(group)) group /= 2;
  if (group < 4) return p;
  const int64_t blocks = ceil_div(t.dst, L), groups = L / group;
  p.taps = t.taps, p.dst = t.dst, p.src = t.src, p.group = group;
  p.window.assign(blocks * groups, -1);
  p.index.assign(blocks * t.taps * L, 0);
  p.weight.assign(blocks * t.taps * L, 0.f);
  for (int64_t d0 = 0; d0 < t.dst; d0 += group) {
    const int64_t w0 = t.start[d0], b = d0 / L;
    p.window[d0 / group] = w0;
    for (int64_t d = d0; d < std::min(t.dst, d0 + group); ++d)
      for (int64_t j = 0; j < t.taps; ++j) {
        const int64_t k = (b * t.taps + j) * L + (d - b * L);
        p.index[k] = int32_t(t.start[d] + j - w0);
        p.weight[k] = t.weight[d * t.taps + j];
      }
  }
  p.usable = true;
  p.narrow = *std::max_element(p.index.begin(), p.index.end()) < 8;
  if (group == L && blocks >= 3) {
    const int64_t mid = blocks / 2, step = p.window[mid + 1] - p.window[mid], n = t.taps * L;
    auto same = [&](int64_t b) {
      return b * L + L <= t.dst && p.window[b] == p.window[mid] + (b - mid) * step &&
             std::equal(p.index.begin() + b * n, p.index.begin() + (b + 1) * n, p.index.begin() + mid * n) &&
             std::equal(p.weight.begin() + b * n, p.weight.begin() + (b + 1) * n, p.weight.begin() + mid * n);
    };
    if (same(mid)) {
      int64_t lo = mid, hi = mid + 1;
      while (lo > 0 && same(lo - 1)) --lo;
      while (hi < blocks && same(hi)) ++hi;
      p.uniform_lo = lo, p.uniform_hi = hi, p.step = step;
    }
  }
#else
  (void)t;
#endif
  return p;
}

#if defined(TCONV_CPU_AVX512)
// acc (lanes in `lanes`) = sum_j w_j * window[idx_j] for one group's 32-source window at row + w0.
template <int TAPS>
inline __m512 gather_group(const float* row, int64_t w0, int64_t src, const int32_t* idx,
                           const float* w, int64_t taps, __mmask16 lanes, __m512 acc) {
  constexpr int L = GatherLanePlan::kLanes;
  const int64_t avail = src - w0;  // sources left from the window start
  // The window may run past the row's end; lanes there are never indexed (start <= src - taps).
  // Both masks from one count: 4% faster in cache than two load_before calls on this hot path.
  const __mmask16 lo_mask = avail >= L ? __mmask16(0xFFFF) : __mmask16((1u << avail) - 1);
  const __mmask16 hi_mask = avail >= 2 * L ? __mmask16(0xFFFF)
                            : avail > L    ? __mmask16((1u << (avail - L)) - 1)
                                           : __mmask16(0);
  const __m512 lo = _mm512_maskz_loadu_ps(lo_mask, row + w0);
  const __m512 hi = _mm512_maskz_loadu_ps(hi_mask, row + w0 + L);
  acc = _mm512_mask_mul_ps(acc, lanes, _mm512_loadu_ps(w),
                           _mm512_permutex2var_ps(lo, _mm512_loadu_si512(idx), hi));
  for (int64_t j = 1; j < (TAPS > 0 ? TAPS : taps); ++j) {
    const __m512 v = _mm512_permutex2var_ps(lo, _mm512_loadu_si512(idx + j * L), hi);
    acc = _mm512_mask3_fmadd_ps(_mm512_loadu_ps(w + j * L), v, acc, lanes);
  }
  return acc;
}

// The blocks [p.uniform_lo, p.uniform_hi) (one 16-lane window per block): their shared indices and
// weights are loaded once, and each block is two loads, TAPS permutes and FMAs.
template <int TAPS>
inline void gather_blocks_uniform(const float* row, const GatherLanePlan& p, float* out, bool streaming) {
  constexpr int L = GatherLanePlan::kLanes;
  __m512i idx[TAPS];
  __m512 w[TAPS];
  for (int j = 0; j < TAPS; ++j) {
    idx[j] = _mm512_loadu_si512(p.index.data() + (p.uniform_lo * TAPS + j) * L);
    w[j] = _mm512_loadu_ps(p.weight.data() + (p.uniform_lo * TAPS + j) * L);
  }
  int64_t w0 = p.window[p.uniform_lo];
  for (int64_t b = p.uniform_lo; b < p.uniform_hi; ++b, w0 += p.step) {
    __m512 lo, hi;
    if (w0 + 2 * L <= p.src) {  // the common case: plain loads, no masks
      lo = _mm512_loadu_ps(row + w0), hi = _mm512_loadu_ps(row + w0 + L);
    } else {
      lo = load_before(row, w0, p.src), hi = load_before(row, w0 + L, p.src);
    }
    __m512 acc = _mm512_mul_ps(w[0], _mm512_permutex2var_ps(lo, idx[0], hi));
    for (int j = 1; j < TAPS; ++j) acc = _mm512_fmadd_ps(w[j], _mm512_permutex2var_ps(lo, idx[j], hi), acc);
    store_floats(out + b * L, acc, streaming);
  }
}

// One row: `row` holds plan.src floats, `out` receives plan.dst floats (whole vectors non-temporally
// when `streaming`, store_floats; the caller fences).
template <int TAPS>
inline void gather_row_lanes(const float* row, const GatherLanePlan& p, float* out, bool streaming) {
  constexpr int L = GatherLanePlan::kLanes;
  const int64_t taps = TAPS > 0 ? TAPS : p.taps;
  const int64_t blocks = ceil_div(p.dst, L), groups = L / p.group;
  const __mmask16 group_lanes = __mmask16((1u << p.group) - 1);
  for (int64_t b = 0; b < blocks; ++b) {
    if constexpr (TAPS > 0) {
      if (b == p.uniform_lo && p.uniform_hi > b) {
        gather_blocks_uniform<TAPS>(row, p, out, streaming);
        b = p.uniform_hi - 1;
        continue;
      }
    }
    const int32_t* idx = p.index.data() + b * taps * L;
    const float* w = p.weight.data() + b * taps * L;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t w0 = p.window[b * groups + g];
      if (w0 < 0) break;  // past dst
      acc = gather_group<TAPS>(row, w0, p.src, idx, w, taps, __mmask16(group_lanes << (g * p.group)), acc);
    }
    const int64_t left = p.dst - b * L;
    if (left >= L) store_floats(out + b * L, acc, streaming);
    else _mm512_mask_storeu_ps(out + b * L, __mmask16((1u << left) - 1), acc);
  }
}

inline void gather_row_lanes_any(const float* row, const GatherLanePlan& p, float* out, bool streaming) {
  switch (p.taps) {
    case 1: return gather_row_lanes<1>(row, p, out, streaming);
    case 2: return gather_row_lanes<2>(row, p, out, streaming);
    case 4: return gather_row_lanes<4>(row, p, out, streaming);
    default: return gather_row_lanes<0>(row, p, out, streaming);
  }
}
#elif defined(TCONV_CPU_AVX2)
// window[idx] for a 16-source window lo:hi (bit 3 of idx picks hi), or an 8-source one (NARROW).
template <bool NARROW>
inline __m256 pick(__m256 lo, __m256 hi, __m256i idx) {
  const __m256 v = _mm256_permutevar8x32_ps(lo, idx);
  if constexpr (NARROW) return v;
  else
    return _mm256_blendv_ps(v, _mm256_permutevar8x32_ps(hi, idx), _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// sum_j w_j * window[idx_j] for one group's window at row + w0 (all 8 lanes; the caller keeps the
// group's).
template <int TAPS, bool NARROW>
inline __m256 gather_group(const float* row, int64_t w0, int64_t src, const int32_t* idx, const float* w,
                           int64_t taps) {
  constexpr int L = GatherLanePlan::kLanes;
  const __m256 lo = load_before(row, w0, src);
  const __m256 hi = NARROW ? lo : load_before(row, w0 + L, src);
  auto tap = [&](int64_t j) {
    return pick<NARROW>(lo, hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + j * L)));
  };
  __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(w), tap(0));
  for (int64_t j = 1; j < (TAPS > 0 ? TAPS : taps); ++j) acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + j * L), tap(j), acc);
  return acc;
}

// The uniform blocks (see the AVX-512 gather_blocks_uniform), 8 lanes each.
template <int TAPS, bool NARROW>
inline void gather_blocks_uniform(const float* row, const GatherLanePlan& p, float* out, bool streaming) {
  constexpr int L = GatherLanePlan::kLanes, W = NARROW ? L : 2 * L;
  __m256i idx[TAPS];
  __m256 w[TAPS];
  for (int j = 0; j < TAPS; ++j) {
    idx[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.index.data() + (p.uniform_lo * TAPS + j) * L));
    w[j] = _mm256_loadu_ps(p.weight.data() + (p.uniform_lo * TAPS + j) * L);
  }
  int64_t w0 = p.window[p.uniform_lo];
  for (int64_t b = p.uniform_lo; b < p.uniform_hi; ++b, w0 += p.step) {
    __m256 lo, hi;
    if (w0 + W <= p.src) {  // the common case: plain loads
      lo = _mm256_loadu_ps(row + w0), hi = NARROW ? lo : _mm256_loadu_ps(row + w0 + L);
    } else {
      lo = load_before(row, w0, p.src), hi = NARROW ? lo : load_before(row, w0 + L, p.src);
    }
    __m256 acc = _mm256_mul_ps(w[0], pick<NARROW>(lo, hi, idx[0]));
    for (int j = 1; j < TAPS; ++j) acc = _mm256_fmadd_ps(w[j], pick<NARROW>(lo, hi, idx[j]), acc);
    store_floats(out + b * L, acc, streaming);
  }
}

template <int TAPS, bool NARROW>
inline void gather_row_lanes(const float* row, const GatherLanePlan& p, float* out, bool streaming) {
  constexpr int L = GatherLanePlan::kLanes;
  const int64_t taps = TAPS > 0 ? TAPS : p.taps;
  const int64_t blocks = ceil_div(p.dst, L), groups = L / p.group;
  const __m256 first_group = _mm256_castsi256_ps(lanes_below(p.group));
  for (int64_t b = 0; b < blocks; ++b) {
    if constexpr (TAPS > 0) {
      if (b == p.uniform_lo && p.uniform_hi > b) {
        gather_blocks_uniform<TAPS, NARROW>(row, p, out, streaming);
        b = p.uniform_hi - 1;
        continue;
      }
    }
    const int32_t* idx = p.index.data() + b * taps * L;
    const float* w = p.weight.data() + b * taps * L;
    __m256 acc = gather_group<TAPS, NARROW>(row, p.window[b * groups], p.src, idx, w, taps);
    if (groups == 2 && p.window[b * groups + 1] >= 0)  // lanes 4-7 from the second window
      acc = _mm256_blendv_ps(gather_group<TAPS, NARROW>(row, p.window[b * groups + 1], p.src, idx, w, taps), acc,
                             first_group);
    const int64_t left = p.dst - b * L;
    if (left >= L) store_floats(out + b * L, acc, streaming);
    else _mm256_maskstore_ps(out + b * L, lanes_below(left), acc);
  }
}

template <bool NARROW>
inline void gather_row_lanes_taps(const float* row, const GatherLanePlan& p, float* out, bool streaming) {
  switch (p.taps) {
    case 1: return gather_row_lanes<1, NARROW>(row, p, out, streaming);
    case 2: return gather_row_lanes<2, NARROW>(row, p, out, streaming);
    case 4: return gather_row_lanes<4, NARROW>(row, p, out, streaming);
    default: return gather_row_lanes<0, NARROW>(row, p, out, streaming);
  }
}

inline void gather_row_lanes_any(const float* row, const GatherLanePlan& p, float* out, bool streaming) {
  if (p.narrow) return gather_row_lanes_taps<true>(row, p, out, streaming);
  gather_row_lanes_taps<false>(row, p, out, streaming);
}
#endif

}  // namespace tconv::cpu::CPU_CAPABILITY
