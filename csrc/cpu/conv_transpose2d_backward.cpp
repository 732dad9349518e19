// CPU backward of tconv::conv_transpose2d: gradients for input, weight and bias.
//
// Wide-stride shapes (contiguous layout) use the adjoint of the forward's cell GEMM
// (cpu/conv_transpose2d_backward_cells.h). float32 with whole 16-channel vectors on AVX-512 or AVX2 uses
// the direct tiles (Note [direct tiles], cpu/direct_tiles.h) for grad_input and grad_weight. Other
// shapes use the patch matrix below.
//
// Both dense gradients read grad_output through the same patch matrix P: for input pixel
// (ih, iw), P[(ih, iw)][(co, kh, kw)] = grad_output[co, ih*sh - ph + kh*dh, iw*sw - pw + kw*dw]
// (zero outside), i.e. the im2col of an ordinary strided convolution.
//   grad_input  = P @ W_g          (a convolution; written straight into grad_input)
//   grad_weight = X_g^T @ P        (summed over fixed chunks of rows, then over chunks in order)
// Chunking depends on the shape only, never on the thread count, so results are bitwise
// reproducible. One-input-channel-per-group (depthwise) shapes use direct loops instead.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_backward_args.h"
#include "common/macros.h"
#include "cpu/conv_transpose2d_backward_blocks.h"
#include "cpu/conv_transpose2d_backward_cells.h"
#include "cpu/conv_transpose2d_cells.h"
#include "cpu/direct_tiles.h"
#include "cpu/finite.h"
#include "cpu/gemm.h"
#include "cpu/output_alloc.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "cpu/tap_row_classes.h"
#include "cpu/winograd.h"
#include "cpu/kernels.h"

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

// Fills rows [ih0, ih0 + rows) of the patch matrix P of image n, group grp, for the group's
// output channels [co0, co0 + cn) (all by default) and kernel rows [kh0, kh1) (all by default).
// Contiguous layout stores P^T (K x ld), k = (co, kh, kw), the rows * W pixels in its first
// columns; channels_last stores P (rows * W x K), k = (kh, kw, co). K = (kh1 - kh0) * kW * cn.
template <typename scalar_t, typename acc_t>
void gather_patches(const scalar_t* go, const ConvTranspose2dGeometry& g, bool channels_last,
                    int64_t n, int64_t grp, int64_t ih0, int64_t rows, acc_t* P, int64_t ld,
                    int64_t co0 = 0, int64_t cn = -1, int64_t kh0 = 0, int64_t kh1 = -1) {
  const int64_t M = ld;
  if (cn < 0) cn = g.Cout_g;
  if (kh1 < 0) kh1 = g.kH;
  const int64_t nkh = kh1 - kh0;
  if (!channels_last && g.W < 16) {
    // Short rows (DCGAN's 4x4 and 8x8 layers): per tap, where each of the block's pixels reads
    // grad_output, then one gather per (channel, tap) over all the block's pixels; the row loop
    // below spent more on loop control than on copies (7 ms of G2's grad_input, 1 thread).
    const int64_t KK = nkh * g.kW, pixels = rows * g.W;
    std::unique_ptr<int32_t[]> source(new int32_t[KK * pixels]);  // -1: outside, a zero
    for (int64_t kh = kh0; kh < kh1; ++kh)
      for (int64_t kw = 0; kw < g.kW; ++kw)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t iw = 0; iw < g.W; ++iw) {
            const int64_t oh = (ih0 + r) * g.sh - g.ph + kh * g.dh, ow = iw * g.sw - g.pw + kw * g.dw;
            const bool inside = oh >= 0 && oh < g.Ho && ow >= 0 && ow < g.Wo;
            source[((kh - kh0) * g.kW + kw) * pixels + r * g.W + iw] = inside ? int32_t(oh * g.Wo + ow) : -1;
          }
    for (int64_t co = co0; co < co0 + cn; ++co) {
      const scalar_t* plane = go + ((n * g.Cout + grp * g.Cout_g + co) * g.Ho) * g.Wo;
      for (int64_t tap = 0; tap < KK; ++tap) {
        const int32_t* src = source.get() + tap * pixels;
        acc_t* dst = P + ((co - co0) * KK + tap) * M;
#pragma omp simd
        for (int64_t m = 0; m < pixels; ++m) {
          const int32_t j = src[m];
          const acc_t v = static_cast<acc_t>(plane[j < 0 ? 0 : j]);
          dst[m] = j < 0 ? acc_t(0) : v;
        }
      }
    }
  } else if (!channels_last) {
    for (int64_t co = co0; co < co0 + cn; ++co) {
      const scalar_t* plane = go + ((n * g.Cout + grp * g.Cout_g + co) * g.Ho) * g.Wo;
      for (int64_t kh = kh0; kh < kh1; ++kh)
        for (int64_t kw = 0; kw < g.kW; ++kw) {
          acc_t* dst = P + (((co - co0) * nkh + kh - kh0) * g.kW + kw) * M;
          const int64_t ow_base = kw * g.dw - g.pw;  // iw feeds output column iw * sw + ow_base
          const IndexRange iws = indices_inside(g.W, g.sw, ow_base, g.Wo);
          for (int64_t r = 0; r < rows; ++r, dst += g.W) {
            const int64_t oh = (ih0 + r) * g.sh - g.ph + kh * g.dh;
            if (oh < 0 || oh >= g.Ho) {
              std::fill(dst, dst + g.W, acc_t(0));
              continue;
            }
            const scalar_t* src = plane + oh * g.Wo + ow_base;
            std::fill(dst, dst + iws.lo, acc_t(0));
            for (int64_t iw = iws.lo; iw < iws.hi; ++iw) dst[iw] = static_cast<acc_t>(src[iw * g.sw]);
            std::fill(dst + iws.hi, dst + g.W, acc_t(0));
          }
        }
    }
  } else {
    const int64_t K = nkh * g.kW * cn;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t iw = 0; iw < g.W; ++iw) {
        acc_t* dst = P + (r * g.W + iw) * K;
        for (int64_t kh = kh0; kh < kh1; ++kh)
          for (int64_t kw = 0; kw < g.kW; ++kw, dst += cn) {
            const int64_t oh = (ih0 + r) * g.sh - g.ph + kh * g.dh;
            const int64_t ow = iw * g.sw - g.pw + kw * g.dw;
            if (oh < 0 || oh >= g.Ho || ow < 0 || ow >= g.Wo) {
              std::fill(dst, dst + cn, acc_t(0));
              continue;
            }
            const scalar_t* src = go + ((n * g.Ho + oh) * g.Wo + ow) * g.Cout + grp * g.Cout_g + co0;
            for (int64_t co = 0; co < cn; ++co) dst[co] = static_cast<acc_t>(src[co]);
          }
      }
  }
}

// Blocks of the patch matrix: M = rows * W of at least ~512 rows of P, so the BLAS's packing of
// the other operand and the accumulator traffic of grad_weight are amortised; P stays <= ~4 MiB.
// Small images (DCGAN's 4x4 to 16x16) put several whole images in one block: one image alone
// would make GEMMs of 16 to 256 rows. A function of the shape only, never of the thread count.
struct PatchBlocks {
  int64_t images, rows;               // per block: whole images, or rows of one image
  int64_t image_blocks, row_blocks;
  int64_t count() const { return image_blocks * row_blocks; }
};

PatchBlocks patch_blocks(const ConvTranspose2dGeometry& g, int64_t elem_size) {
  const int64_t row_bytes = std::max<int64_t>(g.W * g.Cout_g * g.kH * g.kW * elem_size, 1);
  const int64_t rows_for_m = ceil_div(512, g.W);
  const int64_t rows_for_cache = std::max<int64_t>((4 << 20) / row_bytes, 1);
  PatchBlocks b{1, balanced_rows(std::min(rows_for_m, rows_for_cache), g.H), 0, 0};
  const int64_t image_rows = std::max<int64_t>(g.H, 1);
  if (b.rows >= g.H && g.H > 0)
    b.images = std::clamp<int64_t>(std::min(rows_for_m, rows_for_cache) / image_rows, 1, std::max<int64_t>(g.N, 1));
  b.image_blocks = ceil_div(g.N, b.images);
  b.row_blocks = ceil_div(g.H, b.rows);
  return b;
}

