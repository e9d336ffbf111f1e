#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "duet/cancellation.hpp"
#include "duet/tcp.hpp"
#include "duet/timer.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Endpoint;
using duet::TcpListener;
using duet::TcpStream;

namespace {

/// A connected pair (client, server side) on loopback.
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
  listener.close();
  return {std::move(*client), std::move(*server)};
}

}  // namespace

TEST_CASE("connect, write and read: an echo round trip over loopback", "[tcp]") {
  duet::Loop loop;
  TcpListener listener(loop, Endpoint::loopback(0));
  CHECK(listener.local_endpoint().port() != 0);

  std::optional<TcpStream> server_side;
  listener.accept([&](std::error_code ec, TcpStream s) {
    REQUIRE_FALSE(ec);
    server_side = std::move(s);
    server_side->read_start([&](std::error_code rec, std::span<const char> chunk) {
      REQUIRE_FALSE(rec);
      if (chunk.empty()) return server_side->close();  // client finished
      server_side->write(std::string(chunk.begin(), chunk.end()), [](std::error_code wec) { CHECK_FALSE(wec); });
    });
  });

  std::string echoed;
  char buffer[64];
  std::optional<TcpStream> client;
  duet::connect(loop, listener.local_endpoint(), [&](std::error_code ec, TcpStream s) {
    REQUIRE_FALSE(ec);
    client = std::move(s);
    CHECK(client->remote_endpoint() == listener.local_endpoint());
    client->write(std::string("hello, duet"), [&](std::error_code wec) { REQUIRE_FALSE(wec); });
    client->read(buffer, [&](std::error_code rec, std::size_t n) {
      REQUIRE_FALSE(rec);
      echoed.assign(buffer, n);
      client->close();
      listener.close();
    });
  });
  loop.run();
  CHECK(echoed == "hello, duet");
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("connecting to a closed port fails with UV_ECONNREFUSED", "[tcp]") {
  duet::Loop loop;
  const duet::test::RefusingPort refusing;
  const std::uint16_t port = refusing.port();
  std::optional<std::error_code> result;
  bool stream_open = true;
  duet::connect(loop, Endpoint::loopback(port), 5s, [&](std::error_code ec, TcpStream s) {
    result = ec;
    stream_open = s.is_open();
  });
  loop.run();
  REQUIRE(result);
  CHECK(result->value() == UV_ECONNREFUSED);
  CHECK(*result == std::errc::connection_refused);
  CHECK_FALSE(stream_open);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a connect that hangs fails with UV_ETIMEDOUT after its timeout", "[tcp]") {
  // Timed from before the connect, which the timeout counts from.
  const auto start = std::chrono::steady_clock::now();
  duet::Loop loop;
  duet::test::FullBacklog full;
  std::optional<std::error_code> result;
  duet::connect(loop, Endpoint::loopback(full.port()), 200ms, [&](std::error_code ec, TcpStream) { result = ec; });
  loop.run();
  const auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(result);
  CHECK(result->value() == UV_ETIMEDOUT);
  CHECK(took >= 199ms);
  CHECK(took < 5s);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a connect timeout counts from the connect, after blocking work outside the loop", "[tcp]") {
  duet::Loop loop;
  loop.run();  // nothing to do: libuv reads its clock, and keeps that time until the next run
  TcpListener listener(loop, Endpoint::loopback(0));
  duet::test::FullBacklog full;
  std::this_thread::sleep_for(400ms);  // longer than the timeouts: counted from the old time, both are past
  const auto start = std::chrono::steady_clock::now();
  std::optional<std::error_code> answered, hung;
  std::chrono::steady_clock::duration hung_after{};
  duet::connect(loop, listener.local_endpoint(), 300ms, [&](std::error_code ec, TcpStream) {
    answered = ec;
    listener.close();
  });
  duet::connect(loop, Endpoint::loopback(full.port()), 300ms, [&](std::error_code ec, TcpStream) {
    hung = ec;
    hung_after = std::chrono::steady_clock::now() - start;
  });
  loop.run();
  REQUIRE(answered);
  CHECK_FALSE(*answered);  // a listener answers at once: its timeout did not fire first
  REQUIRE(hung);
  CHECK(hung->value() == UV_ETIMEDOUT);
  CHECK(hung_after >= 299ms);
}

TEST_CASE("a cancelled connect calls back with UV_ECANCELED", "[tcp][cancel]") {
  duet::Loop loop;
  duet::test::FullBacklog full;
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::connect(loop, Endpoint::loopback(full.port()), 10s,
                duet::with_cancellation(stop.get_token(), [&](std::error_code ec, TcpStream) { result = ec; }));
  duet::sleep(loop, 5ms, [&](std::error_code) { stop.request_stop(); });
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a read after the peer shuts down reports end of stream as 0 bytes", "[tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  server.write(std::string("last words"), [](std::error_code ec) { CHECK_FALSE(ec); });
  server.shutdown([](std::error_code ec) { CHECK_FALSE(ec); });
  std::string got;
  std::optional<std::size_t> eof_read;
  char buf[4];  // small: several reads
  std::function<void()> next = [&] {
    client.read(buf, [&](std::error_code ec, std::size_t n) {
      REQUIRE_FALSE(ec);
      if (n == 0) {
        eof_read = n;
        return;
      }
      got.append(buf, n);
      next();
    });
  };
  next();
  loop.run();
  CHECK(got == "last words");
  REQUIRE(eof_read);
}

TEST_CASE("read_stop applies backpressure until read_start resumes", "[tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  const std::string big(16 * 1024 * 1024, 'x');  // far more than the socket buffers hold
  bool write_done = false;
  server.write(big, [&](std::error_code ec) {
    CHECK_FALSE(ec);
    write_done = true;
    server.close();
  });

  std::size_t received = 0;
  bool eof = false;
  auto on_chunk = [&](std::error_code ec, std::span<const char> chunk) {
    REQUIRE_FALSE(ec);
    if (chunk.empty()) {
      eof = true;
      return;
    }
    received += chunk.size();
    client.read_stop();  // one chunk, then pause
  };
  client.read_start(on_chunk);
  while (received == 0) loop.run_once();

  // Paused: give the writer ample time; it must stay blocked with nothing more delivered.
  const std::size_t paused_at = received;
  bool waited = false;
  duet::sleep(loop, 100ms, [&](std::error_code) { waited = true; });
  while (!waited) loop.run_once();
  CHECK_FALSE(write_done);
  CHECK(received == paused_at);

  client.read_start([&](std::error_code ec, std::span<const char> chunk) {
    REQUIRE_FALSE(ec);
    if (chunk.empty()) eof = true;
    received += chunk.size();
  });
  loop.run();
  CHECK(write_done);
  CHECK(eof);
  CHECK(received == big.size());
}

TEST_CASE("a cancelled read calls back with UV_ECANCELED and leaves the buffer alone", "[tcp][cancel]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  std::stop_source stop;
  std::optional<std::error_code> result;
  std::string buffer(16, '.');
  client.read(std::span<char>(buffer),
              duet::with_cancellation(stop.get_token(), [&](std::error_code ec, std::size_t n) {
                result = ec;
                CHECK(n == 0);
              }));
  duet::sleep(loop, 5ms, [&](std::error_code) {
    stop.request_stop();
    server.write(std::string("arrives after the cancel"), [](std::error_code) {});
  });
  bool settled = false;
  duet::sleep(loop, 50ms, [&](std::error_code) { settled = true; });
  while (!settled) loop.run_once();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(buffer == std::string(16, '.'));
  // The stream is still usable: the data is read by the next read.
  client.read(std::span<char>(buffer), [&](std::error_code ec, std::size_t n) {
    REQUIRE_FALSE(ec);
    CHECK(std::string(buffer.data(), n) == std::string("arrives after the cancel").substr(0, n));
    client.close();
    server.close();
  });
  loop.run();
}

TEST_CASE("closing a stream completes its pending read with UV_ECANCELED", "[tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  std::optional<std::error_code> result;
  char buf[8];
  client.read(buf, [&](std::error_code ec, std::size_t) { result = ec; });
  client.close();
  CHECK_FALSE(client.is_open());
  CHECK_FALSE(result);  // not inside close()
  server.close();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
}

TEST_CASE("a second reader on the same stream is refused", "[tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  char a[8], b[8];
  std::optional<std::error_code> second;
  client.read(a, [&](std::error_code, std::size_t) {});
  client.read(b, [&](std::error_code ec, std::size_t) {
    second = ec;
    client.close();
    server.close();
  });
  loop.run();
  REQUIRE(second);
  CHECK(*second == duet::errc::already_reading);
}

TEST_CASE("a connection reset by the peer is reported as UV_ECONNRESET", "[tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  uv_os_fd_t fd;
  REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(server.native()), &fd) == 0);
  linger hard{1, 0};  // close with RST instead of FIN
  REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard) == 0);
  server.close();
  std::optional<std::error_code> result;
  char buf[8];
  client.read(buf, [&](std::error_code ec, std::size_t) { result = ec; });
  loop.run();
  REQUIRE(result);
  CHECK(result->value() == UV_ECONNRESET);
}

