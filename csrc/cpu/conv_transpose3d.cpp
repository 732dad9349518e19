// CPU kernels of tconv::conv_transpose3d (forward, grad_input, grad_weight) for plain float32 calls
// on AVX-512 or AVX2: Note [3-D transposed convolution]. Everything else takes the composite over the 2-D
// op (csrc/conv_transpose_nd.cpp), whose backward node calls the gradients here.
//
// Note [3-D transposed convolution]: the depth axis adds taps, not a new kernel. Output slice od
// reads input slice id = q - off through depth tap kd, where od + pd = q * sd + r (depth cell q,
// phase r) and kd * dd = off * sd + r (Note [3-D depth cells]). So
//  - the direct tiles (Note [direct tiles]) sum the taps (kd, kh, kw) of an output row in
//    registers, each tap reading its input row of slice id in place: a tile row's taps are
//    the phase's depth taps times its row taps, and the panels are the 2-D op's with kD * kH rows
//    of taps (the weight (Cin, Cout/g, kD, kH, kW) is (Cin, Cout/g, kD * kH, kW));
//  - Winograd (Note [Winograd]) takes each depth tap of the phase as one more source: the GEMMs
//    sum over (depth tap, ci), T * Cin deep, and each block transforms its T input slices
//    (winograd_forward / winograd_grad_input, cpu/winograd.h, with this layer's DepthAxis).
// grad_input is an ordinary strided 3-D convolution of grad_output (the same two kernels, the
// roles of the channels swapped); grad_weight sums the direct weight tiles over the N * D input
// slices, per tap (kd, kh, kw).
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

#if defined(TCONV_CPU_DIRECT_TILES)

// The 2-D geometry whose kernel rows are the layer's (kd, kh) pairs: the direct tiles' panels of
// the weight (Cin, Cout/g, kD, kH, kW) read as (Cin, Cout/g, kD * kH, kW), tap (kd * kH + kh, kw).
ConvTranspose2dGeometry with_depth_taps(ConvTranspose2dGeometry g, const DepthAxis& d) {
  g.kH *= d.kD;
  return g;
}

// The direct tiles along output rows: per task one row (n, od, oh), group and block of up to 64
// output channels; per column phase one tile row over the taps (kd, kh, kw) that reach it.
// x channels_last_3d; the panels are the 2-D ones of kD * kH kernel rows. y channels_last_3d, or
// with y_nchw NCDHW: each task's row of Wo pixels x 64 channels goes through a buffer in L1/L2
// and one transpose into its planes (no result-sized channels_last copy and second pass over it:
// k2 s2 128->64 2x16^3 forward 9.4 -> 7.2-7.8 ms on AMD Zen 4; benchmarks/NOTES.md, session 26).
void forward_direct_tiles3d(const float* xp, const float* w, const float* b, float* yp, bool y_nchw,
                            const ConvTranspose2dGeometry& g, const DepthAxis& d) {
  const DirectPanels panels(w, with_depth_taps(g, d), false);
  const int64_t cbw_max = DirectPanels::kMaxWidth, nblocks = ceil_div(g.Cout_g, cbw_max);
  const DirectRowShape shape{1, g.Cin, g.W, g.Cin_g};
  const int64_t taps_max = d.kD * g.kH * g.kW;
  const int64_t tasks = g.N * d.Do * g.Ho * g.groups * nblocks, plane = d.Do * g.Ho * g.Wo;
  parallel_for_work(0, tasks, g.multiply_adds() * d.D * d.kD, [&](int64_t begin, int64_t end) {
    std::vector<float> patch(direct_patch_floats(taps_max, shape));
    std::vector<DirectTap> taps(taps_max);
    std::vector<float> row_buf(y_nchw ? g.Wo * cbw_max : 0);
    // The row's pixels: channels_last in y, or the buffer's (pixel pitch cbw_max)
    const int64_t pitch = y_nchw ? cbw_max : g.Cout;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cb = t % nblocks, grp = t / nblocks % g.groups, row = t / (nblocks * g.groups);
      const int64_t oh = row % g.Ho, od = row / g.Ho % d.Do, n = row / (g.Ho * d.Do);
      const int64_t c0 = cb * cbw_max, width = std::min(cbw_max, g.Cout_g - c0);
      float* out = y_nchw ? row_buf.data() : yp + ((n * d.Do + od) * g.Ho + oh) * g.Wo * g.Cout + grp * g.Cout_g + c0;
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
                                 out + ow0 * pitch, g.sw * pitch, patch.data());
      }
      if (y_nchw)  // the row's Wo pixels x width channels into planes c of image n
        transpose_block(row_buf.data(), cbw_max,
                        yp + (n * g.Cout + grp * g.Cout_g + c0) * plane + (od * g.Ho + oh) * g.Wo, plane, width, g.Wo);
    }
  });
}

