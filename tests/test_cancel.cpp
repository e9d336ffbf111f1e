// Cancellation and timeouts through the coroutine face, on every kind of operation: the operation is
// cancelled the libuv way, the coroutine resumes with Cancelled (or TimedOut), RAII cleanup runs and
// nothing is left on the loop (ASan checks that nothing leaks).
#include <catch2/catch.hpp>
#include <functional>
#include <memory>

#include "duet/duet.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;

namespace {

/// Sets a flag when destroyed: proof that RAII ran as the exception unwound.
struct Cleanup {
  bool& flag;
  ~Cleanup() { flag = true; }
};

/// Everything a test needs to suspend a task on each kind of operation.
struct Fixture {
  duet::Loop loop;
  duet::test::TempDir dir;
  duet::TcpListener listener{loop, duet::Endpoint::loopback(0)};
  std::optional<duet::TcpStream> client, server;
  duet::Semaphore empty{0};
  duet::test::FullBacklog backlog;
  std::optional<duet::test::PoolBlocker> busy;

  Fixture() {
    listener.accept([&](std::error_code ec, duet::TcpStream s) {
      REQUIRE_FALSE(ec);
      server = std::move(s);
    });
    duet::connect(loop, listener.local_endpoint(), [&](std::error_code ec, duet::TcpStream s) {
      REQUIRE_FALSE(ec);
      client = std::move(s);
    });
    while (!client || !server) loop.run_once();
  }
};

using Op = std::function<Task<>(Fixture&)>;

/// The operations, each of which would wait (far) longer than any test.
std::vector<std::pair<std::string, Op>> waiting_operations() {
  return {
      {"timer", [](Fixture& f) -> Task<> { co_await duet::sleep(f.loop, 60s); }},
      {"tcp read",
       [](Fixture& f) -> Task<> {
         char buf[16];
         co_await f.client->read(buf);  // the server never writes
       }},
      {"connect",
       [](Fixture& f) -> Task<> { co_await duet::connect(f.loop, duet::Endpoint::loopback(f.backlog.port())); }},
      {"queued fs request",
       [](Fixture& f) -> Task<> {
         f.busy.emplace(f.loop);  // every pool thread busy: the request stays queued
         co_await duet::write_file_atomic(f.loop, f.dir / "out", "data");
       }},
      {"queued work",
       [](Fixture& f) -> Task<> {
         f.busy.emplace(f.loop);
         co_await duet::offload(f.loop, [] { return 1; });
       }},
      {"semaphore wait", [](Fixture& f) -> Task<> { auto permit = co_await f.empty.acquire(); }},
  };
}

/// Runs `op` in a task with a Cleanup guard; returns what the task threw.
Task<> guarded(Fixture& f, Op op, bool& cleaned, std::exception_ptr& thrown) {
  Cleanup c{cleaned};
  try {
    co_await op(f);
  } catch (...) {
    thrown = std::current_exception();
  }
}

template <class E>
bool holds(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

void finish(Fixture& f) {
  if (f.busy) f.busy->release();
  f.client->close();
  f.server->close();
  f.listener.close();
  f.loop.run();
  CHECK(f.loop.live_resources() == 0);
}

}  // namespace

TEST_CASE("cancelling a task cancels the operation it waits on, of every kind", "[cancel][coro]") {
  for (auto& [name, op] : waiting_operations()) {
    SECTION(name) {
      Fixture f;
      bool cleaned = false;
      std::exception_ptr thrown;
      auto handle = duet::spawn(f.loop, guarded(f, op, cleaned, thrown));
      f.loop.post([&] { handle.cancel(); });  // runs after the task has started and suspended
      const auto start = std::chrono::steady_clock::now();
      while (!handle.done()) f.loop.run_once();
      CHECK(std::chrono::steady_clock::now() - start < 10s);
      REQUIRE(thrown);
      CHECK(holds<duet::Cancelled>(thrown));
      CHECK(cleaned);
      handle.result();
      finish(f);
    }
  }
}

TEST_CASE("with_timeout cancels an operation of every kind and throws TimedOut", "[timeout][coro]") {
  for (auto& [name, op] : waiting_operations()) {
    SECTION(name) {
      Fixture f;
      bool cleaned = false;
      std::exception_ptr thrown;
      auto timed = [](Fixture& fx, Op o) -> Task<> { co_await duet::with_timeout(30ms, o(fx)); };
      const auto start = std::chrono::steady_clock::now();
      duet::run(f.loop, guarded(
                            f, [&](Fixture& fx) { return timed(fx, op); }, cleaned, thrown));
      const auto took = std::chrono::steady_clock::now() - start;
      CHECK(took >= 29ms);
      CHECK(took < 10s);
      REQUIRE(thrown);
      CHECK(holds<duet::TimedOut>(thrown));
      CHECK(cleaned);
      finish(f);
    }
  }
}

TEST_CASE("with_timeout returns the result of an operation that finishes in time", "[timeout][coro]") {
  duet::Loop loop;
  auto t = [](duet::Loop& l) -> Task<int> {
    int a = co_await duet::with_timeout(5s, duet::offload(l, [] { return 40; }));
    co_await duet::with_timeout(5s, duet::sleep(l, 1ms));
    auto inner = [](duet::Loop& l2) -> Task<int> {
      co_await duet::sleep(l2, 1ms);
      co_return 2;
    };
    co_return a + co_await duet::with_timeout(5s, inner(l));
  };
  CHECK(duet::run(loop, t(loop)) == 42);
  loop.run();  // the timers with_timeout cancelled finish closing
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("cancelling the caller of with_timeout gives Cancelled, not TimedOut", "[timeout][cancel][coro]") {
  duet::Loop loop;
  std::exception_ptr thrown;
  auto t = [](duet::Loop& l, std::exception_ptr& out) -> Task<> {
    try {
      co_await duet::with_timeout(10s, duet::sleep(l, 60s));
    } catch (...) {
      out = std::current_exception();
    }
  };
  auto handle = duet::spawn(loop, t(loop, thrown));
  loop.post([&] { handle.cancel(); });
  loop.run();
  REQUIRE(thrown);
  CHECK(holds<duet::Cancelled>(thrown));
  CHECK_FALSE(holds<duet::TimedOut>(thrown));
}

TEST_CASE("cancellation reaches through nested tasks and when_all", "[cancel][coro]") {
  duet::Loop loop;
  int cancelled = 0;
  auto leaf = [](duet::Loop& l, int& c) -> Task<int> {
    try {
      co_await duet::sleep(l, 60s);
    } catch (const duet::Cancelled&) {
      ++c;
      throw;
    }
    co_return 0;
  };
  auto middle = [&](duet::Loop& l) -> Task<int> {
    auto [a, b] = co_await duet::when_all(leaf(l, cancelled), leaf(l, cancelled));
    co_return a + b;
  };
  auto handle = duet::spawn(loop, middle(loop));
  loop.post([&] { handle.cancel(); });
  loop.run();
  CHECK(cancelled == 2);
  CHECK_THROWS_AS(handle.result(), duet::Cancelled);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a cancelled task cannot start new operations", "[cancel][coro]") {
  duet::Loop loop;
  std::vector<std::string> events;
  auto t = [](duet::Loop& l, std::vector<std::string>& ev) -> Task<> {
    try {
      co_await duet::sleep(l, 60s);
    } catch (const duet::Cancelled&) {
      ev.emplace_back("cancelled");
    }
    try {
      co_await duet::sleep(l, 1ms);  // refused at once: the task was cancelled
      ev.emplace_back("slept");
    } catch (const duet::Cancelled&) {
      ev.emplace_back("refused");
    }
  };
  auto handle = duet::spawn(loop, t(loop, events));
  loop.post([&] { handle.cancel(); });
  loop.run();
  CHECK(events == std::vector<std::string>{"cancelled", "refused"});
  handle.result();
}

TEST_CASE("a coroutine awaiting a task handle can be cancelled and timed out", "[cancel][timeout][coro]") {
  std::optional<duet::Loop> first_loop(std::in_place);  // the timed-out task runs on in it: destroyed after
  duet::Loop& loop = *first_loop;
  auto slow = [](duet::Loop& l) -> Task<int> {
    co_await duet::sleep(l, 60s);
    co_return 1;
  };
  auto timed = [&](duet::Loop& l) -> Task<int> {
    auto h = duet::spawn(l, slow(l));
    try {
      co_return co_await duet::with_timeout(10ms, std::move(h));
    } catch (const duet::TimedOut&) {
      co_return -1;
    }
  };
  const auto start = std::chrono::steady_clock::now();
  CHECK(duet::run(loop, timed(loop)) == -1);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  first_loop->set_error_handler([](std::exception_ptr) {});
  first_loop.reset();  // cancels the task the timeout left running

  duet::Loop loop2;
  auto waiter = [](duet::JoinHandle<int>& h) -> Task<int> { co_return co_await h; };
  auto inner = duet::spawn(loop2, slow(loop2));
  auto outer = duet::spawn(loop2, waiter(inner));
  loop2.post([&] { outer.cancel(); });
  while (!outer.done()) loop2.run_once();
  CHECK_THROWS_AS(outer.result(), duet::Cancelled);
  CHECK_FALSE(inner.done());  // the awaited task runs on: only the waiting stopped
  inner.cancel();
  loop2.run();
  CHECK_THROWS_AS(inner.result(), duet::Cancelled);
}

TEST_CASE("a cancelled task awaiting a finished task's handle throws Cancelled and leaves the result",
          "[cancel][spawn][coro]") {
  duet::Loop loop;
  auto quick = []() -> Task<int> { co_return 7; };
  auto inner = duet::spawn(loop, quick());
  bool finished_at_await = false;
  auto waiter = [&](duet::JoinHandle<int>& h) -> Task<int> {
    try {
      co_await duet::sleep(loop, 60s);  // cancelled here
    } catch (const duet::Cancelled&) {
    }
    finished_at_await = h.done();
    co_return co_await h;  // a cancelled task starts nothing, a finished task's handle included
  };
  auto outer = duet::spawn(loop, waiter(inner));
  while (!inner.done()) loop.run_once();
  loop.post([&] { outer.cancel(); });
  loop.run();
  CHECK(finished_at_await);
  CHECK_THROWS_AS(outer.result(), duet::Cancelled);
  CHECK(inner.result() == 7);  // not taken by the cancelled await
}

TEST_CASE("with_timeout: a result due in the same turn as the deadline wins", "[timeout][coro]") {
  duet::Loop loop;
  auto work = [](duet::Loop& l) -> Task<int> {
    co_await duet::sleep(l, 20ms);
    co_return 42;
  };
  auto t = [&](duet::Loop& l) -> Task<int> {
    try {
      co_return co_await duet::with_timeout(20ms, work(l));
    } catch (const duet::TimedOut&) {
      co_return -1;
    }
  };
  int wins = 0;
  for (int i = 0; i < 10; ++i) wins += duet::run(loop, t(loop)) == 42 ? 1 : 0;
  CHECK(wins == 10);
}

namespace {

/// Bytes queued on a stream that the kernel has not taken yet.
std::size_t unsent(duet::TcpStream& s) {
  return uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(s.native()));
}

/// More than loopback's socket buffers hold: a write of this much to a peer that does not read stays
/// pending.
constexpr std::size_t kBig = 32 * 1024 * 1024;

/// Runs `loop` until `done()` or `limit` has passed (a short repeating timer keeps each turn short,
/// so a test of something that never happens fails instead of hanging).
template <class Pred>
bool run_until(duet::Loop& loop, Pred done, std::chrono::milliseconds limit = 5s) {
  duet::Timer tick(loop);
  tick.start(10ms, 10ms, [] {});
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) loop.run_once();
  return done();
}

/// Reads everything `s` receives until end of stream; returns the byte count.
std::size_t drain(duet::Loop& loop, duet::TcpStream& s) {
  std::size_t total = 0;
  bool ended = false;
  s.read_start([&](std::error_code ec, std::span<const char> chunk) {
    REQUIRE_FALSE(ec);
    if (chunk.empty()) ended = true;
    total += chunk.size();
  });
  REQUIRE(run_until(
      loop, [&] { return ended; }, 30s));
  return total;
}

}  // namespace