// ---- grad_input --------------------------------------------------------------------------------

// Stores a patch block's grad_input D (ni whole images from n0, or rows [ih0, ih0 + rows) of one;
// NCHW (cn x M), channels_last (M x cn), pixels (image, row, column)) for the group's input
// channels [ci0, ci0 + cn).
template <typename scalar_t, typename acc_t>
void store_input_grad_block(const acc_t* D, const ConvTranspose2dGeometry& g, bool channels_last, int64_t n0,
                            int64_t ni, int64_t ih0, int64_t rows, int64_t grp, int64_t ci0, int64_t cn,
                            scalar_t* gip) {
  const int64_t HWb = rows * g.W, M = ni * HWb;
  if (!channels_last) {
    for (int64_t i = 0; i < ni; ++i)
      for (int64_t ci = 0; ci < cn; ++ci) {
        scalar_t* o = gip + (((n0 + i) * g.Cin + grp * g.Cin_g + ci0 + ci) * g.H + ih0) * g.W;
        const acc_t* d = D + ci * M + i * HWb;
        for (int64_t m = 0; m < HWb; ++m) o[m] = static_cast<scalar_t>(d[m]);
      }
  } else {
    for (int64_t i = 0; i < ni; ++i)
      for (int64_t m = 0; m < HWb; ++m) {
        scalar_t* o = gip + (((n0 + i) * g.H + ih0) * g.W + m) * g.Cin + grp * g.Cin_g + ci0;
        const acc_t* d = D + (i * HWb + m) * cn;
        for (int64_t ci = 0; ci < cn; ++ci) o[ci] = static_cast<scalar_t>(d[ci]);
      }
  }
}

// grad_input of one patch block (ni whole images from n0, or rows [ih0, ih0 + rows) of one) for
// the group's input channels [ci0, ci0 + cn), class by class (Note [tap row classes]): class c's
// patches P_c (its kernel rows, its input rows; gathered when `gather`, all classes one after
// the other in P) times its weight block, each product D_c added into the block's result D in
// class order, then D stored. BT + class_weight[c]: class c's weight rows (Cin x K_c).
template <typename scalar_t, typename acc_t>
void input_grad_block_by_classes(const scalar_t* gop, const acc_t* BT, const std::vector<int64_t>& class_weight,
                                 const std::vector<TapRowClass>& classes, const ConvTranspose2dGeometry& g,
                                 bool channels_last, int64_t n0, int64_t ni, int64_t ih0, int64_t rows, int64_t grp,
                                 int64_t ci0, int64_t cn, acc_t* P, acc_t* D, bool gather, scalar_t* gip) {
  const int64_t HWb = rows * g.W, M = ni * HWb;
  // D: NCHW (cn x M), channels_last (M x cn), pixels (image, row, column) of the block
  std::fill(D, D + cn * M, acc_t(0));
  acc_t* Pc = P;
  for (size_t c = 0; c < classes.size(); ++c) {
    const TapRowClass& rc = classes[c];
    const int64_t lo = std::max(rc.ih_lo, ih0), hi = std::max(std::min(rc.ih_hi, ih0 + rows), lo);
    const int64_t Kc = rc.columns(g.kW, g.Cout_g), HWc = (hi - lo) * g.W, Mc = ni * HWc;
    if (gather)
      for (int64_t i = 0; i < ni; ++i)
        gather_patches<scalar_t, acc_t>(gop, g, channels_last, n0 + i, grp, lo, hi - lo,
                                        Pc + (channels_last ? i * HWc * Kc : i * HWc), Mc, 0, -1, rc.kh_begin,
                                        rc.kh_end);
    if (Mc > 0) {
      const acc_t* Wc = BT + class_weight[c] + (grp * g.Cin_g + ci0) * Kc;  // rows ci0 .. ci0 + cn, dense
      const Scratch<acc_t> Dc(ScratchSlot::kConvClass, cn * Mc, size_t(4) << 20);
      if (!channels_last) {
        // D_c^T (cn x Mc) = W_c (cn x Kc) @ P_c^T (Kc x Mc), then into D's columns of each image
        gemm<acc_t>(cn, Mc, Kc, {Wc, Kc, false}, {Pc, Mc, false}, Dc.data(), Mc, false);
        for (int64_t ci = 0; ci < cn; ++ci)
          for (int64_t i = 0; i < ni; ++i) {
            const acc_t* src = Dc.data() + ci * Mc + i * HWc;
            acc_t* dst = D + ci * M + i * HWb + (lo - ih0) * g.W;
            for (int64_t m = 0; m < HWc; ++m) dst[m] += src[m];
          }
      } else {
        // D_c (Mc x cn) = P_c (Mc x Kc) @ W_c^T (Kc x cn), then into D's rows of each image
        gemm<acc_t>(Mc, cn, Kc, {Pc, Kc, false}, {Wc, Kc, true}, Dc.data(), cn, false);
        for (int64_t i = 0; i < ni; ++i) {
          const acc_t* src = Dc.data() + i * HWc * cn;
          acc_t* dst = D + (i * HWb + (lo - ih0) * g.W) * cn;
          for (int64_t e = 0; e < HWc * cn; ++e) dst[e] += src[e];
        }
      }
    }
    Pc += Kc * Mc;
  }
  store_input_grad_block(D, g, channels_last, n0, ni, ih0, rows, grp, ci0, cn, gip);
}

