#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>

#include "duet/dns.hpp"
#include "duet/offload.hpp"
#include "duet/random.hpp"
#include "duet/spawn.hpp"
#include "duet/task.hpp"
#include "duet/timer.hpp"
#include "support.hpp"

namespace {

/// Runs `task` on `loop`; the error it throws (or success).
template <class T>
std::error_code thrown_by(duet::Loop& loop, duet::Task<T> task) {
  try {
    duet::run(loop, std::move(task));
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

duet::Task<duet::NameInfo> name_of(duet::Loop& loop, duet::Endpoint ep) {
  co_return co_await duet::reverse_resolve(loop, ep);
}

duet::Task<std::string> random_from(duet::Loop& loop, std::size_t n) { co_return co_await duet::random_bytes(loop, n); }

}  // namespace

TEST_CASE("resolve finds localhost, with the port", "[dns]") {
  duet::Loop loop;
  std::optional<std::error_code> result;
  std::vector<duet::Endpoint> found;
  duet::resolve(loop, "localhost", 8080, [&](std::error_code ec, std::vector<duet::Endpoint> eps) {
    result = ec;
    found = std::move(eps);
  });
  loop.run();
  REQUIRE(result);
  REQUIRE_FALSE(*result);
  REQUIRE_FALSE(found.empty());
  bool loopback = false;
  for (auto& ep : found) {
    CHECK(ep.port() == 8080);
    loopback = loopback || ep.address() == "127.0.0.1" || ep.address() == "::1";
  }
  CHECK(loopback);
}

TEST_CASE("resolve passes numeric addresses through", "[dns]") {
  duet::Loop loop;
  std::vector<duet::Endpoint> found;
  duet::resolve(loop, "::1", 443, [&](std::error_code ec, std::vector<duet::Endpoint> eps) {
    REQUIRE_FALSE(ec);
    found = std::move(eps);
  });
  loop.run();
  REQUIRE(found.size() == 1);
  CHECK(found[0].to_string() == "[::1]:443");
  CHECK(found[0] == duet::Endpoint::parse("::1", 443));
}

TEST_CASE("a numeric address resolves on the loop's next turn, without the thread pool", "[dns]") {
  duet::Loop loop;
  // Occupy every thread of libuv's pool until the numeric lookup has answered (or 5 s have passed,
  // so that a lookup that waits for the pool ends the test with a failure instead of a hang).
  const char* size = std::getenv("UV_THREADPOOL_SIZE");
  const int threads = size ? std::atoi(size) : 4;
  std::atomic<bool> release{false};
  auto let_go = [&] {
    release = true;
    release.notify_all();
  };
  for (int i = 0; i < threads; ++i)
    duet::offload(
        loop, [&] { release.wait(false); }, [](std::error_code) {});
  std::optional<std::error_code> result;
  bool inside_the_call = true;
  duet::resolve(loop, "127.0.0.1", 8000, [&](std::error_code ec, std::vector<duet::Endpoint> eps) {
    CHECK_FALSE(inside_the_call);
    result = ec;
    CHECK(eps == std::vector<duet::Endpoint>{duet::Endpoint::parse("127.0.0.1", 8000)});
    let_go();
  });
  inside_the_call = false;
  bool gave_up = false;
  duet::Timer limit(loop);
  limit.start(std::chrono::seconds(5), std::chrono::milliseconds(0), [&] {
    gave_up = true;
    let_go();
  });
  while (!result) loop.run_once();
  limit.stop();
  loop.run();
  CHECK_FALSE(gave_up);
  CHECK_FALSE(*result);
}

TEST_CASE("a numeric lookup cancelled before its turn ends with UV_ECANCELED", "[dns][cancel]") {
  duet::Loop loop;
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::resolve(loop, "::1", 80,
                duet::with_cancellation(stop.get_token(), [&](std::error_code ec, std::vector<duet::Endpoint> eps) {
                  result = ec;
                  CHECK(eps.empty());
                }));
  stop.request_stop();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
}

TEST_CASE("resolve reports an unknown host as a getaddrinfo error", "[dns]") {
  duet::Loop loop;
  std::optional<std::error_code> result;
  std::vector<duet::Endpoint> found{duet::Endpoint::loopback(1)};
  // .invalid is reserved (RFC 6761): it never resolves, with or without a network.
  duet::resolve(loop, "no-such-host.invalid", 80, [&](std::error_code ec, std::vector<duet::Endpoint> eps) {
    result = ec;
    found = std::move(eps);
  });
  loop.run();
  REQUIRE(result);
  CHECK(*result);
  CHECK(result->category() == duet::uv_category());
  CHECK(duet::error_name(*result).rfind("EAI_", 0) == 0);  // EAI_NONAME, or EAI_AGAIN without DNS
  CHECK(found.empty());
}

TEST_CASE("a queued resolve is cancelled with UV_ECANCELED", "[dns][cancel]") {
  duet::Loop loop;
  duet::test::PoolBlocker busy(loop);  // the lookup cannot start: it stays queued
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::resolve(loop, "localhost", 80,
                duet::with_cancellation(stop.get_token(), [&](std::error_code ec, std::vector<duet::Endpoint> eps) {
                  result = ec;
                  CHECK(eps.empty());
                }));
  stop.request_stop();
  busy.release();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(busy.finished == duet::test::threadpool_size());
}

TEST_CASE("Endpoint parses IPv4 and IPv6 and rejects names", "[dns]") {
  CHECK(duet::Endpoint::parse("127.0.0.1", 80).to_string() == "127.0.0.1:80");
  CHECK(duet::Endpoint::parse("[::1]", 8000).to_string() == "[::1]:8000");
  CHECK(duet::Endpoint::loopback(9, true).family() == AF_INET6);
  CHECK_THROWS_AS(duet::Endpoint::parse("localhost", 80), std::system_error);
  CHECK(duet::Endpoint().family() == AF_UNSPEC);
}

// ---- reverse_resolve ------------------------------------------------------------------------------------

TEST_CASE("reverse_resolve names 127.0.0.1 and its port's service, both faces", "[dns]") {
  duet::Loop loop;
  std::optional<std::error_code> result;
  duet::NameInfo found;
  bool inside = true;
  duet::reverse_resolve(loop, duet::Endpoint::loopback(80), [&](std::error_code ec, duet::NameInfo info) {
    CHECK_FALSE(inside);
    result = ec;
    found = std::move(info);
  });
  inside = false;
  loop.run();
  REQUIRE(result);
  REQUIRE_FALSE(*result);
  CHECK(found.host == "localhost");  // as every /etc/hosts says; a name is required, never the digits
  CHECK((found.service == "http" || found.service == "80"));  // "80" where /etc/services is missing

  const duet::NameInfo co = duet::run(loop, name_of(loop, duet::Endpoint::loopback(80)));
  CHECK(co.host == found.host);
  CHECK(co.service == found.service);

  // The name found leads back to the address.
  std::vector<duet::Endpoint> back;
  duet::resolve(loop, found.host, 80, [&](std::error_code ec, std::vector<duet::Endpoint> eps) {
    REQUIRE_FALSE(ec);
    back = std::move(eps);
  });
  loop.run();
  CHECK(std::find(back.begin(), back.end(), duet::Endpoint::loopback(80)) != back.end());
}

TEST_CASE("reverse_resolve refuses an endpoint that is not an address, both faces", "[dns]") {
  duet::Loop loop;
  std::optional<std::error_code> result;
  bool inside = true;
  duet::reverse_resolve(loop, duet::Endpoint(), [&](std::error_code ec, duet::NameInfo info) {
    CHECK_FALSE(inside);
    result = ec;
    CHECK(info.host.empty());
    CHECK(info.service.empty());
  });
  inside = false;
  loop.run();
  REQUIRE(result);
  CHECK(*result == duet::errc::invalid_argument);
  CHECK(thrown_by(loop, name_of(loop, duet::Endpoint())) == duet::errc::invalid_argument);
}

TEST_CASE("reverse_resolve of an address that has no name reports a getaddrinfo error", "[dns]") {
  duet::Loop loop;
  std::optional<std::error_code> result;
  // 192.0.2.1 is for documentation (RFC 5737): no hosts file or DNS names it.
  const auto nameless = duet::Endpoint::parse("192.0.2.1", 80);
  duet::reverse_resolve(loop, nameless, [&](std::error_code ec, duet::NameInfo info) {
    result = ec;
    CHECK(info.host.empty());
  });
  loop.run();
  REQUIRE(result);
  CHECK(duet::error_name(*result).rfind("EAI_", 0) == 0);  // EAI_NONAME, or EAI_AGAIN without DNS
  CHECK(thrown_by(loop, name_of(loop, nameless)).category() == duet::uv_category());
}

TEST_CASE("a queued reverse_resolve is cancelled with UV_ECANCELED, both faces", "[dns][cancel]") {
  duet::Loop loop;
  duet::test::PoolBlocker busy(loop);  // the lookup cannot start: it stays queued
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::reverse_resolve(loop, duet::Endpoint::loopback(80),
                        duet::with_cancellation(stop.get_token(), [&](std::error_code ec, duet::NameInfo info) {
                          result = ec;
                          CHECK(info.host.empty());
                          CHECK(info.service.empty());
                        }));
  bool started = false;
  auto task = [](duet::Loop& l, bool& s) -> duet::Task<duet::NameInfo> {
    s = true;
    co_return co_await duet::reverse_resolve(l, duet::Endpoint::loopback(80));
  };
  auto handle = duet::spawn(loop, task(loop, started));
  while (!started) loop.run_once();
  stop.request_stop();
  handle.cancel();
  busy.release();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK_THROWS_AS(handle.result(), duet::Cancelled);
  CHECK(busy.finished == duet::test::threadpool_size());
}

TEST_CASE("destroying the loop with a reverse_resolve queued calls nothing back and leaks nothing", "[dns][loop]") {
  duet::test::ErrorLog log;
  std::optional<duet::test::PoolBlocker> busy;  // outlives the loop: released inside its destruction
  bool called = false;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    busy.emplace(loop);
    duet::test::release_during_destruction(loop, *busy);
    duet::reverse_resolve(loop, duet::Endpoint::loopback(80), [&](std::error_code, duet::NameInfo) { called = true; });
  }
  CHECK_FALSE(called);
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].find("operation(s) pending") != std::string::npos);
}

