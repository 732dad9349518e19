// upsample_taps2d's CPU kernel built for the AVX2 capability (see cpu/capability/begin.h).
#if defined(__x86_64__) || defined(_M_X64)
#define TCONV_BUILD_AVX2
#include "cpu/capability/begin.h"
#include "cpu/upsample_taps2d.cpp"  // NOLINT(bugprone-suspicious-include): compiled once per capability
#include "cpu/capability/end.h"
#endif