template <typename scalar_t>
void backward_input_dense(const Tensor& go, const Tensor& weight, Tensor& gi,
                          const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = g.Cout_g * g.kH * g.kW;
  const PatchBlocks pb = patch_blocks(g, sizeof(acc_t));
  const int64_t block_pixels = pb.images * pb.rows * g.W;
  // Few patch blocks (small images batched whole): the input channels are split too, each task
  // gathering its block's patches again (cheap next to a GEMM of >= 32 columns).
  const int64_t cc = pb.count() * g.groups >= 8
                         ? g.Cin_g
                         : std::clamp<int64_t>(g.Cin_g * pb.count() * g.groups / 8, std::min<int64_t>(32, g.Cin_g), g.Cin_g);
  const int64_t ci_blocks = ceil_div(g.Cin_g, cc);
  // The weight's rows W (Cin x K), row ci holding (co, kh, kw), are B^T, which both layouts'
  // GEMMs read in place as a dense operand (Note [float32 GEMM engine]): NCHW as the left
  // operand, channels_last as the transposed right one. Only a 16-bit weight (converted),
  // channels_last's (kh, kw, co) patch order (permuted within each row) or several classes of
  // kernel rows (below) need a copy.
  constexpr bool same_type = std::is_same_v<scalar_t, acc_t>;
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  // Note [tap row classes]: with several classes of kernel rows, each class multiplies only the
  // input pixels its rows reach, through its own dense block of the weight's rows (class c's
  // block: Cin x K_c at class_weight[c], columns (co, kh, kw) or channels_last (kh, kw, co) of
  // its kernel rows), and the classes' products are summed per pixel in class order.
  const std::vector<TapRowClass> classes = tap_row_classes(g);
  const int64_t nclasses = static_cast<int64_t>(classes.size());
  std::unique_ptr<acc_t[]> packed;
  const acc_t* BT = nullptr;
  if constexpr (same_type) {
    if (!channels_last && nclasses == 1) BT = w;
  }
  std::vector<int64_t> class_weight(nclasses, 0);
  for (int64_t c = 1; c < nclasses; ++c) class_weight[c] = class_weight[c - 1] + g.Cin * classes[c - 1].columns(g.kW, g.Cout_g);
  if (BT == nullptr) {  // class by class; one class: the rows converted, channels_last's permuted
    packed.reset(new acc_t[g.Cin * K]);
    parallel_for_work(0, g.Cin, g.Cin * K, [&](int64_t begin, int64_t end) {
      for (int64_t ci = begin; ci < end; ++ci) {
        const scalar_t* src = w + ci * K;  // (co, kh, kw)
        for (int64_t c = 0; c < nclasses; ++c) {
          const TapRowClass& rc = classes[c];
          const int64_t nkh = rc.kernel_rows(), Kc = rc.columns(g.kW, g.Cout_g);
          acc_t* dst = packed.get() + class_weight[c] + ci * Kc;
          for (int64_t co = 0; co < g.Cout_g; ++co)
            for (int64_t kh = rc.kh_begin; kh < rc.kh_end; ++kh)
              for (int64_t kw = 0; kw < g.kW; ++kw) {
                const acc_t v = static_cast<acc_t>(src[(co * g.kH + kh) * g.kW + kw]);
                dst[channels_last ? ((kh - rc.kh_begin) * g.kW + kw) * g.Cout_g + co
                                  : (co * nkh + kh - rc.kh_begin) * g.kW + kw] = v;
              }
        }
      }
    });
    BT = packed.get();
  }
  const scalar_t* gop = go.const_data_ptr<scalar_t>();
  scalar_t* gip = gi.mutable_data_ptr<scalar_t>();

  parallel_for_work(0, pb.count() * g.groups * ci_blocks, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    // Per-thread scratch kept between calls (cpu/scratch.h): no fresh mapping and faults per call.
    const Scratch<acc_t> P(ScratchSlot::kConvBlockA, block_pixels * K, size_t(4) << 20);
    const Scratch<acc_t> D(ScratchSlot::kConvBlockB, block_pixels * cc, size_t(4) << 20);
    int64_t gathered = -1;  // the block whose patches P holds
    for (int64_t task = begin; task < end; ++task) {
      const int64_t ci0 = task % ci_blocks * cc, cn = std::min(cc, g.Cin_g - ci0), t = task / ci_blocks;
      const int64_t blk = t % pb.row_blocks, grp = (t / pb.row_blocks) % g.groups;
      const int64_t n0 = t / (pb.row_blocks * g.groups) * pb.images, ni = std::min(pb.images, g.N - n0);
      const int64_t ih0 = blk * pb.rows, rows = std::min(pb.rows, g.H - ih0);
      const int64_t HWb = rows * g.W, M = ni * HWb;  // pixels per image in the block, and in all
      if (nclasses > 1) {
        input_grad_block_by_classes<scalar_t, acc_t>(gop, BT, class_weight, classes, g, channels_last, n0, ni, ih0, rows,
                                                     grp, ci0, cn, P.data(), D.data(), t != gathered, gip);
        gathered = t;
        continue;
      }
      if (t != gathered)
        for (int64_t i = 0; i < ni; ++i)
          gather_patches<scalar_t, acc_t>(gop, g, channels_last, n0 + i, grp, ih0, rows,
                                          P.data() + (channels_last ? i * HWb * K : i * HWb), M);
      gathered = t;
      const acc_t* Wb = BT + (grp * g.Cin_g + ci0) * K;  // B^T rows ci0 .. ci0 + cn of the group
      if (!channels_last) {
        // D^T (cn x M) = B^T (cn x K) @ P^T (K x M): rows of grad_input[n, ci, ih0:ih0+rows],
        // written in place when the block is one image's rows.
        const bool direct = same_type && ni == 1;
        scalar_t* out = gip + ((n0 * g.Cin + grp * g.Cin_g + ci0) * g.H + ih0) * g.W;
        acc_t* dst = direct ? reinterpret_cast<acc_t*>(out) : D.data();
        const int64_t ldc = direct ? g.H * g.W : M;
        gemm<acc_t>(cn, M, K, {Wb, K, false}, {P.data(), M, false}, dst, ldc, false);
        if (!direct) store_input_grad_block(D.data(), g, false, n0, ni, ih0, rows, grp, ci0, cn, gip);
      } else {
        // D (M x cn) = P (M x K) @ B (K x cn): pixels of grad_input[n0:n0+ni, ih0:ih0+rows, channels]
        // (consecutive across the block's whole images)
        scalar_t* out = gip + ((n0 * g.H + ih0) * g.W) * g.Cin + grp * g.Cin_g + ci0;
        acc_t* dst = same_type ? reinterpret_cast<acc_t*>(out) : D.data();
        const int64_t ldc = same_type ? g.Cin : cn;
        gemm<acc_t>(M, cn, K, {P.data(), K, false}, {Wb, K, true}, dst, ldc, false);
        if constexpr (!same_type) store_input_grad_block(D.data(), g, true, n0, ni, ih0, rows, grp, ci0, cn, gip);
      }
    }
  });
}

// Note [Winograd] for grad_input (winograd_grad_input, cpu/winograd.h). NCHW through channels_last
// copies, as the forward.
void backward_input_winograd(const Tensor& go, const Tensor& weight, Tensor& gi, const ConvTranspose2dGeometry& g,
                             bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const ChannelsLastStaging cl(!channels_last, go.const_data_ptr<float>(), g.N, g.Cout, g.Ho * g.Wo,
                               gi.mutable_data_ptr<float>(), g.Cin, g.H * g.W);
  winograd_grad_input(cl.in(), weight.const_data_ptr<float>(), cl.out(), g, kUnitDepth);
  cl.store();
#else
  (void)go, (void)weight, (void)gi, (void)g, (void)channels_last;
  TORCH_INTERNAL_ASSERT(false, "Winograd needs AVX-512 or AVX2");
#endif
}

// Note [Winograd rows] for grad_input (winograd_rows_grad_input, cpu/winograd.h): grad_output and
// grad_input in their layout (NCHW grad_output transposed a task's window at a time, RowsPlanes).
// NCHW grad_output is checked window by window (the caller scans channels_last grad_output): false
// when it holds Inf or NaN, grad_input then to be computed on another path.
bool backward_input_winograd_rows(const Tensor& go, const Tensor& weight, Tensor& gi, const ConvTranspose2dGeometry& g,
                                  bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  std::atomic<bool> nonfinite{false};
  winograd_rows_grad_input(go.const_data_ptr<float>(), weight.const_data_ptr<float>(), gi.mutable_data_ptr<float>(),
                           !channels_last, g, channels_last ? nullptr : &nonfinite);
  return !nonfinite.load();
#else
  (void)go, (void)weight, (void)gi, (void)g, (void)channels_last;
  TORCH_INTERNAL_ASSERT(false, "Winograd needs AVX-512 or AVX2");
#endif
}

