#include "runtime/memory_stats.h"

#include <fstream>
#include <string>

namespace kvsqueeze {
namespace {
size_t status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
  return 0;
}
}  // namespace

size_t resident_bytes() { return status_kib("VmRSS"); }
size_t peak_resident_bytes() { return status_kib("VmHWM"); }

bool reset_peak_resident() {
  // Writing 5 to clear_refs resets the peak resident set size (Linux 4.0+).
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace kvsqueeze
