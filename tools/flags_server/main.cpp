// flags_server — the book's three flag servers in one process, on duet's HTTP server.
//
//     flags_server                     LOCAL on :8000, DELAY on :8001, ERROR on :8002
//     flags_server --local-port 0 --delay-port 0 --error-port 0 --seed 7
//     flags_server --tls-cert cert.pem --tls-key key.pem   all three over https
//
// LOCAL answers at once. DELAY holds each answer for a random time in the --delay range (0.5 to 5 s).
// ERROR does the same and answers a share of requests (--error-share, 25%) with `418 I'm a Teapot`.
// Each serves the flag tree under --root (see flag_tree.hpp): GET and HEAD, 404 for a missing flag,
// 400 for a malformed request or a path that tries to leave the tree, 403 for a link out of it, 405 for
// other methods. Connections are kept alive, limited in number (--max-connections per port) and
// dropped when a request (head and body) does not arrive whole within --header-timeout of its first
// byte; see docs/http.md for the rest of what the server bounds. With --tls-cert and --tls-key (PEM
// files, given together) every site speaks https with that certificate (docs/tls.md).
//
// On start it prints one line per server on stdout, `LABEL URL` (with the port it got, for port 0),
// then serves until SIGINT or SIGTERM, which close everything (answers still being delayed are dropped)
// and exit with status 0. --threads N serves every site from N loops, each on its own thread, each
// with a listening socket of its own on the site's port (SO_REUSEPORT): the kernel spreads the
// connections over them; --max-connections is then shared out between the loops. -v logs one line per request on stderr
// as it arrives, with the answer it will get and the delay before it: `DELAY BR 200 2.871s GET /flags/br/br.gif`. Bad
// options exit with status 2; a tree, certificate or key that cannot be read, or a port that cannot be bound, with
// status 1.
#include <fmt/format.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <vector>

#include "duet/cancellation.hpp"
#include "duet/http/server.hpp"
#include "duet/http/server_group.hpp"
#include "duet/loop_thread.hpp"
#include "duet/open_files.hpp"
#include "duet/signal.hpp"
#include "duet/timer.hpp"
#include "flag_tree.hpp"

using namespace std::chrono_literals;
using duet::http::Reply;
using duet::http::Response;
using duet::http::ServerRequest;

