// Loops on threads of their own: LoopThread, LoopGroup, `submit` and `resume_on` between loops, and
// cancellation across them. Run under ThreadSanitizer too (the tsan preset).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "duet/duet.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;

namespace {

/// Runs `fn` on `loop`'s thread and waits until it has returned.
template <class Fn>
void call_on(duet::Loop& loop, Fn fn) {
  std::promise<void> done;
  loop.post([&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

/// Blocks a loop's thread until `open()`: what is posted to that loop waits behind it.
class Gate {
 public:
  void close_on(duet::Loop& loop) {
    std::promise<void> closed;
    loop.post([this, &closed] {
      closed.set_value();
      opened_.get_future().wait();
    });
    closed.get_future().wait();
  }
  void open() { opened_.set_value(); }

 private:
  std::promise<void> opened_;
};

}  // namespace

TEST_CASE("a LoopThread runs its loop on its own thread until it is destroyed", "[loop_thread]") {
  std::thread::id ran_on;
  std::optional<duet::LoopThread> t;
  t.emplace();
  call_on(t->loop(), [&] { ran_on = std::this_thread::get_id(); });
  CHECK(ran_on == t->thread_id());
  CHECK(ran_on != std::this_thread::get_id());

  // A timer on its loop fires there; the loop keeps running with nothing to do.
  std::promise<std::thread::id> fired;
  t->loop().post(
      [&] { duet::sleep(t->loop(), 1ms, [&](std::error_code) { fired.set_value(std::this_thread::get_id()); }); });
  CHECK(fired.get_future().get() == t->thread_id());
  call_on(t->loop(), [] {});  // still running

  // Destroying it with a timer pending cancels that timer, whose callback is not called.
  bool called = false;
  call_on(t->loop(), [&] { duet::sleep(t->loop(), 1h, [&](std::error_code) { called = true; }); });
  std::string report;
  call_on(t->loop(), [&] {
    t->loop().set_error_handler([&](std::exception_ptr e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        report = ex.what();
      }
    });
  });
  t.reset();
  CHECK_FALSE(called);
  CHECK(report.find("1 operation(s) pending") != std::string::npos);
}

TEST_CASE("a LoopThread's loop survives a stop() from code on it", "[loop_thread]") {
  duet::LoopThread t;
  call_on(t.loop(), [&] { t.loop().stop(); });
  call_on(t.loop(), [] {});  // the thread ran the loop again: only join() ends it
}

TEST_CASE("a LoopGroup hands its loops out in turn", "[loop_thread]") {
  CHECK_THROWS_AS(duet::LoopGroup(0), std::invalid_argument);
  duet::LoopGroup group(3);
  REQUIRE(group.size() == 3);
  CHECK(&group.next() == &group[0]);
  CHECK(&group.next() == &group[1]);
  CHECK(&group.next() == &group[2]);
  CHECK(&group.next() == &group[0]);
  std::thread::id ids[3];
  for (int i = 0; i < 3; ++i) call_on(group[i], [&, i] { ids[i] = std::this_thread::get_id(); });
  CHECK(ids[0] != ids[1]);
  CHECK(ids[1] != ids[2]);
  CHECK(ids[0] == group.thread(0).thread_id());
}

TEST_CASE("submit runs a function on another loop and calls back on the caller's", "[loop_thread][submit]") {
  duet::Loop here;
  duet::LoopThread there;
  std::thread::id fn_thread, cb_thread;
  int got = 0;
  std::error_code got_ec = duet::uv_error(UV_EINVAL);
  duet::submit(
      here, there.loop(),
      [&] {
        fn_thread = std::this_thread::get_id();
        return 42;
      },
      [&](std::error_code ec, int v) {
        got_ec = ec;
        got = v;
        cb_thread = std::this_thread::get_id();
      });
  here.run();  // kept running while the submit is pending
  CHECK_FALSE(got_ec);
  CHECK(got == 42);
  CHECK(fn_thread == there.thread_id());
  CHECK(cb_thread == std::this_thread::get_id());

  SECTION("what the function throws comes back with errc::offload_threw") {
    std::exception_ptr thrown;
    duet::submit(
        here, there.loop(), []() -> int { throw std::runtime_error("no"); },
        [&](std::error_code ec, int, std::exception_ptr e) {
          got_ec = ec;
          thrown = e;
        });
    here.run();
    CHECK(got_ec == duet::errc::offload_threw);
    REQUIRE(thrown);
    CHECK_THROWS_WITH(std::rethrow_exception(thrown), "no");
  }
  SECTION("a void function, to the caller's own loop") {
    bool ran = false;
    duet::submit(
        here, here, [&] { ran = true; }, [&](std::error_code ec) { got_ec = ec; });
    here.run();
    CHECK(ran);
    CHECK_FALSE(got_ec);
  }
}

TEST_CASE("submit's coroutine face returns on the awaiting task's loop and rethrows", "[loop_thread][submit]") {
  duet::Loop here;
  duet::LoopGroup group(2);
  auto task = [&]() -> Task<int> {
    const auto home = std::this_thread::get_id();
    int a = co_await duet::submit(group[0], [] { return 20; });
    CHECK(std::this_thread::get_id() == home);
    int b = co_await duet::submit(group[1],
                                  [&] { return std::this_thread::get_id() == group.thread(1).thread_id() ? 22 : -1; });
    CHECK(std::this_thread::get_id() == home);
    try {
      co_await duet::submit(group[0], []() -> int { throw std::out_of_range("thrown there"); });
      FAIL("no exception");
    } catch (const std::out_of_range& e) {
      CHECK(std::string(e.what()) == "thrown there");
    }
    co_return a + b;
  };
  CHECK(duet::run(here, task()) == 42);
}

TEST_CASE("cancelling a submit before its function starts means it never runs", "[loop_thread][submit][cancel]") {
  duet::Loop here;
  duet::LoopThread there;
  Gate gate;
  gate.close_on(there.loop());  // the function waits behind this
  std::stop_source stop;
  std::atomic<bool> ran{false};
  std::error_code got;
  duet::submit(
      here, there.loop(), [&] { ran = true; },
      duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { got = ec; }));
  stop.request_stop();
  gate.open();
  here.run();
  CHECK(duet::is_cancelled(got));
  CHECK_FALSE(ran.load());
}

TEST_CASE("a submit whose token is already stopped never runs its function", "[loop_thread][submit][cancel]") {
  duet::Loop here;
  duet::LoopThread there;
  std::stop_source stop;
  stop.request_stop();
  std::atomic<bool> ran{false};
  std::error_code got;
  duet::submit(
      here, there.loop(), [&] { ran = true; },
      duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { got = ec; }));
  here.run();
  CHECK(duet::is_cancelled(got));
  CHECK_FALSE(ran.load());
}

