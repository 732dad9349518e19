// CPU kernel shared by the upsampling forward and backward: dst = Th * src * Tw^T for every (n, c)
// plane, where Th and Tw are AxisTables (common/upsample_tables.h). The forward passes the
// interpolation tables, the backward their transposes (a gather), so one kernel serves both.
//
// Each destination element is a fixed-order sum computed by exactly one thread, whatever the
// partition, so results are bitwise identical across runs and thread counts. Intermediates are
// acc_t (float for half/bfloat16).
//
// channels_last (N, H, W, C): per destination row, combine the taps' source rows into one acc_t row
// (vectorised along W*C), then each destination pixel sums its taps' C-vectors (vectorised along C);
// or, when that would re-read source rows from memory (wide backward tables), resample each source
// row along W once into a ring and combine ring rows.
// contiguous (N, C, H, W): per plane and block of destination rows, either first resample the
// needed source rows along W (a gather) and then combine rows (vectorised along W), or the
// reverse, whichever costs less; float32 gathers are vectorised (cpu/vector_gather.h).
// Destinations of 32 MiB and more are written with non-temporal stores (float32).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/upsample_tables.h"
#include "cpu/finite.h"
#include "cpu/parallel.h"
#include "cpu/vector_gather.h"

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

// Destinations of this size or more (the L3 of a typical server core complex) are written with
// non-temporal stores where a kernel supports them: they would not stay cached anyway.
constexpr size_t kStreamingBytes = size_t(32) << 20;

// Orders a thread's non-temporal stores before the parallel region ends and others may read them.
inline void streaming_fence() {
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  _mm_sfence();
#endif
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

// Contiguous rows: out[d] = sum_j w[d, j] * row[start[d] + j] (a gather along W).
template <int TAPS, typename in_t, typename out_t, typename acc_t>
inline void gather_row(const in_t* row, const AxisTable<acc_t>& t, out_t* __restrict out) {
  const int64_t taps = TAPS > 0 ? TAPS : t.taps;
  const int64_t* start = t.start.data();
  const acc_t* w = t.weight.data();
  for (int64_t d = 0; d < t.dst; ++d) {
    const in_t* s = row + start[d];
    const acc_t* wd = w + d * taps;
    acc_t acc = wd[0] * static_cast<acc_t>(s[0]);
    for (int64_t j = 1; j < taps; ++j) acc += wd[j] * static_cast<acc_t>(s[j]);
    out[d] = static_cast<out_t>(acc);
  }
}

template <typename in_t, typename out_t, typename acc_t>
inline void gather_row_any(const in_t* row, const AxisTable<acc_t>& t, out_t* out) {
  switch (t.taps) {
    case 1: return gather_row<1>(row, t, out);
    case 2: return gather_row<2>(row, t, out);
    case 4: return gather_row<4>(row, t, out);
    default: return gather_row<0>(row, t, out);
  }
}

// Channels-last rows of C-vectors: out[d, :] = sum_j w[d, j] * row[start[d] + j, :].
template <typename in_t, typename out_t, typename acc_t>
inline void gather_pixels(const in_t* row, int64_t C, const AxisTable<acc_t>& t, out_t* out,
                          bool streaming) {
  for (int64_t d = 0; d < t.dst; ++d)
    combine_rows_to_dst(row + t.start[d] * C, C, t.weight.data() + d * t.taps, t.taps, C, out + d * C,
                        streaming);
}

// Whether any source row a kernel reads holds Inf or NaN (the forward then redoes the op with
// PyTorch's unmerged taps, see cpu/upsample.cpp). Each row is checked right after the kernel read
// it, from cache: a separate scan would read the whole input from memory once more (1/8 of the
// traffic of an x2 upsampling). Null `seen`: nothing is checked (the backward).
template <typename scalar_t>
struct NonfiniteWatch {
  std::atomic<bool>* seen = nullptr;
  bool bad = false;  // this thread's finding, published by flush()

  void check(const scalar_t* rows, int64_t n) {
    if (seen != nullptr && !bad) bad = !span_finite(rows, n);
  }
  void flush() {
    if (bad) seen->store(true, std::memory_order_relaxed);
  }
};

// Work of a separable resampling (cpu/parallel.h): the source read, and each destination element's
// taps along both axes.
template <typename acc_t>
int64_t resample_work(const at::Tensor& src, const at::Tensor& dst, const AxisTable<acc_t>& th,
                      const AxisTable<acc_t>& tw) {
  return src.numel() + dst.numel() * (th.taps + tw.taps);
}

// channels_last, rows first: per destination row, combine its taps' source rows into one acc_t row
// (vectorised along W*C), then each destination pixel sums its taps' C-vectors.
template <typename scalar_t>
void resample_channels_last_rows_first(const at::Tensor& src, at::Tensor& dst,
                                       const AxisTable<at::opmath_type<scalar_t>>& th,
                                       const AxisTable<at::opmath_type<scalar_t>>& tw, bool streaming,
                                       std::atomic<bool>* nonfinite) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = src.size(0), C = src.size(1);
  const int64_t src_row = tw.src * C, dst_row = tw.dst * C;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  parallel_for_work(0, N * th.dst, resample_work(src, dst, th, tw), [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> rows(new acc_t[src_row]);
    NonfiniteWatch<scalar_t> watch{nonfinite};
    int64_t checked_n = -1, checked_lo = 0, checked_hi = 0;  // source rows already checked
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / th.dst, d = task % th.dst;
      const scalar_t* base = sp + (n * th.src + th.start[d]) * src_row;
      combine_rows_any(base, src_row, th.weight.data() + d * th.taps, th.taps, src_row, rows.get());
      const int64_t lo = th.start[d], hi = lo + th.taps;
      if (n == checked_n && lo >= checked_lo && lo <= checked_hi) {  // extends the checked range
        if (hi > checked_hi) watch.check(sp + (n * th.src + checked_hi) * src_row, (hi - checked_hi) * src_row);
        checked_hi = std::max(checked_hi, hi);
      } else {
        watch.check(base, th.taps * src_row);
        checked_n = n, checked_lo = lo, checked_hi = hi;
      }
      gather_pixels(rows.get(), C, tw, dp + (n * th.dst + d) * dst_row, streaming);
    }
    watch.flush();
    if (streaming) streaming_fence();
  });
}

