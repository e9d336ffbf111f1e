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
// A handler may also stream its response's body: `reply.stream(head, body)` with a `BodySource` that
// hands over the body piece by piece, asked for each piece once the last has been taken by the
// kernel (backpressure from the client's socket); chunked unless `head` declares a Content-Length. A
// coroutine handler taking the Reply, `Task<void>(ServerRequest, Reply)`, can stream too.
//
// Each request is parsed by llhttp and handed to the handler once its body has arrived (or, for the
// requests `ServerOptions::stream_body` picks, as soon as its head has, the body then read piece by
// piece from `ServerRequest::body_stream`). The handler
// answers by calling `reply(response)` once, now or later (callback face), or by returning the
// response (coroutine face). Connections are kept alive (HTTP/1.1 unless `Connection: close`;
// HTTP/1.0 only with `Connection: keep-alive`; `close` wins over `keep-alive`, blanks around an option
// do not count, and a `Proxy-Connection: keep-alive` does not keep one); pipelined requests are
// answered in the order they came, whatever order their handlers finish in. `Content-Length` is set
// from the body; a response to HEAD carries the length but no body; a 204 or 304 carries neither.
//
// Failures of the handler, one path for both faces: a handler that throws (anything, in either face),
// returns a response that cannot be sent (a status outside 200-599, a field name that is not a token,
// a CR, LF or other control byte in a field value or the reason), or drops its Reply without calling
// it, answers 500 "internal error" and the cause goes to the loop's error hook. Exception text never
// reaches the client.
//
// Every peer is hostile: what a connection may hold and for how long (docs/http.md, "Security"):
// - the head: `max_header_bytes` (each line counted with its CRLF) and `max_header_fields`, else 431;
//   within `header_timeout` of its first byte (of the connection, for the first request);
// - the body: `max_body_bytes`, else 413 (at the head, if the declared length is past it); the whole
//   request, body included, within `request_timeout` of its first byte (for a request that asked for
//   a `100 Continue`, from when the 100 is handed to the connection or a body byte arrives: until
//   then the client may be waiting on the server); chunk extensions at most 1 KiB per chunk. A body
//   streamed to the handler (`stream_body`): `max_streamed_body_bytes` (also at the head), and
//   `request_timeout` for each wait for more of it (none while the handler holds a piece, or while
//   the 100 waits); `max_body_bytes` 0 allows no body at all; `max_streamed_body_bytes` 0 is no limit;
// - responses waiting: at most `max_pipelined` requests read ahead of their responses; while that many
//   wait, or while more than 256 KiB are waiting to be written, nothing more is read (and the request
//   being read waits with its deadlines stopped; a body streamed to its handler is read on). Each
//   response being written must be taken whole within `write_timeout` (of its turn), whatever the
//   client sends meanwhile; a streamed response, each of its pieces;
// - between requests, `idle_timeout`; beyond `max_connections` open connections, new ones are closed.
// - closing after the last response while the client may still be sending (unless its last request
//   said it was the last, by `Connection: close` or as HTTP/1.0 without keep-alive, and was read
//   whole and not refused): half-closed, and what comes is read and dropped
//   until the client closes, at most `linger_timeout`; such a connection still counts as open.
// - with TLS (`ServerOptions::tls`, see tls.hpp): the handshake within `tls_handshake_timeout`, and
//   connections still in their handshake count against `max_connections`.
// Refused (then the connection closes): malformed requests, a request line that is not `method SP
// target SP HTTP/d.d` to the letter (400: llhttp takes `RTSP/1.1` and runs of spaces; HTTP/0.9's has
// no version), bare CRs, bad chunk framing or obsolete line folding (a line starting with a space or
// a tab) that llhttp lets through (400; the head's, before it is acted on);
// HTTP/1.1 without exactly one Host, or a Host that is not host[:port] (400), Transfer-Encoding in
// HTTP/1.0 or an empty one (400), a transfer coding besides chunked (501), a trailer Connection,
// Content-Length, Transfer-Encoding or Upgrade (400), an empty or non-token field name (400), control
// or non-ASCII bytes or a fragment in the target (400), `*` but for OPTIONS (400), versions other than
// HTTP/1.x (505), CONNECT (501), an `Expect` other than 100-continue (417). An absolute-form target's
// authority replaces Host; field values lose their trailing blanks. `Expect: 100-continue` gets
// `100 Continue` (none for a request with no body: the answer alone), or the final 413 at once if
// the declared body is too large; for a body streamed to
// the handler, the 100 goes out when the handler first reads the body (or answers with a streamed
// response while still holding it), and never if it answers or drops the body without reading: a
// client that waits for the 100 then sends no body for nothing. An Upgrade the handler does not take
// is ignored and the connection goes on as HTTP/1.1. Trailer fields are not merged into the headers.
//
// Lifetime: `close()` or destroying the Server stops listening and closes every connection at once;
// replies that arrive afterwards are dropped. A Server, and a Reply, may outlive the Loop: afterwards
// they send and report nothing. Loop-thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/chrono.hpp"
#include "duet/detail/copyable_function.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/endpoint.hpp"
#include "duet/http/message.hpp"
#include "duet/loop.hpp"
#include "duet/task.hpp"
#include "duet/tls.hpp"

