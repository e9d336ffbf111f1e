#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "deadline.hpp"
#include "duet/hooks.hpp"
#include "duet/poll.hpp"
#include "duet/spawn.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Check;
using duet::Idle;
using duet::Prepare;
using duet::Task;
using duet::test::Deadline;

TEST_CASE("idle and prepare run before the poll for I/O, check right after it", "[hooks]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  const int efd = ::eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);  // readable from the start
  REQUIRE(efd >= 0);
  std::vector<std::string> order;
  Idle idle(loop);
  Prepare prepare(loop);
  Check check(loop);
  duet::Poller poller(loop, efd);
  idle.start([&] { order.push_back("idle"); });
  prepare.start([&] { order.push_back("prepare"); });
  check.start([&] {
    order.push_back("check");
    if (std::find(order.begin(), order.end(), "io") == order.end()) return;
    idle.stop();
    prepare.stop();
    check.stop();
  });
  poller.start(duet::PollEvents::readable, [&](std::error_code ec, duet::PollEvents) {
    REQUIRE_FALSE(ec);
    order.push_back("io");
    poller.stop();
  });
  CHECK(order.empty());  // nothing runs inside start()
  loop.run();
  ::close(efd);
  CHECK_FALSE(deadline.expired);
  CHECK(order == std::vector<std::string>{"idle", "prepare", "io", "check"});
  CHECK_FALSE(idle.active());
  CHECK_FALSE(prepare.active());
  CHECK_FALSE(check.active());
  CHECK(log.messages.empty());
}

TEST_CASE("an Idle keeps the loop turning without blocking until it is stopped", "[hooks]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Idle idle(loop);
  int turns = 0;
  idle.start([&] {
    if (++turns == 1000) idle.stop();
  });
  CHECK(idle.active());
  loop.run();  // nothing but the Idle keeps the loop running: it returns right after the stop
  CHECK(turns == 1000);
  CHECK_FALSE(idle.active());

  // While an Idle is started, the loop polls without waiting: a Prepare counts many more turns during
  // the same 50 ms sleep than without one.
  Prepare prepare(loop);
  auto turns_during_sleep = [&](bool with_idle) {
    int prepared = 0;
    prepare.start([&] { ++prepared; });
    if (with_idle) idle.start([] {});
    duet::sleep(loop, 50ms, [&](std::error_code) {
      prepare.stop();
      idle.stop();
    });
    loop.run();
    return prepared;
  };
  const int blocking = turns_during_sleep(false);
  const int spinning = turns_during_sleep(true);
  CHECK(blocking < 10);
  CHECK(spinning > 50);
  CHECK(log.messages.empty());
}

namespace {

// Records, at each step, how many times the Prepare has run: which turn of the loop the task is in.
Task<std::vector<int>> turns_of(Check& check, const int& prepared) {
  std::vector<int> seen{prepared};
  co_await check.next();  // the check phase of this very turn
  seen.push_back(prepared);
  co_await check.next();  // the next turn's
  seen.push_back(prepared);
  co_return seen;
}

}  // namespace

TEST_CASE("co_await check.next() resumes in the check phase: once a turn", "[hooks]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Prepare prepare(loop);
  Check check(loop);
  Idle idle(loop);  // a Check does not make the loop turn by itself: something must
  int prepared = 0;
  prepare.start([&] { ++prepared; });
  prepare.keep_loop_alive(false);
  idle.start([] {});
  // The task starts from the loop's post queue, an I/O callback: after this turn's prepare.
  const auto seen = duet::run(loop, turns_of(check, prepared));
  idle.stop();
  REQUIRE(seen.size() == 3);
  CHECK(seen[1] == seen[0]);
  CHECK(seen[2] == seen[1] + 1);
  CHECK_FALSE(check.active());  // a waiter only: stopped once it has been called
  CHECK(log.messages.empty());
}

TEST_CASE("a pending next is cancelled by its stop token, by stop() and by close()", "[hooks][cancel]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Prepare prepare(loop);
  Idle idle(loop);
  Check check(loop);
  std::stop_source stop;
  std::optional<std::error_code> by_token, by_stop, by_close, second;
  prepare.next(duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { by_token = ec; }));
  idle.next([&](std::error_code ec) { by_stop = ec; });
  idle.next([&](std::error_code ec) { second = ec; });
  check.next([&](std::error_code ec) { by_close = ec; });
  stop.request_stop();
  idle.stop();
  check.close();
  CHECK_FALSE(by_token);  // never inside the cancelling call
  CHECK_FALSE(by_stop);
  CHECK_FALSE(by_close);
  CHECK_FALSE(prepare.active());
  loop.run();
  REQUIRE(by_token);
  CHECK(duet::is_cancelled(*by_token));
  REQUIRE(by_stop);
  CHECK(duet::is_cancelled(*by_stop));
  REQUIRE(by_close);
  CHECK(duet::is_cancelled(*by_close));
  REQUIRE(second);
  CHECK(*second == duet::errc::already_reading);
  CHECK(log.messages.empty());
}

TEST_CASE("a hook's callback may restart, stop or close its own hook", "[hooks]") {
  duet::Loop loop;
  std::optional<Check> check(std::in_place, loop);
  int first = 0, second = 0;
  check->start([&] {
    ++first;
    check->start([&] {  // replaces the running callback
      if (++second == 2) check.reset();  // destroys the hook while its callback runs
    });
  });
  Idle idle(loop);  // keeps the loop turning
  idle.start([&] {
    if (!check) idle.stop();
  });
  loop.run();
  CHECK(first == 1);
  CHECK(second == 2);
  CHECK(loop.live_resources() == 1);  // the Idle
}

TEST_CASE("operations on a closed hook throw not_connected", "[hooks]") {
  duet::Loop loop;
  Prepare prepare(loop);
  prepare.close();
  Idle never_opened;
  auto closed = Catch::Predicate<std::system_error>(
      [](const std::system_error& e) { return e.code() == duet::errc::not_connected; });
  CHECK_THROWS_MATCHES(prepare.start([] {}), std::system_error, closed);
  CHECK_THROWS_MATCHES(prepare.next([](std::error_code) {}), std::system_error, closed);
  CHECK_THROWS_MATCHES(never_opened.start([] {}), std::system_error, closed);
  CHECK_FALSE(prepare.is_open());
  CHECK_FALSE(prepare.active());
  prepare.stop();
  prepare.keep_loop_alive(true);
  prepare.close();  // idempotent
  loop.run();
  CHECK(loop.live_resources() == 0);
}
