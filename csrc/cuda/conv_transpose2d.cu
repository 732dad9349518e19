// CUDA forward of tconv::conv_transpose2d. Computes what csrc/cpu/conv_transpose2d.cpp computes.
//
// Dense path (the "cell GEMM" of common/conv_transpose2d_shape.h): writing
// o + padding = cell * stride + phase on both axes, every output is one (cell, phase) pair, and
//     C[grp][cell (n, qh, qw)][(co, rh, rw)] = sum_k A[grp][cell][k] * B[grp][k][(co, rh, rw)]
// where A holds, per cell, the input at the few offsets the cell reads (k = (ci, off_h, off_w))
// and B is the weight packed so that every phase pair (rh, rw) is a column block (zero where an
// offset feeds no tap). Three launches per chunk of cell rows:
//   gather A (a kernel), C = A @ B (cuBLAS, batched over groups; A and B in the input's type, C in
//   float32 for bfloat16/float16: cuda/bmm.cuh), scatter C into the output with
//   the bias fused (a kernel, each output element written exactly once). An output whose GEMM sum
//   is not finite is recomputed there from its real taps (common/conv_transpose2d_direct.h), so
//   NaN and Inf land where PyTorch's convolution puts them.
// The orders of k and of the columns, and whether A and C are stored transposed, follow the
// memory formats (CellOrder), so the gather and the epilogue move along the tensors' fastest axis.
// No atomics: the result is bitwise reproducible.
//
// Depthwise path (one input channel per group): one thread per output element sums its taps in a
// fixed order (kh, then kw), over the taps that exist only (NaN/Inf exact as it is), stepping
// from each phase's first tap by the stride (common/conv_transpose2d_taps.h).
//
// Index math: the gather, the epilogue and the depthwise kernel run with 32-bit indices and
// precomputed dividers when the launch fits, else 64-bit (Note [index width], cuda/launch.cuh).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_direct.h"
#include "common/conv_transpose2d_shape.h"
#include "common/conv_transpose2d_taps.h"
#include "common/macros.h"
#include "cuda/bmm.cuh"
#include "cuda/launch.cuh"
#include "cuda/row_chunks.h"

