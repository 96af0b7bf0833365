// Runs the kvsqueeze command line as a user would, capturing exit code and output.
#pragma once

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "test_util.h"

namespace kvsqueeze::test {

struct CliResult {
  int exit_code = -1;
  bool crashed = false;
  std::string out, err;
};

// A file name stem unique to the running test: ctest runs tests in parallel processes.
// Parameterised names ("Suite/Name.Test/param") lose their slashes.
inline std::string test_stem() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string stem = std::string(info->test_suite_name()) + "-" + info->name();
  std::replace(stem.begin(), stem.end(), '/', '_');
  return stem;
}

// Runs `program args` (args already shell-quoted where needed) with stdin from /dev/null.
inline CliResult run_program(const std::string& program, const std::string& args) {
  const std::string stem = "cli-" + test_stem();
  const std::string out = temp_path(stem + ".out"), err = temp_path(stem + ".err");
  const std::string cmd = program + " " + args + " >" + out + " 2>" + err + " </dev/null";
  const int st = std::system(cmd.c_str());
  CliResult r;
  r.crashed = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) > 128);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  auto o = read_bytes(out), e = read_bytes(err);
  r.out.assign(o.begin(), o.end());
  r.err.assign(e.begin(), e.end());
  return r;
}

// The kvsqueeze command line.
inline CliResult run(const std::string& args) { return run_program(KVSQUEEZE_CLI, args); }

// One clear message: non-zero exit, no crash, a single "error:" line naming the problem.
inline void expect_clean_failure(const CliResult& r, const std::string& needle) {
  EXPECT_FALSE(r.crashed) << r.err;
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr was: " << r.err;
  EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 3) << r.err;
}

// A fresh folder under the test temp dir.
inline std::string fresh_dir(const std::string& name) {
  const std::string d = temp_path(name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// Exit status of a shell command (-1 when it did not exit normally).
inline int shell(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// A plot script's output must be real images: a PNG signature and IHDR, an SVG document.
inline void expect_images(const std::string& dir, const std::string& stem) {
  const auto png = read_bytes(dir + "/" + stem + ".png");
  ASSERT_GT(png.size(), 1000u) << stem;
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  EXPECT_TRUE(std::equal(sig, sig + 8, png.begin())) << stem;
  EXPECT_EQ(std::string(png.begin() + 12, png.begin() + 16), "IHDR");
  const auto svg = read_bytes(dir + "/" + stem + ".svg");
  const std::string text(svg.begin(), svg.end());
  EXPECT_NE(text.find("<svg"), std::string::npos) << stem;
  EXPECT_NE(text.find("</svg>"), std::string::npos) << stem;
}

}  // namespace kvsqueeze::test
