#include <signal.h>

#include <catch2/catch.hpp>
#include <optional>
#include <stop_token>
#include <vector>

#include "duet/cancellation.hpp"
#include "duet/signal.hpp"
#include "duet/spawn.hpp"
#include "duet/timer.hpp"

using namespace std::chrono_literals;

namespace {

// The action the process would take for `signum` now: libuv's handler while a wait holds it.
bool default_action(int signum) {
  struct sigaction now {};
  sigaction(signum, nullptr, &now);
  return now.sa_handler == SIG_DFL;
}

}  // namespace

TEST_CASE("wait_for_signal calls back with the signal that arrived", "[signal]") {
  duet::Loop loop;
  std::optional<std::error_code> result;
  int got = 0;
  duet::wait_for_signal(loop, {SIGUSR1, SIGUSR2}, [&](std::error_code ec, int signum) {
    result = ec;
    got = signum;
  });
  CHECK_FALSE(default_action(SIGUSR2));  // caught: raising it below does not kill the test
  raise(SIGUSR2);
  CHECK_FALSE(result);  // delivered through the loop, never inside raise()
  loop.run();
  REQUIRE(result);
  CHECK_FALSE(*result);
  CHECK(got == SIGUSR2);
  CHECK(default_action(SIGUSR1));  // the wait is over: both signals have their default action back
  CHECK(default_action(SIGUSR2));
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("the coroutine face returns the signal number", "[signal]") {
  duet::Loop loop;
  auto waiter = [](duet::Loop& l) -> duet::Task<int> {
    duet::sleep(l, 0ms, [](std::error_code) { raise(SIGUSR1); });  // on a later turn: the wait is on by then
    co_return co_await duet::wait_for_signal(l, {SIGTERM, SIGUSR1});
  };
  CHECK(duet::run(loop, waiter(loop)) == SIGUSR1);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a cancelled wait calls back with UV_ECANCELED and gives the signal back", "[signal][cancel]") {
  duet::Loop loop;
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::wait_for_signal(loop, {SIGUSR1}, duet::with_cancellation(stop.get_token(), [&](std::error_code ec, int signum) {
                          result = ec;
                          CHECK(signum == 0);
                        }));
  CHECK_FALSE(default_action(SIGUSR1));
  stop.request_stop();
  CHECK_FALSE(result);
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(default_action(SIGUSR1));
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a wait that held SIGPIPE gives it back ignored, not at its killing default", "[signal]") {
  duet::Loop loop;  // sets SIGPIPE to ignored
  struct sigaction before {};
  REQUIRE(::sigaction(SIGPIPE, nullptr, &before) == 0);
  REQUIRE(before.sa_handler == SIG_IGN);
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::wait_for_signal(loop, {SIGPIPE, SIGUSR1},
                        duet::with_cancellation(stop.get_token(), [&](std::error_code ec, int) { result = ec; }));
  stop.request_stop();
  loop.run();
  REQUIRE(result);
  struct sigaction after {};
  REQUIRE(::sigaction(SIGPIPE, nullptr, &after) == 0);
  CHECK(after.sa_handler == SIG_IGN);  // a write to a closed connection is UV_EPIPE, as before the wait
  CHECK(default_action(SIGUSR1));
}

TEST_CASE("cancelling a task cancels the signal wait it is suspended on", "[signal][cancel]") {
  duet::Loop loop;
  auto waiter = [](duet::Loop& l) -> duet::Task<int> { co_return co_await duet::wait_for_signal(l, {SIGINT}); };
  auto refused = [](duet::Loop& l) -> duet::Task<int> { co_return co_await duet::wait_for_signal(l, {SIGINT, 0}); };
  CHECK_THROWS_WITH(duet::run(loop, refused(loop)), Catch::Contains("invalid"));
  auto handle = duet::spawn(loop, waiter(loop));
  loop.run_once();  // the task starts and waits
  CHECK_FALSE(default_action(SIGINT));
  handle.cancel();
  loop.run();
  CHECK_THROWS_AS(handle.result(), duet::Cancelled);
  CHECK(default_action(SIGINT));
}

TEST_CASE("a wait with no signals, too many or an invalid one is refused", "[signal]") {
  duet::Loop loop;
  std::vector<std::error_code> results;
  auto record = [&](std::error_code ec, int) { results.push_back(ec); };
  duet::wait_for_signal(loop, {}, record);
  duet::wait_for_signal(loop, {SIGUSR1, SIGUSR2, SIGHUP, SIGTERM, SIGINT}, record);
  duet::wait_for_signal(loop, {SIGUSR1, -5}, record);
  duet::wait_for_signal(loop, {SIGUSR1, SIGKILL}, record);  // libuv itself refuses this one
  CHECK(results.empty());
  loop.run();
  REQUIRE(results.size() == 4);
  CHECK(results[0] == duet::errc::invalid_argument);
  CHECK(results[1] == duet::errc::invalid_argument);
  CHECK(results[2] == duet::errc::invalid_argument);
  CHECK(results[3] == std::errc::invalid_argument);
  CHECK(default_action(SIGUSR1));  // the half-started wait let go of the signal it did take
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("destroying the loop ends a wait without calling back", "[signal]") {
  bool called = false;
  bool reported = false;
  {
    duet::Loop loop;
    loop.set_error_handler([&](std::exception_ptr) { reported = true; });  // "destroyed with 1 operation pending"
    duet::wait_for_signal(loop, {SIGUSR1}, [&](std::error_code, int) { called = true; });
    CHECK_FALSE(default_action(SIGUSR1));
  }
  CHECK_FALSE(called);
  CHECK(reported);
  CHECK(default_action(SIGUSR1));
}
