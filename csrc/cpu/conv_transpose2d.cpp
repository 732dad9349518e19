// CPU forward of tconv::conv_transpose2d.
//
// Dense path ("cell GEMM", see common/conv_transpose2d_shape.h): output rows of one phase rh and a
// block of cells qh are one GEMM,
//     C[cell (qh, qw)][(rw, co)] = sum_k A[cell][k] * B_rh[k][(rw, co)],
// where A holds, per cell, the input at the few offsets that cell reads (k = (ci, offset_h,
// offset_w)) and B_rh is the weight rearranged so that every phase rw of the row is one column
// block (zero where an offset feeds no tap). Each output element is written exactly once, with the
// bias fused into that write, so there is no col2im overlap and the result is deterministic.
// For stride == kernel (U-Net 2x2 s2) a cell reads one input pixel: the GEMM is the whole op.
//
// Depthwise path (one input channel per group): a direct loop, vectorised along W per phase.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_direct.h"
#include "common/macros.h"
#include "common/pad_fold_args.h"
#include "cpu/conv_transpose2d_cells.h"
#include "cpu/direct_tiles.h"
#include "cpu/finite.h"
#include "cpu/winograd.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "cpu/simd_transpose.h"
#include "cpu/tap_row_classes.h"
#include "cpu/streaming_store.h"
#include "cpu/output_alloc.h"
#include "cpu/kernels.h"

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

template <typename scalar_t, typename acc_t>
std::vector<acc_t> bias_as_acc(const std::optional<Tensor>& bias, int64_t cout) {
  std::vector<acc_t> b(cout, acc_t(0));
  if (bias.has_value() && bias->defined()) {
    const Tensor bc = bias->contiguous();
    const scalar_t* p = bc.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < cout; ++i) b[i] = static_cast<acc_t>(p[i]);
  }
  return b;
}

#if defined(TCONV_CPU_AVX512)
// 16 floats stored as float, or rounded to bfloat16 as c10::BFloat16(float) rounds (to nearest
// even, every NaN to 0x7FC0), so the vector and scalar stores give the same bits.
// With a mask, only its lanes are stored.
inline void store_16(float* dst, __m512 v) { _mm512_storeu_ps(dst, v); }
inline void store_16(float* dst, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(dst, m, v); }
inline __m256i bfloat16_bits(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC00000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16));
}
inline void store_16(at::BFloat16* dst, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), bfloat16_bits(v));
}
inline void store_16(at::BFloat16* dst, __m512 v, __mmask16 m) { _mm256_mask_storeu_epi16(dst, m, bfloat16_bits(v)); }

// Whether T's entries load 16 at a time as float32 (load_16_as_float).
template <typename acc_t, typename gemm_t>
constexpr bool kLoads16AsFloat =
    std::is_same_v<acc_t, float> && (std::is_same_v<gemm_t, float> || std::is_same_v<gemm_t, at::BFloat16>);

// src[0, 16) under mask m as float32, zero elsewhere; masked-off lanes are not read.
inline __m512 load_16_as_float(const float* src, __mmask16 m) { return _mm512_maskz_loadu_ps(m, src); }
inline __m512 load_16_as_float(const at::BFloat16* src, __mmask16 m) {
  // bfloat16 -> float is exact: its 16 bits on top of zeros
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src)), 16));
}

// The lanes of [16 * r, 16 * r + 16) that lie in js, as a mask over that register's lanes.
inline __mmask16 lanes_in(IndexRange js, int64_t r) {
  const int64_t lo = std::clamp<int64_t>(js.lo - 16 * r, 0, 16), hi = std::clamp<int64_t>(js.hi - 16 * r, 0, 16);
  return hi > lo ? __mmask16(((1u << hi) - 1) & ~((1u << lo) - 1)) : __mmask16(0);
}

// dst[2i] = u[i], dst[2i + 1] = v[i]: the first n (<= 32) of the 32 interleaved values.
template <typename scalar_t>
inline void store_interleaved(scalar_t* dst, __m512 u, __m512 v, int64_t n) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  if (n == 32) {
    store_16(dst, _mm512_permutex2var_ps(u, lo, v));
    store_16(dst + 16, _mm512_permutex2var_ps(u, hi, v));
    return;
  }
  store_16(dst, _mm512_permutex2var_ps(u, lo, v), lanes_in({0, n}, 0));
  if (n > 16) store_16(dst + 16, _mm512_permutex2var_ps(u, hi, v), lanes_in({0, n}, 1));
}
#endif

// Where an output row's phase runs go (run rw, entry j: output column (qw_lo + j) * sw + rw - pw):
// the same for every row, so found once per call rather than per row (DCGAN's 16x16 bfloat16
// layer stores 32K rows of 32 outputs; the per-row set-up was a third of the store's time).
struct PhaseRunStores {
  int64_t sw;
  // sw == 2 with alternating phases (the k2 s2 layers over the same cells, k4 s2 p1 with phase 1
  // first): one pass interleaves run a's entries [lo_a, lo_a + len_a) and run b's
  // [lo_b, lo_b + len_b) from output column first (stores at stride 2, one phase at a time, cost
  // as much as the GEMM on the U-Net layers).
  bool interleave = false;
  int64_t a = 0, b = 0, lo_a = 0, lo_b = 0, len_a = 0, len_b = 0, first = 0;
  // otherwise phase rw's entries js[rw] go to columns ow_first[rw] + j * sw
  std::vector<IndexRange> js;
  std::vector<int64_t> ow_first;
};

PhaseRunStores phase_run_stores(const ConvTranspose2dGeometry& g) {
  PhaseRunStores s;
  s.sw = g.sw;
  for (int64_t rw = 0; rw < g.sw; ++rw) {
    // cells j with 0 <= (qw_lo + j) * sw + rw - pw < Wo
    s.ow_first.push_back(output_of(g.qw_lo, rw, g.sw, g.pw));
    s.js.push_back(indices_inside(g.Qw, g.sw, s.ow_first.back(), g.Wo));
  }
  if (g.sw == 2) {
    const int64_t first0 = s.ow_first[0] + 2 * s.js[0].lo, first1 = s.ow_first[1] + 2 * s.js[1].lo;
    s.a = first0 <= first1 ? 0 : 1;  // a's column comes first
    s.b = 1 - s.a;
    s.lo_a = s.js[s.a].lo;
    s.lo_b = s.js[s.b].lo;
    s.len_a = s.js[s.a].hi - s.lo_a;
    s.len_b = s.js[s.b].hi - s.lo_b;
    s.first = std::min(first0, first1);
    s.interleave = std::max(first0, first1) == s.first + 1 && s.len_a >= s.len_b && s.len_a <= s.len_b + 1;
  }
  return s;
}

// One output row from its phase runs (run rw at runs + rw * run_stride), each plus the bias.
template <typename scalar_t, typename acc_t>
void store_phase_runs(const acc_t* runs, int64_t run_stride, const PhaseRunStores& s, scalar_t* yrow,
                      acc_t bias) {
  if (s.interleave) {
    const acc_t* r0 = runs + s.a * run_stride + s.lo_a;
    const acc_t* r1 = runs + s.b * run_stride + s.lo_b;
    scalar_t* dst = yrow + s.first;
    const int64_t len_b = s.len_b;
    int64_t j = 0;
#if defined(TCONV_CPU_AVX512)
    if constexpr ((std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, at::BFloat16>) &&
                  std::is_same_v<acc_t, float>) {
      const __m512 vb = _mm512_set1_ps(bias);
      for (; j + 16 <= len_b; j += 16)
        store_interleaved(dst + 2 * j, _mm512_add_ps(_mm512_loadu_ps(r0 + j), vb),
                          _mm512_add_ps(_mm512_loadu_ps(r1 + j), vb), 32);
    }
#endif
    for (; j < len_b; ++j) {
      dst[2 * j] = static_cast<scalar_t>(r0[j] + bias);
      dst[2 * j + 1] = static_cast<scalar_t>(r1[j] + bias);
    }
    if (s.len_a > len_b) dst[2 * len_b] = static_cast<scalar_t>(r0[len_b] + bias);
    return;
  }
  for (int64_t rw = 0; rw < s.sw; ++rw) {
    const acc_t* run = runs + rw * run_stride;
    scalar_t* dst = yrow + s.ow_first[rw];
    for (int64_t j = s.js[rw].lo; j < s.js[rw].hi; ++j) dst[j * s.sw] = static_cast<scalar_t>(run[j] + bias);
  }
}

// ---- the cell GEMM: per task, gather A, one GEMM, scatter C into y -----------------------------

// Rows of cells per GEMM: M >= ~256 amortises the BLAS's packing of B (K x Nb) over the block,
// while A and C of one block stay within ~1.5 MiB. A task is (n, grp, rh, block).
struct CellGemmBlocks {
  int64_t rows_per_block, blocks;
  int64_t tasks(const ConvTranspose2dGeometry& g) const { return g.N * g.groups * g.sh * blocks; }
};

CellGemmBlocks cell_gemm_blocks(const ConvTranspose2dGeometry& g, int64_t K, int64_t Nb, int64_t elem_size) {
  int64_t max_cells = 0;
  for (int64_t rh = 0; rh < g.sh; ++rh)
    max_cells = std::max(max_cells, cells_of_phase(rh, g.sh, g.ph, g.Ho).count);
  max_cells = std::max<int64_t>(max_cells, 1);
  const int64_t row_bytes = g.Qw * (K + Nb) * elem_size;
  const int64_t rows_for_m = ceil_div(256, g.Qw);
  const int64_t rows_for_cache = std::max<int64_t>((3 << 19) / std::max<int64_t>(row_bytes, 1), 1);
  const int64_t rows_per_block = std::clamp<int64_t>(std::min(rows_for_m, rows_for_cache), 1, max_cells);
  return {rows_per_block, ceil_div(max_cells, rows_per_block)};
}

