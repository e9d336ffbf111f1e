// http_load — GET one URL many times with a fixed number of requests in flight, through either face,
// and print one line of figures.
//
//   http_load --face callbacks|coroutines --url URL --requests N --concurrency C
//
// Prints: face=… requests=… ok=… errors=… seconds=… req_per_s=… rss_mb_at_10pct=… rss_mb_at_end=…
// peak_rss_mb=…  (RSS at 10% and at the end of the run shows whether memory stays flat.)
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "duet/duet.hpp"
#include "duet/http/client.hpp"

namespace {

struct Options {
  std::string face = "callbacks";
  std::string url;
  long requests = 100'000;
  int concurrency = 100;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(
      stderr,
      "*** Usage error: %s\nusage: http_load --face callbacks|coroutines --url URL --requests N --concurrency C\n",
      why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    auto arg = std::string(argv[i]);
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--face")
      o.face = value();
    else if (arg == "--url")
      o.url = value();
    else if (arg == "--requests")
      o.requests = std::atol(value().c_str());
    else if (arg == "--concurrency")
      o.concurrency = std::atoi(value().c_str());
    else
      usage(("unknown option " + arg).c_str());
  }
  if (o.url.empty()) usage("--url is required");
  if (o.face != "callbacks" && o.face != "coroutines") usage("--face must be callbacks or coroutines");
  if (o.requests < 1 || o.concurrency < 1) usage("--requests and --concurrency must be at least 1");
  return o;
}

double rss_mb() {  // current resident set size
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

struct Stats {
  long started = 0, finished = 0, ok = 0, errors = 0;
  long total = 0;
  double rss_at_10pct = 0;
  void done(bool success) {
    ++finished;
    (success ? ok : errors) += 1;
    if (finished == total / 10) rss_at_10pct = rss_mb();
  }
};

// Callback face: C chains, each starting its next request from the previous one's callback.
void chain(duet::http::Client& client, const std::string& url, Stats& stats) {
  if (stats.started == stats.total) return;
  ++stats.started;
  client.get(url, [&client, &url, &stats](std::error_code ec, duet::http::Response res) {
    stats.done(!ec && res.status == 200);
    chain(client, url, stats);
  });
}

// Coroutine face: C workers, each awaiting one request after another.
duet::Task<> worker(duet::http::Client& client, const std::string& url, Stats& stats) {
  while (stats.started < stats.total) {
    ++stats.started;
    bool success = false;
    try {
      duet::http::Response res = co_await client.get(url);
      success = res.status == 200;
    } catch (const std::system_error&) {
    }
    stats.done(success);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  duet::Loop loop;
  duet::http::ClientOptions copts;
  copts.max_connections_per_origin = static_cast<std::size_t>(o.concurrency);
  duet::http::Client client(loop, copts);
  Stats stats;
  stats.total = o.requests;

  const auto start = std::chrono::steady_clock::now();
  if (o.face == "callbacks") {
    for (int i = 0; i < o.concurrency; ++i) chain(client, o.url, stats);
    loop.run();
  } else {
    std::vector<duet::Task<>> workers;
    for (int i = 0; i < o.concurrency; ++i) workers.push_back(worker(client, o.url, stats));
    duet::run(loop, [](std::vector<duet::Task<>> ws) -> duet::Task<> {
      co_await duet::when_all(std::move(ws));
    }(std::move(workers)));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "face=%s requests=%ld ok=%ld errors=%ld seconds=%.3f req_per_s=%.0f rss_mb_at_10pct=%.1f rss_mb_at_end=%.1f "
      "peak_rss_mb=%.1f\n",
      o.face.c_str(), stats.finished, stats.ok, stats.errors, seconds, static_cast<double>(stats.finished) / seconds,
      stats.rss_at_10pct, rss_mb(), peak_rss_mb());
  return stats.errors == 0 ? 0 : 1;
}