// Note [direct tiles] for grad_input (channels_last float32): grad_input is an ordinary strided
// convolution of grad_output, gi[n, ih, iw, ci] = sum over taps (kh, kw) and co of
// go[n, ih sh - ph + kh dh, iw sw - pw + kw dw, co] w[ci, co, kh, kw], so a tile row is R input
// pixels of one row (their taps' pixels sw apart in grad_output's row) or one pixel in R images.
// TCONV_CONV_BACKWARD=patch|rows|images forces the patch GEMM or one order (tests).
void backward_input_direct_tiles(const Tensor& go, const Tensor& weight, Tensor& gi, const ConvTranspose2dGeometry& g,
                                 bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const int64_t KK = g.kH * g.kW, cbw_max = DirectPanels::kMaxWidth;
  const int64_t nblocks = ceil_div(g.Cin_g, cbw_max);
  const DirectPanels panels(weight.const_data_ptr<float>(), g, true);
  // NCHW: as the forward's (Note [direct tiles] there): grad_output's rows through a per-thread
  // cache of transposed rows and each grad_input row through a row buffer, or along images
  // channels_last copies of both.
  const bool nchw = !channels_last;
  float* gip = gi.mutable_data_ptr<float>();
  const int64_t plane = g.H * g.W;
  const char* force = std::getenv("TCONV_CONV_BACKWARD");
  const bool along_images = force && std::strcmp(force, "images") == 0 ? true
                            : force && std::strcmp(force, "rows") == 0 ? false
                                                                        : direct_tiles_along_images(g.N, g.W, g.Cin_g);
  const int64_t work = g.multiply_adds();
  if (along_images) {
    const ChannelsLastStaging cl(nchw, go.const_data_ptr<float>(), g.N, g.Cout, g.Ho * g.Wo, gip, g.Cin, plane);
    const float* gop = cl.in();
    float* gicl_p = cl.out();
    const DirectRowShape shape{1, g.Ho * g.Wo * g.Cout, g.N, g.Cout_g};
    parallel_for_work(0, g.H * g.W * g.groups * nblocks, work, [&](int64_t begin, int64_t end) {
      std::vector<DirectTap> taps(KK);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t cb = t % nblocks, grp = t / nblocks % g.groups, pos = t / (nblocks * g.groups);
        const int64_t ih = pos / g.W, iw = pos % g.W;
        const int64_t c0 = cb * cbw_max, width = std::min(cbw_max, g.Cin_g - c0);
        int ntaps = 0;
        for (int64_t kh = 0; kh < g.kH; ++kh) {
          const int64_t oh = output_of_tap(ih, kh, g.sh, g.ph, g.dh);
          if (oh < 0 || oh >= g.Ho) continue;
          for (int64_t kw = 0; kw < g.kW; ++kw) {
            const int64_t ow = output_of_tap(iw, kw, g.sw, g.pw, g.dw);
            if (ow < 0 || ow >= g.Wo) continue;
            taps[ntaps++] = DirectTap{gop + (oh * g.Wo + ow) * g.Cout + grp * g.Cout_g, 0, panels.panel(grp, cb, kh, kw)};
          }
        }
        const int64_t ci0 = grp * g.Cin_g + c0;
        direct_tile_row_of_width(width, taps.data(), ntaps, shape, g.N, kNoBias, gicl_p + pos * g.Cin + ci0,
                                 plane * g.Cin, nullptr);
      }
    });
    cl.store();
    return;
  }
  // NCHW rows in windows of grad_input columns where a row is wide (Note [column windows]).
  const ColumnWindows win = column_windows(g.W, (g.sw * g.Cout + cbw_max) * int64_t(sizeof(float)), nchw);
  // The grad_output columns [lo, hi) a window of grad_input columns [ia, ib) reads, clipped to the row.
  const auto read_columns = [&](int64_t ia, int64_t ib) -> std::pair<int64_t, int64_t> {
    if (win.count == 1) return {0, g.Wo};
    const int64_t lo = std::clamp<int64_t>(output_of_tap(ia, 0, g.sw, g.pw, g.dw), 0, g.Wo);
    return {lo, std::clamp<int64_t>(output_of_tap(ib - 1, g.kW - 1, g.sw, g.pw, g.dw) + 1, lo, g.Wo)};
  };
  const int64_t max_cols =
      win.count == 1 ? g.Wo : std::min(g.Wo, (win.width - 1) * g.sw + (g.kW - 1) * g.dw + 1);
  parallel_for_work(0, g.N * win.count * g.H * g.groups * nblocks, work, [&](int64_t begin, int64_t end) {
    std::vector<float> patch(direct_patch_floats(KK, DirectRowShape{g.sw, g.Cout, max_cols, g.Cout_g}));
    std::vector<DirectTap> taps(KK);
    std::optional<PixelRowCache> rows;
    const Scratch<float> row_out(ScratchSlot::kRowOut, nchw ? win.width * cbw_max : 0);
    if (nchw) rows.emplace(go.const_data_ptr<float>(), g.Cout, g.Ho, g.Wo, g.kH + 1, max_cols);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cb = t % nblocks, grp = t / nblocks % g.groups, ih = t / (nblocks * g.groups) % g.H;
      const int64_t w = t / (nblocks * g.groups * g.H) % win.count, n = t / (nblocks * g.groups * g.H * win.count);
      const int64_t c0 = cb * cbw_max, width = std::min(cbw_max, g.Cin_g - c0);
      const int64_t ia = win.begin(w), ib = std::min(g.W, ia + win.width);
      const std::pair<int64_t, int64_t> cols = read_columns(ia, ib);
      const int64_t lo = cols.first, hi = cols.second;
      const DirectRowShape shape{g.sw, g.Cout, hi - lo, g.Cout_g};
      int ntaps = 0;
      for (int64_t kh = 0; kh < g.kH; ++kh) {
        const int64_t oh = output_of_tap(ih, kh, g.sh, g.ph, g.dh);
        if (oh < 0 || oh >= g.Ho) continue;
        const float* gorow =
            (nchw ? rows->row(n, oh, lo, hi) : go.const_data_ptr<float>() + (n * g.Ho + oh) * g.Wo * g.Cout) +
            grp * g.Cout_g;
        for (int64_t kw = 0; kw < g.kW; ++kw)
          taps[ntaps++] = DirectTap{gorow, output_of_tap(ia, kw, g.sw, g.pw, g.dw) - lo, panels.panel(grp, cb, kh, kw)};
      }
      if (!nchw) {
        direct_tile_row_of_width(width, taps.data(), ntaps, shape, g.W, kNoBias,
                                 gip + (n * g.H + ih) * g.W * g.Cin + grp * g.Cin_g + c0, g.Cin, patch.data());
        continue;
      }
      direct_tile_row_of_width(width, taps.data(), ntaps, shape, ib - ia, kNoBias, row_out.data(), width,
                               patch.data());
      transpose_block(row_out.data(), width, gip + (n * g.Cin + grp * g.Cin_g + c0) * plane + ih * g.W + ia, plane,
                      width, ib - ia);
    }
  });
#else
  (void)go, (void)weight, (void)gi, (void)g, (void)channels_last;
  TORCH_INTERNAL_ASSERT(false, "direct tiles need AVX-512 or AVX2");
#endif
}

// One input channel per group: grad_input[n, grp, ih, iw] sums grad_output over the taps it fed.
template <typename scalar_t>
void backward_input_depthwise(const Tensor& go, const Tensor& weight, Tensor& gi,
                              const ConvTranspose2dGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* gop = go.const_data_ptr<scalar_t>();
  const scalar_t* wp = weight.const_data_ptr<scalar_t>();
  scalar_t* gip = gi.mutable_data_ptr<scalar_t>();
  parallel_for_work(0, g.N * g.groups, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> row(g.W);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t grp = t % g.groups, n = t / g.groups;
      for (int64_t ih = 0; ih < g.H; ++ih) {
        std::fill(row.begin(), row.end(), acc_t(0));
        for (int64_t j = 0; j < g.Cout_g; ++j) {
          const int64_t c = grp * g.Cout_g + j;
          const scalar_t* plane = gop + (n * g.Cout + c) * g.Ho * g.Wo;
          for (int64_t kh = 0; kh < g.kH; ++kh) {
            const int64_t oh = ih * g.sh - g.ph + kh * g.dh;
            if (oh < 0 || oh >= g.Ho) continue;
            for (int64_t kw = 0; kw < g.kW; ++kw) {
              const acc_t wv = static_cast<acc_t>(wp[(c * g.kH + kh) * g.kW + kw]);
              const int64_t ow_base = kw * g.dw - g.pw;
              const IndexRange iws = indices_inside(g.W, g.sw, ow_base, g.Wo);
              const scalar_t* src = plane + oh * g.Wo + ow_base;
              for (int64_t iw = iws.lo; iw < iws.hi; ++iw) row[iw] += wv * static_cast<acc_t>(src[iw * g.sw]);
            }
          }
        }
        scalar_t* dst = gip + ((n * g.Cin + grp) * g.H + ih) * g.W;
        for (int64_t iw = 0; iw < g.W; ++iw) dst[iw] = static_cast<scalar_t>(row[iw]);
      }
    }
  });
}

}  // namespace

