// CUDA backward of tconv::conv_transpose2d: gradients for input, weight and bias. Computes what
// csrc/cpu/conv_transpose2d_backward.cpp computes.
//
// Both dense gradients read grad_output through the patch matrix P of an ordinary strided
// convolution: for input pixel (n, ih, iw) of group grp,
//     P[grp][(n, ih, iw)][(co, kh, kw)] = grad_output[n, grp * Cout_g + co, ih*sh - ph + kh*dh, iw*sw - pw + kw*dw]
// (zero outside), gathered by a kernel in chunks of input rows. Then, with cuBLAS batched over groups
// (operands in the input's type, sums in float32 for bfloat16/float16: cuda/bmm.cuh),
//     grad_input  = P @ W_g          W_g[(co, kh, kw)][ci] = weight[grp * Cin_g + ci, co, kh, kw]
//     grad_weight = sum over chunks, in chunk order, of X_g^T @ P
// The im2col form needs no col2im: each grad_input element is one GEMM output, written once.
// The GEMMs also multiply P's zeros (taps outside grad_output): the epilogues that write
// grad_input and grad_weight recompute an element whose sum is not finite from its real terms
// (common/conv_transpose2d_direct.h), Note [NaN/Inf] (docs/ARCHITECTURE.md).
// One input channel per group (depthwise): direct kernels, one thread per grad_input element, and
// grad_weight, like grad_bias, a two-pass reduction over the pixels. Every sum has a fixed order
// and there are no atomics, so the gradients are bitwise reproducible.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_backward_args.h"
#include "common/conv_transpose2d_direct.h"
#include "common/conv_transpose2d_shape.h"
#include "cuda/block_reduce.cuh"
#include "cuda/bmm.cuh"
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
template <typename scalar_t>
__global__ void gather_patches_kernel(const scalar_t* __restrict__ go, Strides4 gos,
                                      ConvTranspose2dGeometry g, int64_t t0, int64_t rows,
                                      scalar_t* __restrict__ P) {
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
    P[e] = inside ? go[gos.offset(n, grp * g.Cout_g + co, oh, ow)] : scalar_t(0);
  }
}

