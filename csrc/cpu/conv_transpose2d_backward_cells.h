// The CPU backward of conv_transpose2d for wide strides (contiguous layout): the adjoint of the
// forward's cell GEMM (cpu/conv_transpose2d_cells.h). grad_output is gathered per cell in
// contiguous runs (G_rh), then
//   grad_input  = col2im over offsets of  dA = sum_rh G_rh @ B_rh^T
//   grad_weight = fold of                 dB_rh = A^T @ G_rh   (A: the forward's input cells)
// cpu/conv_transpose2d_backward.cpp calls these where use_cells says so.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "common/conv_transpose2d_args.h"
#include "cpu/conv_transpose2d_backward_blocks.h"
#include "cpu/conv_transpose2d_cells.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"

namespace tconv::cpu::CPU_CAPABILITY {

// The backward's cell grid: every cell that reads an input pixel, qh in [0, H + cell_offsets_h - 1).
struct BackwardCells {
  int64_t Hc, Wc, rows_per_block, blocks;
};

inline BackwardCells backward_cells(const ConvTranspose2dGeometry& g, int64_t elem_size) {
  BackwardCells c{};
  c.Hc = g.H + g.cell_offsets_h - 1;
  c.Wc = g.W + g.cell_offsets_w - 1;
  const int64_t K = g.Cin_g * g.cell_offsets_h * g.cell_offsets_w, Nb = g.Cout_g * g.sw;
  const int64_t rows_for_m = ceil_div(512, c.Wc);  // amortise the BLAS's packing
  const int64_t rows_for_cache = std::max<int64_t>((3 << 19) / (c.Wc * (K + Nb) * elem_size), 1);
  c.rows_per_block = balanced_rows(std::min(rows_for_m, rows_for_cache), c.Hc);
  c.blocks = ceil_div(c.Hc, c.rows_per_block);
  return c;
}

// Wide strides (FCN's 32) make the patch matrix read grad_output at stride s: the cell view reads
// it in contiguous runs instead. For small strides (U-Net, DCGAN) the patch GEMM, with its longer
// reduction, measured faster.
// Callers also require finite data (the cell view's zero-padded taps): Note [NaN/Inf]
// (docs/ARCHITECTURE.md).
inline bool use_cells(const ConvTranspose2dGeometry& g, bool channels_last) {
  return !channels_last && g.Cin_g > 1 && g.sh * g.sw >= 16;
}

template <typename scalar_t>
void backward_input_cells(const at::Tensor& go, const at::Tensor& weight, at::Tensor& gi,
                          const ConvTranspose2dGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = g.Cin_g * g.cell_offsets_h * g.cell_offsets_w, Nb = g.Cout_g * g.sw;
  const std::unique_ptr<acc_t[]> B = pack_cell_weights<scalar_t, acc_t>(weight, g, false);
  const BackwardCells bc = backward_cells(g, sizeof(acc_t));
  const int64_t cells = bc.Hc * bc.Wc;
  // dA[n][grp][cell][(ci, off_h, off_w)]: what each cell sends back to the pixels it read.
  std::unique_ptr<acc_t[]> dA(new acc_t[g.N * g.groups * cells * K]);
  const scalar_t* gop = go.const_data_ptr<scalar_t>();

  parallel_for_work(0, g.N * g.groups * bc.blocks, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> G(new acc_t[bc.rows_per_block * bc.Wc * Nb]);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t blk = t % bc.blocks, grp = (t / bc.blocks) % g.groups, n = t / (bc.blocks * g.groups);
      const int64_t qh0 = blk * bc.rows_per_block, rows = std::min(bc.rows_per_block, bc.Hc - qh0);
      const int64_t M = rows * bc.Wc;
      acc_t* dA_blk = dA.get() + ((n * g.groups + grp) * cells + qh0 * bc.Wc) * K;
      for (int64_t rh = 0; rh < g.sh; ++rh) {
        gather_grad_cells(gop, g, n, grp, rh, qh0, rows, bc.Wc, G.get());
        const acc_t* Bp = B.get() + (grp * g.sh + rh) * K * Nb;
        // dA (M x K) (+)= G_rh (M x Nb) @ B_rh^T (Nb x K), phases summed in order
        gemm<acc_t>(M, K, Nb, {G.get(), Nb, false}, {Bp, Nb, true}, dA_blk, K, rh > 0);
      }
    }
  });

  // grad_input[n, ci, ih, iw] = sum over offsets of dA[cell (ih + off_h, iw + off_w)], in order.
  scalar_t* gip = gi.mutable_data_ptr<scalar_t>();
  parallel_for_work(0, g.N * g.groups * g.H, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.Cin_g * g.W);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t ih = t % g.H, grp = (t / g.H) % g.groups, n = t / (g.H * g.groups);
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const acc_t* dA_img = dA.get() + (n * g.groups + grp) * cells * K;
      for (int64_t off_h = 0; off_h < g.cell_offsets_h; ++off_h)
        for (int64_t off_w = 0; off_w < g.cell_offsets_w; ++off_w)
          for (int64_t iw = 0; iw < g.W; ++iw) {
            const acc_t* src =
                dA_img + ((ih + off_h) * bc.Wc + iw + off_w) * K + off_h * g.cell_offsets_w + off_w;
            for (int64_t ci = 0; ci < g.Cin_g; ++ci)
              acc[ci * g.W + iw] += src[ci * g.cell_offsets_h * g.cell_offsets_w];
          }
      for (int64_t ci = 0; ci < g.Cin_g; ++ci) {
        scalar_t* dst = gip + ((n * g.Cin + grp * g.Cin_g + ci) * g.H + ih) * g.W;
        for (int64_t iw = 0; iw < g.W; ++iw) dst[iw] = static_cast<scalar_t>(acc[ci * g.W + iw]);
      }
    }
  });
}

