// The taps of one axis that feed an output of the transposed convolution, as an arithmetic
// progression: no division per tap. Shared index math (TCONV_HOST_DEVICE), used by the CUDA
// depthwise forward.
//
// Writing o + padding = q * stride + r (0 <= r < stride), tap k feeds output o when
// k * dilation = r (mod stride), from input i = q - (k * dilation - r) / stride. With
// gcd = gcd(stride, dilation), that congruence has solutions only when gcd divides r, and then
// they are k0, k0 + dk, k0 + 2 dk, ... with dk = stride / gcd, each step lowering i by
// di = dilation / gcd; k0 = (r / gcd) * inv mod dk, inv the inverse of dilation / gcd mod dk.
// Visiting k = k0, k0 + dk, ... while k < kernel and i >= 0, skipping i >= in, gives exactly the
// taps input_of_tap (conv_transpose2d_shape.h) accepts, in increasing k: the same terms in the
// same order as conv_transpose2d_output_direct.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace tconv {

// Per-axis constants of the progression (built on the host, passed to kernels by value).
template <typename T>
struct TapProgression {
  T stride, dilation, gcd, dk, di, inv;
};

template <typename T>
inline TapProgression<T> make_tap_progression(int64_t stride, int64_t dilation) {
  int64_t a = stride, b = dilation;
  while (b != 0) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  const int64_t gcd = a, dk = stride / gcd, di = dilation / gcd;
  int64_t inv = 0;  // dk == 1: every k is a solution, k0 = 0
  for (int64_t x = 1; x < dk; ++x) {
    if ((di % dk) * x % dk == 1) {
      inv = x;
      break;
    }
  }
  return {T(stride), T(dilation), T(gcd), T(dk), T(di), T(inv)};
}

// The first tap k0 of phase r (0 <= r < stride) and its input offset off (i = q - off);
// false when no tap has phase r.
template <typename T>
TCONV_HOST_DEVICE bool first_tap_of_phase(const TapProgression<T>& p, T r, T& k0, T& off) {
  if (p.gcd != 1 && r % p.gcd != 0) return false;
  const T rg = p.gcd == 1 ? r : r / p.gcd;  // < dk
  if (p.di == 1) {  // dilation divides stride (dilation 1: k0 = r): k0 * dilation = r exactly
    k0 = rg;
    off = 0;
    return true;
  }
  k0 = p.dk == 1 ? T(0) : rg * p.inv % p.dk;
  off = (k0 * p.dilation - r) / p.stride;  // exact: k0 * dilation = r (mod stride)
  return true;
}

}  // namespace tconv
