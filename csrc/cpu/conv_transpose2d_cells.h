// The "cell" view of a transposed convolution (common/conv_transpose2d_shape.h), shared by the
// CPU forward and backward: per-phase weight matrices, and gathers of input and grad_output
// into cell-major matrices. Contiguous (NCHW) layout, and the forward's channels_last gather.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "common/conv_transpose2d_args.h"

namespace tconv::cpu::CPU_CAPABILITY {

// Cells qh of phase rh whose output row lies in [0, Ho).
struct CellRange {
  int64_t lo, count;
};
inline CellRange cells_of_phase(int64_t phase, int64_t stride, int64_t padding, int64_t out) {
  const int64_t lo = floor_div(padding - phase + stride - 1, stride);
  const int64_t hi = floor_div(out - 1 + padding - phase, stride);
  return {lo, std::max<int64_t>(hi - lo + 1, 0)};
}

// B_rh for every group and phase rh, as acc_t. Row (k) and column orders match the gather and
// scatter of the memory format: contiguous k = (ci, off_h, off_w), columns (co, rw);
// channels_last k = (off_h, off_w, ci), columns (rw, co). Every entry is written once (zero where
// an offset feeds no tap), by one task per input channel: its weights (Cout_g x kH x kW) are
// contiguous and stay in cache while they fill that channel's rows of every phase block, each row
// written in order. (Walking B in order instead read the weight at stride kH*kW, a cache line
// per element, and cost 6% of the FCN head's forward.)
template <typename scalar_t, typename acc_t>
std::unique_ptr<acc_t[]> pack_cell_weights(const at::Tensor& weight, const ConvTranspose2dGeometry& g,
                                           bool channels_last) {
  const int64_t oh_n = g.cell_offsets_h, ow_n = g.cell_offsets_w, KK = g.kH * g.kW;
  const int64_t K = g.Cin_g * oh_n * ow_n, Nb = g.Cout_g * g.sw;
  std::unique_ptr<acc_t[]> B(new acc_t[g.groups * g.sh * K * Nb]);
  std::vector<int64_t> kh_of(g.sh * oh_n), kw_of(g.sw * ow_n);  // -1: the offset feeds no tap
  for (int64_t rh = 0; rh < g.sh; ++rh)
    for (int64_t off = 0; off < oh_n; ++off) kh_of[rh * oh_n + off] = tap_of(rh, off, g.kH, g.sh, g.dh);
  for (int64_t rw = 0; rw < g.sw; ++rw)
    for (int64_t off = 0; off < ow_n; ++off) kw_of[rw * ow_n + off] = tap_of(rw, off, g.kW, g.sw, g.dw);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();  // (Cin, Cout_g, kH, kW) contiguous
  at::parallel_for(0, g.groups * g.Cin_g, 1, [&](int64_t begin, int64_t end) {
    for (int64_t gc = begin; gc < end; ++gc) {
      const int64_t grp = gc / g.Cin_g, ci = gc % g.Cin_g;
      const scalar_t* wc = w + gc * g.Cout_g * KK;
      auto tap = [&](int64_t co, int64_t kh, int64_t kw) {
        return kh < 0 || kw < 0 ? acc_t(0) : static_cast<acc_t>(wc[co * KK + kh * g.kW + kw]);
      };
      for (int64_t rh = 0; rh < g.sh; ++rh)
        for (int64_t off_h = 0; off_h < oh_n; ++off_h) {
          const int64_t kh = kh_of[rh * oh_n + off_h];
          for (int64_t off_w = 0; off_w < ow_n; ++off_w) {
            const int64_t k = channels_last ? (off_h * ow_n + off_w) * g.Cin_g + ci : (ci * oh_n + off_h) * ow_n + off_w;
            acc_t* row = B.get() + ((grp * g.sh + rh) * K + k) * Nb;
            if (channels_last) {
              for (int64_t rw = 0; rw < g.sw; ++rw, row += g.Cout_g)
                for (int64_t co = 0; co < g.Cout_g; ++co) row[co] = tap(co, kh, kw_of[rw * ow_n + off_w]);
            } else {
              for (int64_t co = 0; co < g.Cout_g; ++co, row += g.sw)
                for (int64_t rw = 0; rw < g.sw; ++rw) row[rw] = tap(co, kh, kw_of[rw * ow_n + off_w]);
            }
          }
        }
    }
  });
  return B;
}

// A^T (K x M) for cell rows [qh0, qh0 + rows) and cells [qw_lo, qw_lo + Qw) of image n, group
// grp: A[(qh, qw)][(ci, off_h, off_w)] = x[n, ci, qh - off_h, qw - off_w] (zero outside), so
// each k is a shifted copy of one input row segment.
template <typename scalar_t, typename acc_t>
void gather_input_cells(const scalar_t* x, const ConvTranspose2dGeometry& g, int64_t n, int64_t grp,
                        int64_t qh0, int64_t rows, int64_t qw_lo, int64_t Qw, acc_t* AT) {
  const int64_t M = rows * Qw;
  for (int64_t ci = 0; ci < g.Cin_g; ++ci) {
    const scalar_t* xc = x + ((n * g.Cin + grp * g.Cin_g + ci) * g.H) * g.W;
    for (int64_t off_h = 0; off_h < g.cell_offsets_h; ++off_h)
      for (int64_t off_w = 0; off_w < g.cell_offsets_w; ++off_w) {
        acc_t* dst = AT + ((ci * g.cell_offsets_h + off_h) * g.cell_offsets_w + off_w) * M;
        const IndexRange js = indices_inside(Qw, 1, qw_lo - off_w, g.W);  // cells reading inside
        for (int64_t r = 0; r < rows; ++r, dst += Qw) {
          const int64_t ih = qh0 + r - off_h;
          if (ih < 0 || ih >= g.H) {
            std::fill(dst, dst + Qw, acc_t(0));
            continue;
          }
          const scalar_t* src = xc + ih * g.W + (qw_lo - off_w);
          std::fill(dst, dst + js.lo, acc_t(0));
          for (int64_t j = js.lo; j < js.hi; ++j) dst[j] = static_cast<acc_t>(src[j]);
          std::fill(dst + js.hi, dst + Qw, acc_t(0));
        }
      }
  }
}

// A (M x K) for cell rows [qh0, qh0 + rows) and cells [qw_lo, qw_lo + Qw) of image n, group grp,
// channels_last x: per cell, the Cin_g contiguous channels at each offset (k = (off_h, off_w, ci)),
// zero outside the input.
template <typename scalar_t, typename acc_t>
void gather_input_cells_channels_last(const scalar_t* x, const ConvTranspose2dGeometry& g, int64_t n,
                                      int64_t grp, int64_t qh0, int64_t rows, acc_t* A) {
  const int64_t Qw = g.Qw, K = g.Cin_g * g.cell_offsets_h * g.cell_offsets_w;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < Qw; ++j) {
      acc_t* dst = A + (r * Qw + j) * K;
      for (int64_t off_h = 0; off_h < g.cell_offsets_h; ++off_h)
        for (int64_t off_w = 0; off_w < g.cell_offsets_w; ++off_w, dst += g.Cin_g) {
          const int64_t ih = qh0 + r - off_h, iw = g.qw_lo + j - off_w;
          if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) {
            std::fill(dst, dst + g.Cin_g, acc_t(0));
            continue;
          }
          const scalar_t* src = x + ((n * g.H + ih) * g.W + iw) * g.Cin + grp * g.Cin_g;
          for (int64_t ci = 0; ci < g.Cin_g; ++ci) dst[ci] = static_cast<acc_t>(src[ci]);
        }
    }
}

