// Which SIMD extensions this CPU offers, checked once (kernels pick their path by it).
#pragma once

namespace kvsqueeze {

bool cpu_has_avx2_fma_f16c();
bool cpu_has_avx512_vnni();  // with AVX-512 F, BW, DQ and VL

}  // namespace kvsqueeze
