// TaskGroup, when_any, when_all_settled, shield, Generator, and with_timeout around combinators.
//
// No `co_await` inside CHECK/REQUIRE: their expansion repeats the expression in a `false && ...`
// operand that g++ 12 still evaluates in a coroutine, so the operation would run twice. Await into a
// local, then check it (CHECK_THROWS_* do not repeat the expression and may hold one).
#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "duet/duet.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;

namespace {

using duet::test::after;
using duet::test::fail_after;

/// Waits on `gate` until cancelled; counts the cancellation (RAII ran) and rethrows it.
Task<int> wait_forever(duet::Event& gate, int& cancelled) { return duet::test::until_cancelled(gate.wait(), cancelled); }

std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

}  // namespace

// ---- TaskGroup -----------------------------------------------------------------------------------

TEST_CASE("a task group waits for every child, spawned before or during the wait", "[task_group]") {
  duet::Loop loop;
  std::vector<int> results;
  auto body = [&]() -> Task<> {
    duet::TaskGroup group;
    auto child = [](duet::Loop& l, int ms, std::vector<int>& out) -> Task<> { out.push_back(co_await after(l, ms, ms)); };
    auto spawner = [&](duet::TaskGroup& g) -> Task<> {
      co_await duet::sleep(loop, 1ms);
      g.spawn(child(loop, 20, results));  // spawned while the group is awaited: starts at once
    };
    group.spawn(child(loop, 10, results));
    group.spawn(child(loop, 5, results));
    group.spawn(spawner(group));
    CHECK(results.empty());  // nothing runs before the group is awaited
    co_await group;
    CHECK(group.size() == 0);
    CHECK_THROWS_AS(group.spawn(child(loop, 1, results)), std::logic_error);
  };
  duet::run(loop, body());
  CHECK(results == std::vector<int>{5, 10, 20});
}

TEST_CASE("a task group's first failure cancels the others and is rethrown, and every failure is kept",
          "[task_group][cancel]") {
  duet::Loop loop;
  duet::Event never;
  int cancelled = 0;
  std::vector<std::exception_ptr> failures;
  // A child that fails while being cancelled: its cleanup throws something else.
  auto fails_when_cancelled = [](duet::Event& gate) -> Task<> {
    try {
      co_await gate.wait();
    } catch (const duet::Cancelled&) {
      throw std::runtime_error("cleanup failed");
    }
  };
  auto body = [&]() -> Task<> {
    duet::TaskGroup group;
    group.spawn(wait_forever(never, cancelled));
    group.spawn(fail_after(loop, 5, "first"));
    group.spawn(fails_when_cancelled(never));
    group.spawn(wait_forever(never, cancelled));
    try {
      co_await group;
      FAIL("no exception");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "first");
    }
    failures = group.exceptions();
  };
  duet::run(loop, body());
  CHECK(cancelled == 2);
  REQUIRE(failures.size() == 2);
  CHECK(message_of(failures[0]) == "first");
  CHECK(message_of(failures[1]) == "cleanup failed");
}

TEST_CASE("cancelling the task that awaits a group cancels every child, and a group never awaited runs nothing",
          "[task_group][cancel]") {
  duet::Loop loop;
  duet::Event never;
  int cancelled = 0;
  auto parent = [&]() -> Task<> {
    duet::TaskGroup group;
    for (int i = 0; i < 3; ++i) group.spawn(wait_forever(never, cancelled));
    co_await group;
  };
  auto h = duet::spawn(loop, parent());
  loop.run_once();  // the children have started and wait
  h.cancel();
  loop.run();
  REQUIRE(h.done());
  CHECK_THROWS_AS(h.result(), duet::Cancelled);
  CHECK(cancelled == 3);

  int ran = 0;
  auto counted = [](int& n) -> Task<> {
    ++n;
    co_return;
  };
  auto abandons = [&]() -> Task<> {
    duet::TaskGroup group;
    group.spawn(counted(ran));
    throw std::runtime_error("the owner fails before awaiting");
    co_await group;
  };
  CHECK_THROWS_AS(duet::run(loop, abandons()), std::runtime_error);
  CHECK(ran == 0);
}

