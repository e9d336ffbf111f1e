// examples/common/spinner.hpp — what both styles of `spinner` and `countdown` share: the slow
// function, and drawing on the terminal.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace spinner {

/// CPU-bound work for the thread pool: checks that a large number is prime by trial division, then
/// returns the answer. Like the book's `is_prime(5_000_111_000_222_021)` in Python, it takes seconds
/// (about 2 s on a 2-core 2020s machine, release build), so the spinner visibly spins meanwhile.
inline int slow() {
  const std::uint64_t n = 1'000'000'000'000'000'003ULL;  // prime: 500 million trial divisions
  bool prime = n % 2 != 0;
  for (std::uint64_t d = 3; prime && d <= n / d; d += 2) prime = n % d != 0;
  return prime ? 42 : 0;
}

/// Draws frame `i` of the spinner over the previous one.
inline void draw(unsigned i) {
  std::printf("\r%c thinking!", "|/-\\"[i % 4]);
  std::fflush(stdout);
}

/// Erases the spinner's line.
inline void erase() {
  std::printf("\r%*s\r", 12, "");
  std::fflush(stdout);
}

/// countdown's argument: where to count down from (default 10); nothing for a bad argument.
inline int start_from(int argc, char** argv) {
  if (argc < 2) return 10;
  char* end = nullptr;
  const long n = std::strtol(argv[1], &end, 10);
  if (argc > 2 || *end != '\0' || n < 1 || n > 3600) {
    std::fprintf(stderr, "*** Usage error: countdown [N], N from 1 to 3600 (default 10)\n");
    return 0;
  }
  return static_cast<int>(n);
}

}  // namespace spinner