namespace flags_server {

/// How long each answer is held back: uniform in [min, max] seconds.
struct DelayRange {
  double min = 0, max = 0;
  bool none() const { return max <= 0; }
};

struct Options {
  std::string root = DUET_DEFAULT_FLAG_ROOT;
  std::string host = "127.0.0.1";
  std::uint16_t local_port = 8000, delay_port = 8001, error_port = 8002;
  std::string delay = "0.5:5";
  double error_share = 0.25;
  std::optional<std::uint64_t> seed;
  std::size_t max_connections = 10'000;
  double header_timeout = 10;
  std::size_t threads = 1;
  bool verbose = false;
  std::string tls_cert, tls_key;  // both set: https
};

std::optional<DelayRange> parse_delay(const std::string& text) {
  try {
    std::size_t used = 0;
    const auto colon = text.find(':');
    DelayRange d;
    d.min = std::stod(text.substr(0, colon), &used);
    if (used != (colon == std::string::npos ? text.size() : colon)) return std::nullopt;
    d.max = d.min;
    if (colon != std::string::npos) {
      const std::string rest = text.substr(colon + 1);
      d.max = std::stod(rest, &used);
      if (used != rest.size()) return std::nullopt;
    }
    if (!(d.min >= 0 && d.max >= d.min && d.max <= 3600)) return std::nullopt;
    return d;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

/// What one of the three sites needs to answer: a label, a delay, a share of teapots.
struct SiteConfig {
  std::string label;
  DelayRange delay;
  double error_share = 0;
};

/// One site's answers on one loop, with that loop's own random sequence (so that traffic to one port
/// or loop never changes what another draws) and its own counts, read once the loops have stopped.
class Answerer {
 public:
  Answerer(duet::Loop& loop, const FlagTree& tree, const SiteConfig& config, std::seed_seq& seeds, bool verbose,
           std::stop_token stop)
      : loop_(loop), tree_(tree), config_(config), rng_(seeds), verbose_(verbose), stop_(std::move(stop)) {}

  std::uint64_t answered() const { return answered_; }
  std::uint64_t teapots() const { return teapots_; }
  /// Answers dropped: cancelled, or still waiting when the loop stopped (its destruction cancels them).
  std::uint64_t dropped() const { return dropped_ + waiting_; }

  void serve(ServerRequest req, Reply reply) {
    // Every request draws the same numbers in the same order, so a seed fixes the sequence of delays
    // and teapots whatever the requests are.
    std::chrono::milliseconds delay{0};
    if (!config_.delay.none()) {
      std::uniform_real_distribution<double> seconds(config_.delay.min, config_.delay.max);
      delay = std::chrono::milliseconds(std::llround(seconds(rng_) * 1000));
    }
    const bool teapot =
        config_.error_share > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < config_.error_share;
    Response res = teapot ? text(418, "I'm a Teapot") : answer(req);
    if (verbose_) log(req, res.status, delay);
    if (delay == 0ms) return send(std::move(res), reply);
    ++waiting_;
    duet::sleep(loop_, delay,
                duet::with_cancellation(
                    stop_, [this, res = std::move(res), reply = std::move(reply)](std::error_code ec) mutable {
                      --waiting_;
                      if (ec) return void(++dropped_);  // cancelled: the server is stopping
                      send(std::move(res), reply);
                    }));
  }

 private:
  Response answer(const ServerRequest& req) const {
    if (req.method != "GET" && req.method != "HEAD") {
      Response res = text(405, "Method Not Allowed");
      res.headers.add("Allow", "GET, HEAD");
      return res;
    }
    const Lookup found = tree_.find(req.target);
    switch (found.status) {
      case Lookup::found: {
        Response res{200, "OK", {}, found.file->body};
        res.headers.add("Content-Type", found.file->content_type);
        return res;
      }
      case Lookup::bad_path:
        return text(400, "Bad Request");
      case Lookup::forbidden:
        return text(403, "Forbidden");
      case Lookup::not_found:
        break;
    }
    return text(404, "Not Found");
  }

  static Response text(int status, const char* reason) {
    Response res{status, reason, {}, fmt::format("{} {}\n", status, reason)};
    res.headers.add("Content-Type", "text/plain; charset=utf-8");
    return res;
  }

  void send(Response res, Reply& reply) {
    ++answered_;
    if (res.status == 418) ++teapots_;
    reply(std::move(res));
  }

  void log(const ServerRequest& req, int status, std::chrono::milliseconds delay) const {
    // The country code from "/flags/br/br.gif", upper-cased, or "--".
    std::string cc = "--";
    if (auto path = relative_path(req.target);
        path && path->starts_with("flags/") && path->size() >= 8 && (path->size() == 8 || (*path)[8] == '/'))
      cc = {static_cast<char>(std::toupper(static_cast<unsigned char>((*path)[6]))),
            static_cast<char>(std::toupper(static_cast<unsigned char>((*path)[7])))};
    fmt::print(stderr, "{} {} {} {:.3f}s {} {}\n", config_.label, cc, status, static_cast<double>(delay.count()) / 1000,
               req.method, req.target);
  }

  duet::Loop& loop_;
  const FlagTree& tree_;
  SiteConfig config_;
  std::mt19937_64 rng_;
  bool verbose_;
  std::stop_token stop_;
  std::uint64_t answered_ = 0, teapots_ = 0, dropped_ = 0, waiting_ = 0;
};

/// One of the three sites: a server on every loop, all on one port, each loop answering with its own
/// Answerer.
class Site {
 public:
  Site(duet::LoopGroup& loops, const FlagTree& tree, const SiteConfig& config, std::uint64_t seed, std::uint32_t index,
       bool verbose, std::stop_token stop, const duet::Endpoint& at, const duet::http::ServerOptions& options)
      : label_(config.label),
        answerers_(loops.size()),
        servers_(
            loops, at,
            [&, next = std::size_t{0}](duet::Loop& loop) mutable {
              // Loop k of site i draws from its own sequence; with one loop, the sequence of earlier versions.
              const std::size_t k = next++;
              std::seed_seq seeds{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                                  static_cast<std::uint32_t>(index + 3 * k)};
              answerers_[k] = std::make_unique<Answerer>(loop, tree, config, seeds, verbose, stop);
              return [a = answerers_[k].get()](ServerRequest req, Reply reply) {
                a->serve(std::move(req), std::move(reply));
              };
            },
            options) {}

  const std::string& label() const { return label_; }
  std::uint16_t port() const { return servers_.local_endpoint().port(); }
  void close() { servers_.close(); }
  /// Totals over the loops: call once they have stopped.
  std::uint64_t answered() const { return sum(&Answerer::answered); }
  std::uint64_t teapots() const { return sum(&Answerer::teapots); }
  std::uint64_t dropped() const { return sum(&Answerer::dropped); }

 private:
  std::uint64_t sum(std::uint64_t (Answerer::*count)() const) const {
    std::uint64_t n = 0;
    for (const auto& a : answerers_) n += ((*a).*count)();
    return n;
  }

  std::string label_;
  std::vector<std::unique_ptr<Answerer>> answerers_;  // made on their loops, one per loop
  duet::http::ServerGroup servers_;
};

std::string url_of(const std::string& host, std::uint16_t port, bool tls) {
  // An "any address" listener is reached through loopback from here.
  const std::string reach = host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "::1" : host;
  return fmt::format("{}://{}/flags", tls ? "https" : "http", duet::Endpoint::parse(reach, port).to_string());
}

int run(const Options& opt, const DelayRange& delay, bool max_connections_set) {
  const FlagTree tree = FlagTree::load(opt.root);

  std::size_t max_connections = opt.max_connections;
  // Each port may use the whole descriptor budget (less a reserve for listeners, the loop and stdio):
  // clients load one site at a time. If all three fill at once, accepting fails with EMFILE and libuv
  // closes the newcomers, which then see a reset.
  const std::size_t files = duet::raise_open_file_limit(), reserve = 64;
  if (const std::size_t fit = files > reserve ? files - reserve : 1; fit < max_connections) {
    if (max_connections_set)
      fmt::print(stderr, "flags_server: the open-file limit allows {} connections, not {}\n", fit, max_connections);
    max_connections = fit;
  }
  duet::http::ServerOptions server_options;
  server_options.max_connections = (max_connections + opt.threads - 1) / opt.threads;  // per loop
  server_options.header_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(opt.header_timeout * 1000));
  server_options.request_timeout = server_options.header_timeout;  // the whole request, body included
  server_options.max_body_bytes = 16 * 1024;                       // it serves GET and HEAD: a body is never needed
  server_options.listen_backlog = 16384;  // the flag programs and http_load open hundreds to thousands at once
  const bool tls = !opt.tls_cert.empty();
  if (tls) {
    server_options.tls =
        duet::TlsServerOptions{.certificate_file = opt.tls_cert, .private_key_file = opt.tls_key, .alpn = {"http/1.1"}};
    try {
      duet::TlsContext::server(*server_options.tls);  // a bad certificate or key is reported as such
    } catch (const duet::TlsError& e) {
      fmt::print(stderr, "flags_server: {}\n", e.what());
      return 1;
    }
  }

  // The sites are served on --threads loops, each on a thread of its own; this thread's loop waits for
  // the signal that stops them.
  duet::LoopGroup loops(opt.threads);
  duet::Loop loop;
  std::stop_source stop;  // cancels the answers still being delayed when the server stops
  std::random_device entropy;
  const std::uint64_t seed = opt.seed ? *opt.seed : (std::uint64_t{entropy()} << 32 | entropy());

  const std::vector<std::pair<SiteConfig, std::uint16_t>> configs = {
      {{"LOCAL", {}, 0}, opt.local_port},
      {{"DELAY", delay, 0}, opt.delay_port},
      {{"ERROR", delay, opt.error_share}, opt.error_port},
  };
  std::vector<std::unique_ptr<Site>> sites;
  for (std::uint32_t i = 0; i < configs.size(); ++i) {
    const auto& [config, port] = configs[i];
    const duet::Endpoint at = duet::Endpoint::parse(opt.host, port);
    try {
      sites.push_back(
          std::make_unique<Site>(loops, tree, config, seed, i, opt.verbose, stop.get_token(), at, server_options));
    } catch (const std::system_error& e) {
      fmt::print(stderr, "flags_server: cannot listen on {} for {}: {}\n", at.to_string(), config.label,
                 e.code().message());
      return 1;
    }
  }

  // Signals are caught before the first line is printed: whoever reads it may send one at once.
  duet::wait_for_signal(loop, {SIGINT, SIGTERM}, [&](std::error_code ec, int signum) {
    if (ec) return;
    fmt::print(stderr, "flags_server: {}, stopping\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    for (auto& site : sites) site->close();  // first: an answer dropped afterwards has no connection to go to
    stop.request_stop();
  });
  for (const auto& site : sites) fmt::print("{} {}\n", site->label(), url_of(opt.host, site->port(), tls));
  std::fflush(stdout);
  fmt::print(stderr,
             "flags_server: {} files ({} KB) from {}; DELAY and ERROR wait {}-{} s, ERROR answers {:.0f}% with 418; "
             "seed {}. Ctrl-C stops.\n",
             tree.files(), (tree.bytes() + 1023) / 1024, opt.root, delay.min, delay.max, opt.error_share * 100, seed);

  loop.run();
  loops.join();  // the counts are read once no loop runs
  for (const auto& site : sites)
    fmt::print(stderr, "flags_server: {} answered {} request(s){}{}\n", site->label(), site->answered(),
               site->teapots() ? fmt::format(", {} with 418", site->teapots()) : "",
               site->dropped() ? fmt::format("; dropped {} still waiting", site->dropped()) : "");
  return 0;
}

}  // namespace flags_server

int main(int argc, char** argv) {
  using namespace flags_server;
  Options opt;
  CLI::App app("Serves a flag tree as the book's LOCAL, DELAY and ERROR sites, on three ports.", "flags_server");
  app.add_option("--root", opt.root, "the tree to serve: ROOT/flags/{cc}/{cc}.gif and metadata.json")
      ->capture_default_str();
  app.add_option("--host", opt.host, "the numeric address to listen on")->capture_default_str();
  app.add_option("--local-port", opt.local_port, "LOCAL's port (0: any free port)")->capture_default_str();
  app.add_option("--delay-port", opt.delay_port, "DELAY's port")->capture_default_str();
  app.add_option("--error-port", opt.error_port, "ERROR's port")->capture_default_str();
  app.add_option("--delay", opt.delay, "DELAY's and ERROR's wait in seconds, MIN:MAX or a fixed S")
      ->capture_default_str();
  app.add_option("--error-share", opt.error_share, "the share of ERROR's answers that are 418 (0 to 1)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--seed", opt.seed, "makes the delays and errors repeatable");
  auto* max_conn = app.add_option("--max-connections", opt.max_connections, "open connections allowed per port")
                       ->check(CLI::PositiveNumber)
                       ->capture_default_str();
  app.add_option("--header-timeout", opt.header_timeout,
                 "seconds a client has to send a whole request, from its first byte")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();
  app.add_option("--threads", opt.threads, "loops to serve on, each on a thread of its own (one port each site)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{256}))
      ->capture_default_str();
  app.add_flag("-v,--verbose", opt.verbose, "log one line per answer on stderr");
  auto* cert = app.add_option("--tls-cert", opt.tls_cert, "serve https with this certificate (PEM, chain after it)");
  auto* key = app.add_option("--tls-key", opt.tls_key, "the certificate's private key (PEM)");
  cert->needs(key);
  key->needs(cert);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the error and a pointer to --help
    return 2;
  }
  // CLI11's range checks let NaN through (it compares false with everything).
  if (!std::isfinite(opt.error_share) || !std::isfinite(opt.header_timeout)) {
    fmt::print(stderr, "flags_server: --error-share and --header-timeout take finite numbers\n");
    return 2;
  }
  const auto delay = parse_delay(opt.delay);
  if (!delay) {
    fmt::print(stderr, "flags_server: --delay takes seconds as MIN:MAX or S (0 to 3600, MIN <= MAX), not '{}'\n",
               opt.delay);
    return 2;
  }
  try {
    duet::Endpoint::parse(opt.host, 0);
  } catch (const std::exception&) {
    fmt::print(stderr, "flags_server: --host takes a numeric IPv4 or IPv6 address, not '{}'\n", opt.host);
    return 2;
  }
  try {
    return run(opt, *delay, max_conn->count() > 0);
  } catch (const std::exception& e) {
    fmt::print(stderr, "flags_server: {}\n", e.what());
    return 1;
  }
}