TEST_CASE("a running submitted function sees the caller's stop through its token", "[loop_thread][submit][cancel]") {
  duet::Loop here;
  duet::LoopThread there;
  std::stop_source stop;
  std::error_code got;
  int value = -1;
  bool stopped_inside = false;
  duet::submit(
      here, there.loop(),
      [&](std::stop_token token) {
        // Ask the caller's loop to cancel, then wait for the stop to arrive here, on this thread.
        here.post([&] { stop.request_stop(); });
        while (!token.stop_requested()) std::this_thread::yield();
        stopped_inside = true;
        return 7;
      },
      duet::with_cancellation(stop.get_token(), [&](std::error_code ec, int v) {
        got = ec;
        value = v;
      }));
  here.run();
  CHECK(stopped_inside);  // the callback came only after the function returned
  CHECK(duet::is_cancelled(got));
  CHECK(value == 0);  // the result is dropped
}

TEST_CASE("a submit to a loop destroyed before running it reports loop_closed", "[loop_thread][submit]") {
  duet::Loop here;
  std::optional<duet::Loop> there(std::in_place);  // never run
  bool ran = false;
  std::error_code got;
  duet::submit(
      here, *there, [&] { ran = true; }, [&](std::error_code ec) { got = ec; });
  there->set_error_handler([](std::exception_ptr) {});  // its "1 operation pending" report
  there.reset();
  here.run();
  CHECK(got == duet::errc::loop_closed);
  CHECK_FALSE(ran);
}

TEST_CASE("a submit whose caller's loop is destroyed first calls nothing back", "[loop_thread][submit]") {
  std::optional<duet::Loop> here(std::in_place);
  duet::LoopThread there;
  Gate gate;
  gate.close_on(there.loop());
  std::promise<void> ran;
  bool called = false;
  duet::submit(
      *here, there.loop(), [&] { ran.set_value(); }, [&](std::error_code) { called = true; });
  here->set_error_handler([](std::exception_ptr) {});
  here.reset();  // while the function waits behind the gate
  gate.open();
  ran.get_future().wait();
  call_on(there.loop(), [] {});  // its reply has been sent (and refused) by now
  CHECK_FALSE(called);
}

