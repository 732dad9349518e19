// Lets index math be written once and called from host code, CPU kernels and CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TCONV_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TCONV_HOST_DEVICE inline
#endif

// Runs the lambda with scalar_t = each floating type every tconv op takes (double, float, Half,
// BFloat16), as ATen's AT_DISPATCH_FLOATING_TYPES_AND2(kHalf, kBFloat16, ...).
#define TCONV_DISPATCH_FLOATING_TYPES(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)