// Entry point (cpu/kernels.h), compiled once per CPU capability (cpu/capability/).
Tensor conv_transpose2d_backward_input_cpu(const Tensor& grad_output, const Tensor& weight,
                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                           int64_t groups, at::IntArrayRef dilation,
                                           at::IntArrayRef input_hw) {
  const ConvTranspose2dGeometry g =
      check_backward_input_args(grad_output, weight, stride, padding, groups, dilation, input_hw);
  const at::MemoryFormat fmt = conv_memory_format(grad_output, weight);
  Tensor gi = empty_output({g.N, g.Cin, g.H, g.W}, grad_output.options(), fmt);
  if (gi.numel() == 0) return gi;
  const Tensor w = weight.contiguous();
  if (g.Cin_g == 1) {
    const Tensor go = grad_output.contiguous();
    Tensor out = fmt == at::MemoryFormat::Contiguous ? gi : at::empty_like(gi, at::MemoryFormat::Contiguous);
    TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "conv_transpose2d_backward_input_depthwise", [&] {
      backward_input_depthwise<scalar_t>(go, w, out, g);
    });
    if (!out.is_same(gi)) gi.copy_(out);
    return gi;
  }
  const Tensor go = grad_output.contiguous(fmt);
  if (use_cells(g, fmt == at::MemoryFormat::ChannelsLast) && all_finite_any(go)) {
    TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "conv_transpose2d_backward_input_cells", [&] {
      backward_input_cells<scalar_t>(go, w, gi, g);
    });
    return gi;
  }
  if (go.scalar_type() == at::kFloat &&
      use_winograd_rows(g, fmt == at::MemoryFormat::ChannelsLast, DirectPass::grad_input) && all_finite<float>(w) &&
      (fmt != at::MemoryFormat::ChannelsLast || all_finite<float>(go)) &&  // NCHW: checked as read
      backward_input_winograd_rows(go, w, gi, g, fmt == at::MemoryFormat::ChannelsLast))  // Note [Winograd rows]
    return gi;
  if (go.scalar_type() == at::kFloat && use_winograd(g, DirectPass::grad_input, fmt == at::MemoryFormat::ChannelsLast) &&
      all_finite<float>(w) && all_finite<float>(go)) {  // Note [Winograd]
    backward_input_winograd(go, w, gi, g, fmt == at::MemoryFormat::ChannelsLast);
    return gi;
  }
  const char* force = std::getenv("TCONV_CONV_BACKWARD");
  if (go.scalar_type() == at::kFloat &&
      use_direct_tiles(g, DirectPass::grad_input, gemm_alternative(fmt == at::MemoryFormat::ChannelsLast)) &&
      !(force && std::strcmp(force, "patch") == 0) && all_finite<float>(w)) {
    backward_input_direct_tiles(go, w, gi, g, fmt == at::MemoryFormat::ChannelsLast);  // Note [direct tiles]
    return gi;
  }
  TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "conv_transpose2d_backward_input", [&] {
    backward_input_dense<scalar_t>(go, w, gi, g, fmt == at::MemoryFormat::ChannelsLast);
  });
  return gi;
}

// ---- grad_weight -------------------------------------------------------------------------------

namespace {

// dW (Cin_g x kH kW cn, leading dimension ldw) (+)= X_g^T @ P over one patch block (ni whole
// images from n0, or input rows [ih0, ih0 + rows) of one) for the group's output channels
// [co0, co0 + cn): columns k = (co, kh, kw), channels_last (kh, kw, co). P and X are scratch.
template <typename scalar_t, typename acc_t>
void weight_grad_block(const scalar_t* gop, const scalar_t* xp, const ConvTranspose2dGeometry& g,
                       bool channels_last, int64_t n0, int64_t ni, int64_t ih0, int64_t rows, int64_t grp,
                       int64_t co0, int64_t cn, acc_t* P, acc_t* X, acc_t* dW, int64_t ldw, bool accumulate) {
  const int64_t Kc = g.kH * g.kW * cn, HWb = rows * g.W, M = ni * HWb;
  for (int64_t i = 0; i < ni; ++i)
    gather_patches<scalar_t, acc_t>(gop, g, channels_last, n0 + i, grp, ih0, rows,
                                    P + (channels_last ? i * HWb * Kc : i * HWb), M, co0, cn);
  if (!channels_last) {
    // X_g (Cin_g x M): the block's rows of this group's input planes, image after image
    for (int64_t i = 0; i < ni; ++i)
      for (int64_t ci = 0; ci < g.Cin_g; ++ci) {
        const scalar_t* src = xp + (((n0 + i) * g.Cin + grp * g.Cin_g + ci) * g.H + ih0) * g.W;
        acc_t* dst = X + ci * M + i * HWb;
        for (int64_t m = 0; m < HWb; ++m) dst[m] = static_cast<acc_t>(src[m]);
      }
    // dW (Cin_g x Kc) (+)= X_g (Cin_g x M) @ P (M x Kc), P stored as P^T
    gemm<acc_t>(g.Cin_g, Kc, M, {X, M, false}, {P, M, true}, dW, ldw, accumulate);
  } else {
    for (int64_t m = 0; m < M; ++m) {
      const scalar_t* src = xp + ((n0 * g.H + ih0) * g.W + m) * g.Cin + grp * g.Cin_g;
      for (int64_t ci = 0; ci < g.Cin_g; ++ci) X[m * g.Cin_g + ci] = static_cast<acc_t>(src[ci]);
    }
    gemm<acc_t>(g.Cin_g, Kc, M, {X, g.Cin_g, true}, {P, Kc, false}, dW, ldw, accumulate);
  }
}

template <typename scalar_t>
void backward_weight_dense(const Tensor& go, const Tensor& x, Tensor& gw,
                           const ConvTranspose2dGeometry& g, bool channels_last) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = g.Cout_g * g.kH * g.kW;
  const PatchBlocks pb = patch_blocks(g, sizeof(acc_t));
  const int64_t block_pixels = pb.images * pb.rows * g.W;
  const int64_t tasks = pb.count();  // (image block, row block); every group inside
  const int64_t wsize = g.groups * g.Cin_g * K;
  const int64_t kk = g.kH * g.kW;
  scalar_t* gwp = gw.mutable_data_ptr<scalar_t>();
  const scalar_t* gop = go.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  if (tasks < 8 && g.Cout_g > 1) {
    // Few patch blocks (small images batched whole, e.g. DCGAN's 1x1 latent: one block): split
    // the output channels instead, each task summing every block in order for its own columns.
    const int64_t cc = std::max<int64_t>(ceil_div(g.Cout_g, 8), std::min<int64_t>(g.Cout_g, ceil_div(64, kk)));
    const int64_t col_blocks = ceil_div(g.Cout_g, cc);
    parallel_for_work(0, g.groups * col_blocks, g.multiply_adds(), [&](int64_t begin, int64_t end) {
      const Scratch<acc_t> P(ScratchSlot::kConvBlockA, block_pixels * kk * cc, size_t(4) << 20);
      const Scratch<acc_t> X(ScratchSlot::kConvBlockB, block_pixels * g.Cin_g, size_t(4) << 20);
      const Scratch<acc_t> dW(ScratchSlot::kConvSmall, g.Cin_g * kk * cc, size_t(4) << 20);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t grp = t / col_blocks, co0 = t % col_blocks * cc, cn = std::min(cc, g.Cout_g - co0);
        const int64_t Kc = kk * cn;
        for (int64_t b = 0; b < tasks; ++b) {
          const int64_t blk = b % pb.row_blocks, n0 = b / pb.row_blocks * pb.images;
          const int64_t ni = std::min(pb.images, g.N - n0);
          const int64_t ih0 = blk * pb.rows, rows = std::min(pb.rows, g.H - ih0);
          weight_grad_block(gop, xp, g, channels_last, n0, ni, ih0, rows, grp, co0, cn, P.data(), X.data(),
                            dW.data(), Kc, b > 0);
        }
        // dW columns (co - co0, kh, kw) or (kh, kw, co - co0) -> weight (Cin, Cout_g, kH, kW)
        for (int64_t ci = 0; ci < g.Cin_g; ++ci)
          for (int64_t c = 0; c < cn; ++c)
            for (int64_t k = 0; k < kk; ++k) {
              const acc_t v = dW[ci * Kc + (channels_last ? k * cn + c : c * kk + k)];
              gwp[((grp * g.Cin_g + ci) * g.Cout_g + co0 + c) * kk + k] = static_cast<scalar_t>(v);
            }
      }
    });
    return;
  }
  const int64_t chunks = weight_grad_chunks(tasks, wsize * int64_t(sizeof(acc_t)));
  // Each chunk's first block writes its partial sums (no zero fill: 16 MiB at DCGAN G3).
  std::unique_ptr<acc_t[]> partial(new acc_t[chunks * wsize]);

  parallel_for_work(0, chunks, g.multiply_adds(), [&](int64_t cbegin, int64_t cend) {
    const Scratch<acc_t> P(ScratchSlot::kConvBlockA, block_pixels * K, size_t(4) << 20);
    const Scratch<acc_t> X(ScratchSlot::kConvBlockB, block_pixels * g.Cin_g, size_t(4) << 20);
    for (int64_t chunk = cbegin; chunk < cend; ++chunk) {
      acc_t* acc = partial.get() + chunk * wsize;
      const int64_t t_lo = tasks * chunk / chunks, t_hi = tasks * (chunk + 1) / chunks;
      for (int64_t t = t_lo; t < t_hi; ++t) {
        const int64_t blk = t % pb.row_blocks, n0 = t / pb.row_blocks * pb.images;
        const int64_t ni = std::min(pb.images, g.N - n0);
        const int64_t ih0 = blk * pb.rows, rows = std::min(pb.rows, g.H - ih0);
        for (int64_t grp = 0; grp < g.groups; ++grp)
          weight_grad_block(gop, xp, g, channels_last, n0, ni, ih0, rows, grp, 0, g.Cout_g, P.data(), X.data(),
                            acc + grp * g.Cin_g * K, K, t > t_lo);
      }
    }
  });

  // Sum the partials in chunk order, writing the weight layout (Cin, Cout_g, kH, kW).
  parallel_for_work(0, wsize, wsize * chunks, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      acc_t s = partial[e];
      for (int64_t chunk = 1; chunk < chunks; ++chunk) s += partial[chunk * wsize + e];
      int64_t dst = e;
      if (channels_last) {  // e = (cin, (kh, kw), co) -> (cin, co, (kh, kw))
        const int64_t co = e % g.Cout_g, khw = (e / g.Cout_g) % kk, cin = e / K;
        dst = (cin * g.Cout_g + co) * kk + khw;
      }
      gwp[dst] = static_cast<scalar_t>(s);
    }
  });
}

