// CUDA engine shared by the upsampling forward and backward: dst = Th * src * Tw^T for every (n, c)
// plane, where Th and Tw are AxisTables (common/upsample_tables.h). The forward passes the
// interpolation tables, the backward their transposes (a gather: each grad_input element sums the
// grad_output elements that read it), so one pair of kernels serves both. No atomics: every
// destination element is a fixed-order sum written by exactly one thread, so results are bitwise
// reproducible. Sums run in acc_t (float for half/bfloat16).
//
// Tiled kernel (the usual path): a block owns a tile of destination rows x columns x channels of
// one image. Pass 1 resamples the source rows the tile reads along W into shared memory
// (rows_buf[r][col][ch]); pass 2 combines those rows along H and writes the tile. Both passes walk
// the tile in memory order (channels_last: channel fastest; contiguous: column fastest), so global
// reads and writes coalesce and shared-memory accesses are conflict-free. A tile's source rows
// are a contiguous range because table starts are non-decreasing (checked on the host).
//
// Direct kernel (the fallback when a tile's source rows would not fit in shared memory, e.g. heavy
// downsampling along H): one thread per destination element in memory order, summing its taps
// straight from global memory. It does exactly the tiled kernel's arithmetic, in the same order.
//
// NaN/Inf (forward only, when raw taps are given; Note [NaN/Inf] (docs/ARCHITECTURE.md)): any
// non-finite source value a destination's tables touch makes its sum non-finite (x * 0 = NaN for
// x = +-Inf or NaN), so a non-finite sum is recomputed from ATen's unmerged taps
// (common/upsample_raw_taps.h), with no device-wide check and no host synchronisation. Finite sums
// are untouched.
//
// TCONV_CUDA_UPSAMPLE_PATH=direct forces the direct kernel, =small_tiles the tiled kernel with tiny
// tiles (tile boundaries everywhere); the tests use both to reach every path on small shapes.
//
// Index math (Note [index width] in cuda/launch.cuh): both kernels have a 32-bit and a 64-bit
// instantiation. The tiled kernel is compiled per layout (channels_last tiles, or one channel per
// tile with the channel axis compiled out), splits its tile-local index with dividers built once on
// the host (a multiply-high and a shift, no runtime division per element), and forms each tile's
// base pointers once. The direct kernel unravels its element index with precomputed dividers.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "common/int_math.h"
#include "common/upsample_raw_taps.h"
#include "common/upsample_tables.h"
#include "cuda/launch.cuh"
#include "cuda/upsample_device_tables.h"