// Contiguous y, wide strides: C (M x Nb, columns (co, rw)) of cell rows [qh0, qh0 + rows), phase
// rh; cell j writes a contiguous run of sw outputs, y[.., (qw_lo + j) * sw + rw - pw] for rw < sw.
// bg: the group's biases. `streaming`: non-temporal stores (an output far bigger than the caches,
// e.g. the FCN head's 100 MB, whose runs of sw = 32 are whole cache lines).
template <typename scalar_t, typename acc_t>
void scatter_cells_by_cell(const acc_t* C, const ConvTranspose2dGeometry& g, int64_t n, int64_t grp,
                           int64_t rh, int64_t qh0, int64_t rows, const acc_t* bg, scalar_t* yp,
                           bool streaming) {
  const int64_t Qw = g.Qw, Nb = g.Cout_g * g.sw;
  for (int64_t co = 0; co < g.Cout_g; ++co) {
    const acc_t bias_v = bg[co];
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t oh = output_of(qh0 + r, rh, g.sh, g.ph);
      scalar_t* yrow = yp + ((n * g.Cout + grp * g.Cout_g + co) * g.Ho + oh) * g.Wo;
      for (int64_t j = 0; j < Qw; ++j) {
        const int64_t ow0 = output_of(g.qw_lo + j, 0, g.sw, g.pw);
        const IndexRange rws = indices_inside(g.sw, 1, ow0, g.Wo);  // phases inside
        const acc_t* src = C + (r * Qw + j) * Nb + co * g.sw;
        store_plus_bias(src + rws.lo, bias_v, rws.hi - rws.lo, yrow + ow0 + rws.lo, streaming);
      }
    }
  }
}

// Contiguous y, narrow strides: C^T (Nb x M), whose row (co, rw) runs along the cells: per output
// row, the phase runs of each channel stored at stride sw.
template <typename scalar_t, typename acc_t>
void scatter_cells_by_phase(const acc_t* CT, const ConvTranspose2dGeometry& g, int64_t n, int64_t grp,
                            int64_t rh, int64_t qh0, int64_t rows, const acc_t* bg, scalar_t* yp) {
  const int64_t M = rows * g.Qw;
  const PhaseRunStores stores = phase_run_stores(g);
  for (int64_t co = 0; co < g.Cout_g; ++co)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t oh = output_of(qh0 + r, rh, g.sh, g.ph);
      scalar_t* yrow = yp + ((n * g.Cout + grp * g.Cout_g + co) * g.Ho + oh) * g.Wo;
      store_phase_runs(CT + co * g.sw * M + r * g.Qw, M, stores, yrow, bg[co]);
    }
}

// Channels-last y: C (M x Nb, columns (rw, co)); output column ow reads C at cell col_cell[ow]
// (from qw_lo) and phase col_phase[ow], Cout_g contiguous channels.
template <typename scalar_t, typename acc_t>
void scatter_cells_channels_last(const acc_t* C, const ConvTranspose2dGeometry& g, int64_t n, int64_t grp,
                                 int64_t rh, int64_t qh0, int64_t rows, const int64_t* col_cell,
                                 const int64_t* col_phase, const acc_t* bg, scalar_t* yp) {
  const int64_t Qw = g.Qw, Nb = g.Cout_g * g.sw;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t oh = output_of(qh0 + r, rh, g.sh, g.ph);
    for (int64_t ow = 0; ow < g.Wo; ++ow) {
      const acc_t* src = C + (r * Qw + col_cell[ow]) * Nb + col_phase[ow] * g.Cout_g;
      scalar_t* dst = yp + ((n * g.Ho + oh) * g.Wo + ow) * g.Cout + grp * g.Cout_g;
      for (int64_t co = 0; co < g.Cout_g; ++co)
        dst[co] = static_cast<scalar_t>(src[co] + bg[co]);
    }
  }
}

template <typename scalar_t>
void forward_cell_gemm(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                       Tensor& y, const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = g.Cin_g * g.cell_offsets_h * g.cell_offsets_w, Nb = g.Cout_g * g.sw, Qw = g.Qw;
  const std::unique_ptr<acc_t[]> B = pack_cell_weights<scalar_t, acc_t>(weight, g, channels_last);
  const std::vector<acc_t> b = bias_as_acc<scalar_t, acc_t>(bias, g.Cout);
  const CellGemmBlocks cb = cell_gemm_blocks(g, K, Nb, int64_t(sizeof(acc_t)));
  const int64_t rows_per_block = cb.rows_per_block, blocks = cb.blocks;
  // Contiguous output with wide strides: C = A @ B has columns (co, rw), so each cell writes a
  // contiguous run of sw outputs. Narrow strides: C^T, whose rows run along the cells.
  const bool runs_along_phase = g.sw >= 4;
  const bool streaming = runs_along_phase && !channels_last && y.nbytes() >= kStreamingBytes;

  // Channels-last scatter: where output column ow reads C (cell - qw_lo, phase).
  std::vector<int64_t> col_phase(g.Wo), col_cell(g.Wo);
  for (int64_t ow = 0; ow < g.Wo; ++ow) {
    const CellPhase cp = cell_phase_of(ow, g.sw, g.pw);
    col_phase[ow] = cp.phase;
    col_cell[ow] = cp.cell - g.qw_lo;
  }

  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();

  parallel_for_work(0, cb.tasks(g), g.multiply_adds(), [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> A(new acc_t[rows_per_block * Qw * K]);
    std::unique_ptr<acc_t[]> C(new acc_t[rows_per_block * Qw * Nb]);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t blk = t % blocks;
      const int64_t rh = (t / blocks) % g.sh;
      const int64_t grp = (t / (blocks * g.sh)) % g.groups;
      const int64_t n = t / (blocks * g.sh * g.groups);
      const CellRange cr = cells_of_phase(rh, g.sh, g.ph, g.Ho);
      const int64_t qh0 = cr.lo + blk * rows_per_block;
      const int64_t rows = std::min(rows_per_block, cr.lo + cr.count - qh0);
      if (rows <= 0) continue;
      const int64_t M = rows * Qw;
      const acc_t* Bp = B.get() + (grp * g.sh + rh) * K * Nb;
      const acc_t* bg = b.data() + grp * g.Cout_g;

      if (!channels_last) {
        // A^T (K x M)
        gather_input_cells(xp, g, n, grp, qh0, rows, g.qw_lo, Qw, A.get());
        if (runs_along_phase) {
          // C (M x Nb) = A (M x K) @ B (K x Nb)
          gemm<acc_t>(M, Nb, K, {A.get(), M, true}, {Bp, Nb, false}, C.get(), Nb, false);
          scatter_cells_by_cell(C.get(), g, n, grp, rh, qh0, rows, bg, yp, streaming);
        } else {
          // C^T (Nb x M) = B^T (Nb x K) @ A^T (K x M)
          gemm<acc_t>(Nb, M, K, {Bp, Nb, true}, {A.get(), M, false}, C.get(), M, false);
          scatter_cells_by_phase(C.get(), g, n, grp, rh, qh0, rows, bg, yp);
        }
      } else {
        // A (M x K)
        gather_input_cells_channels_last(xp, g, n, grp, qh0, rows, A.get());
        // C (M x Nb) = A (M x K) @ B (K x Nb)
        gemm<acc_t>(M, Nb, K, {A.get(), K, false}, {Bp, Nb, false}, C.get(), Nb, false);
        scatter_cells_channels_last(C.get(), g, n, grp, rh, qh0, rows, col_cell.data(), col_phase.data(),
                                    bg, yp);
      }
    }
    if (streaming) streaming_fence();
  });
}

// Taps of each phase on one axis: (kernel index, input offset) pairs, in kernel order.
struct PhaseTaps {
  std::vector<int64_t> begin;                      // phase r's taps are [begin[r], begin[r + 1])
  std::vector<std::pair<int64_t, int64_t>> taps;   // (k, offset)
};
PhaseTaps phase_taps(int64_t kernel, int64_t stride, int64_t dilation) {
  PhaseTaps p;
  const int64_t offsets = cell_offsets(kernel, stride, dilation);
  for (int64_t r = 0; r < stride; ++r) {
    p.begin.push_back(int64_t(p.taps.size()));
    for (int64_t off = 0; off < offsets; ++off) {
      const int64_t k = tap_of(r, off, kernel, stride, dilation);
      if (k >= 0) p.taps.emplace_back(k, off);
    }
  }
  p.begin.push_back(int64_t(p.taps.size()));
  return p;
}

// The cells j of [0, Qw) whose input column qw_lo + j - off_w lies inside the input, per column tap
// of tw: the same for every row, so found once per plane (integer divisions per tap and row cost
// more than the short runs they bound).
std::vector<IndexRange> tap_cell_ranges(const ConvTranspose2dGeometry& g, const PhaseTaps& tw) {
  std::vector<IndexRange> cells;
  for (const auto& [kw, off_w] : tw.taps) cells.push_back(indices_inside(g.Qw, 1, g.qw_lo - off_w, g.W));
  return cells;
}

