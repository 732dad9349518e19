// The contiguous (N, C, H, W) kernel of the separable resampling (cpu/separable_resample.h): per
// plane and block of destination rows, either first resample the needed source rows along W (a
// gather) and then combine rows (vectorised along W), or the reverse, whichever costs less:
// plan_contiguous decides, contiguous_block_{w,h}_first run one block.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/int_math.h"
#include "common/upsample_tables.h"
#include "cpu/gather_lanes.h"
#include "cpu/gather_polyphase.h"
#include "cpu/gather_rows_transposed.h"
#include "cpu/parallel.h"
#include "cpu/resample_rows.h"

namespace tconv::cpu::CPU_CAPABILITY {

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

// How resample_contiguous runs one shape (plan_contiguous): the float32 strategy of the W gather,
// the order of the two passes, and the blocks of destination rows.
//   float32 gathers along W are vectorised: per phase for integer-factor downsampling (poly,
//   cpu/gather_polyphase.h: the backward of x2 / x4 with align_corners=False); else 16
//   destinations per instruction from lane windows when 8 or 16 of them read at most 32 sources
//   (lanes, cpu/gather_lanes.h: upsampling), else 16 rows at once through register transposes
//   (rows16, cpu/gather_rows_transposed.h: other strong downsampling). Other types, and tables
//   none of them takes, use the scalar gather_row.
struct ContiguousPlan {
  GatherLanePlan lanes;
  PolyphasePlan poly;
  bool rows16 = false;             // the transposed gather, GatherLanePlan::kLanes rows per call
  bool gather_source_rows = true;  // W first (gather source rows, then combine), else H first
  int64_t block = 1, blocks = 1;   // destination rows per task, tasks per plane
  bool streaming = false;          // non-temporal stores into dst
  bool rows_copied = false;        // th copies rows (the 1-D op, a W-only resize): no H pass at all
};

// `planes_cached`: the source planes sit in cache (a volume's slices combined along D,
// cpu/resample_volume.h), not in memory.
template <typename scalar_t>
ContiguousPlan plan_contiguous(const at::Tensor& dst, const AxisTable<at::opmath_type<scalar_t>>& th,
                               const AxisTable<at::opmath_type<scalar_t>>& tw, bool planes_cached = false) {
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
    // Polyphase from memory: the W-first order streams each source row once, where H first reads
    // th.taps rows at a time (bilinear x2 backward 8x64x128x128: 8.6 against 11.1 ms), which
    // this low cost keeps. From cache the arithmetic decides, and a permute + FMA per tap and 16
    // outputs cost ~2.5x a row combination's FMA (perf: ~19 cycles per 16 outputs of 4 taps):
    // the trilinear x2 backward's 128 -> 64 slices H first, 14.4 -> 13.5 ms (Zen 4).
    if (p.poly.usable) return (planes_cached ? 2.5 : 0.5) * Wd * tw.taps;
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
  p.rows_copied = is_copy_table(th);
  p.gather_source_rows = !p.rows_copied && rows_first <= cols_first;
  // Blocks of destination rows: rows first, the block's source rows (resampled along W) fit in
  // ~128 KiB; columns first, 16 rows (a 16-row gather) or the rows of ~128 KiB.
  const int64_t rows_per_dst = std::max<int64_t>(Hs / std::max<int64_t>(Hd, 1), 1);
  p.block = std::clamp<int64_t>(
      p.gather_source_rows ? (128 << 10) / int64_t(sizeof(acc_t)) / std::max<int64_t>(Wd * rows_per_dst, 1)
      : p.rows16           ? kRows
                           : (128 << 10) / int64_t(sizeof(acc_t)) / std::max<int64_t>(Ws, 1),
      1, Hd);
  p.blocks = ceil_div(Hd, p.block);
  p.streaming = dst.nbytes() >= kStreamingBytes;
  return p;
}

// The W pass of one row: tw.src sources to tw.dst destinations, in the plan's float32 strategy;
// `streaming`: out is the destination tensor, written around the caches where the gather can.
template <typename scalar_t, typename in_t, typename out_t, typename acc_t>
inline void gather_w(const in_t* row, const AxisTable<acc_t>& tw, const ContiguousPlan& p, out_t* out,
                     bool streaming) {
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (p.poly.usable) return gather_row_polyphase_any(row, tw, p.poly, out);
    if (p.lanes.usable) return gather_row_lanes_any(row, p.lanes, out, streaming);
  }
#endif
  (void)p, (void)streaming;
  gather_row_any(row, tw, out);
}

// Hints that [p, p + bytes) is read soon (no fault past the tensor's end: a prefetch is a hint).
inline void prefetch_bytes(const void* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(static_cast<const char*>(p) + o, 0, 3);
}

