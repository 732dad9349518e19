// CPU forward of tconv::conv_transpose3d for a plain float32 call on AVX-512: Note [3-D transposed
// convolution]. Everything else takes the composite over the 2-D op (csrc/conv_transpose_nd.cpp).
//
// Note [3-D transposed convolution]: the depth axis adds taps, not a new kernel. Output slice od
// reads input slice id = q - off through depth tap kd, where od + pd = q * sd + r (depth cell q,
// phase r) and kd * dd = off * sd + r (Note [3-D depth cells]). So
//  - the direct tiles (Note [direct tiles]) sum the taps (kd, kh, kw) of an output row in
//    registers, each tap reading its input row of slice id in place: a tile row's taps are
//    the phase's depth taps times its row taps, and the panels are the 2-D op's with kD * kH rows
//    of taps (the weight (Cin, Cout/g, kD, kH, kW) is (Cin, Cout/g, kD * kH, kW));
//  - Winograd (Note [Winograd]) takes each depth tap of the phase as one more source: the GEMMs
//    sum over (depth tap, ci), T * Cin deep, and each block transforms its T input slices.
// The composite did the same sums through a T-fold copy of the input (the depth cells' stacked
// slices), the 2-D op's channels_last copies of that copy and a copy of its result into depth
// order; here the input is read in place (channels_last_3d) or through one channels_last copy
// (NCDHW), and every output is written once. Fixed order per output (taps (kd, kh, kw), then k):
// the same bits for any thread count. Non-finite input or weight: the composite, whose direct sum
// places NaN/Inf exactly (Note [NaN/Inf]).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_shape.h"
#include "common/int_math.h"
#include "cpu/direct_tiles.h"
#include "cpu/finite.h"
#include "cpu/output_alloc.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "cpu/winograd.h"
#include "cpu/kernels.h"

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

#if defined(TCONV_CPU_AVX512)

// The depth axis of the layer; the (H, W) axes are a 2-D geometry (hw).
struct DepthAxis {
  int64_t D, Do, kD, sd, pd, dd;
  // The depth cells q of phase r (outputs od = q * sd + r - pd inside [0, Do)).
  IndexRange cells(int64_t r) const {
    const int64_t lo = ceil_div(std::max<int64_t>(pd - r, 0), sd);
    const int64_t hi = Do - 1 + pd - r >= 0 ? floor_div(Do - 1 + pd - r, sd) + 1 : 0;
    return {lo, std::max(lo, hi)};
  }
};

// Winograd per depth phase: 3x3x3 stride 1 (one phase, three depth taps) or 4x4x4 stride 2 (two
// phases of two depth taps, each times the 2-D op's four (H, W) phases). x, y channels_last_3d.
void forward_winograd3d(const float* xp, const float* w, const float* b, float* yp, const ConvTranspose2dGeometry& g,
                        const DepthAxis& d) {
  const int64_t K = g.Cin, C = g.Cout, plane = g.H * g.W * K;
  for (int64_t r = 0; r < d.sd; ++r) {
    const IndexRange q = d.cells(r);
    std::vector<int64_t> kds;  // the phase's depth taps; source si reads slice q - (kd - r) / sd
    for (int64_t kd = r; kd < d.kD; kd += d.sd) kds.push_back(kd);
    if (q.hi <= q.lo || kds.empty()) continue;
    const int nsrc = static_cast<int>(kds.size());
    const WinogradDepth depth{q.hi - q.lo, q.lo, d.Do, d.sd, r - d.pd};
    std::vector<WinogradSource> src(nsrc);
    if (g.sh == 1) {
      const WinogradWeights<3> U(nsrc * K, C, [&](int64_t k, int64_t co, int a, int bb) {
        const int64_t kd = kds[k / K], ci = k % K;
        return w[(((ci * C + co) * d.kD + kd) * 3 + 2 - a) * 3 + 2 - bb];
      });
      for (int si = 0; si < nsrc; ++si)
        src[si] = WinogradSource{xp, d.D * plane, g.W * K, K, g.H, g.W, 2 - g.ph, 2 - g.pw, plane, d.D, (kds[si] - r) / d.sd};
      winograd_f2<3>(src.data(), nsrc, g.N, K, U, b, yp, C, WinogradGrid{g.Ho, g.Wo, g.Ho, g.Wo, 0, 0, 1, 1}, depth);
      continue;
    }
    for (int rh = 0; rh < 2; ++rh)
      for (int rw = 0; rw < 2; ++rw) {
        const IndexRange mh = indices_inside(g.qh_lo + g.Qh, 2, rh - g.ph, g.Ho);
        const IndexRange mw = indices_inside(g.qw_lo + g.Qw, 2, rw - g.pw, g.Wo);
        const int64_t m0 = mh.lo, n0 = mw.lo, rows = mh.hi - mh.lo, cols = mw.hi - mw.lo;
        if (rows <= 0 || cols <= 0) continue;
        const WinogradWeights<2> U(nsrc * K, C, [&](int64_t k, int64_t co, int a, int bb) {
          const int64_t kd = kds[k / K], ci = k % K;
          return w[(((ci * C + co) * d.kD + kd) * 4 + rh + 2 - 2 * a) * 4 + rw + 2 - 2 * bb];
        });
        for (int si = 0; si < nsrc; ++si)
          src[si] = WinogradSource{xp, d.D * plane, g.W * K, K, g.H, g.W, 1 - m0, 1 - n0, plane, d.D, (kds[si] - r) / d.sd};
        winograd_f2<2>(src.data(), nsrc, g.N, K, U, b, yp, C,
                       WinogradGrid{rows, cols, g.Ho, g.Wo, 2 * m0 + rh - g.ph, 2 * n0 + rw - g.pw, 2, 2}, depth);
      }
  }
}

