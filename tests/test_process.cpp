// Child processes: spawn, pipes to and from them, exit status and signals, many at once.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duet/cancellation.hpp"
#include "duet/process.hpp"
#include "duet/spawn.hpp"
#include "duet/when_all.hpp"
#include "support.hpp"

using duet::ExitStatus;
using duet::Process;
using duet::ProcessOptions;
using duet::Stdio;
using duet::Task;

namespace {

ProcessOptions shell(const std::string& script, std::vector<Stdio> stdio) {
  return {.file = "/bin/sh", .args = {"sh", "-c", script}, .stdio = std::move(stdio)};
}

/// Reads `stream` to its end, appending to `into`.
void read_all(duet::Stream& stream, std::string& into) {
  stream.read_start([&into](std::error_code ec, std::span<const char> chunk) {
    REQUIRE_FALSE(ec);
    into.append(chunk.begin(), chunk.end());
  });
}

/// True once `pid` is no child of ours any more: it was reaped (no zombie is left).
bool reaped(int pid) { return ::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD; }

/// True if `pid` is a process that is running (not a zombie).
bool running(int pid) {
  const std::string stat = duet::test::read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

/// The byte at `offset` of the 10 MB stream: a period (251) that no chunk size divides.
char pattern(std::size_t offset) { return static_cast<char>('0' + offset % 251 % 64); }

constexpr std::size_t kTotal = 10 * 1024 * 1024;
constexpr std::size_t kChunk = 64 * 1024;

std::string chunk_at(std::size_t offset) {
  std::string chunk(std::min(kChunk, kTotal - offset), '\0');
  for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = pattern(offset + i);
  return chunk;
}

}  // namespace

TEST_CASE("echo through /bin/sh -c: stdout and stderr pipes, exit status 0", "[process]") {
  duet::Loop loop;
  Process child =
      duet::spawn(loop, shell("echo hello; echo oops >&2", {Stdio::ignore(), Stdio::pipe(), Stdio::pipe()}));
  CHECK(child.pid() > 0);
  CHECK(child.is_open());
  std::string out, err;
  read_all(child.pipe(1), out);
  read_all(child.pipe(2), err);
  std::optional<ExitStatus> status;
  child.wait([&](std::error_code ec, ExitStatus st) {
    REQUIRE_FALSE(ec);
    status = st;
  });
  CHECK_FALSE(child.pipe(0).is_open());  // not a pipe
  loop.run();
  CHECK(out == "hello\n");
  CHECK(err == "oops\n");
  REQUIRE(status);
  CHECK(status->success());
  CHECK(child.exit_status() == status);
  CHECK_FALSE(child.running());
  CHECK(reaped(child.pid()));
  child = Process();
  loop.run();
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("the coroutine face: echo through /bin/sh -c and co_await wait", "[process][coro]") {
  duet::Loop loop;
  auto run = [](duet::Loop& l) -> Task<std::pair<std::string, ExitStatus>> {
    Process child =
        duet::spawn(l, shell("read line; echo \"got $line\"", {Stdio::pipe(), Stdio::pipe(), Stdio::inherit()}));
    co_await child.pipe(0).write("ping\n");
    co_await child.pipe(0).shutdown();
    std::string out;
    char buf[64];
    while (const std::size_t n = co_await child.pipe(1).read(buf)) out.append(buf, n);
    const ExitStatus status = co_await child.wait();
    co_return std::pair(out, status);
  };
  auto [out, status] = duet::run(loop, run(loop));
  CHECK(out == "got ping\n");
  CHECK(status == ExitStatus{0, 0});
}

TEST_CASE("the exit code of sh -c 'exit 3', both faces", "[process]") {
  duet::Loop loop;
  Process child = duet::spawn(loop, shell("exit 3", {Stdio::ignore(), Stdio::ignore(), Stdio::ignore()}));
  std::optional<ExitStatus> status;
  child.wait([&](std::error_code ec, ExitStatus st) {
    REQUIRE_FALSE(ec);
    status = st;
  });
  loop.run();
  REQUIRE(status);
  CHECK(status->code == 3);
  CHECK(status->signal == 0);
  CHECK_FALSE(status->success());

  auto again = [](duet::Loop& l) -> Task<ExitStatus> {
    Process p = duet::spawn(l, shell("exit 42", {Stdio::ignore(), Stdio::ignore(), Stdio::ignore()}));
    co_return co_await p.wait();
  };
  CHECK(duet::run(loop, again(loop)) == ExitStatus{42, 0});
}

TEST_CASE("a host's Loop destroyed by a Process's first wait: the second is not called", "[process][embed][lifetime]") {
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  auto loop = std::make_unique<duet::Loop>(&host);
  loop->set_error_handler([](std::exception_ptr) {});  // (the Loop's report of the second wait)
  std::optional<Process> child;
  child.emplace(duet::spawn(*loop, shell("exit 0", {Stdio::ignore(), Stdio::ignore(), Stdio::ignore()})));
  int second = 0;
  child->wait([&](std::error_code, ExitStatus) { loop.reset(); });
  child->wait([&](std::error_code, ExitStatus) { ++second; });
  for (int turn = 0; loop && turn < 100000; ++turn) uv_run(&host, UV_RUN_ONCE);
  REQUIRE_FALSE(loop);
  CHECK(second == 0);  // the Loop went in the first: what it dropped is not called
  CHECK_FALSE(child->is_open());
  child.reset();
  uv_run(&host, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&host) == 0);
}

TEST_CASE("a wait after the exit calls back on a later turn with the same status", "[process]") {
  duet::Loop loop;
  Process child = duet::spawn(loop, shell("exit 5", {Stdio::ignore(), Stdio::ignore(), Stdio::ignore()}));
  int calls = 0;
  child.wait([&](std::error_code, ExitStatus) { ++calls; });
  loop.run();
  REQUIRE(calls == 1);
  std::stop_source stop;
  stop.request_stop();
  std::optional<std::error_code> stopped;  // a wait whose token is stopped is cancelled, exit or not
  child.wait(duet::with_cancellation(stop.get_token(), [&](std::error_code ec, ExitStatus) { stopped = ec; }));
  std::optional<ExitStatus> late;
  child.wait([&](std::error_code ec, ExitStatus st) {
    REQUIRE_FALSE(ec);
    late = st;
  });
  CHECK_FALSE(late);  // never inside the call
  loop.run();
  REQUIRE(late);
  CHECK(late->code == 5);
  REQUIRE(stopped);
  CHECK(duet::is_cancelled(*stopped));
}

TEST_CASE("a program that does not exist: spawn throws UV_ENOENT naming it, and leaves nothing behind", "[process]") {
  duet::Loop loop;
  try {
    duet::spawn(loop, {.file = "duet-no-such-program", .stdio = {Stdio::pipe(), Stdio::pipe(), Stdio::inherit()}});
    FAIL("spawn of a missing program returned");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_ENOENT);
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK(std::string(e.what()).find("duet-no-such-program") != std::string::npos);
  }
  try {
    duet::spawn(loop, {.file = "/bin/sh", .cwd = "/duet-no-such-folder"});
    FAIL("spawn in a missing folder returned");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_ENOENT);
    CHECK(std::string(e.what()).find("/duet-no-such-folder") != std::string::npos);
  }
  // Ignored descriptors beyond stderr that this process does not have open: libuv's pipe for the
  // exec's failure takes such a number, and must stay itself in the child.
  for (const std::size_t slots : {4, 8, 16, 32}) {
    CAPTURE(slots);
    std::vector<Stdio> stdio = {Stdio::inherit(), Stdio::inherit(), Stdio::inherit()};
    stdio.resize(slots, Stdio::ignore());
    CHECK_THROWS_MATCHES(
        duet::spawn(loop, {.file = "/duet-no-such-program", .stdio = stdio}), std::system_error,
        Catch::Predicate<std::system_error>([](const std::system_error& e) { return e.code().value() == UV_ENOENT; }));
  }
  try {
    duet::spawn(loop, {});
    FAIL("spawn without a program returned");
  } catch (const std::system_error& e) {
    CHECK(e.code() == duet::errc::invalid_argument);
  }
  loop.run();
  CHECK(loop.live_resources() == 0);            // the pipes and the process handle are closed
  CHECK(::waitpid(-1, nullptr, WNOHANG) <= 0);  // and libuv reaped the child that failed to exec
}