// The W pass of rows [0, n) of `in` (stride in_stride) into `out` (stride tw.dst): kLanes rows at
// once when the plan says rows16, the rest one by one.
template <typename scalar_t, typename in_t, typename out_t, typename acc_t>
inline void gather_w_rows(const in_t* in, int64_t in_stride, int64_t n, const AxisTable<acc_t>& tw,
                          const ContiguousPlan& p, out_t* out, acc_t* scratch, bool streaming) {
  const int64_t Wd = tw.dst;
  int64_t r = 0;
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (p.rows16)
      for (; r + kFloatLanes <= n; r += kFloatLanes)
        gather_rows_transposed(in + r * in_stride, in_stride, tw, out + r * Wd, Wd, scratch);
  }
#endif
  (void)scratch;
  // Short rows are prefetched ~4 KiB ahead by hand: the gathers' masked loads left DRAM's latency
  // exposed (perf: the time on the loads; the x2 backward's 128 -> 64 rows took 12.4 us per plane
  // from memory, 3.2 from cache, 3.6 with this). Bilinear x2 backward 14.9 -> 5.0 ms, forward
  // 6.3 -> 5.0, x0.5 forward 13.5 -> 5.1 (8x64x128x128, 2 threads, Zen 5).
  const int64_t row_bytes = in_stride * int64_t(sizeof(in_t));
  const int64_t ahead = row_bytes <= 4096 ? ceil_div(4096, row_bytes) : 0;
  for (; r < n; ++r) {
    if (ahead > 0) prefetch_bytes(in + (r + ahead) * in_stride, row_bytes);
    gather_w<scalar_t>(in + r * in_stride, tw, p, out + r * Wd, streaming);
  }
}

// The source plane is scalar_t, or acc_t (a volume's slice combined along D, cpu/resample_volume.h).

// Destination rows [d0, d1) of one plane, W first: the source rows they read, [r0, r1), are
// resampled along W into buf, then each destination row combines its taps' rows of buf.
template <typename scalar_t, typename in_t, typename acc_t>
void contiguous_block_w_first(const in_t* splane, scalar_t* dplane, int64_t d0, int64_t d1,
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
    gather_w_rows<scalar_t>(splane + r0 * Ws, Ws, r1 - r0, tw, p, buf.data(), scratch, false);
    next = r1;
  }
  for (int64_t d = d0; d < d1; ++d) {
    const int64_t need = th.start[d] + th.taps;
    if (need > next) {
      gather_w_rows<scalar_t>(splane + next * Ws, Ws, need - next, tw, p, buf.data() + (next - r0) * Wd,
                              scratch, false);
      next = need;
    }
    combine_rows_to_dst(buf.data() + (th.start[d] - r0) * Wd, Wd, th.weight.data() + d * th.taps,
                        th.taps, Wd, dplane + d * Wd, p.streaming);
  }
}

// Destination rows [d0, d1) of one plane, H first: each destination row combines its taps'
// source rows into buf, then the block's rows of buf are resampled along W into dst.
template <typename scalar_t, typename in_t, typename acc_t>
void contiguous_block_h_first(const in_t* splane, scalar_t* dplane, int64_t d0, int64_t d1,
                              const AxisTable<acc_t>& th, const AxisTable<acc_t>& tw,
                              const ContiguousPlan& p, std::vector<acc_t>& buf, acc_t* scratch) {
  const int64_t Ws = tw.src, Wd = tw.dst;
  // Copied rows (the 1-D op) are gathered straight from the source and streamed into dst: plain
  // stores read every destination line first (linear x2 8x64x16000: 5.7 -> 5.0-5.3 ms, Zen 4).
  if (p.rows_copied)
    return gather_w_rows<scalar_t>(splane + d0 * Ws, Ws, d1 - d0, tw, p, dplane + d0 * Wd, scratch, p.streaming);
  if (int64_t(buf.size()) < (d1 - d0) * Ws) buf.resize((d1 - d0) * Ws);
  for (int64_t d = d0; d < d1; ++d)
    combine_rows_any(splane + th.start[d] * Ws, Ws, th.weight.data() + d * th.taps, th.taps, Ws,
                     buf.data() + (d - d0) * Ws);
  gather_w_rows<scalar_t>(buf.data(), Ws, d1 - d0, tw, p, dplane + d0 * Wd, scratch, p.streaming);
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
        contiguous_block_w_first<scalar_t>(splane, dplane, d0, d1, th, tw, p, buf, scratch.data());
      else
        contiguous_block_h_first<scalar_t>(splane, dplane, d0, d1, th, tw, p, buf, scratch.data());
      const int64_t r0 = th.start[d0], r1 = th.start[d1 - 1] + th.taps;
      watch.check(splane + r0 * Ws, (r1 - r0) * Ws);  // the rows this block read, now in cache
    }
    watch.flush();
    if (p.streaming) streaming_fence();
  });
}

}  // namespace tconv::cpu::CPU_CAPABILITY
