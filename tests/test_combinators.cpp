#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <stdexcept>

#include "duet/duet.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;

namespace {

using duet::test::after;
using duet::test::fail_after;

/// Sleeps for long; records whether it was cancelled (and let RAII run).
Task<int> long_sleeper(duet::Loop& loop, int& cancelled) {
  return duet::test::until_cancelled(duet::sleep(loop, 10s), cancelled);
}

}  // namespace

TEST_CASE("when_all returns results in argument order, whatever order they finish in", "[when_all]") {
  duet::Loop loop;
  auto t = [](duet::Loop& l) -> Task<std::tuple<int, int, int>> {
    auto [a, b, c] = co_await duet::when_all(after(l, 30, 1), after(l, 10, 2), after(l, 20, 3));
    co_return std::tuple(a, b, c);
  };
  CHECK(duet::run(loop, t(loop)) == std::tuple(1, 2, 3));
}

TEST_CASE("when_all over a range, and over void tasks", "[when_all]") {
  duet::Loop loop;
  auto t = [](duet::Loop& l) -> Task<std::vector<int>> {
    std::vector<Task<int>> tasks;
    for (int i = 0; i < 10; ++i) tasks.push_back(after(l, (i * 7) % 5, i));
    co_return co_await duet::when_all(std::move(tasks));
  };
  CHECK(duet::run(loop, t(loop)) == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});

  int count = 0;
  auto v = [](duet::Loop& l, int& n) -> Task<> {
    auto one = [](duet::Loop& l2, int& m) -> Task<> {
      co_await duet::sleep(l2, 1ms);
      ++m;
    };
    std::vector<Task<>> tasks;
    for (int i = 0; i < 5; ++i) tasks.push_back(one(l, n));
    co_await duet::when_all(std::move(tasks));
  };
  duet::run(loop, v(loop, count));
  CHECK(count == 5);
}