// Note [direct tiles] for grad_weight (float32, AVX-512 or AVX2): no patch matrix. The pixels are cut into
// chunks of input rows of one image, or of one row's columns (~512 KiB of x and grad_output with
// them, so a chunk stays in L2 while every tile of the thread reads it; weight_chunks); each thread
// owns a range of (tap, group, block of 6 input channels) (for_each_weight_tap) and, chunk after
// chunk in order, adds the chunk's pixels into its tiles of gwt[group][tap][ci][co] (zeroed
// first). Every element is summed by one thread in one order (chunks, rows, pixels ascending):
// the same bits for any thread count.
// NCHW chunks go through thread-local channels_last copies. Only real (input pixel, tap) pairs are
// multiplied: NaN/Inf land where the definition puts them.
void backward_weight_direct_tiles(const Tensor& go, const Tensor& x, Tensor& gw, const ConvTranspose2dGeometry& g,
                                  bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const int64_t KK = g.kH * g.kW;
  const int64_t ci_blocks = ceil_div(g.Cin_g, int64_t(kWeightTileRows));
  Tensor gwt = at::zeros({g.groups * KK * g.Cin_g * g.Cout_g}, go.options());
  float* gwtp = gwt.mutable_data_ptr<float>();
  const WeightChunks ch = weight_chunks(g, g.N);
  const int64_t chunk_rows = ch.rows, chunk_images = ch.images, row_chunks = ch.row_chunks,
                image_chunks = ch.image_chunks, chunk_cols = ch.cols, col_chunks = ch.col_chunks;
  // NCHW: small images (DCGAN's 4x4 and 8x8: rows of 4-8 pixels) through one channels_last copy
  // of x and grad_output, shared by the threads; the others chunk by chunk into each thread's own
  // copies (no tensor-sized copies: measured faster on 3x3 s1 64x64 and 16x16 images).
  const bool shared = !channels_last && g.H * g.W < 256;
  const Scratch<float> xcl(ScratchSlot::kLayoutIn, shared ? g.N * g.H * g.W * g.Cin : 0);
  const Scratch<float> gocl(ScratchSlot::kLayoutOut, shared ? g.N * g.Ho * g.Wo * g.Cout : 0);
  if (shared) {
    planes_to_pixels(x.const_data_ptr<float>(), xcl.data(), g.N, g.Cin, g.H * g.W);
    planes_to_pixels(go.const_data_ptr<float>(), gocl.data(), g.N, g.Cout, g.Ho * g.Wo);
  }
  const bool in_place = channels_last || shared;  // xp and gop channels_last: rows read where they are
  const float* xp = shared ? xcl.data() : x.const_data_ptr<float>();
  const float* gop = shared ? gocl.data() : go.const_data_ptr<float>();
  const int64_t a_step = g.Cin, b_step = g.sw * g.Cout;
  // Segments of at most 64 pixels: a group's grad_output columns stay in L1 (add_weight_segments).
  constexpr int64_t kSegmentPixels = 64;
  const int64_t pieces = ceil_div(chunk_cols, kSegmentPixels);
  const int64_t units = g.groups * ci_blocks;  // per tap (for_each_weight_tap)
  at::parallel_for(0, KK * units, 1, [&](int64_t begin, int64_t end) {
    std::vector<WeightSegment> segs(chunk_rows * chunk_images * pieces);
    std::vector<float> xbuf, gobuf;
    for (int64_t chunk = 0; chunk < image_chunks * row_chunks * col_chunks; ++chunk) {
      const int64_t rc = chunk / col_chunks;
      const int64_t n0 = rc / row_chunks * chunk_images, n1 = std::min(g.N, n0 + chunk_images);
      const int64_t ih0 = rc % row_chunks * chunk_rows, ih1 = std::min(g.H, ih0 + chunk_rows);
      const int64_t iw0 = chunk % col_chunks * chunk_cols, iw1 = std::min(g.W, iw0 + chunk_cols);
      // grad_output rows [oh_lo, oh_hi) and columns [ow_lo, ow_hi) the chunk reaches, in each of its images
      const int64_t oh_lo = std::max<int64_t>(0, ih0 * g.sh - g.ph);
      const int64_t oh_hi = std::min<int64_t>(g.Ho, (ih1 - 1) * g.sh - g.ph + (g.kH - 1) * g.dh + 1);
      const int64_t ow_lo = std::max<int64_t>(0, iw0 * g.sw - g.pw);
      const int64_t ow_hi = std::min<int64_t>(g.Wo, (iw1 - 1) * g.sw - g.pw + (g.kW - 1) * g.dw + 1);
      if (oh_lo >= oh_hi || ow_lo >= ow_hi) continue;
      const int64_t xrows_n = ih1 - ih0, gorows_n = oh_hi - oh_lo, xcols_n = iw1 - iw0, gocols_n = ow_hi - ow_lo;
      // x's pixel (ih, iw) of image n at xpix(n, ih, iw), grad_output's (oh, ow) at gopix(n, oh, ow):
      // channels_last in place, or NCHW copied (the chunk's columns only).
      const auto xpix = [&](int64_t n, int64_t ih, int64_t iw) {
        return in_place ? xp + ((n * g.H + ih) * g.W + iw) * g.Cin
                        : xbuf.data() + (((n - n0) * xrows_n + ih - ih0) * xcols_n + iw - iw0) * g.Cin;
      };
      const auto gopix = [&](int64_t n, int64_t oh, int64_t ow) {
        return in_place ? gop + ((n * g.Ho + oh) * g.Wo + ow) * g.Cout
                        : gobuf.data() + (((n - n0) * gorows_n + oh - oh_lo) * gocols_n + ow - ow_lo) * g.Cout;
      };
      if (!in_place) {
        xbuf.resize((n1 - n0) * xrows_n * xcols_n * g.Cin);
        gobuf.resize((n1 - n0) * gorows_n * gocols_n * g.Cout);
        for (int64_t n = n0; n < n1; ++n) {
          for (int64_t ih = ih0; ih < ih1; ++ih)
            transpose_block(xp + n * g.Cin * g.H * g.W + ih * g.W + iw0, g.H * g.W, const_cast<float*>(xpix(n, ih, iw0)),
                            g.Cin, xcols_n, g.Cin);
          for (int64_t oh = oh_lo; oh < oh_hi; ++oh)
            transpose_block(gop + n * g.Cout * g.Ho * g.Wo + oh * g.Wo + ow_lo, g.Ho * g.Wo,
                            const_cast<float*>(gopix(n, oh, ow_lo)), g.Cout, gocols_n, g.Cout);
        }
      }
      for_each_weight_tap(begin, end, units, [&](int64_t tap, int64_t first, int64_t last) {
        // The chunk's segments for tap (kh, kw): input row ih's columns whose output column is inside.
        const int64_t kh = tap / g.kW, kw = tap % g.kW;
        const int64_t off_w = kw * g.dw - g.pw;
        const IndexRange iws = indices_inside(g.W, g.sw, off_w, g.Wo);
        const int64_t lo = std::max(iws.lo, iw0), hi = std::min(iws.hi, iw1);
        if (lo >= hi) return;
        int nsegs = 0;
        for (int64_t n = n0; n < n1; ++n)
          for (int64_t ih = ih0; ih < ih1; ++ih) {
            const int64_t oh = output_of_tap(ih, kh, g.sh, g.ph, g.dh);
            if (oh < 0 || oh >= g.Ho) continue;
            for (int64_t c0 = lo; c0 < hi; c0 += kSegmentPixels)
              segs[nsegs++] = WeightSegment{xpix(n, ih, c0), gopix(n, oh, c0 * g.sw + off_w),
                                            std::min(kSegmentPixels, hi - c0)};
          }
        add_weight_segments(segs.data(), nsegs, tap, first, last, g, KK, a_step, b_step, gwtp);
      });
    }
  });
  weight_tiles_to_weight(gwtp, gw.mutable_data_ptr<float>(), g, KK);
#else
  (void)go, (void)x, (void)gw, (void)g, (void)channels_last;
  TORCH_INTERNAL_ASSERT(false, "direct tiles need AVX-512 or AVX2");
#endif
}

