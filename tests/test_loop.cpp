#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "duet/detail/copyable_function.hpp"
#include "duet/event.hpp"
#include "duet/fs.hpp"
#include "duet/loop.hpp"
#include "duet/open_files.hpp"
#include "duet/spawn.hpp"
#include "duet/submit.hpp"
#include "duet/tcp.hpp"
#include "duet/timer.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

using duet::test::ErrorLog;
using duet::test::stderr_of;

TEST_CASE("an owned loop runs until it has no more work", "[loop]") {
  duet::Loop loop;
  CHECK(loop.owns_native());
  REQUIRE(loop.native() != nullptr);
  int fired = 0;
  duet::sleep(loop, 1ms, [&](std::error_code) { ++fired; });
  loop.run();
  CHECK(fired == 1);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("post from the loop thread runs in order on a later turn", "[loop]") {
  duet::Loop loop;
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) loop.post([&order, i] { order.push_back(i); });
  CHECK(order.empty());  // not run inside post()
  loop.run();            // deferred work keeps the loop running until it is done
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("post from 4 threads x 10,000 delivers every function, in order per thread", "[loop][threads]") {
  constexpr int kThreads = 4;
  constexpr int kPosts = 10'000;
  duet::Loop loop;
  std::vector<std::vector<int>> seen(kThreads);
  int total = 0;
  std::optional<duet::Loop::Hold> hold(loop.hold());  // other threads post while we run

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPosts; ++i) {
        loop.post([&, t, i] {
          seen[t].push_back(i);
          if (++total == kThreads * kPosts) hold.reset();
        });
      }
    });
  }
  loop.run();
  for (auto& th : threads) th.join();

  CHECK(total == kThreads * kPosts);
  for (int t = 0; t < kThreads; ++t) {
    REQUIRE(seen[t].size() == static_cast<std::size_t>(kPosts));
    CHECK(std::is_sorted(seen[t].begin(), seen[t].end()));
    CHECK(seen[t].back() == kPosts - 1);
  }
}

TEST_CASE("an exception thrown by a callback reaches the error hook and the loop carries on", "[loop]") {
  duet::Loop loop;
  ErrorLog log;
  loop.set_error_handler(log.handler());
  bool later_ran = false;
  duet::sleep(loop, 1ms, [](std::error_code) { throw std::runtime_error("boom in a timer"); });
  loop.post([] { throw std::runtime_error("boom in a post"); });
  duet::sleep(loop, 5ms, [&](std::error_code) { later_ran = true; });
  loop.run();
  CHECK(later_ran);
  REQUIRE(log.messages.size() == 2);
  CHECK(std::find(log.messages.begin(), log.messages.end(), "boom in a timer") != log.messages.end());
  CHECK(std::find(log.messages.begin(), log.messages.end(), "boom in a post") != log.messages.end());
}

TEST_CASE("stop() makes run() return with work still pending", "[loop]") {
  duet::Loop loop;
  bool long_fired = false;
  duet::sleep(loop, 1ms, [&](std::error_code) { loop.stop(); });
  duet::sleep(loop, 10s, [&](std::error_code) { long_fired = true; });
  const auto start = std::chrono::steady_clock::now();
  loop.run();
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK_FALSE(long_fired);
  CHECK(loop.live_resources() == 1);  // the long sleep; destroying the loop cancels it
  loop.set_error_handler([](std::exception_ptr) {});
}

TEST_CASE("run_once reports whether work remains", "[loop]") {
  duet::Loop loop;
  CHECK_FALSE(loop.run_once());  // nothing to do
  bool fired = false;
  duet::sleep(loop, 1ms, [&](std::error_code) { fired = true; });
  while (!fired) loop.run_once();
  CHECK(fired);
}

TEST_CASE("run_once runs a timer that is due and returns, without waiting for I/O", "[loop]") {
  duet::Loop loop;
  bool later_fired = false;
  duet::Timer later(loop);  // the loop's other work: a turn that waits for I/O sleeps until it is due
  later.start(30s, 0ms, [&] { later_fired = true; });
  for (int turn = 0; turn < 3; ++turn) {  // started before the turn, as a TLS read served from bytes it has
    bool fired = false;
    duet::Timer now(loop);
    now.start(0ms, 0ms, [&] { fired = true; });
    CHECK(loop.run_once());
    CHECK(fired);
    CHECK_FALSE(later_fired);  // libuv 1.44's UV_RUN_ONCE ran the due timer, then slept the 30 s
  }
}

