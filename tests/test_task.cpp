#include <catch2/catch.hpp>
#include <memory>
#include <stdexcept>

#include "duet/semaphore.hpp"
#include "duet/spawn.hpp"
#include "duet/timer.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

duet::Task<int> answer() { co_return 42; }

duet::Task<int> add_one(duet::Task<int> inner) { co_return co_await std::move(inner) + 1; }

duet::Task<int> fails() {
  throw std::runtime_error("task failed");
  co_return 0;
}

duet::Task<long> depth(long n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await depth(n - 1);
}

duet::Task<int&> pick(int& x) { co_return x; }

duet::Task<std::unique_ptr<int>> boxed(int v) { co_return std::make_unique<int>(v); }

duet::Task<> void_task(bool& ran) {
  ran = true;
  co_return;
}

}  // namespace

TEST_CASE("a Task is lazy: its body runs only when awaited", "[task]") {
  duet::Loop loop;
  bool ran = false;
  duet::Task<> t = void_task(ran);
  CHECK_FALSE(ran);
  CHECK(t.valid());
  CHECK_FALSE(t.done());
  duet::run(loop, std::move(t));
  CHECK(ran);
}

TEST_CASE("awaiting a Task returns its value, nested tasks compose", "[task]") {
  duet::Loop loop;
  CHECK(duet::run(loop, answer()) == 42);
  CHECK(duet::run(loop, add_one(add_one(answer()))) == 44);
}

TEST_CASE("an exception in a Task propagates to its awaiter and out of run", "[task]") {
  duet::Loop loop;
  CHECK_THROWS_WITH(duet::run(loop, add_one(fails())), "task failed");
}

TEST_CASE("Task<T&> returns a reference, Task<unique_ptr> moves its result", "[task]") {
  duet::Loop loop;
  int x = 1;
  int& r = duet::run(loop, pick(x));
  r = 7;
  CHECK(x == 7);
  auto p = duet::run(loop, boxed(5));
  REQUIRE(p);
  CHECK(*p == 5);
}

TEST_CASE("a 1,000,000-deep chain of co_await does not overflow the stack", "[task]") {
  duet::Loop loop;
  CHECK(duet::run(loop, depth(1'000'000)) == 1'000'000);
}

TEST_CASE("run throws when the loop runs out of work before the task finishes", "[task]") {
  duet::Loop loop;
  duet::Semaphore never(0);
  auto stuck = [](duet::Semaphore& sem) -> duet::Task<> { auto permit = co_await sem.acquire(); };
  CHECK_THROWS_AS(duet::run(loop, stuck(never)), std::logic_error);
  // The loop is left as it was: no stale stop request makes the next run return early.
  bool fired = false;
  duet::sleep(loop, 1ms, [&](std::error_code) { fired = true; });
  loop.run();
  CHECK(fired);
}

TEST_CASE("spawn starts on the next turn, on_done and result() serve callback code", "[task][spawn]") {
  duet::Loop loop;
  bool started = false;
  auto job = [](duet::Loop& l, bool& s) -> duet::Task<std::string> {
    s = true;
    co_await duet::sleep(l, 1ms);
    co_return "done";
  };
  auto handle = duet::spawn(loop, job(loop, started));
  CHECK_FALSE(started);  // not inside spawn
  CHECK_FALSE(handle.done());
  std::string seen;
  handle.on_done([&] { seen = handle.result(); });
  loop.run();
  CHECK(started);
  CHECK(handle.done());
  CHECK(seen == "done");
  CHECK_THROWS_AS(handle.result(), std::logic_error);  // only once
}

TEST_CASE("on_done registered after the task finished runs on the next turn", "[task][spawn]") {
  duet::Loop loop;
  auto handle = duet::spawn(loop, answer());
  loop.run();
  REQUIRE(handle.done());
  bool called = false;
  handle.on_done([&] { called = true; });
  CHECK_FALSE(called);
  loop.run();
  CHECK(called);
  CHECK(handle.result() == 42);
}

TEST_CASE("a coroutine can co_await a spawned task's handle", "[task][spawn]") {
  duet::Loop loop;
  auto worker = [](duet::Loop& l) -> duet::Task<int> {
    co_await duet::sleep(l, 2ms);
    co_return 6;
  };
  auto boss = [](duet::Loop& l, auto w) -> duet::Task<int> {
    auto h = duet::spawn(l, w(l));
    co_return 7 * co_await h;
  };
  CHECK(duet::run(loop, boss(loop, worker)) == 42);
}

TEST_CASE("a detached task's exception reaches the loop's error hook", "[task][spawn]") {
  duet::Loop loop;
  duet::test::ErrorLog log;
  loop.set_error_handler(log.handler());
  auto& errors = log.messages;
  auto late = [](duet::Loop& l) -> duet::Task<> {
    co_await duet::sleep(l, 1ms);
    throw std::runtime_error("nobody is listening");
  };
  duet::spawn(loop, late(loop)).detach();  // dropped before it fails
  auto unobserved = duet::spawn(loop, fails());
  auto observed = duet::spawn(loop, fails());
  loop.run();
  CHECK(errors == std::vector<std::string>{"nobody is listening"});
  CHECK_THROWS_WITH(observed.result(), "task failed");
  { auto gone = std::move(unobserved); }  // finished with an exception nobody took: reported now
  REQUIRE(errors.size() == 2);
  CHECK(errors[1] == "task failed");
}