namespace duet::http {

namespace detail {
class ServerConnection;
class RequestBodyQueue;
}  // namespace detail

/// A request body read piece by piece as it arrives (`ServerOptions::stream_body`). The connection
/// parses no more of it until the last piece has been taken: a handler that reads slowly holds the
/// client back (its sends fill the socket buffers, then wait), at most one piece and one read (64 KiB
/// each) held meanwhile. Move-only.
class RequestBody {
 public:
  RequestBody() noexcept = default;
  RequestBody(RequestBody&&) noexcept = default;
  RequestBody& operator=(RequestBody&& other) noexcept;
  RequestBody(const RequestBody&) = delete;
  RequestBody& operator=(const RequestBody&) = delete;
  /// Dropped before its end: the rest is not read, and the connection closes after the response.
  ~RequestBody();

  /// True if the body is streamed here; false: it is in `ServerRequest::body` (or there is none).
  bool streamed() const noexcept { return queue_ != nullptr; }
  /// The next piece: `cb(std::error_code, std::string piece)`, an empty piece at the end (and after
  /// it). Errors: the connection ended first (UV_ECONNABORTED, a timeout included),
  /// `errc::malformed_response` if the body's framing is broken (a bad chunk), `errc::body_too_large`
  /// past `max_streamed_body_bytes`, UV_ECANCELED if cancelled (the rest of the body is then dropped, as
  /// when the RequestBody is). One read at a time. Throws `errc::loop_closed` once the Loop is gone; a
  /// read waiting as the Loop goes is never called, and its callback is destroyed then.
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, std::string>
  void read(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    read_piece(duet::detail::UniqueFunction<void(std::error_code, std::string)>(std::forward<Callback>(cb)),
               std::move(token));
  }
  /// Coroutine face: `std::string piece = co_await req.body_stream.read();` (empty at the end).
  template <class = void>
  [[nodiscard]] auto read() {
    return awaitable<std::string>([this](auto cb) { read(std::move(cb)); });
  }
  /// True once a read has returned the end of the body.
  bool ended() const noexcept;