TEST_CASE("kill ends a sleep 60 and the signal is reported, both faces", "[process]") {
  duet::Loop loop;
  Process child = duet::spawn(loop, {.file = "sleep", .args = {"sleep", "60"}});
  std::optional<ExitStatus> status;
  child.wait([&](std::error_code ec, ExitStatus st) {
    REQUIRE_FALSE(ec);
    status = st;
  });
  CHECK(child.running());
  CHECK(child.kill(SIGTERM));
  loop.run();
  REQUIRE(status);
  CHECK(status->signal == SIGTERM);
  CHECK(status->code == 0);
  CHECK_FALSE(child.kill(SIGTERM));  // exited: nothing is sent (the pid may be another process's now)

  auto killed = [](duet::Loop& l) -> Task<ExitStatus> {
    Process p = duet::spawn(l, {.file = "sleep", .args = {"sleep", "60"}});
    duet::kill(p.pid(), SIGKILL);  // the free function, by pid
    co_return co_await p.wait();
  };
  CHECK(duet::run(loop, killed(loop)) == ExitStatus{0, SIGKILL});

  try {
    duet::kill(0x7fffffff, 0);  // beyond any pid_max
    FAIL("kill of a process that cannot exist succeeded");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_ESRCH);
  }
}

TEST_CASE("env and cwd are honoured", "[process]") {
  duet::Loop loop;
  duet::test::TempDir dir;
  ProcessOptions options =
      shell("echo \"$DUET_VALUE\"; pwd; echo \"${HOME-unset}\"", {Stdio::ignore(), Stdio::pipe(), Stdio::inherit()});
  options.env = std::vector<std::string>{"DUET_VALUE=forty two", "PATH=/usr/bin:/bin"};
  options.cwd = dir.path().string();
  Process child = duet::spawn(loop, options);
  std::string out;
  read_all(child.pipe(1), out);
  loop.run();
  CHECK(out == "forty two\n" + std::filesystem::canonical(dir.path()).string() + "\nunset\n");
}

