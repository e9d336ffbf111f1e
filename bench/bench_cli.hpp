// What the load generators of bench/ share: the usage error that ends a bad command line, whole-number
// options, and the process's own CPU time (user + system) and peak memory, which they report.
#pragma once

#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace bench {

/// Prints "*** Usage error: WHY" and the usage line, and exits with status 2.
[[noreturn]] inline void usage_error(const char* usage_line, const std::string& why) {
  std::fprintf(stderr, "*** Usage error: %s\nusage: %s\n", why.c_str(), usage_line);
  std::exit(2);
}

/// `text` as a whole number of at least 1, or a usage error naming `option`.
inline long whole_number(const char* usage_line, const std::string& text, const std::string& option) {
  char* end = nullptr;
  const long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || n < 1)
    usage_error(usage_line, option + " takes a whole number of at least 1, not '" + text + "'");
  return n;
}

/// This process's CPU time so far, user and system, in seconds.
inline double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

/// This process's peak resident set so far, in MiB.
inline double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

}  // namespace bench
