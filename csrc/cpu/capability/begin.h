// Opens a capability's build of the CPU kernels; the file that includes it names the capability
// (TCONV_BUILD_DEFAULT, TCONV_BUILD_AVX2 or TCONV_BUILD_AVX512) and then includes one kernel source,
// then cpu/capability/end.h. This is ATen's DispatchStub scheme in one binary: the same kernel
// source compiled per instruction set, in the namespace tconv::cpu::<CAPABILITY>, and
// cpu/dispatch.cpp choosing one at run time (ATen's choice: the CPU's best, or ATEN_CPU_CAPABILITY).
//
// The instruction set is raised with `#pragma GCC target` after every shared header is included,
// so that only the kernels' own code (their namespace is per capability) is built for it: an
// inline function of ATen, the standard library or csrc/common built with AVX-512 in one file
// and picked by the linker for all would crash a CPU without it.
#include "cpu/capability/prelude.h"

// (The pragmas name their instruction sets literally: GCC does not expand macros in them.)
#if defined(TCONV_BUILD_DEFAULT)
#define CPU_CAPABILITY DEFAULT
#elif defined(TCONV_BUILD_AVX2)
#define CPU_CAPABILITY AVX2
#define TCONV_CPU_RAISED 1
#define TCONV_CPU_AVX2 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#elif defined(TCONV_BUILD_AVX512)
// ATen's AVX512 level (AVX-512 F, BW, VL, DQ); TCONV_CPU_AVX512 selects the kernels' AVX-512 code
// (and TCONV_CPU_AVX2 their AVX2 code: `#pragma GCC target` defines no __AVX2__ / __AVX512F__).
#define CPU_CAPABILITY AVX512
#define TCONV_CPU_RAISED 1
#define TCONV_CPU_AVX512 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512cd,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512cd,avx2,fma,f16c")
#endif
#else
#error "name the capability: TCONV_BUILD_DEFAULT, TCONV_BUILD_AVX2 or TCONV_BUILD_AVX512"
#endif
