#include "flags.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "duet/cancellation.hpp"
#include "duet/error.hpp"
#include "duet/http/url.hpp"
#include "duet/open_files.hpp"
#include "duet/signal.hpp"
#include "iso_codes.hpp"  // kAssignedCodes, generated at build time from iso-codes

namespace flags {

namespace {

constexpr const char* kPop20 = "CN IN US ID BR PK NG BD RU JP MX PH VN ET EG DE IR TR CD FR";

struct Site {
  const char* label;
  const char* url;
};
constexpr Site kSites[] = {
    {"LOCAL", "http://localhost:8000/flags"},
    {"REMOTE", "https://www.fluentpython.com/data/flags"},
    {"DELAY", "http://localhost:8001/flags"},
    {"ERROR", "http://localhost:8002/flags"},
};

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_letter(char c) { return c >= 'A' && c <= 'Z'; }

constexpr double kMaxTimeout = 86'400;  // a day: beyond that, ask for none

/// `--timeout`'s SECONDS: "3.1" is 3100 ms, "0" none. Only digits and at most one decimal point (no
/// sign, exponent or "inf"), up to kMaxTimeout; a fraction of a millisecond rounds up, never to none.
std::optional<std::chrono::milliseconds> parse_timeout(std::string_view text) {
  const bool well_formed =
      std::count(text.begin(), text.end(), '.') <= 1 &&
      std::all_of(
          text.begin(), text.end(), [](char c) { return c == '.' || std::isdigit(static_cast<unsigned char>(c)); }) &&
      std::any_of(text.begin(), text.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (!well_formed) return std::nullopt;
  double seconds = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size() || seconds > kMaxTimeout) return std::nullopt;
  return std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
}

}  // namespace

Outcome ok() { return {}; }

Outcome not_found(const std::string& url) { return {Status::not_found, "not found: " + url}; }

namespace {

std::string http_error_message(int status, std::string_view reason) {
  return fmt::format("HTTP error {} - {}", status, reason);
}

}  // namespace

Outcome from_status(const duet::http::Response& res, const std::string& url) {
  if (res.status == 404) return not_found(url);
  return {Status::error, "error: " + http_error_message(res.status, res.reason)};
}

HttpError::HttpError(int status, const std::string& reason, std::string url)
    : std::runtime_error(http_error_message(status, reason)), status(status), url(std::move(url)) {}

void raise_for_status(const duet::http::Response& res, const std::string& url) {
  if (res.status != 200) throw HttpError(res.status, res.reason, url);
}

namespace {

Outcome error_or_cancelled(std::error_code ec, std::string_view what) {
  if (duet::is_cancelled(ec)) return {Status::cancelled, "cancelled"};
  return {Status::error, fmt::format("error: {}", what)};
}

}  // namespace

Outcome failed(std::error_code ec, std::string_view what) {
  // Whichever deadline it was (connect, headers, the whole request), the book says only this.
  if (ec == std::errc::timed_out) return {Status::error, "error: timed out"};
  return error_or_cancelled(ec, what);
}

Outcome save_failed(const std::string& path, std::error_code ec) {
  return error_or_cancelled(ec, fmt::format("cannot save {}: {}", path, ec.message()));
}

Outcome error(const std::exception& e) {
  if (const auto* system_error = dynamic_cast<const std::system_error*>(&e))
    return failed(system_error->code(), e.what());
  return {Status::error, fmt::format("error: {}", e.what())};
}

Outcome failed(std::error_code ec, std::exception_ptr thrown) {
  if (!thrown) return failed(ec, ec.message());
  try {
    std::rethrow_exception(thrown);
  } catch (const std::exception& e) {
    return error(e);
  } catch (...) {
    return failed(ec, ec.message());
  }
}

void save_flag(const std::string& path, std::string_view image) {
  int fd = -1;
  do fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int error = errno;
    throw std::system_error(duet::uv_error(-error), "cannot save " + path);
  }
  int error = 0;
  for (std::size_t at = 0; at < image.size() && error == 0;) {
    const ssize_t n = ::write(fd, image.data() + at, image.size() - at);
    if (n >= 0)
      at += static_cast<std::size_t>(n);
    else if (errno != EINTR)
      error = errno;
  }
  if (::close(fd) != 0 && error == 0 && errno != EINTR) error = errno;  // Linux closed it even so
  if (error != 0) {
    ::unlink(path.c_str());  // no partial flag left behind
    throw std::system_error(duet::uv_error(-error), "cannot save " + path);
  }
}

