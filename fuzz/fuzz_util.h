// What the fuzz targets share: the bytes of one input as a file (for readers that take a
// path), and where the fixtures are.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace kvsqueeze::fuzz {

// The input written to a file of this process (rewritten for every input).
inline std::string as_file(const uint8_t* data, size_t size, const char* suffix) {
  const std::string path = "/tmp/kvsqueeze-fuzz-" + std::to_string(::getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return path;
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

// Files of fuzz/corpus (the seeds; gguf/tiny-llama.gguf is a whole model) and ../shared.
inline std::string corpus_file(const std::string& name) { return std::string(KVSQUEEZE_FUZZ_DIR) + "/corpus/" + name; }
inline std::string shared_file(const std::string& name) { return std::string(KVSQUEEZE_SHARED_DIR) + "/" + name; }

}  // namespace kvsqueeze::fuzz
