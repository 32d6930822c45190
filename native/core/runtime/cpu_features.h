// What this CPU can run, for the hand-vectorised kernels that pick an instruction set at run time
// (nn/flash_attention, nn/group_norm_silu): each has a baseline build and an AVX2+FMA build.
#pragma once

namespace sd::runtime {

/// True on an x86-64 CPU with both AVX2 and FMA (GCC/Clang's __builtin_cpu_supports; false on
/// other architectures and compilers). Cheap, but callers cache the kernel they pick.
inline bool cpuHasAvx2Fma() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace sd::runtime
