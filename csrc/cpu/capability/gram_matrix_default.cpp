// gram_matrix's CPU kernels built for the DEFAULT capability (see cpu/capability/begin.h).
#define TCONV_BUILD_DEFAULT
#include "cpu/capability/begin.h"
#include "cpu/gram_matrix.cpp"  // NOLINT(bugprone-suspicious-include): compiled once per capability
#include "cpu/capability/end.h"