TEST_CASE("writing to a closed connection fails with an error instead of killing the process", "[tcp]") {
  signal(SIGPIPE, SIG_DFL);  // as a fresh process has it: constructing the Loop must take care of it
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  server.close();
  std::optional<std::error_code> result;
  int writes = 0;
  std::function<void()> write_more = [&] {
    client.write(std::string(64 * 1024, 'x'), [&](std::error_code ec) {
      if (ec || ++writes == 1000) {
        result = ec;
        return;
      }
      write_more();
    });
  };
  write_more();
  loop.run();
  REQUIRE(result);
  CHECK((result->value() == UV_EPIPE || result->value() == UV_ECONNRESET));
}

TEST_CASE("a SIGPIPE handler the host installed is kept", "[tcp]") {
  struct sigaction mine {
  }, before{}, after{};
  mine.sa_handler = [](int) {};
  sigemptyset(&mine.sa_mask);
  sigaction(SIGPIPE, &mine, &before);
  { duet::Loop loop; }
  sigaction(SIGPIPE, &before, &after);
  CHECK(after.sa_handler == mine.sa_handler);
}

TEST_CASE("writes own their bytes: the caller's string may die at once", "[tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  int written = 0;
  for (int i = 0; i < 100; ++i) {
    std::string temporary = "chunk-" + std::to_string(i) + ";";
    client.write(std::move(temporary), [&](std::error_code ec) { written += ec ? 0 : 1; });
  }  // every string is gone before the loop runs
  client.shutdown([](std::error_code ec) { CHECK_FALSE(ec); });
  std::string expected;
  for (int i = 0; i < 100; ++i) expected += "chunk-" + std::to_string(i) + ";";
  std::string got;
  server.read_start([&](std::error_code ec, std::span<const char> chunk) {
    REQUIRE_FALSE(ec);
    got.append(chunk.begin(), chunk.end());
    if (chunk.empty()) {
      client.close();
      server.close();
    }
  });
  loop.run();
  CHECK(written == 100);
  CHECK(got == expected);
}

