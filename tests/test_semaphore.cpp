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
#include "duet/loop.hpp"
#include "duet/semaphore.hpp"
#include "duet/task.hpp"
#include "duet/timer.hpp"
#include "duet/when_all.hpp"

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

namespace {
/// Records each waiter's outcome by name: "w1" when served, "w1:cancelled" when cancelled.
struct Outcomes {
  std::vector<std::string> events;
  auto recorder(std::string name) {
    return [this, name](std::error_code ec) { events.push_back(duet::is_cancelled(ec) ? name + ":cancelled" : name); };
  }
  std::size_t position(const std::string& event) const {
    return static_cast<std::size_t>(std::find(events.begin(), events.end(), event) - events.begin());
  }
};
}  // namespace

TEST_CASE("waiters that share a stop token are all cancelled by its stop: those in a row in arrival order",
          "[semaphore][cancel]") {
  // A run of waiters with the same token shares one registration (wait_list.hpp); one that arrives
  // after a waiter with another token starts a run of its own. Either way the stop reaches them all.
  duet::Semaphore sem(0);
  std::stop_source a, b;
  Outcomes out;
  for (const char* name : {"a1", "a2", "a3"}) sem.acquire(duet::with_cancellation(a.get_token(), out.recorder(name)));
  sem.acquire(duet::with_cancellation(b.get_token(), out.recorder("b1")));
  sem.acquire(duet::with_cancellation(a.get_token(), out.recorder("a4")));
  sem.acquire(out.recorder("plain"));
  CHECK(sem.waiting() == 6);
  a.request_stop();
  CHECK(sem.waiting() == 2);
  REQUIRE(out.events.size() == 4);
  CHECK(out.position("a1:cancelled") < out.position("a2:cancelled"));
  CHECK(out.position("a2:cancelled") < out.position("a3:cancelled"));
  CHECK(out.position("a4:cancelled") < out.events.size());
  sem.release();
  sem.release();
  CHECK(std::vector<std::string>(out.events.end() - 2, out.events.end()) == std::vector<std::string>{"b1", "plain"});
  b.request_stop();  // both served: nothing is left to cancel
  CHECK(out.events.size() == 6);
}

TEST_CASE("the first of a run of waiters is served, then a stop still cancels the rest of its run, late comers too",
          "[semaphore][cancel]") {
  duet::Semaphore sem(0);
  std::stop_source a;
  Outcomes out;
  sem.acquire(duet::with_cancellation(a.get_token(), out.recorder("w1")));
  sem.acquire(duet::with_cancellation(a.get_token(), out.recorder("w2")));
  sem.release();  // w1, whose registration covers w2, is served
  sem.acquire(duet::with_cancellation(a.get_token(), out.recorder("w3")));  // joins w2's run
  a.request_stop();
  CHECK(out.events == std::vector<std::string>{"w1", "w2:cancelled", "w3:cancelled"});
  CHECK(sem.waiting() == 0);
  CHECK(sem.available() == 0);  // w1 holds the permit
}

TEST_CASE("a run of waiters served to its last leaves no registration: a later stop does nothing",
          "[semaphore][cancel]") {
  duet::Semaphore sem(0);
  std::stop_source a;
  Outcomes out;
  for (const char* name : {"w1", "w2", "w3"}) sem.acquire(duet::with_cancellation(a.get_token(), out.recorder(name)));
  for (int i = 0; i < 3; ++i) sem.release();
  a.request_stop();
  CHECK(out.events == std::vector<std::string>{"w1", "w2", "w3"});
  // Again, with the stop coming between: the run's registration is made anew.
  sem.acquire(duet::with_cancellation(a.get_token(), out.recorder("late")));  // already stopped: at once
  CHECK(out.events.back() == "late:cancelled");
  CHECK(sem.waiting() == 0);
}

TEST_CASE("a waiter cancelled with its run may destroy the semaphore: every other waiter hears once",
          "[semaphore][cancel]") {
  auto sem = std::make_unique<duet::Semaphore>(0);
  std::stop_source a;
  Outcomes out;
  sem->acquire(duet::with_cancellation(a.get_token(), [&](std::error_code ec) {
    out.recorder("w1")(ec);
    sem.reset();  // the last user of the throttle goes away, inside the stop
  }));
  sem->acquire(duet::with_cancellation(a.get_token(), out.recorder("w2")));
  sem->acquire(out.recorder("plain"));
  a.request_stop();
  CHECK_FALSE(sem);
  CHECK(out.events == std::vector<std::string>{"w1:cancelled", "plain:cancelled", "w2:cancelled"});
}