TEST_CASE("destroying the loop frees suspended tasks and fails their handles", "[task][spawn]") {
  std::optional<duet::JoinHandle<int>> handle;
  bool cleaned_up = false;
  struct Cleanup {
    bool& flag;
    ~Cleanup() { flag = true; }
  };
  {
    duet::Loop loop;
    loop.set_error_handler([](std::exception_ptr) {});
    auto waits = [](duet::Loop& l, bool& flag) -> duet::Task<int> {
      Cleanup c{flag};
      co_await duet::sleep(l, 10s);
      co_return 1;
    };
    handle = duet::spawn(loop, waits(loop, cleaned_up));
    loop.run_once();  // start it: now it is suspended on the sleep
    CHECK_FALSE(handle->done());
  }
  CHECK(cleaned_up);  // its frame was destroyed, RAII included
  REQUIRE(handle->done());
  try {
    handle->result();
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code() == duet::errc::loop_closed);
  }
}

TEST_CASE("coroutine frames are recycled", "[task]") {
  auto task = [](int x) -> duet::Task<int> { co_return x; };
  duet::Task<int> first = task(1);
  const void* frame = first.handle().address();
  first = duet::Task<int>();  // never started: the frame goes back to the pool
  duet::Task<int> second = task(2);
  CHECK(second.handle().address() == frame);  // the same memory, not a new allocation
}

TEST_CASE("awaiting a handle that its owner drops meanwhile is safe", "[task][spawn]") {
  duet::Loop loop;
  auto slow = [](duet::Loop& l) -> duet::Task<int> {
    co_await duet::sleep(l, 5ms);
    co_return 42;
  };
  auto waiter = [](duet::Loop& l, duet::JoinHandle<int>& h) -> duet::Task<int> {
    // Drop the handle on a later turn, while this coroutine is suspended on it (`slow` is still sleeping).
    duet::sleep(l, 0ms, [&h](std::error_code) { h.detach(); });
    co_return co_await h;
  };
  auto inner = duet::spawn(loop, slow(loop));
  auto outer = duet::spawn(loop, waiter(loop, inner));
  loop.run();
  CHECK(outer.result() == 42);
}

TEST_CASE("a handle that outlives its loop: a failure is still reported, not lost or crashed on", "[task][spawn]") {
  duet::JoinHandle<int> handle;  // declared first: destroyed after the loop
  {
    duet::Loop loop;
    handle = duet::spawn(loop, fails());
    loop.run();
    REQUIRE(handle.done());
  }
  CHECK_THROWS_AS(handle.on_done([] {}), std::logic_error);
  handle = duet::JoinHandle<int>();  // unobserved failure, loop gone: reported on stderr, no crash
}

TEST_CASE("a task spawned but never started reports loop_closed", "[task][spawn]") {
  duet::JoinHandle<int> handle;
  {
    duet::Loop loop;
    loop.set_error_handler([](std::exception_ptr) {});
    handle = duet::spawn(loop, answer());
  }
  REQUIRE(handle.done());
  const bool awaited = GENERATE(false, true);  // true: from a task on another loop, which is no misuse
  CAPTURE(awaited);
  try {
    if (awaited) {
      duet::Loop other;
      duet::run(other, [&]() -> duet::Task<int> { co_return co_await handle; }());
    } else {
      handle.result();
    }
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code() == duet::errc::loop_closed);
  }
}

TEST_CASE("a task never started frees its frame and its on_done callbacks as the Loop goes", "[task][spawn]") {
  // The frame's argument and a callback's capture are watched; a callback that keeps its own handle
  // (the usual way to keep a detached task's result in sight) must not keep either alive.
  auto task = [](std::shared_ptr<int>) -> duet::Task<int> { co_return 1; };
  std::weak_ptr<int> argument, captured;
  bool called = false;
  {
    duet::Loop loop;
    loop.set_error_handler([](std::exception_ptr) {});
    auto arg = std::make_shared<int>(1);
    auto cap = std::make_shared<int>(2);
    argument = arg;
    captured = cap;
    auto handle = std::make_shared<duet::JoinHandle<int>>(duet::spawn(loop, task(std::move(arg))));
    handle->on_done([&called, handle, cap = std::move(cap)] { called = true; });
  }  // the Loop goes before its next turn: the task never starts
  CHECK_FALSE(called);
  CHECK(argument.expired());
  CHECK(captured.expired());
}

TEST_CASE("awaiting an empty task throws logic_error", "[task]") {
  duet::Loop loop;
  auto t = []() -> duet::Task<int> {
    duet::Task<int> empty;
    co_return co_await std::move(empty);
  };
  CHECK_THROWS_AS(duet::run(loop, t()), std::logic_error);
}

TEST_CASE("a loop run from inside a coroutine runs its own tasks", "[task]") {
  auto small = [](duet::Loop& l) -> duet::Task<int> {
    co_await duet::sleep(l, 1ms);
    co_return 7;
  };
  auto blocking_helper = [&] {  // a synchronous API built on a private loop
    duet::Loop private_loop;
    return duet::run(private_loop, small(private_loop));
  };
  auto outer = [&](duet::Loop& l) -> duet::Task<int> {
    int r = blocking_helper();
    co_await duet::sleep(l, 1ms);
    co_return r;
  };
  duet::Loop loop;
  CHECK(duet::run(loop, outer(loop)) == 7);
}
