// Fuzz target: resuming an eval results file (JSON lines; a last line cut short is
// dropped, anything else malformed is an error). Any bytes must load or raise a
// std::exception; what loads must take a new record.
#include <cstddef>
#include <cstdint>
#include <exception>

#include "eval/results_file.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    kvsqueeze::eval::ResultsFile f(kvsqueeze::fuzz::as_file(data, size, ".jsonl"));
    for (const auto& r : f.records()) (void)kvsqueeze::eval::ResultsFile::key_of(r);
    f.append({{"model", "m"}, {"task", "t"}, {"sample", "s"}, {"preset", "none"}});
  } catch (const std::exception&) {
  }
  return 0;
}
