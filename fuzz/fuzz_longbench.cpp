// Fuzz target: loading LongBench JSONL (`eval --task longbench --data FILE`). Any bytes
// must load or raise a std::exception naming the problem.
#include <cstddef>
#include <cstdint>
#include <exception>

#include "eval/longbench.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)kvsqueeze::eval::longbench_samples({kvsqueeze::fuzz::as_file(data, size, ".jsonl")}, 8);
  } catch (const std::exception&) {
  }
  return 0;
}
