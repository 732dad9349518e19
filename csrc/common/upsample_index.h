// Source-index and weight math of bilinear / bicubic resampling, shared by every device.
//
// Written once after ATen's UpSample.h and UpSampleKernel.cpp so that tconv matches PyTorch to
// float rounding: scales, source indices and weights are computed in acc_t (float for
// float/half/bfloat16, double for double), exactly where PyTorch computes them.
//
// One axis is resampled separably: output index o reads `count` consecutive input indices from
// `start` with weights w[0..count). Repeated (clamped) border taps are merged into one weight.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace tconv {

enum class UpsampleMode : int { Bilinear = 0, Bicubic = 1 };

// Taps of the plain filters: bilinear reads 2 inputs per output, bicubic 4.
TCONV_HOST_DEVICE int interp_size(UpsampleMode mode) { return mode == UpsampleMode::Bilinear ? 2 : 4; }

TCONV_HOST_DEVICE int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
TCONV_HOST_DEVICE int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

// PyTorch's compute_scales_value: the user's scale_factor when given (> 0), else in / out.
// `scale` <= 0 means "not given" (PyTorch treats non-positive scales the same way).
template <typename acc_t>
TCONV_HOST_DEVICE acc_t compute_scales_value(double scale, int64_t in, int64_t out) {
  return scale > 0. ? static_cast<acc_t>(1.0 / scale) : static_cast<acc_t>(in) / out;
}

// PyTorch's area_pixel_compute_scale: input pixels per output pixel.
template <typename acc_t>
TCONV_HOST_DEVICE acc_t area_pixel_compute_scale(int64_t in, int64_t out, bool align_corners,
                                                 double scale) {
  if (align_corners) return out > 1 ? static_cast<acc_t>(in - 1) / (out - 1) : acc_t(0);
  return compute_scales_value<acc_t>(scale, in, out);
}

// PyTorch's area_pixel_compute_source_index: where output o samples the input. Linear clamps
// negative positions to 0; cubic keeps them and clamps its taps instead.
template <typename acc_t>
TCONV_HOST_DEVICE acc_t area_pixel_compute_source_index(acc_t scale, int64_t o, bool align_corners,
                                                        bool cubic) {
  if (align_corners) return scale * o;
  const acc_t src = scale * (o + acc_t(0.5)) - acc_t(0.5);
  return (!cubic && src < acc_t(0)) ? acc_t(0) : src;
}

// PyTorch's guard_index_and_lambda: integer part (at most in - 1) and fraction in [0, 1].
template <typename acc_t>
TCONV_HOST_DEVICE void guard_index_and_lambda(acc_t real_index, int64_t in, int64_t& index,
                                              acc_t& lambda) {
  index = min_i64(static_cast<int64_t>(std::floor(real_index)), in - 1);
  const acc_t frac = real_index - index;
  lambda = frac < acc_t(0) ? acc_t(0) : (frac > acc_t(1) ? acc_t(1) : frac);
}