// Plane-major sum of one output row oh: each phase rw accumulates, over the taps that reach the
// row, a contiguous run over the cells qw (vectorised), which store_phase_runs then writes into
// the row at stride sw. add(run, kh, kw, ih, shift, cells) adds tap (kh, kw)'s contribution from
// input row ih to run[j] for j in cells, input column qw_lo + j - off_w = shift + j; cells holds
// tap_cell_ranges.
template <typename acc_t, typename AddTap>
void sum_phase_runs(const ConvTranspose2dGeometry& g, const PhaseTaps& th, const PhaseTaps& tw,
                    const std::vector<IndexRange>& cells, int64_t oh, acc_t* runs, const AddTap& add) {
  const CellPhase hp = cell_phase_of(oh, g.sh, g.ph);
  std::fill(runs, runs + g.sw * g.Qw, acc_t(0));
  for (int64_t a = th.begin[hp.phase]; a < th.begin[hp.phase + 1]; ++a) {
    const auto [kh, off_h] = th.taps[a];
    const int64_t ih = hp.cell - off_h;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t rw = 0; rw < g.sw; ++rw)
      for (int64_t e = tw.begin[rw]; e < tw.begin[rw + 1]; ++e) {
        const auto [kw, off_w] = tw.taps[e];
        add(runs + rw * g.Qw, kh, kw, ih, g.qw_lo - off_w, cells[e]);
      }
  }
}

#if defined(TCONV_CPU_AVX512)
// Note [register runs]: the plane-major sum of output row oh where a phase run has at most
// 16 * kRegs cells and sw <= 2 (DCGAN's 16x16 layer: 17 cells, two phases). Each phase's run is
// kRegs registers that take every tap's row of T by masked loads (lanes[e]: column tap e's cells,
// per register), in sum_phase_runs's order (so the same bits), and the two phases are interleaved
// and stored from registers, plus the bias: no run is written to memory and read back. T holds
// tap (kh, kw)'s plane at T + (kh * kW + kw) * M; plane row ih at + ih * W. On DCGAN's 16x16
// layer the run adds and stores through memory took 14% of the bfloat16 forward's GEMM time.
template <int kRegs, typename gemm_t, typename scalar_t>
void sum_store_row_in_registers(const gemm_t* T, int64_t M, const ConvTranspose2dGeometry& g, const PhaseTaps& th,
                                const PhaseTaps& tw, const std::vector<std::array<__mmask16, 4>>& lanes,
                                const PhaseRunStores& stores, int64_t oh, scalar_t* yrow, float bias, float* runs) {
  const CellPhase hp = cell_phase_of(oh, g.sh, g.ph);
  // Phase rw's run; register kRegs stays zero (the interleave's shifts read it). Two named arrays
  // indexed by constants only, so that they stay in registers.
  __m512 R0[kRegs + 1], R1[kRegs + 1];
  const auto sum_phase = [&](int64_t rw, __m512(&R)[kRegs + 1]) __attribute__((always_inline)) {
#pragma GCC unroll 4
    for (int r = 0; r <= kRegs; ++r) R[r] = _mm512_setzero_ps();
    for (int64_t a = th.begin[hp.phase]; a < th.begin[hp.phase + 1]; ++a) {
      const auto [kh, off_h] = th.taps[a];
      const int64_t ih = hp.cell - off_h;
      if (ih < 0 || ih >= g.H) continue;
      const gemm_t* row = T + kh * g.kW * M + ih * g.W + g.qw_lo;
      for (int64_t e = tw.begin[rw]; e < tw.begin[rw + 1]; ++e) {
        const auto [kw, off_w] = tw.taps[e];
        const gemm_t* src = row + kw * M - off_w;
#pragma GCC unroll 4
        for (int r = 0; r < kRegs; ++r) R[r] = _mm512_add_ps(R[r], load_16_as_float(src + 16 * r, lanes[e][r]));
      }
    }
  };
  sum_phase(0, R0);
  if (g.sw == 2) sum_phase(1, R1);
  if (!stores.interleave || stores.lo_a >= 16 || stores.lo_b >= 16) {
#pragma GCC unroll 4
    for (int r = 0; r < kRegs; ++r) {
      _mm512_mask_storeu_ps(runs + 16 * r, lanes_in({0, g.Qw}, r), R0[r]);
      if (g.sw == 2) _mm512_mask_storeu_ps(runs + g.Qw + 16 * r, lanes_in({0, g.Qw}, r), R1[r]);
    }
    store_phase_runs(runs, g.Qw, stores, yrow, bias);
    return;
  }
  // Output column first + 2i is run a's entry lo_a + i, first + 2i + 1 run b's entry lo_b + i.
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i shift_a = _mm512_add_epi32(iota, _mm512_set1_epi32(int(stores.lo_a)));
  const __m512i shift_b = _mm512_add_epi32(iota, _mm512_set1_epi32(int(stores.lo_b)));
  const __m512 vb = _mm512_set1_ps(bias);
  scalar_t* dst = yrow + stores.first;
  const int64_t total = stores.len_a + stores.len_b;
  const auto interleave = [&](const __m512(&A)[kRegs + 1], const __m512(&B)[kRegs + 1]) __attribute__((always_inline)) {
#pragma GCC unroll 4
    for (int k = 0; k < kRegs; ++k) {
      if (32 * k >= total) break;
      store_interleaved(dst + 32 * k, _mm512_add_ps(_mm512_permutex2var_ps(A[k], shift_a, A[k + 1]), vb),
                        _mm512_add_ps(_mm512_permutex2var_ps(B[k], shift_b, B[k + 1]), vb),
                        std::min<int64_t>(32, total - 32 * k));
    }
  };
  if (stores.a == 0) {
    interleave(R0, R1);
  } else {
    interleave(R1, R0);
  }
}
#endif

// One input channel per group: y[n, c] = sum over taps of x[n, c / Cout_g] * w[c / Cout_g, c % Cout_g].
// For each output row, every phase rw accumulates a contiguous run over cells qw (vectorised),
// then each run is stored into the row at stride sw.
template <typename scalar_t>
void forward_depthwise(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                       Tensor& y, const ConvTranspose2dGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<acc_t> b = bias_as_acc<scalar_t, acc_t>(bias, g.Cout);
  const Tensor wc = weight.contiguous();
  const scalar_t* wp = wc.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const PhaseTaps th = phase_taps(g.kH, g.sh, g.dh), tw = phase_taps(g.kW, g.sw, g.dw);
  // Rows are cut into chunks of cells, so the runs stay in cache and a long row (a 1-D signal of
  // 2^30 samples) is split among the threads instead of one thread holding runs as big as the row.
  constexpr int64_t kChunkCells = 4096;
  const int64_t chunks = ceil_div(g.Qw, kChunkCells);

  parallel_for_work(0, g.N * g.Cout * chunks, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> runs(new acc_t[g.sw * std::min(g.Qw, kChunkCells)]);
    std::vector<acc_t> wk(g.kH * g.kW);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t chunk = t % chunks, c = t / chunks % g.Cout, n = t / (chunks * g.Cout), grp = c / g.Cout_g;
      ConvTranspose2dGeometry gc = g;  // the chunk's cells, as a geometry of their own
      gc.qw_lo = g.qw_lo + chunk * kChunkCells;
      gc.Qw = std::min(kChunkCells, g.Qw - chunk * kChunkCells);
      const scalar_t* xc = xp + (n * g.Cin + grp) * g.H * g.W;
      for (int64_t i = 0; i < g.kH * g.kW; ++i) wk[i] = static_cast<acc_t>(wp[c * g.kH * g.kW + i]);
      const acc_t bias_v = b[c];
      const std::vector<IndexRange> cells = tap_cell_ranges(gc, tw);
      const PhaseRunStores stores = phase_run_stores(gc);
      for (int64_t oh = 0; oh < g.Ho; ++oh) {
        sum_phase_runs(gc, th, tw, cells, oh, runs.get(),
                       [&](acc_t* run, int64_t kh, int64_t kw, int64_t ih, int64_t shift, IndexRange js) {
                         const acc_t wv = wk[kh * g.kW + kw];
                         const scalar_t* src = xc + ih * g.W + shift;
                         for (int64_t j = js.lo; j < js.hi; ++j) run[j] += wv * static_cast<acc_t>(src[j]);
                       });
        store_phase_runs(runs.get(), gc.Qw, stores, yp + ((n * g.Cout + c) * g.Ho + oh) * g.Wo, bias_v);
      }
    }
  });
}

// The tap GEMM ("scatter form"): per block of images, group and block of output channels, one
// GEMM computes what every input pixel sends through every tap,
//     T[(co, kh, kw)][(i, ih, iw)] = sum_ci W[ci, co, kh, kw] * x[i, ci, ih, iw]
// (pixel-major, for channels_last and short NCHW rows: T[(i, ih, iw)][(kh, kw, co)]), and each
// output element then sums the T entries of its own taps, output-stationary as everywhere else. No FLOP is spent on structural zeros,
// unlike the cell view's padding cells: the cell view multiplies
// (H + cell_offsets_h - 1)(W + cell_offsets_w - 1) cells for
// H x W pixels (1.56x the work at DCGAN's 4x4 inputs, 16x on a 1x1 latent with a 4x4 kernel), and
// its GEMMs there have a few dozen rows. T is kH*kW / (sh*sw) times the output's size, so it is
// used where the cell view's waste is large (use_tap_gemm). Images are batched into one GEMM of
// >= 256 columns so the BLAS amortises its packing of the weights. Each output's sum (its taps in
// kernel order, kh outer, then the bias) lies within one task, and the blocks depend on the shape
// only: the result is the same for any thread count. A block's T rows (or columns) number about
// 4 KiB / element: 1024 in float32, 2048 in 16 bits, whose GEMM has half the bytes per row and
// costs per call (ATen's dispatch, oneDNN's set-up) what two blocks of half the rows did.
struct TapGemmBlocks {
  int64_t images, channels;  // per block
};
TapGemmBlocks tap_gemm_blocks(const ConvTranspose2dGeometry& g, int64_t gemm_elem_size) {
  const int64_t KK = g.kH * g.kW;
  const int64_t images = std::clamp<int64_t>(ceil_div(256, g.H * g.W), 1, g.N);
  const int64_t channels = std::clamp<int64_t>(ceil_div(4096 / gemm_elem_size, KK), 1, g.Cout_g);
  return {images, channels};
}