// channels_last, W first: each source row is resampled along W once, into a ring of th.taps acc_t
// rows, and each destination row combines its taps' ring rows. Rows first would read every source
// row th.taps * Hd / Hs times, from memory once the taps' rows outgrow the L2 cache: that is the
// backward of an x4 upsampling (8 to 17 taps of 128 KiB rows), which reads grad_output once this way.
// Needs non-decreasing table starts (rows no longer needed are never needed again).
template <typename scalar_t>
void resample_channels_last_w_first(const at::Tensor& src, at::Tensor& dst,
                                    const AxisTable<at::opmath_type<scalar_t>>& th,
                                    const AxisTable<at::opmath_type<scalar_t>>& tw, bool streaming,
                                    std::atomic<bool>* nonfinite) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = src.size(0), C = src.size(1), Hd = th.dst, taps = th.taps;
  const int64_t src_row = tw.src * C, dst_row = tw.dst * C;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  // Blocks of destination rows: each block starts its ring afresh (re-resampling up to taps rows),
  // so blocks are long, but there are enough of them for every thread.
  const int64_t block = std::clamp<int64_t>(N * Hd / (8 * at::get_num_threads()), 1, Hd);
  const int64_t blocks = (Hd + block - 1) / block;
  parallel_for_work(0, N * blocks, resample_work(src, dst, th, tw), [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> ring(new acc_t[taps * dst_row]);
    std::vector<const acc_t*> rows(taps);
    NonfiniteWatch<scalar_t> watch{nonfinite};
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, d0 = task % blocks * block, d1 = std::min(Hd, d0 + block);
      const scalar_t* splane = sp + n * th.src * src_row;
      int64_t next = th.start[d0];  // first source row not yet in the ring
      for (int64_t d = d0; d < d1; ++d) {
        const int64_t first = th.start[d];
        for (next = std::max(next, first); next < first + taps; ++next) {
          gather_pixels(splane + next * src_row, C, tw, ring.get() + (next % taps) * dst_row, false);
          watch.check(splane + next * src_row, src_row);
        }
        for (int64_t j = 0; j < taps; ++j) rows[j] = ring.get() + ((first + j) % taps) * dst_row;
        combine_row_pointers(rows.data(), th.weight.data() + d * taps, taps, dst_row,
                             dp + (n * Hd + d) * dst_row, streaming);
      }
    }
    watch.flush();
    if (streaming) streaming_fence();
  });
}