// One input channel per group: each weight element is a full reduction, computed by one thread.
template <typename scalar_t>
void backward_weight_depthwise(const Tensor& go, const Tensor& x, Tensor& gw,
                               const ConvTranspose2dGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* gop = go.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* gwp = gw.mutable_data_ptr<scalar_t>();
  parallel_for_work(0, g.Cout, g.multiply_adds(), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.kH * g.kW);
    for (int64_t c = begin; c < end; ++c) {
      const int64_t grp = c / g.Cout_g;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t n = 0; n < g.N; ++n) {
        const scalar_t* xplane = xp + (n * g.Cin + grp) * g.H * g.W;
        const scalar_t* gplane = gop + (n * g.Cout + c) * g.Ho * g.Wo;
        for (int64_t ih = 0; ih < g.H; ++ih)
          for (int64_t kh = 0; kh < g.kH; ++kh) {
            const int64_t oh = ih * g.sh - g.ph + kh * g.dh;
            if (oh < 0 || oh >= g.Ho) continue;
            for (int64_t kw = 0; kw < g.kW; ++kw) {
              const int64_t ow_base = kw * g.dw - g.pw;
              const IndexRange iws = indices_inside(g.W, g.sw, ow_base, g.Wo);
              const scalar_t* xrow = xplane + ih * g.W;
              const scalar_t* grow = gplane + oh * g.Wo + ow_base;
              acc_t s = 0;
              for (int64_t iw = iws.lo; iw < iws.hi; ++iw)
                s += static_cast<acc_t>(xrow[iw]) * static_cast<acc_t>(grow[iw * g.sw]);
              acc[kh * g.kW + kw] += s;
            }
          }
      }
      for (int64_t i = 0; i < g.kH * g.kW; ++i) gwp[c * g.kH * g.kW + i] = static_cast<scalar_t>(acc[i]);
    }
  });
}

// Note [Winograd rows' grad_weight]: for the layers of Note [Winograd rows] (1 x 2s, stride
// (1, s), NCHW), tap r + s a (a = 0, 1) of grad_weight is G_a = sum over the input pixels m of
// x[m] go_r[m + a]^T, go_r[j] = grad_output[s j + r - pw] (0 outside). Over blocks of 3 pixels this
// is F(2, 3) with x as the filter: x's 3 pixels through G (x0, (x0 + x1 + x2) / 2,
// (x0 - x1 + x2) / 2, x2), go_r's 4 through B^T (d0 - d2, d1 + d2, d2 - d1, d1 - d3), one GEMM per
// point e of Cin x s Cout summed over all blocks (K), and A^T at the end (G_0 = M_0 + M_1 + M_2,
// G_1 = M_1 - M_2 - M_3): 4 multiply-adds where the direct sum takes 6. The blocks are transformed
// chunk by chunk into the calling thread's scratch (fixed chunks of K, at most ~16 MiB together:
// no per-call tensor-sized buffers to fault in), each chunk's GEMMs accumulate into M in fixed
// blocks of input channels, one single-threaded call each (Note [float32 GEMM engine]): the same
// bits for any thread count. Finite inputs only: a transform mixes the pixels of a block, so an Inf
// would turn into NaN where the definition has Inf. Each row segment a transform read is checked
// right after, from cache (no scans of x and grad_output, 33 MB each at 4x256x8000): false when
// one holds Inf or NaN, grad_weight then to be computed on another path.
bool backward_weight_winograd_rows(const Tensor& go, const Tensor& x, Tensor& gw, const ConvTranspose2dGeometry& g) {
  const int64_t s = g.sw, rows = g.N * g.H;  // every (image, row) of x is one sequence of pixels
  const int64_t Cin = g.Cin, Cout = g.Cout, sC = s * Cout, W = g.W, Wo = g.Wo, pw = g.pw;
  const int64_t blocks = ceil_div(W, int64_t(3)), K = rows * blocks;
  // Chunks of K: 4 points of Cin + s Cout values per block, in at most 16 MiB of scratch.
  const int64_t chunk = std::max<int64_t>(64, (int64_t(16) << 20) / (4 * (Cin + sC) * int64_t(sizeof(float))));
  const int64_t kc_max = std::min(K, chunk / 16 * 16);
  const Scratch<float> xt(ScratchSlot::kLayoutIn, 4 * Cin * kc_max, size_t(17) << 20);
  const Scratch<float> gt(ScratchSlot::kLayoutOut, 4 * sC * kc_max, size_t(17) << 20);
  Tensor m = at::empty({4, Cin, sC}, go.options());
  float* mp = m.mutable_data_ptr<float>();
  const float* xp = x.const_data_ptr<float>();
  const float* gop = go.const_data_ptr<float>();
  const int64_t cb = std::min<int64_t>(Cin, 128);  // the GEMMs' blocks: 4 points x blocks of input channels
  const int64_t ci_blocks = ceil_div(Cin, cb);
  // go_r's blocks lie inside grad_output for b in [b_in_lo, b_in_hi): s (3 b) - pw >= 0 and s (3 b + 3) + s - 1 - pw < Wo.
  const int64_t last = Wo - 4 * s + pw;
  const int64_t b_in_lo = ceil_div(pw, 3 * s), b_in_hi = std::max<int64_t>(b_in_lo, last >= 0 ? last / (3 * s) + 1 : 0);
  std::atomic<bool> nonfinite{false};
  for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
    const int64_t kc = std::min(kc_max, K - k0);
    float* xtp = xt.data();
    float* gtp = gt.data();
    // x's blocks through G: row ci of point e at xtp[(e * Cin + ci) * kc].
    at::parallel_for(0, Cin, 16, [&](int64_t c0, int64_t c1) {
      NonfiniteWatch<float> watch{&nonfinite};
      for (int64_t ci = c0; ci < c1; ++ci)
        for (int64_t k = k0; k < k0 + kc;) {
          const int64_t row = k / blocks, b0 = k % blocks, b1 = std::min(blocks, b0 + (k0 + kc - k));
          const float* xr = xp + ((row / g.H * Cin + ci) * g.H + row % g.H) * W;
          const int64_t off = (ci * kc) + (k - k0) - b0;  // point e's value of block b at xtp[e Cin kc + off + b]
          float* __restrict t0 = xtp + off;
          float* __restrict t1 = xtp + Cin * kc + off;
          float* __restrict t2 = xtp + 2 * Cin * kc + off;
          float* __restrict t3 = xtp + 3 * Cin * kc + off;
          const auto put = [&](int64_t b, float x0, float x1, float x2) {
            t0[b] = x0;
            t1[b] = 0.5f * (x0 + x1 + x2);
            t2[b] = 0.5f * (x0 - x1 + x2);
            t3[b] = x2;
          };
          const int64_t full = std::min(b1, W / 3);  // blocks of 3 pixels inside the row: no bounds checks
          for (int64_t b = b0; b < full; ++b) put(b, xr[3 * b], xr[3 * b + 1], xr[3 * b + 2]);
          for (int64_t b = std::max(b0, full); b < b1; ++b)
            put(b, xr[3 * b], 3 * b + 1 < W ? xr[3 * b + 1] : 0.f, 3 * b + 2 < W ? xr[3 * b + 2] : 0.f);
          watch.check(xr + 3 * b0, std::min(3 * b1, W) - 3 * b0);
          k += b1 - b0;
        }
      watch.flush();
    });
    // grad_output's blocks of each phase through B^T: row r Cout + co of point e at gtp[(e * sC + r Cout + co) * kc].
    at::parallel_for(0, Cout, 4, [&](int64_t c0, int64_t c1) {
      NonfiniteWatch<float> watch{&nonfinite};
      for (int64_t co = c0; co < c1; ++co)
        for (int64_t k = k0; k < k0 + kc;) {
          const int64_t row = k / blocks, b0 = k % blocks, b1 = std::min(blocks, b0 + (k0 + kc - k));
          const float* gr = gop + ((row / g.H * Cout + co) * g.Ho + row % g.H) * Wo;
          const int64_t off = co * kc + (k - k0) - b0;
          const int64_t lo = std::clamp(b_in_lo, b0, b1), hi = std::clamp(b_in_hi, lo, b1);
          // Phase by phase: 4 output streams at a time (all 4 s at once thrashed L1 at s = 8).
          for (int64_t r = 0; r < s; ++r) {
            float* __restrict q0 = gtp + r * Cout * kc + off;
            float* __restrict q1 = q0 + sC * kc;
            float* __restrict q2 = q0 + 2 * sC * kc;
            float* __restrict q3 = q0 + 3 * sC * kc;
            for (int64_t b = b0; b < b1; ++b) {
              float d[4];
              if (b >= lo && b < hi) {
                const float* wnd = gr + 3 * s * b - pw + r;
                for (int t = 0; t < 4; ++t) d[t] = wnd[s * t];
              } else {
                for (int t = 0; t < 4; ++t) {
                  const int64_t ow = 3 * s * b - pw + s * t + r;
                  d[t] = ow >= 0 && ow < Wo ? gr[ow] : 0.f;
                }
              }
              q0[b] = d[0] - d[2];
              q1[b] = d[1] + d[2];
              q2[b] = d[2] - d[1];
              q3[b] = d[1] - d[3];
            }
          }
          // The pixels blocks b0 .. b1 - 1 read: s (3 b) - pw + s t + r, t < 4, r < s.
          const int64_t px_lo = std::max<int64_t>(3 * s * b0 - pw, 0), px_hi = std::min(3 * s * b1 + s - pw, Wo);
          if (px_hi > px_lo) watch.check(gr + px_lo, px_hi - px_lo);
          k += b1 - b0;
        }
      watch.flush();
    });
    if (nonfinite.load()) return false;
    // M_e[ci block] (+)= xt_e[ci block] gt_e^T, a fixed sequence of single-threaded calls per block.
    at::parallel_for(0, 4 * ci_blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t e = task / ci_blocks, ci0 = task % ci_blocks * cb, cn = std::min(cb, Cin - ci0);
        gemm<float>(cn, sC, kc, MatRef<float>{xtp + (e * Cin + ci0) * kc, kc, false},
                    MatRef<float>{gtp + e * sC * kc, kc, true}, mp + (e * Cin + ci0) * sC, sC, k0 > 0);
      }
    });
  }
  // A^T: tap r of G_0 and r + s of G_1, into grad_weight (Cin, Cout, 1, 2s).
  float* gwp = gw.mutable_data_ptr<float>();
  const int64_t plane = Cin * sC;
  at::parallel_for(0, Cin, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t ci = c0; ci < c1; ++ci)
      for (int64_t r = 0; r < s; ++r)
        for (int64_t co = 0; co < Cout; ++co) {
          const float* q = mp + ci * sC + r * Cout + co;
          float* out = gwp + (ci * Cout + co) * 2 * s;
          out[r] = q[0] + q[plane] + q[2 * plane];
          out[r + s] = q[plane] - q[2 * plane] - q[3 * plane];
        }
  });
  return true;
}

}  // namespace

