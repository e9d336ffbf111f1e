// examples/common/flags.hpp — what both styles of the flag programs share, so that the programs in
// examples/callbacks and examples/coroutines hold only the downloading, each in its style. It plays
// the part of the book's flags2_common.py (options, report, save_flag) plus httpx's raise_for_status
// and tqdm's progress bar.
//
//     flags [-h] [-a] [-e] [-l N] [-m CONCURRENT] [-s LABEL|URL] [-o DIR] [-v] [--timeout SECONDS] [CC ...]
//
// `Job` is one run: it parses the options (a usage error prints `*** Usage error: …` and the usage,
// and the run exits with status 2), prints the opening lines, owns the loop, the HTTP client and the
// semaphore that caps the requests in flight, takes each code's outcome (`done`) for the report and
// the -v line, and prints the closing report. The progress bar is the program's to move (`step()` per
// code, or `showing_progress` around the loop that takes the results), as the book wraps its
// `as_completed` loop in `tqdm`. Each request times out after `--timeout` seconds (3.1, as in the
// book's flags2 programs; 0: never), set once in the client's options, so both styles and every
// program get it; a timeout is an error like the others: `XB error: timed out`.
// Ctrl-C (SIGINT) or SIGTERM cancels what is in flight: the callbacks style watches `job.stop` in
// every operation, the coroutines style's task is cancelled; either way the report still comes,
// counting what finished.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
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
/// "not found: URL".
Outcome not_found(const std::string& url);
/// 200 is no outcome yet (the caller goes on); 404 is "not found"; any other status is an error.
Outcome from_status(const duet::http::Response& res, const std::string& url);
/// A request or metadata that failed: `what` says why, except for a timeout (`std::errc::timed_out`),
/// which is "error: timed out" whichever deadline ran out. A cancellation is `Status::cancelled`.
Outcome failed(std::error_code ec, std::string_view what);
/// Saving to `path` failed with `ec`.
Outcome save_failed(const std::string& path, std::error_code ec);
/// A step that failed with `ec` and, when it threw (offload's `errc::offload_threw`), `thrown`: the
/// exception's message says why.
Outcome failed(std::error_code ec, std::exception_ptr thrown);
/// What a download threw (anything but `duet::Cancelled`), as an error: a `std::system_error`'s code
/// decides as in `failed`, the message is `e.what()`.
Outcome error(const std::exception& e);

/// A response whose status is not 200, thrown by `raise_for_status` (httpx's HTTPStatusError).
/// `what()` is the book's "HTTP error 418 - I'm a Teapot".
struct HttpError : std::runtime_error {
  HttpError(int status, const std::string& reason, std::string url);
  int status;
  std::string url;
};
/// Throws `HttpError` unless `res.status` is 200.
void raise_for_status(const duet::http::Response& res, const std::string& url);