namespace tconv::cuda {

// Destination tiles of the tiled kernel: extents and counts per axis, and the most source rows
// one tile reads (the rows of its shared-memory buffer).
struct ResampleTiles {
  int64_t rows, cols, channels;
  int64_t tiles_h, tiles_w, tiles_c;
  int64_t src_rows;
};

// Per-launch dividers of the tiled kernel's tile-local index e = (row, col, ch) over a full tile
// (pitch = cols * channels elements per row; edge tiles skip the columns/channels they lack).
// Tile-local indices are small (bounded by the shared-memory buffer): 32-bit on every path.
struct TileDividers {
  Divider<int32_t> channels, cols;
  int pitch;
};

template <typename acc_t>
__device__ __forceinline__ bool is_finite(acc_t v) {
  return isfinite(v);
}

// kChannels: channels_last tiles (channel fastest, tiles.channels channels); otherwise one channel
// per tile (tiles.channels == 1) and the channel axis is compiled out. Each tile's base pointers
// are formed once in 64 bits; offsets inside a tile are index_t (Note [index width]).
template <typename scalar_t, typename acc_t, typename index_t, bool kChannels>
__global__ void __launch_bounds__(kThreads)
resample_tiled_kernel(const scalar_t* __restrict__ src, StridesT<index_t> ss,
                      scalar_t* __restrict__ dst, StridesT<index_t> ds, int64_t N, int64_t C,
                      DeviceAxisTable<acc_t> th, DeviceAxisTable<acc_t> tw,
                      RawTapsView<acc_t> raw_h, RawTapsView<acc_t> raw_w, ResampleTiles tiles,
                      TileDividers div) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* rows_buf = reinterpret_cast<acc_t*>(shared_bytes);
  const int64_t total = N * tiles.tiles_c * tiles.tiles_h * tiles.tiles_w;
  const int pitch = div.pitch;  // rows_buf elements per source row
  const int taps_w = static_cast<int>(tw.taps), taps_h = static_cast<int>(th.taps);
  for (int64_t tile = blockIdx.x; tile < total; tile += gridDim.x) {  // per tile, not per element
    const int64_t tile_w = tile % tiles.tiles_w;
    const int64_t tile_h = (tile / tiles.tiles_w) % tiles.tiles_h;
    const int64_t tile_c = (tile / (tiles.tiles_w * tiles.tiles_h)) % tiles.tiles_c;
    const int64_t n = tile / (tiles.tiles_w * tiles.tiles_h * tiles.tiles_c);
    const int64_t h0 = tile_h * tiles.rows, w0 = tile_w * tiles.cols, c0 = tile_c * tiles.channels;
    const int hn = static_cast<int>(min_i64(tiles.rows, th.dst - h0));
    const int wn = static_cast<int>(min_i64(tiles.cols, tw.dst - w0));
    const int cn = kChannels ? static_cast<int>(min_i64(tiles.channels, C - c0)) : 1;
    const int64_t r0 = th.start[h0];
    const int rn = static_cast<int>(th.start[h0 + hn - 1] + th.taps - r0);
    const scalar_t* src_tile = src + (n * int64_t(ss.n) + c0 * int64_t(ss.c) + r0 * int64_t(ss.h));
    scalar_t* dst_tile = dst + (n * int64_t(ds.n) + c0 * int64_t(ds.c) + h0 * int64_t(ds.h) +
                                w0 * int64_t(ds.w));

    // Pass 1: rows_buf[r][col][ch] = sum_j tw.weight[w0 + col, j] * src[n, c0 + ch, r0 + r, start + j].
    for (int e = threadIdx.x; e < rn * pitch; e += blockDim.x) {
      int ch = 0, col, r;
      if constexpr (kChannels) r = div.cols.divmod(div.channels.divmod(e, ch), col);
      else r = div.cols.divmod(e, col);
      if (col >= wn || ch >= cn) continue;
      const int64_t ow = w0 + col;
      const scalar_t* s = src_tile + (index_t(ch) * ss.c + index_t(r) * ss.h + index_t(tw.start[ow]) * ss.w);
      const acc_t* w = tw.weight + ow * tw.taps;
      acc_t acc = 0;
      for (int j = 0; j < taps_w; ++j) acc += w[j] * static_cast<acc_t>(s[index_t(j) * ss.w]);
      rows_buf[e] = acc;
    }
    __syncthreads();

    // Pass 2: dst[n, c0 + ch, h0 + row, w0 + col] = sum_i th.weight[h0 + row, i] * rows_buf[...].
    for (int e = threadIdx.x; e < hn * pitch; e += blockDim.x) {
      int ch = 0, col, row;
      if constexpr (kChannels) row = div.cols.divmod(div.channels.divmod(e, ch), col);
      else row = div.cols.divmod(e, col);
      if (col >= wn || ch >= cn) continue;
      const int64_t oh = h0 + row, ow = w0 + col;
      const acc_t* b = rows_buf + static_cast<int>(th.start[oh] - r0) * pitch + (e - row * pitch);
      const acc_t* w = th.weight + oh * th.taps;
      acc_t acc = 0;
      for (int i = 0; i < taps_h; ++i) acc += w[i] * b[i * pitch];
      if (raw_h.begin != nullptr && !is_finite(acc))
        acc = raw_taps_sum(src_tile + (ch * int64_t(ss.c) - r0 * int64_t(ss.h)), int64_t(ss.h),
                           int64_t(ss.w), raw_h, oh, raw_w, ow);
      dst_tile[index_t(ch) * ds.c + index_t(row) * ds.h + index_t(col) * ds.w] = static_cast<scalar_t>(acc);
    }
    __syncthreads();  // rows_buf is rewritten by the block's next tile
  }
}

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
resample_direct_kernel(const scalar_t* __restrict__ src, StridesT<index_t> ss,
                       scalar_t* __restrict__ dst, StridesT<index_t> ds, index_t total,
                       MemoryOrder4<index_t> order, DeviceAxisTable<acc_t> th,
                       DeviceAxisTable<acc_t> tw, RawTapsView<acc_t> raw_h,
                       RawTapsView<acc_t> raw_w) {
  const int taps_w = static_cast<int>(tw.taps), taps_h = static_cast<int>(th.taps);
  TCONV_GRID_STRIDE_LOOP_T(index_t, e, total) {
    const auto [n, c, oh, ow] = order(e);
    const scalar_t* plane = src + ss.offset(n, c, 0, 0);
    const acc_t* wh = th.weight + int64_t(oh) * th.taps;
    const acc_t* ww = tw.weight + int64_t(ow) * tw.taps;
    const index_t col0 = index_t(tw.start[ow]) * ss.w;
    acc_t acc = 0;
    for (int i = 0; i < taps_h; ++i) {
      const scalar_t* s = plane + ((index_t(th.start[oh]) + i) * ss.h + col0);
      acc_t inner = 0;
      for (int j = 0; j < taps_w; ++j) inner += ww[j] * static_cast<acc_t>(s[index_t(j) * ss.w]);
      acc += wh[i] * inner;
    }
    if (raw_h.begin != nullptr && !is_finite(acc))
      acc = raw_taps_sum(plane, int64_t(ss.h), int64_t(ss.w), raw_h, int64_t(oh), raw_w, int64_t(ow));
    dst[ds.offset(n, c, oh, ow)] = static_cast<scalar_t>(acc);
  }
}

