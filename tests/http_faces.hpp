// Runs an HTTP GET through either face, so that each client test can run through both.
#pragma once

#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "duet/http/client.hpp"
#include "duet/spawn.hpp"

namespace duet::test {

enum class Face { callbacks, coroutines };

struct GetResult {
  std::error_code ec;
  http::Response res;  // on error: status 0; `reason` says why (the coroutine face: from what())
};

/// GET `url` through `face` and run the loop until it is answered.
inline GetResult get(Face face, Loop& loop, http::Client& client, const std::string& url) {
  if (face == Face::callbacks) {
    std::optional<GetResult> out;
    client.get(url, [&](std::error_code ec, http::Response res) { out = GetResult{ec, std::move(res)}; });
    while (!out) loop.run_once();
    return std::move(*out);
  }
  auto t = [&]() -> Task<GetResult> {
    try {
      // The awaited value goes into a named local first: with g++ 12.2 a co_await inside a braced
      // aggregate initializer left the string's inline buffer pointer aimed at the freed frame.
      http::Response res = co_await client.get(url);
      co_return GetResult{std::error_code(), std::move(res)};
    } catch (const std::system_error& e) {
      http::Response failed;
      failed.reason = e.what();
      co_return GetResult{e.code(), std::move(failed)};
    }
  };
  return run(loop, t());
}

/// Sends `req` through `face` (its body streamed to `sink`, if given) and runs the loop until it is answered.
inline GetResult send(Face face, Loop& loop, http::Client& client, http::Request req, http::BodySink sink = nullptr) {
  if (face == Face::callbacks) {
    std::optional<GetResult> out;
    auto done = [&](std::error_code ec, http::Response res) { out = GetResult{ec, std::move(res)}; };
    if (sink)
      client.request(std::move(req), std::move(sink), done);
    else
      client.request(std::move(req), done);
    while (!out) loop.run_once();
    return std::move(*out);
  }
  auto t = [&]() -> Task<GetResult> {
    try {
      // One co_await per statement: g++ 12 miscompiles a co_await in a conditional expression.
      http::Response res;
      if (sink)
        res = co_await client.request(std::move(req), std::move(sink));
      else
        res = co_await client.request(std::move(req));
      co_return GetResult{std::error_code(), std::move(res)};
    } catch (const std::system_error& e) {
      http::Response failed;
      failed.reason = e.what();
      co_return GetResult{e.code(), std::move(failed)};
    }
  };
  return run(loop, t());
}

/// The same, with a sink that takes the piece only.
template <class Sink>
requires std::invocable<Sink&, std::string_view>
GetResult send(Face face, Loop& loop, http::Client& client, http::Request req, Sink sink) {
  return send(face, loop, client, std::move(req), http::detail::body_sink(std::move(sink)));
}

}  // namespace duet::test