TEST_CASE("resume_on moves a task between loops and back", "[loop_thread][resume_on]") {
  duet::Loop home;
  duet::LoopGroup group(2);
  const auto main_thread = std::this_thread::get_id();
  auto away_and_back = [&]() -> Task<std::string> {
    std::string trail;
    co_await duet::resume_on(group[0]);
    trail += std::this_thread::get_id() == group.thread(0).thread_id() ? "0" : "?";
    co_await duet::sleep(group[0], 1ms);  // an operation of the loop it is on now
    co_await duet::resume_on(group[1]);
    trail += std::this_thread::get_id() == group.thread(1).thread_id() ? "1" : "?";
    co_await duet::resume_on(group[1]);  // there already: no hop
    co_await duet::resume_on(home);
    trail += std::this_thread::get_id() == main_thread ? "h" : "?";
    co_await duet::sleep(home, 1ms);
    co_return trail;
  };
  CHECK(duet::run(home, away_and_back()) == "01h");

  SECTION("a task that finishes away resumes its awaiter on its own loop") {
    auto finish_away = [&]() -> Task<int> {
      co_await duet::resume_on(group[1]);
      co_return 5;
    };
    auto parent = [&]() -> Task<bool> {
      int v = co_await finish_away();
      co_return v == 5 && std::this_thread::get_id() == main_thread;
    };
    CHECK(duet::run(home, parent()));
  }
  SECTION("when_all over tasks that hop to different loops") {
    auto on = [&](duet::Loop& l, int v) -> Task<int> {
      co_await duet::resume_on(l);
      co_await duet::sleep(l, 1ms);
      co_return v;
    };
    auto all = [&]() -> Task<int> {
      auto [a, b, c] = co_await duet::when_all(on(group[0], 1), on(group[1], 2), on(home, 3));
      co_return std::this_thread::get_id() == main_thread ? a + b + c : -1;
    };
    CHECK(duet::run(home, all()) == 6);
  }
}

TEST_CASE("a JoinHandle awaited from a task away on another loop is a logic error", "[loop_thread][resume_on]") {
  duet::Loop home;
  duet::LoopThread there;
  duet::Event release;  // home's: set at home only
  auto waiter = [&]() -> Task<int> {
    co_await release.wait();
    co_return 1;
  };
  // The check must not depend on whether the spawned task is still running.
  bool finished_first = GENERATE(false, true);
  CAPTURE(finished_first);
  auto task = [&]() -> Task<std::string> {
    auto handle = duet::spawn(home, waiter());
    if (finished_first) release.set();
    while (finished_first && !handle.done()) co_await duet::sleep(home, 1ms);
    co_await duet::resume_on(there.loop());
    std::string what;
    try {
      co_await handle;
    } catch (const std::logic_error& e) {
      what = e.what();
    }
    co_await duet::resume_on(home);
    release.set();
    co_return what + (co_await handle == 1 ? " / awaited at home" : "");
  };
  CHECK(duet::run(home, task()) ==
        "duet::JoinHandle: awaited from a task on another loop than the spawned task's / awaited at home");
}

TEST_CASE("an as_completed result awaited from a task away on another loop is a logic error",
          "[loop_thread][resume_on][as_completed]") {
  duet::Loop home;
  duet::LoopThread there;
  duet::Event release;  // home's: set at home only
  auto quick = []() -> Task<int> { co_return 1; };
  bool gated_finished = false;
  auto gated = [&]() -> Task<int> {
    co_await release.wait();
    gated_finished = true;  // its result is ready when this turn ends
    co_return 2;
  };
  // The check must not depend on whether a result is waiting.
  bool result_waiting = GENERATE(false, true);
  CAPTURE(result_waiting);
  auto task = [&]() -> Task<std::string> {
    std::vector<Task<int>> tasks;
    tasks.push_back(quick());
    tasks.push_back(gated());
    std::string trail;
    bool first = true;
    for (auto next : duet::as_completed(std::move(tasks))) {
      if (!first) {  // the second result is awaited away first
        if (result_waiting) release.set();
        while (result_waiting && !gated_finished) co_await duet::sleep(home, 1ms);
        co_await duet::resume_on(there.loop());
        try {
          co_await next;
        } catch (const std::logic_error& e) {
          trail += std::string(" / ") + e.what();
        }
        co_await duet::resume_on(home);
        release.set();
      }
      first = false;
      trail += " / " + std::to_string((co_await next).value);
    }
    co_return trail;
  };
  CHECK(duet::run(home, task()) ==
        " / 1 / duet::as_completed: awaited from a task on another loop than the first co_await's / 2");
}

