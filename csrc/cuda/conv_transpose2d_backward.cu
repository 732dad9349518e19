// CUDA backward of tconv::conv_transpose2d: gradients for input, weight and bias. Computes what
// csrc/cpu/conv_transpose2d_backward.cpp computes.
//
// Both dense gradients read grad_output through the patch matrix P of an ordinary strided
// convolution: for input pixel (n, ih, iw) of group grp,
//     P[grp][(n, ih, iw)][(co, kh, kw)] = grad_output[n, grp * Cout_g + co, ih*sh - ph + kh*dh, iw*sw - pw + kw*dw]
// (zero outside), gathered by a kernel in chunks of input rows. Then, with cuBLAS batched over groups,
//     grad_input  = P @ W_g          W_g[(co, kh, kw)][ci] = weight[grp * Cin_g + ci, co, kh, kw]
//     grad_weight = sum over chunks, in chunk order, of X_g^T @ P
// The im2col form needs no col2im: each grad_input element is one GEMM output, written once.
// The GEMMs also multiply P's zeros (taps outside grad_output): the epilogues that write
// grad_input and grad_weight recompute an element whose sum is not finite from its real terms, so
// NaN and Inf land where the definition puts them (see common/conv_transpose2d_direct.h).
// One input channel per group (depthwise): direct kernels, one thread per grad_input element and
// one block per grad_weight element. grad_bias: one block per channel. Every sum has a fixed order
// and there are no atomics, so the gradients are bitwise reproducible.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_backward_args.h"
#include "common/conv_transpose2d_direct.h"
#include "common/conv_transpose2d_shape.h"
#include "cuda/block_reduce.cuh"
#include "cuda/launch.cuh"
#include "cuda/row_chunks.h"

namespace tconv::cuda {
namespace {

using at::Tensor;

constexpr int kReduceThreads = 256;

// Rows of the patch matrix P: input rows t = n * H + ih over all images; each has W pixels.
int64_t patch_rows_per_chunk(const ConvTranspose2dGeometry& g, int64_t elem_size) {
  const int64_t Kp = g.Cout_g * g.kH * g.kW;
  return rows_per_chunk(g.N * g.H, g.groups * g.W * (Kp + g.Cin_g), g.W * std::max(Kp, g.Cin_g),
                        elem_size);
}

// P[grp][m = (t - t0, iw)][kp = (co, kh, kw)] for the input rows t in [t0, t0 + rows).
template <typename scalar_t, typename acc_t>
__global__ void gather_patches_kernel(const scalar_t* __restrict__ go, Strides4 gos,
                                      ConvTranspose2dGeometry g, int64_t t0, int64_t rows,
                                      acc_t* __restrict__ P) {
  const int64_t Kp = g.Cout_g * g.kH * g.kW, M = rows * g.W;
  const int64_t total = g.groups * M * Kp;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    const int64_t kp = e % Kp, m = (e / Kp) % M, grp = e / (Kp * M);
    const int64_t kw = kp % g.kW, kh = (kp / g.kW) % g.kH, co = kp / (g.kW * g.kH);
    const int64_t t = t0 + m / g.W, iw = m % g.W;
    const int64_t n = t / g.H, ih = t % g.H;
    const int64_t oh = output_of_tap(ih, kh, g.sh, g.ph, g.dh);
    const int64_t ow = output_of_tap(iw, kw, g.sw, g.pw, g.dw);
    const bool inside = oh >= 0 && oh < g.Ho && ow >= 0 && ow < g.Wo;
    P[e] = inside ? static_cast<acc_t>(go[gos.offset(n, grp * g.Cout_g + co, oh, ow)]) : acc_t(0);
  }
}

// grad_input[n, cin, ih, iw] = D[grp][(t - t0, iw)][ci] for the input rows t in [t0, t0 + rows).
// Threads run along grad_input's memory order so the writes coalesce. The GEMM also multiplied
// P's zeros (taps outside grad_output) with the weight, 0 * Inf = NaN where the definition has no
// term, so an element whose sum is not finite is recomputed from its real taps.
template <typename scalar_t, typename acc_t>
__global__ void write_grad_input_kernel(const acc_t* __restrict__ D,
                                        StridedRead<scalar_t, acc_t> go_at,
                                        StridedRead<scalar_t, acc_t> w_at,
                                        ConvTranspose2dGeometry g, int64_t t0, int64_t rows,
                                        bool channels_last, scalar_t* __restrict__ gi,
                                        Strides4 gis) {
  const int64_t M = rows * g.W;
  const int64_t total = rows * g.Cin * g.W;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    int64_t tl, cin, iw;
    if (channels_last) {  // e = (tl, iw, cin)
      cin = e % g.Cin; iw = (e / g.Cin) % g.W; tl = e / (g.Cin * g.W);
    } else {  // e = (tl, cin, iw)
      iw = e % g.W; cin = (e / g.W) % g.Cin; tl = e / (g.W * g.Cin);
    }
    const int64_t t = t0 + tl, n = t / g.H, ih = t % g.H;
    const int64_t grp = cin / g.Cin_g, ci = cin % g.Cin_g;
    acc_t v = D[(grp * M + tl * g.W + iw) * g.Cin_g + ci];
    if (!isfinite(v)) v = conv_transpose2d_grad_input_direct<acc_t>(g, n, cin, ih, iw, go_at, w_at);
    gi[gis.offset(n, cin, ih, iw)] = static_cast<scalar_t>(v);
  }
}