// Which forward costs less. The cell view multiplies its structural zeros, and with fewer than 32
// GEMM columns (Cout_g * sw: DCGAN's 64->3) the BLAS runs far below its rate. The tap GEMM spends
// only the real multiply-adds (Cin_g per T element) but writes and re-reads T: counted as 8
// multiply-adds per element, it loses where Cin_g is small (the FCN head's 21 classes). In 16 bits
// (gemm_in_16_bits) its GEMM runs at twice the rate of the cell view's float32 one.
bool use_tap_gemm(const ConvTranspose2dGeometry& g, bool gemm_16_bits) {
  if (const char* force = std::getenv("TCONV_CONV_FORWARD")) {  // benchmarks compare both paths
    if (std::strcmp(force, "tap") == 0) return true;
    if (std::strcmp(force, "cell") == 0) return false;
  }
  const int64_t elem_size = gemm_16_bits ? 2 : 4;
  const TapGemmBlocks tb = tap_gemm_blocks(g, elem_size);
  const double t_bytes = double(elem_size) * tb.channels * g.kH * g.kW * tb.images * g.H * g.W;
  if (t_bytes > double(8 << 20)) return false;  // T of one task would not stay in cache
  int64_t cell_rows = 0;
  for (int64_t rh = 0; rh < g.sh; ++rh) cell_rows += cells_of_phase(rh, g.sh, g.ph, g.Ho).count;
  const double real = double(g.multiply_adds());
  // The cell view's gather and scatter counted as 5% of its GEMM: where both forms do only the
  // real multiply-adds, with Cin_g >= 128 (U-Net k2 s2, the 1-D k16 s8 layer: tap/real 1.008 to
  // 1.03), the tap GEMM measured 6-11% faster (float32, one thread), and with Cin_g = 64 (tap/real
  // 1.125: the 3-D k4 s2 layer's 2-D op, 64->64 k3 s1) 6-8% slower. The cell GEMM's columns are
  // Cout_g * sw: below 32 the BLAS runs at half its rate, below 64 at ~0.7 (3x3 s1, 2 threads:
  // 96->32 cell 30.6 ms, tap 22.0; 32->32 cell 12.0, tap 9.2; 64->64 cell 14.7, tap 16.7).
  const int64_t columns = g.Cout_g * g.sw;
  const double narrow = columns < 32 ? 2.0 : columns < 64 ? 1.4 : 1.0;
  const double cell = 1.05 * double(g.N) * g.groups * cell_rows * g.Qw * g.Cin_g * g.cell_offsets_h *
                      g.cell_offsets_w * g.Cout_g * g.sw * narrow;
  const double tap = real * ((gemm_16_bits ? 0.5 : 1.0) + 8.0 / double(g.Cin_g));
  return tap < cell;
}

// run[j] += src[j] for j in js: a tap's row of T added into a phase run (runs of W + 1 cells or
// so: DCGAN's 16x16 layer adds 16-17 at a time, so masked 16-lane steps beat a vector loop with
// a scalar tail).
template <typename acc_t, typename gemm_t>
inline void add_run(acc_t* run, const gemm_t* src, IndexRange js) {
#if defined(TCONV_CPU_AVX512)
  if constexpr (kLoads16AsFloat<acc_t, gemm_t>) {
    for (int64_t j = js.lo; j < js.hi; j += 16) {
      const __mmask16 m = js.hi - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (js.hi - j)) - 1);
      _mm512_mask_storeu_ps(run + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, run + j), load_16_as_float(src + j, m)));
    }
    return;
  }
#endif
#pragma omp simd
  for (int64_t j = js.lo; j < js.hi; ++j) run[j] += static_cast<acc_t>(src[j]);
}


template <typename scalar_t, typename gemm_t>
void forward_tap_gemm(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                      Tensor& y, const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kSameType = std::is_same_v<scalar_t, gemm_t>;  // the GEMM reads x and w in place
  const int64_t KK = g.kH * g.kW, R = g.Cout_g * KK, HW = g.H * g.W;
  const TapGemmBlocks tb = tap_gemm_blocks(g, sizeof(gemm_t));
  const int64_t nb = tb.images, cc = tb.channels;
  const int64_t image_blocks = ceil_div(g.N, nb), channel_blocks = ceil_div(g.Cout_g, cc);
  const std::vector<acc_t> b = bias_as_acc<scalar_t, acc_t>(bias, g.Cout);
  // Weights as gemm_t, one dense (Cin_g x Rb) matrix per group and channel block, so the GEMM
  // engine reads them without a copy (Note [float32 GEMM engine]). NCHW: column (co, kh, kw) of the
  // block is row (co, kh, kw) of T; pixel-major: column (kh, kw, co), so a tap's outputs are
  // contiguous in T's rows. A single block of an NCHW weight in the GEMM's type is the weight
  // itself. Block (grp, c0) starts at weight_block_offset(grp, c0).
  auto weight_block_offset = [&](int64_t grp, int64_t c0) { return (grp * g.Cout_g + c0) * KK * g.Cin_g; };
  // Pixel-major T (rows = the block's pixels, the per-output sums vectorised over the channel
  // block) for channels_last, and for NCHW inputs with short rows: plane-major sums run along rows
  // of about W cells per phase, too short to vectorise (DCGAN's 4x4 and 8x8 layers).
  const bool pixel_major = channels_last || g.W < 16;
  const std::vector<TapRowClass> classes = pixel_major ? tap_row_classes(g) : std::vector<TapRowClass>{whole_kernel(g)};
  std::vector<int64_t> class_of_kh(g.kH);
  for (int64_t c = 0; c < static_cast<int64_t>(classes.size()); ++c)
    for (int64_t kh = classes[c].kh_begin; kh < classes[c].kh_end; ++kh) class_of_kh[kh] = c;
  // The packed weights: the calling thread's scratch up to 8 MiB (DCGAN G2's float32 weight), so a
  // call neither maps nor faults them anew; every element is written below.
  std::optional<Scratch<gemm_t>> wbuf;
  const gemm_t* wp = nullptr;
  {
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    if constexpr (kSameType) {
      if (!pixel_major && channel_blocks == 1) wp = reinterpret_cast<const gemm_t*>(w);
    }
    if (wp == nullptr) {
      wbuf.emplace(ScratchSlot::kConvWeights, g.Cin * R, size_t(8) << 20);
      parallel_for_work(0, g.Cin, g.Cin * R, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {  // input channel row of the weight
          const int64_t grp = row / g.Cin_g, ci = row % g.Cin_g;
          for (int64_t c0 = 0; c0 < g.Cout_g; c0 += cc) {
            const int64_t cn = std::min(cc, g.Cout_g - c0), Rb = cn * KK;
            const scalar_t* src = w + (row * g.Cout_g + c0) * KK;  // (cn, KK) run
            gemm_t* block = wbuf->data() + weight_block_offset(grp, c0);
            if (pixel_major) {  // class by class: (Cin_g x cols) each, columns (kh, kw, co)
              for (const TapRowClass& rc : classes) {
                const int64_t cols = rc.columns(g.kW, cn);
                gemm_t* dc = block + g.Cin_g * rc.column_offset(g.kW, cn) + ci * cols;
                for (int64_t kh = rc.kh_begin; kh < rc.kh_end; ++kh)
                  for (int64_t kw = 0; kw < g.kW; ++kw) {
                    gemm_t* d = dc + ((kh - rc.kh_begin) * g.kW + kw) * cn;
                    const scalar_t* sk = src + kh * g.kW + kw;
                    for (int64_t col = 0; col < cn; ++col) d[col] = static_cast<gemm_t>(sk[col * KK]);
                  }
              }
            } else {
              for (int64_t r = 0; r < Rb; ++r) block[ci * Rb + r] = static_cast<gemm_t>(src[r]);
            }
          }
        }
      });
      wp = wbuf->data();
    }
  }
  const PhaseTaps th = phase_taps(g.kH, g.sh, g.dh), tw = phase_taps(g.kW, g.sw, g.dw);
  const std::vector<IndexRange> tap_cells = tap_cell_ranges(g, tw);
  const PhaseRunStores stores = phase_run_stores(g);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const int64_t Qw = g.Qw;
  // Rows of at most 64 cells and two phases sum in registers (Note [register runs]); otherwise the
  // plane-major sums take the whole plane's phase runs at once where they fit in L1, reading T
  // tap plane by tap plane, and a larger plane (U-Net's 64x64) sums one output row at a time,
  // its runs staying in L1 while T's rows stream in.