// Keys' cubic convolution kernel, |x| <= 1 and 1 < |x| < 2 pieces.
template <typename acc_t>
TCONV_HOST_DEVICE acc_t cubic_convolution1(acc_t x, acc_t A) {
  return ((A + 2) * x - (A + 3)) * x * x + 1;
}
template <typename acc_t>
TCONV_HOST_DEVICE acc_t cubic_convolution2(acc_t x, acc_t A) {
  return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

// The 4 bicubic weights at fraction t, A = -0.75 like PyTorch (and OpenCV).
template <typename acc_t>
TCONV_HOST_DEVICE void cubic_coefficients(acc_t coeffs[4], acc_t t) {
  const acc_t A = acc_t(-0.75);
  coeffs[0] = cubic_convolution2<acc_t>(t + acc_t(1), A);
  coeffs[1] = cubic_convolution1<acc_t>(t, A);
  coeffs[2] = cubic_convolution1<acc_t>(acc_t(1) - t, A);
  coeffs[3] = cubic_convolution2<acc_t>(acc_t(2) - t, A);
}

// Antialias filters: the triangle, and Keys' cubic with a = -0.5 (PyTorch follows PIL here).
template <typename acc_t>
TCONV_HOST_DEVICE acc_t aa_filter(UpsampleMode mode, acc_t x) {
  x = x < acc_t(0) ? -x : x;
  if (mode == UpsampleMode::Bilinear) return x < acc_t(1) ? acc_t(1) - x : acc_t(0);
  const acc_t a = acc_t(-0.5);
  if (x < acc_t(1)) return cubic_convolution1<acc_t>(x, a);
  if (x < acc_t(2)) return cubic_convolution2<acc_t>(x, a);
  return acc_t(0);
}

// Antialias filter half-width in input pixels: the filter is stretched by the downscale factor.
template <typename acc_t>
TCONV_HOST_DEVICE acc_t aa_support(UpsampleMode mode, acc_t scale) {
  const acc_t half = interp_size(mode) * acc_t(0.5);
  return scale >= acc_t(1) ? half * scale : half;
}

// Most taps one output can read on an axis (an upper bound for buffers).
template <typename acc_t>
TCONV_HOST_DEVICE int64_t max_taps(UpsampleMode mode, bool antialias, acc_t scale) {
  if (!antialias) return interp_size(mode);
  return static_cast<int64_t>(std::ceil(aa_support<acc_t>(mode, scale))) * 2 + 1;
}

// Everything one axis needs: sizes, the mode and PyTorch's scale (input pixels per output pixel).
template <typename acc_t>
struct AxisResample {
  int64_t in, out;
  UpsampleMode mode;
  bool align_corners, antialias;
  acc_t scale;
};

template <typename acc_t>
TCONV_HOST_DEVICE AxisResample<acc_t> make_axis_resample(int64_t in, int64_t out, UpsampleMode mode,
                                                         bool align_corners, bool antialias,
                                                         double user_scale) {
  return {in, out, mode, align_corners, antialias,
          area_pixel_compute_scale<acc_t>(in, out, align_corners, user_scale)};
}

// PyTorch's two bilinear taps of output o (compute_source_index_and_lambda): input idx[0] with
// weight 1 - lambda and idx[1] (idx[0] + 1, or idx[0] again at the last pixel) with lambda.
template <typename acc_t>
TCONV_HOST_DEVICE void bilinear_taps(const AxisResample<acc_t>& a, int64_t o, int64_t idx[2],
                                     acc_t w[2]) {
  const acc_t real = area_pixel_compute_source_index<acc_t>(a.scale, o, a.align_corners, false);
  int64_t i0;
  acc_t l1;
  guard_index_and_lambda<acc_t>(real, a.in, i0, l1);
  idx[0] = i0;
  idx[1] = i0 + (i0 < a.in - 1 ? 1 : 0);
  w[0] = acc_t(1) - l1;
  w[1] = l1;
}

// PyTorch's four bicubic taps of output o (compute_indices_weights_cubic): around floor(real),
// each index clamped into [0, in - 1]; repeats are not merged.
template <typename acc_t>
TCONV_HOST_DEVICE void bicubic_taps(const AxisResample<acc_t>& a, int64_t o, int64_t idx[4],
                                    acc_t w[4]) {
  const acc_t real = area_pixel_compute_source_index<acc_t>(a.scale, o, a.align_corners, true);
  int64_t i0;
  acc_t t;
  guard_index_and_lambda<acc_t>(real, a.in, i0, t);
  cubic_coefficients<acc_t>(w, t);
  for (int64_t j = 0; j < 4; ++j) idx[j] = max_i64(min_i64(i0 - 1 + j, a.in - 1), 0);
}

// The taps of output o: writes start and w[0..count) (w holds max_taps entries), returns count.
template <typename acc_t>
TCONV_HOST_DEVICE int64_t axis_taps(const AxisResample<acc_t>& a, int64_t o, int64_t& start, acc_t* w) {
  // Equal sizes copy: PyTorch's linear and antialiased kernels special-case this (bicubic doesn't).
  if (a.in == a.out && (a.mode == UpsampleMode::Bilinear || a.antialias)) {
    start = o;
    w[0] = acc_t(1);
    return 1;
  }
  if (a.antialias) {  // PyTorch's _compute_indices_min_size_weights_aa
    const acc_t support = aa_support<acc_t>(a.mode, a.scale);
    const int64_t limit = max_taps<acc_t>(a.mode, true, a.scale);
    const acc_t center = a.scale * (o + acc_t(0.5));
    const acc_t invscale = a.scale >= acc_t(1) ? acc_t(1) / a.scale : acc_t(1);
    const int64_t xmin = max_i64(static_cast<int64_t>(center - support + acc_t(0.5)), 0);
    int64_t xsize = min_i64(static_cast<int64_t>(center + support + acc_t(0.5)), a.in) - xmin;
    xsize = max_i64(min_i64(xsize, limit), 0);
    acc_t total = 0;
    for (int64_t j = 0; j < xsize; ++j) {
      w[j] = aa_filter<acc_t>(a.mode, (j + xmin - center + acc_t(0.5)) * invscale);
      total += w[j];
    }
    if (total != acc_t(0))
      for (int64_t j = 0; j < xsize; ++j) w[j] /= total;
    start = xmin;
    return xsize;
  }
  if (a.mode == UpsampleMode::Bilinear) {
    int64_t idx[2];
    acc_t tw[2];
    bilinear_taps<acc_t>(a, o, idx, tw);
    start = idx[0];
    if (idx[1] != idx[0]) {
      w[0] = tw[0];
      w[1] = tw[1];
      return 2;
    }
    w[0] = tw[0] + tw[1];  // both taps clamp onto the last pixel
    return 1;
  }
  // Bicubic: repeated (clamped) taps merged into one weight.
  int64_t idx[4];
  acc_t c[4];
  bicubic_taps<acc_t>(a, o, idx, c);
  start = idx[0];
  const int64_t last = idx[3];
  for (int64_t j = 0; j <= last - start; ++j) w[j] = acc_t(0);
  for (int64_t j = 0; j < 4; ++j) w[idx[j] - start] += c[j];
  return last - start + 1;
}

}  // namespace tconv