TEST_CASE("cancelling a task cancels what it awaits on another loop", "[loop_thread][resume_on][cancel]") {
  duet::Loop home;
  duet::LoopThread there;
  std::atomic<bool> sleeping{false};
  std::thread::id threw_on;
  auto sleeper = [&]() -> Task<> {
    co_await duet::resume_on(there.loop());
    try {
      sleeping = true;
      co_await duet::sleep(there.loop(), 1h);
    } catch (const duet::Cancelled&) {
      threw_on = std::this_thread::get_id();
      throw;
    }
  };
  auto handle = duet::spawn(home, sleeper());
  // Cancel from the home loop once the task sleeps over there.
  std::function<void()> check = [&] {
    if (sleeping) return handle.cancel();
    duet::sleep(home, 1ms, [&](std::error_code) { check(); });
  };
  check();
  auto waiter = [&]() -> Task<bool> {
    try {
      co_await handle;
    } catch (const duet::Cancelled&) {
      co_return true;
    }
    co_return false;
  };
  CHECK(duet::run(home, waiter()));
  CHECK(threw_on == there.thread_id());
}

TEST_CASE("resume_on to a loop destroyed first throws loop_closed where the task was", "[loop_thread][resume_on]") {
  duet::Loop home;
  std::optional<duet::Loop> there(std::in_place);  // never run: the hop waits in its queue
  there->set_error_handler([](std::exception_ptr) {});
  auto task = [&]() -> Task<std::string> {
    try {
      co_await duet::resume_on(*there);
    } catch (const std::system_error& e) {
      co_return e.code() == duet::errc::loop_closed ? "closed" : e.what();
    }
    co_return "arrived";
  };
  auto handle = duet::spawn(home, task());
  home.post([&] { there.reset(); });  // runs after the task's start, so after its hop was posted
  auto wait = [](duet::JoinHandle<std::string>& h) -> Task<std::string> { co_return co_await h; };
  CHECK(duet::run(home, wait(handle)) == "closed");
}

namespace {

struct Counted {
  std::atomic<int>* gone;
  ~Counted() { ++*gone; }
};

// Bounces between two loops forever, counting its hops.
Task<> ping_pong(duet::Loop& a, duet::Loop& b, std::atomic<int>& hops, std::atomic<int>& gone) {
  Counted counted{&gone};
  for (;;) {
    co_await duet::resume_on(b);
    co_await duet::sleep(b, 100us);
    ++hops;
    co_await duet::resume_on(a);
    ++hops;
  }
}

}  // namespace

TEST_CASE("a LoopGroup shut down with tasks hopping and submits in flight frees them all", "[loop_thread][shutdown]") {
  constexpr int kTasks = 20;
  std::atomic<int> hops{0}, gone{0};
  std::optional<duet::LoopGroup> group(std::in_place, 2);
  duet::Loop outside;
  std::error_code submit_ec;
  bool submit_called = false;
  for (int i = 0; i < 2; ++i)
    call_on((*group)[i], [&, i] {
      (*group)[i].set_error_handler([](std::exception_ptr) {});
      for (int k = 0; k < kTasks / 2; ++k)
        duet::spawn((*group)[i], ping_pong((*group)[i], (*group)[1 - i], hops, gone));
    });
  while (hops.load() < 200) std::this_thread::yield();  // hopping is well under way
  // A submit from outside, racing the shutdown.
  duet::submit(
      outside, (*group)[0], [] { return 1; },
      [&](std::error_code ec, int) {
        submit_called = true;
        submit_ec = ec;
      });
  group.reset();  // every loop stops, then each is destroyed: the tasks' frames are freed, none resumed
  CHECK(gone.load() == kTasks);
  outside.run();  // the submit either ran before the shutdown or reports that its loop closed
  CHECK(submit_called);
  CHECK((!submit_ec || submit_ec == duet::errc::loop_closed));
}

namespace {
/// Waits for a permit of `sem`; sets `unwound` if cancelled there (and goes on unwinding).
template <class Flag>
Task<> wait_for_permit(duet::Semaphore& sem, Flag& unwound) {
  try {
    auto permit = co_await sem.acquire();
  } catch (const duet::Cancelled&) {
    unwound = true;
    throw;
  }
}
}  // namespace

TEST_CASE("a task cancelled from another thread just before its Loop is destroyed unwinds and leaves no waiter",
          "[loop_thread][cancel]") {
  duet::Semaphore sem(0);  // outlives the Loop
  bool unwound = false;
  duet::test::ErrorLog errors;
  {
    duet::Loop loop;
    loop.set_error_handler(errors.handler());  // (the Loop reports its unfinished task)
    auto parent = [&]() -> Task<> { co_await duet::when_all(wait_for_permit(sem, unwound)); };
    auto handle = duet::spawn(loop, parent());
    loop.run_once();  // the child starts, and queues
    REQUIRE(sem.waiting() == 1);
    // The stop reaches the loop on a turn that never comes: the Loop is destroyed first.
    std::thread([&] { handle.cancel(); }).join();
  }
  // The Loop requested it as it went, and the waiter left the queue before its frame was freed.
  CHECK(unwound);
  CHECK(sem.waiting() == 0);
  // The stop on its way was duet's own: no callback of the user's was lost with it.
  REQUIRE(errors.messages.size() == 1);
  CHECK_THAT(errors.messages[0], Catch::Contains("with 0 operation(s) pending"));
  sem.release();  // (it used to resume the freed frame)
  CHECK(sem.available() == 1);
}

