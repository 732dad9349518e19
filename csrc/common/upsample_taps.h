// Index math of tconv::upsample_taps2d (host code, for every device): the resize-convolution
// conv2d(interpolate(x, scale_factor=s, mode), w, padding) with its channel mixing done first.
//
// Note [mix first]: bilinear/bicubic upsampling acts on each channel alone, so it commutes with
// the convolution's channel mixing. With one (Cout x Cin) matrix W_a per kernel tap a = (ah, aw),
//   y = sum_a shift_a(Up(W_a x)),
// where Up is the upsampling and shift_a reads the upsampled plane at (Y + ah - top, X + aw -
// left), zero outside it (the convolution's zero padding). So the multiply-adds over channels run
// at the input's resolution, s^2 times fewer than the pair's (one GEMM: the taps m_a = W_a x, in
// tconv/functional.py), and this op does the rest: per output plane, the upsampling of each tap's
// plane at the shifted positions, summed. Edges are exact: Up clamps its source indices at the
// border as PyTorch's interpolate does, and a shifted position outside the upsampled plane reads
// nothing.
//
// Per axis, output coordinate Y reads, for each tap a whose position j = Y + a - pad_lo lies in
// [0, s * in), the resampling taps (i, lambda) of j (PyTorch's bilinear / bicubic source indices
// and weights, common/upsample_index.h; repeated indices merged). `forward` lists them per Y
// (taps in increasing order), `adjoint` the same entries per (a, i) in increasing Y: the gather
// of the backward, a fixed order with no atomics.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/upsample_index.h"

