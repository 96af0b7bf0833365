#include "tensor/cpu_features.h"

#include <cpuid.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdlib>
#include <stdexcept>

namespace kvsqueeze {
namespace {

// F16C (leaf 1 ECX bit 29) and AVX-512 VNNI (leaf 7 ECX bit 11) are read from CPUID
// directly: clang's __builtin_cpu_supports does not know their names.
Isa detect() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
  if (!(f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return Isa::Generic;
#ifdef KVS_EMULATE_AVX512
  return Isa::Avx512;  // the AVX-512 kernels run emulated (tests/avx512_emulation.h)
#endif
  const bool vnni = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11));
  if (!vnni || !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512bw")) return Isa::Avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return Isa::Avx512;
  return Isa::Avx2Vnni;
}

// AMD family 19h parts with AVX-512 (Zen 4) run a 512-bit instruction as two 256-bit
// halves; there the AVX2 kernels measure faster than the AVX-512 ones (prompt 1.3-1.6x,
// decode 1.05x on SmolLM2 and Gemma 3, docs/BENCHMARKS.md), and faster still with VNNI on
// 256-bit vectors in the prompt products, so Avx2Vnni is their default.
bool splits_512_bit_vectors() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  if (std::strcmp(vendor, "AuthenticAMD") != 0 || !__get_cpuid(1, &a, &b, &c, &d)) return false;
  const unsigned base = (a >> 8) & 0xF, family = base == 0xF ? base + ((a >> 20) & 0xFF) : base;
  return family == 0x19;
}

std::atomic<int>& active_level() {
  static std::atomic<int> level = [] {
    Isa isa = default_isa();
    if (const char* env = std::getenv("KVSQUEEZE_ISA"); env && *env) {
      const Isa wanted = isa_from_name(env);  // an unknown name is a start-up error, not a silent default
      isa = std::min(wanted, cpu_isa());
    }
    return static_cast<int>(isa);
  }();
  return level;
}

}  // namespace

Isa cpu_isa() {
  static const Isa best = detect();
  return best;
}

Isa default_isa() {
#ifdef KVS_EMULATE_AVX512
  return cpu_isa();
#else
  static const Isa level = cpu_isa() == Isa::Avx512 && splits_512_bit_vectors() ? Isa::Avx2Vnni : cpu_isa();
  return level;
#endif
}

Isa active_isa() { return static_cast<Isa>(active_level().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  if (isa > cpu_isa())
    throw std::invalid_argument(std::string("this CPU cannot run the ") + isa_name(isa) + " kernels (best: " +
                                isa_name(cpu_isa()) + ")");
  active_level().store(static_cast<int>(isa), std::memory_order_relaxed);
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(cpu_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx2Vnni: return "avx2vnni";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

Isa isa_from_name(const std::string& name) {
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx2Vnni, Isa::Avx512})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("unknown instruction set '" + name + "' (known: generic, avx2, avx2vnni, avx512)");
}

}  // namespace kvsqueeze
