// Device copies of the per-axis upsampling tables of one launch (host code).
//
// The tables (common/upsample_tables.h, common/upsample_raw_taps.h) are built on the host: they
// are tiny (a few entries per output row/column). All of one launch go into one pinned host
// buffer and reach the device with one asynchronous copy on the current stream; the caching host
// allocator keeps the pinned block alive until that copy has run, and the device buffer, freed on
// the same stream, is reused only after the kernels that read it.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

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

  at::Tensor upload(const at::Device& device) {
    const int64_t bytes = static_cast<int64_t>(std::max<size_t>(total_, 16));
    at::Tensor host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    uint8_t* h = host.mutable_data_ptr<uint8_t>();
    for (const Piece& p : pieces_)
      if (p.bytes != 0) std::memcpy(h + p.offset, p.data, p.bytes);
    at::Tensor dev = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(device));
    dev.copy_(host, /*non_blocking=*/true);
    base_ = dev.const_data_ptr<uint8_t>();
    return dev;
  }

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

}  // namespace tconv::cuda
