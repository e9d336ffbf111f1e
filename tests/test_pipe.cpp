// Unix-domain sockets and pipes: PipeListener, connect, PipeStream::open, names and permissions.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "duet/pipe.hpp"
#include "duet/spawn.hpp"
#include "duet/when_all.hpp"
#include "support.hpp"

using duet::PipeListener;
using duet::PipeStream;
using duet::Task;
using duet::test::TempDir;

namespace {

bool not_connected(const std::system_error& e) { return e.code() == duet::errc::not_connected; }

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode;
}

}  // namespace

TEST_CASE("a PipeListener and connect: an echo round trip over a Unix-domain socket", "[pipe]") {
  duet::Loop loop;
  TempDir dir;
  const std::string path = dir / "echo.sock";
  PipeListener listener(loop, path);

  std::optional<PipeStream> server_side;
  std::string server_name;
  listener.accept([&](std::error_code ec, PipeStream s) {
    REQUIRE_FALSE(ec);
    server_side = std::move(s);
    server_name = server_side->local_name();
    server_side->read_start([&](std::error_code rec, std::span<const char> chunk) {
      REQUIRE_FALSE(rec);
      if (chunk.empty()) return server_side->close();
      server_side->write(std::string(chunk.begin(), chunk.end()), [](std::error_code wec) { CHECK_FALSE(wec); });
    });
  });

  std::string echoed, peer, local = "unset";
  char buffer[64];
  std::optional<PipeStream> client;
  duet::connect(loop, path, [&](std::error_code ec, PipeStream s) {
    REQUIRE_FALSE(ec);
    client = std::move(s);
    peer = client->peer_name();
    local = client->local_name();
    client->write(std::string("hello, pipe"), [](std::error_code wec) { REQUIRE_FALSE(wec); });
    client->read(buffer, [&](std::error_code rec, std::size_t n) {
      REQUIRE_FALSE(rec);
      echoed.assign(buffer, n);
      client->close();
      listener.close();
    });
  });
  loop.run();
  CHECK(echoed == "hello, pipe");
  CHECK(peer == path);
  CHECK(local.empty());  // a connecting client is not bound to a name
  CHECK(server_name == path);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("the coroutine face: co_await accept, connect, write and read on a pipe", "[pipe][coro]") {
  duet::Loop loop;
  TempDir dir;
  const std::string path = dir / "coro.sock";
  PipeListener listener(loop, path);
  auto serve = [](PipeListener& l) -> Task<std::string> {
    PipeStream s = co_await l.accept();
    char buf[64];
    const std::size_t n = co_await s.read(buf);
    co_await s.write(std::string(buf, n) + "!");
    co_await s.shutdown();
    co_return std::string(buf, n);
  };
  auto ask = [](duet::Loop& l, std::string p) -> Task<std::string> {
    PipeStream s = co_await duet::connect(l, p);
    co_await s.write("question");
    std::string answer;
    char buf[64];
    while (const std::size_t n = co_await s.read(buf)) answer.append(buf, n);
    co_return answer;
  };
  auto both = [](Task<std::string> a, Task<std::string> b) -> Task<std::pair<std::string, std::string>> {
    auto [heard, answer] = co_await duet::when_all(std::move(a), std::move(b));
    co_return std::pair(heard, answer);
  };
  auto [heard, answer] = duet::run(loop, both(serve(listener), ask(loop, path)));
  CHECK(heard == "question");
  CHECK(answer == "question!");
}

TEST_CASE("connecting to a path where nothing is fails with UV_ENOENT, both faces", "[pipe]") {
  duet::Loop loop;
  TempDir dir;
  const std::string missing = dir / "nobody-here.sock";
  std::optional<std::error_code> result;
  bool stream_open = true;
  duet::connect(loop, missing, [&](std::error_code ec, PipeStream s) {
    result = ec;
    stream_open = s.is_open();
  });
  CHECK_FALSE(result);  // never inside the call
  loop.run();
  REQUIRE(result);
  CHECK(result->value() == UV_ENOENT);
  CHECK(*result == std::errc::no_such_file_or_directory);
  CHECK_FALSE(stream_open);

  auto dial = [](duet::Loop& l, std::string p) -> Task<> { PipeStream s = co_await duet::connect(l, p); };
  try {
    duet::run(loop, dial(loop, missing));
    FAIL("connect to a missing path succeeded");
  } catch (const std::system_error& e) {
    CHECK(e.code() == *result);
  }
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a socket file nobody listens on refuses connections with UV_ECONNREFUSED", "[pipe]") {
  duet::Loop loop;
  TempDir dir;
  const std::string path = dir / "stale.sock";
  // A bound socket that never listens: the file is there, but nobody accepts.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  std::optional<std::error_code> result;
  duet::connect(loop, path, [&](std::error_code ec, PipeStream) { result = ec; });
  loop.run();
  ::close(fd);
  REQUIRE(result);
  CHECK(result->value() == UV_ECONNREFUSED);
  // And a listener cannot take over the stale file.
  try {
    PipeListener second(loop, path);
    FAIL("a listener bound over an existing socket file");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_EADDRINUSE);
    CHECK(std::string(e.what()).find(path) != std::string::npos);
  }
}