// X[grp][ci][m = (t - t0, iw)] = input[n, grp * Cin_g + ci, ih, iw] for the input rows in the chunk.
template <typename scalar_t, typename acc_t>
__global__ void gather_input_rows_kernel(const scalar_t* __restrict__ x, Strides4 xs,
                                         ConvTranspose2dGeometry g, int64_t t0, int64_t rows,
                                         acc_t* __restrict__ X) {
  const int64_t M = rows * g.W;
  const int64_t total = g.Cin * M;  // (grp, ci) = cin
  TCONV_GRID_STRIDE_LOOP(e, total) {
    const int64_t m = e % M, cin = e / M;
    const int64_t t = t0 + m / g.W, iw = m % g.W;
    X[e] = static_cast<acc_t>(x[xs.offset(t / g.H, cin, t % g.H, iw)]);
  }
}

// One input channel per group: grad_input[n, grp, ih, iw] sums, over the group's output channels
// and the taps in order (co, kh, kw), grad_output at the outputs the pixel fed times the weight.
template <typename scalar_t, typename acc_t>
__global__ void depthwise_backward_input_kernel(StridedRead<scalar_t, acc_t> go_at,
                                                StridedRead<scalar_t, acc_t> w_at,
                                                ConvTranspose2dGeometry g, bool channels_last,
                                                scalar_t* __restrict__ gi, Strides4 gis) {
  const int64_t total = g.N * g.Cin * g.H * g.W;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    const auto [n, grp, ih, iw] = unravel_in_memory_order(e, g.Cin, g.H, g.W, channels_last);
    gi[gis.offset(n, grp, ih, iw)] = static_cast<scalar_t>(
        conv_transpose2d_grad_input_direct<acc_t>(g, n, grp, ih, iw, go_at, w_at));
  }
}

// grad_weight element b of the contiguous (Cin, Cout_g, kH, kW) weight, b = (cin, co, kh, kw):
// input x grad_output summed over the pixels (n, ih, iw) whose tap (kh, kw) lands inside
// grad_output, by all kReduceThreads threads of the block (a fixed per-thread stride and a
// fixed-shape tree). Every thread gets the sum; `shared` is free again once all threads read it.
template <typename acc_t, typename GradOutputAt, typename InputAt>
__device__ acc_t grad_weight_element_block_sum(const ConvTranspose2dGeometry& g, int64_t b,
                                               GradOutputAt go_at, InputAt x_at, acc_t* shared) {
  const int64_t kw = b % g.kW, kh = (b / g.kW) % g.kH;
  const int64_t co = (b / (g.kW * g.kH)) % g.Cout_g, cin = b / (g.kW * g.kH * g.Cout_g);
  const int64_t c = (cin / g.Cin_g) * g.Cout_g + co;
  const int64_t pixels = g.N * g.H * g.W;
  acc_t partial = 0;
  for (int64_t p = threadIdx.x; p < pixels; p += kReduceThreads) {
    const int64_t iw = p % g.W, ih = (p / g.W) % g.H, n = p / (g.W * g.H);
    const int64_t oh = output_of_tap(ih, kh, g.sh, g.ph, g.dh);
    const int64_t ow = output_of_tap(iw, kw, g.sw, g.pw, g.dw);
    if (oh < 0 || oh >= g.Ho || ow < 0 || ow >= g.Wo) continue;
    partial += x_at(n, cin, ih, iw) * go_at(n, c, oh, ow);
  }
  return block_sum<kReduceThreads>(partial, shared);
}

