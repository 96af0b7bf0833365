// Which SIMD level the kernels run at. The CPU's best level is checked once; kernels
// start at default_isa() (the best, but a lower level where that measures faster); tests and
// benchmarks may pick any level the CPU has (every one must give correct results), and
// the environment variable KVSQUEEZE_ISA=generic|avx2|avx2vnni|avx512 does the same for a
// whole run.
#pragma once

#include <string>
#include <vector>

namespace kvsqueeze {

enum class Isa {
  Generic = 0,  // portable C++, whatever the compiler's baseline allows
  Avx2 = 1,      // AVX2 + FMA + F16C
  Avx2Vnni = 2,  // the AVX2 kernels, plus vpdpbusd and byte masks on 256-bit vectors (AVX-512 VNNI + VL + BW)
  Avx512 = 3,    // AVX-512 F/BW/DQ/VL + VNNI (on top of Avx2Vnni)
};

Isa cpu_isa();      // the best level this CPU runs
Isa default_isa();  // the level kernels start at: the best, unless a lower one is faster here
Isa active_isa();   // the level kernels use now
// Kernels use `isa` from now on. Throws std::invalid_argument when the CPU lacks it.
void set_active_isa(Isa isa);
// Every level this CPU runs, lowest first.
std::vector<Isa> supported_isas();
const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws on an unknown name

// Shorthands for kernel dispatch.
inline bool use_avx2() { return active_isa() >= Isa::Avx2; }
inline bool use_avx512() { return active_isa() >= Isa::Avx512; }

// Runs the kernels at one level for a scope (tests, benchmarks), then restores the level.
class IsaScope {
 public:
  explicit IsaScope(Isa isa) : saved_(active_isa()) { set_active_isa(isa); }
  ~IsaScope() { set_active_isa(saved_); }
  IsaScope(const IsaScope&) = delete;
  IsaScope& operator=(const IsaScope&) = delete;

 private:
  Isa saved_;
};

}  // namespace kvsqueeze

// Function attributes that compile one function for a level (its body may inline
// portable helpers, which are then vectorised for that level).
#define KVS_AVX2_FEATURES "avx2,fma,f16c"
#ifdef KVS_EMULATE_AVX512
// The test build that runs the AVX-512 kernels through SIMDe's portable intrinsics
// (tests/avx512_emulation.h) compiles them for AVX2.
#define KVS_AVX512_FEATURES KVS_AVX2_FEATURES
#else
#define KVS_AVX512_FEATURES "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c"
#endif
// The avx2vnni level's own kernels: 256-bit vectors with AVX-512's byte masks and VNNI.
#ifdef KVS_EMULATE_AVX512
#define KVS_AVX2VNNI_FEATURES KVS_AVX2_FEATURES
#else
#define KVS_AVX2VNNI_FEATURES "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#endif
#define KVS_TARGET_AVX2 __attribute__((target(KVS_AVX2_FEATURES)))
#define KVS_TARGET_AVX2VNNI __attribute__((target(KVS_AVX2VNNI_FEATURES)))
#define KVS_TARGET_AVX512 __attribute__((target(KVS_AVX512_FEATURES)))
// The same for every function between KVS_BEGIN_TARGET_... and KVS_END_TARGET (GCC and
// clang spell it differently). KVS_PRAGMA expands its argument before quoting it.
#define KVS_PRAGMA_QUOTED(x) _Pragma(#x)
#define KVS_PRAGMA(x) KVS_PRAGMA_QUOTED(x)
#if defined(__clang__)
#define KVS_BEGIN_TARGET_(features) KVS_PRAGMA(clang attribute push(__attribute__((target(features))), apply_to = function))
#define KVS_END_TARGET _Pragma("clang attribute pop")
#else
#define KVS_BEGIN_TARGET_(features) _Pragma("GCC push_options") KVS_PRAGMA(GCC target(features))
#define KVS_END_TARGET _Pragma("GCC pop_options")
#endif
#define KVS_BEGIN_TARGET_AVX2 KVS_BEGIN_TARGET_(KVS_AVX2_FEATURES)
#define KVS_BEGIN_TARGET_AVX512 KVS_BEGIN_TARGET_(KVS_AVX512_FEATURES)
