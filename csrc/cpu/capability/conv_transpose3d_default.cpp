// conv_transpose3d's CPU kernels built for the DEFAULT capability (see cpu/capability/begin.h).
#define TCONV_BUILD_DEFAULT
#include "cpu/capability/begin.h"
#include "cpu/conv_transpose3d.cpp"  // NOLINT(bugprone-suspicious-include): compiled once per capability
#include "cpu/capability/end.h"
