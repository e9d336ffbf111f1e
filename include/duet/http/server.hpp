// duet/http/server.hpp — a small, correct HTTP/1.1 server on llhttp, with a handler in either face.
//
//     duet::http::Server server(loop, duet::Endpoint::loopback(8000),
//         [](duet::http::ServerRequest req, duet::http::Reply reply) {        // callback face
//           reply(duet::http::Response{200, "OK", {}, "hello"});
//         });
//     duet::http::Server server(loop, at,
//         [&](duet::http::ServerRequest req) -> duet::Task<duet::http::Response> {   // coroutine face
//           co_await duet::sleep(loop, 1s);
//           co_return duet::http::Response{200, "OK", {}, "late hello"};
//         });
//
// Each request is parsed by llhttp and handed to the handler once its body has arrived. The handler
// answers by calling `reply(response)` once, now or later (callback face), or by returning the
// response (coroutine face; an exception becomes a 500). Connections are kept alive (HTTP/1.1 unless
// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`); pipelined requests are answered
// in the order they came, whatever order their handlers finish in. `Content-Length` is set from the
// body; a response to HEAD carries the length but no body.
//
// Protection: a header block larger than `max_header_bytes` gets 431, a body larger than
// `max_body_bytes` gets 413, a malformed request gets 400 (each then closes the connection); a client
// that has not completed a request's headers within `header_timeout` (counted from the connection,
// or from the first byte of each later request) is disconnected, and so is a keep-alive connection
// idle for `idle_timeout` between requests, and a client that takes longer than `idle_timeout` to read
// a response (counted again as each response is written); beyond `max_connections` open connections,
// new ones are closed at once. A client that half-closes after its requests still gets every response.
//
// Lifetime: `close()` or destroying the Server stops listening and closes every connection at once;
// replies that arrive afterwards are dropped. Loop-thread only.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "duet/detail/unique_function.hpp"
#include "duet/endpoint.hpp"
#include "duet/http/message.hpp"
#include "duet/loop.hpp"
#include "duet/task.hpp"

namespace duet::http {

struct ServerRequest {
  std::string method;  ///< "GET", "HEAD", ...
  std::string target;  ///< as sent: "/flags/br/br.gif?x=1"
  std::string path;    ///< the target before '?', still percent-encoded
  std::string query;   ///< the target after '?'
  Headers headers;
  std::string body;
  int version_minor = 1;  ///< HTTP/1.x
  Endpoint peer;          ///< the client's address
};

struct ServerOptions {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::size_t max_connections = 10'000;
  /// Connections the kernel may queue before they are accepted (it caps this at net.core.somaxconn).
  /// A client that opens thousands at once needs more than the default, or its extra connects are
  /// dropped and retried a second or more later.
  int listen_backlog = 511;
};

/// Sends the response to one request; call it exactly once (later calls are ignored).
using Reply = duet::detail::UniqueFunction<void(Response)>;

namespace detail {
class ServerCore;
using Handler = duet::detail::UniqueFunction<void(ServerRequest, Reply)>;
}  // namespace detail

class Server {
 public:
  /// Listens on `at` (port 0: any free port, see `local_endpoint()`) and serves each request with
  /// `handler`, either `void(ServerRequest, Reply)` or `Task<Response>(ServerRequest)`. Throws
  /// `std::system_error` if it cannot listen.
  template <class Handler>
  Server(Loop& loop, const Endpoint& at, Handler handler, ServerOptions options = {})
      : Server(loop, at, adapt(loop, std::move(handler)), std::move(options)) {}
  Server(Loop& loop, const Endpoint& at, detail::Handler handler, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Endpoint local_endpoint() const;
  /// Connections open now.
  std::size_t connections() const noexcept;
  /// Stops accepting and closes every connection now. Idempotent.
  void close() noexcept;

 private:
  template <class Handler>
  static detail::Handler adapt(Loop& loop, Handler handler) {
    if constexpr (std::is_invocable_v<Handler&, ServerRequest, Reply>) {
      return handler;
    } else {
      static_assert(std::is_invocable_r_v<Task<Response>, Handler&, ServerRequest>,
                    "a Server handler is void(ServerRequest, Reply) or Task<Response>(ServerRequest)");
      return [&loop, handler = std::move(handler)](ServerRequest req, Reply reply) mutable {
        serve_task(loop, handler(std::move(req)), std::move(reply));
      };
    }
  }
  static void serve_task(Loop& loop, Task<Response> task, Reply reply);
  std::shared_ptr<detail::ServerCore> core_;
};

}  // namespace duet::http