TEST_CASE("a host's Loop destroyed by a posted function delivers a stop routed to it behind that function",
          "[loop_thread][cancel]") {
  duet::Semaphore sem(0);  // outlives the Loop
  bool unwound = false;
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  auto loop = std::make_unique<duet::Loop>(&host);
  loop->set_error_handler([](std::exception_ptr) {});
  auto handle = duet::spawn(*loop, wait_for_permit(sem, unwound));
  uv_run(&host, UV_RUN_NOWAIT);
  REQUIRE(sem.waiting() == 1);
  loop->post([&] { loop.reset(); });             // runs first in the next batch, and destroys the Loop...
  std::thread([&] { handle.cancel(); }).join();  // ...with this stop, routed to it, behind in the batch
  uv_run(&host, UV_RUN_NOWAIT);
  CHECK(unwound);
  CHECK(sem.waiting() == 0);
  uv_run(&host, UV_RUN_DEFAULT);  // the closing handles
  CHECK(uv_loop_close(&host) == 0);
}

namespace {
/// A posted function that, when destroyed uncalled (a Loop being destroyed drops it, after closing
/// its mailbox), cancels `handle` from another thread and waits for that to return: a cancel landing
/// inside the Loop's destruction, made deterministic.
struct CancelWhenDropped {
  duet::JoinHandle<void>* handle;
  explicit CancelWhenDropped(duet::JoinHandle<void>* h) : handle(h) {}
  CancelWhenDropped(CancelWhenDropped&& other) noexcept : handle(std::exchange(other.handle, nullptr)) {}
  CancelWhenDropped& operator=(CancelWhenDropped&&) = delete;
  ~CancelWhenDropped() {
    if (handle) std::thread([h = handle] { h->cancel(); }).join();
  }
  void operator()() const {}
};
}  // namespace

TEST_CASE("a task cancelled from another thread while its Loop is being destroyed unwinds and leaves no waiter",
          "[loop_thread][cancel]") {
  duet::Semaphore sem(0);  // outlives the Loop
  bool unwound = false;
  duet::JoinHandle<void> handle;
  {
    duet::Loop loop;
    loop.set_error_handler([](std::exception_ptr) {});
    handle = duet::spawn(loop, wait_for_permit(sem, unwound));
    loop.run_once();
    REQUIRE(sem.waiting() == 1);
    loop.post(CancelWhenDropped(&handle));
  }  // the cancel came after the mailbox had closed: its stop, routed to the loop, used to be lost
  CHECK(unwound);
  CHECK(sem.waiting() == 0);
  CHECK(handle.done());
  sem.release();  // (it used to resume the freed frame)
  CHECK(sem.available() == 1);
}

TEST_CASE("a task's cancel() on another thread racing its Loop's destruction never leaves a waiter",
          "[loop_thread][cancel]") {
  // Each round lands the cancel somewhere else in the destruction (or before, or after it): the
  // canceller starts with the destruction and first counts to a number that grows with the round, and
  // the Loop drops a queue of functions as it goes, which widens the window after its mailbox closes.
  for (int round = 0; round < 200; ++round) {
    CAPTURE(round);
    duet::Semaphore sem(0);
    bool unwound = false;
    duet::JoinHandle<void> handle;
    std::atomic<bool> go{false};
    std::thread canceller;
    {
      duet::Loop loop;
      loop.set_error_handler([](std::exception_ptr) {});
      handle = duet::spawn(loop, wait_for_permit(sem, unwound));
      loop.run_once();
      REQUIRE(sem.waiting() == 1);
      for (int i = 0; i < 2000; ++i) loop.post([kept = std::make_shared<int>(i)] {});
      canceller = std::thread([&, count = round * 500] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        for (int i = 0; i < count; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);  // (kept)
        handle.cancel();
      });
      go.store(true, std::memory_order_release);
    }
    canceller.join();
    REQUIRE(unwound);
    REQUIRE(sem.waiting() == 0);
  }
}

