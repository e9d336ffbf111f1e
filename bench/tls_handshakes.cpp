// tls_handshakes — new connections to an https server, one TLS handshake each, with and without
// session resumption: handshakes per second and the client's CPU per handshake.
//
//   tls_handshakes --url https://HOST:PORT/PATH [--connections N] [--parallel P] [--resume on|off]
//                  [--close notify|abrupt]
//
// Makes N connections (default 2,000), P at a time (default 1: one after the other). Each is a TCP
// connect, a client handshake (`duet::tls_connect`, verifying the server's certificate against the
// system's trust store: `SSL_CERT_FILE=ca.pem` names a private CA), one GET of PATH with
// `Connection: close`, read to the end (a TLS 1.3 server's session tickets arrive meanwhile, so the
// next connection has one to offer), and a close: `TlsStream::shutdown` (close_notify; a failure, as
// when the server has already gone, is ignored) then `close`, or with `--close abrupt` `abort` (no
// close_notify at all: the session must stay resumable all the same). With `--resume on` (the
// default; the context's `TlsClientOptions::session_resumption`) every connection after the first
// offers the last session the server gave; `TlsStream::session_reused()` tells whether the server took
// it, and the count of those that did is printed. An http:// URL does the same without TLS: the cost
// of the rest. Prints:
//
//   face=handshakes resume=on|off|plain close=notify|abrupt connections=… reused=… errors=… seconds=… per_s=…
//   cpu_us_per_conn=…
//
// cpu_us_per_conn is this process's CPU time (user + system) over the run, per connection: TCP, TLS,
// the request and the response together.
//
// Exit status: 0 when every connection got a 200, 1 otherwise, 2 on a usage error.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_cli.hpp"
#include "duet/duet.hpp"
#include "duet/http/url.hpp"
#include "duet/tls.hpp"

namespace {

using namespace std::chrono_literals;

struct Options {
  duet::http::Url url;
  long connections = 2000;
  long parallel = 1;
  bool resume = true;
  bool close_notify = true;
};

constexpr const char* kUsage =
    "tls_handshakes --url https://HOST:PORT/PATH [--connections N] [--parallel P] [--resume on|off] [--close "
    "notify|abrupt]";

[[noreturn]] void usage(const std::string& why) { bench::usage_error(kUsage, why); }

long number(const std::string& text, const std::string& option) { return bench::whole_number(kUsage, text, option); }

Options parse(int argc, char** argv) {
  Options o;
  bool have_url = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + arg);
      return argv[++i];
    };
    if (arg == "--url") {
      std::error_code ec;
      std::string why;
      auto url = duet::http::Url::parse(value(), ec, &why);
      if (!url) usage("bad --url: " + why);
      o.url = *url;
      have_url = true;
    } else if (arg == "--connections") {
      o.connections = number(value(), arg);
    } else if (arg == "--parallel") {
      o.parallel = number(value(), arg);
    } else if (arg == "--close") {
      const std::string v = value();
      if (v != "notify" && v != "abrupt") usage("--close must be notify or abrupt");
      o.close_notify = v == "notify";
    } else if (arg == "--resume") {
      const std::string v = value();
      if (v != "on" && v != "off") usage("--resume must be on or off");
      o.resume = v == "on";
    } else {
      usage("unknown option " + arg);
    }
  }
  if (!have_url) usage("--url is required");
  return o;
}

struct Run {
  const Options& options;
  duet::Loop& loop;
  duet::TlsContext tls;
  duet::Endpoint server;
  std::string request;
  long started = 0, reused = 0, errors = 0;

  void fail(const std::string& why) {
    if (++errors <= 5) std::fprintf(stderr, "tls_handshakes: %s\n", why.c_str());
  }
};

/// Sends the request and reads the response to its end; true for a 200. A TLS server that closes
/// without close_notify ends the stream with errc::tls_truncated, which is as good as the end here.
template <class S>
duet::Task<bool> exchange(Run& run, S& stream) {
  co_await stream.write(run.request);
  std::string head;
  char buffer[4096];
  for (;;) {
    std::size_t n = 0;
    try {
      n = co_await stream.read(std::span<char>(buffer));
    } catch (const std::system_error& e) {
      if (e.code() != duet::errc::tls_truncated) throw;
    }
    if (n == 0) break;
    if (head.size() < 16) head.append(buffer, std::min<std::size_t>(n, 16));
  }
  co_return head.starts_with("HTTP/1.1 200");
}

/// One worker: connections one after the other until the run has made all of them.
duet::Task<> worker(Run& run) {
  while (run.started < run.options.connections) {
    ++run.started;
    try {
      duet::TcpStream tcp = co_await duet::connect(run.loop, run.server, 5s);
      bool ok = false;
      if (run.options.url.secure()) {
        duet::TlsStream tls = co_await duet::tls_connect(std::move(tcp), run.tls, run.options.url.host, 10s);
        if (tls.session_reused()) ++run.reused;
        ok = co_await exchange(run, tls);
        if (run.options.close_notify) {
          try {
            co_await tls.shutdown();
          } catch (const std::system_error&) {  // the server closed first: close_notify went, or not
          }
        } else {
          tls.abort();  // no close_notify at all
        }
      } else {
        ok = co_await exchange(run, tcp);
      }
      if (!ok) run.fail("a response other than 200");
    } catch (const std::exception& e) {
      run.fail(e.what());
    }
  }
}

duet::Task<> all_workers(Run& run) {
  std::vector<duet::Task<>> workers;
  for (long i = 0; i < std::min(run.options.parallel, run.options.connections); ++i) workers.push_back(worker(run));
  co_await duet::when_all(std::move(workers));
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  duet::Loop loop;
  Run run{o, loop, duet::TlsContext::client({.session_resumption = o.resume}), duet::Endpoint(),
          "GET " + o.url.target() + " HTTP/1.1\r\nHost: " + o.url.authority() + "\r\nConnection: close\r\n\r\n"};
  run.server =
      duet::run(loop, [](duet::Loop& loop, std::string host, std::uint16_t port) -> duet::Task<duet::Endpoint> {
        co_return (co_await duet::resolve(loop, std::move(host), port)).front();
      }(loop, o.url.host, o.url.port));

  const double cpu_before = bench::cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  duet::run(loop, all_workers(run));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = bench::cpu_seconds() - cpu_before;
  const char* resume = !o.url.secure() ? "plain" : o.resume ? "on" : "off";
  std::printf(
      "face=handshakes resume=%s close=%s connections=%ld reused=%ld errors=%ld seconds=%.3f per_s=%.0f "
      "cpu_us_per_conn=%.1f\n",
      resume, o.close_notify ? "notify" : "abrupt", run.started, run.reused, run.errors, seconds,
      static_cast<double>(run.started) / seconds, cpu * 1e6 / static_cast<double>(run.started));
  return run.errors == 0 ? 0 : 1;
}