/// Thrown by `country_from_metadata` for metadata without a usable country name.
struct BadMetadata : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Writes `image` to `path` — an ordinary blocking function (the book's `save_flag`), to be run on
/// the thread pool with `duet::offload`. If it fails it removes what it wrote and throws
/// `std::system_error` ("cannot save PATH: no space left on device"). It is not atomic: a crash in the
/// middle leaves part of a file, which `duet::fs::write_file_atomic` never does.
void save_flag(const std::string& path, std::string_view image);

/// Thrown by `expand_codes` for a bad CC argument; the message is the book's.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The codes to fetch: `every` (AA..ZZ) wins over `all` (ISO 3166's assigned codes); either ignores
/// `args`, where each is a code (`BR`) or a letter (`B`: BA..BZ), in any case. A sorted set, cut at
/// `limit`; empty when nothing asked (the caller then takes the 20 most populous countries).
std::vector<std::string> expand_codes(bool every, bool all, const std::vector<std::string>& args, std::size_t limit);

/// The country's name in its metadata.json (`{"country": "Côte d'Ivoire", ...}`). Throws
/// `BadMetadata` ("bad metadata: ...") for JSON without a usable name.
std::string country_from_metadata(std::string_view metadata_json);

/// The file a country's flag is saved as: `Côte_d'Ivoire.gif`. Spaces become underscores; so do a '/'
/// and a leading '.', which could leave the output folder.
std::string flag_file_name(std::string country);

/// The progress bar on stderr, the book's `tqdm`: one `step()` per code that finishes. It is drawn
/// only on a terminal and without -v, and it stops moving after Ctrl-C.
class ProgressBar {
 public:
  ProgressBar(std::size_t total, bool shown) : total_(total), shown_(shown) {}
  /// Draws 0/N, as tqdm does when it is made (`Job::run` calls it as the loop starts).
  void start();
  void step();
  void stop() noexcept { stopped_ = true; }
  /// Ends the bar's line if it was left part-way (the report comes next).
  void finish();

 private:
  void draw(bool last);
  std::size_t total_, done_ = 0;
  bool shown_, stopped_ = false, drawn_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

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
  /// Parses the command line of `program` ("flags", "flags_names" or "flags_workers") and makes the
  /// output folder; see `ready()`.
  Job(int argc, char** argv, std::string program);
  ~Job();

  /// False after `--help`, a usage error or an output folder it cannot make (already printed): return
  /// `exit_code()` at once.
  bool ready() const noexcept { return options_.ready && !no_folder_; }
  /// 2 after a usage error, 1 when the output folder cannot be made, 0 after `--help`.
  int exit_code() const noexcept { return no_folder_ ? 1 : options_.exit_code; }

  const std::vector<std::string>& codes() const noexcept { return options_.codes; }
  /// -m, cut to the number of codes: the semaphore's permits, or flags_workers' workers.
  std::size_t concurrency() const noexcept { return options_.concurrency; }
  std::string flag_url(std::string_view cc) const;      ///< {base}/{cc}/{cc}.gif, lower-case
  std::string metadata_url(std::string_view cc) const;  ///< {base}/{cc}/metadata.json
  std::string save_path(std::string_view file_name) const;
  /// The options `client` was made with (the threads style makes a client per thread with them).
  duet::http::ClientOptions client_options() const;

  /// One code's outcome: counted, and shown as a -v line (the progress bar is moved by the caller).
  void done(std::string_view cc, const Outcome& outcome);

  /// Runs the loop until every download has reported or Ctrl-C cancelled them, then prints the report.
  /// The coroutines style passes its spawned task, which Ctrl-C cancels. Returns the exit status.
  int run();
  int run(duet::JoinHandle<void> downloads);

 private:
  const Options options_;   // the first member: the ones below are made from it
  bool no_folder_ = false;  // the output folder could not be made (said on stderr)

 public:
  duet::Loop loop;
  duet::http::Client client;
  duet::Semaphore semaphore;
  std::stop_source stop;  ///< requested on Ctrl-C
  ProgressBar progress_bar;

 private:
  void start_watching_signals();
  void interrupt();
  void finished_one();
  int final_report();

  std::size_t reported_ = 0, ok_ = 0, not_found_ = 0, errors_ = 0;
  std::stop_source signal_wait_;
  bool interrupted_ = false;
  std::chrono::steady_clock::time_point start_;
  duet::JoinHandle<void>* downloads_ = nullptr;
};

/// `range` (the results of `duet::as_completed`), moving `job`'s progress bar one step per result
/// taken: the book's `tqdm(as_completed(...))`.
template <class Range>
class ShowingProgress {
 public:
  ShowingProgress(Range range, ProgressBar& bar) : range_(std::move(range)), bar_(&bar) {}

  class iterator {
   public:
    using Inner = decltype(std::declval<Range&>().begin());
    using difference_type = std::ptrdiff_t;
    using value_type = decltype(*std::declval<Inner&>());
    iterator() = default;
    iterator(Inner inner, ProgressBar* bar) : inner_(inner), bar_(bar) {}
    value_type operator*() const { return *inner_; }
    iterator& operator++() {
      bar_->step();
      ++inner_;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const { return inner_ == o.inner_; }

   private:
    Inner inner_{};
    ProgressBar* bar_ = nullptr;
  };

  iterator begin() { return {range_.begin(), bar_}; }
  iterator end() { return {range_.end(), bar_}; }

 private:
  Range range_;
  ProgressBar* bar_;
};

template <class Range>
ShowingProgress<Range> showing_progress(Job& job, Range range) {
  return {std::move(range), job.progress_bar};
}

}  // namespace flags
