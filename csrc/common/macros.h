// Lets index math be written once and called from host code, CPU kernels and CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TCONV_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TCONV_HOST_DEVICE inline
#endif
