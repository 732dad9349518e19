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
//   is not finite is recomputed there from its real taps (common/conv_transpose2d_direct.h):
//   Note [NaN/Inf] (docs/ARCHITECTURE.md).
// No atomics: the result is bitwise reproducible.
//
// Depthwise path (one input channel per group): one thread per output element sums its taps in a
// fixed order (kh, then kw), over the taps that exist only (NaN/Inf exact as it is).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_direct.h"
#include "common/conv_transpose2d_shape.h"
#include "cuda/bmm.cuh"
#include "cuda/launch.cuh"
#include "cuda/row_chunks.h"

namespace tconv::cuda {
namespace {

using at::Tensor;

// The cell grid of the forward is the geometry's: cells g.qh_lo .. g.qh_lo + g.Qh - 1 (and
// likewise along W) hold at least one output. A chunk is a range of cell rows
// t = n * Qh + (qh - qh_lo) over all images.
struct ForwardCells {
  int64_t K;          // Cin_g * cell_offsets_h * cell_offsets_w: inputs one cell reads, per group
  int64_t cols;       // Cout_g * sh * sw: outputs one cell holds, per group
};

ForwardCells forward_cells(const ConvTranspose2dGeometry& g) {
  ForwardCells c{};
  c.K = g.Cin_g * g.cell_offsets_h * g.cell_offsets_w;
  c.cols = g.Cout_g * g.sh * g.sw;
  return c;
}

// B[grp][k = (ci, off_h, off_w)][col = (co, rh, rw)] = w[grp * Cin_g + ci, co, kh, kw] for the
// taps kh, kw of phases rh, rw at those offsets, else 0.
template <typename scalar_t>
__global__ void pack_cell_weights_kernel(const scalar_t* __restrict__ w, Strides4 ws,
                                         ConvTranspose2dGeometry g, ForwardCells c,
                                         scalar_t* __restrict__ B) {
  const int64_t total = g.groups * c.K * c.cols;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    const int64_t col = e % c.cols, k = (e / c.cols) % c.K, grp = e / (c.cols * c.K);
    const int64_t rw = col % g.sw, rh = (col / g.sw) % g.sh, co = col / (g.sw * g.sh);
    const int64_t off_w = k % g.cell_offsets_w, off_h = (k / g.cell_offsets_w) % g.cell_offsets_h;
    const int64_t ci = k / (g.cell_offsets_w * g.cell_offsets_h);
    const int64_t kh = tap_of(rh, off_h, g.kH, g.sh, g.dh);
    const int64_t kw = tap_of(rw, off_w, g.kW, g.sw, g.dw);
    B[e] = (kh >= 0 && kw >= 0) ? w[ws.offset(grp * g.Cin_g + ci, co, kh, kw)] : scalar_t(0);
  }
}

// A[grp][m = (t - t0, qw)][k = (ci, off_h, off_w)] = x[n, grp * Cin_g + ci, qh - off_h, qw - off_w]
// (zero outside the input) for the cell rows t in [t0, t0 + rows).
template <typename scalar_t>
__global__ void gather_input_cells_kernel(const scalar_t* __restrict__ x, Strides4 xs,
                                          ConvTranspose2dGeometry g, ForwardCells c, int64_t t0,
                                          int64_t rows, scalar_t* __restrict__ A) {
  const int64_t M = rows * g.Qw;
  const int64_t total = g.groups * M * c.K;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    const int64_t k = e % c.K, m = (e / c.K) % M, grp = e / (c.K * M);
    const int64_t off_w = k % g.cell_offsets_w, off_h = (k / g.cell_offsets_w) % g.cell_offsets_h;
    const int64_t ci = k / (g.cell_offsets_w * g.cell_offsets_h);
    const int64_t t = t0 + m / g.Qw;
    const int64_t n = t / g.Qh;
    const int64_t ih = g.qh_lo + t % g.Qh - off_h;
    const int64_t iw = g.qw_lo + m % g.Qw - off_w;
    const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
    A[e] = inside ? x[xs.offset(n, grp * g.Cin_g + ci, ih, iw)] : scalar_t(0);
  }
}

// y[n, c, oh, ow] = C[grp][(t - t0, qw)][(co, rh, rw)] + bias[c] for the outputs of cell rows
// t in [t0, t0 + rows). Threads run along y's memory order (ow fastest for contiguous output,
// channels fastest for channels_last) so the writes coalesce.
// An output whose sum is not finite is recomputed from its real taps (Note [NaN/Inf] (docs/ARCHITECTURE.md)):
// one test per element for finite data, no device-wide check and no host synchronisation.
template <typename scalar_t, typename acc_t>
__global__ void scatter_output_cells_kernel(const acc_t* __restrict__ C,
                                            const scalar_t* __restrict__ bias,
                                            StridedRead<scalar_t, acc_t> x_at,
                                            StridedRead<scalar_t, acc_t> w_at,
                                            ConvTranspose2dGeometry g, ForwardCells c, int64_t t0,
                                            int64_t rows, bool channels_last,
                                            scalar_t* __restrict__ y, Strides4 ys) {
  const int64_t M = rows * g.Qw;
  const int64_t total = rows * g.sh * g.Cout * g.Wo;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    int64_t ow, co_all, rh, tl;
    if (channels_last) {  // e = (tl, rh, ow, c)
      co_all = e % g.Cout; ow = (e / g.Cout) % g.Wo; rh = (e / (g.Cout * g.Wo)) % g.sh;
      tl = e / (g.Cout * g.Wo * g.sh);
    } else {  // e = (tl, c, rh, ow)
      ow = e % g.Wo; rh = (e / g.Wo) % g.sh; co_all = (e / (g.Wo * g.sh)) % g.Cout;
      tl = e / (g.Wo * g.sh * g.Cout);
    }
    const int64_t t = t0 + tl;
    const int64_t n = t / g.Qh, qh = g.qh_lo + t % g.Qh;
    const int64_t oh = output_of(qh, rh, g.sh, g.ph);
    if (oh < 0 || oh >= g.Ho) continue;  // this phase of the edge cell lies outside the output
    const CellPhase wp = cell_phase_of(ow, g.sw, g.pw);
    const int64_t grp = co_all / g.Cout_g, co = co_all % g.Cout_g;
    const int64_t m = tl * g.Qw + (wp.cell - g.qw_lo);
    acc_t v = C[(grp * M + m) * c.cols + (co * g.sh + rh) * g.sw + wp.phase];
    if (bias != nullptr) v += static_cast<acc_t>(bias[co_all]);
    if (!isfinite(v)) {  // like the CPU direct loop: the bias first, then the taps
      const acc_t b = bias != nullptr ? static_cast<acc_t>(bias[co_all]) : acc_t(0);
      v = conv_transpose2d_output_direct<acc_t>(g, n, co_all, oh, ow, b, x_at, w_at);
    }
    y[ys.offset(n, co_all, oh, ow)] = static_cast<scalar_t>(v);
  }
}