TEST_CASE("descriptors beyond stderr: a pipe on 3, and a descriptor of ours on 1", "[process]") {
  duet::Loop loop;
  int ours[2];
  REQUIRE(::pipe(ours) == 0);
  Process child = duet::spawn(
      loop, shell("echo three >&3; echo one", {Stdio::ignore(), Stdio::fd(ours[1]), Stdio::inherit(), Stdio::pipe()}));
  ::close(ours[1]);  // the child has its copy
  std::string three;
  read_all(child.pipe(3), three);
  loop.run();
  CHECK(three == "three\n");
  char buf[16];
  const ssize_t n = ::read(ours[0], buf, sizeof buf);
  ::close(ours[0]);
  CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) == "one\n");
  CHECK_THROWS_AS(child.pipe(4), std::out_of_range);
}

TEST_CASE("an ignored descriptor beyond stderr is /dev/null in the child, never ours of that number", "[process]") {
  duet::Loop loop;
  duet::test::TempDir dir;
  duet::test::write_file(dir / "secret", "not for the child");
  const int file = ::open((dir / "secret").c_str(), O_RDONLY);  // no O_CLOEXEC: an exec would keep it
  REQUIRE(file >= 0);
  const int number = ::fcntl(file, F_DUPFD, 20);  // past the few this process has open
  ::close(file);
  REQUIRE(number >= 20);
  std::vector<Stdio> stdio = {Stdio::ignore(), Stdio::pipe(), Stdio::inherit()};
  stdio.resize(static_cast<std::size_t>(number) + 1, Stdio::ignore());
  Process child = duet::spawn(loop, shell("readlink /proc/self/fd/" + std::to_string(number), stdio));
  ::close(number);
  std::string out;
  read_all(child.pipe(1), out);
  loop.run();
  CHECK(out == "/dev/null\n");
}