TEST_CASE("a Hold keeps run() going until it is released", "[loop]") {
  duet::Loop loop;
  std::optional<duet::Loop::Hold> hold(loop.hold());
  std::atomic<bool> delivered{false};
  std::thread poster([&] {
    loop.post([&] {
      delivered = true;
      hold.reset();
    });
  });
  loop.run();  // without the hold this could return before the post arrives
  poster.join();
  CHECK(delivered);
}

TEST_CASE("wrapping a host's uv_loop_t: duet runs on it and never closes it", "[loop][embed]") {
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  int fired = 0;
  {
    duet::Loop loop(&host);
    CHECK_FALSE(loop.owns_native());
    CHECK(loop.native() == &host);
    duet::sleep(loop, 1ms, [&](std::error_code ec) { fired += ec ? 0 : 1; });
    uv_run(&host, UV_RUN_DEFAULT);  // the host drives the loop, not duet
    CHECK(fired == 1);
  }
  // duet is gone; the host's loop is intact and still usable.
  uv_timer_t t;
  uv_timer_init(&host, &t);
  t.data = &fired;
  uv_timer_start(
      &t, [](uv_timer_t* h) { ++*static_cast<int*>(h->data); }, 1, 0);
  uv_run(&host, UV_RUN_DEFAULT);
  CHECK(fired == 2);
  uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
  uv_run(&host, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&host) == 0);  // duet left nothing open on it
}

TEST_CASE("destroying a wrapped loop with work pending: reported, and freed when the host runs", "[loop][embed]") {
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  bool called = false;
  std::vector<std::string> reports;
  {
    duet::Loop loop(&host);
    loop.set_error_handler([&](std::exception_ptr e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::system_error& ex) {
        CHECK(ex.code() == duet::errc::loop_closed);
        reports.emplace_back(ex.what());
      }
    });
    duet::sleep(loop, 10s, [&](std::error_code) { called = true; });
    duet::sleep(loop, 20s, [&](std::error_code) { called = true; });
  }
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].find("2 operation(s) pending") != std::string::npos);
  uv_run(&host, UV_RUN_DEFAULT);  // duet's closing handles finish here; ASan checks nothing leaks
  CHECK_FALSE(called);
  CHECK(uv_loop_close(&host) == 0);
}

TEST_CASE("destroying an owned loop closes everything duet opened and reports pending work", "[loop]") {
  ErrorLog log;
  bool called = false;
  std::optional<duet::Timer> outlives_loop;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    duet::sleep(loop, 10s, [&](std::error_code) { called = true; });
    duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
    listener.accept([&](std::error_code, duet::TcpStream) { called = true; });
    outlives_loop.emplace(loop);
    outlives_loop->start(10s, 0s, [&] { called = true; });
  }
  CHECK_FALSE(called);
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].find("3 operation(s) pending") != std::string::npos);
  // The Timer's handle was closed with the loop: the object is inert, not dangling.
  CHECK_FALSE(outlives_loop->active());
  CHECK_THROWS_AS(outlives_loop->start(1s, 0s, [] {}), std::system_error);
  outlives_loop.reset();
}

TEST_CASE("destroying an owned loop closes handles opened by code outside duet too", "[loop]") {
  ErrorLog log;
  auto* raw = new uv_timer_t;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    uv_timer_init(loop.native(), raw);
    uv_timer_start(
        raw, [](uv_timer_t*) {}, 100000, 100000);
  }
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].find("1 handle(s) not opened by duet") != std::string::npos);
  delete raw;  // closed by the loop's destructor, so freeing it now is safe
}

namespace {
/// A host's libuv loop, a duet Loop wrapping it (which a test may destroy), and the Loop's error log.
struct HostedLoop {
  HostedLoop() {
    REQUIRE(uv_loop_init(&host) == 0);
    loop = std::make_unique<duet::Loop>(&host);
    loop->set_error_handler(log.handler());
  }
  uv_loop_t host;
  std::unique_ptr<duet::Loop> loop;
  ErrorLog log;
};
}  // namespace