namespace tconv {

// One sparse row list: row r holds entries [ptr[r], ptr[r + 1]) of (tap, index, weight).
template <typename acc_t>
struct TapRows {
  std::vector<int64_t> ptr, tap, index;
  std::vector<acc_t> weight;
};

template <typename acc_t>
struct TapAxis {
  int64_t in = 0, out = 0, k = 0;
  TapRows<acc_t> forward;  // per output coordinate: (tap a, input index i, weight)
  TapRows<acc_t> adjoint;  // per a * in + i: (a, output coordinate, weight), increasing coordinate
};

// The upsampling: nearest (integer factors: source index j / s, as 'nearest' and 'nearest-exact'
// both read for an integer factor), or PyTorch's bilinear / bicubic (align_corners False).
enum class TapMode { Nearest, Bilinear, Bicubic };

inline TapMode upsample_taps_mode(const std::string& mode) {
  TORCH_CHECK(mode == "nearest" || mode == "bilinear" || mode == "bicubic",
              "upsample_taps2d: mode must be 'nearest', 'bilinear' or 'bicubic', got '", mode, "'");
  return mode == "nearest" ? TapMode::Nearest : (mode == "bilinear" ? TapMode::Bilinear : TapMode::Bicubic);
}

// Output length of one axis: the conv2d output over the upsampled length s * in.
inline int64_t upsample_taps_out(int64_t in, int64_t s, int64_t k, int64_t lo, int64_t hi) {
  return s * in + lo + hi - k + 1;
}

template <typename acc_t>
TapAxis<acc_t> upsample_tap_axis(int64_t in, int64_t s, int64_t k, int64_t pad_lo, int64_t pad_hi, TapMode mode) {
  TapAxis<acc_t> t;
  t.in = in;
  t.k = k;
  t.out = upsample_taps_out(in, s, k, pad_lo, pad_hi);
  const int64_t up = s * in;
  // PyTorch's interpolate(scale_factor=s) samples with the user's scale 1 / s.
  const auto axis = make_axis_resample<acc_t>(in, up, mode == TapMode::Bicubic ? UpsampleMode::Bicubic
                                                                             : UpsampleMode::Bilinear,
                                              /*align_corners=*/false, /*antialias=*/false, static_cast<double>(s));
  auto& f = t.forward;
  f.ptr.push_back(0);
  for (int64_t y = 0; y < t.out; ++y) {
    for (int64_t a = 0; a < k; ++a) {
      const int64_t j = y + a - pad_lo;
      if (j < 0 || j >= up) continue;  // the convolution's zero padding
      int64_t idx[4];
      acc_t w[4];
      int64_t n = 2;
      if (mode == TapMode::Nearest) {
        idx[0] = j / s;
        w[0] = acc_t(1);
        n = 1;
      } else if (mode == TapMode::Bilinear) {
        bilinear_taps<acc_t>(axis, j, idx, w);
      } else {
        bicubic_taps<acc_t>(axis, j, idx, w);
        n = 4;
      }
      const size_t first = f.index.size();
      for (int64_t e = 0; e < n; ++e) {
        bool merged = false;
        for (size_t q = first; q < f.index.size(); ++q) {
          if (f.index[q] == idx[e]) {
            f.weight[q] += w[e];
            merged = true;
            break;
          }
        }
        if (!merged) {
          f.tap.push_back(a);
          f.index.push_back(idx[e]);
          f.weight.push_back(w[e]);
        }
      }
    }
    f.ptr.push_back(static_cast<int64_t>(f.index.size()));
  }
  // The adjoint: bucket the entries by (a, i), in increasing output coordinate.
  auto& g = t.adjoint;
  std::vector<int64_t> count(k * in + 1, 0);
  for (size_t q = 0; q < f.index.size(); ++q) ++count[f.tap[q] * in + f.index[q] + 1];
  g.ptr.assign(k * in + 1, 0);
  for (int64_t r = 0; r < k * in; ++r) g.ptr[r + 1] = g.ptr[r] + count[r + 1];
  g.tap.assign(f.index.size(), 0);
  g.index.assign(f.index.size(), 0);
  g.weight.assign(f.index.size(), acc_t(0));
  std::vector<int64_t> fill(g.ptr.begin(), g.ptr.end() - 1);
  for (int64_t y = 0; y < t.out; ++y) {
    for (int64_t q = f.ptr[y]; q < f.ptr[y + 1]; ++q) {
      const int64_t r = f.tap[q] * in + f.index[q];
      g.tap[fill[r]] = f.tap[q];
      g.index[fill[r]] = y;
      g.weight[fill[r]] = f.weight[q];
      ++fill[r];
    }
  }
  return t;
}

// The shapes of one call. taps: (N, kh * kw, C, H, W); output (N, C, Ho, Wo).
struct UpsampleTapsGeometry {
  int64_t N, C, H, W, kh, kw, sh, sw, Ho, Wo;
  int64_t top, bottom, left, right;
};

inline UpsampleTapsGeometry upsample_taps_geometry(c10::IntArrayRef taps_sizes, c10::IntArrayRef kernel,
                                                   c10::IntArrayRef scale, c10::IntArrayRef padding) {
  TORCH_CHECK(kernel.size() == 2 && scale.size() == 2 && padding.size() == 4,
              "upsample_taps2d: kernel_size and scale take 2 values, padding 4 (top, bottom, left, right)");
  TORCH_CHECK(taps_sizes.size() == 5, "upsample_taps2d: taps must be (N, kh * kw, C, H, W), got sizes ",
              taps_sizes);
  TORCH_CHECK(kernel[0] > 0 && kernel[1] > 0 && scale[0] > 0 && scale[1] > 0,
              "upsample_taps2d: kernel_size and scale must be positive, got ", kernel, " and ", scale);
  for (int64_t p : padding) TORCH_CHECK(p >= 0, "upsample_taps2d: negative padding ", padding);
  TORCH_CHECK(taps_sizes[1] == kernel[0] * kernel[1], "upsample_taps2d: taps has ", taps_sizes[1],
              " planes per channel, the kernel ", kernel[0], "x", kernel[1], " has ", kernel[0] * kernel[1], " taps");
  UpsampleTapsGeometry g{taps_sizes[0], taps_sizes[2], taps_sizes[3], taps_sizes[4], kernel[0], kernel[1],
                         scale[0], scale[1], 0, 0, padding[0], padding[1], padding[2], padding[3]};
  TORCH_CHECK(g.H > 0 && g.W > 0, "upsample_taps2d: empty spatial input ", taps_sizes);
  g.Ho = upsample_taps_out(g.H, g.sh, g.kh, g.top, g.bottom);
  g.Wo = upsample_taps_out(g.W, g.sw, g.kw, g.left, g.right);
  TORCH_CHECK(g.Ho > 0 && g.Wo > 0, "upsample_taps2d: the kernel ", kernel, " is larger than the padded ",
              "upsampled input (", g.sh * g.H + g.top + g.bottom, " x ", g.sw * g.W + g.left + g.right, ")");
  return g;
}

// Both axes' tables of one call.
template <typename acc_t>
struct TapAxes {
  TapAxis<acc_t> h, w;
};

template <typename acc_t>
TapAxes<acc_t> upsample_tap_axes(const UpsampleTapsGeometry& g, TapMode mode) {
  return {upsample_tap_axis<acc_t>(g.H, g.sh, g.kh, g.top, g.bottom, mode),
          upsample_tap_axis<acc_t>(g.W, g.sw, g.kw, g.left, g.right, mode)};
}

// The forward op's checks of taps and bias (every device).
inline void check_upsample_taps(const at::Tensor& taps, const std::optional<at::Tensor>& bias,
                                const UpsampleTapsGeometry& g) {
  TORCH_CHECK(taps.is_floating_point(), "upsample_taps2d: expected a floating-point tensor, got ", taps.scalar_type());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == g.C, "upsample_taps2d: bias must have shape (", g.C,
                "), got ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == taps.scalar_type(), "upsample_taps2d: bias dtype ", bias->scalar_type(),
                " differs from the taps' ", taps.scalar_type());
  }
}

// The backward op's geometry from grad_output (N, C, Ho, Wo) and the input's (H, W), checked.
inline UpsampleTapsGeometry upsample_taps_backward_geometry(const at::Tensor& grad_output, c10::IntArrayRef kernel,
                                                            c10::IntArrayRef scale, c10::IntArrayRef padding,
                                                            c10::IntArrayRef input_hw) {
  TORCH_CHECK(grad_output.dim() == 4, "upsample_taps2d_backward: grad_output must be (N, C, Ho, Wo), got ",
              grad_output.sizes());
  TORCH_CHECK(input_hw.size() == 2 && kernel.size() == 2,
              "upsample_taps2d_backward: input_hw and kernel_size take 2 values");
  const UpsampleTapsGeometry g = upsample_taps_geometry(
      {grad_output.size(0), kernel[0] * kernel[1], grad_output.size(1), input_hw[0], input_hw[1]}, kernel, scale,
      padding);
  TORCH_CHECK(grad_output.size(2) == g.Ho && grad_output.size(3) == g.Wo, "upsample_taps2d_backward: grad_output ",
              grad_output.sizes(), " does not match the output size (", g.Ho, ", ", g.Wo, ")");
  return g;
}

}  // namespace tconv