template <typename scalar_t>
void resample_channels_last(const at::Tensor& src, at::Tensor& dst,
                            const AxisTable<at::opmath_type<scalar_t>>& th,
                            const AxisTable<at::opmath_type<scalar_t>>& tw, std::atomic<bool>* nonfinite) {
  const int64_t C = src.size(1), Hs = th.src, Hd = th.dst, Ws = tw.src, Wd = tw.dst;
  // Whole vectors per pixel: with C % 16 != 0 the streaming stores would leave scalar edges.
  const bool streaming = dst.nbytes() >= kStreamingBytes && C % 16 == 0;
  // Multiply-adds of each order, and whether one destination row's taps of source rows spill L2.
  const double rows_first = double(Hd) * Ws * C * th.taps + double(Hd) * Wd * C * tw.taps;
  const double w_first = double(Hs) * Wd * C * tw.taps + double(Hd) * Wd * C * th.taps;
  const bool taps_spill = th.taps * Ws * C * int64_t(sizeof(scalar_t)) > (256 << 10);
  if ((w_first < rows_first || (taps_spill && w_first <= 1.25 * rows_first)) && starts_non_decreasing(th))
    resample_channels_last_w_first<scalar_t>(src, dst, th, tw, streaming, nonfinite);
  else
    resample_channels_last_rows_first<scalar_t>(src, dst, th, tw, streaming, nonfinite);
}

// How resample_contiguous runs one shape (plan_contiguous): the float32 strategy of the W gather,
// the order of the two passes, and the blocks of destination rows.
//   float32 gathers along W are vectorised (cpu/vector_gather.h): per phase for integer-factor
//   downsampling (poly: the backward of x2 / x4 with align_corners=False); else 16 destinations
//   per instruction from lane windows when 8 or 16 of them read at most 32 sources (lanes:
//   upsampling), else 16 rows at once through register transposes (rows16: other strong
//   downsampling).
struct ContiguousPlan {
  GatherLanePlan lanes;
  PolyphasePlan poly;
  bool rows16 = false;             // the transposed gather, GatherLanePlan::kLanes rows per call
  bool gather_source_rows = true;  // W first (gather source rows, then combine), else H first
  int64_t block = 1, blocks = 1;   // destination rows per task, tasks per plane
  bool streaming = false;          // non-temporal stores into dst
};

template <typename scalar_t>
ContiguousPlan plan_contiguous(const at::Tensor& dst, const AxisTable<at::opmath_type<scalar_t>>& th,
                               const AxisTable<at::opmath_type<scalar_t>>& tw) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kFloat = std::is_same_v<scalar_t, float>;
  const int64_t Hs = th.src, Ws = tw.src, Hd = th.dst, Wd = tw.dst;
  ContiguousPlan p;
  if constexpr (kFloat) {
    p.poly = make_polyphase_plan(tw);
    if (!p.poly.usable) p.lanes = make_gather_lane_plan(tw);  // only consulted when polyphase is not
  }
  constexpr int64_t kRows = GatherLanePlan::kLanes;
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  // AVX-512: 8-lane windows win at x2; AVX2: one 8-lane window (two of 4 lanes lose).
  p.rows16 = kFloat && !p.poly.usable && !(p.lanes.usable && p.lanes.group >= 8);