// One input channel per group: block b computes grad_weight element b (weight (groups, Cout_g,
// kH, kW) contiguous).
template <typename scalar_t, typename acc_t>
__global__ void depthwise_backward_weight_kernel(StridedRead<scalar_t, acc_t> go_at,
                                                 StridedRead<scalar_t, acc_t> x_at,
                                                 ConvTranspose2dGeometry g,
                                                 scalar_t* __restrict__ gw) {
  __shared__ acc_t shared[kReduceThreads];
  const acc_t total = grad_weight_element_block_sum(g, blockIdx.x, go_at, x_at, shared);
  if (threadIdx.x == 0) gw[blockIdx.x] = static_cast<scalar_t>(total);
}

// grad_weight = acc rounded to scalar_t, kReduceThreads elements per block. acc (the GEMM sums)
// also multiplied P's zeros with the input (0 * Inf = NaN where the definition has no term): a
// block holding a non-finite sum recomputes each such element from its real terms, all its
// threads together. Finite data costs one test per element.
template <typename scalar_t, typename acc_t>
__global__ void write_grad_weight_kernel(const acc_t* __restrict__ acc,
                                         StridedRead<scalar_t, acc_t> go_at,
                                         StridedRead<scalar_t, acc_t> x_at,
                                         ConvTranspose2dGeometry g, scalar_t* __restrict__ gw) {
  __shared__ acc_t shared[kReduceThreads];
  __shared__ bool recompute[kReduceThreads];
  const int64_t total = g.Cin * g.Cout_g * g.kH * g.kW;
  // The loop bounds are uniform over the block: every thread reaches every barrier.
  for (int64_t base = int64_t(blockIdx.x) * kReduceThreads; base < total;
       base += int64_t(gridDim.x) * kReduceThreads) {
    const int64_t e = base + threadIdx.x;
    const acc_t v = e < total ? acc[e] : acc_t(0);
    if (e < total) gw[e] = static_cast<scalar_t>(v);
    recompute[threadIdx.x] = !isfinite(v);
    if (!__syncthreads_or(recompute[threadIdx.x])) continue;
    for (int i = 0; i < kReduceThreads; ++i) {
      if (!recompute[i]) continue;  // shared: the same branch in every thread
      const acc_t sum = grad_weight_element_block_sum(g, base + i, go_at, x_at, shared);
      if (threadIdx.x == 0) gw[base + i] = static_cast<scalar_t>(sum);
      __syncthreads();  // every thread has read shared[0] before the next sum writes it
    }
    __syncthreads();  // every thread has read `recompute` before the next round writes it
  }
}

// Block c computes grad_bias[c], the sum of grad_output[:, c] over batch and space.
template <typename scalar_t, typename acc_t>
__global__ void backward_bias_kernel(const scalar_t* __restrict__ go, Strides4 gos, int64_t N,
                                     int64_t H, int64_t W, scalar_t* __restrict__ gb) {
  __shared__ acc_t shared[kReduceThreads];
  const int64_t c = blockIdx.x;
  const int64_t count = N * H * W;
  acc_t partial = 0;
  for (int64_t p = threadIdx.x; p < count; p += kReduceThreads) {
    const int64_t w = p % W, h = (p / W) % H, n = p / (W * H);
    partial += static_cast<acc_t>(go[gos.offset(n, c, h, w)]);
  }
  const acc_t total = block_sum<kReduceThreads>(partial, shared);
  if (threadIdx.x == 0) gb[c] = static_cast<scalar_t>(total);
}

// ---- grad_input --------------------------------------------------------------------------------

