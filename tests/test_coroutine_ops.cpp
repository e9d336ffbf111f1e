// The coroutine face of every operation: the same results, and errors thrown as std::system_error
// carrying exactly the error_code the callback face reports.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "duet/duet.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;
using duet::test::TempDir;

namespace {

/// What the callback face reports for an operation, to compare with the coroutine face's exception.
template <class Start>
std::error_code callback_error(duet::Loop& loop, Start start) {
  std::optional<std::error_code> ec;
  start([&](std::error_code e, auto&&...) { ec = e; });
  loop.run();
  REQUIRE(ec);
  return *ec;
}

/// The error_code a task throws (or success).
template <class T>
std::error_code thrown_by(duet::Loop& loop, Task<T> task) {
  try {
    duet::run(loop, std::move(task));
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

/// An operation that completes at once with `ec`, and `e` attached (offload's callback shape), and 7
/// for a result. Its awaitable is built in a plain function, as duet's faces are: g++ 12 destroys a
/// lambda's by-value captures twice when the lambda is written inside a `co_await` expression
/// (docs/your-own-operation.md).
template <class Result>
auto completes_with(std::error_code ec, std::exception_ptr e) {
  return duet::awaitable<Result>([ec, e](auto cb) {
    if constexpr (std::is_void_v<Result>)
      cb(ec, e);
    else
      cb(ec, Result(7), e);
  });
}

}  // namespace

TEST_CASE("co_await sleep waits at least the duration", "[coro]") {
  duet::Loop loop;
  auto t = [](duet::Loop& l) -> Task<> { co_await duet::sleep(l, 20ms); };
  // Timed from outside: the sleep counts from the loop's clock, read when run() starts, which a clock
  // read inside the coroutine could be ahead of.
  const auto start = std::chrono::steady_clock::now();
  duet::run(loop, t(loop));
  CHECK(std::chrono::steady_clock::now() - start >= 19ms);
}

TEST_CASE("co_await resolve: endpoints, or the callback's error as an exception", "[coro][dns]") {
  duet::Loop loop;
  auto ok = [](duet::Loop& l) -> Task<std::vector<duet::Endpoint>> {
    co_return co_await duet::resolve(l, "127.0.0.1", 80);
  };
  auto eps = duet::run(loop, ok(loop));
  REQUIRE(eps.size() == 1);
  CHECK(eps[0].to_string() == "127.0.0.1:80");

  auto bad = [](duet::Loop& l) -> Task<std::vector<duet::Endpoint>> {
    co_return co_await duet::resolve(l, "no-such-host.invalid", 80);
  };
  const std::error_code thrown = thrown_by(loop, bad(loop));
  CHECK(thrown);
  CHECK(thrown == callback_error(loop, [&](auto cb) { duet::resolve(loop, "no-such-host.invalid", 80, cb); }));
}

TEST_CASE("co_await connect: refused is a system_error, a hang is TimedOut", "[coro][tcp]") {
  duet::Loop loop;
  const duet::test::RefusingPort refusing;
  const auto closed = duet::Endpoint::loopback(refusing.port());
  auto dial = [](duet::Loop& l, duet::Endpoint ep, std::chrono::milliseconds t) -> Task<> {
    auto s = co_await duet::connect(l, ep, t);
  };
  const std::error_code refused = thrown_by(loop, dial(loop, closed, 5000ms));
  CHECK(refused.value() == UV_ECONNREFUSED);
  CHECK(refused == callback_error(loop, [&](auto cb) { duet::connect(loop, closed, 5s, cb); }));

  duet::test::FullBacklog hangs;
  CHECK_THROWS_AS(duet::run(loop, dial(loop, duet::Endpoint::loopback(hangs.port()), 100ms)), duet::TimedOut);
}

TEST_CASE("an echo server and client written with co_await", "[coro][tcp]") {
  duet::Loop loop;
  duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
  auto serve = [](duet::TcpListener& l) -> Task<std::size_t> {
    duet::TcpStream conn = co_await l.accept();
    char buf[1024];
    std::size_t total = 0;
    for (;;) {
      std::size_t n = co_await conn.read(buf);
      if (n == 0) break;  // the client shut down its side
      total += n;
      co_await conn.write(std::string(buf, n));
    }
    co_await conn.shutdown();
    co_return total;
  };
  auto client = [](duet::Loop& l, duet::Endpoint ep) -> Task<std::string> {
    duet::TcpStream s = co_await duet::connect(l, ep, 5s);
    co_await s.write("ping ");
    co_await s.write("pong");
    co_await s.shutdown();
    std::string echoed;
    char buf[3];
    while (std::size_t n = co_await s.read(buf)) echoed.append(buf, n);
    co_return echoed;
  };
  auto both = [&](duet::Loop& l) -> Task<std::pair<std::size_t, std::string>> {
    auto [served, echoed] = co_await duet::when_all(serve(listener), client(l, listener.local_endpoint()));
    co_return std::pair(served, echoed);
  };
  auto [served, echoed] = duet::run(loop, both(loop));
  CHECK(served == 9);
  CHECK(echoed == "ping pong");
}

TEST_CASE("co_await read on a reset connection throws the callback's UV_ECONNRESET", "[coro][tcp]") {
  duet::Loop loop;
  duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
  auto reset_on_accept = [](duet::TcpListener& l) -> Task<> {
    duet::TcpStream conn = co_await l.accept();
    uv_os_fd_t fd;
    REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(conn.native()), &fd) == 0);
    linger hard{1, 0};  // close with RST
    REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard) == 0);
    conn.close();
  };
  auto read_one = [](duet::Loop& l, duet::Endpoint ep) -> Task<std::size_t> {
    duet::TcpStream s = co_await duet::connect(l, ep, 5s);
    char buf[8];
    co_return co_await s.read(buf);
  };
  auto both = [&](duet::Loop& l) -> Task<> {
    co_await duet::when_all(reset_on_accept(listener), read_one(l, listener.local_endpoint()));
  };
  try {
    duet::run(loop, both(loop));
    FAIL("the read did not fail");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_ECONNRESET);
    CHECK(e.code().category() == duet::uv_category());
  }
}

