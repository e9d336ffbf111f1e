// The stream layer (stream.hpp) as every stream type shares it, shown on TCP, and what TCP adds:
// keep-alive, close with reset, adopting a socket.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>

#include "duet/spawn.hpp"
#include "duet/task.hpp"
#include "duet/tcp.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Endpoint;
using duet::TcpListener;
using duet::TcpStream;

namespace {

std::pair<TcpStream, TcpStream> connected_pair(duet::Loop& loop) {
  TcpListener listener(loop, Endpoint::loopback(0));
  std::optional<TcpStream> client, server;
  listener.accept([&](std::error_code ec, TcpStream s) {
    REQUIRE_FALSE(ec);
    server = std::move(s);
  });
  duet::connect(loop, listener.local_endpoint(), 5s, [&](std::error_code ec, TcpStream s) {
    REQUIRE_FALSE(ec);
    client = std::move(s);
  });
  while (!client || !server) loop.run_once();
  return {std::move(*client), std::move(*server)};
}

int fd_of(TcpStream& s) {
  uv_os_fd_t fd = -1;
  REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(s.native()), &fd) == 0);
  return fd;
}

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t len = sizeof value;
  REQUIRE(::getsockopt(fd, level, name, &value, &len) == 0);
  return value;
}

// Written against Stream alone: works for any stream type.
duet::Task<std::string> echo_once(duet::Stream& out, duet::Stream& in, std::string message) {
  co_await out.write(message);
  std::string got;
  char buf[64];
  while (got.size() < message.size()) {
    std::size_t n = co_await in.read(buf);
    if (n == 0) break;
    got.append(buf, n);
  }
  co_return got;
}

}  // namespace

TEST_CASE("code written against Stream& moves bytes over a TcpStream", "[stream]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  CHECK(duet::run(loop, echo_once(client, server, "through the base class")) == "through the base class");
}

TEST_CASE("try_write sends what the kernel takes now and reports would-block as 0", "[stream]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  std::error_code ec;
  CHECK(client.try_write("hello", ec) == 5);
  CHECK_FALSE(ec);
  std::optional<std::size_t> got;
  char buf[16];
  server.read(buf, [&](std::error_code e, std::size_t n) {
    REQUIRE_FALSE(e);
    got = n;
  });
  while (!got) loop.run_once();
  CHECK(std::string(buf, *got) == "hello");

  // Nobody reads: the kernel's buffers fill, and then try_write takes nothing, without an error.
  const std::string block(256 * 1024, 'x');
  std::size_t total = 0, n = 0;
  do {
    n = client.try_write(block, ec);
    total += n;
  } while (n > 0 && !ec && total < 256 * 1024 * 1024);
  CHECK_FALSE(ec);
  CHECK(n == 0);
  CHECK(total > 0);
  CHECK(client.write_queue_size() == 0);  // try_write never queues

  TcpStream closed;
  CHECK(closed.try_write("x", ec) == 0);
  CHECK(ec == duet::errc::not_connected);
}

TEST_CASE("write_queue_size counts what waits for a peer that does not read, and drains to 0", "[stream]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  int written = 0;
  const std::size_t chunk = 1024 * 1024;
  for (int i = 0; i < 16; ++i)
    client.write(std::string(chunk, 'y'), [&](std::error_code ec) {
      REQUIRE_FALSE(ec);
      ++written;
    });
  loop.run_once();
  CHECK(client.write_queue_size() > 0);  // 16 MiB does not fit in loopback's buffers
  std::size_t received = 0;
  server.read_start([&](std::error_code ec, std::span<const char> data) {
    REQUIRE_FALSE(ec);
    received += data.size();
    if (received == 16 * chunk) server.read_stop();
  });
  while (written < 16 || received < 16 * chunk) loop.run_once();
  CHECK(client.write_queue_size() == 0);
}

TEST_CASE("a write still queued on a closed stream is reported by a Loop destroyed before it completes", "[stream]") {
  // Closing completes the write with UV_ECANCELED on the next turn; a Loop destroyed first never calls
  // that callback, and says so. (The HTTP layer's own writes are not reported: test_tls.cpp.)
  duet::test::ErrorLog log;
  bool called = false;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    auto [client, server] = connected_pair(loop);
    client.write(std::string(32 * 1024 * 1024, 'z'), [&](std::error_code) { called = true; });
    REQUIRE(client.write_queue_size() > 0);  // nobody reads: the write stays queued
    client.close();
  }
  CHECK_FALSE(called);
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].find("1 operation(s) pending") != std::string::npos);
}

TEST_CASE("TCP keep-alive is set on the socket, with its idle time, and turned off", "[stream][tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  client.set_keepalive(true, 42s);
  CHECK(int_option(fd_of(client), SOL_SOCKET, SO_KEEPALIVE) == 1);
  CHECK(int_option(fd_of(client), IPPROTO_TCP, TCP_KEEPIDLE) == 42);
  client.set_keepalive(false);
  CHECK(int_option(fd_of(client), SOL_SOCKET, SO_KEEPALIVE) == 0);
  CHECK_THROWS_AS(client.set_keepalive(true, 0s), std::system_error);
  TcpStream closed;
  CHECK_THROWS_MATCHES(closed.set_keepalive(true), std::system_error, Catch::Predicate<std::system_error>([](auto& e) {
                         return e.code() == duet::errc::not_connected;
                       }));
}

TEST_CASE("close_reset closes with RST: the peer reads ECONNRESET", "[stream][tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  server.close_reset();
  CHECK_FALSE(server.is_open());
  server.close_reset();  // idempotent
  std::optional<std::error_code> result;
  char buf[8];
  client.read(buf, [&](std::error_code ec, std::size_t) { result = ec; });
  loop.run();
  REQUIRE(result);
  CHECK(result->value() == UV_ECONNRESET);
  client.close();
  loop.run();
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("close_reset after a shutdown closes plainly: the peer sees end of stream", "[stream][tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  std::optional<std::error_code> shut;
  server.shutdown([&](std::error_code ec) { shut = ec; });
  while (!shut) loop.run_once();
  server.close_reset();  // libuv refuses a reset after shutdown
  std::optional<std::size_t> got;
  char buf[8];
  client.read(buf, [&](std::error_code ec, std::size_t n) {
    REQUIRE_FALSE(ec);
    got = n;
  });
  loop.run();
  CHECK(got == 0u);
  client.close();
  loop.run();
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("TcpStream::open adopts a socket connected by someone else", "[stream][tcp]") {
  duet::Loop loop;
  TcpListener listener(loop, Endpoint::loopback(0));
  std::optional<TcpStream> server;
  listener.accept([&](std::error_code ec, TcpStream s) {
    REQUIRE_FALSE(ec);
    server = std::move(s);
  });
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  const sockaddr_in to = duet::test::loopback_address(listener.local_endpoint().port());
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0);  // blocking, before the loop runs
  TcpStream adopted = TcpStream::open(loop, fd);
  CHECK(adopted.remote_endpoint().port() == listener.local_endpoint().port());
  while (!server) loop.run_once();
  CHECK(duet::run(loop, echo_once(adopted, *server, "adopted")) == "adopted");
  adopted.close();  // closes the descriptor it adopted
  server->close();
  listener.close();
  loop.run();
  CHECK(::fcntl(fd, F_GETFD) == -1);

  CHECK_THROWS_AS(TcpStream::open(loop, -1), std::system_error);
  loop.run();
  CHECK(loop.live_resources() == 0);
}