// grad_input by the direct tiles: an ordinary strided convolution of grad_output, per task one
// input row (n, id, ih), group and block of up to 64 input channels, its taps (kd, kh, kw)
// reading grad_output's row (od, oh) at columns sw apart. go and gi channels_last_3d, or with nchw
// both NCDHW: grad_output's rows transposed as the tasks read them (PixelRowCache: the tasks of one
// input row's channel blocks, and of the next row where the taps overlap, share them) and gi
// through a row buffer, as in forward_direct_tiles3d (no grad_output-sized channels_last copy: k2
// s2 128->64 2x16^3 grad_input 9.9-11.1 -> 7.7-7.9 ms on AMD Zen 4, benchmarks/NOTES.md, session 26).
void backward_input_direct_tiles3d(const float* gop, const float* w, float* gip, bool nchw,
                                   const ConvTranspose2dGeometry& g, const DepthAxis& d) {
  const DirectPanels panels(w, with_depth_taps(g, d), true);
  const int64_t cbw_max = DirectPanels::kMaxWidth, nblocks = ceil_div(g.Cin_g, cbw_max);
  const DirectRowShape shape{g.sw, g.Cout, g.Wo, g.Cout_g};
  const int64_t taps_max = d.kD * g.kH * g.kW;
  const int64_t tasks = g.N * d.D * g.H * g.groups * nblocks, plane = d.D * g.H * g.W;
  parallel_for_work(0, tasks, g.multiply_adds() * d.D * d.kD, [&](int64_t begin, int64_t end) {
    std::vector<float> patch(direct_patch_floats(taps_max, shape));
    std::vector<DirectTap> taps(taps_max);
    std::vector<float> row_buf(nchw ? g.W * cbw_max : 0);
    // A task reads kD x kH rows of grad_output; the next input row shares some where kH > sh.
    const int64_t slots = nchw ? d.kD * g.kH * (g.kH > g.sh ? 2 : 1) : 0;
    std::optional<PixelRowCache> go_rows;
    if (nchw) go_rows.emplace(gop, g.Cout, d.Do * g.Ho, g.Wo, slots, g.Wo);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cb = t % nblocks, grp = t / nblocks % g.groups, row = t / (nblocks * g.groups);
      const int64_t ih = row % g.H, id = row / g.H % d.D, n = row / (g.H * d.D);
      const int64_t c0 = cb * cbw_max, width = std::min(cbw_max, g.Cin_g - c0);
      int ntaps = 0;
      for (int64_t kd = 0; kd < d.kD; ++kd) {
        const int64_t od = output_of_tap(id, kd, d.sd, d.pd, d.dd);
        if (od < 0 || od >= d.Do) continue;
        for (int64_t kh = 0; kh < g.kH; ++kh) {
          const int64_t oh = output_of_tap(ih, kh, g.sh, g.ph, g.dh);
          if (oh < 0 || oh >= g.Ho) continue;
          const float* gorow = (nchw ? go_rows->row(n, od * g.Ho + oh, 0, g.Wo)
                                     : gop + ((n * d.Do + od) * g.Ho + oh) * g.Wo * g.Cout) + grp * g.Cout_g;
          for (int64_t kw = 0; kw < g.kW; ++kw)
            taps[ntaps++] =
                DirectTap{gorow, output_of_tap(0, kw, g.sw, g.pw, g.dw), panels.panel(grp, cb, kd * g.kH + kh, kw)};
        }
      }
      if (!nchw) {
        direct_tile_row_of_width(width, taps.data(), ntaps, shape, g.W, kNoBias,
                                 gip + ((n * d.D + id) * g.H + ih) * g.W * g.Cin + grp * g.Cin_g + c0, g.Cin,
                                 patch.data());
        continue;
      }
      direct_tile_row_of_width(width, taps.data(), ntaps, shape, g.W, kNoBias, row_buf.data(), cbw_max, patch.data());
      transpose_block(row_buf.data(), cbw_max,
                      gip + (n * g.Cin + grp * g.Cin_g + c0) * plane + (id * g.H + ih) * g.W, plane, width, g.W);
    }
  });
}

