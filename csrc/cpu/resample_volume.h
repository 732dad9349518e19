// The resampling of the 1-D and 3-D linear ops (upsample_linear1d as (N, C, 1, 1, L),
// upsample_trilinear3d as (N, C, D, H, W)): Note [linear resampling of volumes] (docs/ARCHITECTURE.md).
//
// dst = Td (x) Th (x) Tw applied to every (n, c) volume, D first. Contiguous: per destination slice
// (two at a time, sharing their reads), its taps' source slices are combined into one acc_t slice
// (cache-sized: H * W elements), which the 2-D contiguous kernel's blocks (cpu/resample_contiguous.h,
// same plan) resample along H and W into the destination slice; a copied D (the 1-D op's) is the
// 2-D kernel on the slices as planes. channels_last_3d: per destination row, below. Nothing goes
// through memory between the passes: the source is read about once (consecutive destination slices
// share source slices, the second read comes from cache) and every destination element is written
// once. The forward and the backward (the transposed tables, a gather) are the same kernel, as in
// 2-D. Each destination element is a fixed-order sum computed by one thread: the same bits for any
// thread count.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <vector>

#include "common/upsample_raw_taps.h"
#include "common/upsample_tables.h"
#include "cpu/parallel.h"
#include "cpu/resample_channels_last.h"
#include "cpu/resample_contiguous.h"
#include "cpu/resample_rows.h"

namespace tconv::cpu::CPU_CAPABILITY {

// dst (contiguous, allocated) = the tables applied to src (contiguous); src and dst are (N, C, ...)
// with td.src * th.src * tw.src and td.dst * th.dst * tw.dst elements per (n, c). With `nonfinite`
// (the forward) it is set when a source slice the kernel read holds Inf or NaN.
template <typename scalar_t>
void resample_volume_contiguous(const at::Tensor& src, at::Tensor& dst, const AxisTable<at::opmath_type<scalar_t>>& td,
                                const AxisTable<at::opmath_type<scalar_t>>& th,
                                const AxisTable<at::opmath_type<scalar_t>>& tw, std::atomic<bool>* nonfinite) {
  using acc_t = at::opmath_type<scalar_t>;
  if (dst.numel() == 0) return;
  if (is_copy_table(td)) {  // D copied (the 1-D op): every slice is a plane of the 2-D kernel
    at::Tensor planes = dst.view({-1, 1, th.dst, tw.dst});
    return resample_contiguous<scalar_t>(src.view({-1, 1, th.src, tw.src}), planes, th, tw, nonfinite);
  }
  const ContiguousPlan p = plan_contiguous<scalar_t>(dst, th, tw, /*planes_cached=*/true);
  const int64_t volumes = src.size(0) * src.size(1);
  const int64_t Ds = td.src, Dd = td.dst, Ws = tw.src;
  const int64_t slice_in = th.src * tw.src, slice_out = th.dst * tw.dst;
  const int64_t tasks_per_volume = Dd * p.blocks;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  const int64_t work = src.numel() + dst.numel() * (td.taps + th.taps + tw.taps);

  // Consecutive destination slices share source slices (an x2 backward's four taps: two), so
  // two of them are combined together, a chunk of the slice at a time: each source chunk comes
  // from memory or L2 once for both, from L1 for the other's taps. One at a time, every source
  // slice was read from L2 twice, and the combination from cache was bound by L2 reads (2.8 us
  // per 128 x 128 slice). With the slices' H pass first (plan_contiguous, planes_cached), the
  // trilinear x2 backward 2x32x64x128x128 went 14.4 -> 12.7 ms, x0.5 forward 16.4 -> 13.0 (Zen 4;
  // AVX2 backward 18.8 -> 15.4). Same arithmetic per element as one at a time. Slices past L2
  // (half of a 1 MiB L2) gain nothing from it and keep one buffer.
  constexpr int64_t kChunk = 512;  // float32: 2 KiB of each source slice, six of them for an x2 pair
  const int64_t batch_max = slice_in * int64_t(sizeof(acc_t)) <= (512 << 10) ? 2 : 1;
  parallel_for_work(0, volumes * tasks_per_volume, work, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf, scratch(p.rows16 ? (Ws + tw.dst) * 16 : 0), slices(batch_max * slice_in);
    NonfiniteWatch<scalar_t> watch{nonfinite};
    int64_t first = -1, count = 0;                // destination slices [first, first + count) in `slices`
    int64_t checked_volume = -1, checked_lo = 0, checked_hi = 0;  // their source slices checked so far
    for (int64_t task = begin; task < end; ++task) {
      const int64_t v = task / tasks_per_volume, od = task % tasks_per_volume / p.blocks, b = task % p.blocks;
      const int64_t d0 = b * p.block, d1 = std::min(th.dst, d0 + p.block);
      const scalar_t* svol = sp + v * Ds * slice_in;
      scalar_t* dslice = dp + (v * Dd + od) * slice_out;
      if (v * Dd + od >= first + count || v * Dd + od < first) {
        // The batch: this slice and the next of the volume whose tasks are this thread's.
        first = v * Dd + od, count = 1;
        while (count < batch_max && od + count < Dd && v * tasks_per_volume + (od + count) * p.blocks < end) ++count;
        const int64_t lo = td.start[od], hi = td.start[od + count - 1] + td.taps;  // start is non-decreasing
        // Each source slice is checked once, right after its first read (from cache).
        if (v != checked_volume || lo < checked_lo || lo > checked_hi)
          checked_volume = v, checked_lo = checked_hi = lo;
        const int64_t unchecked = checked_hi;
        checked_hi = std::max(checked_hi, hi);
        for (int64_t x0 = 0; x0 < slice_in; x0 += kChunk) {
          const int64_t n = std::min(kChunk, slice_in - x0);
          for (int64_t k = 0; k < count; ++k)
            combine_rows_any(svol + td.start[od + k] * slice_in + x0, slice_in,
                             td.weight.data() + (od + k) * td.taps, td.taps, n, slices.data() + k * slice_in + x0);
          for (int64_t s = unchecked; s < hi; ++s) watch.check(svol + s * slice_in + x0, n);
        }
      }
      const acc_t* splane = slices.data() + (v * Dd + od - first) * slice_in;
      if (p.gather_source_rows)
        contiguous_block_w_first<scalar_t>(splane, dslice, d0, d1, th, tw, p, buf, scratch.data());
      else
        contiguous_block_h_first<scalar_t>(splane, dslice, d0, d1, th, tw, p, buf, scratch.data());
    }
    watch.flush();
    if (p.streaming) streaming_fence();
  });
}

