#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <system_error>

#include "deadline.hpp"
#include "duet/spawn.hpp"
#include "duet/udp.hpp"
#include "duet/with_timeout.hpp"
#include "peer_process.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Endpoint;
using duet::Task;
using duet::UdpReceived;
using duet::UdpSocket;
using duet::test::Deadline;
using duet::test::PeerProcess;

namespace {

/// Bytes that tell their positions apart (a shifted or cut datagram does not compare equal).
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

bool code_is(const std::system_error& e, int uv_code) { return e.code().value() == uv_code; }

}  // namespace

TEST_CASE("a datagram goes to a Python UDP echo and comes back, callback face", "[udp]") {
  PeerProcess echo({"python3", DUET_TEST_PEERS_DIR "/udp_echo.py"}, true);
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  UdpSocket socket(loop, Endpoint::loopback(0));
  const Endpoint peer = Endpoint::loopback(echo.port());
  std::optional<std::error_code> sent;
  std::optional<std::string> got;
  Endpoint from;
  socket.receive_start([&](std::error_code ec, std::span<const char> data, const Endpoint& sender) {
    REQUIRE_FALSE(ec);
    got.emplace(data.begin(), data.end());
    from = sender;
    socket.receive_stop();  // the socket is then idle: run() returns
  });
  socket.send_to(peer, "hello, udp", [&](std::error_code ec) { sent = ec; });
  CHECK_FALSE(sent);  // never inside the call
  loop.run();
  CHECK_FALSE(deadline.expired);
  REQUIRE(sent);
  CHECK_FALSE(*sent);
  REQUIRE(got);
  CHECK(*got == "hello, udp");
  CHECK(from == peer);
  CHECK(log.messages.empty());
}