 private:
  friend class detail::ServerConnection;
  explicit RequestBody(std::shared_ptr<detail::RequestBodyQueue> q) noexcept : queue_(std::move(q)) {}
  void read_piece(duet::detail::UniqueFunction<void(std::error_code, std::string)> cb, std::stop_token token);
  std::shared_ptr<detail::RequestBodyQueue> queue_;
};

struct ServerRequest {
  std::string method;  ///< "GET", "HEAD", ...
  std::string target;  ///< as sent: "/flags/br/br.gif?x=1", or "http://host/flags/br/br.gif?x=1"
  /// The target's path, before '?', still percent-encoded ("/" for an absolute-form target with none;
  /// "*" for `OPTIONS *`). An absolute-form target's host replaces the Host field (RFC 9112 3.2.2).
  /// Visible ASCII that RFC 3986 would have encoded (`"` `<` `>` `\` `^` `` ` `` `{` `|` `}`) comes as
  /// sent: clients send it unencoded, and a handler that maps the path to a file or echoes it decodes
  /// and checks it itself (dot segments included).
  std::string path;
  std::string query;  ///< the target after '?'
  Headers headers;
  std::string body;         ///< the whole body, unless it is streamed
  RequestBody body_stream;  ///< the body piece by piece, when `ServerOptions::stream_body` chose so
  int version_minor = 1;    ///< HTTP/1.x
  Endpoint peer;            ///< the client's address
};

struct ServerOptions {
  std::size_t max_header_bytes = 16 * 1024;  ///< a request's head: its lines, each with its CRLF
  std::size_t max_header_fields = 100;       ///< header fields in a request (and trailers)
  std::size_t max_body_bytes = 1024 * 1024;
  std::size_t max_pipelined = 16;                     ///< requests read ahead of their responses before reading pauses
  std::chrono::milliseconds header_timeout{10'000};   ///< a request's head, from its first byte
  std::chrono::milliseconds request_timeout{60'000};  ///< a whole request, body included (0: none)
  std::chrono::milliseconds write_timeout{30'000};    ///< each response must be taken whole within this
  std::chrono::milliseconds idle_timeout{60'000};     ///< a kept-alive connection between requests
  /// After the last response on a connection the client may still be sending (a body the server
  /// refused or the handler did not read, requests pipelined behind an answer that closes): the
  /// server half-closes, drops what comes, and closes when the client does or after this long, so
  /// that closing with bytes unread does not reset the connection and destroy the response on its
  /// way. Not when the client's last request said it was the last (`Connection: close`, or HTTP/1.0
  /// without keep-alive) and was read whole and not refused: it sends nothing more. 0: close at once.
  std::chrono::milliseconds linger_timeout{5'000};
  std::size_t max_connections = 10'000;
  /// Connections the kernel may queue before they are accepted (it caps this at net.core.somaxconn).
  /// A client that opens thousands at once needs more than the default, or its extra connects are
  /// dropped and retried a second or more later.
  int listen_backlog = 511;
  /// Let other Servers that set it too listen on the same port, each on its own loop (SO_REUSEPORT:
  /// the kernel spreads new connections over them). `ServerGroup` sets it.
  bool reuse_port = false;
  /// Serve https: every connection starts with a TLS handshake, with this certificate and key (a bad
  /// file makes the constructor throw `duet::TlsError`). Handshakes count against `max_connections`.
  std::optional<TlsServerOptions> tls;
  std::chrono::milliseconds tls_handshake_timeout{10'000};  ///< a client must finish its handshake within this
  /// Which requests' bodies are streamed to the handler rather than buffered: asked with each
  /// request's head (method, target, headers, peer), before any of its body. For those, the handler is
  /// called as soon as the head has arrived, with `body_stream` to read the body (`body` stays empty);
  /// `max_body_bytes` gives way to `max_streamed_body_bytes`, and `request_timeout` bounds each wait
  /// for more of the body rather than the whole (it stops while the handler has not taken the last
  /// piece). Answering before the body has been read to its end closes the connection after the
  /// response. Null (the default): every body is buffered.
  duet::detail::CopyableFunction<bool(const ServerRequest& head)> stream_body;
  std::size_t max_streamed_body_bytes = 0;  ///< a streamed request body (0: no limit; the handler decides)
};

namespace detail {
class ServerConnection;
}  // namespace detail

/// Sends the response to one request: call it once (later calls are ignored). Move-only. Destroyed
/// without being called, it answers 500 and reports the dropped reply to the loop's error hook, so a
/// request is never left without an answer. An answer that cannot be made (out of memory) closes the
/// connection instead, and goes to the error hook: the client is not left waiting.
class Reply {
 public:
  Reply() noexcept = default;
  Reply(Reply&& other) noexcept;
  Reply& operator=(Reply&& other) noexcept;
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply();

  void operator()(Response res);
  /// Answers with `head` (its body ignored) and a body produced piece by piece by `body`: held to the
  /// Content-Length `head` sets, if it sets one; else chunked (or, to an HTTP/1.0 client, ended by
  /// closing the connection). `body` is asked for each piece only once the one before has been taken
  /// by the kernel, each within `write_timeout`: a client that stops reading stops the producer. A
  /// producer's error (an error code, or its `BodyPiece` destroyed uncalled: returning without it, or
  /// throwing), or a body that breaks its Content-Length, cuts the response short (the connection
  /// closes; the loop's error hook says why: what the producer threw, or
  /// `errc::body_producer_failed`). What it throws after giving its piece, or while keeping it for
  /// later, is only reported. Not asked at all for HEAD, 204 or
  /// 304. Responses to later pipelined requests wait until this body has ended. Counts as the call.
  void stream(Response head, BodySource body);
  /// True until called (or moved from).
  explicit operator bool() const noexcept { return owed_; }

 private:
  friend class detail::ServerConnection;
  Reply(std::weak_ptr<detail::ServerConnection> conn, std::uint64_t seq) noexcept
      : conn_(std::move(conn)), seq_(seq), owed_(true) {}
  void drop() noexcept;

  std::weak_ptr<detail::ServerConnection> conn_;
  std::uint64_t seq_ = 0;
  bool owed_ = false;
};

namespace detail {
class ServerCore;
using Handler = duet::detail::UniqueFunction<void(ServerRequest, Reply)>;
}  // namespace detail

class Server {
 public:
  /// Listens on `at` (port 0: any free port, see `local_endpoint()`) and serves each request with
  /// `handler`: `void(ServerRequest, Reply)`, `Task<Response>(ServerRequest)` or
  /// `Task<void>(ServerRequest, Reply)`. Throws
  /// `std::system_error` if it cannot listen.
  template <class Handler>
  Server(Loop& loop, const Endpoint& at, Handler handler, ServerOptions options = {})
      : Server(loop, at, adapt(loop, std::move(handler)), std::move(options)) {}
  Server(Loop& loop, const Endpoint& at, detail::Handler handler, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Endpoint local_endpoint() const;
  /// Connections open now, those closing after their last response included (`linger_timeout`):
  /// they count against `max_connections` too.
  std::size_t connections() const noexcept;
  /// Stops accepting and closes every connection now. Idempotent.
  void close() noexcept;

 private:
  template <class Handler>
  static detail::Handler adapt(Loop& loop, Handler handler) {
    if constexpr (std::is_invocable_v<Handler&, ServerRequest, Reply>) {
      if constexpr (std::is_same_v<std::invoke_result_t<Handler&, ServerRequest, Reply>, Task<void>>) {
        // A coroutine that answers through its Reply (to stream, say): run it; what it throws goes to
        // the loop's error hook, and its Reply, dropped unanswered with its frame, answers 500.
        return [&loop, handler = std::move(handler)](ServerRequest req, Reply reply) mutable {
          serve_task(loop, handler(std::move(req), std::move(reply)));
        };
      } else {
        return handler;
      }
    } else {
      static_assert(std::is_invocable_r_v<Task<Response>, Handler&, ServerRequest>,
                    "a Server handler is void(ServerRequest, Reply) or Task<Response>(ServerRequest)");
      return [&loop, handler = std::move(handler)](ServerRequest req, Reply reply) mutable {
        serve_task(loop, handler(std::move(req)), std::move(reply));  // a throw here: the caller's 500
      };
    }
  }
  static void serve_task(Loop& loop, Task<Response> task, Reply reply);
  static void serve_task(Loop& loop, Task<void> task);
  std::shared_ptr<detail::ServerCore> core_;
};

}  // namespace duet::http
