// examples/common/run_process.hpp — what both styles of `run_process` share: the command line, the
// numbering of lines, and the report of how the child ended.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "duet/process.hpp"

namespace run_process {

/// The command to run: the program's arguments (`run_process sh -c "exit 3"`), or `ls -l /`. Its
/// stdout comes back to us through a pipe; its stdin and stderr are ours.
inline duet::ProcessOptions command(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) args = {"ls", "-l", "/"};
  return {
      .file = args[0], .args = args, .stdio = {duet::Stdio::inherit(), duet::Stdio::pipe(), duet::Stdio::inherit()}};
}

/// Cuts the child's output into lines and prints each after its number. Reads land in `buffer`;
/// `add(n)` takes the n bytes that came; `finish()` prints a last line that had no newline.
class Lines {
 public:
  char buffer[4096];

  void add(std::size_t n) {
    partial_.append(buffer, n);
    std::size_t start = 0;
    for (std::size_t end; (end = partial_.find('\n', start)) != std::string::npos; start = end + 1)
      print(std::string_view(partial_).substr(start, end - start));
    partial_.erase(0, start);
  }
  void finish() {
    if (!partial_.empty()) print(partial_);
    partial_.clear();
  }

 private:
  void print(std::string_view line) {
    std::printf("%4d  %.*s\n", ++count_, static_cast<int>(line.size()), line.data());
  }
  std::string partial_;
  int count_ = 0;
};

/// The program could not start (it does not exist, say): says why; exits as a shell would (127).
inline int cannot_start(const duet::ProcessOptions& command, const std::system_error& e) {
  std::fprintf(stderr, "run_process: cannot run %s: %s\n", command.file.c_str(), e.code().message().c_str());
  return 127;
}

/// Reading the output failed (rare): says so; the child is still waited for.
inline void read_failed(std::error_code ec) {
  std::fprintf(stderr, "run_process: reading its output failed: %s\n", ec.message().c_str());
}

/// Prints how the child ended; returns the status to exit with, as a shell would: the child's own,
/// or 128 + the signal that killed it.
inline int report(duet::ExitStatus status) {
  if (status.signal != 0) {
    std::printf("killed by signal %d\n", status.signal);
    return 128 + status.signal;
  }
  std::printf("exit status %lld\n", static_cast<long long>(status.code));
  return static_cast<int>(status.code);
}

}  // namespace run_process
