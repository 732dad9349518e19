// Shape and index math of the 2-D transposed convolution, shared by every device.
//
// One spatial axis: input index i, kernel tap k, output index
//     o = i * stride - padding + k * dilation.
// The kernels are output-stationary: they visit each output once and gather the inputs that feed
// it, so nothing is scattered twice and no atomics are needed. Output o is fed by tap k when
// (o + padding - k * dilation) is a non-negative multiple of stride, from input
//     i = (o + padding - k * dilation) / stride.
// Writing o + padding = q * stride + r (0 <= r < stride), the taps of "phase" r are those with
// k * dilation = r (mod stride); for them i = q - (k * dilation - r) / stride. So the outputs of one
// phase form an ordinary convolution of the input over "cells" q, each cell reading the input at
// q - offset for a few offsets; every phase shares the same cell grid.
#pragma once

#include <cstdint>

#include "common/int_math.h"
#include "common/macros.h"

namespace tconv {

// Output length of one axis (may be <= 0 for invalid arguments; callers check).
TCONV_HOST_DEVICE int64_t conv_transpose_out_size(int64_t in, int64_t kernel, int64_t stride,
                                                  int64_t padding, int64_t output_padding,
                                                  int64_t dilation) {
  return (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1;
}

// Number of distinct input offsets a cell reads on one axis: offsets run over
// 0 .. ((kernel - 1) * dilation) / stride.
TCONV_HOST_DEVICE int64_t cell_offsets(int64_t kernel, int64_t stride, int64_t dilation) {
  return (kernel - 1) * dilation / stride + 1;
}

// The tap of phase r that reads input offset `off` (i = q - off), or -1 when no tap does.
TCONV_HOST_DEVICE int64_t tap_of(int64_t phase, int64_t off, int64_t kernel, int64_t stride,
                                 int64_t dilation) {
  const int64_t kd = off * stride + phase;  // k * dilation
  if (kd % dilation != 0) return -1;
  const int64_t k = kd / dilation;
  return k < kernel ? k : -1;
}

// Cell and phase of output index o: o + padding = cell * stride + phase.
struct CellPhase {
  int64_t cell;
  int64_t phase;
};
TCONV_HOST_DEVICE CellPhase cell_phase_of(int64_t o, int64_t stride, int64_t padding) {
  const int64_t t = o + padding;  // >= 0 because o >= 0 and padding >= 0
  return {t / stride, t % stride};
}

// The indices i of [0, count) with 0 <= i * stride + offset < n, as [lo, hi) with lo <= hi: the
// input columns a tap sends inside the output (stride, offset = k * dilation - padding), the cells
// of a row whose column of one phase exists, the phases of a cell inside the output (stride 1).
struct IndexRange {
  int64_t lo, hi;
};
TCONV_HOST_DEVICE IndexRange indices_inside(int64_t count, int64_t stride, int64_t offset,
                                            int64_t n) {
  const int64_t first = floor_div(-offset + stride - 1, stride);  // i * stride + offset >= 0
  const int64_t end = floor_div(n - 1 - offset, stride) + 1;      // i * stride + offset < n
  const int64_t lo = first < 0 ? 0 : (first > count ? count : first);
  const int64_t hi = end < lo ? lo : (end > count ? count : end);
  return {lo, hi};
}

// Output index of (cell, phase).
TCONV_HOST_DEVICE int64_t output_of(int64_t cell, int64_t phase, int64_t stride, int64_t padding) {
  return cell * stride + phase - padding;
}

// Direct (per-tap) form of o = i * stride - padding + k * dilation, for kernels that loop over taps.
// The input index that output o reads through tap k, or -1 when that tap feeds o from no input.
TCONV_HOST_DEVICE int64_t input_of_tap(int64_t o, int64_t k, int64_t stride, int64_t padding,
                                       int64_t dilation, int64_t in) {
  const int64_t t = o + padding - k * dilation;
  if (t < 0 || t % stride != 0) return -1;
  const int64_t i = t / stride;
  return i < in ? i : -1;
}

// The output index that input i feeds through tap k (may lie outside [0, out); callers check).
TCONV_HOST_DEVICE int64_t output_of_tap(int64_t i, int64_t k, int64_t stride, int64_t padding,
                                        int64_t dilation) {
  return i * stride - padding + k * dilation;
}

}  // namespace tconv