template <typename scalar_t>
void backward_input_patches(const Tensor& go, const Tensor& weight, Tensor& gi,
                            const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto stream = at::cuda::getCurrentCUDAStream();
  const at::TensorOptions acc_options = go.options().dtype(at::toOpMathType(go.scalar_type()));
  const int64_t Kp = g.Cout_g * g.kH * g.kW;
  // W_g (Kp x Cin_g): the transpose of weight viewed as (groups, Cin_g, Kp).
  const Tensor Wg = weight.to(acc_options.dtype()).contiguous().view({g.groups, g.Cin_g, Kp}).transpose(1, 2);

  const int64_t total_rows = g.N * g.H;
  const int64_t rows_max = patch_rows_per_chunk(g, sizeof(acc_t));
  Tensor P = at::empty({g.groups, rows_max * g.W, Kp}, acc_options);
  Tensor D = at::empty({g.groups, rows_max * g.W, g.Cin_g}, acc_options);
  const StridedRead<scalar_t, acc_t> go_at{go.const_data_ptr<scalar_t>(), strides_of(go)};
  const StridedRead<scalar_t, acc_t> w_at{weight.const_data_ptr<scalar_t>(), strides_of(weight)};
  for (int64_t t0 = 0; t0 < total_rows; t0 += rows_max) {
    const int64_t rows = std::min(rows_max, total_rows - t0);
    Tensor P_chunk = dense_prefix(P, g.groups, rows * g.W, Kp);
    Tensor D_chunk = dense_prefix(D, g.groups, rows * g.W, g.Cin_g);
    if (P_chunk.numel() > 0) {
      gather_patches_kernel<scalar_t, acc_t><<<blocks_for(P_chunk.numel()), kThreads, 0, stream>>>(
          go.const_data_ptr<scalar_t>(), strides_of(go), g, t0, rows, P_chunk.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    at::bmm_out(D_chunk, P_chunk, Wg);  // cuBLAS, a fixed reduction order per shape
    const int64_t outputs = rows * g.Cin * g.W;
    write_grad_input_kernel<scalar_t, acc_t><<<blocks_for(outputs), kThreads, 0, stream>>>(
        D_chunk.const_data_ptr<acc_t>(), go_at, w_at, g, t0, rows, channels_last,
        gi.mutable_data_ptr<scalar_t>(), strides_of(gi));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename scalar_t>
void backward_input_depthwise(const Tensor& go, const Tensor& weight, Tensor& gi,
                              const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  depthwise_backward_input_kernel<scalar_t, acc_t>
      <<<blocks_for(gi.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          StridedRead<scalar_t, acc_t>{go.const_data_ptr<scalar_t>(), strides_of(go)},
          StridedRead<scalar_t, acc_t>{weight.const_data_ptr<scalar_t>(), strides_of(weight)}, g,
          channels_last, gi.mutable_data_ptr<scalar_t>(), strides_of(gi));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

Tensor conv_transpose2d_backward_input_cuda(const Tensor& grad_output, const Tensor& weight,
                                            at::IntArrayRef stride, at::IntArrayRef padding,
                                            int64_t groups, at::IntArrayRef dilation,
                                            at::IntArrayRef input_hw) {
  const ConvTranspose2dGeometry g =
      check_backward_input_args(grad_output, weight, stride, padding, groups, dilation, input_hw);
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  const at::MemoryFormat fmt = conv_memory_format(grad_output, weight);
  Tensor gi = at::empty({g.N, g.Cin, g.H, g.W}, grad_output.options().memory_format(fmt));
  if (gi.numel() == 0) return gi;
  const bool channels_last = fmt == at::MemoryFormat::ChannelsLast;
  if (g.Cin_g == 1) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                    "conv_transpose2d_backward_input_depthwise_cuda", [&] {
                                      backward_input_depthwise<scalar_t>(grad_output, weight, gi, g, channels_last);
                                    });
    return gi;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "conv_transpose2d_backward_input_cuda", [&] {
                                    backward_input_patches<scalar_t>(grad_output, weight, gi, g, channels_last);
                                  });
  return gi;
}

// ---- grad_weight -------------------------------------------------------------------------------

// Writes grad_weight (contiguous (Cin, Cout_g, kH, kW)), summed in the accumulation type as
// (groups, Cin_g, Kp) and rounded once.
template <typename scalar_t>
void backward_weight_patches(const Tensor& go, const Tensor& x, Tensor& gw_out,
                             const ConvTranspose2dGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto stream = at::cuda::getCurrentCUDAStream();
  const at::TensorOptions acc_options = go.options().dtype(at::toOpMathType(go.scalar_type()));
  const int64_t Kp = g.Cout_g * g.kH * g.kW;
  Tensor gw = at::zeros({g.groups, g.Cin_g, Kp}, acc_options);

  const int64_t total_rows = g.N * g.H;
  const int64_t rows_max = patch_rows_per_chunk(g, sizeof(acc_t));
  Tensor P = at::empty({g.groups, rows_max * g.W, Kp}, acc_options);
  Tensor X = at::empty({g.groups, g.Cin_g, rows_max * g.W}, acc_options);
  for (int64_t t0 = 0; t0 < total_rows; t0 += rows_max) {
    const int64_t rows = std::min(rows_max, total_rows - t0);
    Tensor P_chunk = dense_prefix(P, g.groups, rows * g.W, Kp);
    Tensor X_chunk = dense_prefix(X, g.groups, g.Cin_g, rows * g.W);
    gather_patches_kernel<scalar_t, acc_t><<<blocks_for(P_chunk.numel()), kThreads, 0, stream>>>(
        go.const_data_ptr<scalar_t>(), strides_of(go), g, t0, rows, P_chunk.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gather_input_rows_kernel<scalar_t, acc_t><<<blocks_for(X_chunk.numel()), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), strides_of(x), g, t0, rows, X_chunk.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gw.baddbmm_(X_chunk, P_chunk);  // gw += X_g @ P_g: chunks summed in order, no atomics
  }
  const unsigned int blocks = static_cast<unsigned int>(
      std::min<int64_t>((gw.numel() + kReduceThreads - 1) / kReduceThreads, int64_t(1) << 20));
  write_grad_weight_kernel<scalar_t, acc_t><<<blocks, kReduceThreads, 0, stream>>>(
      gw.const_data_ptr<acc_t>(), StridedRead<scalar_t, acc_t>{go.const_data_ptr<scalar_t>(), strides_of(go)},
      StridedRead<scalar_t, acc_t>{x.const_data_ptr<scalar_t>(), strides_of(x)}, g,
      gw_out.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void backward_weight_depthwise(const Tensor& go, const Tensor& x, Tensor& gw,
                               const ConvTranspose2dGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  depthwise_backward_weight_kernel<scalar_t, acc_t>
      <<<static_cast<unsigned int>(gw.numel()), kReduceThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          StridedRead<scalar_t, acc_t>{go.const_data_ptr<scalar_t>(), strides_of(go)},
          StridedRead<scalar_t, acc_t>{x.const_data_ptr<scalar_t>(), strides_of(x)}, g,
          gw.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

Tensor conv_transpose2d_backward_weight_cuda(const Tensor& grad_output, const Tensor& input,
                                             at::IntArrayRef kernel_hw, at::IntArrayRef stride,
                                             at::IntArrayRef padding, int64_t groups,
                                             at::IntArrayRef dilation) {
  const ConvTranspose2dGeometry g = check_backward_weight_args(
      grad_output, input, kernel_hw, stride, padding, groups, dilation);
  const std::vector<int64_t> wsizes{g.Cin, g.Cout_g, g.kH, g.kW};
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  Tensor gw = at::empty(wsizes, grad_output.options());
  if (gw.numel() == 0) return gw;
  if (g.N == 0) return gw.zero_();
  if (g.Cin_g == 1) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                    "conv_transpose2d_backward_weight_depthwise_cuda", [&] {
                                      backward_weight_depthwise<scalar_t>(grad_output, input, gw, g);
                                    });
    return gw;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "conv_transpose2d_backward_weight_cuda", [&] {
                                    backward_weight_patches<scalar_t>(grad_output, input, gw, g);
                                  });
  return gw;
}

// ---- grad_bias ---------------------------------------------------------------------------------

Tensor conv_transpose2d_backward_bias_cuda(const Tensor& grad_output) {
  check_backward_bias_args(grad_output);
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  const int64_t N = grad_output.size(0), C = grad_output.size(1);
  const int64_t H = grad_output.size(2), W = grad_output.size(3);
  Tensor gb = at::empty({C}, grad_output.options());
  if (C == 0) return gb;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "conv_transpose2d_backward_bias_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    backward_bias_kernel<scalar_t, acc_t>
        <<<static_cast<unsigned int>(C), kReduceThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            grad_output.const_data_ptr<scalar_t>(), strides_of(grad_output), N, H, W,
            gb.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gb;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("conv_transpose2d_backward_input", &conv_transpose2d_backward_input_cuda);
  m.impl("conv_transpose2d_backward_weight", &conv_transpose2d_backward_weight_cuda);
  m.impl("conv_transpose2d_backward_bias", &conv_transpose2d_backward_bias_cuda);
}

}  // namespace tconv::cuda
