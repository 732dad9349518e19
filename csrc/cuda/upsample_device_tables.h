// Device copies of the per-axis upsampling tables of one launch (host code).
//
// The tables (common/upsample_tables.h, common/upsample_raw_taps.h) are built on the host: they
// are tiny (a few entries per output row/column). All of one launch go into one host buffer and
// reach the device together. A device copy is cached per TableKey (everything the tables depend
// on), so a repeated shape uploads nothing: no host latency, and nothing for a CUDA graph to copy
// at replay. See device_tables() for the policy.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "cuda/table_cache_stats.h"

#include "common/upsample_args.h"
#include "common/upsample_raw_taps.h"
#include "common/upsample_tables.h"

namespace tconv::cuda {

// An AxisTable as the kernels read it: destination d reads source start[d] + j with weight
// weight[d * taps + j], j < taps.
template <typename acc_t>
struct DeviceAxisTable {
  const int64_t* start;
  const acc_t* weight;
  int64_t src, dst, taps;
};

// Collects host arrays (add() gives each one's offset), uploads them together (upload()), then
// hands out their device addresses (at()). The device buffer upload() returns must live until the
// kernels reading it are enqueued: stream order does the rest.
class TableUpload {
 public:
  template <typename T>
  size_t add(const std::vector<T>& v) {
    pieces_.push_back({v.data(), v.size() * sizeof(T), total_});
    total_ += (v.size() * sizeof(T) + 15) / 16 * 16;  // 16-byte sections: aligned for any type
    return pieces_.back().offset;
  }

  // The arrays packed into a pinned host buffer, at the offsets add() gave.
  at::Tensor host_copy() const {
    const int64_t bytes = static_cast<int64_t>(std::max<size_t>(total_, 16));
    at::Tensor host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    uint8_t* h = host.mutable_data_ptr<uint8_t>();
    for (const Piece& p : pieces_)
      if (p.bytes != 0) std::memcpy(h + p.offset, p.data, p.bytes);
    return host;
  }

  // One asynchronous copy on the current stream; the caching host allocator keeps the pinned
  // block alive until it has run, and the device buffer, freed on the same stream, is reused only
  // after the kernels that read it.
  at::Tensor upload(const at::Device& device) {
    const at::Tensor host = host_copy();
    at::Tensor dev = at::empty({host.numel()}, at::TensorOptions().dtype(at::kByte).device(device));
    dev.copy_(host, /*non_blocking=*/true);
    use(dev);
    return dev;
  }

  // at() addresses point into `dev` (a buffer holding these arrays at these offsets).
  void use(const at::Tensor& dev) { base_ = dev.const_data_ptr<uint8_t>(); }

  template <typename T>
  const T* at(size_t offset) const {
    return reinterpret_cast<const T*>(base_ + offset);
  }

 private:
  struct Piece {
    const void* data;
    size_t bytes;
    size_t offset;
  };
  std::vector<Piece> pieces_;
  size_t total_ = 0;
  const uint8_t* base_ = nullptr;
};

// One axis table's arrays queued in an upload, and its device view once uploaded.
template <typename acc_t>
struct QueuedAxisTable {
  const AxisTable<acc_t>* table;
  size_t start, weight;

  QueuedAxisTable(TableUpload& up, const AxisTable<acc_t>& t)
      : table(&t), start(up.add(t.start)), weight(up.add(t.weight)) {}
  DeviceAxisTable<acc_t> on_device(const TableUpload& up) const {
    return {up.at<int64_t>(start), up.at<acc_t>(weight), table->src, table->dst, table->taps};
  }
};

template <typename acc_t>
struct QueuedRawTaps {
  size_t begin, index, weight;

