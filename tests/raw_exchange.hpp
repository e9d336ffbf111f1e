// A raw HTTP exchange over a plain TCP connection, for requests no well-behaved client would send.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <system_error>

#include "duet/tcp.hpp"
#include "duet/timer.hpp"

namespace duet::test {

using namespace std::chrono_literals;

/// Sends `bytes` on a raw connection and collects everything the server sends until it closes (or
/// `limit` passes).
inline std::string raw_exchange(duet::Loop& loop, const duet::Endpoint& at, std::string bytes,
                                std::chrono::milliseconds limit = 5s, bool half_close = false) {
  std::string got;
  bool done = false;
  std::optional<duet::TcpStream> s;
  bool written = false;
  std::error_code failed;
  duet::connect(loop, at, 5s, [&](std::error_code ec, duet::TcpStream stream) {
    if (ec) {
      failed = ec;
      done = written = true;
      return;
    }
    s = std::move(stream);
    s->write(std::move(bytes), [&](std::error_code) { written = true; });
    if (half_close) s->shutdown([](std::error_code) {});
    s->read_start([&](std::error_code rec, std::span<const char> chunk) {
      if (rec || chunk.empty()) {
        done = true;
        return;
      }
      got.append(chunk.begin(), chunk.end());
    });
  });
  bool timed_out = false;
  duet::Timer guard(loop);
  guard.start(limit, 0ms, [&] { timed_out = true; });
  while (!done && !timed_out) loop.run_once();
  if (failed) throw std::system_error(failed, "raw_exchange: connect");
  if (s) {
    s->close();
    while (!written) loop.run_once();  // the write calls back (UV_ECANCELED if cut short): nothing left pending
  }
  return got;
}

inline std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace duet::test