// Shared memory one block may use without opting in to more (every CUDA GPU has it).
constexpr int64_t kTileSharedBytes = 48 << 10;
// Destination elements a tile aims at: 16 per thread of a 256-thread block.
constexpr int64_t kTileElements = 4096;

// The most source rows a block of `rows` consecutive destinations reads; -1 if the table's starts
// ever decrease (then source rows of a tile are not one range, and the direct kernel is used).
template <typename acc_t>
int64_t max_source_rows(const AxisTable<acc_t>& t, int64_t rows) {
  if (!starts_non_decreasing(t)) return -1;
  int64_t most = 0;
  for (int64_t d0 = 0; d0 < t.dst; d0 += rows) {
    const int64_t last = std::min(d0 + rows, t.dst) - 1;
    most = std::max(most, t.start[last] + t.taps - t.start[d0]);
  }
  return most;
}

inline const char* upsample_path_override() {
  const char* v = std::getenv("TCONV_CUDA_UPSAMPLE_PATH");
  return v != nullptr ? v : "auto";
}

// Tile extents for the tiled kernel, or nullopt when the direct kernel should run. Shrinks the
// tile (rows first, then columns, then channels) until its source rows fit in shared memory.
template <typename acc_t>
std::optional<ResampleTiles> plan_tiles(const AxisTable<acc_t>& th, const AxisTable<acc_t>& tw,
                                        int64_t C, bool channels_last) {
  const char* path = upsample_path_override();
  if (std::strcmp(path, "direct") == 0) return std::nullopt;
  int64_t channels = channels_last ? std::min<int64_t>(C, 64) : 1;
  int64_t cols = channels_last ? std::max<int64_t>(256 / channels, 1) : 128;
  cols = std::min(cols, tw.dst);
  int64_t rows = std::clamp<int64_t>(kTileElements / (cols * channels), 1, th.dst);
  if (std::strcmp(path, "small_tiles") == 0) {
    rows = std::min<int64_t>(3, th.dst);
    cols = std::min<int64_t>(5, tw.dst);
    channels = std::min<int64_t>(2, channels);
  }
  while (true) {
    const int64_t src_rows = max_source_rows(th, rows);
    if (src_rows < 0) return std::nullopt;
    if (src_rows * cols * channels * int64_t(sizeof(acc_t)) <= kTileSharedBytes) {
      return ResampleTiles{rows, cols, channels, ceil_div(th.dst, rows), ceil_div(tw.dst, cols),
                           ceil_div(C, channels), src_rows};
    }
    if (rows > 1) rows = (rows + 1) / 2;
    else if (cols > 1) cols = (cols + 1) / 2;
    else if (channels > 1) channels = (channels + 1) / 2;
    else return std::nullopt;
  }
}

