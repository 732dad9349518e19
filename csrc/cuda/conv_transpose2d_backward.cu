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
// P, X and the grad_input sums are stored in the order that follows each tensor's memory format
// (channel-fastest or pixel-fastest; the GEMMs take transposed views), so gathers and epilogues
// coalesce, and their index math runs in 32 bits with precomputed dividers when a launch fits
// (Note [index width], cuda/launch.cuh).
// The GEMMs also multiply P's zeros (taps outside grad_output): the epilogues that write
// grad_input and grad_weight recompute an element whose sum is not finite from its real terms, so
// NaN and Inf land where the definition puts them (see common/conv_transpose2d_direct.h).
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
#include <initializer_list>
#include <vector>

#include "common/int_math.h"
#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_backward_args.h"
#include "common/conv_transpose2d_direct.h"
#include "common/conv_transpose2d_shape.h"
#include "common/macros.h"
#include "cuda/block_reduce.cuh"
#include "cuda/bmm.cuh"
#include "cuda/launch.cuh"
#include "cuda/row_chunks.h"

namespace tconv::cuda {
namespace {

using at::Tensor;

constexpr int kReduceThreads = 256;

// Channel-fastest memory (channels_last): gathers and lanes along C coalesce.
inline bool channels_fastest(const Tensor& t) {
  return t.size(1) > 1 && t.stride(1) == 1;
}

// Rows of the patch matrix P: input rows t = n * H + ih over all images; each has W pixels.
int64_t patch_rows_per_chunk(const ConvTranspose2dGeometry& g, int64_t elem_size) {
  const int64_t Kp = g.Cout_g * g.kH * g.kW;
  return rows_per_chunk(g.N * g.H, g.groups * g.W * (Kp + g.Cin_g), g.W * std::max(Kp, g.Cin_g),
                        elem_size);
}

// Operand orders per memory format (review finding 3), as in the forward (conv_transpose2d.cu,
// CellOrder): a gathered operand whose source is channel-fastest (channels_last) is stored with
// the channel index fastest, otherwise transposed with the pixel index m = (t - t0, iw) fastest,
// so consecutive threads read consecutive addresses; the GEMMs take transposed operands as views.
//   P (patches of grad_output): channel-fastest: (grp, M, Kp), kp = (kh, kw, co); else
//     P^T (grp, Kp, M), kp = (co, kh, kw);
//   D (grad_input sums): gi channels_last: (grp, M, Cin_g); else D^T (grp, Cin_g, M);
//   X (input rows for grad_weight): channel-fastest: X^T (grp, M, Cin_g); else (grp, Cin_g, M).
// Index math runs in 32 bits with precomputed dividers when the launch fits (Note [index width]).

// Dividers of the patch gather and the grad_input epilogue for one chunk.
template <typename index_t>
struct PatchDividers {
  Divider<index_t> Kp, M, Cout_g, kH, kW, H, W, Cin, Cin_g;
  PatchDividers(const ConvTranspose2dGeometry& g, int64_t rows)
      : Kp(g.Cout_g * g.kH * g.kW), M(rows * g.W), Cout_g(g.Cout_g), kH(g.kH), kW(g.kW), H(g.H),
        W(g.W), Cin(g.Cin), Cin_g(g.Cin_g) {}
};

// P[grp][m = (t - t0, iw)][kp] = grad_output[n, grp * Cout_g + co, ih*sh - ph + kh*dh,
// iw*sw - pw + kw*dw] (zero outside) for the input rows t in [t0, t0 + rows), stored as above.
template <typename scalar_t, typename index_t, bool kChannelsFastest>
__global__ void __launch_bounds__(kThreads)
gather_patches_kernel(const scalar_t* __restrict__ go, StridesT<index_t> gos,
                      ConvTranspose2dGeometry g, index_t t0, index_t total,
                      PatchDividers<index_t> d, scalar_t* __restrict__ P) {
  const index_t sh = index_t(g.sh), sw = index_t(g.sw), ph = index_t(g.ph), pw = index_t(g.pw);
  const index_t dh = index_t(g.dh), dw = index_t(g.dw), Ho = index_t(g.Ho), Wo = index_t(g.Wo);
  const index_t Cout_g = index_t(g.Cout_g);
  TCONV_GRID_STRIDE_LOOP_T(index_t, e, total) {
    index_t kp, m, grp, co, kh, kw;
    if constexpr (kChannelsFastest) {
      grp = d.M.divmod(d.Kp.divmod(e, kp), m);
      kh = d.kW.divmod(d.Cout_g.divmod(kp, co), kw);
    } else {
      grp = d.Kp.divmod(d.M.divmod(e, m), kp);
      co = d.kH.divmod(d.kW.divmod(kp, kw), kh);
    }
    index_t iw, ih;
    const index_t t = t0 + d.W.divmod(m, iw);
    const index_t n = d.H.divmod(t, ih);
    const index_t oh = ih * sh - ph + kh * dh;
    const index_t ow = iw * sw - pw + kw * dw;
    const bool inside = oh >= 0 && oh < Ho && ow >= 0 && ow < Wo;
    P[e] = inside ? go[gos.offset(n, grp * Cout_g + co, oh, ow)] : scalar_t(0);
  }
}

// grad_input[n, cin, ih, iw] = the GEMM sum D[grp][(t - t0, iw)][ci] for the input rows t in
// [t0, t0 + rows). Threads run along grad_input's memory order so the writes coalesce, and D is
// laid out so the reads do too. The GEMM also multiplied P's zeros (taps outside grad_output)
// with the weight, 0 * Inf = NaN where the definition has no term, so an element whose sum is not
// finite is recomputed from its real taps.
template <typename scalar_t, typename acc_t, typename index_t, bool kChannelsLast>
__global__ void __launch_bounds__(kThreads)
write_grad_input_kernel(const acc_t* __restrict__ D, StridedRead<scalar_t, acc_t> go_at,
                        StridedRead<scalar_t, acc_t> w_at, ConvTranspose2dGeometry g, index_t t0,
                        index_t M, index_t total, PatchDividers<index_t> d,
                        scalar_t* __restrict__ gi, StridesT<index_t> gis) {
  const index_t W = index_t(g.W), Cin_g = index_t(g.Cin_g);
  TCONV_GRID_STRIDE_LOOP_T(index_t, e, total) {
    index_t tl, cin, iw;
    if constexpr (kChannelsLast) {  // e = (tl, iw, cin)
      tl = d.W.divmod(d.Cin.divmod(e, cin), iw);
    } else {  // e = (tl, cin, iw)
      tl = d.Cin.divmod(d.W.divmod(e, iw), cin);
    }
    index_t ih, ci;
    const index_t n = d.H.divmod(t0 + tl, ih);
    const index_t grp = d.Cin_g.divmod(cin, ci);
    const index_t m = tl * W + iw;
    acc_t v = kChannelsLast ? D[(grp * M + m) * Cin_g + ci] : D[(grp * Cin_g + ci) * M + m];
    if (!isfinite(v))
      v = conv_transpose2d_grad_input_direct<acc_t>(g, int64_t(n), int64_t(cin), int64_t(ih),
                                                    int64_t(iw), go_at, w_at);
    gi[gis.offset(n, cin, ih, iw)] = static_cast<scalar_t>(v);
  }
}

// X[grp][ci][m = (t - t0, iw)] = input[n, grp * Cin_g + ci, ih, iw] for the input rows in the
// chunk, stored as X^T (grp, M, Cin_g) when kChannelsFastest, else as (grp, Cin_g, M).
template <typename scalar_t, typename index_t, bool kChannelsFastest>
__global__ void __launch_bounds__(kThreads)
gather_input_rows_kernel(const scalar_t* __restrict__ x, StridesT<index_t> xs,
                         ConvTranspose2dGeometry g, index_t t0, index_t total,
                         PatchDividers<index_t> d, scalar_t* __restrict__ X) {
  TCONV_GRID_STRIDE_LOOP_T(index_t, e, total) {
    index_t m, cin;
    if constexpr (kChannelsFastest) {  // e = (grp, m, ci)
      index_t ci;
      const index_t grp = d.M.divmod(d.Cin_g.divmod(e, ci), m);
      cin = grp * index_t(g.Cin_g) + ci;
    } else {  // e = (cin, m)
      cin = d.M.divmod(e, m);
    }
    index_t iw, ih;
    const index_t t = t0 + d.W.divmod(m, iw);
    const index_t n = d.H.divmod(t, ih);
    X[e] = x[xs.offset(n, cin, ih, iw)];
  }
}

// One input channel per group: grad_input[n, grp, ih, iw] sums, over the group's output channels
// and the taps in order (co, kh, kw), grad_output at the outputs the pixel fed times the weight.
// (output_of_tap is a multiply-add: no division per tap.)
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
depthwise_backward_input_kernel(StridedRead<scalar_t, acc_t> go_at,
                                StridedRead<scalar_t, acc_t> w_at, ConvTranspose2dGeometry g,
                                MemoryOrder4<index_t> order, index_t total,
                                scalar_t* __restrict__ gi, StridesT<index_t> gis) {
  TCONV_GRID_STRIDE_LOOP_T(index_t, e, total) {
    const auto [n, grp, ih, iw] = order(e);
    gi[gis.offset(n, grp, ih, iw)] = static_cast<scalar_t>(conv_transpose2d_grad_input_direct<acc_t>(
        g, int64_t(n), int64_t(grp), int64_t(ih), int64_t(iw), go_at, w_at));
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

// grad_weight = acc rounded to scalar_t, kReduceThreads elements per block. acc (the GEMM sums)
// also multiplied P's zeros with the input (0 * Inf = NaN where the definition has no term): a
// block holding a non-finite sum recomputes each such element from its real terms, all its
// threads together. Finite data costs one test per element.
// kp_channels_fastest: acc is (groups, Cin_g, Kp) with kp = (kh, kw, co) (the patch order for a
// channel-fastest grad_output), else kp = (co, kh, kw), the weight's own order.
template <typename scalar_t, typename acc_t>
__global__ void write_grad_weight_kernel(const acc_t* __restrict__ acc,
                                         StridedRead<scalar_t, acc_t> go_at,
                                         StridedRead<scalar_t, acc_t> x_at,
                                         ConvTranspose2dGeometry g, bool kp_channels_fastest,
                                         scalar_t* __restrict__ gw) {
  __shared__ acc_t shared[kReduceThreads];
  __shared__ bool recompute[kReduceThreads];
  const int64_t total = g.Cin * g.Cout_g * g.kH * g.kW;
  // The loop bounds are uniform over the block: every thread reaches every barrier.
  for (int64_t base = int64_t(blockIdx.x) * kReduceThreads; base < total;
       base += int64_t(gridDim.x) * kReduceThreads) {
    const int64_t e = base + threadIdx.x;
    int64_t a = e;  // e = (cin, co, kh, kw) in gw; its sum's index in acc
    if (kp_channels_fastest && e < total) {
      const int64_t taps = g.kH * g.kW, kp = e % (g.Cout_g * taps);
      a = e - kp + (kp % taps) * g.Cout_g + kp / taps;
    }
    const acc_t v = e < total ? acc[a] : acc_t(0);
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
  const int64_t lane_blocks = ceil_div(lanes, lanes_per_block);
  const int64_t by_work = ceil_div(pixels * lanes_per_block, kMinBlockTerms);
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
  const PixelSegments seg{N, H, W, ceil_div(pixels, S)};
  Tensor partials = at::empty({S, lanes}, acc_options);
  const dim3 grid(static_cast<unsigned int>(ceil_div(lanes, kLanes)), static_cast<unsigned int>(S));
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


// ---- grad_input --------------------------------------------------------------------------------

// (groups, Kp, Cin_g) view of the weight with kp = (kh, kw, co) when kp_channels_fastest, else
// kp = (co, kh, kw): W_g[grp][kp][ci] = weight[grp * Cin_g + ci, co, kh, kw].
Tensor weight_as_kp_by_ci(const Tensor& weight, const ConvTranspose2dGeometry& g,
                          bool kp_channels_fastest) {
  const int64_t Kp = g.Cout_g * g.kH * g.kW;
  const Tensor w = kp_channels_fastest ? weight.permute({0, 2, 3, 1}).contiguous() : weight.contiguous();
  return w.view({g.groups, g.Cin_g, Kp}).transpose(1, 2);
}

// Gathers the patches of rows [t0, t0 + rows) into P_chunk (stored as described above).
template <typename scalar_t, typename index_t>
void launch_gather_patches(const Tensor& go, const ConvTranspose2dGeometry& g, int64_t t0,
                           int64_t rows, bool channels_fastest_go, Tensor& P_chunk,
                           cudaStream_t stream) {
  if (P_chunk.numel() == 0) return;
  const PatchDividers<index_t> d(g, rows);
  const auto kernel = channels_fastest_go ? gather_patches_kernel<scalar_t, index_t, true>
                                          : gather_patches_kernel<scalar_t, index_t, false>;
  kernel<<<blocks_for(P_chunk.numel()), kThreads, 0, stream>>>(
      go.const_data_ptr<scalar_t>(), strides_as<index_t>(go), g, index_t(t0),
      index_t(P_chunk.numel()), d, P_chunk.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Whether a chunk's gather/epilogue launches fit 32-bit indices (Note [index width]).
bool patches_fit_32bit(const ConvTranspose2dGeometry& g, int64_t rows,
                       std::initializer_list<const Tensor*> tensors) {
  const int64_t Kp = g.Cout_g * g.kH * g.kW, M = rows * g.W;
  return use_32bit_index({g.groups * M * std::max(Kp, g.Cin_g), g.N * g.H, rows * g.Cin * g.W,
                          g.H * g.sh + g.kH * g.dh + g.ph, g.W * g.sw + g.kW * g.dw + g.pw},
                         tensors);
}

template <typename scalar_t>
void backward_input_patches(const Tensor& go, const Tensor& weight, Tensor& gi,
                            const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto stream = at::cuda::getCurrentCUDAStream();
  const at::TensorOptions acc_options = go.options().dtype(at::toOpMathType(go.scalar_type()));
  const int64_t Kp = g.Cout_g * g.kH * g.kW;
  const bool go_cf = channels_fastest(go);
  // W_g (Kp x Cin_g) in P's kp order, in the input's type.
  const Tensor Wg = weight_as_kp_by_ci(weight, g, go_cf);

  const int64_t total_rows = g.N * g.H;
  const int64_t rows_max = patch_rows_per_chunk(g, sizeof(acc_t));
  Tensor P = at::empty({g.groups * rows_max * g.W * Kp}, go.options());
  Tensor D = at::empty({g.groups * rows_max * g.W * g.Cin_g}, acc_options);
  const StridedRead<scalar_t, acc_t> go_at{go.const_data_ptr<scalar_t>(), strides_of(go)};
  const StridedRead<scalar_t, acc_t> w_at{weight.const_data_ptr<scalar_t>(), strides_of(weight)};
  for (int64_t t0 = 0; t0 < total_rows; t0 += rows_max) {
    const int64_t rows = std::min(rows_max, total_rows - t0);
    const int64_t M = rows * g.W;
    Tensor P_chunk = go_cf ? dense_prefix(P, g.groups, M, Kp) : dense_prefix(P, g.groups, Kp, M);
    Tensor D_chunk = channels_last ? dense_prefix(D, g.groups, M, g.Cin_g)
                                   : dense_prefix(D, g.groups, g.Cin_g, M);
    const Tensor P_mk = go_cf ? P_chunk : P_chunk.transpose(1, 2);  // (grp, M, Kp)
    const int64_t outputs = rows * g.Cin * g.W;
    with_index_type(patches_fit_32bit(g, rows, {&go, &gi}), [&](auto zero) {
      using index_t = decltype(zero);
      launch_gather_patches<scalar_t, index_t>(go, g, t0, rows, go_cf, P_chunk, stream);
      // cuBLAS, a fixed reduction order per shape.
      if (channels_last) {
        bmm_acc<scalar_t>(P_mk, Wg, D_chunk, false);  // D = P W_g
      } else {
        bmm_acc<scalar_t>(Wg.transpose(1, 2), P_mk.transpose(1, 2), D_chunk, false);  // D^T = W_g^T P^T
      }
      const PatchDividers<index_t> d(g, rows);
      const auto write = channels_last ? write_grad_input_kernel<scalar_t, acc_t, index_t, true>
                                       : write_grad_input_kernel<scalar_t, acc_t, index_t, false>;
      write<<<blocks_for(outputs), kThreads, 0, stream>>>(
          D_chunk.const_data_ptr<acc_t>(), go_at, w_at, g, index_t(t0), index_t(M), index_t(outputs),
          d, gi.mutable_data_ptr<scalar_t>(), strides_as<index_t>(gi));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
}

template <typename scalar_t>
void backward_input_depthwise(const Tensor& go, const Tensor& weight, Tensor& gi,
                              const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  with_index_type(use_32bit_index({gi.numel()}, {&gi}), [&](auto zero) {
    using index_t = decltype(zero);
    depthwise_backward_input_kernel<scalar_t, acc_t, index_t>
        <<<blocks_for(gi.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            StridedRead<scalar_t, acc_t>{go.const_data_ptr<scalar_t>(), strides_of(go)},
            StridedRead<scalar_t, acc_t>{weight.const_data_ptr<scalar_t>(), strides_of(weight)}, g,
            MemoryOrder4<index_t>(g.Cin, g.H, g.W, channels_last), index_t(gi.numel()),
            gi.mutable_data_ptr<scalar_t>(), strides_as<index_t>(gi));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
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
    TCONV_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "conv_transpose2d_backward_input_depthwise_cuda", [&] {
      backward_input_depthwise<scalar_t>(grad_output, weight, gi, g, channels_last);
    });
    return gi;
  }
  TCONV_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "conv_transpose2d_backward_input_cuda", [&] {
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
  const bool go_cf = channels_fastest(go), x_cf = channels_fastest(x);
  Tensor gw = at::zeros({g.groups, g.Cin_g, Kp}, acc_options);  // kp in P's order

  const int64_t total_rows = g.N * g.H;
  const int64_t rows_max = patch_rows_per_chunk(g, sizeof(acc_t));
  Tensor P = at::empty({g.groups * rows_max * g.W * Kp}, go.options());
  Tensor X = at::empty({g.groups * g.Cin_g * rows_max * g.W}, go.options());
  for (int64_t t0 = 0; t0 < total_rows; t0 += rows_max) {
    const int64_t rows = std::min(rows_max, total_rows - t0);
    const int64_t M = rows * g.W;
    Tensor P_chunk = go_cf ? dense_prefix(P, g.groups, M, Kp) : dense_prefix(P, g.groups, Kp, M);
    Tensor X_chunk = x_cf ? dense_prefix(X, g.groups, M, g.Cin_g) : dense_prefix(X, g.groups, g.Cin_g, M);
    with_index_type(patches_fit_32bit(g, rows, {&go, &x}), [&](auto zero) {
      using index_t = decltype(zero);
      launch_gather_patches<scalar_t, index_t>(go, g, t0, rows, go_cf, P_chunk, stream);
      if (X_chunk.numel() > 0) {
        const PatchDividers<index_t> d(g, rows);
        const auto gather = x_cf ? gather_input_rows_kernel<scalar_t, index_t, true>
                                 : gather_input_rows_kernel<scalar_t, index_t, false>;
        gather<<<blocks_for(X_chunk.numel()), kThreads, 0, stream>>>(
            x.const_data_ptr<scalar_t>(), strides_as<index_t>(x), g, index_t(t0),
            index_t(X_chunk.numel()), d, X_chunk.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
    const Tensor X_cm = x_cf ? X_chunk.transpose(1, 2) : X_chunk;  // (grp, Cin_g, M)
    const Tensor P_mk = go_cf ? P_chunk : P_chunk.transpose(1, 2);  // (grp, M, Kp)
    bmm_acc<scalar_t>(X_cm, P_mk, gw, true);  // gw += X_g @ P_g: chunks summed in order, no atomics
  }
  const unsigned int blocks = static_cast<unsigned int>(
      std::min<int64_t>((gw.numel() + kReduceThreads - 1) / kReduceThreads, int64_t(1) << 20));
  write_grad_weight_kernel<scalar_t, acc_t><<<blocks, kReduceThreads, 0, stream>>>(
      gw.const_data_ptr<acc_t>(), StridedRead<scalar_t, acc_t>{go.const_data_ptr<scalar_t>(), strides_of(go)},
      StridedRead<scalar_t, acc_t>{x.const_data_ptr<scalar_t>(), strides_of(x)}, g, go_cf,
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
    TCONV_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "conv_transpose2d_backward_weight_depthwise_cuda", [&] {
      backward_weight_depthwise<scalar_t>(grad_output, input, gw, g);
    });
    return gw;
  }
  TCONV_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "conv_transpose2d_backward_weight_cuda", [&] {
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
  TCONV_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "conv_transpose2d_backward_bias_cuda", [&] {
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