#endif
  // Work of each order in multiply-adds (a row combination: one per element and tap). A gather
  // costs more per element and tap: ~1x in 16-lane windows, 2x in narrower ones, ~3x scalar; the
  // 16-row gather adds two 16 x 16 transposes (~4 per element of each row) to 1x.
  auto gather_row_cost = [&](double width_in) {
    if (p.poly.usable) return 0.5 * Wd * tw.taps;  // one permute + FMA per tap and 16 outputs
    if (p.rows16) return 4.0 * (width_in + Wd) + double(Wd) * tw.taps;
#if defined(TCONV_CPU_AVX2)
    // AVX2 (8 lanes): ~1x in an 8-source window (one vpermps), 2x in a 16-source one (two and a
    // blend), twice that for two 4-lane windows.
    const double per_tap = p.lanes.usable ? (p.lanes.narrow ? 1.0 : 2.0) * 8.0 / double(p.lanes.group) : 3.0;
#else
    const double per_tap = p.lanes.usable ? std::max(1.0, 8.0 / double(p.lanes.group)) : 3.0;
#endif
    return double(Wd) * tw.taps * per_tap;
  };
  const double rows_first = Hs * gather_row_cost(Ws) + Hd * double(Wd) * th.taps;
  const double cols_first = Hd * double(Ws) * th.taps + Hd * gather_row_cost(Ws);
  p.gather_source_rows = rows_first <= cols_first;
  // Blocks of destination rows: rows first, the block's source rows (resampled along W) fit in
  // ~128 KiB; columns first, 16 rows (a 16-row gather) or the rows of ~128 KiB.
  const int64_t rows_per_dst = std::max<int64_t>(Hs / std::max<int64_t>(Hd, 1), 1);
  p.block = std::clamp<int64_t>(
      p.gather_source_rows ? (128 << 10) / int64_t(sizeof(acc_t)) / std::max<int64_t>(Wd * rows_per_dst, 1)
      : p.rows16           ? kRows
                           : (128 << 10) / int64_t(sizeof(acc_t)) / std::max<int64_t>(Ws, 1),
      1, Hd);
  p.blocks = (Hd + p.block - 1) / p.block;
  p.streaming = dst.nbytes() >= kStreamingBytes;
  return p;
}

// The W pass of one row: tw.src sources to tw.dst destinations, in the plan's float32 strategy.
template <typename scalar_t, typename in_t, typename out_t, typename acc_t>
inline void gather_w(const in_t* row, const AxisTable<acc_t>& tw, const ContiguousPlan& p, out_t* out) {
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (p.poly.usable) return gather_row_polyphase_any(row, tw, p.poly, out);
    if (p.lanes.usable) return gather_row_lanes_any(row, p.lanes, out);
  }
#endif
  (void)p;
  gather_row_any(row, tw, out);
}

// The W pass of rows [0, n) of `in` (stride in_stride) into `out` (stride tw.dst): kLanes rows at
// once when the plan says rows16, the rest one by one.
template <typename scalar_t, typename in_t, typename out_t, typename acc_t>
inline void gather_w_rows(const in_t* in, int64_t in_stride, int64_t n, const AxisTable<acc_t>& tw,
                          const ContiguousPlan& p, out_t* out, acc_t* scratch) {
  const int64_t Wd = tw.dst;
  int64_t r = 0;
#if defined(TCONV_CPU_AVX512)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (p.rows16)
      for (; r + 16 <= n; r += 16)
        gather_16_rows_transposed(in + r * in_stride, in_stride, tw, out + r * Wd, Wd, scratch);
  }
#elif defined(TCONV_CPU_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (p.rows16)
      for (; r + 8 <= n; r += 8) gather_8_rows_transposed(in + r * in_stride, in_stride, tw, out + r * Wd, Wd, scratch);
  }
#endif
  (void)scratch;
  for (; r < n; ++r) gather_w<scalar_t>(in + r * in_stride, tw, p, out + r * Wd);
}

// Destination rows [d0, d1) of one plane, W first: the source rows they read, [r0, r1), are
// resampled along W into buf, then each destination row combines its taps' rows of buf.
template <typename scalar_t, typename acc_t>
void contiguous_block_w_first(const scalar_t* splane, scalar_t* dplane, int64_t d0, int64_t d1,
                              const AxisTable<acc_t>& th, const AxisTable<acc_t>& tw,
                              const ContiguousPlan& p, std::vector<acc_t>& buf, acc_t* scratch) {
  const int64_t Ws = tw.src, Wd = tw.dst;
  const int64_t r0 = th.start[d0], r1 = th.start[d1 - 1] + th.taps;  // start is non-decreasing
  if (int64_t(buf.size()) < (r1 - r0) * Wd) buf.resize((r1 - r0) * Wd);
  // Upsampling along H: each source row is resampled just before the first destination row
  // that reads it, so its reads from memory and the destination rows' (streaming) stores
  // alternate row by row. x2 forward 13-16% faster than all the block's reads, then all
  // its stores; the backward (downsampling) was 25-35% slower that way, so it keeps the
  // block order.
  int64_t next = r0;  // first source row not yet resampled
  if (th.dst < th.src || p.rows16) {
    gather_w_rows<scalar_t>(splane + r0 * Ws, Ws, r1 - r0, tw, p, buf.data(), scratch);
    next = r1;
  }
  for (int64_t d = d0; d < d1; ++d) {
    const int64_t need = th.start[d] + th.taps;
    if (need > next) {
      gather_w_rows<scalar_t>(splane + next * Ws, Ws, need - next, tw, p, buf.data() + (next - r0) * Wd,
                              scratch);
      next = need;
    }
    combine_rows_to_dst(buf.data() + (th.start[d] - r0) * Wd, Wd, th.weight.data() + d * th.taps,
                        th.taps, Wd, dplane + d * Wd, p.streaming);
  }
}