// One input channel per group: y[n, c] = bias[c] + sum over taps (kh, kw) of
// x[n, c / Cout_g, ih, iw] * w[c / Cout_g, c % Cout_g, kh, kw]. Threads run along y's memory order.
template <typename scalar_t, typename acc_t>
__global__ void depthwise_forward_kernel(StridedRead<scalar_t, acc_t> x_at,
                                         StridedRead<scalar_t, acc_t> w_at,
                                         const scalar_t* __restrict__ bias,
                                         ConvTranspose2dGeometry g, bool channels_last,
                                         scalar_t* __restrict__ y, Strides4 ys) {
  const int64_t total = g.N * g.Cout * g.Ho * g.Wo;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    const auto [n, c, oh, ow] = unravel_in_memory_order(e, g.Cout, g.Ho, g.Wo, channels_last);
    acc_t sum = conv_transpose2d_output_direct<acc_t>(g, n, c, oh, ow, acc_t(0), x_at, w_at);
    if (bias != nullptr) sum += static_cast<acc_t>(bias[c]);
    y[ys.offset(n, c, oh, ow)] = static_cast<scalar_t>(sum);
  }
}

template <typename scalar_t>
void forward_depthwise(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                       const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = y.numel();
  depthwise_forward_kernel<scalar_t, acc_t>
      <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          StridedRead<scalar_t, acc_t>{x.const_data_ptr<scalar_t>(), strides_of(x)},
          StridedRead<scalar_t, acc_t>{w.const_data_ptr<scalar_t>(), strides_of(w)},
          bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr, g, channels_last,
          y.mutable_data_ptr<scalar_t>(), strides_of(y));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void forward_cell_gemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                       const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto stream = at::cuda::getCurrentCUDAStream();
  const ForwardCells c = forward_cells(g);
  const at::TensorOptions acc_options = x.options().dtype(at::toOpMathType(x.scalar_type()));

  // The GEMM operands stay in the input's type (tensor cores for 16-bit), the sums in acc_t.
  Tensor B = at::empty({g.groups, c.K, c.cols}, x.options());
  pack_cell_weights_kernel<scalar_t><<<blocks_for(B.numel()), kThreads, 0, stream>>>(
      w.const_data_ptr<scalar_t>(), strides_of(w), g, c, B.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const int64_t total_rows = g.N * g.Qh;
  const int64_t row_elems = g.groups * g.Qw * (c.K + c.cols);
  const int64_t rows_max = rows_per_chunk(total_rows, row_elems, g.Qw * std::max(c.K, c.cols),
                                          int64_t(sizeof(acc_t)));
  Tensor A = at::empty({g.groups, rows_max * g.Qw, c.K}, x.options());
  Tensor C = at::empty({g.groups, rows_max * g.Qw, c.cols}, acc_options);
  const scalar_t* bias_ptr = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  const StridedRead<scalar_t, acc_t> x_at{x.const_data_ptr<scalar_t>(), strides_of(x)};
  const StridedRead<scalar_t, acc_t> w_at{w.const_data_ptr<scalar_t>(), strides_of(w)};

  for (int64_t t0 = 0; t0 < total_rows; t0 += rows_max) {
    const int64_t rows = std::min(rows_max, total_rows - t0);
    Tensor A_chunk = dense_prefix(A, g.groups, rows * g.Qw, c.K);
    Tensor C_chunk = dense_prefix(C, g.groups, rows * g.Qw, c.cols);

    gather_input_cells_kernel<scalar_t><<<blocks_for(A_chunk.numel()), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), strides_of(x), g, c, t0, rows, A_chunk.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();

    bmm_acc<scalar_t>(A_chunk, B, C_chunk, false);  // cuBLAS, a fixed reduction order per shape

    const int64_t outputs = rows * g.sh * g.Cout * g.Wo;
    scatter_output_cells_kernel<scalar_t, acc_t><<<blocks_for(outputs), kThreads, 0, stream>>>(
        C_chunk.const_data_ptr<acc_t>(), bias_ptr, x_at, w_at, g, c, t0, rows, channels_last,
        y.mutable_data_ptr<scalar_t>(), strides_of(y));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
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
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                    "conv_transpose2d_depthwise_cuda", [&] {
                                      forward_depthwise<scalar_t>(input, weight, bias, y, g, channels_last);
                                    });
    return y;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "conv_transpose2d_cuda", [&] {
                                    forward_cell_gemm<scalar_t>(input, weight, bias, y, g, channels_last);
                                  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_cuda);
}

}  // namespace tconv::cuda