// The direct tiles along output rows: per task one row (n, od, oh), group and block of up to 64
// output channels; per column phase one tile row over the taps (kd, kh, kw) that reach it.
// x, y channels_last_3d; hw3 is the 2-D geometry with kD * kH kernel rows (the panels' taps).
void forward_direct_tiles3d(const float* xp, const float* w, const float* b, float* yp,
                            const ConvTranspose2dGeometry& g, const DepthAxis& d) {
  ConvTranspose2dGeometry panels_g = g;
  panels_g.kH = d.kD * g.kH;
  const DirectPanels panels(w, panels_g, false);
  const int64_t cbw_max = DirectPanels::kMaxWidth, nblocks = ceil_div(g.Cout_g, cbw_max);
  const DirectRowShape shape{1, g.Cin, g.W, g.Cin_g};
  const int64_t taps_max = d.kD * g.kH * g.kW;
  const int64_t tasks = g.N * d.Do * g.Ho * g.groups * nblocks;
  parallel_for_work(0, tasks, g.multiply_adds() * d.D * d.kD, [&](int64_t begin, int64_t end) {
    std::vector<float> patch(direct_patch_floats(taps_max, shape));
    std::vector<DirectTap> taps(taps_max);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cb = t % nblocks, grp = t / nblocks % g.groups, row = t / (nblocks * g.groups);
      const int64_t oh = row % g.Ho, od = row / g.Ho % d.Do, n = row / (g.Ho * d.Do);
      const int64_t c0 = cb * cbw_max, width = std::min(cbw_max, g.Cout_g - c0);
      float* out = yp + ((n * d.Do + od) * g.Ho + oh) * g.Wo * g.Cout + grp * g.Cout_g + c0;
      for (int64_t rw = 0; rw < g.sw; ++rw) {
        const int64_t ow0 = ((rw - g.pw) % g.sw + g.sw) % g.sw;  // first output column of phase rw
        if (ow0 >= g.Wo) continue;
        const int64_t count = (g.Wo - ow0 + g.sw - 1) / g.sw;
        int ntaps = 0;
        for (int64_t kd = 0; kd < d.kD; ++kd) {
          const int64_t id = input_of_tap(od, kd, d.sd, d.pd, d.dd, d.D);
          if (id < 0) continue;
          for (int64_t kh = 0; kh < g.kH; ++kh) {
            const int64_t ih = input_of_tap(oh, kh, g.sh, g.ph, g.dh, g.H);
            if (ih < 0) continue;
            const float* xrow = xp + ((n * d.D + id) * g.H + ih) * g.W * g.Cin + grp * g.Cin_g;
            for (int64_t kw = 0; kw < g.kW; ++kw) {
              const int64_t tw = ow0 + g.pw - kw * g.dw;  // a multiple of sw when kw is of phase rw
              if (((tw % g.sw) + g.sw) % g.sw != 0) continue;
              taps[ntaps++] = DirectTap{xrow, tw / g.sw, panels.panel(grp, cb, kd * g.kH + kh, kw)};
            }
          }
        }
        direct_tile_row_of_width(width, taps.data(), ntaps, shape, count, b + grp * g.Cout_g + c0,
                                 out + ow0 * g.Cout, g.sw * g.Cout, patch.data());
      }
    }
  });
}