#if defined(TCONV_CPU_AVX512)
  constexpr bool kRegisterRunTypes =
      kLoads16AsFloat<acc_t, gemm_t> && (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, at::BFloat16>);
  const bool register_runs = kRegisterRunTypes && !pixel_major && Qw <= 64 && g.sw <= 2;
  std::vector<std::array<__mmask16, 4>> tap_lanes;  // column tap e's cells, per register
  for (const IndexRange& js : tap_cells) tap_lanes.push_back({lanes_in(js, 0), lanes_in(js, 1), lanes_in(js, 2), lanes_in(js, 3)});
#else
  constexpr bool register_runs = false;
#endif
  const bool whole_plane = !pixel_major && !register_runs && g.Ho * g.sw * Qw * int64_t(sizeof(acc_t)) <= (32 << 10);

  parallel_for_work(0, image_blocks * g.groups * channel_blocks, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    // T and the input block are thread scratch kept up to 4 MiB each (cpu/scratch.h).
    const Scratch<gemm_t> T(ScratchSlot::kConvBlockA, cc * KK * nb * HW, size_t(4) << 20);
    // The input block as gemm_t, where the GEMM cannot read x in place; pixel-major: each class's
    // rows, kept while the thread's next task has the same images and group.
    const int64_t nclasses = static_cast<int64_t>(classes.size());
    const bool copy_x = !kSameType || nb > 1 || nclasses > 1 || classes[0].rows() != g.H;
    const Scratch<gemm_t> X(ScratchSlot::kConvBlockB, copy_x ? g.Cin_g * nb * HW * nclasses : 0, size_t(4) << 20);
    std::vector<const gemm_t*> Xc(nclasses);  // class c's operand
    std::vector<int64_t> ldx(nclasses);        // and its leading dimension (channels_last)
    std::vector<gemm_t*> Tc(nclasses);        // class c's T, (ni * rows * W) x columns
    int64_t x_key = -1;                        // the (images, group) Xc holds
    std::unique_ptr<acc_t[]> runs(new acc_t[std::max(g.sw * Qw, cc)]);
    std::unique_ptr<acc_t[]> plane_runs(whole_plane ? new acc_t[g.Ho * g.sw * Qw] : nullptr);
    std::unique_ptr<acc_t[]> pix(pixel_major && !channels_last ? new acc_t[16 * cc] : nullptr);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cb = t % channel_blocks, grp = t / channel_blocks % g.groups;
      const int64_t n0 = t / (channel_blocks * g.groups) * nb, ni = std::min(nb, g.N - n0);
      const int64_t c0 = cb * cc, cn = std::min(cc, g.Cout_g - c0);  // channels c0 .. c0 + cn of the group
      const int64_t M = ni * HW, Rb = cn * KK;
      const gemm_t* Wb = wp + weight_block_offset(grp, c0);  // (Cin_g x Rb), dense
      // NCHW: input rows [ih_lo, ih_lo + rows) of the block's images as X (Cin_g x ni rows W), each
      // image's run of each channel side by side, copied to dst; one image's whole planes are read
      // in place.
      auto planes_of_rows = [&](int64_t ih_lo, int64_t rows, gemm_t* dst) -> const gemm_t* {
        if (kSameType && ni == 1 && rows == g.H)
          return reinterpret_cast<const gemm_t*>(xp) + (n0 * g.Cin + grp * g.Cin_g) * HW;
        const int64_t run = rows * g.W;
        for (int64_t ci = 0; ci < g.Cin_g; ++ci)
          for (int64_t i = 0; i < ni; ++i) {
            const scalar_t* src = xp + ((n0 + i) * g.Cin + grp * g.Cin_g + ci) * HW + ih_lo * g.W;
            gemm_t* d = dst + (ci * ni + i) * run;
            if constexpr (kSameType) {
              std::memcpy(d, src, run * sizeof(gemm_t));  // c10::BFloat16's element loop does not vectorise
            } else {
              for (int64_t e = 0; e < run; ++e) d[e] = static_cast<gemm_t>(src[e]);
            }
          }
        return dst;
      };
      if (!pixel_major) {
        const gemm_t* Xp = planes_of_rows(0, g.H, X.data());
        // T (Rb x M) = W_b^T (Rb x Cin_g) @ X
        gemm<gemm_t>(Rb, M, g.Cin_g, {Wb, Rb, true}, {Xp, M, false}, T.data(), M, false);
        for (int64_t i = 0; i < ni; ++i)
          for (int64_t col = 0; col < cn; ++col) {
            const gemm_t* Tc = T.data() + col * KK * M + i * HW;  // tap k's input plane at Tc + k * M
            const int64_t co = grp * g.Cout_g + c0 + col;
            const acc_t bias_v = b[co];
            scalar_t* yplane = yp + ((n0 + i) * g.Cout + co) * g.Ho * g.Wo;
#if defined(TCONV_CPU_AVX512)
            if constexpr (kRegisterRunTypes) {
              if (register_runs) {  // Note [register runs]
                for (int64_t oh = 0; oh < g.Ho; ++oh) {
                  if (Qw <= 32) {
                    sum_store_row_in_registers<2>(Tc, M, g, th, tw, tap_lanes, stores, oh, yplane + oh * g.Wo, bias_v, runs.get());
                  } else {
                    sum_store_row_in_registers<4>(Tc, M, g, th, tw, tap_lanes, stores, oh, yplane + oh * g.Wo, bias_v, runs.get());
                  }
                }
                continue;
              }
            }
#endif
            if (!whole_plane) {  // a large plane: one output row's runs at a time, in L1
              for (int64_t oh = 0; oh < g.Ho; ++oh) {
                sum_phase_runs(g, th, tw, tap_cells, oh, runs.get(),
                               [&](acc_t* run, int64_t kh, int64_t kw, int64_t ih, int64_t shift, IndexRange js) {
                                 add_run(run, Tc + (kh * g.kW + kw) * M + ih * g.W + shift, js);
                               });
                store_phase_runs(runs.get(), Qw, stores, yplane + oh * g.Wo, bias_v);
              }
              continue;
            }
            // The whole plane's phase runs (row oh's at acc + oh * sw * Qw), filled tap plane by
            // tap plane, so T is read in order rather than 16 rows of 16 planes per output row.
            // Each output still sums its taps in sum_phase_runs's order: (row tap, column tap)
            // ascending.
            acc_t* acc = plane_runs.get();
            std::fill(acc, acc + g.Ho * g.sw * Qw, acc_t(0));
            for (int64_t rh = 0; rh < g.sh; ++rh)
              for (int64_t a = th.begin[rh]; a < th.begin[rh + 1]; ++a) {
                const auto [kh, off_h] = th.taps[a];
                // input row ih reaches cell ih + off_h: output row (ih + off_h) sh + rh - ph
                const IndexRange ihs = indices_inside(g.H, g.sh, off_h * g.sh + rh - g.ph, g.Ho);
                for (int64_t rw = 0; rw < g.sw; ++rw)
                  for (int64_t e = tw.begin[rw]; e < tw.begin[rw + 1]; ++e) {
                    const auto [kw, off_w] = tw.taps[e];
                    const gemm_t* tplane = Tc + (kh * g.kW + kw) * M + g.qw_lo - off_w;
                    for (int64_t ih = ihs.lo; ih < ihs.hi; ++ih) {
                      const int64_t oh = (ih + off_h) * g.sh + rh - g.ph;
                      add_run(acc + (oh * g.sw + rw) * Qw, tplane + ih * g.W, tap_cells[e]);
                    }
                  }
              }
            for (int64_t oh = 0; oh < g.Ho; ++oh)
              store_phase_runs(acc + oh * g.sw * Qw, Qw, stores, yplane + oh * g.Wo, bias_v);
          }
      } else {
        // Note [tap row classes]: per class, T_c (ni rows() W x columns) = X_c (x Cin_g) @ W_c with
        // rows (image, ih - ih_lo, iw): only the input rows the class's kernel rows send inside
        // the output are multiplied.
        const int64_t key = n0 * g.groups + grp;
        gemm_t* tnext = T.data();
        for (int64_t c = 0; c < nclasses; ++c) {
          const TapRowClass& rc = classes[c];
          const int64_t rows = ni * rc.rows() * g.W, cols = rc.columns(g.kW, cn);
          Tc[c] = tnext;
          tnext += rows * cols;
          if (rows == 0) continue;  // no tap of the class lands inside the output
          if (key != x_key) {  // the class's input rows as gemm_t, unless read in place
            gemm_t* dst = X.data() + c * g.Cin_g * nb * HW;
            if (channels_last) {
              const scalar_t* src0 = xp + grp * g.Cin_g;
              const int64_t run = rc.rows() * g.W;  // pixels of one image in the class
              if (kSameType && (ni == 1 || rc.rows() == g.H)) {
                Xc[c] = reinterpret_cast<const gemm_t*>(src0 + (n0 * HW + rc.ih_lo * g.W) * g.Cin);
                ldx[c] = g.Cin;
              } else {
                for (int64_t i = 0; i < ni; ++i)
                  for (int64_t e = 0; e < run; ++e) {
                    const scalar_t* src = src0 + ((n0 + i) * HW + rc.ih_lo * g.W + e) * g.Cin;
                    gemm_t* d = dst + (i * run + e) * g.Cin_g;
                    for (int64_t ci = 0; ci < g.Cin_g; ++ci) d[ci] = static_cast<gemm_t>(src[ci]);
                  }
                Xc[c] = dst;
                ldx[c] = g.Cin_g;
              }
            } else {
              Xc[c] = planes_of_rows(rc.ih_lo, rc.rows(), dst);
            }
          }
          const gemm_t* Wc = Wb + g.Cin_g * rc.column_offset(g.kW, cn);  // (Cin_g x cols), dense
          if (channels_last) {
            gemm<gemm_t>(rows, cols, g.Cin_g, {Xc[c], ldx[c], false}, {Wc, cols, false}, Tc[c], cols, false);
          } else {  // the planes read as a transposed operand
            gemm<gemm_t>(rows, cols, g.Cin_g, {Xc[c], rows, true}, {Wc, cols, false}, Tc[c], cols, false);
          }
        }
        x_key = key;
        const acc_t* bb = b.data() + grp * g.Cout_g + c0;
        // NCHW: the sums of 16 consecutive pixels of the plane (rows of cn channels) are stored
        // through 16 x 16 transposes, 16 channels' runs of 16 pixels at a time, instead of one
        // value per channel plane per pixel (a third of G3's sums went to those scattered stores).
        const int64_t plane = g.Ho * g.Wo;
        int64_t pending = 0, p0 = 0;  // pixels [p0, p0 + pending) of the plane wait in pix
        const auto flush = [&](int64_t i) {
          scalar_t* dst = yp + ((n0 + i) * g.Cout + grp * g.Cout_g + c0) * plane + p0;
          int64_t col = 0;
          if constexpr (std::is_same_v<scalar_t, float> && kHasTranspose16x16) {
            if (pending == 16)
              for (; col + 16 <= cn; col += 16) transpose_16x16(pix.get() + col, cn, dst + col * plane, plane);
          }
          for (int64_t c = col; c < cn; ++c)  // each channel's run of pending pixels
            for (int64_t q = 0; q < pending; ++q) dst[c * plane + q] = static_cast<scalar_t>(pix[q * cn + c]);
          p0 += pending;
          pending = 0;
        };
        for (int64_t i = 0; i < ni; ++i) {
          p0 = 0;
          for (int64_t oh = 0; oh < g.Ho; ++oh) {
            const CellPhase hp = cell_phase_of(oh, g.sh, g.ph);
            for (int64_t ow = 0; ow < g.Wo; ++ow) {
              const CellPhase wph = cell_phase_of(ow, g.sw, g.pw);
              acc_t* acc = channels_last ? runs.get() : pix.get() + pending * cn;
              std::fill(acc, acc + cn, acc_t(0));
              for (int64_t a = th.begin[hp.phase]; a < th.begin[hp.phase + 1]; ++a) {
                const auto [kh, off_h] = th.taps[a];
                const int64_t ih = hp.cell - off_h;
                if (ih < 0 || ih >= g.H) continue;
                // Inside the output, so ih lies in the class's rows.
                const int64_t c = class_of_kh[kh];
                const TapRowClass& rc = classes[c];
                const int64_t cols = rc.columns(g.kW, cn);
                const gemm_t* trow = Tc[c] + ((i * rc.rows() + ih - rc.ih_lo) * g.W) * cols +
                                     (kh - rc.kh_begin) * g.kW * cn;
                for (int64_t e = tw.begin[wph.phase]; e < tw.begin[wph.phase + 1]; ++e) {
                  const auto [kw, off_w] = tw.taps[e];
                  const int64_t iw = wph.cell - off_w;
                  if (iw < 0 || iw >= g.W) continue;
                  add_run(acc, trow + iw * cols + kw * cn, IndexRange{0, cn});
                }
              }
              if (channels_last) {
                scalar_t* dst = yp + (((n0 + i) * g.Ho + oh) * g.Wo + ow) * g.Cout + grp * g.Cout_g + c0;
#pragma omp simd
                for (int64_t col = 0; col < cn; ++col) dst[col] = static_cast<scalar_t>(acc[col] + bb[col]);
              } else {  // the block's channel planes of image n0 + i, at this pixel: buffered
#pragma omp simd
                for (int64_t col = 0; col < cn; ++col) acc[col] += bb[col];
                if (++pending == 16) flush(i);
              }
            }
          }
          if (pending > 0) flush(i);
        }
      }
    }
  });
}

