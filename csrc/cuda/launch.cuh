// Launch shapes and element addressing shared by the tconv CUDA kernels.
//
// Every elementwise kernel is a grid-stride loop over an element index and reads/writes 4-D
// tensors through their strides, so contiguous, channels_last and strided views need no copy.
//
// Note [index width]: the memory-bound kernels are templates on index_t. When every index of a
// launch fits in int32 (use_32bit_index: the loop's total and each tensor's largest offset), they
// run with int32_t indices and Divider<int32_t> (ATen's IntDivider: a multiply-high and a shift
// instead of a runtime division, divisors precomputed on the host); otherwise with int64_t and
// plain 64-bit division, so one launch still covers tensors of more than 2^31 elements.
// TCONV_CUDA_INDEX_BITS=64 forces the 64-bit path on any size (the tests run both paths on
// small tensors). Both paths do the same arithmetic on the data in the same order: the results
// are bitwise equal.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include "common/int_math.h"

namespace tconv::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `total` elements (total > 0). More blocks than the GPU can
// hold at once buy nothing; the loop covers the rest.
inline unsigned int blocks_for(int64_t total, int threads = kThreads) {
  const int64_t blocks = ceil_div(total, threads);
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

// ---- index width (Note [index width]) -------------------------------------------------------------

// A divisor fixed for a launch. int32_t: ATen's IntDivider (divisor in [1, 2^31), dividend
// >= 0); int64_t: plain division. Built on the host, passed to kernels by value.
template <typename index_t>
struct Divider {
  static_assert(std::is_same_v<index_t, int64_t>, "int32_t has its own specialisation");
  int64_t divisor = 1;
  Divider() = default;
  explicit Divider(int64_t d) : divisor(std::max<int64_t>(d, 1)) {}
  __host__ __device__ __forceinline__ int64_t div(int64_t n) const { return n / divisor; }
  // n = q * divisor + r: returns q, sets r.
  __host__ __device__ __forceinline__ int64_t divmod(int64_t n, int64_t& r) const {
    const int64_t q = n / divisor;
    r = n - q * divisor;
    return q;
  }
};

template <>
struct Divider<int32_t> {
  at::cuda::detail::IntDivider<unsigned int> d;
  Divider() : d(1u) {}
  // Divisors of a 32-bit launch are sizes of tensors whose offsets fit in int32.
  explicit Divider(int64_t v) : d(static_cast<unsigned int>(std::clamp<int64_t>(v, 1, INT32_MAX))) {}
  __host__ __device__ __forceinline__ int32_t div(int32_t n) const {
    return static_cast<int32_t>(d.div(static_cast<unsigned int>(n)));
  }
  __host__ __device__ __forceinline__ int32_t divmod(int32_t n, int32_t& r) const {
    const int32_t q = div(n);
    r = n - q * static_cast<int32_t>(d.divisor);
    return q;
  }
};

// Element strides of an (N, C, H, W) tensor in the launch's index type.
template <typename index_t>
struct StridesT {
  index_t n, c, h, w;
  __host__ __device__ __forceinline__ index_t offset(index_t in, index_t ic, index_t ih,
                                                      index_t iw) const {
    return in * n + ic * c + ih * h + iw * w;
  }
};

template <typename index_t>
StridesT<index_t> strides_as(const at::Tensor& t) {
  return {static_cast<index_t>(t.stride(0)), static_cast<index_t>(t.stride(1)),
          static_cast<index_t>(t.stride(2)), static_cast<index_t>(t.stride(3))};
}

// One past the largest element offset t's strides reach (0 for an empty tensor).
inline int64_t offset_extent(const at::Tensor& t) {
  if (t.numel() == 0) return 0;
  int64_t extent = 1;
  for (int64_t d = 0; d < t.dim(); ++d) extent += (t.size(d) - 1) * std::abs(t.stride(d));
  return extent;
}

// The grid-stride loop's index runs past `total` by at most one grid (blocks_for caps a grid at
// 2^20 blocks; the 32-bit kernels run at most 256 threads a block): a 32-bit loop keeps that much
// headroom below 2^31.
constexpr int64_t kMax32BitTotal = INT32_MAX - (int64_t(kThreads) << 20);

// TCONV_CUDA_INDEX_BITS=64: every launch takes the 64-bit path (tests).
inline bool index_64bit_forced() {
  const char* v = std::getenv("TCONV_CUDA_INDEX_BITS");
  return v != nullptr && std::strcmp(v, "64") == 0;
}

// Whether a launch may use int32 indices: `totals` are its loop counts and any other index it
// forms (sizes, products of sizes), `tensors` everything it reads or writes through strides.
inline bool use_32bit_index(std::initializer_list<int64_t> totals,
                            std::initializer_list<const at::Tensor*> tensors) {
  if (index_64bit_forced()) return false;
  for (const int64_t t : totals)
    if (t > kMax32BitTotal) return false;
  for (const at::Tensor* t : tensors)
    if (offset_extent(*t) > kMax32BitTotal) return false;
  return true;
}

// Calls f(int32_t{}) or f(int64_t{}): `using index_t = decltype(zero);` inside a generic lambda.
template <typename F>
void with_index_type(bool use_32bit, F&& f) {
  if (use_32bit) f(int32_t{0});
  else f(int64_t{0});
}

// (n, c, h, w) of the e-th element of an (N, C, H, W) tensor visited in its memory order
// (channels_last: c fastest), with the three inner sizes' dividers built once per launch.
template <typename index_t>
struct Index4T {
  index_t n, c, h, w;
};
template <typename index_t>
struct MemoryOrder4 {
  Divider<index_t> d0, d1, d2;  // the three fastest axes in memory order
  bool channels_last;
  MemoryOrder4(int64_t C, int64_t H, int64_t W, bool cl)
      : d0(cl ? C : W), d1(cl ? W : H), d2(cl ? H : C), channels_last(cl) {}
  __host__ __device__ __forceinline__ Index4T<index_t> operator()(index_t e) const {
    index_t i0, i1, i2;
    const index_t q0 = d0.divmod(e, i0);
    const index_t q1 = d1.divmod(q0, i1);
    const index_t n = d2.divmod(q1, i2);
    if (channels_last) return {n, i0, i2, i1};
    return {n, i2, i1, i0};
  }
};

#define TCONV_GRID_STRIDE_LOOP_T(index_t, index, total)                                        \
  for (index_t index = index_t(blockIdx.x) * index_t(blockDim.x) + index_t(threadIdx.x);      \
       index < (total); index += index_t(blockDim.x) * index_t(gridDim.x))

#define TCONV_GRID_STRIDE_LOOP(index, total)                                                   \
  for (int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; index < (total);        \
       index += int64_t(blockDim.x) * gridDim.x)

}  // namespace tconv::cuda