TEST_CASE("a stop requested while a waiter is being queued, by its own callback's code, cancels it with its run",
          "[semaphore][cancel]") {
  // Moving a callback into its node runs its code: here the destructor of a moved-from copy stops the
  // token. The run the new waiter was about to join is cancelled and freed meanwhile (found by a red
  // team: the waiter joined the freed group, a heap-use-after-free under ASan).
  struct StopsTokenWhenDropped {  // copyable only: its "move" leaves a copy to destroy
    std::stop_source* source;
    bool* armed;
    std::optional<std::error_code>* result;
    StopsTokenWhenDropped(std::stop_source* s, bool* a, std::optional<std::error_code>* r)
        : source(s), armed(a), result(r) {}
    StopsTokenWhenDropped(const StopsTokenWhenDropped&) = default;
    ~StopsTokenWhenDropped() {
      if (*armed && !*result) source->request_stop();
    }
    void operator()(std::error_code ec) { *result = ec; }
  };
  duet::Semaphore sem(0);
  std::stop_source a;
  Outcomes out;
  sem.acquire(duet::with_cancellation(a.get_token(), out.recorder("w1")));
  sem.acquire(duet::with_cancellation(a.get_token(), out.recorder("w2")));
  bool armed = false;
  std::optional<std::error_code> w3;
  auto cb = duet::with_cancellation(a.get_token(), StopsTokenWhenDropped(&a, &armed, &w3));
  armed = true;
  sem.acquire(std::move(cb));
  armed = false;
  CHECK(out.events == std::vector<std::string>{"w1:cancelled", "w2:cancelled"});
  REQUIRE(w3);
  CHECK(duet::is_cancelled(*w3));
  CHECK(sem.waiting() == 0);
}

TEST_CASE("tasks gated by a semaphore under when_all: one fails, and those still waiting are cancelled",
          "[semaphore][cancel][coro]") {
  // The flag programs' shape: every task created at once, a semaphore letting one through at a time.
  duet::Loop loop;
  duet::Semaphore sem(1);
  int ran = 0, cancelled = 0;
  auto fetch = [&](int i) -> duet::Task<> {
    try {
      auto permit = co_await sem.acquire();
      ++ran;
      co_await duet::sleep(loop, 1ms);
      if (i == 2) throw std::runtime_error("the third fails");
    } catch (const duet::Cancelled&) {
      ++cancelled;
      throw;
    }
  };
  std::vector<duet::Task<>> tasks;
  for (int i = 0; i < 10; ++i) tasks.push_back(fetch(i));
  CHECK_THROWS_WITH(duet::run(loop, duet::when_all(std::move(tasks))), "the third fails");
  CHECK(ran == 4);  // the fourth takes the permit the third gives back as it fails, and is cancelled in its sleep
  CHECK(cancelled == 7);
  CHECK(sem.waiting() == 0);
  CHECK(sem.available() == 1);
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

namespace {
struct HoldsToken {
  std::stop_token token;
  bool* cancelled;
  static constexpr bool stop_token_outside = false;
  const std::stop_token& stop_token() const noexcept { return token; }
  void operator()(std::error_code ec) { *cancelled = duet::is_cancelled(ec); }
};
}  // namespace

TEST_CASE("a callback that holds its own token and says stop_token_outside = false is still cancelled",
          "[semaphore][cancel]") {
  // Only a callback whose token lives outside it may have the token read through a reference while
  // it is moved (wait_list.hpp); one that holds it and says false has it copied first.
  duet::Semaphore sem(0);
  std::stop_source stop;
  bool cancelled = false;
  sem.acquire(HoldsToken{stop.get_token(), &cancelled});
  CHECK(sem.waiting() == 1);
  stop.request_stop();
  CHECK(cancelled);
  CHECK(sem.waiting() == 0);
}

TEST_CASE("a task whose stop is requested before co_await acquire is cancelled without queueing",
          "[semaphore][cancel][coro]") {
  const std::size_t permits = GENERATE(0u, 1u);  // 1: a free permit is not taken either
  CAPTURE(permits);
  duet::Loop loop;
  duet::Semaphore sem(permits);
  std::stop_source stop;
  bool reached = false, acquired = false;
  auto take = [&]() -> duet::Task<> {
    stop.request_stop();  // on the loop's thread, with nothing of the task's waiting yet
    reached = true;
    auto permit = co_await sem.acquire();
    acquired = true;
  };
  CHECK_THROWS_AS(duet::run(loop, take(), stop.get_token()), duet::Cancelled);
  CHECK(reached);
  CHECK_FALSE(acquired);
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