#endif  // TCONV_CPU_AVX512

}  // namespace

// Entry point (cpu/kernels.h), once per CPU capability: the output, or nothing where Note [3-D
// transposed convolution] does not serve (the caller takes the composite). The caller has checked
// the arguments; channels_last: the output's memory format (the composite's rule).
std::optional<Tensor> conv_transpose3d_forward_cpu(const Tensor& input, const Tensor& weight,
                                                   const std::optional<Tensor>& bias, at::IntArrayRef stride,
                                                   at::IntArrayRef padding, at::IntArrayRef output_padding,
                                                   int64_t groups, at::IntArrayRef dilation, bool channels_last) {
#if defined(TCONV_CPU_AVX512)
  if (input.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat ||
      (bias.has_value() && bias->defined() && bias->scalar_type() != at::kFloat))
    return std::nullopt;
  const int64_t N = input.size(0), Cin = input.size(1), D = input.size(2), H = input.size(3), W = input.size(4);
  const int64_t Cout_g = weight.size(1), kD = weight.size(2), kH = weight.size(3), kW = weight.size(4);
  const DepthAxis d{D, (D - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kD - 1) + output_padding[0] + 1,
                    kD, stride[0], padding[0], dilation[0]};
  const ConvTranspose2dGeometry g = conv_transpose2d_geometry(
      {N, Cin, H, W}, {Cin, Cout_g, kH, kW}, {stride[1], stride[2]}, {padding[1], padding[2]},
      {output_padding[1], output_padding[2]}, groups, {dilation[1], dilation[2]});
  // Winograd: the 2-D rule (use_winograd) on the phase's summed channels (T * Cin) where the depth
  // axis has the layer's (H, W) kernel and stride too.
  ConvTranspose2dGeometry stacked = g;
  stacked.Cin = stacked.Cin_g = ceil_div(kD, d.sd) * Cin;
  const bool winograd = kD == kH && d.sd == g.sh && d.dd == 1 && use_winograd(stacked, DirectPass::forward, true);
  // Direct tiles: every phase with a tap on every axis (kD >= sd), the taps of a tile row within
  // the tiles' limit.
  const bool direct = !winograd && kD >= d.sd && kD * kH * kW <= kDirectMaxTaps &&
                      use_direct_tiles(g, DirectPass::forward) && d.Do > 0;
  if (!winograd && !direct) return std::nullopt;
  const at::MemoryFormat fmt = channels_last ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  const Tensor x = input.contiguous(fmt), w = weight.contiguous();
  if (!(all_finite<float>(x) && all_finite<float>(w))) return std::nullopt;
  std::vector<float> b(g.Cout, 0.f);
  if (bias.has_value() && bias->defined()) {
    const Tensor bc = bias->contiguous();
    std::copy(bc.const_data_ptr<float>(), bc.const_data_ptr<float>() + g.Cout, b.begin());
  }
  Tensor y = empty_output({N, g.Cout, d.Do, g.Ho, g.Wo}, input.options(), fmt);
  if (y.numel() == 0) return y;
  // NCDHW: through channels_last copies of the input and the result (kept scratch).
  const ChannelsLastStaging cl(!channels_last, x.const_data_ptr<float>(), N, Cin, D * H * W,
                               y.mutable_data_ptr<float>(), g.Cout, d.Do * g.Ho * g.Wo);
  if (winograd)
    forward_winograd3d(cl.in(), w.const_data_ptr<float>(), b.data(), cl.out(), g, d);
  else
    forward_direct_tiles3d(cl.in(), w.const_data_ptr<float>(), b.data(), cl.out(), g, d);
  cl.store();
  return y;
#else
  (void)input, (void)weight, (void)bias, (void)stride, (void)padding, (void)output_padding, (void)groups,
      (void)dilation, (void)channels_last;
  return std::nullopt;
#endif
}

}  // namespace tconv::cpu::CPU_CAPABILITY
