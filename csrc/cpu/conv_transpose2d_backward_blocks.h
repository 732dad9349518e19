// Shape-only blocking of the CPU backward of conv_transpose2d, shared by its patch and cell paths:
// blocks and partial sums are functions of the shape, never of the thread count, so the gradients
// are bitwise the same for any number of threads (Note [single-threaded BLAS]).
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/int_math.h"

namespace tconv::cpu::CPU_CAPABILITY {

// At most `limit` rows per block, split evenly over `total` (16 rows as 9 + 8, not 16 + 1).
inline int64_t balanced_rows(int64_t limit, int64_t total) {
  limit = std::clamp<int64_t>(limit, 1, std::max<int64_t>(total, 1));
  return ceil_div(total, ceil_div(total, limit));
}

// Number of partial sums: a function of the shape only, so the result never depends on threads.
// Up to 8 (load balance), fewer when the partial buffers would pass ~64 MiB.
inline int64_t weight_grad_chunks(int64_t tasks, int64_t partial_bytes) {
  const int64_t by_memory = std::max<int64_t>((64 << 20) / std::max<int64_t>(partial_bytes, 1), 2);
  return std::max<int64_t>(std::min<int64_t>({tasks, 8, by_memory}), 1);
}

}  // namespace tconv::cpu::CPU_CAPABILITY
