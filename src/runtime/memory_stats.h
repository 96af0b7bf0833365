// The process's resident memory, for benchmarks: current, peak, and a reset of the peak
// so one run's peak can be measured inside a longer-lived process.
#pragma once

#include <cstddef>

namespace kvsqueeze {

// VmRSS / VmHWM from /proc/self/status, in bytes (0 if unavailable).
size_t resident_bytes();
size_t peak_resident_bytes();
// Resets the kernel's peak (VmHWM) to the current resident size. Returns false where the
// kernel refuses (then the peak covers the whole process life).
bool reset_peak_resident();

}  // namespace kvsqueeze