// G_rh (M x Nb) for cell rows [qh0, qh0 + rows), cells qw in [0, Qw), phase rh: the adjoint of
// the forward's scatter. G[(r, qw)][(co, rw)] = grad_output[n, co, qh*sh + rh - ph, qw*sw + rw - pw]
// (zero outside): each (row, co, cell) is a contiguous run of sw values.
template <typename scalar_t, typename acc_t>
void gather_grad_cells(const scalar_t* go, const ConvTranspose2dGeometry& g, int64_t n, int64_t grp,
                       int64_t rh, int64_t qh0, int64_t rows, int64_t Qw, acc_t* G) {
  const int64_t Nb = g.Cout_g * g.sw;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t oh = output_of(qh0 + r, rh, g.sh, g.ph);
    acc_t* grow = G + r * Qw * Nb;
    if (oh < 0 || oh >= g.Ho) {
      std::fill(grow, grow + Qw * Nb, acc_t(0));
      continue;
    }
    for (int64_t co = 0; co < g.Cout_g; ++co) {
      const scalar_t* src = go + ((n * g.Cout + grp * g.Cout_g + co) * g.Ho + oh) * g.Wo;
      for (int64_t qw = 0; qw < Qw; ++qw) {
        acc_t* dst = grow + qw * Nb + co * g.sw;
        const int64_t ow0 = output_of(qw, 0, g.sw, g.pw);
        const IndexRange rws = indices_inside(g.sw, 1, ow0, g.Wo);  // phases inside the output
        std::fill(dst, dst + rws.lo, acc_t(0));
        for (int64_t rw = rws.lo; rw < rws.hi; ++rw) dst[rw] = static_cast<acc_t>(src[ow0 + rw]);
        std::fill(dst + rws.hi, dst + g.sw, acc_t(0));
      }
    }
  }
}

}  // namespace tconv::cpu::CPU_CAPABILITY
