#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include "duet/cancellation.hpp"
#include "duet/error.hpp"
#include "duet/semaphore.hpp"
#include "duet/timer.hpp"

using namespace std::chrono_literals;

TEST_CASE("acquire takes a free permit at once and counts are observable", "[semaphore]") {
  duet::Semaphore sem(2);
  CHECK(sem.available() == 2);
  int got = 0;
  sem.acquire([&](std::error_code ec) { got += ec ? 0 : 1; });
  CHECK(got == 1);  // a free permit: called inside acquire
  CHECK(sem.try_acquire());
  CHECK(sem.available() == 0);
  CHECK_FALSE(sem.try_acquire());
  sem.acquire([&](std::error_code ec) { got += ec ? 0 : 1; });
  CHECK(got == 1);  // no permit: waiting
  CHECK(sem.waiting() == 1);
  sem.release();
  CHECK(got == 2);  // the permit went straight to the waiter
  CHECK(sem.available() == 0);
  CHECK(sem.waiting() == 0);
  sem.release();
  sem.release();
  CHECK(sem.available() == 2);
}

TEST_CASE("waiters are served strictly in FIFO order under contention", "[semaphore]") {
  duet::Semaphore sem(1);
  REQUIRE(sem.try_acquire());
  std::vector<int> order;
  for (int i = 0; i < 10; ++i)
    sem.acquire([&, i](std::error_code ec) {
      REQUIRE_FALSE(ec);
      order.push_back(i);
    });
  CHECK(sem.waiting() == 10);
  CHECK_FALSE(sem.try_acquire());  // a newcomer cannot overtake the queue
  for (int i = 0; i < 10; ++i) sem.release();
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(sem.waiting() == 0);
  CHECK(sem.available() == 0);
  sem.release();
  CHECK(sem.available() == 1);
}

TEST_CASE("a cancelled waiter leaves the queue with UV_ECANCELED and the others keep their order",
          "[semaphore][cancel]") {
  duet::Semaphore sem(0);
  std::stop_source stop;
  std::vector<std::string> events;
  sem.acquire([&](std::error_code ec) { events.push_back(ec ? "a:err" : "a"); });
  sem.acquire(duet::with_cancellation(
      stop.get_token(), [&](std::error_code ec) { events.push_back(duet::is_cancelled(ec) ? "b:cancelled" : "b"); }));
  sem.acquire([&](std::error_code ec) { events.push_back(ec ? "c:err" : "c"); });
  CHECK(sem.waiting() == 3);
  stop.request_stop();
  CHECK(sem.waiting() == 2);
  sem.release();
  sem.release();
  CHECK(events == std::vector<std::string>{"b:cancelled", "a", "c"});
}

TEST_CASE("release from inside a waiter's callback does not recurse", "[semaphore]") {
  duet::Semaphore sem(0);
  constexpr int kWaiters = 200'000;
  int depth = 0, max_depth = 0, served = 0;
  for (int i = 0; i < kWaiters; ++i) {
    sem.acquire([&](std::error_code) {
      max_depth = std::max(max_depth, ++depth);
      ++served;
      sem.release();  // pass the permit on
      --depth;
    });
  }
  sem.release();
  CHECK(served == kWaiters);
  CHECK(max_depth == 1);
  CHECK(sem.available() == 1);
}

TEST_CASE("a semaphore throttles concurrent operations on a loop", "[semaphore]") {
  duet::Loop loop;
  duet::Semaphore sem(3);
  int in_flight = 0, peak = 0, done = 0;
  for (int i = 0; i < 20; ++i) {
    sem.acquire([&, i](std::error_code ec) {
      REQUIRE_FALSE(ec);
      peak = std::max(peak, ++in_flight);
      duet::sleep(loop, std::chrono::milliseconds(1 + i % 4), [&](std::error_code) {
        --in_flight;
        ++done;
        sem.release();
      });
    });
  }
  loop.run();
  CHECK(done == 20);
  CHECK(peak == 3);
}

TEST_CASE("destroying a semaphore cancels its waiters", "[semaphore]") {
  std::optional<std::error_code> result;
  {
    duet::Semaphore sem(0);
    sem.acquire([&](std::error_code ec) { result = ec; });
  }
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
}

TEST_CASE("an acquire whose token is already stopped is cancelled without queueing", "[semaphore][cancel]") {
  const std::size_t permits = GENERATE(0u, 1u);  // 1: a free permit is not taken either
  CAPTURE(permits);
  duet::Semaphore sem(permits);
  std::stop_source stop;
  stop.request_stop();
  std::optional<std::error_code> result;
  sem.acquire(duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { result = ec; }));
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(sem.waiting() == 0);
  CHECK(sem.available() == permits);
}

TEST_CASE("a waiter's callback may destroy the semaphore during release", "[semaphore]") {
  auto sem = std::make_unique<duet::Semaphore>(0);
  int served = 0;
  sem->acquire([&](std::error_code) {
    ++served;
    sem.reset();  // the last user of the throttle goes away
  });
  sem->acquire([&](std::error_code ec) { served += ec ? 100 : 1; });  // cancelled by the destruction
  sem->release();
  CHECK_FALSE(sem);
  CHECK(served == 101);
}

TEST_CASE("a waiter that throws does not strand the others", "[semaphore]") {
  duet::Semaphore sem(0);
  int served = 0;
  sem.acquire([&](std::error_code) {
    sem.release();                              // hands its permit on...
    throw std::runtime_error("waiter failed");  // ...then fails
  });
  sem.acquire([&](std::error_code) { ++served; });
  CHECK_THROWS_WITH(sem.release(), "waiter failed");  // rethrown after the queue was served
  CHECK(served == 1);
  CHECK(sem.waiting() == 0);
}

TEST_CASE("the callback face can hand over the RAII permit: the chain that carries it releases it", "[semaphore]") {
  duet::Semaphore sem(1);
  std::function<void()> next_step;  // a later step of the chain, holding the permit
  sem.acquire([&](std::error_code ec, duet::Semaphore::Permit permit) {
    REQUIRE_FALSE(ec);
    CHECK(permit);
    next_step = [p = std::make_shared<duet::Semaphore::Permit>(std::move(permit))] {};
  });
  CHECK(sem.available() == 0);
  std::vector<std::string> events;
  sem.acquire([&](std::error_code ec, duet::Semaphore::Permit permit) {
    events.push_back(ec ? "b:err" : permit ? "b" : "b:empty");
  });
  std::stop_source stop;
  sem.acquire(duet::with_cancellation(stop.get_token(), [&](std::error_code ec, duet::Semaphore::Permit permit) {
    events.push_back(duet::is_cancelled(ec) && !permit ? "c:cancelled" : "c:?");
  }));
  stop.request_stop();  // a waiter cancelled in line: no permit
  CHECK(events == std::vector<std::string>{"c:cancelled"});
  CHECK(sem.waiting() == 1);
  next_step = nullptr;  // the chain ends: its permit goes to b, whose own is released as its callback returns
  CHECK(events == std::vector<std::string>{"c:cancelled", "b"});
  CHECK(sem.available() == 1);
  CHECK(sem.waiting() == 0);
}

TEST_CASE("the Permit callback face: a semaphore destroyed with waiters calls them with no permit", "[semaphore]") {
  auto sem = std::make_unique<duet::Semaphore>(0);
  std::error_code got;
  bool had_permit = true;
  sem->acquire([&](std::error_code ec, duet::Semaphore::Permit permit) {
    got = ec;
    had_permit = static_cast<bool>(permit);
  });
  sem.reset();
  CHECK(duet::is_cancelled(got));
  CHECK_FALSE(had_permit);
}
