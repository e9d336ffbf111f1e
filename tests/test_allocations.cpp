// "No heap allocation per awaited operation beyond the coroutine frame": counted, not assumed. This
// test is an executable of its own (duet_allocation_tests): it replaces the global operator new with
// one that counts the calls made on the current thread, and otherwise behaves as the default, but
// that it can be told to fail one of them (out of memory, on this thread only).
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "duet/duet.hpp"
#include "expecting_client.hpp"
#include "support.hpp"

namespace {
thread_local long allocations = 0;
thread_local long fail_at = 0;  // the allocation (by the count above) that fails; 0: none
thread_local long failed = 0;   // allocations made to fail so far
bool fails_now() noexcept {
  if (allocations != fail_at) return false;
  ++failed;
  return true;
}
}  // namespace

// Every non-aligned form is replaced, so that no memory crosses between these and the library's own
// (which sanitizers check). This file is its own test executable, so nothing else is affected.
// g++ cannot see that new and delete are replaced together here, and takes free() in operator delete
// for a mismatch: the pairing is right, so that warning is off for these definitions.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  ++allocations;
  if (fails_now()) throw std::bad_alloc();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  ++allocations;
  if (fails_now()) return nullptr;
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
// The aligned forms count too (coroutine frames come from aligned chunks), and keep a count of live
// aligned blocks, for the chunk test below.
namespace {
std::atomic<long> aligned_live{0};  // all threads: chunks are freed on whichever thread lets go last
}
void* operator new(std::size_t n, std::align_val_t a) {
  ++allocations;
  if (fails_now()) throw std::bad_alloc();
  const auto align = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(align, (n + align - 1) / align * align)) {
    ++aligned_live;
    return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p, std::align_val_t) noexcept {
  if (p) --aligned_live;
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t a) noexcept { operator delete(p, a); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

using namespace std::chrono_literals;

namespace {

duet::Task<int> child(int x) { co_return x; }

duet::Task<int> sleep_then(duet::Loop& loop, int value) {
  co_await duet::sleep(loop, 0ms);
  co_return value;
}

duet::Task<long> awaits(duet::Loop& loop, duet::Semaphore& sem, int n, long& allocated) {
  long sum = 0;
  for (int round = 0; round < 2; ++round) {  // round 0 warms the pools up; round 1 is counted
    // A timer's block comes back only when its handle has closed, later in the loop's turn: when the
    // pool is quick, the next sleep starts (from the offload's completion) before the last one's block
    // is back. Round 0 may never meet that, so the warm-up holds three sleeps at once.
    if (round == 0) co_await duet::when_all(sleep_then(loop, 0), sleep_then(loop, 0), sleep_then(loop, 0));
    const long before = allocations;
    for (int i = 0; i < n; ++i) {
      co_await duet::sleep(loop, 0ms);                         // a timer (uv_timer_t from the pool)
      sum += co_await duet::offload(loop, [i] { return i; });  // the thread pool (uv_work_t)
      auto permit = co_await sem.acquire();                    // a semaphore
      sum += co_await child(i);                                // a child task (its frame recycled)
    }
    if (round == 1) allocated = allocations - before;
  }
  co_return sum;
}

}  // namespace

TEST_CASE("awaiting operations allocates nothing once the pools are warm", "[coro][allocations]") {
  duet::Loop loop;
  duet::Semaphore sem(1);
  long allocated = -1;
  const long sum = duet::run(loop, awaits(loop, sem, 200, allocated));
  CHECK(sum == 2 * 2 * (199 * 200 / 2));  // every operation really ran
  CHECK(allocated == 0);
}

TEST_CASE("the allocation counter sees allocations (so the test above can fail)", "[allocations]") {
  static int* volatile sink;  // volatile: the compiler may not elide the new/delete pair
  const long before = allocations;
  sink = new int(1);
  delete sink;
  const long counted = allocations - before;  // read before CHECK, which allocates as it reports
  CHECK(counted == 1);
}

TEST_CASE("a burst of coroutine frames is carved from a few chunks, each freed once its frames are", "[allocations]") {
  // Frames of a size no other test here uses, so the thread's lists hold none of it yet.
  constexpr std::size_t kFrame = 1900;
  constexpr int kFrames = 1000;
  std::vector<void*> frames;
  frames.reserve(kFrames);
  const long live_before = aligned_live;
  const long before = allocations;
  for (int i = 0; i < kFrames; ++i) {
    frames.push_back(duet::detail::allocate_frame(kFrame));
    std::memset(frames.back(), i & 0xff, kFrame);  // writable, all of it (ASan checks the bounds)
  }
  const long made = allocations - before;
  // 32 KiB chunks hold 16 frames of this class (1,920 bytes); one allocation per frame without them.
  CHECK(made <= kFrames / 16 + 2);
  for (int i = 0; i < kFrames; ++i)  // no frame overlaps another
    CHECK(static_cast<unsigned char*>(frames[static_cast<std::size_t>(i)])[kFrame - 1] == (i & 0xff));
  duet::detail::set_frame_recycling(false);  // give every block back rather than keep it
  for (void* p : frames) duet::detail::deallocate_frame(p, kFrame);
  duet::detail::set_frame_recycling(true);
  // Every chunk whose frames all came back is freed; at most the one still being carved remains.
  CHECK(aligned_live - live_before <= 1);
}

namespace {
duet::Task<int> one() { co_return 1; }
/// Tasks held by a thread_local made before the thread's first frame: destroyed after the thread's
/// frame lists are (thread_locals go in the reverse order of their construction).
struct TasksHeldByTheThread {
  std::vector<duet::Task<int>> tasks;
};
thread_local TasksHeldByTheThread held_by_the_thread;
}  // namespace

TEST_CASE("frames freed by a thread_local that outlives the thread's frame lists free their chunks",
          "[allocations][threads]") {
  const long live_before = aligned_live;
  for (int i = 0; i < 4; ++i) {
    std::thread thread([] {
      held_by_the_thread.tasks.reserve(3);  // constructed now, before any frame of this thread
      for (int k = 0; k < 3; ++k) held_by_the_thread.tasks.push_back(one());
    });
    thread.join();
  }
  CHECK(aligned_live == live_before);  // every chunk those threads carved is freed
}

TEST_CASE("a server out of memory as it answers a request waiting for its 100 never leaves the client waiting",
          "[allocations][http][server][streaming]") {
  // The handler answers with an echo before reading the body, so whether the client gets its 100 is
  // decided on the next turn. Each allocation made while it answers is made to fail in turn: each
  // failure is reported, and the connection ends at once or the exchange completes; a lost decision
  // would leave the client waiting for a 100 that never comes.
  duet::test::ErrorLog errors;
  duet::Loop loop;
  loop.set_error_handler(errors.handler());
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  long nth = 0;  // the allocation of the answer to fail, counted from the handler's start
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        fail_at = allocations + nth;
        auto held = std::make_shared<duet::http::RequestBody>(std::move(req.body_stream));
        reply.stream(duet::http::Response{200, "OK", {}, {}}, [held](duet::http::BodyPiece piece) {
          held->read([piece = std::move(piece)](std::error_code ec, std::string bytes) mutable {
            piece(ec, std::move(bytes));
          });
        });
        fail_at = 0;  // only the answer's own allocations: not the test's client's (if the handler
                      // throws, this is skipped, but the count has passed fail_at: it never matches)
      },
      options);
  const std::uint16_t port = server.local_endpoint().port();

  long fired = 0;
  for (nth = 1; nth < 100; ++nth) {
    CAPTURE(nth);
    const long failed_before = failed;
    errors.messages.clear();
    duet::test::ExpectingClient client;
    client.exchange(loop, port, duet::test::expecting_head("/x", 5), "hello");
    const std::string& got = client.got;
    CHECK_FALSE(client.timed_out);
    if (failed == failed_before) {  // every allocation of the answer succeeded: the echo came whole
      CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
      CHECK_THAT(got, Catch::EndsWith("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
      CHECK(errors.messages.empty());
      break;
    }
    ++fired;
    // The failure is said, not swallowed (with, when the handler is the one it failed, its dropped Reply).
    CHECK(std::any_of(errors.messages.begin(), errors.messages.end(),
                      [](const std::string& m) { return m.find("bad_alloc") != std::string::npos; }));
  }
  CHECK(fired >= 3);  // the answer allocates: the failures above were met
  CHECK(nth < 100);   // and then it completed
}