namespace tconv::cuda {
namespace {

using at::Tensor;

// The cell grid of the forward: the cells qh (qw) that hold at least one output row (column).
// A chunk is a range of cell rows t = n * Qh + (qh - qh_lo) over all images.
struct ForwardCells {
  int64_t qh_lo, Qh;  // the W axis is g.qw_lo, g.Qw
  int64_t K;          // Cin_g * cell_offsets_h * cell_offsets_w: inputs one cell reads, per group
  int64_t cols;       // Cout_g * sh * sw: outputs one cell holds, per group
};

ForwardCells forward_cells(const ConvTranspose2dGeometry& g) {
  ForwardCells c{};
  c.qh_lo = floor_div(g.ph, g.sh);
  c.Qh = floor_div(g.Ho - 1 + g.ph, g.sh) - c.qh_lo + 1;
  c.K = g.Cin_g * g.cell_offsets_h * g.cell_offsets_w;
  c.cols = g.Cout_g * g.sh * g.sw;
  return c;
}

// The order of the GEMM's inner (k) and output (col) indices, chosen per memory format so the
// gather and the epilogue read and write along the tensors' fastest axis (review finding 3):
//   x channel-fastest (channels_last): A is (grp, M, K) with k = (off_h, off_w, ci), ci fastest,
//     so consecutive threads read consecutive channels of one pixel;
//   otherwise: A is stored transposed, (grp, K, M) with m = (t, qw) fastest and
//     k = (ci, off_h, off_w), so consecutive threads read consecutive pixels of a row;
//   y channels_last: C is (grp, M, cols) with col = (rh, rw, co), co fastest: the epilogue's
//     threads run along y's channels and read consecutive C elements;
//   otherwise: C is stored transposed, (grp, cols, M) with col = (co, rh, rw): threads run along
//     ow, i.e. along m within each phase rw (sw interleaved runs instead of a stride of cols).
// The GEMM takes the transposed operands as views (cuBLAS's op flags): C = A B or C^T = B^T A^T.
struct CellOrder {
  bool k_channels_fastest;    // A (grp, M, K), k = (off_h, off_w, ci); else A^T, k = (ci, off_h, off_w)
  bool col_channels_fastest;  // C (grp, M, cols), col = (rh, rw, co); else C^T, col = (co, rh, rw)
};

// B[grp][k][col] = w[grp * Cin_g + ci, co, kh, kw] for the taps kh, kw of phases rh, rw at
// offsets off_h, off_w, else 0; k and col in `order`'s index orders. Runs once per call (the
// weight is small): 64-bit indices.
template <typename scalar_t>
__global__ void pack_cell_weights_kernel(const scalar_t* __restrict__ w, Strides4 ws,
                                         ConvTranspose2dGeometry g, ForwardCells c, CellOrder order,
                                         scalar_t* __restrict__ B) {
  const int64_t total = g.groups * c.K * c.cols;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    const int64_t col = e % c.cols, k = (e / c.cols) % c.K, grp = e / (c.cols * c.K);
    int64_t rw, rh, co, off_w, off_h, ci;
    if (order.col_channels_fastest) {
      co = col % g.Cout_g; rw = (col / g.Cout_g) % g.sw; rh = col / (g.Cout_g * g.sw);
    } else {
      rw = col % g.sw; rh = (col / g.sw) % g.sh; co = col / (g.sw * g.sh);
    }
    if (order.k_channels_fastest) {
      ci = k % g.Cin_g; off_w = (k / g.Cin_g) % g.cell_offsets_w; off_h = k / (g.Cin_g * g.cell_offsets_w);
    } else {
      off_w = k % g.cell_offsets_w; off_h = (k / g.cell_offsets_w) % g.cell_offsets_h; ci = k / (g.cell_offsets_w * g.cell_offsets_h);
    }
    const int64_t kh = tap_of(rh, off_h, g.kH, g.sh, g.dh);
    const int64_t kw = tap_of(rw, off_w, g.kW, g.sw, g.dw);
    B[e] = (kh >= 0 && kw >= 0) ? w[ws.offset(grp * g.Cin_g + ci, co, kh, kw)] : scalar_t(0);
  }
}

// Dividers of the cell GEMM's gather and epilogue, built once per chunk (Note [index width]).
template <typename index_t>
struct CellDividers {
  Divider<index_t> K, M, Cin_g, offsets_w, offsets_h, Qw, Qh;  // gather
  Divider<index_t> Cout, Wo, sh, sw, Cout_g;     // epilogue
  CellDividers(const ConvTranspose2dGeometry& g, const ForwardCells& c, int64_t rows)
      : K(c.K), M(rows * g.Qw), Cin_g(g.Cin_g), offsets_w(g.cell_offsets_w), offsets_h(g.cell_offsets_h), Qw(g.Qw),
        Qh(c.Qh),
        Cout(g.Cout), Wo(g.Wo), sh(g.sh), sw(g.sw), Cout_g(g.Cout_g) {}
};

// The gathered operand for the cell rows t in [t0, t0 + rows):
//   A[grp][m = (t - t0, qw)][k] = x[n, grp * Cin_g + ci, qh - off_h, qw - off_w] (zero outside
// the input), stored as (grp, M, K) with k = (off_h, off_w, ci) when kChannelsFastest, else as
// A^T (grp, K, M) with k = (ci, off_h, off_w). Either way e is the buffer's own index (dense
// writes) and consecutive e read along x's fastest axis.
template <typename scalar_t, typename index_t, bool kChannelsFastest>
__global__ void __launch_bounds__(kThreads)
gather_input_cells_kernel(const scalar_t* __restrict__ x, StridesT<index_t> xs,
                          ConvTranspose2dGeometry g, ForwardCells c, index_t t0, index_t total,
                          CellDividers<index_t> d, scalar_t* __restrict__ A) {
  const index_t H = static_cast<index_t>(g.H), W = static_cast<index_t>(g.W);
  const index_t Cin_g = static_cast<index_t>(g.Cin_g), qh_lo = static_cast<index_t>(c.qh_lo);
  const index_t qw_lo = static_cast<index_t>(g.qw_lo);
  TCONV_GRID_STRIDE_LOOP_T(index_t, e, total) {
    index_t k, m, grp, ci, off_h, off_w;
    if constexpr (kChannelsFastest) {
      grp = d.M.divmod(d.K.divmod(e, k), m);
      off_h = d.offsets_w.divmod(d.Cin_g.divmod(k, ci), off_w);
    } else {
      grp = d.K.divmod(d.M.divmod(e, m), k);
      ci = d.offsets_h.divmod(d.offsets_w.divmod(k, off_w), off_h);
    }
    index_t qw, qh;
    const index_t t = t0 + d.Qw.divmod(m, qw);
    const index_t n = d.Qh.divmod(t, qh);
    const index_t ih = qh_lo + qh - off_h;
    const index_t iw = qw_lo + qw - off_w;
    const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
    A[e] = inside ? x[xs.offset(n, grp * Cin_g + ci, ih, iw)] : scalar_t(0);
  }
}

// y[n, c, oh, ow] = the GEMM sum of (cell (t, qw), column (co, rh, rw)) + bias[c] for the outputs
// of cell rows t in [t0, t0 + rows). Threads run along y's memory order (ow fastest for contiguous
// output, channels fastest for kChannelsLast) so the writes coalesce, and C is laid out (CellOrder)
// so the reads do too.
// The GEMM also multiplied the zeros of A and B (0 * Inf = NaN where no tap exists), so an output
// whose sum is not finite is recomputed from its real taps: one test per element for finite data,
// no device-wide check and no host synchronisation.
template <typename scalar_t, typename acc_t, typename index_t, bool kChannelsLast>
__global__ void __launch_bounds__(kThreads)
scatter_output_cells_kernel(const acc_t* __restrict__ C, const scalar_t* __restrict__ bias,
                            StridedRead<scalar_t, acc_t> x_at, StridedRead<scalar_t, acc_t> w_at,
                            ConvTranspose2dGeometry g, ForwardCells c, index_t t0, index_t M,
                            index_t total, CellDividers<index_t> d, scalar_t* __restrict__ y,
                            StridesT<index_t> ys) {
  const index_t cols = static_cast<index_t>(c.cols), Cout_g = static_cast<index_t>(g.Cout_g);
  const index_t sh = static_cast<index_t>(g.sh), sw = static_cast<index_t>(g.sw);
  const index_t Ho = static_cast<index_t>(g.Ho), qh_lo = static_cast<index_t>(c.qh_lo);
  const index_t qw_lo = static_cast<index_t>(g.qw_lo), ph = static_cast<index_t>(g.ph);
  const index_t pw = static_cast<index_t>(g.pw), Qw = static_cast<index_t>(g.Qw);
  TCONV_GRID_STRIDE_LOOP_T(index_t, e, total) {
    index_t ow, co_all, rh, tl;
    if constexpr (kChannelsLast) {  // e = (tl, rh, ow, c)
      tl = d.sh.divmod(d.Wo.divmod(d.Cout.divmod(e, co_all), ow), rh);
    } else {  // e = (tl, c, rh, ow)
      tl = d.Cout.divmod(d.sh.divmod(d.Wo.divmod(e, ow), rh), co_all);
    }
    index_t qh_rel;
    const index_t n = d.Qh.divmod(t0 + tl, qh_rel);
    const index_t oh = (qh_lo + qh_rel) * sh + rh - ph;
    if (oh < 0 || oh >= Ho) continue;  // this phase of the edge cell lies outside the output
    index_t rw, co;
    const index_t qw = d.sw.divmod(ow + pw, rw);
    const index_t grp = d.Cout_g.divmod(co_all, co);
    const index_t m = tl * Qw + (qw - qw_lo);
    acc_t v;
    if constexpr (kChannelsLast) {  // C (grp, M, cols), col = (rh, rw, co)
      v = C[(grp * M + m) * cols + (rh * sw + rw) * Cout_g + co];
    } else {  // C^T (grp, cols, M), col = (co, rh, rw)
      v = C[(grp * cols + (co * sh + rh) * sw + rw) * M + m];
    }
    if (bias != nullptr) v += static_cast<acc_t>(bias[co_all]);
    if (!isfinite(v)) {  // like the CPU direct loop: the bias first, then the taps
      const acc_t b = bias != nullptr ? static_cast<acc_t>(bias[co_all]) : acc_t(0);
      v = conv_transpose2d_output_direct<acc_t>(g, int64_t(n), int64_t(co_all), int64_t(oh),
                                                int64_t(ow), b, x_at, w_at);
    }
    y[ys.offset(n, co_all, oh, ow)] = static_cast<scalar_t>(v);
  }
}

// One input channel per group: y[n, c] = bias[c] + sum over taps (kh, kw) of
// x[n, c / Cout_g, ih, iw] * w[c / Cout_g, c % Cout_g, kh, kw]. Threads run along y's memory
// order. Each axis visits only its phase's taps, from the phase's first tap stepping by the stride
// (common/conv_transpose2d_taps.h): the terms and their order of conv_transpose2d_output_direct,
// without a division per tap.
template <typename index_t>
struct DepthwiseForwardIndex {
  MemoryOrder4<index_t> order;
  Divider<index_t> sh, sw, Cout_g;
  TapProgression<index_t> taps_h, taps_w;
  index_t kH, kW, H, W, ph, pw;
};

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
depthwise_forward_kernel(const scalar_t* __restrict__ x, StridesT<index_t> xs,
                         const scalar_t* __restrict__ w, StridesT<index_t> ws,
                         const scalar_t* __restrict__ bias, DepthwiseForwardIndex<index_t> d,
                         index_t total, scalar_t* __restrict__ y, StridesT<index_t> ys) {
  TCONV_GRID_STRIDE_LOOP_T(index_t, e, total) {
    const auto [n, c, oh, ow] = d.order(e);
    index_t co, rh, rw, kh0, offh, kw0, offw;
    const index_t grp = d.Cout_g.divmod(c, co);
    const index_t qh = d.sh.divmod(oh + d.ph, rh);
    const index_t qw = d.sw.divmod(ow + d.pw, rw);
    acc_t sum = 0;
    if (first_tap_of_phase(d.taps_h, rh, kh0, offh) && first_tap_of_phase(d.taps_w, rw, kw0, offw)) {
      const scalar_t* x_plane = x + (n * xs.n + grp * xs.c);
      const scalar_t* w_taps = w + (grp * ws.n + co * ws.c);
      for (index_t kh = kh0, ih = qh - offh; kh < d.kH && ih >= 0; kh += d.taps_h.dk, ih -= d.taps_h.di) {
        if (ih >= d.H) continue;
        for (index_t kw = kw0, iw = qw - offw; kw < d.kW && iw >= 0; kw += d.taps_w.dk, iw -= d.taps_w.di) {
          if (iw >= d.W) continue;
          sum += static_cast<acc_t>(x_plane[ih * xs.h + iw * xs.w]) *
                 static_cast<acc_t>(w_taps[kh * ws.h + kw * ws.w]);
        }
      }
    }
    if (bias != nullptr) sum += static_cast<acc_t>(bias[c]);
    y[ys.offset(n, c, oh, ow)] = static_cast<scalar_t>(sum);
  }
}

template <typename scalar_t>
void forward_depthwise(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                       const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = y.numel();
  const bool use_32bit = use_32bit_index(
      {total, g.kH + g.sh, g.kW + g.sw, g.ph + g.Ho, g.pw + g.Wo, g.sh * std::max(g.sh, g.dh),
       g.sw * std::max(g.sw, g.dw)},  // the progression's products (first_tap_of_phase)
      {&x, &w, &y});
  with_index_type(use_32bit, [&](auto zero) {
    using index_t = decltype(zero);
    const DepthwiseForwardIndex<index_t> d{
        MemoryOrder4<index_t>(g.Cout, g.Ho, g.Wo, channels_last),
        Divider<index_t>(g.sh), Divider<index_t>(g.sw), Divider<index_t>(g.Cout_g),
        make_tap_progression<index_t>(g.sh, g.dh), make_tap_progression<index_t>(g.sw, g.dw),
        index_t(g.kH), index_t(g.kW), index_t(g.H), index_t(g.W), index_t(g.ph), index_t(g.pw)};
    depthwise_forward_kernel<scalar_t, acc_t, index_t>
        <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            x.const_data_ptr<scalar_t>(), strides_as<index_t>(x), w.const_data_ptr<scalar_t>(),
            strides_as<index_t>(w), bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr, d,
            static_cast<index_t>(total), y.mutable_data_ptr<scalar_t>(), strides_as<index_t>(y));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// Channel-fastest memory (channels_last): gathers along C coalesce.
inline bool channels_fastest(const Tensor& t) {
  return t.size(1) > 1 && t.stride(1) == 1;
}

template <typename scalar_t>
void forward_cell_gemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                       const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto stream = at::cuda::getCurrentCUDAStream();
  const ForwardCells c = forward_cells(g);
  const at::TensorOptions acc_options = x.options().dtype(at::toOpMathType(x.scalar_type()));
  const CellOrder order{channels_fastest(x), channels_last};

  // The GEMM operands stay in the input's type (tensor cores for 16-bit), the sums in acc_t.
  Tensor B = at::empty({g.groups, c.K, c.cols}, x.options());
  pack_cell_weights_kernel<scalar_t><<<blocks_for(B.numel()), kThreads, 0, stream>>>(
      w.const_data_ptr<scalar_t>(), strides_of(w), g, c, order, B.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const int64_t total_rows = g.N * c.Qh;
  const int64_t row_elems = g.groups * g.Qw * (c.K + c.cols);
  const int64_t rows_max = rows_per_chunk(total_rows, row_elems, g.Qw * std::max(c.K, c.cols),
                                          int64_t(sizeof(acc_t)));
  Tensor A = at::empty({g.groups * rows_max * g.Qw * c.K}, x.options());
  Tensor C = at::empty({g.groups * rows_max * g.Qw * c.cols}, acc_options);
  const scalar_t* bias_ptr = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  const StridedRead<scalar_t, acc_t> x_at{x.const_data_ptr<scalar_t>(), strides_of(x)};
  const StridedRead<scalar_t, acc_t> w_at{w.const_data_ptr<scalar_t>(), strides_of(w)};

  for (int64_t t0 = 0; t0 < total_rows; t0 += rows_max) {
    const int64_t rows = std::min(rows_max, total_rows - t0);
    const int64_t M = rows * g.Qw;
    // The buffers as stored (dense), and A as the GEMM's (grp, M, K) operand.
    Tensor A_chunk = order.k_channels_fastest ? dense_prefix(A, g.groups, M, c.K)
                                              : dense_prefix(A, g.groups, c.K, M);
    Tensor C_chunk = order.col_channels_fastest ? dense_prefix(C, g.groups, M, c.cols)
                                                : dense_prefix(C, g.groups, c.cols, M);
    const Tensor A_mk = order.k_channels_fastest ? A_chunk : A_chunk.transpose(1, 2);
    const int64_t outputs = rows * g.sh * g.Cout * g.Wo;
    const bool use_32bit = use_32bit_index(
        {A_chunk.numel(), C_chunk.numel(), outputs, total_rows, g.ph + g.sh + g.Ho, g.pw + g.sw + g.Wo},
        {&x, &y});

    with_index_type(use_32bit, [&](auto zero) {
      using index_t = decltype(zero);
      const CellDividers<index_t> d(g, c, rows);
      const auto gather = order.k_channels_fastest ? gather_input_cells_kernel<scalar_t, index_t, true>
                                                   : gather_input_cells_kernel<scalar_t, index_t, false>;
      gather<<<blocks_for(A_chunk.numel()), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), strides_as<index_t>(x), g, c, index_t(t0),
          index_t(A_chunk.numel()), d, A_chunk.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();

      // cuBLAS, a fixed reduction order per shape.
      if (order.col_channels_fastest) {
        bmm_acc<scalar_t>(A_mk, B, C_chunk, false);  // C = A B
      } else {
        bmm_acc<scalar_t>(B.transpose(1, 2), A_mk.transpose(1, 2), C_chunk, false);  // C^T = B^T A^T
      }

      const auto scatter = channels_last ? scatter_output_cells_kernel<scalar_t, acc_t, index_t, true>
                                         : scatter_output_cells_kernel<scalar_t, acc_t, index_t, false>;
      scatter<<<blocks_for(outputs), kThreads, 0, stream>>>(
          C_chunk.const_data_ptr<acc_t>(), bias_ptr, x_at, w_at, g, c, index_t(t0), index_t(M),
          index_t(outputs), d, y.mutable_data_ptr<scalar_t>(), strides_as<index_t>(y));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
}

Tensor conv_transpose2d_cuda(const Tensor& input, const Tensor& weight,
                             const std::optional<Tensor>& bias_opt, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef output_padding,
                             int64_t groups, at::IntArrayRef dilation) {
  const ConvTranspose2dGeometry g = check_conv_transpose2d_args(
      input, weight, bias_opt, stride, padding, output_padding, groups, dilation);
  const Tensor bias = bias_opt.has_value() && bias_opt->defined() ? bias_opt->contiguous() : Tensor();
  const c10::cuda::CUDAGuard device_guard(input.device());

  const at::MemoryFormat fmt = conv_memory_format(input, weight);
  Tensor y = at::empty({g.N, g.Cout, g.Ho, g.Wo}, input.options().memory_format(fmt));
  if (y.numel() == 0) return y;
  const bool channels_last = fmt == at::MemoryFormat::ChannelsLast;

  // The kernels read input and weight through their strides: no layout copies.
  if (g.Cin_g == 1) {
    TCONV_DISPATCH_FLOATING_TYPES(input.scalar_type(), "conv_transpose2d_depthwise_cuda", [&] {
      forward_depthwise<scalar_t>(input, weight, bias, y, g, channels_last);
    });
    return y;
  }
  TCONV_DISPATCH_FLOATING_TYPES(input.scalar_type(), "conv_transpose2d_cuda", [&] {
    forward_cell_gemm<scalar_t>(input, weight, bias, y, g, channels_last);
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_cuda);
}

}  // namespace tconv::cuda
