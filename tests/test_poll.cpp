#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "deadline.hpp"
#include "duet/pipe.hpp"
#include "duet/poll.hpp"
#include "duet/spawn.hpp"
#include "duet/with_timeout.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Poller;
using duet::PollEvents;
using duet::Task;
using duet::test::Deadline;

namespace {

/// An eventfd, as a library that signals through one would own it.
struct EventFd {
  int fd;
  explicit EventFd(int flags = EFD_NONBLOCK) : fd(::eventfd(0, flags | EFD_CLOEXEC)) {
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;
  ~EventFd() { ::close(fd); }
  void signal(std::uint64_t n = 1) const {
    if (::write(fd, &n, sizeof n) != sizeof n) throw std::runtime_error("eventfd write");
  }
  /// The counter, reset to zero (0 if it was zero already).
  std::uint64_t drain() const {
    std::uint64_t n = 0;
    return ::read(fd, &n, sizeof n) == sizeof n ? n : 0;
  }
};

/// A connected pair of Unix-domain stream sockets.
struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) != 0)
      throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  ~SocketPair() {
    close_end(0);
    close_end(1);
  }
  void close_end(int i) {
    if (fd[i] >= 0) ::close(std::exchange(fd[i], -1));
  }
};

auto uv_code(int code) {
  return Catch::Predicate<std::system_error>([code](const std::system_error& e) { return e.code().value() == code; });
}

}  // namespace

TEST_CASE("wait_readable on an eventfd calls back once another thread writes it", "[poll]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  EventFd efd;
  std::optional<std::error_code> result;
  std::uint64_t counted = 0;
  duet::wait_readable(loop, efd.fd, [&](std::error_code ec) {
    result = ec;
    counted = efd.drain();  // the wait's handle is closed by now: the owner reads as it likes
  });
  CHECK_FALSE(result);
  std::thread writer([&efd] { efd.signal(); });  // the loop wakes for it, whenever it comes
  loop.run();
  writer.join();
  CHECK_FALSE(deadline.expired);
  REQUIRE(result);
  CHECK_FALSE(*result);
  CHECK(counted == 1);
  CHECK(loop.live_resources() == 1);  // the deadline's timer: the wait is gone
  CHECK(log.messages.empty());
}

TEST_CASE("a socketpair is writable at once, readable after a write, and disconnected when its peer closes", "[poll]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  SocketPair pair;
  auto steps = [](duet::Loop& l, SocketPair& p) -> Task<std::vector<PollEvents>> {
    std::vector<PollEvents> seen;
    co_await duet::wait_writable(l, p.fd[0]);
    seen.push_back(co_await duet::wait_ready(l, p.fd[0], PollEvents::writable));
    if (::write(p.fd[1], "x", 1) != 1) throw std::runtime_error("write");
    co_await duet::wait_readable(l, p.fd[0]);
    seen.push_back(co_await duet::wait_ready(l, p.fd[0], PollEvents::readable));
    char c;
    CHECK(::read(p.fd[0], &c, 1) == 1);
    p.close_end(1);
    seen.push_back(co_await duet::wait_ready(l, p.fd[0], PollEvents::readable | PollEvents::disconnect));
    co_return seen;
  };
  const auto seen = duet::run(loop, steps(loop, pair));
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == PollEvents::writable);
  CHECK(seen[1] == PollEvents::readable);
  CHECK(has(seen[2], PollEvents::disconnect));
  CHECK(loop.live_resources() == 0);
  CHECK(log.messages.empty());
}

TEST_CASE("a cancelled wait calls back with UV_ECANCELED and frees the descriptor", "[poll][cancel]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  EventFd efd;
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::wait_readable(loop, efd.fd,
                      duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { result = ec; }));
  duet::sleep(loop, 10ms, [&](std::error_code) {
    stop.request_stop();
    CHECK_FALSE(result);  // never inside request_stop()
  });
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(loop.live_resources() == 0);
  CHECK_NOTHROW(Poller(loop, efd.fd));  // nothing polls it any more

  auto with_deadline = [](duet::Loop& l, int fd) -> Task<> {
    co_await duet::with_timeout(20ms, duet::wait_readable(l, fd));
  };
  CHECK_THROWS_AS(duet::run(loop, with_deadline(loop, efd.fd)), duet::TimedOut);
  CHECK(loop.live_resources() == 0);
  CHECK(log.messages.empty());
}