// Note [folded frame]: padding_mode ('reflect', 'replicate', 'circular') is the adjoint of F.pad
// applied to the padding-0 ("full") output: each output element is the sum of the full outputs that
// F.pad would fill from it. The direct tiles compute it as such a sum: along rows, an output row's
// tile row takes the taps of every full row folded onto it (fold_sources, common/pad_fold_args.h),
// and each border column then adds the taps of the full columns folded onto it; along images, a
// position's tile takes the taps of every (full row, full column) pair folded onto it. No strips,
// no fold pass.
struct FoldedColumn {
  int64_t ow;          // an output column with frame columns folded onto it
  FoldSources extra;   // those full columns (not ow + pw itself)
};
struct FrameFold {
  PadFoldMode mode;
  std::vector<FoldSources> rows;             // per output row: the full rows summed into it
  std::vector<FoldedColumn> border_columns;  // output columns with frame columns
  int64_t max_sources = 1;                   // most full rows (or columns) of one output
};

FrameFold frame_fold(const ConvTranspose2dGeometry& g, PadFoldMode mode) {
  FrameFold f;
  f.mode = mode;
  const auto sources = [](const FoldSources& s) {
    int64_t c = 0;
    for (int q = 0; q < s.count; ++q) c += s.hi[q] - s.lo[q];
    return c;
  };
  for (int64_t oh = 0; oh < g.Ho; ++oh) {
    f.rows.push_back(fold_sources(oh, g.Ho, g.ph, g.ph, mode));
    f.max_sources = std::max(f.max_sources, sources(f.rows.back()));
  }
  for (int64_t ow = 0; ow < g.Wo; ++ow) {
    const FoldSources all = fold_sources(ow, g.Wo, g.pw, g.pw, mode);
    f.max_sources = std::max(f.max_sources, sources(all));
    FoldedColumn c{ow, {}};
    c.extra.count = 0;
    for (int q = 0; q < all.count; ++q) {  // the ranges minus ow + pw (at most one splits in two)
      const int64_t self = ow + g.pw;
      if (self >= all.lo[q] && self < all.hi[q]) {
        if (all.lo[q] < self) c.extra.lo[c.extra.count] = all.lo[q], c.extra.hi[c.extra.count++] = self;
        if (self + 1 < all.hi[q]) c.extra.lo[c.extra.count] = self + 1, c.extra.hi[c.extra.count++] = all.hi[q];
      } else {
        c.extra.lo[c.extra.count] = all.lo[q], c.extra.hi[c.extra.count++] = all.hi[q];
      }
    }
    if (c.extra.count > 0) f.border_columns.push_back(c);
  }
  return f;
}