TEST_CASE("10 MB through cat both ways with backpressure, callbacks", "[process]") {
  duet::Loop loop;
  Process cat = duet::spawn(loop, {.file = "cat", .stdio = {Stdio::pipe(), Stdio::pipe(), Stdio::inherit()}});
  duet::PipeStream& in = cat.pipe(0);
  duet::PipeStream& out = cat.pipe(1);
  // One write in flight at a time: the next chunk is made only when the kernel took the last one.
  std::size_t sent = 0, most_queued = 0;
  std::function<void()> send_next = [&] {
    if (sent == kTotal) return in.shutdown([](std::error_code ec) { CHECK_FALSE(ec); });
    std::string chunk = chunk_at(sent);
    sent += chunk.size();
    in.write(std::move(chunk), [&](std::error_code ec) {
      REQUIRE_FALSE(ec);
      send_next();
    });
    most_queued = std::max(most_queued, in.write_queue_size());
  };
  send_next();
  std::size_t received = 0, wrong = 0;
  bool eof = false;
  out.read_start([&](std::error_code ec, std::span<const char> chunk) {
    REQUIRE_FALSE(ec);
    if (chunk.empty()) eof = true;
    for (char c : chunk) wrong += c != pattern(received++) ? 1 : 0;
  });
  std::optional<ExitStatus> status;
  cat.wait([&](std::error_code ec, ExitStatus st) {
    REQUIRE_FALSE(ec);
    status = st;
  });
  loop.run();
  CHECK(sent == kTotal);
  CHECK(received == kTotal);
  CHECK(wrong == 0);
  CHECK(eof);
  CHECK(most_queued <= kChunk);
  REQUIRE(status);
  CHECK(status->success());
}

TEST_CASE("10 MB through cat both ways with backpressure, coroutines", "[process][coro]") {
  duet::Loop loop;
  auto feed = [](duet::PipeStream& in) -> Task<std::size_t> {
    std::size_t sent = 0, most_queued = 0;
    while (sent < kTotal) {
      std::string chunk = chunk_at(sent);
      sent += chunk.size();
      co_await in.write(std::move(chunk));  // returns once the kernel has taken it
      most_queued = std::max(most_queued, in.write_queue_size());
    }
    co_await in.shutdown();
    co_return most_queued;
  };
  auto drain = [](duet::PipeStream& out) -> Task<std::size_t> {
    std::string buf(kChunk, '\0');
    std::size_t received = 0, wrong = 0;
    while (const std::size_t n = co_await out.read(std::span<char>(buf)))
      for (std::size_t i = 0; i < n; ++i) wrong += buf[i] != pattern(received++) ? 1 : 0;
    CHECK(wrong == 0);
    co_return received;
  };
  auto round_trip = [&](duet::Loop& l) -> Task<std::tuple<std::size_t, std::size_t, ExitStatus>> {
    Process cat = duet::spawn(l, {.file = "cat", .stdio = {Stdio::pipe(), Stdio::pipe(), Stdio::inherit()}});
    auto [most_queued, received] = co_await duet::when_all(feed(cat.pipe(0)), drain(cat.pipe(1)));
    co_return std::tuple(most_queued, received, co_await cat.wait());
  };
  auto [most_queued, received, status] = duet::run(loop, round_trip(loop));
  CHECK(received == kTotal);
  CHECK(most_queued == 0);  // each write had gone to the kernel before the next was made
  CHECK(status.success());
}

