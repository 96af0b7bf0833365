#include "eval/progress_bar.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace kvsqueeze::eval {
namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string clock_text(double s) {
  const auto t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, t % 3600 / 60) : fmt::format("{}m{:02}s", t / 60, t % 60);
}
}  // namespace

ProgressBar::ProgressBar(int64_t total, bool enabled)
    : total_(total), enabled_(enabled && total > 0), tty_(isatty(STDERR_FILENO) != 0), start_(now()) {}

void ProgressBar::step() {
  ++done_;
  draw();
}

void ProgressBar::draw() {
  if (!enabled_) return;
  const double frac = static_cast<double>(done_) / static_cast<double>(total_);
  const double elapsed = now() - start_;
  const double eta = done_ > 0 ? elapsed * static_cast<double>(total_ - done_) / static_cast<double>(done_) : 0;
  const int width = 30, fill = static_cast<int>(frac * width);
  const std::string bar = std::string(static_cast<size_t>(fill), '=') + std::string(static_cast<size_t>(width - fill), ' ');
  const std::string text = fmt::format("[{}] {}/{} {:3.0f}% elapsed {} ETA {}", bar, done_, total_, 100 * frac,
                                       clock_text(elapsed), clock_text(eta));
  if (tty_) {
    fmt::print(stderr, "\r{}", text);
  } else {
    const int tenth = static_cast<int>(frac * 10);
    if (tenth == last_tenth_) return;
    last_tenth_ = tenth;
    fmt::print(stderr, "{}\n", text);
  }
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (enabled_ && tty_) fmt::print(stderr, "\n");
}

}  // namespace kvsqueeze::eval