// channels_last_3d (N, D, H, W, C): per destination row (n, od, oh), each D tap's source slice
// combines its H taps' rows into one acc_t row (W * C), those rows are combined along D, and the
// destination pixels sum their W taps' C-vectors (gather_pixels), as the 2-D channels_last kernel's
// rows-first order does with one axis more. The source rows come from cache for the neighbouring
// destination rows. With `nonfinite` (the forward) it is set when a combined row, which holds
// every source element the row's taps read, is not finite.
template <typename scalar_t>
void resample_volume_channels_last(const at::Tensor& src, at::Tensor& dst,
                                   const AxisTable<at::opmath_type<scalar_t>>& td,
                                   const AxisTable<at::opmath_type<scalar_t>>& th,
                                   const AxisTable<at::opmath_type<scalar_t>>& tw, std::atomic<bool>* nonfinite) {
  using acc_t = at::opmath_type<scalar_t>;
  if (dst.numel() == 0) return;
  const int64_t N = src.size(0), C = src.size(1), Dd = td.dst, Hd = th.dst;
  const int64_t src_row = tw.src * C, dst_row = tw.dst * C, slice_in = th.src * src_row;
  // Whole vectors per pixel: with C % 16 != 0 the streaming stores would leave scalar edges.
  const bool streaming = dst.nbytes() >= kStreamingBytes && C % 16 == 0;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  const int64_t work = src.numel() + dst.numel() * (td.taps * th.taps + tw.taps);
  parallel_for_work(0, N * Dd * Hd, work, [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> part(new acc_t[td.taps * src_row]), row(new acc_t[src_row]);
    std::vector<const acc_t*> parts(td.taps);
    NonfiniteWatch<acc_t> watch{nonfinite};
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (Dd * Hd), od = task / Hd % Dd, oh = task % Hd;
      const scalar_t* base = sp + (n * td.src + td.start[od]) * slice_in + th.start[oh] * src_row;
      for (int64_t j = 0; j < td.taps; ++j) {
        combine_rows_any(base + j * slice_in, src_row, th.weight.data() + oh * th.taps, th.taps, src_row,
                         part.get() + j * src_row);
        parts[j] = part.get() + j * src_row;
      }
      combine_row_pointers(parts.data(), td.weight.data() + od * td.taps, td.taps, src_row, row.get(), false);
      watch.check(row.get(), src_row);
      gather_pixels(row.get(), C, tw, dp + task * dst_row, streaming);
    }
    watch.flush();
    if (streaming) streaming_fence();
  });
}

