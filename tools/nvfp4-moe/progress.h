// A one-line progress bar on stderr for long work (quantizing a checkpoint, benchmarks).
// On a terminal it redraws in place; otherwise it prints a line every 10%.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace nvfp4moe::tool {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total)
      : label_(std::move(label)), total_(total), tty_(isatty(STDERR_FILENO) != 0),
        start_(std::chrono::steady_clock::now()) {}

  void update(int64_t done, const std::string& item = {}) {
    if (total_ <= 0) return;
    int pct = int(100 * done / total_);
    if (!tty_ && pct / 10 == last_decile_ && done != total_) return;
    last_decile_ = pct / 10;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    constexpr int kWidth = 30;
    int fill = int(kWidth * done / total_);
    std::string bar(fill, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "%s%s [%s] %3d%% %lld/%lld %.1fs %s%s", tty_ ? "\r" : "", label_.c_str(),
                 bar.c_str(), pct, (long long)done, (long long)total_, secs,
                 item.substr(0, 40).c_str(), tty_ ? "\033[K" : "\n");
    if (tty_ && done == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  std::string label_;
  int64_t total_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace nvfp4moe::tool
