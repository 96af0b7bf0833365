#include "tensor/cpu_features.h"

#include <cpuid.h>

namespace kvsqueeze {

// F16C (leaf 1 ECX bit 29) and AVX-512 VNNI (leaf 7 ECX bit 11) are read from CPUID
// directly: clang's __builtin_cpu_supports does not know their names.
bool cpu_has_avx2_fma_f16c() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}

bool cpu_has_avx512_vnni() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool vnni = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11));
    return vnni && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  }();
  return ok;
}

}  // namespace kvsqueeze