TEST_CASE("a task cancelled while its write is pending throws Cancelled — the stream still sends the bytes",
          "[cancel][coro][tcp]") {
  Fixture f;
  std::exception_ptr thrown;
  bool cleaned = false;
  auto write = [](Fixture& fx) -> Task<> { co_await fx.client->write(std::string(kBig, 'x')); };
  auto handle = duet::spawn(f.loop, guarded(f, write, cleaned, thrown));
  f.loop.run_once();  // starts the task: the write is taken, and waits for the peer to read
  REQUIRE_FALSE(handle.done());
  REQUIRE(unsent(*f.client) > 0);
  handle.cancel();
  CHECK_FALSE(thrown);                                        // never inside cancel(): on a later turn
  REQUIRE(run_until(f.loop, [&] { return handle.done(); }));  // the peer has read nothing
  CHECK(holds<duet::Cancelled>(thrown));
  CHECK(cleaned);
  CHECK(unsent(*f.client) > 0);  // the write goes on, owning its bytes
  // The caller was detached, the write was not recalled: every byte arrives.
  f.client->shutdown([](std::error_code ec) { CHECK_FALSE(ec); });
  CHECK(drain(f.loop, *f.server) == kBig);
  finish(f);
}

TEST_CASE("a task cancelled while its shutdown is pending throws Cancelled — the shutdown still happens",
          "[cancel][coro][tcp]") {
  Fixture f;
  bool wrote = false;
  f.client->write(std::string(kBig, 'x'), [&](std::error_code ec) {
    CHECK_FALSE(ec);
    wrote = true;
  });
  REQUIRE(unsent(*f.client) > 0);  // the shutdown waits behind this write
  std::exception_ptr thrown;
  bool cleaned = false;
  auto shutdown = [](Fixture& fx) -> Task<> { co_await fx.client->shutdown(); };
  auto handle = duet::spawn(f.loop, guarded(f, shutdown, cleaned, thrown));
  f.loop.run_once();
  REQUIRE_FALSE(handle.done());
  handle.cancel();
  REQUIRE(run_until(f.loop, [&] { return handle.done(); }));
  CHECK(holds<duet::Cancelled>(thrown));
  CHECK(cleaned);
  CHECK(drain(f.loop, *f.server) == kBig);  // ...then end of stream: the shutdown was not recalled
  CHECK(wrote);
  finish(f);
}