std::vector<std::string> expand_codes(bool every, bool all, const std::vector<std::string>& args, std::size_t limit) {
  std::set<std::string> codes;
  if (every) {
    for (char a = 'A'; a <= 'Z'; ++a)
      for (char b = 'A'; b <= 'Z'; ++b) codes.insert({a, b});
  } else if (all) {
    for (std::string_view cc : kAssignedCodes) codes.emplace(cc);
  } else {
    for (const std::string& arg : args) {
      const std::string cc = upper(arg);
      if (cc.size() == 1 && is_letter(cc[0])) {
        for (char b = 'A'; b <= 'Z'; ++b) codes.insert({cc[0], b});
      } else if (cc.size() == 2 && is_letter(cc[0]) && is_letter(cc[1])) {
        codes.insert(cc);
      } else {
        throw UsageError("*** Usage error: each CC argument must be A to Z or AA to ZZ.");
      }
    }
  }
  std::vector<std::string> sorted(codes.begin(), codes.end());
  if (sorted.size() > limit) sorted.resize(limit);
  return sorted;
}

std::string country_from_metadata(std::string_view metadata_json) {
  const auto json = nlohmann::json::parse(metadata_json, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("country") || !json["country"].is_string())
    throw BadMetadata("bad metadata: no \"country\" name");
  std::string name = json["country"].get<std::string>();
  if (name.empty()) throw BadMetadata("bad metadata: an empty \"country\" name");
  return name;
}

std::string flag_file_name(std::string country) {
  for (char& c : country)
    if (c == ' ' || c == '/' || c == '\0') c = '_';
  if (!country.empty() && country.front() == '.') country.front() = '_';
  return country + ".gif";
}

Options parse_options(int argc, char** argv, std::string program) {
  Options opt;
  opt.program = std::move(program);
  bool all = false, every = false;
  long long limit = -1, max_req = 5;
  std::string server = "LOCAL", out = "downloaded", timeout = "3.1";
  std::vector<std::string> args;

  CLI::App app(opt.program == "flags_names" ? "Download flags named after their countries (flag, then metadata)."
                                            : "Download flags for country codes.",
      opt.program);
  app.add_option("CC", args, "country code or 1st letter (eg. B for BA...BZ)");
  app.add_flag("-a,--all", all, "get all available flags (AD to ZW)");
  app.add_flag("-e,--every", every, "get flags for every possible code (AA...ZZ)");
  auto* limit_option = app.add_option("-l,--limit", limit, "limit to N first codes")->option_text("N");
  app.add_option("-m,--max_req", max_req, "maximum concurrent requests (default=5)")->option_text("CONCURRENT");
  app.add_option("-s,--server", server,
         "server to hit: LOCAL, REMOTE, DELAY, ERROR or an http:// or https:// URL (default=LOCAL)")
      ->option_text("LABEL|URL");
  app.add_option("-o,--output", out, "folder to save the flags in (default=downloaded)")->option_text("DIR");
  app.add_flag("-v,--verbose", opt.verbose, "output detailed progress info");
  app.add_option("--timeout", timeout, "time out each request after SECONDS (default=3.1; 0: never)")
      ->option_text("SECONDS");

  auto usage_error = [&](const std::string& message) {
    fmt::print(stderr,
        "{}\nusage: {} [-h] [-a] [-e] [-l N] [-m CONCURRENT] [-s LABEL|URL] [-o DIR] [-v] [--timeout SECONDS] "
        "[CC ...]\n",
        message, opt.program);
    opt.exit_code = 2;
    return opt;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    opt.exit_code = app.exit(e);
    return opt;
  } catch (const CLI::ParseError& e) {
    return usage_error(fmt::format("*** Usage error: {}", e.what()));
  }
  if (max_req < 1) return usage_error("*** Usage error: --max_req CONCURRENT must be >= 1");
  if (limit_option->count() > 0 && limit < 1) return usage_error("*** Usage error: --limit N must be >= 1");
  if (out.empty()) return usage_error("*** Usage error: --output DIR must not be empty");
  const auto request_timeout = parse_timeout(timeout);
  if (!request_timeout)
    return usage_error(
        fmt::format("*** Usage error: --timeout SECONDS must be a number from 0 (never) to {}", kMaxTimeout));

  const std::string label = upper(server);
  const auto site = std::find_if(std::begin(kSites), std::end(kSites), [&](const Site& s) { return label == s.label; });
  if (site != std::end(kSites)) {
    opt.label = site->label;
    opt.base_url = site->url;
  } else if (server.starts_with("http://") || server.starts_with("https://")) {
    opt.label = "CUSTOM";
    opt.base_url = server;
    while (opt.base_url.ends_with('/')) opt.base_url.pop_back();
  } else {
    return usage_error(
        "*** Usage error: --server LABEL must be one of LOCAL, REMOTE, DELAY, ERROR, or an http(s):// URL");
  }
  try {
    duet::http::Url::parse(opt.base_url + "/xx/xx.gif");
  } catch (const std::exception& e) {
    return usage_error(fmt::format("*** Usage error: cannot use {} ({}): {}", opt.label, opt.base_url, e.what()));
  }
  const std::size_t cut = limit_option->count() == 0 ? SIZE_MAX : static_cast<std::size_t>(limit);
  try {
    opt.codes = expand_codes(every, all, args, cut);
  } catch (const UsageError& e) {
    return usage_error(e.what());
  }
  if (opt.codes.empty()) {
    std::vector<std::string> pop20;
    for (std::size_t at = 0; at < std::strlen(kPop20); at += 3) pop20.emplace_back(kPop20 + at, 2);
    opt.codes = expand_codes(false, false, pop20, cut);
  }
  opt.concurrency = std::min<std::size_t>(static_cast<std::size_t>(max_req), opt.codes.size());
  opt.out_dir = out;
  opt.timeout = *request_timeout;
  opt.ready = true;
  return opt;
}