TEST_CASE("the fs operations through co_await", "[coro][fs]") {
  duet::Loop loop;
  TempDir dir;
  auto work = [](duet::Loop& l, std::string root) -> Task<std::string> {
    co_await duet::fs::create_directories(l, root + "/a/b");
    co_await duet::fs::mkdir(l, root + "/a/b/c");
    co_await duet::write_file_atomic(l, root + "/a/b/c/f.txt", "hello coroutines");
    duet::fs::File f = co_await duet::fs::open(l, root + "/a/b/c/f.txt", UV_FS_O_RDWR, 0);
    std::size_t n = co_await duet::fs::write(l, f, "HELLO", 0);
    CHECK(n == 5);
    co_await duet::fs::fsync(l, f);
    std::string part = co_await duet::fs::read(l, f, 4, 6);
    CHECK(part == "coro");
    co_await duet::fs::close(l, std::move(f));
    duet::fs::Stat st = co_await duet::fs::stat(l, root + "/a/b/c/f.txt");
    CHECK(st.st_size == 16);
    co_await duet::fs::rename(l, root + "/a/b/c/f.txt", root + "/g.txt");
    std::string all = co_await duet::read_file(l, root + "/g.txt");
    co_await duet::fs::unlink(l, root + "/g.txt");
    co_return all;
  };
  CHECK(duet::run(loop, work(loop, dir.path().string())) == "HELLO coroutines");
  CHECK_FALSE(std::filesystem::exists(dir / "g.txt"));
}

TEST_CASE("fs errors through co_await carry the callback's exact error_code", "[coro][fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::string missing = dir / "missing";
  auto read = [](duet::Loop& l, std::string p) -> Task<std::string> { co_return co_await duet::read_file(l, p); };
  const std::error_code thrown = thrown_by(loop, read(loop, missing));
  CHECK(thrown.value() == UV_ENOENT);
  CHECK(thrown == callback_error(loop, [&](auto cb) { duet::read_file(loop, missing, cb); }));

  auto write = [](duet::Loop& l, std::string p) -> Task<> { co_await duet::write_file_atomic(l, p, "x"); };
  CHECK(thrown_by(loop, write(loop, dir / "no/such/dir/f")).value() == UV_ENOENT);
}

TEST_CASE("co_await offload returns the value, or rethrows the function's own exception", "[coro][offload]") {
  duet::Loop loop;
  auto ok = [](duet::Loop& l) -> Task<int> { co_return co_await duet::offload(l, [] { return 6 * 7; }); };
  CHECK(duet::run(loop, ok(loop)) == 42);
  auto bad = [](duet::Loop& l) -> Task<int> {
    co_return co_await duet::offload(l, []() -> int { throw std::out_of_range("from the pool"); });
  };
  CHECK_THROWS_AS(duet::run(loop, bad(loop)), std::out_of_range);
  auto nothing = [](duet::Loop& l, bool& ran) -> Task<> { co_await duet::offload(l, [&ran] { ran = true; }); };
  bool ran = false;
  duet::run(loop, nothing(loop, ran));
  CHECK(ran);
}