TEST_CASE("a wrapped loop may be destroyed from inside a posted function", "[loop][embed]") {
  HostedLoop hosted;
  auto& [host, loop, log] = hosted;
  bool after = false;
  loop->post([&] { loop.reset(); });
  loop->post([&] { after = true; });  // queued behind the destruction: dropped with the loop
  uv_run(&host, UV_RUN_DEFAULT);
  CHECK_FALSE(loop);
  CHECK_FALSE(after);
  // The function dropped is reported, as one still queued would be (before: nothing, as it was in the
  // batch being run, no longer in the queue).
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].find("1 operation(s) pending") != std::string::npos);
  CHECK(uv_loop_close(&host) == 0);
}

TEST_CASE("a host's Loop destroyed as its batch of posted functions is freed reports only what is left to run",
          "[loop][embed]") {
  // Every function of the batch has run; the last reference to what one of them captured destroys the
  // Loop as the batch is cleared. What that function posted is still queued: one function, and only
  // that, will not run (before: the functions that had run were counted too).
  HostedLoop hosted;
  auto& [host, loop, log] = hosted;
  bool after = false;
  std::shared_ptr<void> destroys_the_loop(nullptr, [&](void*) { loop.reset(); });
  loop->post([&, guard = std::move(destroys_the_loop)] { loop->post([&] { after = true; }); });
  loop->post([] {});
  uv_run(&host, UV_RUN_DEFAULT);
  CHECK_FALSE(loop);
  CHECK_FALSE(after);
  REQUIRE(log.messages.size() == 1);
  CHECK_THAT(log.messages[0], Catch::Contains(" 1 operation(s) pending"));
  CHECK(uv_loop_close(&host) == 0);
}

namespace {
/// In a child process: a Loop runs a function posted on it, which does `inside(loop)`. `where` 0: an
/// owned loop's run(); 1: its run_once(); 2: a host's loop wrapped, inside duet's run(); 3: the same,
/// run_once(); 4: the same, inside the host's uv_run. How the child ended.
duet::test::Death inside_own_run(int where, void (*inside)(std::unique_ptr<duet::Loop>&)) {
  return duet::test::death_of([where, inside] {
    uv_loop_t host;
    if (uv_loop_init(&host) != 0) return;
    auto loop = where < 2 ? std::make_unique<duet::Loop>() : std::make_unique<duet::Loop>(&host);
    loop->post([&] { inside(loop); });
    if (where == 4) {
      uv_run(&host, UV_RUN_DEFAULT);
    } else if (where % 2 == 0) {
      loop->run();
    } else {
      loop->run_once();
    }
  });
}
}  // namespace

TEST_CASE("a Loop run from inside its own run() or run_once() aborts, saying so", "[loop][embed]") {
  // libuv's loop is not reentrant: a nested run would take over the outer run's posted functions.
  const int where = GENERATE(0, 1, 2, 3, 4);
  CAPTURE(where);
  // (Something is posted first, so that the nested run has work: under the host's uv_run, duet sees
  // the nesting only when the nested run reaches the posted functions.)
  const auto death = inside_own_run(where, [](std::unique_ptr<duet::Loop>& loop) {
    loop->post([] {});
    loop->run_once();
  });
  CHECK(death.died);
  CHECK_THAT(death.said,
             Catch::Contains("duet: a duet::Loop was run from inside its own run (run(), run_once() or the host's "
                             "uv_run); aborting"));
}

TEST_CASE("a Loop destroyed inside its own run() or run_once() aborts, saying so", "[loop][embed]") {
  // libuv cannot close a loop inside its own uv_run, and run() would return into a freed Loop: a
  // programming error, stopped with a message rather than left to corrupt memory.
  const int where = GENERATE(0, 1, 2, 3);
  CAPTURE(where);
  const auto death = inside_own_run(where, [](std::unique_ptr<duet::Loop>& loop) { loop.reset(); });
  CHECK(death.died);
  CHECK(death.said.find("duet: a duet::Loop was destroyed inside its own run() or run_once(); aborting") !=
        std::string::npos);
}