// Destination rows [d0, d1) of one plane, H first: each destination row combines its taps'
// source rows into buf, then the block's rows of buf are resampled along W into dst.
template <typename scalar_t, typename acc_t>
void contiguous_block_h_first(const scalar_t* splane, scalar_t* dplane, int64_t d0, int64_t d1,
                              const AxisTable<acc_t>& th, const AxisTable<acc_t>& tw,
                              const ContiguousPlan& p, std::vector<acc_t>& buf, acc_t* scratch) {
  const int64_t Ws = tw.src, Wd = tw.dst;
  if (int64_t(buf.size()) < (d1 - d0) * Ws) buf.resize((d1 - d0) * Ws);
  for (int64_t d = d0; d < d1; ++d)
    combine_rows_any(splane + th.start[d] * Ws, Ws, th.weight.data() + d * th.taps, th.taps, Ws,
                     buf.data() + (d - d0) * Ws);
  gather_w_rows<scalar_t>(buf.data(), Ws, d1 - d0, tw, p, dplane + d0 * Wd, scratch);
}

// contiguous (N, C, H, W): the plan (plan_contiguous), then per plane and block of destination
// rows one of the two orders.
template <typename scalar_t>
void resample_contiguous(const at::Tensor& src, at::Tensor& dst,
                         const AxisTable<at::opmath_type<scalar_t>>& th,
                         const AxisTable<at::opmath_type<scalar_t>>& tw, std::atomic<bool>* nonfinite) {
  using acc_t = at::opmath_type<scalar_t>;
  const ContiguousPlan p = plan_contiguous<scalar_t>(dst, th, tw);
  const int64_t planes = src.size(0) * src.size(1);
  const int64_t Hs = th.src, Ws = tw.src, Hd = th.dst, Wd = tw.dst;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();

  parallel_for_work(0, planes * p.blocks, resample_work(src, dst, th, tw), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf, scratch(p.rows16 ? (Ws + Wd) * 16 : 0);
    NonfiniteWatch<scalar_t> watch{nonfinite};
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / p.blocks, b = task % p.blocks;
      const int64_t d0 = b * p.block, d1 = std::min(Hd, d0 + p.block);
      const scalar_t* splane = sp + plane * Hs * Ws;
      scalar_t* dplane = dp + plane * Hd * Wd;
      if (p.gather_source_rows)
        contiguous_block_w_first(splane, dplane, d0, d1, th, tw, p, buf, scratch.data());
      else
        contiguous_block_h_first(splane, dplane, d0, d1, th, tw, p, buf, scratch.data());
      const int64_t r0 = th.start[d0], r1 = th.start[d1 - 1] + th.taps;
      watch.check(splane + r0 * Ws, (r1 - r0) * Ws);  // the rows this block read, now in cache
    }
    watch.flush();
    if (p.streaming) streaming_fence();
  });
}

// dst (same memory format as src, already allocated) = Th * src * Tw^T per plane.
template <typename scalar_t>
void resample_separable(const at::Tensor& src, at::Tensor& dst,
                        const AxisTable<at::opmath_type<scalar_t>>& th,
                        const AxisTable<at::opmath_type<scalar_t>>& tw, bool channels_last,
                        std::atomic<bool>* nonfinite = nullptr) {
  if (dst.numel() == 0) return;
  if (channels_last) resample_channels_last<scalar_t>(src, dst, th, tw, nonfinite);
  else resample_contiguous<scalar_t>(src, dst, th, tw, nonfinite);
}

}  // namespace tconv::cpu::CPU_CAPABILITY
