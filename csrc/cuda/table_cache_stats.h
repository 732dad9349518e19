// Counters of the CUDA upsampling table cache (cuda/upsample_device_tables.h), plain C++ so that
// csrc/module.cpp can expose them without CUDA headers.
#pragma once

#include <cstdint>

namespace tconv::cuda {

struct TableCacheStats {
  int64_t hits, misses;   // lookups that found / did not find a device copy
  int64_t entries;        // device copies cached (filled eagerly)
  int64_t captured_entries;  // copies made while capturing a CUDA graph, kept for its replays
};

TableCacheStats upsample_table_cache_stats();  // defined in cuda/upsample.cu

}  // namespace tconv::cuda
