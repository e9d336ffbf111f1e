// Cancellation from another thread: a stop requested off the loop thread is routed to the loop, so
// libuv is only ever called there (run these under ThreadSanitizer: the tsan preset). Each case is
// repeated, half the time racing the stop against the operation's start.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;

namespace {

constexpr int kRounds = 100;

/// A loop run by a thread of its own, kept running by a Hold until this is destroyed.
class LoopOnThread {
 public:
  LoopOnThread() {
    hold_.emplace(loop.hold());
    std::promise<void> running;
    loop.post([&running] { running.set_value(); });  // runs once the thread runs the loop
    thread_ = std::thread([this] { loop.run(); });
    running.get_future().wait();
  }
  LoopOnThread(const LoopOnThread&) = delete;
  LoopOnThread& operator=(const LoopOnThread&) = delete;
  ~LoopOnThread() {
    loop.post([this] { hold_.reset(); });
    thread_.join();
  }

  /// Runs `fn` on the loop thread and waits until it has returned.
  template <class Fn>
  void call(Fn fn) {
    std::promise<void> done;
    loop.post([&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

  duet::Loop loop;

 private:
  std::optional<duet::Loop::Hold> hold_;
  std::thread thread_;
};

/// Waits (boundedly) for a future; true if it became ready.
template <class T>
bool ready(std::future<T>& f) {
  return f.wait_for(20s) == std::future_status::ready;
}

/// Starts an operation on the loop thread with a callback bound to `token`, then requests stop from
/// this thread (right away, or once the operation has started); the callback must get UV_ECANCELED.
template <class StartOp>
void cancel_from_this_thread(LoopOnThread& lt, StartOp start) {
  for (int round = 0; round < kRounds; ++round) {
    std::stop_source stop;
    std::promise<std::error_code> result;
    std::promise<void> started;
    auto has_started = started.get_future();
    lt.loop.post([&] {
      start(stop.get_token(), [&](std::error_code ec) { result.set_value(ec); });
      started.set_value();
    });
    if (round % 2 == 0) has_started.wait();
    stop.request_stop();
    auto got = result.get_future();
    REQUIRE(ready(got));
    CHECK(duet::is_cancelled(got.get()));
    has_started.wait();  // the posted function has returned: `started` may go
  }
}

/// A connected pair of streams on `lt`'s loop, used and destroyed on its thread.
struct Pair {
  std::optional<duet::TcpListener> listener;
  std::optional<duet::TcpStream> client, server;

  explicit Pair(LoopOnThread& lt) : lt_(lt) {
    std::latch connected(2);
    lt.call([&] {
      listener.emplace(lt.loop, duet::Endpoint::loopback(0));
      listener->accept([&](std::error_code ec, duet::TcpStream s) {
        if (!ec) server = std::move(s);
        connected.count_down();
      });
      duet::connect(lt.loop, listener->local_endpoint(), [&](std::error_code ec, duet::TcpStream s) {
        if (!ec) client = std::move(s);
        connected.count_down();
      });
    });
    connected.wait();
    REQUIRE(client);
    REQUIRE(server);
  }
  ~Pair() {
    lt_.call([this] {
      client.reset();
      server.reset();
      listener.reset();
    });
  }

 private:
  LoopOnThread& lt_;
};

}  // namespace

TEST_CASE("operations cancelled from another thread get UV_ECANCELED, on the loop thread", "[cancel][threads]") {
  LoopOnThread lt;
  std::thread::id loop_thread;
  lt.call([&] { loop_thread = std::this_thread::get_id(); });

  SECTION("sleep") {
    cancel_from_this_thread(lt, [&](std::stop_token token, auto done) {
      duet::sleep(lt.loop, 60s, duet::with_cancellation(token, [&, done](std::error_code ec) {
                    CHECK(std::this_thread::get_id() == loop_thread);
                    done(ec);
                  }));
    });
  }
  SECTION("connect") {
    duet::test::FullBacklog backlog;
    cancel_from_this_thread(lt, [&](std::stop_token token, auto done) {
      duet::connect(lt.loop, duet::Endpoint::loopback(backlog.port()),
                    duet::with_cancellation(token, [done](std::error_code ec, duet::TcpStream) { done(ec); }));
    });
  }
  SECTION("tcp read") {
    Pair pair(lt);
    char buffer[16];
    cancel_from_this_thread(lt, [&](std::stop_token token, auto done) {
      pair.client->read(buffer, duet::with_cancellation(token, [done](std::error_code ec, std::size_t) { done(ec); }));
    });
  }
  SECTION("accept") {
    std::optional<duet::TcpListener> listener;
    lt.call([&] { listener.emplace(lt.loop, duet::Endpoint::loopback(0)); });
    cancel_from_this_thread(lt, [&](std::stop_token token, auto done) {
      listener->accept(duet::with_cancellation(token, [done](std::error_code ec, duet::TcpStream) { done(ec); }));
    });
    lt.call([&] { listener.reset(); });
  }
  SECTION("a pending write") {
    Pair pair(lt);
    lt.call([&] {  // fill the socket's buffers: every later write waits behind this one
      pair.client->write(std::string(32 * 1024 * 1024, 'x'), [](std::error_code) {});
    });
    cancel_from_this_thread(lt, [&](std::stop_token token, auto done) {
      pair.client->write("y", duet::with_cancellation(token, [done](std::error_code ec) { done(ec); }));
    });
  }
}

TEST_CASE("tasks cancelled from another thread throw Cancelled", "[cancel][threads][coro]") {
  LoopOnThread lt;
  duet::Semaphore empty(0);  // used on the loop thread only
  auto sleeper = [](duet::Loop& loop) -> Task<> { co_await duet::sleep(loop, 60s); };
  auto waiter = [](duet::Semaphore& sem) -> Task<> { auto permit = co_await sem.acquire(); };
  auto waiters = [](duet::Semaphore& sem) -> Task<> {  // three sharing one token: one registration
    auto one = [](duet::Semaphore& s) -> Task<> { auto permit = co_await s.acquire(); };
    co_await duet::when_all(one(sem), one(sem), one(sem));
  };
  auto joiner = [](duet::Loop& loop, Task<> (*inner)(duet::Loop&)) -> Task<> {
    // (`inner` catches its own Cancelled: nothing is reported when it ends after its handle is gone)
    auto other = duet::spawn(loop, inner(loop));
    try {
      co_await other;  // only the waiting is cancelled...
    } catch (const duet::Cancelled&) {
      other.cancel();  // ...so the awaited task is stopped here, on the loop thread
      throw;
    }
  };
  static constexpr auto sleep_60s = +[](duet::Loop& loop) -> Task<> {
    try {
      co_await duet::sleep(loop, 60s);
    } catch (const duet::Cancelled&) {
    }
  };

  // The asyncio vocabulary, each waiting for something that never comes (all used on the loop thread).
  duet::Queue<int> no_values;
  duet::Queue<int> no_room(1);
  REQUIRE(no_room.try_push(0));
  duet::Lock held;
  REQUIRE(held.try_lock());
  duet::Event never;
  auto popper = [](duet::Queue<int>& q) -> Task<> { (void)co_await q.pop(); };
  auto pusher = [](duet::Queue<int>& q) -> Task<> { co_await q.push(1); };
  auto locker = [](duet::Lock& l) -> Task<> { auto guard = co_await l.lock(); };
  auto event_waiter = [](duet::Event& e) -> Task<> { co_await e.wait(); };
  auto group = [](duet::Event& e) -> Task<> {
    auto child = [](duet::Event& ev) -> Task<> { co_await ev.wait(); };
    duet::TaskGroup g;
    g.spawn(child(e));
    g.spawn(child(e));
    co_await g;
  };
  auto any = [](duet::Event& e, duet::Semaphore& sem) -> Task<> {
    auto on_sem = [](duet::Semaphore& s) -> Task<> { auto permit = co_await s.acquire(); };
    auto on_event = [](duet::Event& ev) -> Task<> { co_await ev.wait(); };
    (void)co_await duet::when_any(on_sem(sem), on_event(e));
  };
  auto generated = [](duet::Event& e) -> Task<> {
    auto gen = [](duet::Event& ev) -> duet::Generator<int> {
      co_await ev.wait();
      co_yield 1;
    };
    auto g = gen(e);
    (void)co_await g.next();
  };

  const std::pair<const char*, std::function<Task<>()>> kinds[] = {
      {"sleep", [&] { return sleeper(lt.loop); }},
      {"semaphore", [&] { return waiter(empty); }},
      {"semaphore: three waiters of one when_all", [&] { return waiters(empty); }},
      {"task handle", [&] { return joiner(lt.loop, sleep_60s); }},
      {"queue pop", [&] { return popper(no_values); }},
      {"queue push", [&] { return pusher(no_room); }},
      {"lock", [&] { return locker(held); }},
      {"event", [&] { return event_waiter(never); }},
      {"task group", [&] { return group(never); }},
      {"when_any", [&] { return any(never, empty); }},
      {"generator", [&] { return generated(never); }},
  };
  for (const auto& [name, make] : kinds) {
    SECTION(name) {
      for (int round = 0; round < kRounds; ++round) {
        std::promise<bool> cancelled;
        std::optional<duet::JoinHandle<void>> handle;
        auto guarded = [](Task<> t, std::promise<bool>& out) -> Task<> {
          try {
            co_await std::move(t);
            out.set_value(false);
          } catch (const duet::Cancelled&) {
            out.set_value(true);
          }
        };
        lt.call([&] { handle.emplace(duet::spawn(lt.loop, guarded(make(), cancelled))); });
        if (round % 2 == 0) lt.call([] {});  // one turn later: the task has started and waits
        handle->cancel();
        auto got = cancelled.get_future();
        REQUIRE(ready(got));
        CHECK(got.get());
        lt.call([&] { handle.reset(); });
      }
    }
  }
  lt.call([&] {
    CHECK(empty.waiting() == 0);
    CHECK(no_values.waiting_poppers() == 0);
    CHECK(no_room.waiting_pushers() == 0);
    CHECK(no_room.size() == 1);
    CHECK(held.waiting() == 0);
    CHECK(never.waiting() == 0);
  });
}

TEST_CASE("a stop requested on another thread while the loop is destroyed is dropped safely", "[cancel][threads]") {
  for (int round = 0; round < kRounds; ++round) {
    std::stop_source stop;
    std::promise<void> started;
    bool called = false;
    std::thread owner([&] {
      duet::Loop loop;
      loop.set_error_handler([](std::exception_ptr) {});  // the pending sleep is reported: expected
      duet::sleep(loop, 60s, duet::with_cancellation(stop.get_token(), [&](std::error_code) { called = true; }));
      started.set_value();
    });  // the Loop is destroyed as the stop arrives: before, during or after its destruction
    started.get_future().wait();
    stop.request_stop();
    owner.join();
    CHECK_FALSE(called);
  }
}

TEST_CASE("an HTTP request cancelled from another thread gets UV_ECANCELED, on the loop thread",
          "[cancel][threads][http]") {
  LoopOnThread lt;
  std::optional<duet::TcpListener> silent;  // accepts and never answers
  std::vector<duet::TcpStream> held;
  std::optional<duet::http::Client> client;
  std::function<void()> accept_next;
  lt.call([&] {
    silent.emplace(lt.loop, duet::Endpoint::loopback(0));
    accept_next = [&] {
      silent->accept([&](std::error_code ec, duet::TcpStream s) {
        if (ec) return;
        held.push_back(std::move(s));
        accept_next();
      });
    };
    accept_next();
    client.emplace(lt.loop);
  });
  const std::string url = "http://127.0.0.1:" + std::to_string(silent->local_endpoint().port()) + "/";
  cancel_from_this_thread(lt, [&](std::stop_token token, auto done) {
    client->get(url, duet::with_cancellation(std::move(token),
                                             [done](std::error_code ec, duet::http::Response) mutable { done(ec); }));
  });
  lt.call([&] {
    client.reset();
    held.clear();
    silent.reset();
  });
}

TEST_CASE("coroutine frames freed on another thread give their chunks back safely", "[threads][coro]") {
  // Frames are carved from per-thread chunks; a frame destroyed on another thread goes to that
  // thread's lists and, when that thread ends, back to its chunk, while the owning thread goes on
  // carving and retiring chunks. The chunk counts are what the two threads share.
  constexpr std::size_t kFrame = 1000;
  for (int round = 0; round < 20; ++round) {
    std::vector<void*> frames(300);
    for (std::size_t i = 0; i < frames.size(); ++i) {
      frames[i] = duet::detail::allocate_frame(kFrame);
      std::memset(frames[i], static_cast<int>(i & 0xff), kFrame);
    }
    int damaged = 0;
    std::thread other([&frames, &damaged] {
      for (std::size_t i = 0; i < frames.size(); ++i) {
        const auto* bytes = static_cast<const unsigned char*>(frames[i]);
        if (bytes[0] != (i & 0xff) || bytes[kFrame - 1] != (i & 0xff)) ++damaged;
        duet::detail::deallocate_frame(frames[i], kFrame);
      }
    });                            // the thread's lists give the frames back to their chunks as it ends
    std::vector<void*> more(300);  // meanwhile this thread carves (and retires) chunks of its own
    for (void*& p : more) {
      p = duet::detail::allocate_frame(kFrame);
      std::memset(p, 0xee, kFrame);
    }
    other.join();
    CHECK(damaged == 0);
    for (void* p : more) duet::detail::deallocate_frame(p, kFrame);
  }
}

TEST_CASE("a stop routed from another thread reaches only a link that still watches", "[cancel][threads]") {
  // The loop and the link live on this thread; the stop is requested on another, so it travels to the
  // loop as a posted function holding a cell that points back at the link. Resetting or destroying
  // the link first must leave that function with nothing to call, and the cell must still be freed
  // (ASan's leak check and TSan watch that part).
  struct Count {
    int* calls;
    void operator()() const noexcept { ++*calls; }
  };
  duet::Loop loop;
  std::optional<duet::Loop::Hold> hold;
  hold.emplace(loop.hold());
  int calls = 0;
  std::stop_source stop;
  auto link = std::make_unique<duet::detail::OnLoopStop<Count>>();
  link->watch(&loop.core(), stop.get_token(), Count{&calls});
  std::thread([&] {
    stop.request_stop();
    loop.post([&] { hold.reset(); });  // queued behind the stop: the run ends once both have run
  }).join();
  CHECK(calls == 0);  // never on the requesting thread

  SECTION("delivered on the loop thread while the link watches") {
    loop.run();
    CHECK(calls == 1);
  }
  SECTION("dropped once the link is reset") {
    link->reset();
    loop.run();
    CHECK(calls == 0);
  }
  SECTION("dropped once the link is destroyed") {
    link.reset();
    loop.run();
    CHECK(calls == 0);
  }
}
