// kvsqueeze pull: GGUF files from the Hugging Face hub (or any server with its API) over
// HTTPS with libcurl: the file list from /api/models/REPO/tree/REV, the bytes from
// /REPO/resolve/REV/FILE, resumed from a .part file, checked against the size and the
// sha256 the hub lists, then moved into place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvsqueeze {

struct HubFile {
  std::string path;
  int64_t size = -1;   // -1: not listed
  std::string sha256;  // lowercase hex; empty when not listed (small files outside LFS)
};

struct PullOptions {
  std::string base_url = "https://huggingface.co";
  std::string revision = "main";
  std::string out_dir = ".";
  std::string token;  // sent as a bearer token (HF_TOKEN) when set
  bool progress = true;
};

// The repository's files. Throws std::runtime_error with a clear message when the hub
// cannot be reached, the repository does not exist, or access is refused.
std::vector<HubFile> list_repo_files(const std::string& repo, const PullOptions& o);

// The .gguf file `quant` names (a case-insensitive part of the file name, e.g. "Q4_K_M");
// without one, the only .gguf, else Q4_K_M, else Q8_0. Throws listing the choices.
HubFile choose_gguf(const std::vector<HubFile>& files, const std::string& quant);

// "REPO[:QUANT]" -> downloads (or finds already complete) and returns the local path.
std::string pull_model(const std::string& spec, const PullOptions& o);

// sha256 of a file, lowercase hex.
std::string file_sha256(const std::string& path);

}  // namespace kvsqueeze
