// A progress bar with ETA on stderr: redrawn in place on a terminal, one line per tenth
// of the work otherwise (logs stay short).
#pragma once

#include <cstdint>

namespace kvsqueeze::eval {

class ProgressBar {
 public:
  ProgressBar(int64_t total, bool enabled);
  void step();     // one unit done
  void finish();

 private:
  void draw();
  int64_t total_, done_ = 0;
  bool enabled_, tty_;
  int last_tenth_ = -1;
  double start_;
};

}  // namespace kvsqueeze::eval