TEST_CASE("a pending write's callback, cancelled by its stop token, gets UV_ECANCELED on a later turn",
          "[cancel][tcp]") {
  Fixture f;
  std::stop_source stop;
  std::optional<std::error_code> result;
  f.client->write(std::string(kBig, 'x'),
                  duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { result = ec; }));
  REQUIRE(unsent(*f.client) > 0);
  stop.request_stop();
  CHECK_FALSE(result);  // never inside request_stop()
  REQUIRE(run_until(f.loop, [&] { return result.has_value(); }));
  CHECK(duet::is_cancelled(*result));
  finish(f);  // closing the stream ends the detached write; ASan checks it is freed
}

TEST_CASE("a stop link whose function destroys it, on a token already stopped", "[cancel]") {
  // The function runs inside watch(); nothing may touch the link after it (ASan checks the write).
  struct Destroy {
    std::unique_ptr<duet::detail::OnLoopStop<Destroy>>* owner;
    int* calls;
    void operator()() const noexcept {
      ++*calls;
      owner->reset();
    }
  };
  duet::Loop loop;
  std::stop_source stop;
  stop.request_stop();
  int calls = 0;
  auto link = std::make_unique<duet::detail::OnLoopStop<Destroy>>();
  link->watch(&loop.core(), stop.get_token(), Destroy{&link, &calls});
  CHECK(calls == 1);
  CHECK(link == nullptr);
}