// Note [direct tiles] for the forward: channels_last float32, per task one output row (oh) of one
// image, group and block of up to 64 output channels; per column phase r (outputs ow with
// (ow + pw) % sw == r) one tile row over the row's taps (kh, kw) of that phase.
// fold: padding_mode's output (Note [folded frame]); nullptr for zero padding.
void forward_direct_tiles(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias, Tensor& y,
                          const ConvTranspose2dGeometry& g, bool channels_last, const FrameFold* fold = nullptr) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const int64_t KK = g.kH * g.kW, cbw_max = DirectPanels::kMaxWidth;
  const int64_t nblocks = ceil_div(g.Cout_g, cbw_max);
  const std::vector<float> b = bias_as_acc<float, float>(bias, g.Cout);
  const DirectPanels panels(weight.const_data_ptr<float>(), g, false);
  // NCHW: the tiles want channels innermost (vector stores, broadcasts of consecutive k). Along
  // rows, each task's input rows come from a per-thread cache of transposed rows and its output
  // row goes through a row buffer into the planes; along images (small images), the input and the
  // result through channels_last copies.
  const bool nchw = !channels_last;
  float* yp = y.mutable_data_ptr<float>();
  const int64_t plane = g.Ho * g.Wo;
  // Tiles along images (the outputs of one position in R images) where the rows are short:
  // rows of 4-8 cells per phase would leave most of a 6-wide tile empty (DCGAN's 4x4 and 8x8
  // layers); every output of such a tile has the same taps, so no patch is needed either.
  const char* force = std::getenv("TCONV_CONV_FORWARD");  // "rows" or "images" forces one (tests)
  const bool along_images = force && std::strcmp(force, "images") == 0 ? true
                            : force && std::strcmp(force, "rows") == 0 ? false
                                                                        : direct_tiles_along_images(g.N, ceil_div(g.Wo, g.sw), g.Cout_g);
  if (along_images) {
    // NCHW: the result as channels_last too, then transposed (scattering each tile's outputs
    // into the planes measured 1.8x slower on DCGAN's 16x16 layer).
    const ChannelsLastStaging cl(nchw, x.const_data_ptr<float>(), g.N, g.Cin, g.H * g.W, yp, g.Cout, plane);
    const float* xp = cl.in();
    float* ycl_p = cl.out();
    const DirectRowShape shape{1, g.H * g.W * g.Cin, g.N, g.Cin_g};
    const int64_t tasks = g.Ho * g.Wo * g.groups * nblocks;
    const int64_t max_sources = fold ? fold->max_sources : 1;
    parallel_for_work(0, tasks, g.multiply_adds(), [&](int64_t begin, int64_t end) {
      std::vector<DirectTap> taps(KK * max_sources * max_sources);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t cb = t % nblocks, grp = t / nblocks % g.groups, pos = t / (nblocks * g.groups);
        const int64_t oh = pos / g.Wo, ow = pos % g.Wo;
        const int64_t c0 = cb * cbw_max, width = std::min(cbw_max, g.Cout_g - c0);
        // The full outputs summed into this one: (oh + ph, ow + pw), or with padding_mode every
        // pair of full rows and columns folded onto it (Note [folded frame]); their taps.
        const FoldSources fr = fold ? fold->rows[oh] : FoldSources{{oh + g.ph}, {oh + g.ph + 1}, 1};
        const FoldSources fc = fold ? fold_sources(ow, g.Wo, g.pw, g.pw, fold->mode)
                                    : FoldSources{{ow + g.pw}, {ow + g.pw + 1}, 1};
        int ntaps = 0;
        for (int q = 0; q < fr.count; ++q)
          for (int64_t fh = fr.lo[q]; fh < fr.hi[q]; ++fh)
            for (int64_t kh = 0; kh < g.kH; ++kh) {
              const int64_t ih = input_of_tap(fh, kh, g.sh, 0, g.dh, g.H);
              if (ih < 0) continue;
              for (int e = 0; e < fc.count; ++e)
                for (int64_t fw = fc.lo[e]; fw < fc.hi[e]; ++fw)
                  for (int64_t kw = 0; kw < g.kW; ++kw) {
                    const int64_t iw = input_of_tap(fw, kw, g.sw, 0, g.dw, g.W);
                    if (iw < 0) continue;
                    taps[ntaps++] =
                        DirectTap{xp + (ih * g.W + iw) * g.Cin + grp * g.Cin_g, 0, panels.panel(grp, cb, kh, kw)};
                  }
            }
        const int64_t co0 = grp * g.Cout_g + c0;
        direct_tile_row_of_width(width, taps.data(), ntaps, shape, g.N, b.data() + co0, ycl_p + pos * g.Cout + co0,
                                 plane * g.Cout, nullptr);
      }
    });
    cl.store();
    return;
  }
  // NCHW rows in windows of output columns where a row is wide (Note [column windows]); a
  // window's tasks run consecutively, so its input columns are transposed about once.
  // padding_mode's border columns read the frame's columns anywhere in the row: one window.
  const ColumnWindows win = column_windows(g.Wo, (ceil_div(g.Cin, g.sw) + cbw_max) * int64_t(sizeof(float)),
                                           nchw && !fold);
  const int64_t tasks = g.N * win.count * g.Ho * g.groups * nblocks;
  // Rows of the full (padding 0) output summed into each output row: oh + ph alone, or with
  // padding_mode the frame rows folded onto it too (Note [folded frame]).
  const int64_t max_rows = fold ? fold->max_sources : 1;
  // The input columns [lo, hi) a window of outputs [oa, ob) reads (all of them, clipped to the row).
  const auto input_columns = [&](int64_t oa, int64_t ob) -> std::pair<int64_t, int64_t> {
    if (win.count == 1) return {0, g.W};
    const int64_t lo = std::clamp<int64_t>(floor_div(oa + g.pw - (g.kW - 1) * g.dw, g.sw), 0, g.W);
    return {lo, std::clamp<int64_t>(floor_div(ob - 1 + g.pw, g.sw) + 1, lo, g.W)};
  };
  const int64_t max_cols = win.count == 1 ? g.W : std::min(g.W, ceil_div(win.width + (g.kW - 1) * g.dw, g.sw) + 1);
  const DirectRowShape max_shape{1, g.Cin, max_cols, g.Cin_g};
  parallel_for_work(0, tasks, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    std::vector<float> patch(direct_patch_floats(KK * max_rows, max_shape));
    std::vector<DirectTap> taps(KK * max_rows * max_rows);
    std::optional<PixelRowCache> rows;
    const Scratch<float> row_out(ScratchSlot::kRowOut, nchw ? win.width * cbw_max : 0);
    if (nchw) rows.emplace(x.const_data_ptr<float>(), g.Cin, g.H, g.W, g.kH * max_rows + 1, max_shape.len);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cb = t % nblocks, grp = t / nblocks % g.groups, oh = t / (nblocks * g.groups) % g.Ho;
      const int64_t w = t / (nblocks * g.groups * g.Ho) % win.count, n = t / (nblocks * g.groups * g.Ho * win.count);
      const int64_t c0 = cb * cbw_max, width = std::min(cbw_max, g.Cout_g - c0);
      const int64_t oa = win.begin(w), ob = std::min(g.Wo, oa + win.width);
      const std::pair<int64_t, int64_t> cols = input_columns(oa, ob);
      const int64_t lo = cols.first, hi = cols.second;
      const DirectRowShape shape{1, g.Cin, hi - lo, g.Cin_g};
      // Output oa + j of the window: in place, or (NCHW) the row buffer, pixel-major.
      float* out = nchw ? row_out.data() : yp + ((n * g.Ho + oh) * g.Wo + oa) * g.Cout + grp * g.Cout_g + c0;
      const int64_t out_pixel = nchw ? width : g.Cout;
      const FoldSources full_rows = fold ? fold->rows[oh] : FoldSources{{oh + g.ph}, {oh + g.ph + 1}, 1};
      // Input row ih of full output row fh through tap kh (its column lo first), or null.
      const auto input_row = [&](int64_t fh, int64_t kh) -> const float* {
        const int64_t ih = input_of_tap(fh, kh, g.sh, 0, g.dh, g.H);
        if (ih < 0) return nullptr;
        return (nchw ? rows->row(n, ih, lo, hi) : x.const_data_ptr<float>() + (n * g.H + ih) * g.W * g.Cin) +
               grp * g.Cin_g;
      };
      // fn(input row, kh) for every full row of this output row and row tap that reads one.
      const auto for_each_input_row = [&](const auto& fn) {
        for (int q = 0; q < full_rows.count; ++q)
          for (int64_t fh = full_rows.lo[q]; fh < full_rows.hi[q]; ++fh)
            for (int64_t kh = 0; kh < g.kH; ++kh)
              if (const float* xrow = input_row(fh, kh)) fn(xrow, kh);
      };
      for (int64_t r = 0; r < g.sw; ++r) {
        // First output column of phase r in the window: the least ow >= oa with (ow + pw) % sw == r.
        const int64_t ow0 = oa + (((r - oa - g.pw) % g.sw) + g.sw) % g.sw;
        if (ow0 >= ob) continue;
        const int64_t count = (ob - ow0 + g.sw - 1) / g.sw;
        int ntaps = 0;
        for_each_input_row([&](const float* xrow, int64_t kh) {
          for (int64_t kw = 0; kw < g.kW; ++kw) {
            const int64_t tw = ow0 + g.pw - kw * g.dw;  // a multiple of sw when kw is of phase r
            if (((tw % g.sw) + g.sw) % g.sw != 0) continue;
            taps[ntaps++] = DirectTap{xrow, tw / g.sw - lo, panels.panel(grp, cb, kh, kw)};
          }
        });
        direct_tile_row_of_width(width, taps.data(), ntaps, shape, count, b.data() + grp * g.Cout_g + c0,
                                 out + (ow0 - oa) * out_pixel, g.sw * out_pixel, patch.data());
      }
      // padding_mode: the frame columns folded onto the border columns, one output at a time
      // (its value so far as the tile's starting value). One window: oa = lo = 0.
      if (fold) {
        for (const FoldedColumn& fc : fold->border_columns) {
          int ntaps = 0;
          for_each_input_row([&](const float* xrow, int64_t kh) {
            for (int e = 0; e < fc.extra.count; ++e)
              for (int64_t fw = fc.extra.lo[e]; fw < fc.extra.hi[e]; ++fw)
                for (int64_t kw = 0; kw < g.kW; ++kw) {
                  const int64_t iw = input_of_tap(fw, kw, g.sw, 0, g.dw, g.W);
                  if (iw >= 0) taps[ntaps++] = DirectTap{xrow, iw, panels.panel(grp, cb, kh, kw)};
                }
          });
          float* o = out + fc.ow * out_pixel;
          direct_tile_row_of_width(width, taps.data(), ntaps, shape, 1, o, o, out_pixel, patch.data());
        }
      }
      if (nchw)
        transpose_block(row_out.data(), width, yp + (n * g.Cout + grp * g.Cout_g + c0) * plane + oh * g.Wo + oa, plane,
                        width, ob - oa);
    }
  });
#else
  (void)x, (void)weight, (void)bias, (void)y, (void)g, (void)channels_last;
  TORCH_INTERNAL_ASSERT(false, "direct tiles need AVX-512 or AVX2");
#endif
}


// Note [Winograd] for the forward (winograd_forward, cpu/winograd.h). NCHW through channels_last
// copies of x and y. frame_mode: padding_mode's output, g then the full (padding 0) layer's
// geometry and y the output of padding (ph, pw) with the frame folded onto it (WinogradFrame).
void forward_winograd(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias, Tensor& y,
                      const ConvTranspose2dGeometry& g, bool channels_last, const PadFoldMode* frame_mode = nullptr,
                      int64_t ph = 0, int64_t pw = 0) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const std::vector<float> b = bias_as_acc<float, float>(bias, g.Cout);
  const int64_t Ho = g.Ho - 2 * ph, Wo = g.Wo - 2 * pw;
  const ChannelsLastStaging cl(!channels_last, x.const_data_ptr<float>(), g.N, g.Cin, g.H * g.W,
                               y.mutable_data_ptr<float>(), g.Cout, Ho * Wo);
  WinogradFrame frame{ph, pw, Ho, Wo, frame_mode ? *frame_mode : PadFoldMode::Reflect, nullptr};
  const Scratch<float> frame_data(ScratchSlot::kFrame, frame_mode ? g.N * frame.pixels() * g.Cout : 0);
  frame.data = frame_data.data();
  winograd_forward(cl.in(), weight.const_data_ptr<float>(), b.data(), cl.out(), g, kUnitDepth,
                   frame_mode ? &frame : nullptr);
  if (frame_mode) fold_frame(frame, cl.out(), g.N, g.Cout);
  cl.store();
