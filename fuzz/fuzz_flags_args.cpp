// Fuzzes the flag programs' command line: the CC arguments and every option, through the parser both
// programs use (flags::parse_options, CLI11 underneath).
//
// Input: the arguments, separated by NUL bytes (argv[0] is supplied). The checks: the parser never
// crashes or throws; it either refuses (exit code 2, or 0 after --help) or yields a run with a sorted
// set of at most 676 two-letter upper-case codes, a concurrency between 1 and the number of codes, an
// output folder, a request timeout from 0 (none) to a day, and a base URL that parses. What the
// parser prints (usage errors, help) goes to /dev/null while it runs.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "duet/http/url.hpp"
#include "flags.hpp"
#include "fuzz_check.hpp"

namespace {

/// Points stdout and stderr at /dev/null for its lifetime.
class Silenced {
 public:
  Silenced() {
    std::fflush(stdout);
    std::fflush(stderr);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    DUET_FUZZ_CHECK(null >= 0);
    out_ = ::dup(STDOUT_FILENO);
    err_ = ::dup(STDERR_FILENO);
    ::dup2(null, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
    ::close(null);
  }
  ~Silenced() {
    std::fflush(stdout);
    std::fflush(stderr);
    ::dup2(out_, STDOUT_FILENO);
    ::dup2(err_, STDERR_FILENO);
    ::close(out_);
    ::close(err_);
  }

 private:
  int out_ = -1, err_ = -1;
};

bool is_code(const std::string& cc) {
  return cc.size() == 2 && cc[0] >= 'A' && cc[0] <= 'Z' && cc[1] >= 'A' && cc[1] <= 'Z';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args = {"flags"};
  for (std::size_t from = 0; from <= input.size();) {
    const auto nul = std::min(input.find('\0', from), input.size());
    args.push_back(input.substr(from, nul - from));
    from = nul + 1;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  flags::Options opt;
  {
    Silenced quiet;
    opt = flags::parse_options(static_cast<int>(args.size()), argv.data(), size % 2 ? "flags" : "flags_names");
  }
  if (!opt.ready) {
    DUET_FUZZ_CHECK(opt.exit_code == 2 || opt.exit_code == 0);
    return 0;
  }
  DUET_FUZZ_CHECK(opt.exit_code == 0);
  DUET_FUZZ_CHECK(!opt.codes.empty());
  DUET_FUZZ_CHECK(std::is_sorted(opt.codes.begin(), opt.codes.end()));
  DUET_FUZZ_CHECK(std::adjacent_find(opt.codes.begin(), opt.codes.end()) == opt.codes.end());
  DUET_FUZZ_CHECK(std::all_of(opt.codes.begin(), opt.codes.end(), is_code));
  DUET_FUZZ_CHECK(opt.codes.size() <= 676);
  DUET_FUZZ_CHECK(opt.concurrency >= 1 && opt.concurrency <= opt.codes.size());
  DUET_FUZZ_CHECK(!opt.base_url.empty() && !opt.out_dir.empty());
  DUET_FUZZ_CHECK(opt.timeout.count() >= 0 && opt.timeout <= std::chrono::hours(24));
  (void)duet::http::Url::parse(opt.base_url + "/br/br.gif");  // accepted URLs parse (this would throw)
  return 0;
}