TEST_CASE("a host's Loop with unfinished tasks destroyed from inside a coroutine aborts, saying so",
          "[loop][embed][lifetime]") {
  // Destroying the Loop destroys its tasks' frames: one of them may be the coroutine running, or be
  // queued to resume behind it. 0: the task's own body; 1: a task's on_done callback while another
  // task waits; 2: a function posted on another loop, which the task runs inside its coroutine.
  const int where = GENERATE(0, 1, 2);
  CAPTURE(where);
  const auto death = duet::test::death_of([where] {
    uv_loop_t host;
    if (uv_loop_init(&host) != 0) return;
    auto loop = std::make_unique<duet::Loop>(&host);
    auto destroy = [&loop]() -> duet::Task<> {
      co_await duet::sleep(*loop, 1ms);
      loop.reset();
    };
    auto wait = [&loop](std::chrono::milliseconds d) -> duet::Task<> { co_await duet::sleep(*loop, d); };
    auto run_another = [&loop]() -> duet::Task<> {
      co_await duet::sleep(*loop, 1ms);
      duet::Loop other;
      other.post([&loop] { loop.reset(); });
      other.run();
    };
    if (where == 0) {
      duet::spawn(*loop, destroy());
    } else if (where == 2) {
      duet::spawn(*loop, run_another());
    } else {
      duet::spawn(*loop, wait(10s));
      duet::spawn(*loop, wait(1ms)).on_done([&] { loop.reset(); });
    }
    uv_run(&host, UV_RUN_DEFAULT);
  });
  CHECK(death.died);
  CHECK(death.said.find("duet: a duet::Loop with unfinished spawned tasks was destroyed while a coroutine runs") !=
        std::string::npos);
}

TEST_CASE("a host's Loop with unfinished tasks may be destroyed from a callback once a nested run has returned",
          "[loop][embed][lifetime]") {
  // A task ran another loop inside its coroutine (a nested run sets the coroutine's trampoline aside);
  // once that run has returned and the task is suspended again, a posted function is outside every
  // coroutine: the destruction is allowed, and the waiting task's frame is freed.
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  auto loop = std::make_unique<duet::Loop>(&host);
  bool nested_ran = false;
  auto run_another_then_wait = [&]() -> duet::Task<> {
    {
      duet::Loop other;
      other.post([&] { nested_ran = true; });
      other.run();
    }
    co_await duet::sleep(*loop, 10s);
  };
  auto handle = duet::spawn(*loop, run_another_then_wait());
  loop->set_error_handler([](std::exception_ptr) {});  // (the destruction's report of the waiting task)
  duet::Timer later(*loop);
  later.start(1ms, 0ms, [&] { loop->post([&] { loop.reset(); }); });
  uv_run(&host, UV_RUN_DEFAULT);
  CHECK(nested_ran);
  CHECK_FALSE(loop);
  CHECK(handle.done());
  CHECK(uv_loop_close(&host) == 0);
}

TEST_CASE("a Loop destroyed by its last task's on_done callback: the callbacks after it are not called",
          "[loop][embed][lifetime]") {
  // A host's Loop, the task ending as the host runs it; or an owned Loop, the task resumed outside
  // its run (by an Event set from outside), so that the core goes with the Loop. The callback that
  // destroys the Loop may then throw: its exception is printed, the hook being gone.
  const bool hosted = GENERATE(true, false);
  const bool throws = GENERATE(false, true);
  CAPTURE(hosted, throws);
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  auto loop = hosted ? std::make_unique<duet::Loop>(&host) : std::make_unique<duet::Loop>();
  duet::Event go;
  int later = 0;
  auto seven = [&]() -> duet::Task<int> {  // (named: the coroutine reads its captures through it)
    if (hosted) {
      co_await duet::sleep(*loop, 1ms);
    } else {
      co_await go.wait();
    }
    co_return 7;
  };
  auto handle = duet::spawn(*loop, seven());
  int result = 0;
  int hooked = 0;
  loop->set_error_handler([&](std::exception_ptr) { ++hooked; });
  handle.on_done([&] {
    result = handle.result();
    loop.reset();
    if (throws) throw std::runtime_error("thrown after the Loop went");
  });
  handle.on_done([&] { ++later; });  // after the destruction: not called
  const std::string printed = stderr_of([&] {
    if (hosted) {
      uv_run(&host, UV_RUN_DEFAULT);
    } else {
      loop->run_once();  // the task starts and waits
      go.set();          // resumes it now: it ends, and its first callback destroys the Loop
    }
  });
  CHECK_FALSE(loop);
  CHECK(hooked == 0);
  CHECK(printed == (throws ? "duet: uncaught exception in a callback or task: thrown after the Loop went\n" : ""));
  CHECK(result == 7);
  CHECK(later == 0);
  CHECK(uv_loop_close(&host) == 0);
}

