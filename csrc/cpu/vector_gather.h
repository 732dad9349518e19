// Vectorised row gather of the separable resampling (float32, AVX-512; AVX2 below each AVX-512
// part): out[d] = sum_j w[d, j] * row[start[d] + j] for 16 destinations at a time (AVX2: 8).
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

#include "common/upsample_tables.h"
#include "cpu/simd_transpose.h"

namespace tconv::cpu::CPU_CAPABILITY {

struct GatherLanePlan {
#if defined(TCONV_CPU_AVX2)
  // 8 lanes; a window is two vectors, picked by two vpermps and a blend on index bit 3.
  static constexpr int kLanes = 8, kWindow = 16;
#else
  static constexpr int kLanes = 16, kWindow = 32;
#endif
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
  const int64_t blocks = (t.dst + L - 1) / L, groups = L / group;
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
// The 16 floats at row + at, zeros at and past row + src: windows and phase blocks may run past the
// row's end, where no lane reads (a table's starts are at most src - taps).
inline __m512 load_before(const float* row, int64_t at, int64_t src) {
  constexpr int L = GatherLanePlan::kLanes;
  const int64_t avail = src - at;
  const __mmask16 m = avail >= L ? __mmask16(0xFFFF) : avail <= 0 ? __mmask16(0) : __mmask16((1u << avail) - 1);
  return _mm512_maskz_loadu_ps(m, row + at);
}

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
inline void gather_blocks_uniform(const float* row, const GatherLanePlan& p, float* out) {
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
    _mm512_storeu_ps(out + b * L, acc);
  }
}

// One row: `row` holds plan.src floats, `out` receives plan.dst floats.
template <int TAPS>
inline void gather_row_lanes(const float* row, const GatherLanePlan& p, float* out) {
  constexpr int L = GatherLanePlan::kLanes;
  const int64_t taps = TAPS > 0 ? TAPS : p.taps;
  const int64_t blocks = (p.dst + L - 1) / L, groups = L / p.group;
  const __mmask16 group_lanes = __mmask16((1u << p.group) - 1);
  for (int64_t b = 0; b < blocks; ++b) {
    if constexpr (TAPS > 0) {
      if (b == p.uniform_lo && p.uniform_hi > b) {
        gather_blocks_uniform<TAPS>(row, p, out);
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
    if (left >= L) _mm512_storeu_ps(out + b * L, acc);
    else _mm512_mask_storeu_ps(out + b * L, __mmask16((1u << left) - 1), acc);
  }
}

// 16 rows at once, for tables whose sources spread too wide for the lane windows (downsampling:
// the backward of an x2-x4 upsampling). Transposed, the 16 rows become 16-float pixel vectors and
// the gather is one FMA per tap per 16 rows, as in the channels_last layout:
//   dst[r * dst_stride + d] = sum_j w[d, j] * src[r * src_stride + start[d] + j],  r < 16.
// scratch holds (t.src + t.dst) * 16 floats. Same sum order as the per-row gathers.
inline void gather_16_rows_transposed(const float* src, int64_t src_stride, const AxisTable<float>& t,
                                      float* dst, int64_t dst_stride, float* scratch) {
  constexpr int L = GatherLanePlan::kLanes;
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

inline void gather_row_lanes_any(const float* row, const GatherLanePlan& p, float* out) {
  switch (p.taps) {
    case 1: return gather_row_lanes<1>(row, p, out);
    case 2: return gather_row_lanes<2>(row, p, out);
    case 4: return gather_row_lanes<4>(row, p, out);
    default: return gather_row_lanes<0>(row, p, out);
  }
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
inline void gather_blocks_uniform(const float* row, const GatherLanePlan& p, float* out) {
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
    _mm256_storeu_ps(out + b * L, acc);
  }
}

template <int TAPS, bool NARROW>
inline void gather_row_lanes(const float* row, const GatherLanePlan& p, float* out) {
  constexpr int L = GatherLanePlan::kLanes;
  const int64_t taps = TAPS > 0 ? TAPS : p.taps;
  const int64_t blocks = (p.dst + L - 1) / L, groups = L / p.group;
  const __m256 first_group = _mm256_castsi256_ps(lanes_below(p.group));
  for (int64_t b = 0; b < blocks; ++b) {
    if constexpr (TAPS > 0) {
      if (b == p.uniform_lo && p.uniform_hi > b) {
        gather_blocks_uniform<TAPS, NARROW>(row, p, out);
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
    if (left >= L) _mm256_storeu_ps(out + b * L, acc);
    else _mm256_maskstore_ps(out + b * L, lanes_below(left), acc);
  }
}

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
  constexpr int L = GatherLanePlan::kLanes;
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

template <bool NARROW>
inline void gather_row_lanes_taps(const float* row, const GatherLanePlan& p, float* out) {
  switch (p.taps) {
    case 1: return gather_row_lanes<1, NARROW>(row, p, out);
    case 2: return gather_row_lanes<2, NARROW>(row, p, out);
    case 4: return gather_row_lanes<4, NARROW>(row, p, out);
    default: return gather_row_lanes<0, NARROW>(row, p, out);
  }
}

inline void gather_row_lanes_any(const float* row, const GatherLanePlan& p, float* out) {
  if (p.narrow) return gather_row_lanes_taps<true>(row, p, out);
  gather_row_lanes_taps<false>(row, p, out);
}
#endif

// Integer-factor downsampling tables (the backward of an x2 or x4 upsampling with
// align_corners=False) are, away from the borders, one filter at stride f:
//   out[d] = sum_j w[j] * src[f * d + c + j],  d in [interior_lo, interior_hi).
// Split 16 * f consecutive sources into their f phases (P_r[l] = src[base + f * l + r], two or
// three permutes per phase), and every tap j = f * q + r is phase r shifted by q lanes (one
// permute): one FMA per tap per 16 outputs, no per-lane index tables. For f = 4 the taps are
// grouped by shift instead (gather_row_polyphase4_grouped). The borders keep the scalar sum.
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
  constexpr int L = GatherLanePlan::kLanes;
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
  constexpr int L = GatherLanePlan::kLanes;
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
  constexpr int L = GatherLanePlan::kLanes, F = 4, G = TAPS / F;
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
