// examples/common/flags.hpp — what both styles of the flag programs share, so that the programs in
// examples/callbacks and examples/coroutines hold only the downloading, each in its style.
//
//     flags [-h] [-a] [-e] [-l N] [-m CONCURRENT] [-s LABEL|URL] [-o DIR] [-v] [--timeout SECONDS] [CC ...]
//
// `Job` is one run: it parses the options (a usage error prints `*** Usage error: …` and the usage,
// and the run exits with status 2), prints the opening lines, owns the loop, the HTTP client and the
// semaphore that caps the requests in flight, takes each code's outcome (`done`) for the progress bar
// or the -v line, and prints the closing report. Each request times out after `--timeout` seconds
// (3.1, as in the book's flags2 programs; 0: never), set once in the client's options, so both styles
// and both programs get it; a timeout is an error like the others: `XB error: timed out`.
// Ctrl-C (SIGINT) or SIGTERM cancels what is in flight: the callbacks style watches `job.stop` in
// every operation, the coroutines style's task is cancelled; either way the report still comes,
// counting what finished.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "duet/http/client.hpp"
#include "duet/loop.hpp"
#include "duet/semaphore.hpp"
#include "duet/spawn.hpp"

namespace flags {

enum class Status { ok, not_found, error, cancelled };

/// What one code's download came to, and the -v line's text after the code ("OK", "not found: URL",
/// "error: HTTP error 418 - I'm a Teapot").
struct Outcome {
  Status status = Status::ok;
  std::string detail = "OK";
};

Outcome ok();
/// 200 is no outcome yet (the caller goes on); 404 is "not found"; any other status is an error.
Outcome from_status(const duet::http::Response& res, const std::string& url);
/// A request or metadata that failed: `what` says why, except for a timeout (`std::errc::timed_out`),
/// which is "error: timed out" whichever deadline ran out. A cancellation is `Status::cancelled`.
Outcome failed(std::error_code ec, std::string_view what);
/// Saving to `path` failed with `ec`.
Outcome save_failed(const std::string& path, std::error_code ec);

/// Thrown by `file_name_from_metadata` for metadata without a usable country name.
struct BadMetadata : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Thrown by `expand_codes` for a bad CC argument; the message is the book's.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The codes to fetch: `every` (AA..ZZ) wins over `all` (ISO 3166's assigned codes); either ignores
/// `args`, where each is a code (`BR`) or a letter (`B`: BA..BZ), in any case. A sorted set, cut at
/// `limit`; empty when nothing asked (the caller then takes the 20 most populous countries).
std::vector<std::string> expand_codes(bool every, bool all, const std::vector<std::string>& args, std::size_t limit);

/// The file a country's flag is saved as, from its metadata.json (`{"country": "Côte d'Ivoire", ...}`):
/// `Côte_d'Ivoire.gif`. Spaces become underscores; so do a '/' and a leading '.', which could leave the
/// output folder. Throws `BadMetadata` ("bad metadata: ...") for JSON without a usable name.
std::string file_name_from_metadata(std::string_view metadata_json);

/// The parsed command line.
struct Options {
  std::string program;  ///< "flags", "flags_names" or "flags_workers"
  bool ready = false;   ///< false after --help or a usage error (already printed)
  int exit_code = 0;
  bool verbose = false;
  std::size_t concurrency = 5;  ///< -m, cut to the number of codes
  std::string label, base_url;  ///< "DELAY", "http://localhost:8001/flags"
  std::filesystem::path out_dir = "downloaded";
  std::chrono::milliseconds timeout{3100};  ///< --timeout: each request's deadline (0: none)
  std::vector<std::string> codes;
};

/// Parses the command line of `program`, printing help or the usage error itself.
Options parse_options(int argc, char** argv, std::string program);

class Job {
 public:
  /// Parses the command line of `program` ("flags", "flags_names" or "flags_workers"); see `ready()`.
  Job(int argc, char** argv, std::string program);
  ~Job();

  /// False after `--help` or a usage error (already printed): return `exit_code()` at once.
  bool ready() const noexcept { return options_.ready; }
  int exit_code() const noexcept { return options_.exit_code; }

  const std::vector<std::string>& codes() const noexcept { return options_.codes; }
  /// -m, cut to the number of codes: the semaphore's permits, or flags_workers' workers.
  std::size_t concurrency() const noexcept { return options_.concurrency; }
  std::string flag_url(std::string_view cc) const;      ///< {base}/{cc}/{cc}.gif, lower-case
  std::string metadata_url(std::string_view cc) const;  ///< {base}/{cc}/metadata.json
  std::string save_path(std::string_view file_name) const;

  /// One code's outcome: counted, and shown as a -v line or on the progress bar.
  void done(std::string_view cc, const Outcome& outcome);

  /// Runs the loop until every download has reported or Ctrl-C cancelled them, then prints the report.
  /// The coroutines style passes its spawned task, which Ctrl-C cancels. Returns the exit status.
  int run();
  int run(duet::JoinHandle<void> downloads);

 private:
  const Options options_;  // the first member: the ones below are made from it

 public:
  duet::Loop loop;
  duet::http::Client client;
  duet::Semaphore semaphore;
  std::stop_source stop;  ///< requested on Ctrl-C

 private:
  void start_watching_signals();
  void interrupt();
  void finished_one();
  void draw_progress(bool last);
  int final_report();

  bool progress_ = false;
  std::size_t reported_ = 0, ok_ = 0, not_found_ = 0, errors_ = 0;
  std::stop_source signal_wait_;
  bool interrupted_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
  duet::JoinHandle<void>* downloads_ = nullptr;
};

}  // namespace flags
