#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "duet/timer.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("sleep calls back after at least its duration", "[timer]") {
  const auto start = Clock::now();  // before the sleep is armed, which it counts from
  duet::Loop loop;
  std::optional<std::error_code> result;
  Clock::time_point fired_at;
  duet::sleep(loop, 30ms, [&](std::error_code ec) {
    result = ec;
    fired_at = Clock::now();
  });
  CHECK_FALSE(result);  // never inside the call
  loop.run();
  REQUIRE(result);
  CHECK_FALSE(*result);
  CHECK(fired_at - start >= 29ms);  // libuv's clock has millisecond resolution
}

TEST_CASE("a deadline armed outside the loop counts from when it is armed, however long since the loop last ran",
          "[timer]") {
  duet::Loop loop;
  loop.run();               // nothing to do: libuv reads its clock and keeps that time until the next run
  duet::Timer again(loop);  // restarted below with `again()`, from the settings kept here
  Clock::time_point ticked;
  again.start(100ms, 100ms, [&] {
    ticked = Clock::now();
    again.stop();
  });
  again.stop();
  // Blocking work between runs, longer than every deadline below: what the case is about, not a wait
  // for something to happen. A deadline counted from the time libuv kept would be already past.
  std::this_thread::sleep_for(150ms);
  const auto armed = Clock::now();
  Clock::time_point slept, timed;
  duet::sleep(loop, 100ms, [&](std::error_code ec) {
    CHECK_FALSE(ec);
    slept = Clock::now();
  });
  duet::Timer timer(loop);
  timer.start(100ms, 0ms, [&] { timed = Clock::now(); });
  again.again();
  loop.run();
  CHECK(slept - armed >= 99ms);
  CHECK(timed - armed >= 99ms);
  CHECK(ticked - armed >= 99ms);
}

TEST_CASE("sleeps complete in deadline order", "[timer]") {
  duet::Loop loop;
  std::vector<int> order;
  for (int ms : {30, 10, 20, 0})
    duet::sleep(loop, std::chrono::milliseconds(ms), [&, ms](std::error_code) { order.push_back(ms); });
  loop.run();
  CHECK(order == std::vector<int>{0, 10, 20, 30});
}

TEST_CASE("a cancelled sleep calls back promptly with UV_ECANCELED", "[timer][cancel]") {
  duet::Loop loop;
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::sleep(loop, 10s, duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { result = ec; }));
  duet::sleep(loop, 1ms, [&](std::error_code) {
    stop.request_stop();
    CHECK_FALSE(result);  // never inside request_stop()
  });
  const auto start = Clock::now();
  loop.run();
  CHECK(Clock::now() - start < 5s);
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a sleep given an already stopped token is cancelled", "[timer][cancel]") {
  duet::Loop loop;
  std::stop_source stop;
  stop.request_stop();
  std::optional<std::error_code> result;
  duet::sleep(loop, 10s, duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { result = ec; }));
  CHECK_FALSE(result);
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
}

TEST_CASE("a repeating Timer ticks until stopped", "[timer]") {
  duet::Loop loop;
  duet::Timer timer(loop);
  CHECK_FALSE(timer.active());
  int ticks = 0;
  timer.start(1ms, 1ms, [&] {
    if (++ticks >= 5) timer.stop();
  });
  CHECK(timer.active());
  loop.run();  // returns once the stopped timer is the only handle left
  CHECK(ticks == 5);
  CHECK_FALSE(timer.active());
  timer.again();  // restarts with the same settings and callback
  CHECK(timer.active());
  loop.run();
  CHECK(ticks == 6);
}

TEST_CASE("a Timer can be destroyed or restarted from inside its own callback", "[timer]") {
  duet::Loop loop;
  std::optional<duet::Timer> timer(std::in_place, loop);
  int first = 0;
  int second = 0;
  timer->start(1ms, 1ms, [&] {
    ++first;
    timer->start(1ms, 0ms, [&] {  // replaces the running callback
      ++second;
      timer.reset();  // destroys the Timer while its callback runs
    });
  });
  loop.run();
  CHECK(first == 1);
  CHECK(second == 1);
  CHECK_FALSE(timer);
  CHECK(loop.live_resources() == 0);
}
