// Which build of the CPU kernels runs (cpu/dispatch.cpp): tconv.cpu_capability() in Python.
#pragma once

namespace tconv::cpu {

enum class CpuCapability { DEFAULT, AVX2, AVX512 };

CpuCapability cpu_capability();
const char* cpu_capability_name();  // "default", "avx2" or "avx512"

}  // namespace tconv::cpu