// grad_weight by the direct tiles (Note [direct tiles] for grad_weight, cpu/conv_transpose2d_backward.cpp)
// with the N * D input slices as its images: chunks of ~512 KiB of input rows of one slice or of
// whole slices; per tap (kd, kh, kw) a segment per input row whose slice and row the tap sends
// inside grad_output. Each thread owns a range of (tap, group, 6 input channels)
// (for_each_weight_tap; 64->32 k4 s2 p1 2x16^3: 13.1 -> 12.3 ms on AMD Zen 4 against a split by
// channels) and adds the chunks in order: the same bits for any thread count. x, go
// channels_last_3d; gw (Cin, Cout/g, kD, kH, kW).
void backward_weight_direct_tiles3d(const float* gop, const float* xp, float* gwp, const ConvTranspose2dGeometry& g,
                                    const DepthAxis& d) {
  const int64_t KK = d.kD * g.kH * g.kW;
  const int64_t ci_blocks = ceil_div(g.Cin_g, int64_t(kWeightTileRows));
  std::vector<float> gwt(g.groups * KK * g.Cin_g * g.Cout_g, 0.f);
  const int64_t slices = g.N * d.D;
  const WeightChunks ch = weight_chunks(g, slices);
  const int64_t a_step = g.Cin, b_step = g.sw * g.Cout;
  const int64_t units = g.groups * ci_blocks;  // per tap
  // The segments of one tap in one chunk (of input slices [s0, s1), rows [ih0, ih1)).
  auto segments = [&](int64_t tap, int64_t chunk, WeightSegment* segs) {
    const int64_t s0 = chunk / ch.row_chunks * ch.images, s1 = std::min(slices, s0 + ch.images);
    const int64_t ih0 = chunk % ch.row_chunks * ch.rows, ih1 = std::min(g.H, ih0 + ch.rows);
    const int64_t kd = tap / (g.kH * g.kW), kh = tap / g.kW % g.kH, kw = tap % g.kW;
    const int64_t off_w = kw * g.dw - g.pw;
    const IndexRange iws = indices_inside(g.W, g.sw, off_w, g.Wo);
    int nsegs = 0;
    if (iws.lo >= iws.hi) return nsegs;
    for (int64_t sl = s0; sl < s1; ++sl) {
      const int64_t n = sl / d.D, id = sl % d.D;
      const int64_t od = output_of_tap(id, kd, d.sd, d.pd, d.dd);
      if (od < 0 || od >= d.Do) continue;
      for (int64_t ih = ih0; ih < ih1; ++ih) {
        const int64_t oh = output_of_tap(ih, kh, g.sh, g.ph, g.dh);
        if (oh < 0 || oh >= g.Ho) continue;
        segs[nsegs++] = WeightSegment{xp + ((sl * g.H + ih) * g.W + iws.lo) * g.Cin,
                                      gop + (((n * d.Do + od) * g.Ho + oh) * g.Wo + iws.lo * g.sw + off_w) * g.Cout,
                                      iws.hi - iws.lo};
      }
    }
    return nsegs;
  };
  const int64_t chunks = ch.image_chunks * ch.row_chunks;
  at::parallel_for(0, KK * units, 1, [&](int64_t begin, int64_t end) {
    std::vector<WeightSegment> segs(ch.rows * ch.images);
    for (int64_t chunk = 0; chunk < chunks; ++chunk)
      for_each_weight_tap(begin, end, units, [&](int64_t tap, int64_t first, int64_t last) {
        const int nsegs = segments(tap, chunk, segs.data());
        add_weight_segments(segs.data(), nsegs, tap, first, last, g, KK, a_step, b_step, gwt.data());
      });
  });
  weight_tiles_to_weight(gwt.data(), gwp, g, KK);
}

// The layer's depth axis and the 2-D geometry of its (H, W) axes, from the input's sizes (N,
// Cin, D, H, W), the weight's (Cin, Cout/g, kD, kH, kW) and the output's spatial sizes.
struct Layer3d {
  ConvTranspose2dGeometry g;
  DepthAxis d;
};
Layer3d layer3d(at::IntArrayRef in, at::IntArrayRef w, at::IntArrayRef out_dhw, at::IntArrayRef stride,
                at::IntArrayRef padding, int64_t groups, at::IntArrayRef dilation) {
  int64_t op[3];
  for (int i = 0; i < 3; ++i)  // the output_padding that gives out_dhw
    op[i] = out_dhw[i] - ((in[i + 2] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w[i + 2] - 1) + 1);
  const ConvTranspose2dGeometry g = conv_transpose2d_geometry(
      {in[0], in[1], in[3], in[4]}, {w[0], w[1], w[3], w[4]}, {stride[1], stride[2]}, {padding[1], padding[2]},
      {op[1], op[2]}, groups, {dilation[1], dilation[2]});
  return {g, DepthAxis{in[2], out_dhw[0], w[2], stride[0], padding[0], dilation[0]}};
}

