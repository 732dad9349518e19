// tconv::pad_fold2d, shared by the CPU and CUDA kernels: the adjoint of F.pad(y, pad, mode) for
// mode 'reflect', 'replicate' or 'circular'. The input is the padded tensor (N, C, Hp, Wp), the
// output y's size (N, C, Hp - top - bottom, Wp - left - right), and each output element is the sum
// of the padded elements that F.pad copies from it: out[i][j] = sum over padded rows a with
// source(a) == i and columns b with source(b) == j of in[a][b]. Each axis is separate; one output
// row's sources are at most three ranges of padded rows (`FoldSources`), in increasing order,
// which is the fixed order of every sum (deterministic on every device and thread count).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <string>

#include "common/macros.h"

namespace tconv {

enum class PadFoldMode : int { Reflect = 0, Replicate = 1, Circular = 2 };

inline PadFoldMode pad_fold_mode(const std::string& mode) {
  if (mode == "reflect") return PadFoldMode::Reflect;
  if (mode == "replicate") return PadFoldMode::Replicate;
  if (mode == "circular") return PadFoldMode::Circular;
  TORCH_CHECK_VALUE(false, "pad_fold2d: mode must be 'reflect', 'replicate' or 'circular', but got '", mode, "'");
}

// The padded indices a in [0, before + n + after) that F.pad(mode) fills from index i of an axis
// of size n: up to three ranges [lo[k], hi[k]), in increasing order.
struct FoldSources {
  int64_t lo[3], hi[3];
  int count;
};

TCONV_HOST_DEVICE FoldSources fold_sources(int64_t i, int64_t n, int64_t before, int64_t after, PadFoldMode mode) {
  FoldSources s;
  s.count = 0;
  const int64_t center = i + before;
  if (mode == PadFoldMode::Replicate) {
    // edge rows take the whole border (both borders when n == 1)
    s.lo[0] = i == 0 ? 0 : center;
    s.hi[0] = i == n - 1 ? before + n + after : center + 1;
    s.count = 1;
    return s;
  }
  int64_t a[3];
  int k = 0;
  if (mode == PadFoldMode::Reflect) {
    // padded row before - t (t = 1..before) reads row t; row before + n - 1 + t reads row n - 1 - t
    if (i >= 1 && i <= before) a[k++] = before - i;
    a[k++] = center;
    if (i <= n - 2 && n - 1 - i <= after) a[k++] = before + 2 * (n - 1) - i;
  } else {
    // circular: padded row before + t reads row t mod n (|t| < 2n: F.pad requires pad <= n)
    if (i >= n - before) a[k++] = center - n;
    a[k++] = center;
    if (i < after) a[k++] = center + n;
  }
  for (int q = 0; q < k; ++q) {
    s.lo[q] = a[q];
    s.hi[q] = a[q] + 1;
  }
  s.count = k;
  return s;
}

// The inverse of fold_sources: the index i of an axis of size n that F.pad(mode) copies padded
// index a in [0, before + n + after) from.
TCONV_HOST_DEVICE int64_t fold_target(int64_t a, int64_t n, int64_t before, PadFoldMode mode) {
  const int64_t u = a - before;
  if (mode == PadFoldMode::Replicate) return u < 0 ? 0 : (u >= n ? n - 1 : u);
  if (mode == PadFoldMode::Reflect) return u < 0 ? -u : (u >= n ? 2 * (n - 1) - u : u);
  return ((u % n) + n) % n;
}

// The checks F.pad makes of this padding of an output (N, C, out_h, out_w), with its errors.
inline void check_pad_fold(const at::Tensor& input, at::IntArrayRef pad, PadFoldMode mode) {
  TORCH_CHECK(input.dim() == 4, "pad_fold2d: expected a 4-D input, but got ", input.dim(), " dimensions");
  TORCH_CHECK(pad.size() == 4, "pad_fold2d: expected 4 paddings (left, right, top, bottom)");
  for (const auto p : pad) TORCH_CHECK(p >= 0, "pad_fold2d: negative padding ", p);
  const int64_t out_h = input.size(2) - pad[2] - pad[3], out_w = input.size(3) - pad[0] - pad[1];
  TORCH_CHECK(out_h > 0 && out_w > 0, "pad_fold2d: the padding (", pad, ") leaves no output of the input of size ",
              input.sizes());
  if (mode == PadFoldMode::Reflect)
    TORCH_CHECK(pad[0] < out_w && pad[1] < out_w && pad[2] < out_h && pad[3] < out_h,
                "Argument #4: Padding size should be less than the corresponding input dimension, but got: "
                "padding (", pad[0], ", ", pad[1], ") at dimension 3 of input ", out_w, " and padding (", pad[2],
                ", ", pad[3], ") at dimension 2 of input ", out_h);
  if (mode == PadFoldMode::Circular)
    TORCH_CHECK(pad[0] <= out_w && pad[1] <= out_w && pad[2] <= out_h && pad[3] <= out_h,
                "Padding value causes wrapping around more than once.");
}

// pad_fold2d_frame's pieces: center (N, C, H, W), top (N, C, pad top, Wp), bottom (N, C, pad
// bottom, Wp), left (N, C, H, pad left), right (N, C, H, pad right), Wp = left + W + right; the
// padding checks of an output of size (H, W).
inline void check_pad_fold_frame(const at::Tensor& center, const at::Tensor& top, const at::Tensor& bottom,
                                 const at::Tensor& left, const at::Tensor& right, at::IntArrayRef pad,
                                 PadFoldMode mode) {
  TORCH_CHECK(center.dim() == 4, "pad_fold2d_frame: expected a 4-D center, but got ", center.dim(), " dimensions");
  TORCH_CHECK(pad.size() == 4, "pad_fold2d_frame: expected 4 paddings (left, right, top, bottom)");
  const int64_t n = center.size(0), c = center.size(1), h = center.size(2), w = center.size(3);
  const int64_t wp = pad[0] + w + pad[1];
  const auto expect = [&](const at::Tensor& t, const char* name, int64_t rows, int64_t cols) {
    TORCH_CHECK(t.dim() == 4 && t.size(0) == n && t.size(1) == c && t.size(2) == rows && t.size(3) == cols,
                "pad_fold2d_frame: expected ", name, " of size (", n, ", ", c, ", ", rows, ", ", cols, "), but got ",
                t.sizes());
    TORCH_CHECK(t.scalar_type() == center.scalar_type() && t.device() == center.device(),
                "pad_fold2d_frame: ", name, " must have the center's dtype and device");
  };
  for (const auto p : pad) TORCH_CHECK(p >= 0, "pad_fold2d_frame: negative padding ", p);
  expect(top, "top", pad[2], wp);
  expect(bottom, "bottom", pad[3], wp);
  expect(left, "left", h, pad[0]);
  expect(right, "right", h, pad[1]);
  check_pad_fold(at::empty({n, c, h + pad[2] + pad[3], wp}, center.options().device(at::kMeta)), pad, mode);
}

}  // namespace tconv