TEST_CASE("when_all: the first failure cancels the others, and is rethrown once they stopped", "[when_all][cancel]") {
  duet::Loop loop;
  int cancelled = 0;
  auto t = [](duet::Loop& l, int& c) -> Task<int> {
    auto [a, b, d] = co_await duet::when_all(long_sleeper(l, c), fail_after(l, 5), long_sleeper(l, c));
    co_return a + b + d;
  };
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(duet::run(loop, t(loop, cancelled)), "failed after 5ms");
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(cancelled == 2);  // both sleepers were cancelled before when_all returned
  loop.run();             // the cancelled timers' handles finish closing
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("when_all: an empty or already-awaited task makes the co_await throw, and no task starts", "[when_all]") {
  duet::Loop loop;
  int started = 0;
  auto counted = [](int& n) -> Task<int> {
    ++n;
    co_return 1;
  };
  auto range = [&](duet::Loop&) -> Task<> {
    std::vector<Task<int>> tasks;
    tasks.push_back(counted(started));
    tasks.emplace_back();  // empty
    co_await duet::when_all(std::move(tasks));
  };
  CHECK_THROWS_AS(duet::run(loop, range(loop)), std::logic_error);
  auto tuple = [&](duet::Loop&) -> Task<> {
    Task<int> moved_from = counted(started);
    Task<int> keep = std::move(moved_from);
    co_await duet::when_all(counted(started), std::move(moved_from));
  };
  CHECK_THROWS_AS(duet::run(loop, tuple(loop)), std::logic_error);
  CHECK(started == 0);
  auto awaited = [&](duet::Loop&) -> Task<> {
    Task<int> once = counted(started);
    CHECK(co_await once == 1);
    co_await duet::when_all(std::move(once), counted(started));
  };
  CHECK_THROWS_WITH(duet::run(loop, awaited(loop)), Catch::Contains("already awaited"));
  CHECK(started == 1);
}

TEST_CASE("when_all: references and move-only values, in both forms", "[when_all]") {
  duet::Loop loop;
  int x = 0;
  auto ref = [](duet::Loop& l, int& r) -> Task<int&> {
    co_await duet::sleep(l, 1ms);
    co_return r;
  };
  auto owned = [](duet::Loop& l, int v) -> Task<std::unique_ptr<int>> {
    co_await duet::sleep(l, 2ms);
    co_return std::make_unique<int>(v);
  };
  auto t = [&](duet::Loop& l) -> Task<int> {
    auto [r, p] = co_await duet::when_all(ref(l, x), owned(l, 7));
    r = 5;  // the tuple form decays a reference to a value, as it always has
    std::vector<Task<std::unique_ptr<int>>> tasks;
    tasks.push_back(owned(l, 1));
    tasks.push_back(owned(l, 2));
    std::vector<std::unique_ptr<int>> all = co_await duet::when_all(std::move(tasks));
    co_return *p + *all[0] * 10 + *all[1] * 100 + r;
  };
  CHECK(duet::run(loop, t(loop)) == 7 + 10 + 200 + 5);
  CHECK(x == 0);
}

TEST_CASE("when_all: cancelling the awaiting task cancels every task and throws Cancelled", "[when_all][cancel]") {
  duet::Loop loop;
  int cancelled = 0;
  auto t = [](duet::Loop& l, int& c) -> Task<> {
    co_await duet::when_all(long_sleeper(l, c), long_sleeper(l, c), long_sleeper(l, c));
  };
  auto handle = duet::spawn(loop, t(loop, cancelled));
  {
    duet::Timer stopper(loop);
    stopper.start(5ms, 0ms, [&] { handle.cancel(); });
    loop.run();
  }
  CHECK(cancelled == 3);
  CHECK_THROWS_AS(handle.result(), duet::Cancelled);
  loop.run();  // the timers' handles finish closing
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("as_completed yields results in completion order with their indices", "[as_completed]") {
  duet::Loop loop;
  auto t = [](duet::Loop& l) -> Task<std::vector<std::pair<std::size_t, int>>> {
    std::vector<Task<int>> tasks;
    tasks.push_back(after(l, 40, 100));
    tasks.push_back(after(l, 10, 101));
    tasks.push_back(after(l, 25, 102));
    tasks.push_back(after(l, 0, 103));
    std::vector<std::pair<std::size_t, int>> order;
    for (auto next : duet::as_completed(std::move(tasks))) {
      auto [index, value] = co_await next;
      order.emplace_back(index, value);
    }
    co_return order;
  };
  using P = std::pair<std::size_t, int>;
  CHECK(duet::run(loop, t(loop)) == std::vector<P>{{3, 103}, {1, 101}, {2, 102}, {0, 100}});
}

TEST_CASE("as_completed rethrows a task's exception in its turn, the others carry on", "[as_completed]") {
  duet::Loop loop;
  auto t = [](duet::Loop& l) -> Task<std::vector<std::string>> {
    std::vector<Task<int>> tasks;
    tasks.push_back(after(l, 20, 1));
    tasks.push_back(fail_after(l, 5));
    std::vector<std::string> events;
    for (auto next : duet::as_completed(std::move(tasks))) {
      try {
        auto [index, value] = co_await next;
        events.push_back("ok " + std::to_string(index));
      } catch (const std::runtime_error& e) {
        events.emplace_back(e.what());
      }
    }
    co_return events;
  };
  CHECK(duet::run(loop, t(loop)) == std::vector<std::string>{"failed after 5ms", "ok 0"});
}

TEST_CASE("as_completed: next.index() names the task whether it returned or threw", "[as_completed]") {
  duet::Loop loop;
  auto t = [](duet::Loop& l) -> Task<std::vector<std::string>> {
    std::vector<Task<int>> tasks;
    tasks.push_back(after(l, 30, 10));
    tasks.push_back(fail_after(l, 5, "boom"));
    tasks.push_back(after(l, 15, 12));
    std::vector<std::string> events;
    for (auto next : duet::as_completed(std::move(tasks))) {
      CHECK_THROWS_AS(next.index(), std::logic_error);  // nothing taken yet
      std::string what;
      try {
        what = std::to_string((co_await next).value);
      } catch (const std::runtime_error& e) {
        what = e.what();
      }
      events.push_back(std::to_string(next.index()) + ": " + what);
    }
    co_return events;
  };
  CHECK(duet::run(loop, t(loop)) == std::vector<std::string>{"1: boom", "2: 12", "0: 10"});
}

TEST_CASE("leaving an as_completed loop early cancels the tasks still running", "[as_completed][cancel]") {
  duet::Loop loop;
  int cancelled = 0;
  auto t = [](duet::Loop& l, int& c) -> Task<std::size_t> {
    std::vector<Task<int>> tasks;
    tasks.push_back(long_sleeper(l, c));
    tasks.push_back(after(l, 1, 7));
    tasks.push_back(long_sleeper(l, c));
    for (auto next : duet::as_completed(std::move(tasks))) {
      auto [index, value] = co_await next;
      co_return index;  // leave with two tasks still sleeping
    }
    co_return 99;
  };
  const auto start = std::chrono::steady_clock::now();
  CHECK(duet::run(loop, t(loop, cancelled)) == 1);
  loop.run();  // the abandoned tasks finish in the background, cancelled
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(cancelled == 2);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("destroying the loop while an as_completed consumer waits frees every frame", "[as_completed][loop]") {
  int cleaned = 0;
  struct Cleanup {
    int& n;
    ~Cleanup() { ++n; }
  };
  auto sleeper = [](duet::Loop& l, int& n) -> Task<int> {
    Cleanup c{n};
    co_await duet::sleep(l, 10s);
    co_return 1;
  };
  {
    duet::Loop loop;
    loop.set_error_handler([](std::exception_ptr) {});
    auto consumer = [&](duet::Loop& l) -> Task<int> {
      std::vector<Task<int>> v;
      v.push_back(sleeper(l, cleaned));
      v.push_back(sleeper(l, cleaned));
      for (auto next : duet::as_completed(std::move(v))) co_return static_cast<int>((co_await next).index);
      co_return -1;
    };
    auto h = duet::spawn(loop, consumer(loop));
    while (cleaned == 0 && loop.run_once()) {
      if (loop.live_resources() >= 2) break;  // both children are asleep
    }
  }
  CHECK(cleaned == 2);  // the children's RAII ran: their frames were destroyed, not leaked
}

TEST_CASE("leaving as_completed after every task finished still reports an untaken failure", "[as_completed]") {
  duet::Loop loop;
  duet::test::ErrorLog log;
  loop.set_error_handler(log.handler());
  auto& errors = log.messages;
  auto t = [](duet::Loop&) -> Task<std::size_t> {
    // Neither task suspends: both have finished by the time the consumer takes the first result.
    auto ok = []() -> Task<int> { co_return 1; };
    auto bad = []() -> Task<int> {
      throw std::runtime_error("failed at once");
      co_return 0;
    };
    std::vector<Task<int>> v;
    v.push_back(ok());
    v.push_back(bad());
    for (auto next : duet::as_completed(std::move(v))) {
      auto [index, value] = co_await next;
      co_return index;  // leaves with the failure untaken
    }
    co_return 99;
  };
  CHECK(duet::run(loop, t(loop)) == 0);
  CHECK(errors == std::vector<std::string>{"failed at once"});
}

namespace {
Task<int> served(duet::Semaphore& sem) {
  auto permit = co_await sem.acquire();
  co_return 42;
}
}  // namespace

TEST_CASE("a coroutine cancelled in the turn its tasks finish sees Cancelled from every combinator",
          "[when_all][with_timeout][cancel]") {
  using Make = std::function<Task<int>(duet::Semaphore&)>;
  const std::pair<const char*, Make> combinators[] = {
      {"when_all",
       [](duet::Semaphore& s) -> Task<int> {
         auto [v] = co_await duet::when_all(served(s));
         co_return v;
       }},
      {"when_all over a range",
       [](duet::Semaphore& s) -> Task<int> {
         std::vector<Task<int>> tasks;
         tasks.push_back(served(s));
         co_return (co_await duet::when_all(std::move(tasks)))[0];
       }},
      {"when_all_settled",
       [](duet::Semaphore& s) -> Task<int> {
         auto [v] = co_await duet::when_all_settled(served(s));
         co_return v.value();
       }},
      {"when_any", [](duet::Semaphore& s) -> Task<int> { co_return std::get<0>(co_await duet::when_any(served(s))); }},
      {"with_timeout", [](duet::Semaphore& s) -> Task<int> { co_return co_await duet::with_timeout(10s, served(s)); }},
  };
  for (const auto& [name, make] : combinators) {
    INFO(name);
    duet::Loop loop;
    duet::Semaphore sem(0);
    auto parent = duet::spawn(loop, make(sem));
    while (sem.waiting() == 0) loop.run_once();  // the task waits inside the combinator
    auto poke = [&]() -> Task<> {                // a coroutine: what it resumes runs once it has suspended
      sem.release();                             // the task is served (it finishes in this step)...
      parent.cancel();                           // ...and the coroutine awaiting it is cancelled before it resumes
      co_return;
    };
    duet::spawn(loop, poke()).detach();
    loop.run();
    REQUIRE(parent.done());
    CHECK_THROWS_AS(parent.result(), duet::Cancelled);
  }
}