TEST_CASE("a host's Loop destroyed by a completion that then throws, or by its own error hook: nothing freed is used",
          "[loop][embed][lifetime]") {
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  // An fs request is freed before its callback runs: that callback destroys the Loop, then throws.
  // The loop's core outlives the callback (its async handle closes in the host loop's close phase,
  // after the callback has returned),
  // and the exception goes to stderr: the hook is the gone Loop's.
  auto loop = std::make_unique<duet::Loop>(&host);
  int hooked = 0;
  loop->set_error_handler([&](std::exception_ptr) { ++hooked; });
  duet::fs::stat(*loop, "/", [&](std::error_code, duet::fs::Stat) {
    loop.reset();
    throw std::runtime_error("thrown after the Loop went");
  });
  const std::string printed = stderr_of([&] { uv_run(&host, UV_RUN_DEFAULT); });
  CHECK_FALSE(loop);
  CHECK(hooked == 0);
  CHECK(printed == "duet: uncaught exception in a callback or task: thrown after the Loop went\n");
  // The error hook destroys the Loop: the hook, and what it captured, live on until it returns.
  loop = std::make_unique<duet::Loop>(&host);
  std::string seen;
  loop->set_error_handler([&, tag = std::string(64, 'z')](std::exception_ptr) {
    loop.reset();
    seen = tag;
  });
  duet::fs::stat(*loop, "/", [](std::error_code, duet::fs::Stat) { throw std::runtime_error("to the hook"); });
  uv_run(&host, UV_RUN_DEFAULT);
  CHECK_FALSE(loop);
  CHECK(seen == std::string(64, 'z'));
  CHECK(uv_loop_close(&host) == 0);
}

TEST_CASE("the default error hook names each kind of report for what it is", "[loop]") {
  // Work dropped by a destroyed Loop is not an exception escaping a callback.
  const std::string dropped = stderr_of([] {
    duet::Loop loop;
    duet::sleep(loop, 10s, [](std::error_code) {});
  });
  CHECK(dropped ==
        "duet: duet::Loop destroyed with 1 operation(s) pending; their callbacks will not be called: the loop was "
        "closed while the operation was pending\n");
  // An exception thrown by a callback is.
  const std::string thrown = stderr_of([] {
    duet::Loop loop;
    loop.post([] { throw std::runtime_error("boom"); });
    loop.run();
  });
  CHECK(thrown == "duet: uncaught exception in a callback or task: boom\n");
}

TEST_CASE("set_error_handler(nullptr) gives the hook back to the default, which prints", "[loop]") {
  int handled = 0;
  const std::string printed = stderr_of([&] {
    duet::Loop loop;
    loop.set_error_handler([&](std::exception_ptr) { ++handled; });
    loop.post([] { throw std::runtime_error("first"); });
    loop.run();
    loop.set_error_handler(nullptr);
    loop.post([] { throw std::runtime_error("second"); });
    loop.run();
  });
  CHECK(handled == 1);
  CHECK(printed == "duet: uncaught exception in a callback or task: second\n");
}

namespace {
int hook_calls = 0;
void counting_hook(std::exception_ptr) { ++hook_calls; }
}  // namespace

TEST_CASE("the error hook takes a function's name, and an empty std::function or null pointer means the default",
          "[loop]") {
  hook_calls = 0;
  const std::string printed = stderr_of([&] {
    duet::Loop loop;
    loop.set_error_handler(counting_hook);
    loop.post([] { throw std::runtime_error("to the hook"); });
    loop.run();
    loop.set_error_handler(std::function<void(std::exception_ptr)>());
    loop.post([] { throw std::runtime_error("empty function"); });
    loop.run();
    void (*none)(std::exception_ptr) = nullptr;
    loop.set_error_handler(none);
    loop.post([] { throw std::runtime_error("null pointer"); });
    loop.run();
  });
  CHECK(hook_calls == 1);
  CHECK(printed ==
        "duet: uncaught exception in a callback or task: empty function\n"
        "duet: uncaught exception in a callback or task: null pointer\n");
}

namespace {
int negate(int x) { return -x; }
}  // namespace

