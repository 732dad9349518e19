// at::parallel_for with the grain given as the range's total work (elements read and written, or
// multiply-adds) instead of as iterations: a range whose whole work is below ATen's grain
// (at::internal::GRAIN_SIZE, 32768) runs inline on the calling thread, with no parallel region.
// Opening one costs microseconds on an idle machine and milliseconds when another process holds
// the other cores (the team waits for a descheduled thread), far more than a tiny op's work.
// Larger ranges are cut into pieces of at least that much work each. Which thread runs which
// iterations never changes a result: every kernel's order of sums is fixed by the shape.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace tconv::cpu {

template <typename F>
void parallel_for_work(int64_t begin, int64_t end, int64_t total_work, const F& f) {
  const int64_t items = end - begin;
  if (items <= 0) return;
  const int64_t per_item = std::max<int64_t>(total_work / items, 1);
  const int64_t grain = std::max<int64_t>(at::internal::GRAIN_SIZE / per_item, 1);
  at::parallel_for(begin, end, grain, f);
}

}  // namespace tconv::cpu