TEST_CASE("a long-lived task group takes children as they come, and ends when the last one does", "[task_group]") {
  duet::Loop loop;
  int done = 0;
  auto body = [&]() -> Task<> {
    duet::TaskGroup group;
    auto quick = [](duet::Loop& l, int& n) -> Task<> {
      co_await duet::sleep(l, 0ms);
      ++n;
    };
    auto feeder = [&](duet::TaskGroup& g) -> Task<> {
      for (int i = 0; i < 2000; ++i) {
        g.spawn(quick(loop, done));
        co_await duet::sleep(loop, 0ms);
        CHECK(g.size() <= 3);  // the feeder, and at most two quick ones
      }
    };
    group.spawn(feeder(group));
    co_await group;
  };
  duet::run(loop, body());
  CHECK(done == 2000);
}

TEST_CASE("a spawn from outside as the last child ends is either waited for or refused, never lost",
          "[task_group]") {
  duet::Loop loop;
  duet::Event last_done;
  bool refused = false, ran = false, ran_before_group_returned = false;
  auto body = [&]() -> Task<> {
    duet::TaskGroup group;
    auto child = [](duet::Loop& l, duet::Event& e) -> Task<> {
      co_await duet::sleep(l, 1ms);
      e.set();  // wakes the feeder in this turn, as the child ends
    };
    auto late = [](bool& out) -> Task<> {
      out = true;
      co_return;
    };
    auto feeder = [&](duet::TaskGroup& g) -> Task<> {
      co_await last_done.wait();
      try {
        g.spawn(late(ran));
      } catch (const std::logic_error&) {
        refused = true;
      }
    };
    auto fed = duet::spawn(loop, feeder(group));
    group.spawn(child(loop, last_done));
    co_await group;
    ran_before_group_returned = ran;
    co_await fed;
  };
  duet::run(loop, body());
  CHECK(refused != ran);  // one or the other
  CHECK(ran_before_group_returned == ran);  // accepted: the group waited for it
}

// ---- when_any ------------------------------------------------------------------------------------

TEST_CASE("when_any: the first to finish wins, the others are cancelled and awaited", "[when_any]") {
  duet::Loop loop;
  duet::Event never;
  int cancelled = 0;
  auto body = [&]() -> Task<> {
    auto r = co_await duet::when_any(wait_forever(never, cancelled), after(loop, 5, 42), wait_forever(never, cancelled));
    CHECK(r.index() == 1);
    CHECK(std::get<1>(r) == 42);
    CHECK(cancelled == 2);  // awaited: their cleanup has run

    std::vector<Task<int>> mirrors;
    mirrors.push_back(after(loop, 30, 1));
    mirrors.push_back(after(loop, 10, 2));
    mirrors.push_back(after(loop, 20, 3));
    duet::Completed<int> first = co_await duet::when_any(std::move(mirrors));
    CHECK(first.index == 1);
    CHECK(first.value == 2);

    auto v = [](duet::Loop& l) -> Task<> { co_await duet::sleep(l, 1ms); };
    auto mixed = co_await duet::when_any(v(loop), wait_forever(never, cancelled));
    CHECK(mixed.index() == 0);
  };
  duet::run(loop, body());
  CHECK(cancelled == 3);
  CHECK_THROWS_AS(duet::when_any(std::vector<Task<int>>{}), std::invalid_argument);
}

TEST_CASE("when_any: a Task<T&> that wins is returned as a reference_wrapper to the very object", "[when_any]") {
  duet::Loop loop;
  duet::Event never;
  int cancelled = 0;
  std::string kept = "original";
  auto ref = [](duet::Loop& l, std::string& s) -> Task<std::string&> {
    co_await duet::sleep(l, 1ms);
    co_return s;
  };
  auto body = [&]() -> Task<> {
    auto r = co_await duet::when_any(wait_forever(never, cancelled), ref(loop, kept));
    REQUIRE(r.index() == 1);
    std::reference_wrapper<std::string> won = std::get<1>(r);
    CHECK(&won.get() == &kept);  // not a copy
    won.get() = "changed through the winner";
  };
  duet::run(loop, body());
  CHECK(kept == "changed through the winner");
  CHECK(cancelled == 1);
}

TEST_CASE("when_any: a failure can win, and two finishing in the same turn, the first completion wins",
          "[when_any]") {
  duet::Loop loop;
  duet::Event gate;
  auto body = [&]() -> Task<> {
    auto first_fails = [&]() -> Task<int> { co_return co_await fail_after(loop, 1, "lost the race by failing"); };
    try {
      (void)co_await duet::when_any(first_fails(), after(loop, 50, 1));
      FAIL("no exception");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "lost the race by failing");
    }
    // Both wait on one event: set() wakes them in one turn, in the order they began waiting.
    auto waiter = [](duet::Event& e, int v) -> Task<int> {
      co_await e.wait();
      co_return v;
    };
    auto setter = [](duet::Loop& l, duet::Event& e) -> Task<int> {
      co_await duet::sleep(l, 1ms);
      e.set();
      co_await duet::sleep(l, 60s);  // cancelled once a waiter wins
      co_return 0;
    };
    auto r = co_await duet::when_any(waiter(gate, 1), waiter(gate, 2), setter(loop, gate));
    CHECK(r.index() == 0);
    CHECK(std::get<0>(r) == 1);
  };
  duet::run(loop, body());
}