namespace {

duet::http::ClientOptions client_options(const Options& opt) {
  duet::http::ClientOptions c;
  c.max_connections_per_origin = std::max<std::size_t>(opt.concurrency, 1);  // the semaphore is the real cap
  c.request_timeout = opt.timeout;  // from the call, made once the semaphore lets the download through
  return c;
}

}  // namespace

Job::Job(int argc, char** argv, std::string program)
    : options_(parse_options(argc, argv, std::move(program))),
      client(loop, flags::client_options(options_)),
      semaphore(options_.concurrency),
      progress_bar(options_.codes.size(), !options_.verbose && isatty(STDERR_FILENO)) {
  if (!ready()) return;
  // A folder that cannot be made ends the run before any download, as the book's mkdir does; one that
  // exists but takes no files is reported by each save ("cannot save …: permission denied").
  if (std::error_code ec; !std::filesystem::create_directories(options_.out_dir, ec) && ec) {
    fmt::print(stderr, "*** Cannot create the output folder {}: {}\n", options_.out_dir.string(), ec.message());
    no_folder_ = true;
    return;
  }
  duet::raise_open_file_limit();  // -m 1000 means a thousand sockets
  start_watching_signals();       // before the first line: whoever reads it may press Ctrl-C at once

  const auto& codes = options_.codes;
  fmt::print("{} site: {}\n", options_.label, options_.base_url);
  const std::string list = codes.size() <= 10 ? fmt::format("{}", fmt::join(codes, ", "))
                                              : fmt::format("from {} to {}", codes.front(), codes.back());
  fmt::print("Searching for {} flag{}: {}\n", codes.size(), codes.size() == 1 ? "" : "s", list);
  if (options_.concurrency == 1)
    fmt::print("1 connection will be used.\n");
  else
    fmt::print("{} concurrent connections will be used.\n", options_.concurrency);
  std::fflush(stdout);
  start_ = std::chrono::steady_clock::now();
}

Job::~Job() = default;

duet::http::ClientOptions Job::client_options() const { return flags::client_options(options_); }

