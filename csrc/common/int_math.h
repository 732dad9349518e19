// Integer division helpers for index and block math, shared by every device.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace tconv {

// ceil(a / b) for a >= 0, b > 0: the number of blocks of b that cover a.
TCONV_HOST_DEVICE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// floor(a / b) for any a, b > 0 (C++ division truncates toward zero).
TCONV_HOST_DEVICE int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace tconv
