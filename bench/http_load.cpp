// http_load — download flags the way the flag programs do, many times over, through either face, and
// print one line of figures.
//
//   http_load --face callbacks|coroutines --url BASE --requests N --concurrency C [--codes every|all]
//             [--save DIR] [--warmup W] [--threads T]
//
// Request i fetches {BASE}/{cc}/{cc}.gif for the i-th code, cycling over the codes (`all`: ISO 3166's
// assigned codes, the default; `every`: AA..ZZ). All N requests are started at once and a
// `duet::Semaphore` lets C of them through at a time, as in the flag programs; with --save each flag
// is saved to DIR/{CC}.gif with write_file_atomic. With --warmup, W requests are made the same way
// first, uncounted, and the clock starts once they are done, over the connections they left in the
// pool. BASE may be https://: the client verifies the server against the system's trust store, so
// `SSL_CERT_FILE=ca.pem` makes it trust a private CA. With --threads T the requests, the concurrency and
// the warm-up are shared out between T threads, each with its own Loop, Client and Semaphore (T
// loops, nothing shared between them); the clock starts once every thread has warmed up. Prints:
//
//   face=… requests=… ok=… notfound=… errors=… seconds=… req_per_s=… peak_rss_mb=… cpu_us_per_req=…
//
// cpu_us_per_req is this process's own CPU time (user + system) over the run, per request: what the
// client costs, apart from the server it shares the machine with.
//
// Exit status: 0 when no request failed (404s are not failures), 1 otherwise, 2 on a usage error.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <latch>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_cli.hpp"
#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "flags.hpp"  // flags::expand_codes, shared with the flag programs

namespace {

struct Options {
  std::string face = "callbacks";
  std::string base;
  long requests = 100'000;
  long concurrency = 100;
  std::string codes = "all";
  std::string save_dir;
  long warmup = 0;
  long threads = 1;
};

constexpr const char* kUsage =
    "http_load --face callbacks|coroutines --url BASE --requests N --concurrency C [--codes every|all] [--save DIR] "
    "[--warmup W] [--threads T]";

[[noreturn]] void usage(const std::string& why) { bench::usage_error(kUsage, why); }

long number(const std::string& text, const std::string& option) { return bench::whole_number(kUsage, text, option); }

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + arg);
      return argv[++i];
    };
    if (arg == "--face")
      o.face = value();
    else if (arg == "--url")
      o.base = value();
    else if (arg == "--requests")
      o.requests = number(value(), arg);
    else if (arg == "--concurrency")
      o.concurrency = number(value(), arg);
    else if (arg == "--codes")
      o.codes = value();
    else if (arg == "--save")
      o.save_dir = value();
    else if (arg == "--warmup")
      o.warmup = number(value(), arg);
    else if (arg == "--threads")
      o.threads = number(value(), arg);
    else
      usage("unknown option " + arg);
  }
  if (o.base.empty()) usage("--url is required");
  while (o.base.ends_with('/')) o.base.pop_back();
  if (o.face != "callbacks" && o.face != "coroutines") usage("--face must be callbacks or coroutines");
  if (o.codes != "every" && o.codes != "all") usage("--codes must be every or all");
  if (o.threads < 1 || o.threads > 256) usage("--threads must be 1 to 256");
  if (o.concurrency < o.threads) usage("--concurrency must be at least --threads (each thread keeps one in flight)");
  return o;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct Load {
  const Options& options;
  duet::Loop& loop;
  duet::http::Client& client;
  duet::Semaphore semaphore;
  std::vector<std::string> codes;
  long first = 0;  // this thread's first request number: its requests are first, first + 1, ...
  long ok = 0, not_found = 0, errors = 0;

  const std::string& code(long i) const { return codes[static_cast<std::size_t>(first + i) % codes.size()]; }
  std::string url(long i) const {
    const std::string cc = lower(code(i));
    return options.base + "/" + cc + "/" + cc + ".gif";
  }
  std::string path(long i) const { return options.save_dir + "/" + code(i) + ".gif"; }
  void count(int status) { (status == 200 ? ok : status == 404 ? not_found : errors) += 1; }
  /// A failed request: counted, and its reason printed on stderr (the first few only).
  void fail(long i, const std::string& reason) {
    if (++errors <= 5) std::fprintf(stderr, "http_load: %s: %s\n", url(i).c_str(), reason.c_str());
  }
};

// Callback face: every request is started at once; each waits for a permit, then runs its chain.
void fetch_one(Load& load, long i) {
  load.semaphore.acquire([&load, i](std::error_code) {
    load.client.get(load.url(i), [&load, i](std::error_code ec, duet::http::Response res) {
      if (ec || res.status != 200 || load.options.save_dir.empty()) {
        load.semaphore.release();
        return ec ? load.fail(i, res.reason) : load.count(res.status);
      }
      duet::fs::write_file_atomic(load.loop, load.path(i), std::move(res.body), [&load, i](std::error_code ec) {
        load.semaphore.release();
        ec ? load.fail(i, "cannot save: " + ec.message()) : load.count(200);
      });
    });
  });
}