// grad_input[n, cin, ih, iw] = D[grp][(t - t0, iw)][ci] for the input rows t in [t0, t0 + rows).
// Threads run along grad_input's memory order so the writes coalesce. An element whose sum is
// not finite is recomputed from its real taps (Note [NaN/Inf] (docs/ARCHITECTURE.md)).
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
template <typename scalar_t>
__global__ void gather_input_rows_kernel(const scalar_t* __restrict__ x, Strides4 xs,
                                         ConvTranspose2dGeometry g, int64_t t0, int64_t rows,
                                         scalar_t* __restrict__ X) {
  const int64_t M = rows * g.W;
  const int64_t total = g.Cin * M;  // (grp, ci) = cin
  TCONV_GRID_STRIDE_LOOP(e, total) {
    const int64_t m = e % M, cin = e / M;
    const int64_t t = t0 + m / g.W, iw = m % g.W;
    X[e] = x[xs.offset(t / g.H, cin, t % g.H, iw)];
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

// grad_weight = acc rounded to scalar_t, kReduceThreads elements per block. A block holding a
// non-finite sum recomputes each such element from its real terms, all its threads together
// (Note [NaN/Inf] (docs/ARCHITECTURE.md)). Finite data costs one test per element.
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

// ---- two-pass reductions over the pixels (n, h, w): grad_bias, depthwise grad_weight -----------
// Each "lane" (a bias channel, a depthwise weight element) sums one term per pixel of an
// (N, H, W) grid. Pass 1: block (lane tile, segment s) sums the pixels [s * L, (s + 1) * L) of its
// lanes into partials[s][lane] (kLanes lanes by kPix pixel threads, a fixed-shape tree over the
// pixel threads); pass 2 adds each lane's S partials in order. S and L depend only on the shape,
// so the sums are bitwise reproducible, with no atomics. Contiguous data: one lane per block,
// threads along the pixels (w fastest); channels_last: 32 lanes along C per block, so the reads
// coalesce either way. Threads step through the pixels by adding a precomputed (n, h, w) step: no
// division per element.

struct PixelSegments {
  int64_t N, H, W;
  int64_t seg_len;  // L pixels per segment; S = gridDim.y segments
};

// S for `lanes` lanes and `pixels` pixels: about kTargetBlocks blocks in all, at least
// kMinBlockTerms terms per block. Shape-only (not the GPU's size): the same sums on every GPU.
inline int64_t segments_for(int64_t lanes, int64_t lanes_per_block, int64_t pixels) {
  constexpr int64_t kTargetBlocks = 1024, kMinBlockTerms = 16384;
  const int64_t lane_blocks = (lanes + lanes_per_block - 1) / lanes_per_block;
  const int64_t by_work = (pixels * lanes_per_block + kMinBlockTerms - 1) / kMinBlockTerms;
  const int64_t by_blocks = std::max<int64_t>(kTargetBlocks / lane_blocks, 1);
  return std::clamp<int64_t>(std::min(by_work, by_blocks), 1, 65535);  // gridDim.y limit
}

template <int kLanes, int kPix, typename acc_t, typename Term>
__global__ void __launch_bounds__(kLanes * kPix)
pixel_partials_kernel(Term term, int64_t lanes, PixelSegments seg, acc_t* __restrict__ partials) {
  __shared__ acc_t shared[kPix][kLanes];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t lane = int64_t(blockIdx.x) * kLanes + tx;
  const int64_t pixels = seg.N * seg.H * seg.W;
  const int64_t begin = int64_t(blockIdx.y) * seg.seg_len;
  const int64_t end = std::min(begin + seg.seg_len, pixels);
  acc_t partial = 0;
  if (lane < lanes && begin + ty < end) {
    const auto l = term.lane(lane);
    int64_t p = begin + ty;
    int64_t n = p / (seg.H * seg.W), h = (p / seg.W) % seg.H, w = p % seg.W;
    // The step kPix as (dn, dh, dw) with dh < H, dw < W: one carry per axis at most.
    const int64_t dn = kPix / (seg.H * seg.W), dh = (kPix / seg.W) % seg.H, dw = kPix % seg.W;
    for (; p < end; p += kPix) {
      term.add(l, n, h, w, partial);
      w += dw; h += dh; n += dn;
      if (w >= seg.W) { w -= seg.W; ++h; }
      if (h >= seg.H) { h -= seg.H; ++n; }
    }
  }
  shared[ty][tx] = partial;
  __syncthreads();
#pragma unroll
  for (int half = kPix / 2; half > 0; half /= 2) {
    if (ty < half) shared[ty][tx] += shared[ty + half][tx];
    __syncthreads();
  }
  if (ty == 0 && lane < lanes) partials[int64_t(blockIdx.y) * lanes + lane] = shared[0][tx];
}

// out[term.dest(lane)] = the lane's S partials added in order, rounded once.
template <typename scalar_t, typename acc_t, typename Term>
__global__ void sum_partials_kernel(Term term, const acc_t* __restrict__ partials, int64_t lanes,
                                    int64_t S, scalar_t* __restrict__ out) {
  TCONV_GRID_STRIDE_LOOP(lane, lanes) {
    acc_t sum = 0;
    for (int64_t s = 0; s < S; ++s) sum += partials[s * lanes + lane];
    out[term.dest(lane)] = static_cast<scalar_t>(sum);
  }
}

template <int kLanes, int kPix, typename scalar_t, typename acc_t, typename Term>
void reduce_over_pixels_tiled(const Term& term, int64_t lanes, int64_t N, int64_t H, int64_t W,
                              const at::TensorOptions& acc_options, scalar_t* out) {
  const auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t pixels = N * H * W;
  const int64_t S = segments_for(lanes, kLanes, pixels);
  const PixelSegments seg{N, H, W, (pixels + S - 1) / S};
  Tensor partials = at::empty({S, lanes}, acc_options);
  const dim3 grid(static_cast<unsigned int>((lanes + kLanes - 1) / kLanes), static_cast<unsigned int>(S));
  pixel_partials_kernel<kLanes, kPix, acc_t><<<grid, dim3(kLanes, kPix), 0, stream>>>(
      term, lanes, seg, partials.mutable_data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  sum_partials_kernel<scalar_t, acc_t><<<blocks_for(lanes), kThreads, 0, stream>>>(
      term, partials.const_data_ptr<acc_t>(), lanes, S, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Both passes (lanes > 0); lanes_along_c: the data is channels_last (32 lanes along C per block).
template <typename scalar_t, typename acc_t, typename Term>
void reduce_over_pixels(const Term& term, int64_t lanes, int64_t N, int64_t H, int64_t W,
                        bool lanes_along_c, const at::TensorOptions& acc_options, scalar_t* out) {
  if (N * H * W == 0) {  // empty sums: zeros
    sum_partials_kernel<scalar_t, acc_t><<<blocks_for(lanes), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        term, static_cast<const acc_t*>(nullptr), lanes, int64_t(0), out);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else if (lanes_along_c) {
    reduce_over_pixels_tiled<32, 8, scalar_t, acc_t>(term, lanes, N, H, W, acc_options, out);
  } else {
    reduce_over_pixels_tiled<1, kReduceThreads, scalar_t, acc_t>(term, lanes, N, H, W, acc_options, out);
  }
}

// grad_bias[c]: grad_output[n, c, h, w] summed.
template <typename scalar_t, typename acc_t>
struct BiasTerm {
  const scalar_t* go;
  Strides4 s;
  __device__ __forceinline__ int64_t lane(int64_t c) const { return c; }
  __device__ __forceinline__ int64_t dest(int64_t c) const { return c; }
  __device__ __forceinline__ void add(int64_t c, int64_t n, int64_t h, int64_t w, acc_t& sum) const {
    sum += static_cast<acc_t>(go[s.offset(n, c, h, w)]);
  }
};

// Depthwise grad_weight[grp, co, kh, kw] (contiguous (groups, Cout_g, kH, kW)): input times
// grad_output over the pixels (n, ih, iw) whose tap lands inside grad_output (real terms only, so
// NaN/Inf are exact). Lanes in weight order, or, lanes_along_c, with grp fastest.
template <typename scalar_t, typename acc_t>
struct DepthwiseWeightTerm {
  StridedRead<scalar_t, acc_t> go_at, x_at;
  ConvTranspose2dGeometry g;
  bool lanes_along_c;
  struct Lane {
    int64_t grp, c, kh, kw;
  };
  __device__ __forceinline__ int64_t dest(int64_t l) const {
    if (!lanes_along_c) return l;
    const int64_t grp = l % g.groups, tap = l / g.groups;  // tap = (co, kh, kw)
    return grp * (g.Cout_g * g.kH * g.kW) + tap;
  }
  __device__ __forceinline__ Lane lane(int64_t l) const {
    const int64_t b = dest(l);
    const int64_t kw = b % g.kW, kh = (b / g.kW) % g.kH;
    const int64_t co = (b / (g.kW * g.kH)) % g.Cout_g, grp = b / (g.kW * g.kH * g.Cout_g);
    return {grp, grp * g.Cout_g + co, kh, kw};
  }
  __device__ __forceinline__ void add(const Lane& l, int64_t n, int64_t ih, int64_t iw,
                                      acc_t& sum) const {
    const int64_t oh = output_of_tap(ih, l.kh, g.sh, g.ph, g.dh);
    const int64_t ow = output_of_tap(iw, l.kw, g.sw, g.pw, g.dw);
    if (oh < 0 || oh >= g.Ho || ow < 0 || ow >= g.Wo) return;
    sum += x_at(n, l.grp, ih, iw) * go_at(n, l.c, oh, ow);
  }
};

// Channel-fastest memory (channels_last): lanes along C coalesce.
inline bool channels_fastest(const Tensor& t) {
  return t.size(1) > 1 && t.stride(1) == 1;
}

// ---- grad_input --------------------------------------------------------------------------------

template <typename scalar_t>
void backward_input_patches(const Tensor& go, const Tensor& weight, Tensor& gi,
                            const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto stream = at::cuda::getCurrentCUDAStream();
  const at::TensorOptions acc_options = go.options().dtype(at::toOpMathType(go.scalar_type()));
  const int64_t Kp = g.Cout_g * g.kH * g.kW;
  // W_g (Kp x Cin_g): the transpose of weight viewed as (groups, Cin_g, Kp), in the input's type.
  const Tensor Wg = weight.contiguous().view({g.groups, g.Cin_g, Kp}).transpose(1, 2);

  const int64_t total_rows = g.N * g.H;
  const int64_t rows_max = patch_rows_per_chunk(g, sizeof(acc_t));
  Tensor P = at::empty({g.groups, rows_max * g.W, Kp}, go.options());
  Tensor D = at::empty({g.groups, rows_max * g.W, g.Cin_g}, acc_options);
  const StridedRead<scalar_t, acc_t> go_at{go.const_data_ptr<scalar_t>(), strides_of(go)};
  const StridedRead<scalar_t, acc_t> w_at{weight.const_data_ptr<scalar_t>(), strides_of(weight)};
  for (int64_t t0 = 0; t0 < total_rows; t0 += rows_max) {
    const int64_t rows = std::min(rows_max, total_rows - t0);
    Tensor P_chunk = dense_prefix(P, g.groups, rows * g.W, Kp);
    Tensor D_chunk = dense_prefix(D, g.groups, rows * g.W, g.Cin_g);
    if (P_chunk.numel() > 0) {
      gather_patches_kernel<scalar_t><<<blocks_for(P_chunk.numel()), kThreads, 0, stream>>>(
          go.const_data_ptr<scalar_t>(), strides_of(go), g, t0, rows, P_chunk.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    bmm_acc<scalar_t>(P_chunk, Wg, D_chunk, false);  // cuBLAS, a fixed reduction order per shape
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
  Tensor P = at::empty({g.groups, rows_max * g.W, Kp}, go.options());
  Tensor X = at::empty({g.groups, g.Cin_g, rows_max * g.W}, go.options());
  for (int64_t t0 = 0; t0 < total_rows; t0 += rows_max) {
    const int64_t rows = std::min(rows_max, total_rows - t0);
    Tensor P_chunk = dense_prefix(P, g.groups, rows * g.W, Kp);
    Tensor X_chunk = dense_prefix(X, g.groups, g.Cin_g, rows * g.W);
    gather_patches_kernel<scalar_t><<<blocks_for(P_chunk.numel()), kThreads, 0, stream>>>(
        go.const_data_ptr<scalar_t>(), strides_of(go), g, t0, rows, P_chunk.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gather_input_rows_kernel<scalar_t><<<blocks_for(X_chunk.numel()), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), strides_of(x), g, t0, rows, X_chunk.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    bmm_acc<scalar_t>(X_chunk, P_chunk, gw, true);  // gw += X_g @ P_g: chunks summed in order, no atomics
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
  const bool along_c = channels_fastest(x);
  const DepthwiseWeightTerm<scalar_t, acc_t> term{
      StridedRead<scalar_t, acc_t>{go.const_data_ptr<scalar_t>(), strides_of(go)},
      StridedRead<scalar_t, acc_t>{x.const_data_ptr<scalar_t>(), strides_of(x)}, g, along_c};
  reduce_over_pixels<scalar_t, acc_t>(term, gw.numel(), g.N, g.H, g.W, along_c,
                                      go.options().dtype(at::toOpMathType(go.scalar_type())),
                                      gw.mutable_data_ptr<scalar_t>());
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
    const BiasTerm<scalar_t, acc_t> term{grad_output.const_data_ptr<scalar_t>(), strides_of(grad_output)};
    reduce_over_pixels<scalar_t, acc_t>(term, C, N, H, W, channels_fastest(grad_output),
                                        grad_output.options().dtype(at::toOpMathType(grad_output.scalar_type())),
                                        gb.mutable_data_ptr<scalar_t>());
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