TEST_CASE("when_any: a loser that fails while being cancelled goes to the error hook", "[when_any]") {
  duet::Loop loop;
  std::vector<std::string> reported;
  loop.set_error_handler([&](std::exception_ptr e) { reported.push_back(message_of(e)); });
  duet::Event never;
  auto stubborn = [](duet::Event& gate) -> Task<int> {
    try {
      co_await gate.wait();
    } catch (const duet::Cancelled&) {
      throw std::runtime_error("failed while cancelled");
    }
    co_return 0;
  };
  auto body = [&]() -> Task<int> {
    auto r = co_await duet::when_any(after(loop, 1, 7), stubborn(never));
    co_return std::get<0>(r);
  };
  CHECK(duet::run(loop, body()) == 7);
  CHECK(reported == std::vector<std::string>{"failed while cancelled"});
}

// ---- when_all_settled ----------------------------------------------------------------------------

TEST_CASE("when_all_settled returns every outcome and cancels nobody for a failure", "[when_any][when_all]") {
  duet::Loop loop;
  auto body = [&]() -> Task<> {
    std::vector<Task<int>> tasks;
    tasks.push_back(after(loop, 20, 1));
    tasks.push_back(fail_after(loop, 1, "boom"));
    tasks.push_back(after(loop, 10, 3));
    std::vector<duet::Settled<int>> all = co_await duet::when_all_settled(std::move(tasks));
    REQUIRE(all.size() == 3);
    CHECK(all[0].ok());
    CHECK(all[0].value() == 1);  // not cancelled by the failure that came first
    CHECK_FALSE(all[1].ok());
    CHECK(message_of(all[1].error()) == "boom");
    CHECK_THROWS_AS(all[1].value(), std::runtime_error);
    CHECK(all[2].value() == 3);

    auto v = [](duet::Loop& l) -> Task<> { co_await duet::sleep(l, 1ms); };
    auto [a, b] = co_await duet::when_all_settled(v(loop), fail_after(loop, 2));
    CHECK(a.ok());
    CHECK_FALSE(b.ok());
  };
  duet::run(loop, body());
}

// ---- with_timeout around combinators and groups -----------------------------------------------------

TEST_CASE("with_timeout takes when_all, when_any, a task group and a nested with_timeout",
          "[when_any][task_group]") {
  duet::Loop loop;
  duet::Event never;
  int cancelled = 0;
  auto body = [&]() -> Task<> {
    auto [a, b] = co_await duet::with_timeout(1s, duet::when_all(after(loop, 1, 1), after(loop, 2, 2)));
    CHECK(a + b == 3);
    CHECK_THROWS_AS(co_await duet::with_timeout(5ms, duet::when_all(after(loop, 1, 1), wait_forever(never, cancelled))),
                    duet::TimedOut);
    CHECK(cancelled == 1);
    auto any = co_await duet::with_timeout(1s, duet::when_any(wait_forever(never, cancelled), after(loop, 1, 5)));
    CHECK(std::get<1>(any) == 5);
    duet::TaskGroup group;
    group.spawn(wait_forever(never, cancelled));
    CHECK_THROWS_AS(co_await duet::with_timeout(5ms, group), duet::TimedOut);
    CHECK(cancelled == 3);
    const int nested = co_await duet::with_timeout(1s, duet::with_timeout(1s, after(loop, 1, 9)));
    CHECK(nested == 9);
  };
  duet::run(loop, body());
}

// ---- shield --------------------------------------------------------------------------------------

