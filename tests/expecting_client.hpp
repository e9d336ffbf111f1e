// A client that sends a head with `Expect: 100-continue` and its body only once the 100 has come, as
// a well-behaved client does: for the server's 100-continue tests.
#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "duet/tcp.hpp"
#include "duet/timer.hpp"

namespace duet::test {

using namespace std::chrono_literals;

/// A client that sends a head with `Expect: 100-continue` and, as such a client does, sends the body
/// only once a `100 Continue` has come; it reads until the server closes, or 10 s pass.
struct ExpectingClient {
  std::string got;  // everything the server sent
  bool body_sent = false;
  bool timed_out = false;
  std::function<void()> on_continue{};  // when the 100 comes, before the body goes
  std::size_t continues = 1;            // the body goes after this many 100s (requests before it asked too)
  bool half_close = false;              // shut the sending side after the head

  void exchange(duet::Loop& loop, std::uint16_t port, std::string head, std::string body) {
    bool done = false;
    int writing = 0;
    std::optional<duet::TcpStream> s;
    duet::connect(loop, duet::Endpoint::loopback(port), [&](std::error_code ec, duet::TcpStream stream) {
      REQUIRE_FALSE(ec);
      s = std::move(stream);
      ++writing;
      s->write(std::move(head), [&](std::error_code) { --writing; });
      if (half_close) s->shutdown([](std::error_code) {});
      s->read_start([&](std::error_code rec, std::span<const char> chunk) {
        if (rec || chunk.empty()) {
          done = true;
          return;
        }
        got.append(chunk.begin(), chunk.end());
        if (!body_sent && count_continues() >= continues) {
          if (on_continue) on_continue();
          body_sent = true;
          ++writing;
          s->write(std::move(body), [&](std::error_code) { --writing; });
        }
      });
    });
    duet::Timer guard(loop);
    guard.start(10s, 0ms, [&] { timed_out = true; });
    while (!done && !timed_out) loop.run_once();
    if (s) s->close();
    while (writing > 0) loop.run_once();  // each write calls back (UV_ECANCELED if cut short)
  }
  std::size_t count_continues() const {
    std::size_t n = 0;
    for (auto at = got.find("HTTP/1.1 100 Continue\r\n\r\n"); at != std::string::npos;
         at = got.find("HTTP/1.1 100", at + 1))
      ++n;
    return n;
  }
};

std::string expecting_head(const std::string& path, std::size_t length) {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " + std::to_string(length) +
         "\r\nConnection: close\r\n\r\n";
}

}  // namespace duet::test