// Coroutine face: one task per request, all started at once; each waits for a permit.
duet::Task<> fetch_one_task(Load& load, long i) {
  auto permit = co_await load.semaphore.acquire();
  try {
    duet::http::Response res = co_await load.client.get(load.url(i));
    if (res.status == 200 && !load.options.save_dir.empty())
      co_await duet::fs::write_file_atomic(load.loop, load.path(i), std::move(res.body));
    load.count(res.status);
  } catch (const std::system_error& e) {
    load.fail(i, e.what());
  }
}

/// Makes `n` requests through the chosen face, then returns (idle pooled connections do not keep the
/// loop running).
void make_requests(Load& load, long n) {
  load.ok = load.not_found = load.errors = 0;
  if (load.options.face == "callbacks") {
    for (long i = 0; i < n; ++i) fetch_one(load, i);
    load.loop.run();
    return;
  }
  std::vector<duet::Task<>> tasks;
  tasks.reserve(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) tasks.push_back(fetch_one_task(load, i));
  duet::run(load.loop, [](std::vector<duet::Task<>> all) -> duet::Task<> {
    co_await duet::when_all(std::move(all));
  }(std::move(tasks)));
}

/// Thread `k`'s share of `total`, out of `threads`.
long share(long total, long threads, long k) { return total / threads + (k < total % threads ? 1 : 0); }

/// What one thread's loop made of its share.
struct Counts {
  long ok = 0, not_found = 0, errors = 0;
};

/// One thread's share of the load, on a Loop of its own: the warm-up, then (once `go` says so) the
/// counted requests.
Counts run_share(const Options& o, long k, std::latch& warmed, std::latch& go) {
  struct Arrival {  // counted once, even when the warm-up throws: the others must not wait for it
    std::latch& warmed;
    bool counted = false;
    void now() {
      if (!std::exchange(counted, true)) warmed.count_down();
    }
    ~Arrival() { now(); }
  } arrival{warmed};
  duet::Loop loop;
  const long concurrency = share(o.concurrency, o.threads, k);
  duet::http::ClientOptions copts;
  copts.max_connections_per_origin = static_cast<std::size_t>(concurrency);
  copts.header_timeout = std::chrono::minutes(5);  // a DELAY server with everything in flight is slow
  duet::http::Client client(loop, copts);
  Load load{o, loop, client, duet::Semaphore(static_cast<std::size_t>(concurrency)),
            flags::expand_codes(o.codes == "every", o.codes == "all", {}, SIZE_MAX)};
  for (long j = 0; j < k; ++j) load.first += share(o.requests, o.threads, j);
  if (const long warmup = share(o.warmup, o.threads, k); warmup > 0) make_requests(load, warmup);
  arrival.now();
  go.wait();
  make_requests(load, share(o.requests, o.threads, k));
  return {load.ok, load.not_found, load.errors};
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  duet::raise_open_file_limit();  // C connections need C descriptors
  if (!o.save_dir.empty()) std::filesystem::create_directories(o.save_dir);

  // Thread 0 is this one; the others start here and wait, warmed up, for the clock.
  std::latch warmed(o.threads), go(1);
  std::vector<Counts> counts(static_cast<std::size_t>(o.threads));
  std::vector<std::thread> threads;
  std::atomic<bool> failed{false};
  auto run_one = [&](long k) {
    try {
      counts[static_cast<std::size_t>(k)] = run_share(o, k, warmed, go);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "http_load: %s\n", e.what());
      failed = true;
    }
  };
  for (long k = 1; k < o.threads; ++k) threads.emplace_back(run_one, k);
  double cpu_before = 0;
  std::chrono::steady_clock::time_point start;
  std::thread clock([&] {
    warmed.wait();
    cpu_before = bench::cpu_seconds();
    start = std::chrono::steady_clock::now();
    go.count_down();
  });
  run_one(0);
  for (auto& t : threads) t.join();
  clock.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = bench::cpu_seconds() - cpu_before;
  Counts total;
  for (const Counts& c : counts) {
    total.ok += c.ok;
    total.not_found += c.not_found;
    total.errors += c.errors;
  }
  const long finished = total.ok + total.not_found + total.errors;
  std::printf(
      "face=%s requests=%ld ok=%ld notfound=%ld errors=%ld seconds=%.3f req_per_s=%.0f peak_rss_mb=%.1f "
      "cpu_us_per_req=%.2f threads=%ld\n",
      o.face.c_str(), finished, total.ok, total.not_found, total.errors, seconds,
      static_cast<double>(finished) / seconds, bench::peak_rss_mb(),
      cpu * 1e6 / static_cast<double>(std::max(finished, 1L)), o.threads);
  return total.errors == 0 && !failed ? 0 : 1;
}