TEST_CASE("a LoopGroup destroyed with a stop routed to another of its loops delivers it before any frame goes",
          "[loop_thread][resume_on][shutdown]") {
  auto sem = std::make_unique<duet::Semaphore>(0);  // used on loop 0's thread; outlives the group
  std::atomic<bool> unwound{false}, on_done_ran{false};
  {
    duet::LoopGroup loops(2);
    duet::JoinHandle<void> handle;
    auto away = [&](duet::Loop& there) -> Task<> {
      co_await duet::resume_on(there);
      co_await wait_for_permit(*sem, unwound);
    };
    for (int i = 0; i < 2; ++i) call_on(loops[i], [&, i] { loops[i].set_error_handler([](std::exception_ptr) {}); });
    call_on(loops[1], [&] {
      handle = duet::spawn(loops[1], away(loops[0]));
      handle.on_done([&] { on_done_ran = true; });  // must not run inside the group's destruction
    });
    for (bool queued = false; !queued;) call_on(loops[0], [&] { queued = sem->waiting() == 1; });
    loops.join();  // neither loop runs now: the stop below waits in loop 0's mailbox
    std::thread([&] { handle.cancel(); }).join();
  }  // loop 1, the task's own, is destroyed first and frees its frame; loop 0 used to deliver the stop after
  CHECK(unwound);
  CHECK(sem->waiting() == 0);
  CHECK_FALSE(on_done_ran);
  sem->release();
  CHECK(sem->available() == 1);
}

TEST_CASE("cancels from another thread racing a LoopGroup's destruction leave no waiter, at home or away",
          "[loop_thread][resume_on][shutdown][cancel]") {
  // Each loop has a task waiting at home and one away on the other loop. A thread cancels all four
  // as the group goes, after counting to a number that grows with the round: a stop the task's loop
  // routes to the other may arrive there after that loop has stopped.
  auto away = [](duet::Loop& there, duet::Semaphore& sem) -> Task<> {
    co_await duet::resume_on(there);
    auto permit = co_await sem.acquire();
  };
  auto home = [](duet::Semaphore& sem) -> Task<> { auto permit = co_await sem.acquire(); };
  for (int round = 0; round < 100; ++round) {
    CAPTURE(round);
    // Used on one loop's thread each; they outlive the group.
    auto sem0 = std::make_unique<duet::Semaphore>(0), sem1 = std::make_unique<duet::Semaphore>(0);
    duet::JoinHandle<void> handles[4];
    std::atomic<bool> go{false};
    std::thread canceller;
    {
      duet::LoopGroup loops(2);
      for (int i = 0; i < 2; ++i) call_on(loops[i], [&, i] { loops[i].set_error_handler([](std::exception_ptr) {}); });
      call_on(loops[0], [&] {
        handles[0] = duet::spawn(loops[0], home(*sem0));
        handles[1] = duet::spawn(loops[0], away(loops[1], *sem1));
      });
      call_on(loops[1], [&] {
        handles[2] = duet::spawn(loops[1], home(*sem1));
        handles[3] = duet::spawn(loops[1], away(loops[0], *sem0));
      });
      for (bool queued = false; !queued;) call_on(loops[0], [&] { queued = sem0->waiting() == 2; });
      for (bool queued = false; !queued;) call_on(loops[1], [&] { queued = sem1->waiting() == 2; });
      canceller = std::thread([&, count = (round % 50) * 2000] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        for (int i = 0; i < count; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);  // (kept)
        for (int i = 0; i < 4; ++i) handles[(i + round) % 4].cancel();
      });
      go.store(true, std::memory_order_release);
    }
    canceller.join();
    REQUIRE(sem0->waiting() == 0);
    REQUIRE(sem1->waiting() == 0);
    for (auto& handle : handles) {
      REQUIRE(handle.done());
      CHECK_THROWS(handle.result());  // Cancelled, or loop_closed for a frame the group freed
    }
  }
}