// Winograd's rule (use_winograd, cpu/direct_tiles.h) for a pass of the 3-D layer: the 2-D rule on
// the summed channels of the stacked depth taps (forward: the phase's; grad_input: all kD, each
// the 2-D op's stack), where the depth axis has the (H, W) axes' kernel, stride and no dilation.
bool use_winograd3d(const Layer3d& l, DirectPass pass) {
  ConvTranspose2dGeometry stacked = l.g;
  if (pass == DirectPass::forward) stacked.Cin = stacked.Cin_g = ceil_div(l.d.kD, l.d.sd) * l.g.Cin;
  else stacked.Cout = stacked.Cout_g = l.d.kD * l.g.Cout;
  return l.d.kD == l.g.kH && l.d.sd == l.g.sh && l.d.dd == 1 && use_winograd(stacked, pass, true);
}

// The direct tiles' rule (use_direct_tiles, against the composite) for a pass of the 3-D layer:
// every depth phase with a tap (kD >= sd), a tile row's taps within kDirectMaxTaps; grad_weight's
// rows within its chunk.
bool use_direct_tiles3d(const Layer3d& l, DirectPass pass) {
  const ConvTranspose2dGeometry& g = l.g;
  if (l.d.kD < l.d.sd || l.d.kD * g.kH * g.kW > kDirectMaxTaps) return false;
  return use_direct_tiles(g, pass, DirectAlternative::composite) &&
         (pass != DirectPass::grad_weight || weight_tiles_fit(g));
}

// NCDHW operands as channels_last_3d (the kernels' layout): the tensor's own memory, or a copy in
// the calling thread's kept scratch (`slot`). t is not empty.
class PixelsOf {
 public:
  PixelsOf(const Tensor& t, bool channels_last, ScratchSlot slot)
      : copy_(slot, channels_last ? 0 : t.numel()) {
    if (channels_last) {
      data_ = t.const_data_ptr<float>();
      return;
    }
    planes_to_pixels(t.const_data_ptr<float>(), copy_.data(), t.size(0), t.size(1), t.numel() / (t.size(0) * t.size(1)));
    data_ = copy_.data();
  }
  const float* data() const { return data_; }

 private:
  Scratch<float> copy_;
  const float* data_ = nullptr;
};

#endif  // TCONV_CPU_DIRECT_TILES

}  // namespace

// Entry points (cpu/kernels.h), once per CPU capability: the result, or nothing where Note [3-D
// transposed convolution] does not serve (the caller takes the composite). The caller has checked
// the arguments; channels_last: the memory format of the result (forward, grad_input) and of the
// tensors read.
std::optional<Tensor> conv_transpose3d_forward_cpu(const Tensor& input, const Tensor& weight,
                                                   const std::optional<Tensor>& bias, at::IntArrayRef stride,
                                                   at::IntArrayRef padding, at::IntArrayRef output_padding,
                                                   int64_t groups, at::IntArrayRef dilation, bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const bool has_bias = bias.has_value() && bias->defined();
  if (input.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat ||
      (has_bias && bias->scalar_type() != at::kFloat))
    return std::nullopt;
  int64_t out_dhw[3];
  for (int i = 0; i < 3; ++i)
    out_dhw[i] = (input.size(i + 2) - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.size(i + 2) - 1) +
                 output_padding[i] + 1;
  const Layer3d l = layer3d(input.sizes(), weight.sizes(), out_dhw, stride, padding, groups, dilation);
  const bool winograd = use_winograd3d(l, DirectPass::forward);
  if (!winograd && !use_direct_tiles3d(l, DirectPass::forward)) return std::nullopt;
  const at::MemoryFormat fmt = channels_last ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  const Tensor x = input.contiguous(fmt), w = weight.contiguous();
  if (!(all_finite<float>(x) && all_finite<float>(w))) return std::nullopt;
  const ConvTranspose2dGeometry& g = l.g;
  std::vector<float> b(g.Cout, 0.f);
  if (has_bias) {
    const Tensor bc = bias->contiguous();
    std::copy(bc.const_data_ptr<float>(), bc.const_data_ptr<float>() + g.Cout, b.begin());
  }
  Tensor y = empty_output({g.N, g.Cout, l.d.Do, g.Ho, g.Wo}, input.options(), fmt);
  if (y.numel() == 0) return y;
  if (!winograd) {  // NCDHW: the input through a channels_last copy (kept scratch), the result in place
    const PixelsOf xcl(x, channels_last, ScratchSlot::kLayoutIn);
    forward_direct_tiles3d(xcl.data(), w.const_data_ptr<float>(), b.data(), y.mutable_data_ptr<float>(),
                           !channels_last, g, l.d);
    return y;
  }
  // NCDHW: through channels_last copies of the input and the result (kept scratch).
  const ChannelsLastStaging cl(!channels_last, x.const_data_ptr<float>(), g.N, g.Cin, l.d.D * g.H * g.W,
                               y.mutable_data_ptr<float>(), g.Cout, l.d.Do * g.Ho * g.Wo);
  winograd_forward(cl.in(), w.const_data_ptr<float>(), b.data(), cl.out(), g, l.d);
  cl.store();
  return y;
#else
  (void)input, (void)weight, (void)bias, (void)stride, (void)padding, (void)output_padding, (void)groups,
      (void)dilation, (void)channels_last;
  return std::nullopt;
#endif
}