std::string Job::flag_url(std::string_view cc) const {
  const std::string lc = lower(cc);
  return fmt::format("{}/{}/{}.gif", options_.base_url, lc, lc);
}

std::string Job::metadata_url(std::string_view cc) const {
  return fmt::format("{}/{}/metadata.json", options_.base_url, lower(cc));
}

std::string Job::save_path(std::string_view file_name) const { return (options_.out_dir / file_name).string(); }

void Job::start_watching_signals() {
  duet::wait_for_signal(
      loop, {SIGINT, SIGTERM}, duet::with_cancellation(signal_wait_.get_token(), [this](std::error_code ec, int) {
        // Called off (every download reported), or a signal that came as the last one did: nothing to stop.
        if (ec || reported_ == options_.codes.size()) return;
        interrupt();
      }));
}

void Job::interrupt() {
  if (interrupted_) return;
  interrupted_ = true;
  signal_wait_.request_stop();  // when output failed, the wait is still on: it must not hold the loop
  progress_bar.stop();          // first: cancelling the waiting callbacks reports each of them at once
  stop.request_stop();
  if (downloads_) downloads_->cancel();
}

void Job::done(std::string_view cc, const Outcome& outcome) {
  switch (outcome.status) {
    case Status::ok:
      ++ok_;
      break;
    case Status::not_found:
      ++not_found_;
      break;
    case Status::error:
      ++errors_;
      break;
    case Status::cancelled:
      return;  // counted at the end, with those that never reported
  }
  finished_one();
  if (options_.verbose) {
    fmt::print("{} {}\n", cc, outcome.detail);
    // Output that can no longer be written (a closed pipe, as in `flags -v | head`) ends the run
    // as Ctrl-C would: downloading on with no one to tell is pointless.
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) interrupt();
  }
}

void Job::finished_one() {
  ++reported_;
  if (reported_ == options_.codes.size()) signal_wait_.request_stop();  // nothing left for Ctrl-C to stop
}

void ProgressBar::start() {
  if (shown_ && total_ > 0) draw(false);
}

void ProgressBar::step() {
  ++done_;
  if (shown_ && !stopped_) draw(done_ >= total_);
}

void ProgressBar::draw(bool last) {
  const auto now = std::chrono::steady_clock::now();
  if (!last && now - last_draw_ < std::chrono::milliseconds(50)) return;
  last_draw_ = now;
  drawn_ = !last;  // a line left open
  const std::size_t shown = std::min(done_, total_), width = 30;
  const std::size_t filled = total_ ? shown * width / total_ : width;
  fmt::print(stderr, "\r{:3}%|{:<{}}| {}/{}{}", total_ ? shown * 100 / total_ : 100, std::string(filled, '#'), width,
      shown, total_, last ? "\n" : "");
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (drawn_ || (shown_ && done_ < total_)) fmt::print(stderr, "\n");  // after a bar cut short, or a ^C
  drawn_ = false;
}

int Job::run() {
  if (!ready()) return exit_code();
  if (options_.codes.empty()) signal_wait_.request_stop();
  progress_bar.start();
  loop.run();
  return final_report();
}

int Job::run(duet::JoinHandle<void> downloads) {
  downloads_ = &downloads;
  // However the task ends — done, cancelled, or failing with a bug — the run is over.
  downloads.on_done([this] { signal_wait_.request_stop(); });
  const int status = run();
  downloads_ = nullptr;
  if (downloads.done()) {
    try {
      downloads.result();  // anything but a cancellation is a bug worth seeing
    } catch (const duet::Cancelled&) {
    }
  }
  return status;
}

int Job::final_report() {
  progress_bar.finish();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  fmt::print("--------------------\n");
  fmt::print("{:3} flag{} downloaded.\n", ok_, ok_ == 1 ? "" : "s");
  if (not_found_) fmt::print("{:3} not found.\n", not_found_);
  if (errors_) fmt::print("{:3} error{}.\n", errors_, errors_ == 1 ? "" : "s");
  if (interrupted_ && reported_ < options_.codes.size())
    fmt::print("{:3} cancelled (interrupted).\n", options_.codes.size() - reported_);
  fmt::print("Elapsed time: {:.2f}s\n", elapsed);
  return 0;
}

}  // namespace flags