// Entry points (cpu/kernels.h), compiled once per CPU capability (cpu/capability/).
Tensor conv_transpose2d_backward_weight_cpu(const Tensor& grad_output, const Tensor& input,
                                            at::IntArrayRef kernel_hw, at::IntArrayRef stride,
                                            at::IntArrayRef padding, int64_t groups,
                                            at::IntArrayRef dilation) {
  const ConvTranspose2dGeometry g = check_backward_weight_args(
      grad_output, input, kernel_hw, stride, padding, groups, dilation);
  const std::vector<int64_t> wsizes{g.Cin, g.Cout_g, g.kH, g.kW};
  Tensor gw = at::empty(wsizes, grad_output.options());
  if (gw.numel() == 0) return gw;
  if (g.N == 0) return gw.zero_();
  if (g.Cin_g == 1) {
    const Tensor go = grad_output.contiguous(), x = input.contiguous();
    TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "conv_transpose2d_backward_weight_depthwise", [&] {
      backward_weight_depthwise<scalar_t>(go, x, gw, g);
    });
    return gw;
  }
  const at::MemoryFormat fmt = conv_memory_format(grad_output, input);
  const Tensor go = grad_output.contiguous(fmt), x = input.contiguous(fmt);
  if (use_cells(g, fmt == at::MemoryFormat::ChannelsLast) && all_finite_any(go) && all_finite_any(x)) {
    TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "conv_transpose2d_backward_weight_cells", [&] {
      backward_weight_cells<scalar_t>(go, x, gw, g);
    });
    return gw;
  }
  if (go.scalar_type() == at::kFloat &&
      use_winograd_rows(g, fmt == at::MemoryFormat::ChannelsLast, DirectPass::grad_weight) &&
      backward_weight_winograd_rows(go, x, gw, g))  // Note [Winograd rows' grad_weight]; false: Inf/NaN
    return gw;
  const char* force = std::getenv("TCONV_CONV_BACKWARD");
  if (go.scalar_type() == at::kFloat &&
      use_direct_tiles(g, DirectPass::grad_weight, gemm_alternative(fmt == at::MemoryFormat::ChannelsLast)) &&
      weight_tiles_take(g) &&
      !(force && std::strcmp(force, "patch") == 0)) {
    backward_weight_direct_tiles(go, x, gw, g, fmt == at::MemoryFormat::ChannelsLast);  // Note [direct tiles]
    return gw;
  }
  TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "conv_transpose2d_backward_weight", [&] {
    backward_weight_dense<scalar_t>(go, x, gw, g, fmt == at::MemoryFormat::ChannelsLast);
  });
  return gw;
}

// ---- grad_bias ---------------------------------------------------------------------------------

Tensor conv_transpose2d_backward_bias_cpu(const Tensor& grad_output) {
  check_backward_bias_args(grad_output);
  const int64_t N = grad_output.size(0), C = grad_output.size(1);
  const int64_t HW = grad_output.size(2) * grad_output.size(3);
  Tensor gb = at::empty({C}, grad_output.options());
  const bool channels_last = grad_output.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const Tensor go = grad_output.contiguous(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "conv_transpose2d_backward_bias", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* p = go.const_data_ptr<scalar_t>();
    scalar_t* out = gb.mutable_data_ptr<scalar_t>();
    if (!channels_last) {
      parallel_for_work(0, C, N * C * HW, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          acc_t total = 0;
          for (int64_t n = 0; n < N; ++n) {
            // 16 independent lanes: vectorisable, and a fixed order.
            acc_t lanes[16] = {};
            const scalar_t* plane = p + (n * C + c) * HW;
            int64_t i = 0;
            for (; i + 16 <= HW; i += 16)
              for (int l = 0; l < 16; ++l) lanes[l] += static_cast<acc_t>(plane[i + l]);
            for (; i < HW; ++i) lanes[0] += static_cast<acc_t>(plane[i]);
            for (int l = 0; l < 16; ++l) total += lanes[l];
          }
          out[c] = static_cast<scalar_t>(total);
        }
  });
    } else {
      // Rows of (N*H*W) x C: each thread owns a block of channels and walks all rows in order.
      const int64_t rows = N * HW;
      parallel_for_work(0, C, N * C * HW, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> acc(end - begin, acc_t(0));
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = begin; c < end; ++c) acc[c - begin] += static_cast<acc_t>(p[r * C + c]);
        for (int64_t c = begin; c < end; ++c) out[c] = static_cast<scalar_t>(acc[c - begin]);
      });
    }
  });
  return gb;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