TEST_CASE("closing a stream completes its pending writes with UV_ECANCELED", "[tcp]") {
  duet::Loop loop;
  auto [client, server] = connected_pair(loop);
  std::optional<std::error_code> result;
  client.write(std::string(32 * 1024 * 1024, 'y'), [&](std::error_code ec) { result = ec; });  // cannot finish at once
  client.close();
  server.close();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
}

TEST_CASE("accept can be cancelled, and closing a listener cancels its accept", "[tcp][cancel]") {
  duet::Loop loop;
  TcpListener listener(loop, Endpoint::loopback(0));
  std::stop_source stop;
  std::optional<std::error_code> first, second;
  listener.accept(duet::with_cancellation(stop.get_token(), [&](std::error_code ec, TcpStream s) {
    first = ec;
    CHECK_FALSE(s.is_open());
    listener.accept([&](std::error_code ec2, TcpStream) { second = ec2; });
    listener.close();
  }));
  stop.request_stop();
  loop.run();
  REQUIRE(first);
  CHECK(duet::is_cancelled(*first));
  REQUIRE(second);
  CHECK(duet::is_cancelled(*second));
}

TEST_CASE("a connection that arrives before accept() is held for it", "[tcp]") {
  duet::Loop loop;
  TcpListener listener(loop, Endpoint::loopback(0));
  std::optional<TcpStream> client;
  duet::connect(loop, listener.local_endpoint(), [&](std::error_code ec, TcpStream s) {
    REQUIRE_FALSE(ec);
    client = std::move(s);
  });
  while (!client) loop.run_once();
  bool accepted = false;
  std::optional<std::error_code> stopped;
  std::stop_source stop;
  stop.request_stop();
  duet::sleep(loop, 10ms, [&](std::error_code) {  // accept only later
    // A stopped token: cancelled, and the held connection stays for the next accept.
    listener.accept(duet::with_cancellation(stop.get_token(), [&](std::error_code ec, TcpStream) {
      stopped = ec;
      if (!ec) listener.close(), client->close();  // it took the connection: end the test
    }));
    listener.accept([&](std::error_code ec, TcpStream s) {
      REQUIRE_FALSE(ec);
      accepted = true;
      CHECK(s.remote_endpoint() == client->local_endpoint());
      client->close();
      listener.close();
    });
  });
  loop.run();
  CHECK(accepted);
  REQUIRE(stopped);
  CHECK(duet::is_cancelled(*stopped));
}

TEST_CASE("listening on a port in use throws UV_EADDRINUSE", "[tcp]") {
  duet::Loop loop;
  TcpListener first(loop, Endpoint::loopback(0));
  try {
    TcpListener second(loop, first.local_endpoint());
    FAIL("a second listener bound the same port");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_EADDRINUSE);
    CHECK(std::string(e.what()).find(first.local_endpoint().to_string()) != std::string::npos);
  }
}

TEST_CASE("operations on a closed stream throw not_connected", "[tcp]") {
  TcpStream never_connected;
  CHECK_FALSE(never_connected.is_open());
  char buf[4];
  try {
    never_connected.read(buf, [](std::error_code, std::size_t) {});
    FAIL("read on a closed stream did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == duet::errc::not_connected);
  }
  CHECK_THROWS_AS(never_connected.write(std::string("x"), [](std::error_code) {}), std::system_error);
  CHECK_THROWS_AS(never_connected.remote_endpoint(), std::system_error);
  never_connected.close();  // idempotent
}