// dst (N, C, th.dst, tw.dst), already allocated in src's memory format, = Th * src * Tw^T per
// plane. raw_h / raw_w: ATen's unmerged taps for the forward's NaN/Inf rule, or nullptr.
// key: what the tables depend on, for the device-table cache (nullptr: upload them this once).
template <typename scalar_t>
void resample_separable_cuda(const at::Tensor& src, at::Tensor& dst,
                             const AxisTable<at::opmath_type<scalar_t>>& th,
                             const AxisTable<at::opmath_type<scalar_t>>& tw,
                             const RawTaps<at::opmath_type<scalar_t>>* raw_h,
                             const RawTaps<at::opmath_type<scalar_t>>* raw_w, bool channels_last,
                             const TableKey* key = nullptr) {
  using acc_t = at::opmath_type<scalar_t>;
  if (dst.numel() == 0) return;
  const int64_t N = dst.size(0), C = dst.size(1);

  TableUpload upload;
  const QueuedAxisTable<acc_t> queued_h(upload, th), queued_w(upload, tw);
  std::optional<QueuedRawTaps<acc_t>> queued_raw_h, queued_raw_w;
  if (raw_h != nullptr && raw_w != nullptr) {
    queued_raw_h.emplace(upload, *raw_h);
    queued_raw_w.emplace(upload, *raw_w);
  }
  const at::Tensor tables = key != nullptr  // held until the launch (a per-call upload: stream-ordered)
                                ? TableCache::instance().device_tables(upload, dst.device(), *key)
                                : upload.upload(dst.device());
  const DeviceAxisTable<acc_t> dev_h = queued_h.on_device(upload), dev_w = queued_w.on_device(upload);
  const RawTapsView<acc_t> no_taps{nullptr, nullptr, nullptr};
  const RawTapsView<acc_t> dev_raw_h = queued_raw_h ? queued_raw_h->on_device(upload) : no_taps;
  const RawTapsView<acc_t> dev_raw_w = queued_raw_w ? queued_raw_w->on_device(upload) : no_taps;

  const auto stream = at::cuda::getCurrentCUDAStream();
  const scalar_t* src_ptr = src.const_data_ptr<scalar_t>();
  scalar_t* dst_ptr = dst.mutable_data_ptr<scalar_t>();
  const bool use_32bit = use_32bit_index({dst.numel()}, {&src, &dst});
  with_index_type(use_32bit, [&](auto zero) {
    using index_t = decltype(zero);
    if (const auto tiles = plan_tiles(th, tw, C, channels_last)) {
      const int64_t total_tiles = N * tiles->tiles_c * tiles->tiles_h * tiles->tiles_w;
      const auto blocks = static_cast<unsigned int>(std::min<int64_t>(total_tiles, int64_t(1) << 20));
      const size_t shared = static_cast<size_t>(tiles->src_rows * tiles->cols * tiles->channels) * sizeof(acc_t);
      const TileDividers div{Divider<int32_t>(tiles->channels), Divider<int32_t>(tiles->cols),
                             static_cast<int>(tiles->cols * tiles->channels)};
      if (channels_last) {
        resample_tiled_kernel<scalar_t, acc_t, index_t, true><<<blocks, kThreads, shared, stream>>>(
            src_ptr, strides_as<index_t>(src), dst_ptr, strides_as<index_t>(dst), N, C, dev_h, dev_w,
            dev_raw_h, dev_raw_w, *tiles, div);
      } else {
        resample_tiled_kernel<scalar_t, acc_t, index_t, false><<<blocks, kThreads, shared, stream>>>(
            src_ptr, strides_as<index_t>(src), dst_ptr, strides_as<index_t>(dst), N, C, dev_h, dev_w,
            dev_raw_h, dev_raw_w, *tiles, div);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      resample_direct_kernel<scalar_t, acc_t, index_t><<<blocks_for(dst.numel()), kThreads, 0, stream>>>(
          src_ptr, strides_as<index_t>(src), dst_ptr, strides_as<index_t>(dst),
          static_cast<index_t>(dst.numel()), MemoryOrder4<index_t>(C, th.dst, tw.dst, channels_last),
          dev_h, dev_w, dev_raw_h, dev_raw_w);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

}  // namespace tconv::cuda
