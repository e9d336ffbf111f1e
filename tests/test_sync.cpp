// Queue, Event, Lock, and Semaphore::Permit::forget: both faces, cancellation, fairness, ends.
#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "duet/duet.hpp"

using namespace std::chrono_literals;
using duet::Task;

namespace {

/// A callback that records its outcome as text.
auto record(std::vector<std::string>& log, std::string name) {
  return [&log, name](std::error_code ec) { log.push_back(ec ? name + ":" + duet::error_name(ec) : name); };
}
auto record_value(std::vector<std::string>& log, std::string name) {
  return [&log, name](std::error_code ec, std::string v) {
    log.push_back(ec ? name + ":" + duet::error_name(ec) : name + "=" + v);
  };
}

}  // namespace

// ---- Queue ---------------------------------------------------------------------------------------

TEST_CASE("a queue hands values over in FIFO order, at once when it can", "[queue]") {
  duet::Queue<std::string> q(2);
  std::vector<std::string> log;
  q.push("a", record(log, "push a"));
  q.push("b", record(log, "push b"));
  CHECK(log == std::vector<std::string>{"push a", "push b"});  // room: done inside push
  CHECK(q.full());
  q.push("c", record(log, "push c"));  // full: waits
  CHECK(q.waiting_pushers() == 1);
  CHECK_FALSE(q.try_push(std::string("x")));  // nobody overtakes a waiting push
  q.pop(record_value(log, "pop"));
  // The pop took "a" and the room it made went to the waiting push of "c".
  CHECK(log == std::vector<std::string>{"push a", "push b", "push c", "pop=a"});
  CHECK(q.size() == 2);
  CHECK(q.try_pop() == "b");
  CHECK(q.try_pop() == "c");
  CHECK_FALSE(q.try_pop());
}

TEST_CASE("waiting poppers are served in arrival order, a pushed value straight to the longest waiting",
          "[queue]") {
  duet::Queue<std::string> q;
  CHECK(q.capacity() == duet::Queue<std::string>::unbounded);
  std::vector<std::string> log;
  for (int i = 0; i < 3; ++i) q.pop(record_value(log, "pop" + std::to_string(i)));
  CHECK(q.waiting_poppers() == 3);
  CHECK(q.try_push(std::string("x")));
  q.push("y", record(log, "push y"));
  CHECK(q.try_push(std::string("z")));
  CHECK(log == std::vector<std::string>{"pop0=x", "pop1=y", "push y", "pop2=z"});
  CHECK(q.empty());
  CHECK(q.waiting_poppers() == 0);
}

TEST_CASE("closing a queue with waiters on both sides: pushes fail, pops drain then end", "[queue]") {
  SECTION("poppers waiting") {
    duet::Queue<std::string> q(1);
    std::vector<std::string> log;
    q.pop(record_value(log, "p1"));
    q.pop(record_value(log, "p2"));
    q.close();
    CHECK(log == std::vector<std::string>{"p1:queue_closed", "p2:queue_closed"});
    q.push("late", record(log, "late"));
    CHECK(log.back() == "late:queue_closed");
    CHECK_FALSE(q.try_push(std::string("x")));
  }
  SECTION("pushers waiting, values queued") {
    duet::Queue<std::string> q(1);
    std::vector<std::string> log;
    q.push("kept", record(log, "push kept"));
    q.push("w1", record(log, "push w1"));
    q.push("w2", record(log, "push w2"));
    q.close();
    CHECK(q.closed());
    CHECK(log == std::vector<std::string>{"push kept", "push w1:queue_closed", "push w2:queue_closed"});
    q.pop(record_value(log, "pop"));  // what was queued before the close is still there
    q.pop(record_value(log, "pop"));
    CHECK(log.end()[-2] == "pop=kept");
    CHECK(log.back() == "pop:queue_closed");
    q.close();  // idempotent
  }
}