TEST_CASE("a 65507-byte datagram, the largest IPv4 carries, goes through the echo, coroutine face", "[udp]") {
  PeerProcess echo({"python3", DUET_TEST_PEERS_DIR "/udp_echo.py"}, true);
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  auto exchange = [](duet::Loop& l, Endpoint peer, std::string bytes) -> Task<std::string> {
    UdpSocket s(l, Endpoint::loopback(0));
    s.connect(peer);
    CHECK(s.remote_endpoint() == peer);
    co_await s.send(bytes);
    std::string buffer(70000, '\0');
    UdpReceived got = co_await duet::with_timeout(10s, s.receive(buffer));
    CHECK(got.from == peer);
    CHECK_FALSE(got.truncated);
    co_return buffer.substr(0, got.size);
  };
  const std::string big = pattern(65507);
  CHECK(duet::run(loop, exchange(loop, Endpoint::loopback(echo.port()), big)) == big);
  CHECK(log.messages.empty());
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("receive_start hands over a 65507-byte datagram whole from the loop's shared buffer", "[udp]") {
  PeerProcess echo({"python3", DUET_TEST_PEERS_DIR "/udp_echo.py"}, true);
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  UdpSocket socket(loop, Endpoint::loopback(0));
  const std::string big = pattern(65507);
  std::string got;
  socket.receive_start([&](std::error_code ec, std::span<const char> data, const Endpoint&) {
    REQUIRE_FALSE(ec);
    got.assign(data.begin(), data.end());
    socket.close();
  });
  socket.send_to(Endpoint::loopback(echo.port()), big, [](std::error_code ec) { CHECK_FALSE(ec); });
  loop.run();
  CHECK_FALSE(deadline.expired);
  CHECK(got.size() == big.size());
  CHECK(got == big);
}

TEST_CASE("a datagram over 65507 bytes is refused with UV_EMSGSIZE", "[udp]") {
  duet::Loop loop;
  UdpSocket socket(loop, Endpoint::loopback(0));
  std::optional<std::error_code> result;
  socket.send_to(Endpoint::loopback(9), std::string(65508, 'x'), [&](std::error_code ec) { result = ec; });
  loop.run();
  REQUIRE(result);
  CHECK(result->value() == UV_EMSGSIZE);
}

TEST_CASE("a datagram sent where nobody listens is lost, and the receive ends by its timeout", "[udp]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  const std::uint16_t nobody = duet::test::unbound_port(SOCK_DGRAM);
  auto lost = [](duet::Loop& l, std::uint16_t port) -> Task<> {
    UdpSocket s(l, Endpoint::loopback(0));
    co_await s.send_to(Endpoint::loopback(port), "anyone there?");  // UDP says nothing
    char buffer[64];
    co_await duet::with_timeout(100ms, s.receive(buffer));
  };
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(duet::run(loop, lost(loop, nobody)), duet::TimedOut);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(log.messages.empty());
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a cancelled receive calls back with UV_ECANCELED and leaves the buffer alone", "[udp][cancel]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  const std::uint16_t nobody = duet::test::unbound_port(SOCK_DGRAM);
  UdpSocket socket(loop, Endpoint::loopback(0));
  socket.send_to(Endpoint::loopback(nobody), "anyone there?", [](std::error_code ec) { CHECK_FALSE(ec); });
  std::stop_source stop;
  std::optional<std::error_code> result;
  std::string buffer(16, '.');
  socket.receive(std::span<char>(buffer),
                 duet::with_cancellation(stop.get_token(), [&](std::error_code ec, UdpReceived got) {
                   result = ec;
                   CHECK(got.size == 0);
                 }));
  duet::sleep(loop, 20ms, [&](std::error_code) {
    stop.request_stop();
    CHECK_FALSE(result);  // never inside request_stop()
  });
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(buffer == std::string(16, '.'));
  // Still usable: a datagram to itself is received by the next receive.
  REQUIRE(socket.is_open());
  std::optional<UdpReceived> got;
  socket.receive(std::span<char>(buffer), [&](std::error_code ec, UdpReceived r) {
    REQUIRE_FALSE(ec);
    got = r;
  });
  socket.send_to(socket.local_endpoint(), "to myself", [](std::error_code ec) { CHECK_FALSE(ec); });
  loop.run();
  REQUIRE(got);
  CHECK(buffer.substr(0, got->size) == "to myself");
  CHECK(log.messages.empty());
}

TEST_CASE("a connected socket hears UV_ECONNREFUSED when its peer's port is closed", "[udp]") {
  duet::Loop loop;
  Deadline deadline(loop, 10s);
  const std::uint16_t nobody = duet::test::unbound_port(SOCK_DGRAM);
  UdpSocket socket(loop, Endpoint::loopback(0));
  socket.connect(Endpoint::loopback(nobody));
  std::optional<std::error_code> result;
  char buffer[16];
  socket.receive(buffer, [&](std::error_code ec, UdpReceived) { result = ec; });
  socket.send("anyone there?", [](std::error_code ec) { CHECK_FALSE(ec); });
  loop.run();
  CHECK_FALSE(deadline.expired);
  REQUIRE(result);
  CHECK(result->value() == UV_ECONNREFUSED);
}

TEST_CASE("a datagram larger than the receive buffer is reported truncated", "[udp]") {
  duet::Loop loop;
  UdpSocket a(loop, Endpoint::loopback(0));
  UdpSocket b(loop, Endpoint::loopback(0));
  char small[4];
  std::optional<UdpReceived> got;
  b.receive(small, [&](std::error_code ec, UdpReceived r) {
    REQUIRE_FALSE(ec);
    got = r;
  });
  a.send_to(b.local_endpoint(), "0123456789", [](std::error_code ec) { CHECK_FALSE(ec); });
  loop.run();
  REQUIRE(got);
  CHECK(got->truncated);
  CHECK(got->size == 4);
  CHECK(std::string(small, 4) == "0123");
  CHECK(got->from == a.local_endpoint());
}

TEST_CASE("an empty datagram is received as an empty span with its sender", "[udp]") {
  duet::Loop loop;
  UdpSocket a(loop, Endpoint::loopback(0));
  UdpSocket b(loop, Endpoint::loopback(0));
  int datagrams = 0;
  Endpoint from;
  std::size_t size = 99;
  b.receive_start([&](std::error_code ec, std::span<const char> data, const Endpoint& sender) {
    REQUIRE_FALSE(ec);
    ++datagrams;
    size = data.size();
    from = sender;
    b.receive_stop();
  });
  a.send_to(b.local_endpoint(), "", [](std::error_code ec) { CHECK_FALSE(ec); });
  loop.run();
  CHECK(datagrams == 1);
  CHECK(size == 0);
  CHECK(from == a.local_endpoint());
}

TEST_CASE("send needs connect, and send_to refuses a connected socket", "[udp]") {
  duet::Loop loop;
  UdpSocket a(loop, Endpoint::loopback(0));
  UdpSocket b(loop, Endpoint::loopback(0));
  std::optional<std::error_code> unconnected, connected_send_to, after_disconnect;
  a.send("x", [&](std::error_code ec) { unconnected = ec; });
  a.connect(b.local_endpoint());
  CHECK_THROWS_MATCHES(a.connect(b.local_endpoint()), std::system_error,
                       Catch::Predicate<std::system_error>([](auto& e) { return code_is(e, UV_EISCONN); }));
  a.send_to(b.local_endpoint(), "x", [&](std::error_code ec) { connected_send_to = ec; });
  a.disconnect();
  CHECK_THROWS_MATCHES(a.remote_endpoint(), std::system_error,
                       Catch::Predicate<std::system_error>([](auto& e) { return code_is(e, UV_ENOTCONN); }));
  a.send_to(b.local_endpoint(), "x", [&](std::error_code ec) { after_disconnect = ec; });
  loop.run();
  REQUIRE(unconnected);
  CHECK(unconnected->value() == UV_EDESTADDRREQ);
  REQUIRE(connected_send_to);
  CHECK(connected_send_to->value() == UV_EISCONN);
  REQUIRE(after_disconnect);
  CHECK_FALSE(*after_disconnect);
}

TEST_CASE("a cancelled send detaches its caller while the datagram still goes out", "[udp][cancel]") {
  duet::Loop loop;
  UdpSocket a(loop, Endpoint::loopback(0));
  UdpSocket b(loop, Endpoint::loopback(0));
  std::stop_source stop;
  stop.request_stop();
  std::optional<std::error_code> sent;
  a.send_to(b.local_endpoint(), "sent anyway",
            duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { sent = ec; }));
  CHECK_FALSE(sent);
  std::string got;
  char buffer[32];
  b.receive(buffer, [&](std::error_code ec, UdpReceived r) {
    REQUIRE_FALSE(ec);
    got.assign(buffer, r.size);
  });
  loop.run();
  REQUIRE(sent);
  CHECK(duet::is_cancelled(*sent));
  CHECK(got == "sent anyway");
  CHECK(loop.live_resources() == 2);  // the two sockets, nothing else
}