TEST_CASE("an operation's outcome reaches the coroutine: its code, an attached exception, or Cancelled over both",
          "[coro]") {
  // The callback of an operation such as offload may carry an exception besides its code.
  duet::Loop loop;
  auto with_result = [](std::error_code ec, std::exception_ptr e) -> Task<int> {
    co_return co_await completes_with<int>(ec, e);
  };
  auto without = [](std::error_code ec, std::exception_ptr e) -> Task<> { co_await completes_with<void>(ec, e); };
  const std::error_code io = duet::uv_error(UV_EIO), cancelled = duet::uv_error(UV_ECANCELED);
  const std::error_code generic = std::make_error_code(std::errc::no_space_on_device);  // another category
  const std::exception_ptr attached = std::make_exception_ptr(std::out_of_range("attached"));

  CHECK(duet::run(loop, with_result({}, nullptr)) == 7);
  CHECK_NOTHROW(duet::run(loop, without({}, nullptr)));
  CHECK(thrown_by(loop, with_result(io, nullptr)) == io);
  CHECK(thrown_by(loop, without(io, nullptr)) == io);
  CHECK(thrown_by(loop, with_result(generic, nullptr)) == generic);
  CHECK(thrown_by(loop, without(generic, nullptr)) == generic);
  CHECK_THROWS_AS(duet::run(loop, with_result(io, attached)), std::out_of_range);
  CHECK_THROWS_AS(duet::run(loop, without(io, attached)), std::out_of_range);
  CHECK_THROWS_AS(duet::run(loop, with_result({}, attached)), std::out_of_range);
  CHECK_THROWS_AS(duet::run(loop, without({}, attached)), std::out_of_range);
  CHECK_THROWS_AS(duet::run(loop, with_result(cancelled, attached)), duet::Cancelled);
  CHECK_THROWS_AS(duet::run(loop, without(cancelled, attached)), duet::Cancelled);
}

TEST_CASE("co_await sem.acquire() gives an RAII permit that callback code shares", "[coro][semaphore]") {
  duet::Loop loop;
  duet::Semaphore sem(1);
  std::vector<std::string> log;
  auto holder = [](duet::Loop& l, duet::Semaphore& s, std::vector<std::string>& log) -> Task<> {
    auto permit = co_await s.acquire();
    log.push_back("coroutine holds");
    co_await duet::sleep(l, 5ms);
    log.push_back("coroutine releases");
  };
  auto handle = duet::spawn(loop, holder(loop, sem, log));
  loop.post([&] {  // callback code, once the coroutine holds the permit
    CHECK(sem.available() == 0);
    sem.acquire([&](std::error_code ec) {
      REQUIRE_FALSE(ec);
      log.push_back("callback holds");
      sem.release();
    });
  });
  loop.run();
  CHECK(log == std::vector<std::string>{"coroutine holds", "coroutine releases", "callback holds"});
  CHECK(sem.available() == 1);
  handle.result();
}

TEST_CASE("a result handed over as an rvalue reaches the coroutine whether it runs inside the callback or later",
          "[coro]") {
  // An operation that keeps its callback; the test calls it with a temporary string, either from a
  // plain callback (the coroutine runs inside the call and takes the value from the argument) or from
  // inside a running coroutine (the coroutine is queued, so the value must be kept in the awaitable).
  struct Pending {
    duet::detail::UniqueFunction<void(std::error_code, std::string&&)> cb;
  };
  duet::Loop loop;
  Pending pending;
  auto op = [&pending] { return duet::awaitable<std::string>([&pending](auto cb) { pending.cb = std::move(cb); }); };
  const std::string big(1000, 'x');  // past the small-string buffer: a move takes the heap block
  auto waiter = [&]() -> Task<std::string> { co_return co_await op(); };

  SECTION("called from plain code: resumed inside the call") {
    auto handle = duet::spawn(loop, waiter());
    loop.run_once();  // the task starts and waits
    REQUIRE(pending.cb);
    pending.cb(std::error_code(), std::string(big));
    loop.run();
    CHECK(handle.result() == big);
  }
  SECTION("called from inside a coroutine: resumed after it suspends") {
    auto completer = [&]() -> Task<> {
      pending.cb(std::error_code(), std::string(big));  // the temporary dies before the waiter runs
      co_await duet::sleep(loop, 1ms);
    };
    auto handle = duet::spawn(loop, waiter());
    loop.run_once();
    REQUIRE(pending.cb);
    duet::run(loop, completer());
    loop.run();
    CHECK(handle.result() == big);
  }
}