TEST_CASE(
    "two loops' threads cancelling tasks away on each other, which cancel each other as they unwind, "
    "finish",
    "[loop_thread][resume_on][cancel]") {
  // Each task waits on the other loop; each loop's thread cancels the task away on it, whose
  // unwinding (inside that cancel) cancels the other task. No lock may be held across a cancel.
  for (int round = 0; round < 50; ++round) {
    CAPTURE(round);
    auto sem0 = std::make_unique<duet::Semaphore>(0), sem1 = std::make_unique<duet::Semaphore>(0);
    duet::JoinHandle<void> first, second;
    std::promise<void> first_done, second_done;
    {
      duet::LoopGroup loops(2);
      auto away = [](duet::Loop& there, duet::Semaphore& sem, duet::JoinHandle<void>& other) -> Task<> {
        co_await duet::resume_on(there);
        try {
          auto permit = co_await sem.acquire();
        } catch (const duet::Cancelled&) {
          other.cancel();
          throw;
        }
      };
      for (int i = 0; i < 2; ++i) call_on(loops[i], [&, i] { loops[i].set_error_handler([](std::exception_ptr) {}); });
      call_on(loops[0], [&] {
        first = duet::spawn(loops[0], away(loops[1], *sem1, second));
        first.on_done([&] { first_done.set_value(); });
      });
      call_on(loops[1], [&] {
        second = duet::spawn(loops[1], away(loops[0], *sem0, first));
        second.on_done([&] { second_done.set_value(); });
      });
      for (bool queued = false; !queued;) call_on(loops[1], [&] { queued = sem1->waiting() == 1; });
      for (bool queued = false; !queued;) call_on(loops[0], [&] { queued = sem0->waiting() == 1; });
      loops[1].post([&] { first.cancel(); });   // on loop 1's thread: `first` is loop 0's task
      loops[0].post([&] { second.cancel(); });  // on loop 0's thread: `second` is loop 1's
      first_done.get_future().wait();           // (a deadlock hangs here, and the test times out)
      second_done.get_future().wait();
      call_on(loops[0], [&] { CHECK_THROWS_AS(first.result(), duet::Cancelled); });
      call_on(loops[1], [&] { CHECK_THROWS_AS(second.result(), duet::Cancelled); });
    }
    CHECK(sem0->waiting() == 0);
    CHECK(sem1->waiting() == 0);
  }
}

TEST_CASE("a LoopGroup destroyed while a task waits on another of its loops cancels the task there first",
          "[loop_thread][resume_on][shutdown]") {
  const bool joined_elsewhere = GENERATE(false, true);  // (joining makes the joining thread the loops')
  CAPTURE(joined_elsewhere);
  // Semaphores used on one loop's thread each; they outlive the group.
  auto away_sem = std::make_unique<duet::Semaphore>(0);
  auto home_sem = std::make_unique<duet::Semaphore>(0);
  std::atomic<bool> unwound{false}, on_done_ran{false};
  {
    duet::LoopGroup loops(2);
    auto away = [&](duet::Loop& there) -> Task<> {
      co_await duet::resume_on(there);
      co_await wait_for_permit(*away_sem, unwound);
    };
    auto home = [&]() -> Task<> { auto permit = co_await home_sem->acquire(); };
    for (int i = 0; i < 2; ++i) call_on(loops[i], [&, i] { loops[i].set_error_handler([](std::exception_ptr) {}); });
    call_on(loops[0], [&] {
      duet::spawn(loops[0], away(loops[1])).detach();
      auto handle = duet::spawn(loops[0], home());
      handle.on_done([&] { on_done_ran = true; });  // must not run inside the group's destruction
      handle.detach();
    });
    for (bool queued = false; !queued;) call_on(loops[1], [&] { queued = away_sem->waiting() == 1; });
    call_on(loops[0], [&] { REQUIRE(home_sem->waiting() == 1); });
    if (joined_elsewhere) std::thread([&] { loops.join(); }).join();
  }  // loop 1, the task's away loop, is destroyed first: its stop used to reach a freed loop
  CHECK(unwound);
  CHECK(away_sem->waiting() == 0);
  CHECK(home_sem->waiting() == 0);
  CHECK_FALSE(on_done_ran);
}

TEST_CASE("listeners that ask for it share a port, and others are refused it", "[loop_thread][server_group]") {
  duet::Loop loop;
  duet::TcpListener first(loop, duet::Endpoint::loopback(0), 16, true);
  const auto at = first.local_endpoint();
  CHECK_NOTHROW(duet::TcpListener(loop, at, 16, true));
  try {
    duet::TcpListener plain(loop, at);
    FAIL("a listener without reuse_port got the port");
  } catch (const std::system_error& e) {
    CHECK(e.code() == duet::uv_error(UV_EADDRINUSE));
  }
}

namespace {

// One client loop's share of the load: `n` GETs over ten connections, each answer checked.
Task<> load_server(duet::Loop& loop, std::string base, int c, int n, std::atomic<int>& ok, std::atomic<int>& wrong,
                   std::atomic<int> (&by_loop)[2], std::promise<void>& finished) {
  duet::http::ClientOptions options;
  options.max_connections_per_origin = 10;  // ten connections from each client loop
  duet::http::Client client(loop, options);
  auto one = [&](int i) -> Task<> {
    const std::string target = "/" + std::to_string(c) + "/" + std::to_string(i);
    auto res = co_await client.get(base + target);
    const std::string& body = res.body;
    if (res.status == 200 && body.size() > 2 && body.substr(2) == target && (body[0] == '0' || body[0] == '1')) {
      ++ok;
      ++by_loop[body[0] - '0'];
    } else {
      ++wrong;
    }
  };
  std::vector<Task<>> all;
  for (int i = 0; i < n; ++i) all.push_back(one(i));
  co_await duet::when_all(std::move(all));
  finished.set_value();
}

}  // namespace