TEST_CASE("a second receiver is refused with already_reading", "[udp]") {
  duet::Loop loop;
  UdpSocket socket(loop, Endpoint::loopback(0));
  char a[8], b[8];
  std::optional<std::error_code> second, streaming, first;
  socket.receive(a, [&](std::error_code ec, UdpReceived) { first = ec; });
  socket.receive(b, [&](std::error_code ec, UdpReceived) { second = ec; });
  socket.receive_start([&](std::error_code ec, std::span<const char>, const Endpoint&) {
    streaming = ec;
    socket.close();  // ends the first receive with UV_ECANCELED
  });
  loop.run();
  REQUIRE(second);
  CHECK(*second == duet::errc::already_reading);
  REQUIRE(streaming);
  CHECK(*streaming == duet::errc::already_reading);
  REQUIRE(first);
  CHECK(duet::is_cancelled(*first));
}

TEST_CASE("closing a socket cancels its pending receive, never inside close", "[udp]") {
  duet::Loop loop;
  UdpSocket socket(loop, Endpoint::loopback(0));
  std::optional<std::error_code> result;
  char buffer[8];
  socket.receive(buffer, [&](std::error_code ec, UdpReceived) { result = ec; });
  socket.close();
  CHECK_FALSE(socket.is_open());
  CHECK_FALSE(result);
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("binding: reuse_address shares a port, without it the port is in use", "[udp]") {
  duet::Loop loop;
  UdpSocket first(loop, Endpoint::loopback(0), {.reuse_address = true});
  const Endpoint at = first.local_endpoint();
  CHECK(at.port() != 0);
  CHECK_NOTHROW(UdpSocket(loop, at, {.reuse_address = true}));
  try {
    UdpSocket plain(loop, at);
    FAIL("a second socket bound the same port without reuse_address");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_EADDRINUSE);
    CHECK(std::string(e.what()).find(at.to_string()) != std::string::npos);
  }
  loop.run();
  CHECK(loop.live_resources() == 1);  // the failed socket closed itself
}