// ---- random_bytes (random.hpp): the same thread pool, the same request life cycle -------------------------

TEST_CASE("random_bytes gives exactly n bytes, different on each call, both faces", "[random]") {
  duet::Loop loop;
  std::vector<std::string> got;
  bool inside = true;
  for (int i = 0; i < 2; ++i) {
    duet::random_bytes(loop, 32, [&](std::error_code ec, std::string bytes) {
      CHECK_FALSE(inside);
      REQUIRE_FALSE(ec);
      got.push_back(std::move(bytes));
    });
  }
  inside = false;
  loop.run();
  REQUIRE(got.size() == 2);
  CHECK(got[0].size() == 32);
  CHECK(got[1].size() == 32);
  CHECK(got[0] != got[1]);  // 2^-256 to be equal by chance
  CHECK(got[0] != std::string(32, '\0'));

  const std::string co = duet::run(loop, random_from(loop, 1000));
  CHECK(co.size() == 1000);
  CHECK(co.substr(0, 32) != got[0]);
}

TEST_CASE("random_bytes of zero bytes gives an empty string on a later turn, both faces", "[random]") {
  duet::Loop loop;
  std::optional<std::error_code> result;
  std::string bytes = "not empty";
  bool inside = true;
  duet::random_bytes(loop, 0, [&](std::error_code ec, std::string b) {
    CHECK_FALSE(inside);
    result = ec;
    bytes = std::move(b);
  });
  inside = false;
  loop.run();
  REQUIRE(result);
  CHECK_FALSE(*result);
  CHECK(bytes.empty());
  CHECK(duet::run(loop, random_from(loop, 0)).empty());
}