TEST_CASE("a ServerGroup serves one port from every loop, under load from many client loops",
          "[loop_thread][server_group]") {
  constexpr int kClientLoops = 4, kRequestsEach = 50;
  duet::LoopGroup server_loops(2);
  std::thread::id server_ids[2] = {server_loops.thread(0).thread_id(), server_loops.thread(1).thread_id()};
  duet::http::ServerGroup servers(server_loops, duet::Endpoint::loopback(0), [&](duet::Loop& loop) {
    // The body says which loop answered; the coroutine face sleeps on the loop it was given.
    return [&loop, &server_ids](duet::http::ServerRequest req) -> Task<duet::http::Response> {
      co_await duet::sleep(loop, 1ms);
      const char* which = std::this_thread::get_id() == server_ids[0]   ? "0"
                          : std::this_thread::get_id() == server_ids[1] ? "1"
                                                                        : "?";
      co_return duet::http::Response{200, "OK", {}, std::string(which) + " " + req.target};
    };
  });
  REQUIRE(servers.size() == 2);
  const std::string base = "http://" + servers.local_endpoint().to_string();

  std::atomic<int> ok{0}, wrong{0}, by_loop[2] = {0, 0};
  {
    duet::LoopGroup clients(kClientLoops);
    std::vector<std::promise<void>> finished(kClientLoops);
    for (int c = 0; c < kClientLoops; ++c) {
      clients[c].post([&, c] {
        duet::spawn(clients[c], load_server(clients[c], base, c, kRequestsEach, ok, wrong, by_loop, finished[c]));
      });
    }
    for (auto& f : finished) f.get_future().wait();
  }
  CHECK(ok.load() == kClientLoops * kRequestsEach);
  CHECK(wrong.load() == 0);
  // Forty connections spread by the kernel's hash: both loops took some.
  CHECK(by_loop[0].load() > 0);
  CHECK(by_loop[1].load() > 0);
  CHECK(servers.connections() <= 40);

  SECTION("closed after its loops have stopped, it says so instead of waiting forever") {
    server_loops.join();
    CHECK_THROWS_AS(servers.close(), std::logic_error);
  }
  SECTION("it cannot be made from one of its own loops' threads") {
    std::promise<bool> refused;
    server_loops[0].post([&] {
      try {
        duet::http::ServerGroup again(server_loops, duet::Endpoint::loopback(0), [](duet::Loop&) {
          return [](duet::http::ServerRequest, duet::http::Reply reply) { reply(duet::http::Response{}); };
        });
        refused.set_value(false);
      } catch (const std::logic_error&) {
        refused.set_value(true);
      }
    });
    CHECK(refused.get_future().get());
  }
}

#ifndef NDEBUG
TEST_CASE("run() on another thread takes over a Loop made elsewhere, as Loop::run does", "[loop_thread][affinity]") {
  // (Only debug builds check which thread a task is spawned on: run() used to spawn before it ran
  // the loop, on a thread that was not yet the loop's.)
  const auto death = duet::test::death_of([] {
    duet::Loop loop;  // made on this thread
    int got = 0;
    std::thread other([&] { got = duet::run(loop, []() -> Task<int> { co_return 42; }()); });
    other.join();
    if (got != 42) std::abort();
  });
  CHECK_FALSE(death.died);
  CHECK(death.said.empty());
}

TEST_CASE("debug builds stop a duet object made on a thread that does not run its loop", "[loop_thread][affinity]") {
  // 0: an operation; 1: a callback added to a running task's handle (the task not finished yet)
  const int what = GENERATE(0, 1);
  CAPTURE(what);
  const auto death = duet::test::death_of([what] {
    duet::Loop loop;                                                   // this thread's
    auto handle = duet::spawn(loop, []() -> Task<> { co_return; }());  // not started: not done
    std::thread other([&] {
      if (what == 0) duet::sleep(loop, 1ms, [](std::error_code) {});
      if (what == 1) handle.on_done([] {});
    });
    other.join();
  });
  CHECK(death.died);
  CHECK(death.said.find("used on a thread that does not run its loop") != std::string::npos);
}
#endif
