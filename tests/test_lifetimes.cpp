// What may outlive its Loop (docs/loop-and-operations.md): each public object is made on a loop, the
// Loop is destroyed first, then the object is used and destroyed. ASan checks that nothing touches
// freed memory; the tests check what each object does once its loop is gone.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <system_error>

#include "duet/duet.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;

namespace {

/// An owned loop whose destruction reports (expected) pending work to a log instead of stderr.
struct DoomedLoop {
  duet::test::ErrorLog log;
  std::optional<duet::Loop> loop{std::in_place};
  DoomedLoop() { loop->set_error_handler(log.handler()); }
  duet::Loop& operator*() { return *loop; }
  duet::Loop* operator->() { return &*loop; }
  void destroy() { loop.reset(); }
};

/// A connected pair of streams on `loop`.
struct Pair {
  duet::TcpListener listener;
  std::optional<duet::TcpStream> client, server;
  explicit Pair(duet::Loop& loop) : listener(loop, duet::Endpoint::loopback(0)) {
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

bool not_connected(const std::system_error& e) { return e.code() == duet::errc::not_connected; }

}  // namespace

TEST_CASE("a TcpStream and a TcpListener outlive their loop, inert", "[lifetime][tcp]") {
  DoomedLoop loop;
  std::optional<Pair> pair(std::in_place, *loop);
  bool called = false;
  char buffer[16];
  pair->client->read(buffer, [&](std::error_code, std::size_t) { called = true; });
  pair->server->write(std::string(1024 * 1024, 'x'), [&](std::error_code) { called = true; });
  pair->listener.accept([&](std::error_code, duet::TcpStream) { called = true; });
  loop.destroy();
  CHECK_FALSE(called);
  CHECK_FALSE(pair->client->is_open());
  CHECK_FALSE(pair->listener.is_open());
  CHECK_THROWS_MATCHES(pair->client->write("x", [](std::error_code) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(pair->listener.accept([](std::error_code, duet::TcpStream) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  pair->client->close();  // idempotent
  duet::TcpStream moved = std::move(*pair->server);
  CHECK_FALSE(moved.is_open());
  pair.reset();
}

TEST_CASE("a Timer outlives its loop, inert", "[lifetime][timer]") {
  DoomedLoop loop;
  duet::Timer timer(*loop);
  timer.start(10s, 1s, [] {});
  loop.destroy();
  CHECK_FALSE(timer.active());
  timer.stop();
  timer.keep_loop_alive(false);
  CHECK_THROWS_AS(timer.again(), std::system_error);
  duet::Timer moved = std::move(timer);
  CHECK_FALSE(moved.active());
}

TEST_CASE("a Loop::Hold outlives its loop and then holds nothing", "[lifetime][loop]") {
  std::optional<duet::Loop> loop(std::in_place);
  std::optional<duet::Loop::Hold> hold(loop->hold());
  std::optional<duet::Loop::Hold> moved(std::move(*hold));
  loop.reset();
  hold.reset();
  moved->release();
  moved.reset();
}

TEST_CASE("a JoinHandle outlives its loop: done, with loop_closed", "[lifetime][coro]") {
  DoomedLoop loop;
  auto slow = [](duet::Loop& l) -> Task<int> {
    co_await duet::sleep(l, 60s);
    co_return 1;
  };
  auto running = duet::spawn(*loop, slow(*loop));
  while (loop->live_resources() == 0) loop->run_once();  // started: waits on its sleep
  auto never_started = duet::spawn(*loop, slow(*loop));
  loop.destroy();
  for (auto* handle : {&running, &never_started}) {
    CHECK(handle->done());
    handle->cancel();  // nothing left to cancel
    try {
      handle->result();
      FAIL("result() returned");
    } catch (const std::system_error& e) {
      CHECK(e.code() == duet::errc::loop_closed);
    }
    CHECK_THROWS_AS(handle->on_done([] {}), std::logic_error);
  }
}

TEST_CASE("a Task that never ran, holding duet objects, is destroyed after its loop", "[lifetime][coro]") {
  DoomedLoop loop;
  auto uses = [](duet::TcpStream s, duet::Timer t) -> Task<> {
    co_await s.write("never");
    t.stop();
  };
  Pair pair(*loop);  // destroyed last (a plain local: g++ 12 -O2 warns falsely on an optional one here)
  std::optional<Task<>> task(uses(std::move(*pair.client), duet::Timer(*loop)));
  loop.destroy();
  task.reset();  // destroys the frame, and the stream and timer in it
}

TEST_CASE("a Semaphore, its permits and a stop source outlive the loop their waiters used", "[lifetime][coro]") {
  DoomedLoop loop;
  std::optional<duet::Semaphore> sem(std::in_place, 1);
  std::optional<duet::Semaphore::Permit> held;
  auto take = [](duet::Semaphore& s, std::optional<duet::Semaphore::Permit>& out) -> Task<> {
    out = co_await s.acquire();
  };
  auto wait = [](duet::Semaphore& s) -> Task<> { auto permit = co_await s.acquire(); };
  std::stop_source stop;
  bool called = false;
  duet::sleep(*loop, 60s, duet::with_cancellation(stop.get_token(), [&](std::error_code) { called = true; }));
  auto first = duet::spawn(*loop, take(*sem, held));
  auto second = duet::spawn(*loop, wait(*sem));
  while (sem->waiting() == 0) loop->run_once();
  REQUIRE(held);
  loop.destroy();  // cancels the waiting task: it leaves the semaphore's queue
  CHECK(sem->waiting() == 0);
  stop.request_stop();  // the sleep it watched is gone with the loop: nothing happens
  CHECK_FALSE(called);
  held.reset();  // the permit goes back
  CHECK(sem->available() == 1);
  sem.reset();
}

TEST_CASE("a File outlives the loop that opened it", "[lifetime][fs]") {
  DoomedLoop loop;
  duet::test::TempDir dir;
  std::optional<duet::fs::File> file;
  duet::fs::open(*loop, dir / "f", O_CREAT | O_WRONLY, 0644, [&](std::error_code ec, duet::fs::File f) {
    REQUIRE_FALSE(ec);
    file = std::move(f);
  });
  while (!file) loop->run_once();
  loop.destroy();
  CHECK(file->is_open());
  file.reset();  // closes the descriptor, synchronously
}

TEST_CASE("a PipeStream and a PipeListener outlive their loop, inert, and the socket file is gone", "[lifetime][pipe]") {
  DoomedLoop loop;
  duet::test::TempDir dir;
  const std::string path = dir / "doomed.sock";
  std::optional<duet::PipeListener> listener(std::in_place, *loop, path);
  std::optional<duet::PipeStream> client, server;
  listener->accept([&](std::error_code ec, duet::PipeStream s) {
    REQUIRE_FALSE(ec);
    server = std::move(s);
  });
  duet::connect(*loop, path, [&](std::error_code ec, duet::PipeStream s) {
    REQUIRE_FALSE(ec);
    client = std::move(s);
  });
  while (!client || !server) loop->run_once();
  bool called = false;
  char buffer[16];
  client->read(buffer, [&](std::error_code, std::size_t) { called = true; });
  listener->accept([&](std::error_code, duet::PipeStream) { called = true; });
  duet::connect(*loop, path, [&](std::error_code, duet::PipeStream) { called = true; });  // still connecting
  loop.destroy();
  CHECK_FALSE(called);
  CHECK_FALSE(client->is_open());
  CHECK_FALSE(listener->is_open());
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK_THROWS_MATCHES(client->write("x", [](std::error_code) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(listener->local_name(), std::system_error, Catch::Predicate<std::system_error>(not_connected));
  client->close();
  listener.reset();
  duet::PipeStream moved = std::move(*server);
  CHECK_FALSE(moved.is_open());
}

TEST_CASE("a Tty in raw mode outlives its loop: the terminal's mode is restored, the Tty inert", "[lifetime][tty]") {
  DoomedLoop loop;
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  REQUIRE(master >= 0);
  REQUIRE(::grantpt(master) == 0);
  REQUIRE(::unlockpt(master) == 0);
  const int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  REQUIRE(slave >= 0);
  termios original{}, now{};
  REQUIRE(::tcgetattr(slave, &original) == 0);
  std::optional<duet::Tty> tty(std::in_place, *loop, slave);
  tty->set_mode(duet::Tty::Mode::raw);
  REQUIRE(::tcgetattr(slave, &now) == 0);
  REQUIRE_FALSE(now.c_lflag & ICANON);
  bool called = false;
  char buffer[8];
  tty->read(buffer, [&](std::error_code, std::size_t) { called = true; });
  loop.destroy();
  REQUIRE(::tcgetattr(slave, &now) == 0);
  CHECK(now.c_lflag == original.c_lflag);
  CHECK((now.c_lflag & ICANON));
  CHECK((now.c_lflag & ECHO));
  CHECK_FALSE(called);
  CHECK_FALSE(tty->is_open());
  CHECK(tty->mode() == duet::Tty::Mode::normal);
  CHECK_THROWS_MATCHES(tty->set_mode(duet::Tty::Mode::raw), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(tty->window_size(), std::system_error, Catch::Predicate<std::system_error>(not_connected));
  tty.reset();
  ::close(slave);
  ::close(master);
}

TEST_CASE("destroying the Loop kills and reaps a running child: no leak, no zombie, the Process inert",
          "[lifetime][process]") {
  DoomedLoop loop;
  std::optional<duet::Process> child(duet::spawn(
      *loop, {.file = "sleep", .args = {"sleep", "60"},
              .stdio = {duet::Stdio::pipe(), duet::Stdio::pipe(), duet::Stdio::inherit()}}));
  const int pid = child->pid();
  bool called = false;
  child->wait([&](std::error_code, duet::ExitStatus) { called = true; });
  // A second child, let go while it runs: killed and reaped all the same.
  std::optional<duet::Process> dropped(duet::spawn(*loop, {.file = "sleep", .args = {"sleep", "60"}}));
  const int dropped_pid = dropped->pid();
  dropped.reset();
  loop.destroy();
  CHECK_FALSE(called);
  REQUIRE(loop.log.messages.size() == 1);
  CHECK(loop.log.messages[0].find("1 operation(s) pending") != std::string::npos);  // the wait
  for (int pid_ : {pid, dropped_pid}) {
    CHECK(::waitpid(pid_, nullptr, WNOHANG) == -1);  // no child of ours any more: reaped
    CHECK(errno == ECHILD);
    CHECK_FALSE(std::filesystem::exists("/proc/" + std::to_string(pid_)));  // and gone, not running on
  }
  CHECK_FALSE(child->is_open());
  CHECK_FALSE(child->running());
  CHECK(child->pid() == pid);
  CHECK_FALSE(child->pipe(0).is_open());
  CHECK_THROWS_MATCHES(child->wait([](std::error_code, duet::ExitStatus) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(child->kill(SIGTERM), std::system_error, Catch::Predicate<std::system_error>(not_connected));
  duet::Process moved = std::move(*child);
  child.reset();
}

TEST_CASE("a detached child outlives its Loop: neither killed nor reaped", "[lifetime][process]") {
  DoomedLoop loop;
  duet::Process child = duet::spawn(*loop, {.file = "sleep", .args = {"sleep", "60"}});
  const int pid = child.pid();
  std::optional<std::error_code> waited;
  child.wait([&](std::error_code ec, duet::ExitStatus) { waited = ec; });
  child.detach();
  CHECK_FALSE(child.is_open());
  CHECK(child.pid() == pid);
  loop->run();  // returns: the detached child no longer keeps the loop running (the wait was cancelled)
  REQUIRE(waited);
  CHECK(duet::is_cancelled(*waited));
  loop.destroy();
  CHECK(::kill(pid, 0) == 0);  // still there
  CHECK(::waitpid(pid, nullptr, WNOHANG) == 0);  // still our child, still running: duet did not reap it
  ::kill(pid, SIGKILL);
  int status = 0;
  CHECK(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
}

TEST_CASE("a UdpSocket outlives its loop, inert", "[lifetime][udp]") {
  DoomedLoop loop;
  std::optional<duet::UdpSocket> receiver(std::in_place, *loop, duet::Endpoint::loopback(0));
  std::optional<duet::UdpSocket> streaming(std::in_place, *loop, duet::Endpoint::loopback(0));
  bool called = false;
  char buffer[16];
  receiver->receive(buffer, [&](std::error_code, duet::UdpReceived) { called = true; });
  streaming->receive_start([&](std::error_code, std::span<const char>, const duet::Endpoint&) { called = true; });
  streaming->send_to(receiver->local_endpoint(), std::string(1000, 'x'), [&](std::error_code) { called = true; });
  loop.destroy();
  CHECK_FALSE(called);
  REQUIRE(loop.log.messages.size() == 1);  // the pending receives and the send, reported once
  CHECK(loop.log.messages[0].find("pending") != std::string::npos);
  CHECK_FALSE(receiver->is_open());
  CHECK(receiver->native() == nullptr);
  CHECK_THROWS_MATCHES(receiver->receive(buffer, [](std::error_code, duet::UdpReceived) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(streaming->send_to(duet::Endpoint::loopback(9), "x", [](std::error_code) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(receiver->set_broadcast(true), std::system_error, Catch::Predicate<std::system_error>(not_connected));
  streaming->receive_stop();
  receiver->close();  // idempotent
  duet::UdpSocket moved = std::move(*streaming);
  CHECK_FALSE(moved.is_open());
  receiver.reset();
  streaming.reset();
}

TEST_CASE("a Poller and a pending wait on a descriptor outlive their loop", "[lifetime][poll]") {
  DoomedLoop loop;
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  const int other = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  REQUIRE(efd >= 0);
  REQUIRE(other >= 0);
  std::optional<duet::Poller> poller(std::in_place, *loop, efd);
  bool called = false;
  poller->start(duet::PollEvents::readable, [&](std::error_code, duet::PollEvents) { called = true; });
  duet::wait_readable(*loop, other, [&](std::error_code) { called = true; });
  loop.destroy();
  CHECK_FALSE(called);
  CHECK_FALSE(poller->is_open());
  CHECK_FALSE(poller->active());
  CHECK_THROWS_MATCHES(poller->wait(duet::PollEvents::readable, [](std::error_code, duet::PollEvents) {}),
                       std::system_error, Catch::Predicate<std::system_error>(not_connected));
  poller->stop();
  duet::Poller moved = std::move(*poller);
  CHECK_FALSE(moved.is_open());
  poller.reset();
  CHECK(::close(efd) == 0);  // duet never closes a descriptor it polls
  CHECK(::close(other) == 0);
}

TEST_CASE("Idle, Prepare and Check outlive their loop, inert", "[lifetime][hooks]") {
  DoomedLoop loop;
  duet::Idle idle(*loop);
  duet::Prepare prepare(*loop);
  duet::Check check(*loop);
  bool called = false;
  idle.start([&] { called = true; });
  prepare.start([&] { called = true; });
  check.next([&](std::error_code) { called = true; });
  loop.destroy();
  CHECK_FALSE(called);
  for (duet::detail::LoopHook* hook : {static_cast<duet::detail::LoopHook*>(&idle),
                                       static_cast<duet::detail::LoopHook*>(&prepare),
                                       static_cast<duet::detail::LoopHook*>(&check)}) {
    CHECK_FALSE(hook->is_open());
    CHECK_FALSE(hook->active());
    CHECK_THROWS_MATCHES(hook->start([] {}), std::system_error, Catch::Predicate<std::system_error>(not_connected));
    hook->stop();
    hook->keep_loop_alive(false);
    hook->close();
  }
  duet::Check moved = std::move(check);
  CHECK_FALSE(moved.is_open());
}

TEST_CASE("an FsEvent outlives its loop, inert, with events queued and a next pending", "[lifetime][fs_event]") {
  DoomedLoop loop;
  duet::test::TempDir dir;
  std::optional<duet::FsEvent> queued(std::in_place, *loop);
  std::optional<duet::FsEvent> waiting(std::in_place, *loop);
  queued->start(dir.path().string());
  waiting->start(dir.path().string());
  std::ofstream(dir / "new").close();
  while (queued->queued() == 0) loop->run_once();
  bool called = false;
  waiting->next([&](std::error_code, duet::FileEvent) { called = true; });  // given the queued event ...
  waiting->next([&](std::error_code, duet::FileEvent) { called = true; });  // ... this one waits
  loop.destroy();
  CHECK_FALSE(called);
  CHECK_FALSE(queued->is_open());
  CHECK(queued->queued() == 0);
  CHECK_THROWS_MATCHES(queued->next([](std::error_code, duet::FileEvent) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(waiting->start(dir.path().string()), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  duet::FsEvent moved = std::move(*waiting);
  moved.stop();
  queued.reset();
  waiting.reset();
}

TEST_CASE("an FsPoll outlives its loop, inert, even with a stat on the thread pool", "[lifetime][fs_poll]") {
  DoomedLoop loop;
  duet::test::TempDir dir;
  std::optional<duet::FsPoll> poll(std::in_place, *loop);
  bool called = false;
  poll->start(dir / "missing", 1ms, [&](std::error_code, const duet::StatChange&) { called = true; });
  loop.destroy();  // the first stat was just queued: the loop waits for it, and calls nothing back
  CHECK_FALSE(called);
  CHECK_FALSE(poll->is_open());
  CHECK_FALSE(poll->active());
  CHECK_THROWS_MATCHES(poll->start(dir / "missing", 1ms), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  duet::FsPoll moved = std::move(*poll);
  moved.close();
  poll.reset();
}