TEST_CASE("a listener whose backlog is full refuses a connect at once with UV_EAGAIN", "[pipe]") {
  duet::Loop loop;
  TempDir dir;
  PipeListener listener(loop, dir / "full.sock", 1);  // never accepts: the backlog fills
  std::vector<std::error_code> results;
  std::vector<PipeStream> connected;
  constexpr int kConnects = 8;
  for (int i = 0; i < kConnects; ++i)
    duet::connect(loop, dir / "full.sock", [&](std::error_code ec, PipeStream s) {
      results.push_back(ec);
      if (!ec) connected.push_back(std::move(s));
      if (results.size() == kConnects) listener.close();
    });
  loop.run();
  REQUIRE(results.size() == kConnects);
  const auto refused =
      std::count_if(results.begin(), results.end(), [](std::error_code ec) { return ec.value() == UV_EAGAIN; });
  CHECK(connected.size() >= 1);  // the backlog takes the first ones
  CHECK(refused >= 1);
  CHECK(static_cast<std::size_t>(refused) + connected.size() == kConnects);  // nothing else, nothing waits
}

TEST_CASE("a path longer than a socket address holds is refused, not cut short", "[pipe]") {
  duet::Loop loop;
  const std::string too_long = "/tmp/" + std::string(duet::detail::kMaxPipePath, 'x');
  std::optional<std::error_code> result;
  duet::connect(loop, too_long, [&](std::error_code ec, PipeStream) { result = ec; });
  loop.run();
  REQUIRE(result);
  CHECK(result->value() == UV_ENAMETOOLONG);
  try {
    PipeListener listener(loop, too_long);
    FAIL("a listener took a path longer than a socket address");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_ENAMETOOLONG);
  }
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a cancelled pipe connect calls back with UV_ECANCELED", "[pipe][cancel]") {
  duet::Loop loop;
  TempDir dir;
  const std::string path = dir / "c.sock";
  PipeListener listener(loop, path);
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::connect(loop, path, duet::with_cancellation(stop.get_token(), [&](std::error_code ec, PipeStream s) {
                  result = ec;
                  CHECK_FALSE(s.is_open());
                  listener.close();
                }));
  stop.request_stop();  // before the loop has run: libuv has not called back yet
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("PipeStream::open adopts a socketpair end, and closes it with the stream", "[pipe]") {
  duet::Loop loop;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  PipeStream a = PipeStream::open(loop, sv[0]);
  PipeStream b = PipeStream::open(loop, sv[1]);
  CHECK(a.local_name().empty());
  CHECK(a.peer_name().empty());
  std::string got;
  char buf[16];
  a.write(std::string("ping"), [](std::error_code ec) { CHECK_FALSE(ec); });
  b.read(buf, [&](std::error_code ec, std::size_t n) {
    REQUIRE_FALSE(ec);
    got.assign(buf, n);
    a.close();
    b.close();
  });
  loop.run();
  CHECK(got == "ping");
  CHECK(::fcntl(sv[0], F_GETFD) == -1);  // the streams closed the descriptors they owned
  CHECK(::fcntl(sv[1], F_GETFD) == -1);
  CHECK_THROWS_AS(PipeStream::open(loop, sv[0]), std::system_error);  // a closed descriptor
}

TEST_CASE("chmod lets every user read and write a listener's socket file", "[pipe]") {
  duet::Loop loop;
  TempDir dir;
  const std::string path = dir / "private.sock";
  const mode_t before = ::umask(077);  // the socket file is made owner-only
  std::optional<PipeListener> listener;
  try {
    listener.emplace(loop, path);
  } catch (...) {
    ::umask(before);
    throw;
  }
  ::umask(before);
  CHECK((mode_of(path) & 0777) == 0700);
  listener->chmod(duet::PipeAccess::readable);
  CHECK((mode_of(path) & 0777) == 0744);
  listener->chmod(duet::PipeAccess::read_write);
  CHECK((mode_of(path) & 0777) == 0766);
}

TEST_CASE("a listener's socket file: named by local_name, there while listening, removed on close", "[pipe]") {
  duet::Loop loop;
  TempDir dir;
  const std::string path = dir / "named.sock";
  PipeListener listener(loop, path);
  CHECK(listener.local_name() == path);
  CHECK(S_ISSOCK(mode_of(path)));
  listener.close();
  loop.run();
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("operations on a closed PipeStream or PipeListener throw not_connected", "[pipe]") {
  PipeStream never;
  PipeListener none;
  char buf[4];
  CHECK_FALSE(never.is_open());
  CHECK(never.native() == nullptr);
  CHECK_THROWS_MATCHES(never.read(buf, [](std::error_code, std::size_t) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(never.write("x", [](std::error_code) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(never.peer_name(), std::system_error, Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(none.accept([](std::error_code, PipeStream) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(none.chmod(duet::PipeAccess::readable), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(none.local_name(), std::system_error, Catch::Predicate<std::system_error>(not_connected));
  never.close();  // idempotent
  none.close();
}