template <typename scalar_t>
void backward_weight_cells(const at::Tensor& go, const at::Tensor& x, at::Tensor& gw,
                           const ConvTranspose2dGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = g.Cin_g * g.cell_offsets_h * g.cell_offsets_w, Nb = g.Cout_g * g.sw;
  const BackwardCells bc = backward_cells(g, sizeof(acc_t));
  const int64_t tasks = g.N * bc.blocks;
  const int64_t bsize = g.groups * g.sh * K * Nb;
  const int64_t chunks = weight_grad_chunks(tasks, bsize * int64_t(sizeof(acc_t)));
  std::vector<acc_t> partial(chunks * bsize, acc_t(0));
  const scalar_t* gop = go.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();

  parallel_for_work(0, chunks, g.multiply_adds(), [&](int64_t cbegin, int64_t cend) {
    std::unique_ptr<acc_t[]> AT(new acc_t[bc.rows_per_block * bc.Wc * K]);
    std::unique_ptr<acc_t[]> G(new acc_t[bc.rows_per_block * bc.Wc * Nb]);
    for (int64_t chunk = cbegin; chunk < cend; ++chunk) {
      acc_t* dB = partial.data() + chunk * bsize;
      for (int64_t t = tasks * chunk / chunks; t < tasks * (chunk + 1) / chunks; ++t) {
        const int64_t blk = t % bc.blocks, n = t / bc.blocks;
        const int64_t qh0 = blk * bc.rows_per_block, rows = std::min(bc.rows_per_block, bc.Hc - qh0);
        const int64_t M = rows * bc.Wc;
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          gather_input_cells(xp, g, n, grp, qh0, rows, 0, bc.Wc, AT.get());
          for (int64_t rh = 0; rh < g.sh; ++rh) {
            gather_grad_cells(gop, g, n, grp, rh, qh0, rows, bc.Wc, G.get());
            // dB_rh (K x Nb) += A^T (K x M) @ G_rh (M x Nb)
            gemm<acc_t>(K, Nb, M, {AT.get(), M, false}, {G.get(), Nb, false},
                        dB + (grp * g.sh + rh) * K * Nb, Nb, true);
          }
        }
      }
    }
  });

  // Fold: tap (kh, kw) is phase (kh*dh) % sh at offset (kh*dh) / sh; chunks summed in order.
  scalar_t* gwp = gw.mutable_data_ptr<scalar_t>();
  const int64_t wsize = g.Cin * g.Cout_g * g.kH * g.kW;
  parallel_for_work(0, wsize, wsize * chunks, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t kw = e % g.kW, kh = (e / g.kW) % g.kH, co = (e / (g.kW * g.kH)) % g.Cout_g;
      const int64_t cin = e / (g.kW * g.kH * g.Cout_g), grp = cin / g.Cin_g, ci = cin % g.Cin_g;
      const int64_t rh = kh * g.dh % g.sh, off_h = kh * g.dh / g.sh;
      const int64_t rw = kw * g.dw % g.sw, off_w = kw * g.dw / g.sw;
      const int64_t k = (ci * g.cell_offsets_h + off_h) * g.cell_offsets_w + off_w;
      const int64_t idx = (grp * g.sh + rh) * K * Nb + k * Nb + co * g.sw + rw;
      acc_t s = partial[idx];
      for (int64_t chunk = 1; chunk < chunks; ++chunk) s += partial[chunk * bsize + idx];
      gwp[e] = static_cast<scalar_t>(s);
    }
  });
}

}  // namespace tconv::cpu::CPU_CAPABILITY