TEST_CASE("a shielded task survives its awaiter's cancellation and finishes", "[shield][cancel]") {
  duet::Loop loop;
  auto finished = std::make_shared<bool>(false);
  auto precious = [](duet::Loop& l, std::shared_ptr<bool> done) -> Task<int> {
    co_await duet::sleep(l, 20ms);
    *done = true;
    co_return 1;
  };
  auto awaiter = [&]() -> Task<int> { co_return co_await duet::shield(precious(loop, finished)); };
  auto h = duet::spawn(loop, awaiter());
  loop.run_once();  // the awaiter waits on the shielded task
  h.cancel();
  loop.run();  // runs until the shielded task is done too
  REQUIRE(h.done());
  CHECK_THROWS_AS(h.result(), duet::Cancelled);
  CHECK(*finished);

  // Not cancelled: the value (or the exception) comes through.
  auto plain = [&]() -> Task<int> { co_return co_await duet::shield(after(loop, 1, 3)); };
  CHECK(duet::run(loop, plain()) == 3);
  auto failing = [&]() -> Task<int> { co_return co_await duet::shield(fail_after(loop, 1, "inner")); };
  CHECK_THROWS_WITH(duet::run(loop, failing()), "inner");
}

TEST_CASE("a shielded task that fails after its awaiter left goes to the error hook", "[shield]") {
  duet::Loop loop;
  std::vector<std::string> reported;
  loop.set_error_handler([&](std::exception_ptr e) { reported.push_back(message_of(e)); });
  auto awaiter = [&]() -> Task<int> { co_return co_await duet::shield(fail_after(loop, 10, "nobody saw it")); };
  auto h = duet::spawn(loop, awaiter());
  loop.run_once();
  h.cancel();
  loop.run();
  CHECK_THROWS_AS(h.result(), duet::Cancelled);
  CHECK(reported == std::vector<std::string>{"nobody saw it"});
}

// ---- Generator -----------------------------------------------------------------------------------

namespace {
duet::Generator<int> countdown(duet::Loop& loop, int from, int* cleaned = nullptr) {
  struct Cleanup {
    int* n;
    ~Cleanup() {
      if (n) ++*n;
    }
  } cleanup{cleaned};
  for (int i = from; i > 0; --i) {
    co_await duet::sleep(loop, 1ms);
    co_yield i;
  }
}
}  // namespace

TEST_CASE("a generator yields values between awaits, then ends with an empty optional", "[generator]") {
  duet::Loop loop;
  auto body = [&]() -> Task<std::vector<int>> {
    std::vector<int> got;
    auto gen = countdown(loop, 3);
    while (std::optional<int> v = co_await gen.next()) got.push_back(*v);
    CHECK(gen.done());
    const std::optional<int> after_end = co_await gen.next();
    CHECK_FALSE(after_end);  // and stays ended
    auto again = countdown(loop, 2);
    co_await duet::for_each(again, [&](int v) { got.push_back(v * 10); });
    auto third = countdown(loop, 2);
    co_await duet::for_each(third, [&](int v) -> Task<> {
      co_await duet::sleep(loop, 1ms);
      got.push_back(v * 100);
    });
    co_return got;
  };
  CHECK(duet::run(loop, body()) == std::vector<int>{3, 2, 1, 20, 10, 200, 100});
}

TEST_CASE("a generator's exception comes out of next(), and destroying it early runs its cleanup",
          "[generator]") {
  duet::Loop loop;
  auto failing = [](duet::Loop& l) -> duet::Generator<std::string> {
    co_yield "one";
    co_await duet::sleep(l, 1ms);
    throw std::runtime_error("generator failed");
  };
  int cleaned = 0;
  auto body = [&]() -> Task<> {
    auto gen = failing(loop);
    const std::optional<std::string> one = co_await gen.next();
    CHECK(one == "one");
    CHECK_THROWS_WITH(co_await gen.next(), "generator failed");
    const std::optional<std::string> after_failure = co_await gen.next();
    CHECK_FALSE(after_failure);
    {
      auto partial = countdown(loop, 5, &cleaned);
      const std::optional<int> five = co_await partial.next();
      CHECK(five == 5);
      CHECK(cleaned == 0);
    }
    CHECK(cleaned == 1);
  };
  duet::run(loop, body());
}

TEST_CASE("a generator runs in its consumer's context: cancelling the consumer cancels the body",
          "[generator][cancel]") {
  duet::Loop loop;
  int cleaned = 0;
  bool saw_cancelled = false;
  auto consumer = [&]() -> Task<> {
    auto gen = countdown(loop, 1'000'000, &cleaned);
    try {
      while (co_await gen.next()) {
      }
    } catch (const duet::Cancelled&) {
      saw_cancelled = true;
      throw;
    }
  };
  auto h = duet::spawn(loop, consumer());
  loop.run_once();
  h.cancel();
  loop.run();
  CHECK(saw_cancelled);
  CHECK(cleaned == 1);
  CHECK_THROWS_AS(h.result(), duet::Cancelled);
}