std::optional<Tensor> conv_transpose3d_backward_input_cpu(const Tensor& grad_output, const Tensor& weight,
                                                          at::IntArrayRef stride, at::IntArrayRef padding,
                                                          int64_t groups, at::IntArrayRef dilation,
                                                          at::IntArrayRef input_sizes, bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  if (grad_output.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat) return std::nullopt;
  const Layer3d l = layer3d(input_sizes, weight.sizes(), grad_output.sizes().slice(2), stride, padding, groups,
                            dilation);
  const bool winograd = use_winograd3d(l, DirectPass::grad_input);
  if (!winograd && !use_direct_tiles3d(l, DirectPass::grad_input)) return std::nullopt;
  const at::MemoryFormat fmt = channels_last ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  const Tensor go = grad_output.contiguous(fmt), w = weight.contiguous();
  // The tiles' border patches multiply zeros by the weight, Winograd mixes a block's values.
  if (!(all_finite<float>(go) && all_finite<float>(w))) return std::nullopt;
  const ConvTranspose2dGeometry& g = l.g;
  Tensor gi = empty_output(input_sizes, go.options(), fmt);
  if (gi.numel() == 0) return gi;
  if (!winograd) {
    backward_input_direct_tiles3d(go.const_data_ptr<float>(), w.const_data_ptr<float>(), gi.mutable_data_ptr<float>(),
                                  !channels_last, g, l.d);
    return gi;
  }
  const ChannelsLastStaging cl(!channels_last, go.const_data_ptr<float>(), g.N, g.Cout, l.d.Do * g.Ho * g.Wo,
                               gi.mutable_data_ptr<float>(), g.Cin, l.d.D * g.H * g.W);
  winograd_grad_input(cl.in(), w.const_data_ptr<float>(), cl.out(), g, l.d);
  cl.store();
  return gi;
#else
  (void)grad_output, (void)weight, (void)stride, (void)padding, (void)groups, (void)dilation, (void)input_sizes,
      (void)channels_last;
  return std::nullopt;
#endif
}

std::optional<Tensor> conv_transpose3d_backward_weight_cpu(const Tensor& grad_output, const Tensor& input,
                                                           at::IntArrayRef weight_sizes, at::IntArrayRef stride,
                                                           at::IntArrayRef padding, int64_t groups,
                                                           at::IntArrayRef dilation, bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  if (grad_output.scalar_type() != at::kFloat || input.scalar_type() != at::kFloat) return std::nullopt;
  const Layer3d l = layer3d(input.sizes(), weight_sizes, grad_output.sizes().slice(2), stride, padding, groups,
                            dilation);
  if (!use_direct_tiles3d(l, DirectPass::grad_weight)) return std::nullopt;
  const at::MemoryFormat fmt = channels_last ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  const Tensor go = grad_output.contiguous(fmt), x = input.contiguous(fmt);
  Tensor gw = at::empty(weight_sizes, go.options());
  if (gw.numel() == 0) return gw;
  if (go.numel() == 0 || x.numel() == 0) return gw.zero_();
  // Only real (input pixel, tap) pairs are multiplied: NaN/Inf land where the definition puts them.
  const PixelsOf xcl(x, channels_last, ScratchSlot::kLayoutIn), gocl(go, channels_last, ScratchSlot::kLayoutOut);
  backward_weight_direct_tiles3d(gocl.data(), xcl.data(), gw.mutable_data_ptr<float>(), l.g, l.d);
  return gw;
#else
  (void)grad_output, (void)input, (void)weight_sizes, (void)stride, (void)padding, (void)groups, (void)dilation,
      (void)channels_last;
  return std::nullopt;
#endif
}

}  // namespace tconv::cpu::CPU_CAPABILITY