TEST_CASE("a cancelled push drops its value, a cancelled pop loses nothing, the others keep their order",
          "[queue][cancel]") {
  duet::Queue<std::string> q(1);
  std::vector<std::string> log;
  REQUIRE(q.try_push(std::string("first")));
  std::stop_source stop;
  q.push("a", record(log, "a"));
  q.push("b", duet::with_cancellation(stop.get_token(), record(log, "b")));
  q.push("c", record(log, "c"));
  stop.request_stop();  // "b" leaves the line at once
  CHECK(log == std::vector<std::string>{"b:ECANCELED"});
  CHECK(q.waiting_pushers() == 2);
  std::vector<std::string> got;
  for (int i = 0; i < 3; ++i) got.push_back(*q.try_pop());
  CHECK(got == std::vector<std::string>{"first", "a", "c"});

  std::stop_source stop_pop;
  q.pop(duet::with_cancellation(stop_pop.get_token(), record_value(log, "pop")));
  stop_pop.request_stop();
  CHECK(log.back() == "pop:ECANCELED");
  REQUIRE(q.try_push(std::string("kept")));
  CHECK(q.try_pop() == "kept");  // the cancelled pop took nothing
}

TEST_CASE("a queue's waiter may push and pop again, without recursion, and may destroy the queue",
          "[queue]") {
  SECTION("a chain of hand-overs") {
    duet::Queue<int> q(1);
    constexpr int kRounds = 100'000;
    int depth = 0, max_depth = 0, popped = 0;
    std::function<void()> pop_next = [&] {
      q.pop([&](std::error_code ec, int) {
        if (ec) return;
        max_depth = std::max(max_depth, ++depth);
        if (++popped < kRounds) {
          pop_next();
          q.push(popped, [](std::error_code) {});
        }
        --depth;
      });
    };
    pop_next();
    q.push(0, [](std::error_code) {});
    CHECK(popped == kRounds);
    CHECK(max_depth <= 2);
  }
  SECTION("destroyed by a popper") {
    auto q = std::make_unique<duet::Queue<int>>();
    std::vector<std::string> log;
    q->pop([&](std::error_code ec, int v) {
      log.push_back("first " + std::to_string(v) + (ec ? " err" : ""));
      q.reset();
    });
    q->pop([&](std::error_code ec, int) { log.push_back(std::string("second ") + duet::error_name(ec)); });
    q->push(7, [&](std::error_code ec) { log.push_back(ec ? "push err" : "push ok"); });
    CHECK(log == std::vector<std::string>{"first 7", "second ECANCELED", "push ok"});
  }
}

TEST_CASE("a queue with capacity 0 is refused", "[queue]") {
  CHECK_THROWS_AS(duet::Queue<int>(0), std::invalid_argument);
}

TEST_CASE("queue coroutine faces: producers and consumers, a bounded queue, the end as an empty optional",
          "[queue][coro]") {
  duet::Loop loop;
  duet::Queue<int> q(3);
  std::vector<int> seen_a, seen_b;  // what each consumer popped, in the order it popped them
  std::size_t max_size = 0;
  auto producer = [](duet::Queue<int>& q, int from, std::size_t& max_size) -> Task<> {
    for (int i = from; i < from + 100; ++i) {
      co_await q.push(i);
      max_size = std::max(max_size, q.size());
    }
  };
  auto consumer = [](duet::Queue<int>& q, std::vector<int>& out) -> Task<int> {
    int n = 0;
    while (std::optional<int> v = co_await q.pop()) {
      out.push_back(*v);
      ++n;
    }
    co_return n;
  };
  auto main_task = [&](duet::Loop&) -> Task<std::tuple<int, int>> {
    auto producers = [&]() -> Task<> {
      co_await duet::when_all(producer(q, 0, max_size), producer(q, 1000, max_size));
      q.close();
    };
    auto [_, a, b] = co_await duet::when_all(producers(), consumer(q, seen_a), consumer(q, seen_b));
    co_return std::tuple(a, b);
  };
  auto [a, b] = duet::run(loop, main_task(loop));
  CHECK(a + b == 200);
  CHECK(a > 0);
  CHECK(b > 0);
  CHECK(max_size <= 3);
  // FIFO: each consumer gets each producer's values in the order they were pushed; none is lost.
  std::size_t lows = 0, highs = 0;
  for (const std::vector<int>* seen : {&seen_a, &seen_b}) {
    std::vector<int> low, high;
    for (int v : *seen) (v < 1000 ? low : high).push_back(v);
    CHECK(std::is_sorted(low.begin(), low.end()));
    CHECK(std::is_sorted(high.begin(), high.end()));
    lows += low.size();
    highs += high.size();
  }
  CHECK(lows == 100);
  CHECK(highs == 100);
}

