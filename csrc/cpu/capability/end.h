// Closes a capability's build of the CPU kernels (see cpu/capability/begin.h).
#if defined(TCONV_CPU_RAISED)
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
