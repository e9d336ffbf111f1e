// Soak: a long run of requests with every kind of outcome mixed in, through both faces of the client,
// against flags_server and against servers that misbehave. Nothing may accumulate: the client's and
// the server's open file descriptors and resident memory must stay within a bound for the whole run.
//
// Hidden from the ordinary run ([.soak]); CTest runs it twice: `soak_short` (DUET_SOAK_REQUESTS=30000)
// with the other tests under every preset, and `soak` (1,000,000 requests, label `soak`) only when
// asked: `ctest --preset soak`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "flags_server_process.hpp"
#include "scripted_server.hpp"
#include "support.hpp"

using duet::Task;
using duet::http::Client;
using duet::http::Response;
using duet::test::FlagsServer;
using duet::test::ScriptedServer;

namespace {

std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

/// Resident memory in KiB (VmRSS).
std::size_t rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("VmRSS:")) return std::stoul(line.substr(6));
  return 0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;  // the sanitizers hold freed memory back: RSS says nothing there
#else
constexpr bool kSanitized = false;
#endif

/// What request `i` asks for, and what it must end in.
enum class Expect { ok, not_found, ok_or_teapot, failure };

struct Plan {
  std::string url;
  Expect expect;
};

struct Counts {
  std::size_t ok = 0, not_found = 0, teapot = 0, failed = 0, wrong = 0;
  std::size_t total() const { return ok + not_found + teapot + failed + wrong; }
};

void tally(Counts& c, Expect expect, std::error_code ec, const Response& res) {
  if (ec) {
    (expect == Expect::failure ? c.failed : c.wrong)++;
    if (res.reason.empty()) c.wrong++;  // a failure says why
    return;
  }
  if (res.status == 200 && (expect == Expect::ok || expect == Expect::ok_or_teapot) && res.body.size() > 0)
    c.ok++;
  else if (res.status == 404 && expect == Expect::not_found)
    c.not_found++;
  else if (res.status == 418 && expect == Expect::ok_or_teapot)
    c.teapot++;
  else
    c.wrong++;
}

}  // namespace

