// Launch shapes and 64-bit element addressing shared by the tconv CUDA kernels.
//
// Every elementwise kernel is a grid-stride loop over an int64 element index, so one launch covers
// tensors of more than 2^31 elements, and reads/writes 4-D tensors through their strides, so
// contiguous, channels_last and strided views need no copy.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

namespace tconv::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `total` elements (total > 0). More blocks than the GPU can
// hold at once buy nothing; the loop covers the rest.
inline unsigned int blocks_for(int64_t total, int threads = kThreads) {
  const int64_t blocks = (total + threads - 1) / threads;
  return static_cast<unsigned int>(std::min<int64_t>(blocks, int64_t(1) << 20));
}

// Element strides of an (N, C, H, W) tensor.
struct Strides4 {
  int64_t n, c, h, w;

  __host__ __device__ __forceinline__ int64_t offset(int64_t in, int64_t ic, int64_t ih,
                                                      int64_t iw) const {
    return in * n + ic * c + ih * h + iw * w;
  }
};

inline Strides4 strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// Reads a 4-D tensor through its strides in the accumulation type: the accessors that the direct
// sums of common/conv_transpose2d_direct.h take.
template <typename scalar_t, typename acc_t>
struct StridedRead {
  const scalar_t* __restrict__ data;
  Strides4 strides;
  __device__ __forceinline__ acc_t operator()(int64_t i0, int64_t i1, int64_t i2, int64_t i3) const {
    return static_cast<acc_t>(data[strides.offset(i0, i1, i2, i3)]);
  }
};

// (n, c, h, w) of the e-th element of an (N, C, H, W) tensor visited in its memory order
// (channels_last: c fastest), so consecutive threads touch consecutive addresses.
struct Index4 {
  int64_t n, c, h, w;
};
__host__ __device__ __forceinline__ Index4 unravel_in_memory_order(int64_t e, int64_t C, int64_t H,
                                                                   int64_t W, bool channels_last) {
  if (channels_last) return {e / (C * W * H), e % C, (e / (C * W)) % H, (e / C) % W};
  return {e / (W * H * C), (e / (W * H)) % C, (e / W) % H, e % W};
}

#define TCONV_GRID_STRIDE_LOOP(index, total)                                                   \
  for (int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; index < (total);        \
       index += int64_t(blockDim.x) * gridDim.x)

}  // namespace tconv::cuda