#else
  (void)x, (void)weight, (void)bias, (void)y, (void)g, (void)channels_last, (void)frame_mode, (void)ph, (void)pw;
  TORCH_INTERNAL_ASSERT(false, "Winograd needs AVX-512 or AVX2");
#endif
}

// Note [Winograd rows] for the forward (winograd_rows_forward, cpu/winograd.h): x and y in their
// layout (NCHW x transposed a task's window at a time, RowsPlanes). NCHW x is checked window by
// window (the caller scans channels_last x): false when it holds Inf or NaN, y then to be redone.
bool forward_winograd_rows(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias, Tensor& y,
                           const ConvTranspose2dGeometry& g, bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const std::vector<float> b = bias_as_acc<float, float>(bias, g.Cout);
  std::atomic<bool> nonfinite{false};
  winograd_rows_forward(x.const_data_ptr<float>(), weight.const_data_ptr<float>(), b.data(),
                        y.mutable_data_ptr<float>(), !channels_last, g, channels_last ? nullptr : &nonfinite);
  return !nonfinite.load();
#else
  (void)x, (void)weight, (void)bias, (void)y, (void)g, (void)channels_last;
  TORCH_INTERNAL_ASSERT(false, "Winograd needs AVX-512 or AVX2");
#endif
}

// Direct output-stationary loop over the real taps only: the forward of a non-finite input or
// weight, Note [NaN/Inf] (docs/ARCHITECTURE.md) (the CUDA kernels recompute non-finite outputs
// with the same common/conv_transpose2d_direct.h sum). y may have any strides.
template <typename scalar_t>
void forward_direct(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                    Tensor& y, const ConvTranspose2dGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<acc_t> b = bias_as_acc<scalar_t, acc_t>(bias, g.Cout);
  const Tensor xc = x.contiguous(), wc = weight.contiguous();
  const scalar_t* xp = xc.const_data_ptr<scalar_t>();
  const scalar_t* wp = wc.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const int64_t ys0 = y.stride(0), ys1 = y.stride(1), ys2 = y.stride(2), ys3 = y.stride(3);
  const auto x_at = [&](int64_t n, int64_t ci, int64_t ih, int64_t iw) {
    return static_cast<acc_t>(xp[((n * g.Cin + ci) * g.H + ih) * g.W + iw]);
  };
  const auto w_at = [&](int64_t ci, int64_t col, int64_t kh, int64_t kw) {
    return static_cast<acc_t>(wp[((ci * g.Cout_g + col) * g.kH + kh) * g.kW + kw]);
  };
  parallel_for_work(0, g.N * g.Cout, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / g.Cout, co = t % g.Cout;
      for (int64_t oh = 0; oh < g.Ho; ++oh)
        for (int64_t ow = 0; ow < g.Wo; ++ow)
          yp[n * ys0 + co * ys1 + oh * ys2 + ow * ys3] = static_cast<scalar_t>(
              conv_transpose2d_output_direct<acc_t>(g, n, co, oh, ow, b[co], x_at, w_at));
    }
  });
}

}  // namespace

// Entry point (cpu/kernels.h), compiled once per CPU capability (cpu/capability/).
Tensor conv_transpose2d_cpu(const Tensor& input, const Tensor& weight,
                            const std::optional<Tensor>& bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef output_padding,
                            int64_t groups, at::IntArrayRef dilation) {
  const ConvTranspose2dGeometry g = check_conv_transpose2d_args(
      input, weight, bias, stride, padding, output_padding, groups, dilation);

  const at::MemoryFormat fmt = conv_memory_format(input, weight);
  Tensor y = empty_output({g.N, g.Cout, g.Ho, g.Wo}, input.options(), fmt);
  if (y.numel() == 0) return y;

  if (g.Cin_g == 1 && g.cell_offsets_h * g.cell_offsets_w <= 16) {
    // Direct loop: a GEMM with one input channel per group would have K <= 16.
    const Tensor x = input.contiguous();
    Tensor out = fmt == at::MemoryFormat::Contiguous ? y : empty_output({g.N, g.Cout, g.Ho, g.Wo}, input.options());
    TCONV_DISPATCH_FLOATING_TYPES(input.scalar_type(), "conv_transpose2d_depthwise", [&] {
      forward_depthwise<scalar_t>(x, weight, bias, out, g);
    });
    if (!out.is_same(y)) y.copy_(out);
    return y;
  }
  const bool channels_last = fmt == at::MemoryFormat::ChannelsLast;
  const Tensor x = input.contiguous(fmt);
  const Tensor w = weight.contiguous();
  TCONV_DISPATCH_FLOATING_TYPES(input.scalar_type(), "conv_transpose2d", [&] {
    // NCHW Winograd rows check x as they read it: no scan of x here.
    const bool rows = std::is_same_v<scalar_t, float> && use_winograd_rows(g, channels_last);
    if (!(all_finite<scalar_t>(w) && ((rows && !channels_last) || all_finite<scalar_t>(x))))
      forward_direct<scalar_t>(x, w, bias, y, g);
    else if (rows) {
      if (!forward_winograd_rows(x, w, bias, y, g, channels_last)) forward_direct<scalar_t>(x, w, bias, y, g);
    } else if (std::is_same_v<scalar_t, float> && use_winograd(g, DirectPass::forward, channels_last))
      forward_winograd(x, w, bias, y, g, channels_last);
    else if (std::is_same_v<scalar_t, float> && use_direct_tiles(g, DirectPass::forward, gemm_alternative(channels_last)))
      forward_direct_tiles(x, w, bias, y, g, channels_last);
    else if (gemm_in_16_bits<scalar_t>() && use_tap_gemm(g, true))
      forward_tap_gemm<scalar_t, scalar_t>(x, w, bias, y, g, channels_last);
    else if (use_tap_gemm(g, false))
      forward_tap_gemm<scalar_t, at::opmath_type<scalar_t>>(x, w, bias, y, g, channels_last);
    else
      forward_cell_gemm<scalar_t>(x, w, bias, y, g, channels_last);
  });
  return y;
}

// tconv::_conv_transpose2d_padded: padding_mode's output in one call. On the direct tiles' path
// (float32 channels_last or NCHW, AVX-512 or AVX2) the frame is folded inside the tiles (Note [folded
// frame]); elsewhere the full output and pad_fold2d, the definition.
Tensor conv_transpose2d_padded_cpu(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                                   at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                                   int64_t groups, at::IntArrayRef dilation, c10::string_view padding_mode) {
  const PadFoldMode mode = pad_fold_mode(std::string(padding_mode));
  const ConvTranspose2dGeometry g = check_conv_transpose2d_args(
      input, weight, bias, stride, padding, output_padding, groups, dilation);
  // F.pad's checks of this padding of the output (the full output's fold).
  check_pad_fold(at::empty({g.N, g.Cout, g.Ho + 2 * g.ph, g.Wo + 2 * g.pw}, input.options().device(at::kMeta)),
                 {g.pw, g.pw, g.ph, g.ph}, mode);
  const at::MemoryFormat fmt = conv_memory_format(input, weight);
  const bool channels_last = fmt == at::MemoryFormat::ChannelsLast;
  if (input.scalar_type() == at::kFloat && use_winograd(g, DirectPass::forward, channels_last)) {
    const Tensor x = input.contiguous(fmt), w = weight.contiguous();
    if (all_finite<float>(x) && all_finite<float>(w)) {
      const ConvTranspose2dGeometry full = check_conv_transpose2d_args(input, weight, bias, stride, {0, 0},
                                                                      output_padding, groups, dilation);
      Tensor y = empty_output({g.N, g.Cout, g.Ho, g.Wo}, input.options(), fmt);
      forward_winograd(x, w, bias, y, full, channels_last, &mode, g.ph, g.pw);
      return y;
    }
  } else if (input.scalar_type() == at::kFloat && use_direct_tiles(g, DirectPass::forward, gemm_alternative(channels_last))) {
    const FrameFold fold = frame_fold(g, mode);
    const Tensor x = input.contiguous(fmt), w = weight.contiguous();
    if (g.kH * g.kW * fold.max_sources * fold.max_sources <= kDirectMaxTaps && all_finite<float>(x) &&
        all_finite<float>(w)) {
      Tensor y = empty_output({g.N, g.Cout, g.Ho, g.Wo}, input.options(), fmt);
      forward_direct_tiles(x, w, bias, y, g, channels_last, &fold);
      return y;
    }
  }
  const Tensor full = conv_transpose2d_cpu(input, weight, std::nullopt, stride, {0, 0}, output_padding, groups,
                                           dilation);
  Tensor y = pad_fold2d_cpu(full, {g.pw, g.pw, g.ph, g.ph}, padding_mode);
  if (bias.has_value() && bias->defined()) y.add_(bias->view({1, -1, 1, 1}));
  return y;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