TEST_CASE("random_bytes refuses more than one request can fill with UV_E2BIG, both faces", "[random]") {
  duet::Loop loop;
  std::optional<std::error_code> result;
  const std::size_t too_many = std::size_t(1) << 31;  // refused before a 2 GiB buffer is allocated
  duet::random_bytes(loop, too_many, [&](std::error_code ec, std::string b) {
    result = ec;
    CHECK(b.empty());
  });
  loop.run();
  REQUIRE(result);
  CHECK(result->value() == UV_E2BIG);
  CHECK(thrown_by(loop, random_from(loop, too_many)).value() == UV_E2BIG);
}

TEST_CASE("a queued random_bytes is cancelled with UV_ECANCELED, both faces", "[random][cancel]") {
  duet::Loop loop;
  duet::test::PoolBlocker busy(loop);
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::random_bytes(loop, 16, duet::with_cancellation(stop.get_token(), [&](std::error_code ec, std::string b) {
                       result = ec;
                       CHECK(b.empty());
                     }));
  bool started = false;
  auto task = [](duet::Loop& l, bool& s) -> duet::Task<std::string> {
    s = true;
    co_return co_await duet::random_bytes(l, 16);
  };
  auto handle = duet::spawn(loop, task(loop, started));
  while (!started) loop.run_once();
  stop.request_stop();
  handle.cancel();
  busy.release();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK_THROWS_AS(handle.result(), duet::Cancelled);
}

TEST_CASE("destroying the loop with a random_bytes queued calls nothing back and leaks nothing", "[random][loop]") {
  duet::test::ErrorLog log;
  std::optional<duet::test::PoolBlocker> busy;  // outlives the loop: released inside its destruction
  bool called = false;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    busy.emplace(loop);
    duet::test::release_during_destruction(loop, *busy);
    duet::random_bytes(loop, 64, [&](std::error_code, std::string) { called = true; });
  }
  CHECK_FALSE(called);
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].find("operation(s) pending") != std::string::npos);
}

TEST_CASE("destroying the loop after random_bytes ran but before it called back drops its bytes", "[random][loop]") {
  duet::test::ErrorLog log;
  bool called = false;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    duet::random_bytes(loop, 1 << 20, [&](std::error_code, std::string) { called = true; });
    duet::test::PoolBlocker busy(loop);  // returns once the request above has run on the pool
  }
  CHECK_FALSE(called);
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].find("operation(s) pending") != std::string::npos);
}