TEST_CASE("CopyableFunction: each copy owns its own callable, and a null function pointer is empty", "[loop]") {
  using F = duet::detail::CopyableFunction<int(int)>;
  F counter = [n = 0](int step) mutable { return n += step; };
  REQUIRE(counter);
  CHECK(counter(1) == 1);
  F copy = counter;  // copies the state as it is now
  CHECK(counter(10) == 11);
  CHECK(copy(100) == 101);
  CHECK(counter(0) == 11);
  F moved = std::move(copy);
  CHECK_FALSE(copy);  // NOLINT(bugprone-use-after-move): a moved-from one is empty
  CHECK(moved(0) == 101);
  moved = nullptr;
  CHECK_FALSE(moved);
  int (*none)(int) = nullptr;
  CHECK_FALSE(F(none));
  F square = +[](int x) { return x * x; };
  CHECK(square(7) == 49);
  CHECK_FALSE(F(std::function<int(int)>()));  // an empty std::function stays empty
  F named = negate;                           // a function's name
  CHECK(named(3) == -3);
}

TEST_CASE("raise_open_file_limit lifts the soft limit to the hard one", "[loop]") {
  rlimit before{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &before) == 0);
  if (before.rlim_max == RLIM_INFINITY || before.rlim_max < 2) return;  // nothing to lift here
  rlimit lowered = before;
  lowered.rlim_cur = before.rlim_max / 2;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  CHECK(duet::raise_open_file_limit() == before.rlim_max);
  rlimit after{};
  getrlimit(RLIMIT_NOFILE, &after);
  CHECK(after.rlim_cur == before.rlim_max);
  CHECK(duet::raise_open_file_limit() == before.rlim_max);  // already there: unchanged
  setrlimit(RLIMIT_NOFILE, &before);
}

TEST_CASE("after a burst of operations the loop's request pool keeps a bounded number of blocks", "[loop]") {
  duet::Loop loop;
  const std::size_t burst = 3 * duet::detail::LoopCore::kKeepPerClass;
  std::size_t done = 0;
  for (std::size_t i = 0; i < burst; ++i)
    duet::sleep(loop, std::chrono::milliseconds(0), [&](std::error_code) { ++done; });
  loop.run();
  CHECK(done == burst);
  const std::size_t kept = loop.core().kept_blocks();
  CHECK(kept > 0);                                       // the next burst finds blocks ready
  CHECK(kept <= duet::detail::LoopCore::kKeepPerClass);  // the rest went back to the allocator
}

TEST_CASE("callbacks the Loop's destruction drops may make duet objects on it: those are closed with it",
          "[loop][lifetime]") {
  // A submit's callback, destroyed uncalled as the Loop goes, submits again; that one's callback,
  // destroyed in turn, makes a Timer on the Loop and starts it. Each pass of the destruction's walk
  // finds what the last one made: the Timer is closed and freed with the Loop, not left behind (on a
  // host's loop, it would stay open and keep the host's loop from closing; ASan sees either way).
  const bool wrapped = GENERATE(false, true);
  CAPTURE(wrapped);
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  struct OnDestroy {
    std::function<void()> fn;
    ~OnDestroy() { fn(); }
  };
  std::optional<duet::Timer> made;
  duet::Loop there;  // never run: the submitted functions wait there
  there.set_error_handler([](std::exception_ptr) {});
  auto here = wrapped ? std::make_unique<duet::Loop>(&host) : std::make_unique<duet::Loop>();
  here->set_error_handler([](std::exception_ptr) {});
  duet::Loop& loop = *here;
  int destroyed = 0;
  auto last = std::make_shared<OnDestroy>();
  last->fn = [&] {
    ++destroyed;
    made.emplace(loop);
    made->start(std::chrono::hours(1), std::chrono::hours(0), [] {});
  };
  auto first = std::make_shared<OnDestroy>();
  first->fn = [&, last] {
    ++destroyed;
    duet::submit(
        loop, there, [] {}, [last](std::error_code) {});
  };
  duet::submit(
      loop, there, [] {}, [first](std::error_code) {});
  first.reset();
  last.reset();
  here.reset();
  CHECK(destroyed == 2);
  REQUIRE(made.has_value());
  CHECK_FALSE(made->active());
  CHECK_THROWS(made->start(std::chrono::milliseconds(1), std::chrono::milliseconds(0), [] {}));
  made.reset();
  uv_run(&host, UV_RUN_NOWAIT);  // a wrapped loop's closing handles finish as the host runs it
  CHECK(uv_loop_close(&host) == 0);
}