TEST_CASE("soak: requests with mixed errors through both faces; descriptors and memory stay bounded", "[.soak]") {
  const char* env = std::getenv("DUET_SOAK_REQUESTS");
  const std::size_t total = env ? std::stoul(env) : 30'000;
  constexpr std::size_t kInFlight = 32;  // half callback chains, half coroutines

  FlagsServer flags({"--delay", "0", "--error-share", "0.3", "--seed", "7"});
  duet::Loop loop;
  // Misbehaviour by connection: reset mid-body, truncated, not HTTP, and a good answer between them.
  ScriptedServer rogue(loop, [](std::size_t connection, std::size_t, const std::string&) {
    using Step = ScriptedServer::Step;
    const std::string head_of_100 = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    switch (connection % 3) {
      case 0:
        return Step{head_of_100 + std::string(40, 'r'), false, true};  // reset (or end) mid-body
      case 1:
        return Step{head_of_100 + std::string(40, 't'), true};  // truncated
      default:
        return Step{"HTTP/1.1 2x0 Bogus\r\n\r\n", true};  // not HTTP
    }
  });
  rogue.forget_requests();
  const duet::test::RefusingPort refusing;
  const std::string refused = "http://127.0.0.1:" + std::to_string(refusing.port()) + "/flags/br/br.gif";
  const std::vector<std::string> codes = {"br", "cn", "de", "fr", "in", "jp", "us", "id"};

  auto plan = [&](std::size_t i) -> Plan {
    const std::string& cc = codes[(i / 10) % codes.size()];
    switch (i % 10) {
      case 5:
        return {flags.url("LOCAL", "/xx/x" + cc + ".gif"), Expect::not_found};
      case 6:
      case 7:
        return {flags.url("ERROR", "/" + cc + "/" + cc + ".gif"), Expect::ok_or_teapot};
      case 8:
        return {rogue.url("/flags/" + cc), Expect::failure};
      case 9:
        return {refused, Expect::failure};
      default:
        return {flags.url("LOCAL", "/" + cc + "/" + cc + ".gif"), Expect::ok};
    }
  };

  duet::http::ClientOptions options;
  options.max_connections_per_origin = kInFlight;
  auto client = std::make_unique<Client>(loop, options);
  Counts counts;
  std::size_t next = 0, done = 0;
  const pid_t self = ::getpid(), server = flags.process().pid();
  const std::size_t fds_before = open_fds(self);
  std::size_t max_fds = 0, max_server_fds = 0, rss_warm = 0, rss_max = 0, server_rss_warm = 0, server_rss_max = 0;

  auto sample = [&] {  // every 1,000 requests; the bounds are judged after the first 10%
    max_fds = std::max(max_fds, open_fds(self));
    max_server_fds = std::max(max_server_fds, open_fds(server));
    if (done < total / 10) return;
    const std::size_t rss = rss_kib(self), server_rss = rss_kib(server);
    if (rss_warm == 0) rss_warm = rss, server_rss_warm = server_rss;
    rss_max = std::max(rss_max, rss);
    server_rss_max = std::max(server_rss_max, server_rss);
  };
  auto finished_one = [&] {
    if (++done % 1000 == 0) sample();
  };

  // The callback face: each chain issues its next request from the previous one's callback.
  std::function<void()> chain = [&] {
    if (next >= total) return;
    const std::size_t i = next++;
    Plan p = plan(i);
    client->get(p.url, [&, expect = p.expect](std::error_code ec, Response res) {
      tally(counts, expect, ec, res);
      finished_one();
      chain();
    });
  };
  // The coroutine face: each worker awaits its requests one after another.
  auto worker = [&]() -> Task<void> {
    while (next < total) {
      const std::size_t i = next++;
      Plan p = plan(i);
      std::error_code ec;
      Response res;
      try {
        res = co_await client->get(p.url);
      } catch (const duet::http::RequestError& e) {
        ec = e.code();
        res.reason = e.what();
      }
      tally(counts, p.expect, ec, res);
      finished_one();
    }
  };
  std::vector<duet::JoinHandle<void>> workers;
  for (std::size_t k = 0; k < kInFlight / 2; ++k) {
    chain();
    workers.push_back(duet::spawn(loop, worker()));
  }
  while (done < total) loop.run_once();  // (the rogue server's listener would keep run() going)
  while (!std::all_of(workers.begin(), workers.end(), [](auto& w) { return w.done(); })) loop.run_once();
  for (auto& w : workers) w.result();

  INFO("requests " << total << ": ok " << counts.ok << ", 404 " << counts.not_found << ", 418 " << counts.teapot
                   << ", failed " << counts.failed << ", wrong " << counts.wrong);
  INFO("client fds: before " << fds_before << ", most " << max_fds << "; flags_server fds: most " << max_server_fds);
  INFO("client RSS KiB: after 10% " << rss_warm << ", most " << rss_max << "; flags_server RSS KiB: after 10% "
                                    << server_rss_warm << ", most " << server_rss_max);
  std::size_t planned_not_found = 0, planned_failures = 0;
  for (std::size_t i = 0; i < total; ++i) {
    const Expect e = plan(i).expect;
    planned_not_found += e == Expect::not_found;
    planned_failures += e == Expect::failure;
  }
  CHECK(counts.total() == total);
  CHECK(counts.wrong == 0);
  CHECK(counts.ok > total / 2);
  CHECK(counts.not_found == planned_not_found);
  CHECK(counts.teapot > 0);
  CHECK(counts.failed == planned_failures);
  // Descriptors: the loop's own, and at most one connection per request in flight to each origin.
  CHECK(max_fds <= fds_before + 4 * kInFlight);
  CHECK(max_server_fds <= 16 + 2 * kInFlight);
  if (!kSanitized) {  // memory: what the first 10% needed is all the run may ever need, give or take
    CHECK(rss_max <= rss_warm + 8 * 1024);
    CHECK(server_rss_max <= server_rss_warm + 8 * 1024);
  }
  client.reset();
  rogue.close();
  loop.run();
  CHECK(open_fds(self) <= fds_before);  // every connection closed
  std::printf(
      "soak: %zu requests (ok %zu, 404 %zu, 418 %zu, failed %zu); client fds %zu -> most %zu, RSS KiB "
      "%zu -> most %zu; flags_server fds most %zu, RSS KiB %zu -> most %zu\n",
      total, counts.ok, counts.not_found, counts.teapot, counts.failed, fds_before, max_fds, rss_warm, rss_max,
      max_server_fds, server_rss_warm, server_rss_max);
}