// A volume of either layout: contiguous, or channels_last_3d (5-D only).
template <typename scalar_t>
void resample_volume(const at::Tensor& src, at::Tensor& dst, const AxisTable<at::opmath_type<scalar_t>>& td,
                     const AxisTable<at::opmath_type<scalar_t>>& th, const AxisTable<at::opmath_type<scalar_t>>& tw,
                     bool channels_last, std::atomic<bool>* nonfinite) {
  if (channels_last) resample_volume_channels_last<scalar_t>(src, dst, td, th, tw, nonfinite);
  else resample_volume_contiguous<scalar_t>(src, dst, td, th, tw, nonfinite);
}

// The axes of upsample_linear1d (sizes[0] = L) or upsample_trilinear3d (D, H, W) as the volume
// kernel's three (cpu/resample_volume.h): the 1-D op's D and H are copied (PyTorch's 1-D op has no
// such axes, so no taps there). scales: the user's, <= 0 when not given.
template <typename acc_t>
std::array<AxisResample<acc_t>, 3> linear_volume_axes(at::IntArrayRef in, at::IntArrayRef out, bool align_corners,
                                                      at::ArrayRef<double> scales) {
  std::array<AxisResample<acc_t>, 3> a;
  const int64_t first = 3 - int64_t(in.size());
  for (int64_t k = 0; k < 3; ++k)
    a[k] = k < first ? AxisResample<acc_t>{1, 1, UpsampleMode::Bilinear, align_corners, false, acc_t(1)}
                     : make_axis_resample<acc_t>(in[k - first], out[k - first], UpsampleMode::Bilinear,
                                                 align_corners, false, scales[k - first]);
  return a;
}

// The copied axes (k < 3 - dims) get copy tables, the others forward_table (or, for the backward,
// its transpose).
template <typename acc_t>
std::array<AxisTable<acc_t>, 3> linear_volume_tables(const std::array<AxisResample<acc_t>, 3>& a, int64_t dims,
                                                     bool backward) {
  std::array<AxisTable<acc_t>, 3> t;
  for (int64_t k = 0; k < 3; ++k) {
    if (k < 3 - dims) t[k] = copy_table<acc_t>(1);
    else t[k] = backward ? transpose_table(forward_table(a[k])) : forward_table(a[k]);
  }
  return t;
}

// Direct loop over PyTorch's taps (D outer, then H, W inner, as ATen nests them), every output
// rewritten: the forward when a source holds NaN or Inf, Note [NaN/Inf] (docs/ARCHITECTURE.md).
template <typename scalar_t>
void resample_volume_direct(const at::Tensor& src, at::Tensor& dst, const RawTaps<at::opmath_type<scalar_t>>& rd,
                            const RawTaps<at::opmath_type<scalar_t>>& rh,
                            const RawTaps<at::opmath_type<scalar_t>>& rw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t volumes = src.size(0) * src.size(1);
  const int64_t Dd = int64_t(rd.begin.size()) - 1, Hd = int64_t(rh.begin.size()) - 1,
                Wd = int64_t(rw.begin.size()) - 1;
  const int64_t per_volume = volumes > 0 ? src.numel() / volumes : 0;
  const int64_t Ws = src.size(-1), Hs = src.dim() == 5 ? src.size(3) : 1;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  const auto td = view_of(rd), th = view_of(rh), tw = view_of(rw);
  parallel_for_work(0, volumes * Dd, dst.numel() * 8, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t v = task / Dd, od = task % Dd;
      const scalar_t* svol = sp + v * per_volume;
      scalar_t* dslice = dp + task * Hd * Wd;
      for (int64_t oh = 0; oh < Hd; ++oh)
        for (int64_t ow = 0; ow < Wd; ++ow) {
          const auto plane = [&](int64_t i) {
            return td.weight[i] * raw_taps_sum<scalar_t, acc_t>(svol + td.index[i] * Hs * Ws, Ws, 1, th, oh, tw, ow);
          };
          acc_t acc = plane(td.begin[od]);  // not 0 + ...: a copied axis keeps -0
          for (int64_t i = td.begin[od] + 1; i < td.begin[od + 1]; ++i) acc += plane(i);
          dslice[oh * Wd + ow] = static_cast<scalar_t>(acc);
        }
    }
  });
}

}  // namespace tconv::cpu::CPU_CAPABILITY