TEST_CASE("queue coroutine faces: a push to a closed queue throws queue_closed, and waiting is cancellable",
          "[queue][coro][cancel]") {
  duet::Loop loop;
  duet::Queue<std::unique_ptr<int>> q(1);  // a move-only value
  q.close();
  auto pusher = [](duet::Queue<std::unique_ptr<int>>& q) -> Task<> { co_await q.push(std::make_unique<int>(1)); };
  try {
    duet::run(loop, pusher(q));
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code() == duet::errc::queue_closed);
  }

  duet::Queue<std::string> empty;
  auto popper = [](duet::Queue<std::string>& q) -> Task<> { (void)co_await q.pop(); };
  auto handle = duet::spawn(loop, popper(empty));
  loop.run_once();  // the popper starts, and waits
  REQUIRE(empty.waiting_poppers() == 1);
  handle.cancel();
  loop.run();
  REQUIRE(handle.done());
  CHECK_THROWS_AS(handle.result(), duet::Cancelled);
  CHECK(empty.waiting_poppers() == 0);
}

// ---- Event ---------------------------------------------------------------------------------------

TEST_CASE("an event wakes every waiter queued at set(), in order, and a clear inside does not un-wake them",
          "[event]") {
  duet::Event ev;
  std::vector<std::string> log;
  ev.wait([&](std::error_code) {
    log.push_back("w1");
    ev.clear();                       // the others were woken by the same set()
    ev.wait(record(log, "w1-again"));  // this one waits for the next set()
  });
  ev.wait(record(log, "w2"));
  std::stop_source stop;
  ev.wait(duet::with_cancellation(stop.get_token(), record(log, "w3")));
  stop.request_stop();
  CHECK(log == std::vector<std::string>{"w3:ECANCELED"});
  ev.set();
  CHECK(log == std::vector<std::string>{"w3:ECANCELED", "w1", "w2"});
  CHECK_FALSE(ev.is_set());
  CHECK(ev.waiting() == 1);
  ev.set();
  CHECK(log.back() == "w1-again");
  ev.wait(record(log, "while set"));  // set: at once
  CHECK(log.back() == "while set");
}

TEST_CASE("event coroutine face: tasks wait for the set, and destroying an event cancels its waiters",
          "[event][coro]") {
  duet::Loop loop;
  duet::Event ev;
  int woken = 0;
  auto waiter = [](duet::Event& e, int& n) -> Task<> {
    co_await e.wait();
    ++n;
  };
  auto setter = [](duet::Loop& l, duet::Event& e, int& n) -> Task<> {
    co_await duet::sleep(l, 1ms);
    CHECK(n == 0);
    e.set();
  };
  auto all = [&]() -> Task<> { co_await duet::when_all(waiter(ev, woken), waiter(ev, woken), setter(loop, ev, woken)); };
  duet::run(loop, all());
  CHECK(woken == 2);

  std::vector<std::string> log;
  {
    duet::Event doomed;
    doomed.wait(record(log, "w"));
  }
  CHECK(log == std::vector<std::string>{"w:ECANCELED"});
}

// ---- Lock ----------------------------------------------------------------------------------------

TEST_CASE("a lock is FIFO, hands over on unlock, refuses an unlock it does not hold", "[lock]") {
  duet::Lock lock;
  std::vector<std::string> log;
  CHECK_THROWS_AS(lock.unlock(), std::logic_error);
  lock.lock(record(log, "a"));
  CHECK(lock.locked());
  lock.lock(record(log, "b"));
  std::stop_source stop;
  lock.lock(duet::with_cancellation(stop.get_token(), record(log, "cancelled")));
  lock.lock(record(log, "c"));
  CHECK_FALSE(lock.try_lock());
  CHECK(lock.waiting() == 3);
  stop.request_stop();  // leaves the line at once, and is never handed the lock
  CHECK(log == std::vector<std::string>{"a", "cancelled:ECANCELED"});
  log.erase(log.begin() + 1);
  CHECK(lock.waiting() == 2);
  lock.unlock();
  CHECK(log == std::vector<std::string>{"a", "b"});
  CHECK(lock.locked());  // handed straight to b
  lock.unlock();
  lock.unlock();
  CHECK(log == std::vector<std::string>{"a", "b", "c"});
  CHECK_FALSE(lock.locked());
  CHECK(lock.try_lock());
  lock.unlock();
}

