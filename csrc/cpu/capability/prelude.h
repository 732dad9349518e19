// Every header the CPU kernels share with the rest of the library, included before a capability's
// instruction set is raised (cpu/capability/begin.h): their inline functions are then built for
// the baseline in every file.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_backward_args.h"
#include "common/conv_transpose2d_direct.h"
#include "common/conv_transpose2d_shape.h"
#include "common/gram_args.h"
#include "common/gram_tiles.h"
#include "common/pad_fold_args.h"
#include "common/upsample_args.h"
#include "common/upsample_index.h"
#include "common/upsample_raw_taps.h"
#include "common/upsample_tables.h"
#include "cpu/gemm.h"
#include "cpu/output_alloc.h"
#include "cpu/parallel.h"
