// upsample_taps2d's CPU kernel built for the DEFAULT capability (see cpu/capability/begin.h).
#define TCONV_BUILD_DEFAULT
#include "cpu/capability/begin.h"
#include "cpu/upsample_taps2d.cpp"  // NOLINT(bugprone-suspicious-include): compiled once per capability
#include "cpu/capability/end.h"