TEST_CASE("a Poller reports an eventfd each time another thread writes it, until stopped", "[poll]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  EventFd efd;
  EventFd ack(0);  // blocking: the writer waits on it for the loop to have seen each write
  Poller poller(loop, efd.fd);
  int events = 0;
  std::uint64_t total = 0;
  poller.start(PollEvents::readable, [&](std::error_code ec, PollEvents ready) {
    REQUIRE_FALSE(ec);
    CHECK(ready == PollEvents::readable);
    total += efd.drain();
    if (++events == 3) poller.stop();
    ack.signal();
  });
  CHECK(poller.active());
  std::thread writer([&efd, &ack] {
    for (int i = 0; i < 3; ++i) {
      efd.signal();
      std::uint64_t n;
      if (::read(ack.fd, &n, sizeof n) != sizeof n) return;
    }
  });
  loop.run();     // returns once the poller is stopped
  ack.signal(3);  // (only if the loop gave up early: the writer must not wait for it forever)
  writer.join();
  CHECK_FALSE(deadline.expired);
  CHECK(events == 3);
  CHECK(total == 3);
  CHECK_FALSE(poller.active());
  CHECK(log.messages.empty());
}

TEST_CASE("Poller::wait, the coroutine face, and one consumer at a time", "[poll]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  SocketPair pair;
  Poller poller(loop, pair.fd[0]);
  auto writable = [](Poller& p) -> Task<PollEvents> { co_return co_await p.wait(PollEvents::writable); };
  CHECK(duet::run(loop, writable(poller)) == PollEvents::writable);
  CHECK_FALSE(poller.active());

  std::optional<std::error_code> second, replaced;
  poller.wait(PollEvents::readable, [&](std::error_code ec, PollEvents) { replaced = ec; });
  poller.wait(PollEvents::readable, [&](std::error_code ec, PollEvents) { second = ec; });
  int started = 0;
  poller.start(PollEvents::writable, [&](std::error_code ec, PollEvents) {  // ends the pending wait
    REQUIRE_FALSE(ec);
    ++started;
    poller.stop();
  });
  loop.run();
  REQUIRE(second);
  CHECK(*second == duet::errc::already_reading);
  REQUIRE(replaced);
  CHECK(duet::is_cancelled(*replaced));
  CHECK(started == 1);
  CHECK(log.messages.empty());
}