TEST_CASE("broadcast, ttl and multicast setters succeed on a loopback socket", "[udp]") {
  duet::Loop loop;
  UdpSocket socket(loop, Endpoint::loopback(0));
  CHECK_NOTHROW(socket.set_broadcast(true));
  CHECK_NOTHROW(socket.set_broadcast(false));
  CHECK_NOTHROW(socket.set_ttl(64));
  CHECK_NOTHROW(socket.set_multicast_loop(false));
  CHECK_NOTHROW(socket.set_multicast_loop(true));
  CHECK_NOTHROW(socket.set_multicast_ttl(1));
  CHECK_NOTHROW(socket.set_multicast_interface("127.0.0.1"));
  CHECK_NOTHROW(socket.set_multicast_interface(""));
  auto einval = Catch::Predicate<std::system_error>([](auto& e) { return code_is(e, UV_EINVAL); });
  CHECK_THROWS_MATCHES(socket.set_ttl(0), std::system_error, einval);
  CHECK_THROWS_MATCHES(socket.set_multicast_ttl(256), std::system_error, einval);
  CHECK_THROWS_MATCHES(socket.set_multicast_interface("not an address"), std::system_error, einval);
  // Options need the system's socket, which an unbound UdpSocket does not have yet.
  UdpSocket unbound(loop);
  CHECK_THROWS_MATCHES(unbound.set_ttl(64), std::system_error,
                       Catch::Predicate<std::system_error>([](auto& e) { return code_is(e, UV_EBADF); }));
}

TEST_CASE("multicast: a member of 224.0.0.250 on 127.0.0.1 receives what is sent to the group", "[udp]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  UdpSocket member(loop, Endpoint::parse("0.0.0.0", 0), {.reuse_address = true});
  member.join_group("224.0.0.250", "127.0.0.1");
  UdpSocket sender(loop, Endpoint::loopback(0));
  sender.set_multicast_interface("127.0.0.1");
  sender.set_multicast_loop(true);
  sender.set_multicast_ttl(1);
  const Endpoint group = Endpoint::parse("224.0.0.250", member.local_endpoint().port());
  std::string got;
  Endpoint from;
  char buffer[64];
  member.receive(buffer, [&](std::error_code ec, UdpReceived r) {
    REQUIRE_FALSE(ec);
    got.assign(buffer, r.size);
    from = r.from;
  });
  sender.send_to(group, "to the group", [](std::error_code ec) { CHECK_FALSE(ec); });
  loop.run();
  CHECK_FALSE(deadline.expired);
  CHECK(got == "to the group");
  CHECK(from == sender.local_endpoint());
  CHECK_NOTHROW(member.leave_group("224.0.0.250", "127.0.0.1"));
  CHECK(log.messages.empty());
}

TEST_CASE("join_group and leave_group say clearly what is wrong", "[udp]") {
  duet::Loop loop;
  UdpSocket socket(loop, Endpoint::parse("0.0.0.0", 0));
  auto with = [](int code) {
    return Catch::Predicate<std::system_error>([code](const std::system_error& e) {
      return e.code().value() == code && std::string(e.what()).find("group") != std::string::npos;
    });
  };
  CHECK_THROWS_MATCHES(socket.join_group("127.0.0.1", "127.0.0.1"), std::system_error,
                       with(UV_EINVAL));  // not multicast
  CHECK_THROWS_MATCHES(socket.join_group("no such group"), std::system_error, with(UV_EINVAL));
  CHECK_THROWS_MATCHES(socket.leave_group("224.0.0.251", "127.0.0.1"), std::system_error, with(UV_EADDRNOTAVAIL));
}

TEST_CASE("operations on a closed UdpSocket throw not_connected", "[udp]") {
  UdpSocket never_opened;
  CHECK_FALSE(never_opened.is_open());
  CHECK(never_opened.native() == nullptr);
  auto closed = Catch::Predicate<std::system_error>(
      [](const std::system_error& e) { return e.code() == duet::errc::not_connected; });
  char buffer[4];
  CHECK_THROWS_MATCHES(never_opened.send_to(Endpoint::loopback(9), "x", [](std::error_code) {}), std::system_error,
                       closed);
  CHECK_THROWS_MATCHES(never_opened.send("x", [](std::error_code) {}), std::system_error, closed);
  CHECK_THROWS_MATCHES(never_opened.receive(buffer, [](std::error_code, UdpReceived) {}), std::system_error, closed);
  CHECK_THROWS_MATCHES(never_opened.receive_start([](std::error_code, std::span<const char>, const Endpoint&) {}),
                       std::system_error, closed);
  CHECK_THROWS_MATCHES(never_opened.bind(Endpoint::loopback(0)), std::system_error, closed);
  CHECK_THROWS_MATCHES(never_opened.local_endpoint(), std::system_error, closed);
  CHECK_THROWS_MATCHES(never_opened.set_ttl(1), std::system_error, closed);
  never_opened.receive_stop();
  never_opened.keep_loop_alive(false);
  never_opened.close();  // idempotent
  CHECK(never_opened.send_queue_size() == 0);
}