TEST_CASE("lock coroutine face: a critical section across co_await holds one task at a time, and a guard "
          "releases on any exit, cancellation included",
          "[lock][coro][cancel]") {
  duet::Loop loop;
  duet::Lock lock;
  int inside = 0, max_inside = 0, done = 0;
  auto worker = [](duet::Loop& l, duet::Lock& lk, int& in, int& max_in, int& d) -> Task<> {
    auto guard = co_await lk.lock();
    max_in = std::max(max_in, ++in);
    co_await duet::sleep(l, 1ms);  // suspends while holding the lock
    --in;
    ++d;
  };
  auto all = [&]() -> Task<> {
    std::vector<Task<>> tasks;
    for (int i = 0; i < 5; ++i) tasks.push_back(worker(loop, lock, inside, max_inside, done));
    co_await duet::when_all(std::move(tasks));
  };
  duet::run(loop, all());
  CHECK(done == 5);
  CHECK(max_inside == 1);
  CHECK_FALSE(lock.locked());

  // A holder cancelled inside its critical section releases the lock as it unwinds.
  auto holder = [](duet::Loop& l, duet::Lock& lk) -> Task<> {
    auto guard = co_await lk.lock();
    co_await duet::sleep(l, 60s);
  };
  auto h = duet::spawn(loop, holder(loop, lock));
  loop.run_once();  // the holder takes the lock and sleeps
  REQUIRE(lock.locked());
  auto cancel_holder = [](duet::Lock& lk, duet::JoinHandle<void>& hh) -> Task<> {
    hh.cancel();
    auto guard = co_await lk.lock();  // granted once the holder has unwound
    CHECK(lk.locked());
  };
  duet::run(loop, cancel_holder(lock, h));
  REQUIRE(h.done());
  CHECK_THROWS_AS(h.result(), duet::Cancelled);
  CHECK_FALSE(lock.locked());
}

// ---- Semaphore::Permit::forget -------------------------------------------------------------------

TEST_CASE("a forgotten permit stays taken until released by hand", "[semaphore]") {
  duet::Loop loop;
  duet::Semaphore sem(1);
  duet::Semaphore* forgotten = nullptr;
  auto take = [](duet::Semaphore& s, duet::Semaphore*& out) -> Task<> {
    auto permit = co_await s.acquire();
    out = permit.forget();
    CHECK_FALSE(permit);
  };
  duet::run(loop, take(sem, forgotten));
  CHECK(forgotten == &sem);
  CHECK(sem.available() == 0);  // the permit outlived its scope
  forgotten->release();
  CHECK(sem.available() == 1);
  CHECK(duet::Semaphore::Permit().forget() == nullptr);
}

// ---- All of them: a callback whose token is already stopped ----------------------------------------

TEST_CASE("a callback whose token is already stopped gets UV_ECANCELED even when the result is at hand",
          "[queue][event][lock][cancel]") {
  std::stop_source stop;
  stop.request_stop();
  std::vector<std::string> log;
  auto stopped = [&](std::string name) { return duet::with_cancellation(stop.get_token(), record(log, name)); };

  duet::Queue<std::string> q(2);
  REQUIRE(q.try_push("kept"));
  q.push("dropped", stopped("push"));  // room for it: still cancelled, and not queued
  q.pop(duet::with_cancellation(stop.get_token(), record_value(log, "pop")));  // a value waits: not taken
  CHECK(q.size() == 1);
  CHECK(q.try_pop() == std::optional<std::string>("kept"));

  duet::Event event(true);
  event.wait(stopped("event"));

  duet::Lock lock;
  lock.lock(stopped("lock"));
  CHECK(lock.try_lock());  // the free lock was not taken
  lock.unlock();

  CHECK(log == std::vector<std::string>{"push:ECANCELED", "pop:ECANCELED", "event:ECANCELED",
                                        "lock:ECANCELED"});
}