TEST_CASE("200 children at once: every exit status arrives and every child is reaped", "[process]") {
  duet::Loop loop;
  constexpr int kChildren = 200;
  std::vector<Process> children;
  std::vector<std::optional<ExitStatus>> statuses(kChildren);
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(duet::spawn(
        loop, shell("exit " + std::to_string(i % 100), {Stdio::ignore(), Stdio::ignore(), Stdio::inherit()})));
    children.back().wait([&statuses, i](std::error_code ec, ExitStatus st) {
      REQUIRE_FALSE(ec);
      statuses[i] = st;
    });
  }
  loop.run();
  int right = 0, gone = 0;
  for (int i = 0; i < kChildren; ++i) {
    right += statuses[i] && *statuses[i] == ExitStatus{i % 100, 0} ? 1 : 0;
    gone += reaped(children[i].pid()) ? 1 : 0;
  }
  CHECK(right == kChildren);
  CHECK(gone == kChildren);
  children.clear();
  loop.run();
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a cancelled wait calls back with UV_ECANCELED and leaves the child alone", "[process][cancel]") {
  duet::Loop loop;
  Process cat = duet::spawn(loop, {.file = "cat", .stdio = {Stdio::pipe(), Stdio::ignore(), Stdio::inherit()}});
  std::stop_source stop;
  std::optional<std::error_code> cancelled;
  cat.wait(duet::with_cancellation(stop.get_token(), [&](std::error_code ec, ExitStatus) { cancelled = ec; }));
  std::optional<ExitStatus> status;
  cat.wait([&](std::error_code ec, ExitStatus st) {
    REQUIRE_FALSE(ec);
    status = st;
  });
  stop.request_stop();
  while (!cancelled) loop.run_once();
  CHECK(duet::is_cancelled(*cancelled));
  CHECK(cat.running());
  CHECK_FALSE(status);
  cat.pipe(0).close();  // end of cat's input: it exits
  loop.run();
  REQUIRE(status);
  CHECK(status->success());
}

TEST_CASE("a Process dropped while its child runs: the child runs on and is still reaped", "[process]") {
  duet::Loop loop;
  std::optional<Process> cat(
      duet::spawn(loop, {.file = "cat", .stdio = {Stdio::pipe(), Stdio::ignore(), Stdio::inherit()}}));
  const int pid = cat->pid();
  duet::PipeStream in = std::move(cat->pipe(0));
  std::optional<std::error_code> waited;
  cat->wait([&](std::error_code ec, ExitStatus) { waited = ec; });
  cat.reset();
  while (!waited) loop.run_once();
  CHECK(duet::is_cancelled(*waited));  // nobody is left to hear how it ends
  CHECK(running(pid));
  in.close();  // cat exits; run() returns once it has been reaped
  loop.run();
  CHECK(reaped(pid));
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("operations on a closed Process throw not_connected", "[process]") {
  Process none;
  CHECK(none.pid() == 0);
  CHECK_FALSE(none.is_open());
  CHECK_FALSE(none.running());
  CHECK_FALSE(none.exit_status());
  auto closed = [](const std::system_error& e) { return e.code() == duet::errc::not_connected; };
  CHECK_THROWS_MATCHES(none.wait([](std::error_code, ExitStatus) {}), std::system_error,
                       Catch::Predicate<std::system_error>(closed));
  CHECK_THROWS_MATCHES(none.kill(SIGTERM), std::system_error, Catch::Predicate<std::system_error>(closed));
  CHECK_THROWS_AS(none.pipe(0), std::out_of_range);
  none.detach();  // nothing to let go
}

TEST_CASE("waiting on a closed Process throws not_connected and leaves the callback untouched", "[process]") {
  Process closed;  // default-constructed: no child
  auto witness = std::make_shared<int>(0);
  auto cb = [witness](std::error_code, ExitStatus) { *witness = 1; };
  try {
    closed.wait(std::move(cb));
    FAIL("wait on a closed Process did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == duet::errc::not_connected);
  }
  // The throw came before the callback was taken: it still owns its capture, and never ran.
  CHECK(witness.use_count() == 2);
  CHECK(*witness == 0);
}