  QueuedRawTaps(TableUpload& up, const RawTaps<acc_t>& r)
      : begin(up.add(r.begin)), index(up.add(r.index)), weight(up.add(r.weight)) {}
  RawTapsView<acc_t> on_device(const TableUpload& up) const {
    return {up.at<int64_t>(begin), up.at<int64_t>(index), up.at<acc_t>(weight)};
  }
};

// Everything the tables of one resample depend on; the array sizes, hence add()'s offsets, follow
// from it too. Scales by bit pattern (<= 0: not given).
struct TableKey {
  int64_t src_h, dst_h, src_w, dst_w;
  int mode;
  bool align_corners, antialias, backward;
  uint64_t scale_h_bits, scale_w_bits;
  at::ScalarType acc_type;
  c10::DeviceIndex device;

  auto tie() const {
    return std::tie(src_h, dst_h, src_w, dst_w, mode, align_corners, antialias, backward,
                    scale_h_bits, scale_w_bits, acc_type, device);
  }
  bool operator<(const TableKey& o) const { return tie() < o.tie(); }
};

inline uint64_t double_bits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

inline TableKey table_key(const Upsample2dGeometry& g, UpsampleMode mode, bool align_corners,
                          bool antialias, bool backward, at::ScalarType acc_type,
                          const at::Device& device) {
  return {g.H, g.Ho, g.W, g.Wo, static_cast<int>(mode), align_corners, antialias, backward,
          double_bits(g.scale_h), double_bits(g.scale_w), acc_type, device.index()};
}

// The device tables of all upsampling ops (one instance per process: an inline function's
// statics). Entries are never freed: a captured CUDA graph may read any of them at replay.
class TableCache {
 public:
  static constexpr size_t kMaxEntries = 4096;  // beyond: upload per call, as without a cache

  static TableCache& instance() {
    static TableCache* cache = new TableCache();  // never destroyed: no CUDA calls at exit
    return *cache;
  }

  // The device buffer of `up`'s arrays for `key`, `up` pointed at it.
  //  - hit: the cached buffer, no copy (also while capturing: the graph reads it at replay);
  //  - miss, not capturing: a synchronous copy (once per key), so the entry is ready for every
  //    stream, then cached;
  //  - miss while capturing: a captured copy from a pinned buffer that the cache keeps for good,
  //    so replays copy the right bytes (a freed pinned block could be handed out again before a
  //    replay); kept apart from the eager entries, whose buffers must hold data before any replay.
  at::Tensor device_tables(TableUpload& up, const at::Device& device, const TableKey& key) {
    // The context exists: the caller launches kernels next.
    const bool capturing =
        c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = eager_.find(key); it != eager_.end()) {
      ++stats_.hits;
      up.use(it->second.dev);
      return it->second.dev;
    }
    ++stats_.misses;
    if (capturing) {
      auto it = captured_.find(key);
      if (it == captured_.end()) {
        Entry e{up.host_copy(), {}};
        e.dev = at::empty({e.host.numel()}, at::TensorOptions().dtype(at::kByte).device(device));
        it = captured_.emplace(key, std::move(e)).first;
      }
      it->second.dev.copy_(it->second.host, /*non_blocking=*/true);  // same bytes: harmless again
      up.use(it->second.dev);
      return it->second.dev;
    }
    if (eager_.size() >= kMaxEntries) return up.upload(device);
    const at::Tensor host = up.host_copy();
    at::Tensor dev = at::empty({host.numel()}, at::TensorOptions().dtype(at::kByte).device(device));
    dev.copy_(host, /*non_blocking=*/false);
    eager_.emplace(key, Entry{at::Tensor(), dev});
    up.use(dev);
    return dev;
  }

  TableCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    TableCacheStats s = stats_;
    s.entries = static_cast<int64_t>(eager_.size());
    s.captured_entries = static_cast<int64_t>(captured_.size());
    return s;
  }

 private:
  struct Entry {
    at::Tensor host;  // pinned, kept for captured copies only
    at::Tensor dev;
  };
  std::mutex mutex_;
  std::map<TableKey, Entry> eager_, captured_;
  TableCacheStats stats_{};
};

}  // namespace tconv::cuda