TEST_CASE("a descriptor libuv cannot poll is refused: a regular file, or one already polled", "[poll]") {
  duet::Loop loop;
  duet::test::TempDir dir;
  const int file = ::open((dir / "f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  REQUIRE(file >= 0);
  CHECK_THROWS_MATCHES(Poller(loop, file), std::system_error, uv_code(UV_EPERM));
  std::optional<std::error_code> on_file, on_polled;
  duet::wait_readable(loop, file, [&](std::error_code ec) { on_file = ec; });
  CHECK_FALSE(on_file);  // refused, but called back from the loop all the same
  SocketPair pair;
  Poller first(loop, pair.fd[0]);
  first.start(PollEvents::readable, [](std::error_code, PollEvents) {});
  CHECK_THROWS_MATCHES(Poller(loop, pair.fd[0]), std::system_error, uv_code(UV_EEXIST));
  duet::wait_writable(loop, pair.fd[0], [&](std::error_code ec) { on_polled = ec; });
  first.stop();
  loop.run();
  REQUIRE(on_file);
  CHECK(on_file->value() == UV_EPERM);
  REQUIRE(on_polled);
  CHECK(on_polled->value() == UV_EEXIST);
  CHECK_NOTHROW(Poller(loop, pair.fd[0]));  // stopped: the descriptor is free again
  CHECK_THROWS_MATCHES(Poller(loop, 1000000), std::system_error, uv_code(UV_EBADF));
  ::close(file);
}

TEST_CASE("a Poller holds its descriptor from its construction: a second Poller or wait gets UV_EEXIST", "[poll]") {
  duet::Loop loop;
  SocketPair pair;
  Poller first(loop, pair.fd[0]);  // set up, not started: libuv alone would not see it
  CHECK_THROWS_MATCHES(Poller(loop, pair.fd[0]), std::system_error, uv_code(UV_EEXIST));
  std::optional<std::error_code> refused;
  duet::wait_writable(loop, pair.fd[0], [&](std::error_code ec) { refused = ec; });
  loop.run();
  REQUIRE(refused);
  CHECK(refused->value() == UV_EEXIST);

  // Stopped, it holds nothing; a one-shot wait holds the descriptor until it calls back.
  first.stop();
  std::optional<std::error_code> one, two, restarted;
  duet::wait_writable(loop, pair.fd[0], [&](std::error_code ec) { one = ec; });
  duet::wait_writable(loop, pair.fd[0], [&](std::error_code ec) { two = ec; });
  first.start(PollEvents::writable, [&](std::error_code ec, PollEvents) { restarted = ec; });
  loop.run();
  REQUIRE(one);
  CHECK_FALSE(*one);
  REQUIRE(two);
  CHECK(two->value() == UV_EEXIST);
  REQUIRE(restarted);
  CHECK(restarted->value() == UV_EEXIST);
  CHECK_FALSE(first.active());
  CHECK(first.is_open());

  // Every wait has called back: the Poller starts again on a handle of its own.
  auto writable = [](Poller& p) -> Task<PollEvents> { co_return co_await p.wait(PollEvents::writable); };
  CHECK(duet::run(loop, writable(first)) == PollEvents::writable);
}

TEST_CASE("a Poller that stopped has let its descriptor go: closed and its number reused, the new owner is untouched",
          "[poll]") {
  const int by = GENERATE(0, 1, 2);    // stopped by stop(), by the end of a wait, or by a wait's cancellation
  const int then = GENERATE(0, 1, 2);  // later: close(), stop() again, or destroyed
  CAPTURE(by, then);
  duet::Loop loop;
  Deadline deadline(loop, 10s);
  std::optional<Poller> poller;
  int old_fd = -1;
  {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    old_fd = fds[0];
    poller.emplace(loop, fds[0]);
    if (by != 0) {
      std::stop_source stop;
      std::optional<std::error_code> got;
      const PollEvents events = by == 1 ? PollEvents::writable : PollEvents::readable;  // readable: never
      poller->wait(events, duet::with_cancellation(stop.get_token(), [&](std::error_code ec, PollEvents) {
                     ::close(fds[0]);  // poll.hpp: the descriptor may be closed after the wait's callback
                     got = ec;
                   }));
      if (by == 2) stop.request_stop();
      while (!got) loop.run_once();
      CHECK(got->value() == (by == 1 ? 0 : UV_ECANCELED));
      // Let go: a one-shot wait may take the number (closed now, so libuv refuses it as not open).
      std::optional<std::error_code> taken;
      duet::wait_writable(loop, fds[0], [&](std::error_code ec) { taken = ec; });
      while (!taken) loop.run_once();
      CHECK(taken->value() == UV_EBADF);  // not UV_EEXIST: duet's list let the number go too
    } else {
      poller->start(PollEvents::readable, [](std::error_code, PollEvents) {});
      poller->stop();
      ::close(fds[0]);  // poll.hpp: ... or after stop()
    }
    ::close(fds[1]);
  }
  SocketPair pair;  // the lowest free numbers: the old ones
  const int reused = std::exchange(pair.fd[0], -1);
  REQUIRE(reused == old_fd);
  auto stream = duet::PipeStream::open(loop, reused);
  std::string got;
  stream.read_start([&](std::error_code ec, std::span<const char> bytes) {
    if (!ec) got.append(bytes.begin(), bytes.end());
    if (ec || got.size() >= 5) stream.close();
  });
  loop.post([] {});
  loop.run_once();  // the stream's descriptor is in the loop's epoll set now
  if (then == 0) poller->close();
  if (then == 1) poller->stop();
  if (then == 2) poller.reset();
  REQUIRE(::write(pair.fd[1], "hello", 5) == 5);
  loop.run();
  CHECK_FALSE(deadline.expired);  // libuv's late forgetting of the number silenced the stream
  CHECK(got == "hello");
}

TEST_CASE("operations on a closed Poller throw not_connected", "[poll]") {
  duet::Loop loop;
  EventFd efd;
  Poller poller(loop, efd.fd);
  poller.close();
  CHECK_FALSE(poller.is_open());
  CHECK_FALSE(poller.active());
  auto closed = Catch::Predicate<std::system_error>(
      [](const std::system_error& e) { return e.code() == duet::errc::not_connected; });
  CHECK_THROWS_MATCHES(poller.start(PollEvents::readable, [](std::error_code, PollEvents) {}), std::system_error,
                       closed);
  CHECK_THROWS_MATCHES(poller.wait(PollEvents::readable, [](std::error_code, PollEvents) {}), std::system_error,
                       closed);
  poller.stop();
  poller.keep_loop_alive(false);
  poller.close();  // idempotent
  Poller never_opened;
  CHECK_FALSE(never_opened.is_open());
  CHECK_THROWS_MATCHES(never_opened.wait(PollEvents::writable, [](std::error_code, PollEvents) {}), std::system_error,
                       closed);
  loop.run();
  CHECK(loop.live_resources() == 0);
}
