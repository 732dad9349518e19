// conv_transpose3d's CPU kernels built for the AVX512 capability (see cpu/capability/begin.h).
#if defined(__x86_64__) || defined(_M_X64)
#define TCONV_BUILD_AVX512
#include "cpu/capability/begin.h"
#include "cpu/conv_transpose3d.cpp"  // NOLINT(bugprone-suspicious-include): compiled once per capability
#include "cpu/capability/end.h"
#endif
