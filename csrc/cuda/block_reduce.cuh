// Sum over one thread block with a fixed shape: the result depends only on the values and the
// block size, never on scheduling, so reductions built on it are bitwise reproducible without
// atomics.
#pragma once

namespace tconv::cuda {

// Every thread of a block of exactly kBlock threads (a power of two) passes its partial; thread 0
// gets the block's total. `shared` holds kBlock values.
template <int kBlock, typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t partial, acc_t* shared) {
  static_assert((kBlock & (kBlock - 1)) == 0, "block size must be a power of two");
  shared[threadIdx.x] = partial;
  __syncthreads();
#pragma unroll
  for (int half = kBlock / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  return shared[0];
}

}  // namespace tconv::cuda
