// duet/http/client.hpp — an HTTP/1.1 client: keep-alive pool per origin, both faces.
//
//     duet::http::Client client(loop);
//     client.get("http://localhost:8000/flags/br/br.gif", [](std::error_code ec, duet::http::Response res) {
//       if (ec) return report(ec, res.reason);   // on error, res.reason says what went wrong
//       save(res.body);
//     });
//     duet::http::Response res = co_await client.get("http://localhost:8000/flags/br/br.gif");
//
// What it does: resolves the host (see dns.hpp: a numeric address needs no lookup), connects (trying
// each address in turn), sends the request and
// parses the response with llhttp (Content-Length, chunked and close-delimited bodies; 1xx skipped;
// HEAD has no body). https:// URLs get TLS (tls.hpp): the certificate is verified against the system's
// trust store and the URL's host, unless `ClientOptions::tls` says otherwise. Connections are kept
// alive and reused per origin (scheme, host and port), most recently
// used first, at most `max_connections_per_origin` at once; requests beyond that wait their turn in
// order. An idle connection is closed after `idle_timeout`, or as soon as the server closes it; it
// does not keep `Loop::run()` from returning. An origin with no connection and no request is
// forgotten. If a
// request on a reused connection fails before any byte of the response arrived (the server closed
// the idle connection just as the request went out), an idempotent request (GET, HEAD, PUT, DELETE,
// OPTIONS, TRACE) is retried once on a fresh connection; a non-idempotent one never is. Redirects
// (301, 302, 303, 307, 308) are followed up to `max_redirects` (0 turns following off); 303, and
// 301/302 after a POST, continue as GET without a body (a HEAD stays a HEAD). A redirect to another
// origin (scheme, host or port) drops `Authorization`, `Proxy-Authorization`, `Cookie` and a
// caller-set `Host`; one from https to http fails with `errc::insecure_redirect` unless
// `allow_https_to_http_redirects` is set.
//
// Every peer is hostile (docs/http.md, "Security"): a response's head is bounded in bytes
// (`max_header_bytes`) and fields (`max_header_fields`), a buffered body by `max_body_bytes` (16 MiB by
// default; a streamed body goes to its sink and is not buffered), and every wait has a deadline: the
// connect, the response's headers (`header_timeout`), each read of its body (`read_timeout`), and,
// when set, the whole request (`request_timeout`, or `Request::timeout`). 1xx, 204 and 304 responses
// have no body whatever their headers say; an unsolicited 101, trailers passed off as headers, and the
// framing llhttp 8.1.0 lets through (a bare CR in the head, chunk data not followed by CRLF) are
// refused. What the caller passes that would go on the wire (the method, header names and values,
// `user_agent`, the URL's host, path and query) is checked first: a CR, LF or other control byte, a
// method or field name that is not a token, a Transfer-Encoding, a Content-Length other than the
// body's, or two Hosts, fails the request with `errc::invalid_argument` before anything is sent.
//
// Errors (the callback's `std::error_code`, with `Response::reason` saying what went wrong; the
// awaitable throws `duet::http::RequestError`, a `std::system_error` whose `what()` is that same
// sentence, or `duet::Cancelled`): UV_EAI_NONAME (unknown host), UV_ECONNREFUSED, UV_ECONNRESET, UV_ETIMEDOUT
// (connect, response headers, or whole request: the reason says which), `errc::malformed_response`
// (llhttp's reason, or "truncated"), `errc::header_too_large`, `errc::body_too_large`,
// `errc::too_many_redirects`, `errc::bad_url`, `errc::unsupported_scheme` (not http or https), the
// TLS errors of tls.hpp (`errc::tls_*`, with OpenSSL's reason), `errc::insecure_redirect`,
// `errc::body_producer_failed` (an upload's producer threw or dropped its piece), UV_ECANCELED. A
// response that fails midway is never delivered as a success. An HTTP error status (404, 500, ...)
// is not an error: it is a response.
//
// Streaming, with backpressure (the connection reads no faster than the body is consumed; a paused
// body holds at most one piece and one read, 64 KiB each):
// - `open(req, cb)` gives a `ResponseStream` as soon as the head has arrived; `stream.read()` gives the
//   body piece by piece (pull);
// - `request(req, on_body, cb)` hands each piece to `on_body` as it arrives (push); a sink taking
//   `(std::string_view, BodyFlow&)` can pause the body and resume it later;
// - `download_to_file(req, path, cb)` writes the body to a file through the thread pool, atomically.
// Only the final response's body is streamed: a redirect's body, when the redirect is followed, is
// dropped. A streamed body is bounded by `Request::max_body_bytes` only (none by default). With
// `Request::decompress`, a gzip or deflate body is decoded, and the limits count decoded bytes.
//
// Cost: an exchange per request (about 600 bytes, freed when its callback has run), one allocation for the
// serialized request (freed at once when the socket takes it whole, as it almost always does), and
// the response's own strings; the response's parser is taken at its first byte from a few the client
// keeps. The connect, header, read and idle timeouts cost no timer per request or connection: what
// waits out each is kept in a list per client, in the order of its deadlines, under one timer each.
// A `request_timeout` is one timer per request, running from the call (waiting for a connection
// included) to the response. See docs/performance.md for the figures.
//
// Lifetime: destroying the Client cancels its requests in flight (their callbacks get UV_ECANCELED,
// later, from the loop) and closes its connections. A Client may outlive its Loop: destroyed after
// it, it closes what is left and calls nothing back (the Loop reported the pending work as it went).
// Loop-thread only.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/chrono.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/http/message.hpp"
#include "duet/loop.hpp"
#include "duet/tls.hpp"

namespace duet::http {

/// What the coroutine face throws for a failed request: the error code, and as `what()` the sentence
/// the callback face puts in `Response::reason` ("cannot connect to 127.0.0.1:8002: connection refused").
class RequestError : public std::system_error {
 public:
  RequestError(std::error_code ec, std::string reason) : std::system_error(ec), reason_(std::move(reason)) {}
  const char* what() const noexcept override { return reason_.c_str(); }

 private:
  std::string reason_;
};

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};  ///< per address tried
  std::chrono::milliseconds header_timeout{30'000};   ///< from sending the request to the response headers
  std::chrono::milliseconds read_timeout{30'000};     ///< then between pieces of the body (0: none)
  std::chrono::milliseconds request_timeout{0};       ///< the whole request: queueing, redirects included (0: none)
  std::chrono::milliseconds idle_timeout{30'000};     ///< an unused keep-alive connection is closed after this
  std::size_t max_connections_per_origin = 6;
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_header_fields = 100;
  std::size_t max_body_bytes = 16 * 1024 * 1024;  ///< a buffered body; a streamed one is not held
  int max_redirects = 10;                         ///< 0: a redirect is returned as the response
  std::string user_agent = "duet/0.1";  ///< sent unless the request sets User-Agent; checked like a field value
  /// https: what to trust and offer (tls.hpp). By default the system's trust store, verification on,
  /// ALPN "http/1.1", sessions resumed. The context is made at the first https request.
  TlsClientOptions tls;
  std::chrono::milliseconds tls_handshake_timeout{10'000};  ///< per connection, after the TCP connect
  /// An upload with `Expect: 100-continue` sends its body after this if no 100 Continue has come.
  std::chrono::milliseconds expect_continue_timeout{1'000};
  /// Follow a redirect from https to http (off: it fails with `errc::insecure_redirect`).
  bool allow_https_to_http_redirects = false;
};

namespace detail {
class Exchange;
class BodyQueue;
}  // namespace detail

/// Resumes a streamed body paused by `BodyFlow::pause()`. Move-only. Call it once (later calls do
/// nothing); dropped uncalled, it resumes too, so a body is never left paused by a lost token.
/// Calling it after the request ended (or was cancelled, or its Client destroyed) does nothing.
class Resume {
 public:
  Resume() noexcept = default;
  Resume(Resume&& other) noexcept = default;
  Resume& operator=(Resume&& other) noexcept;
  Resume(const Resume&) = delete;
  Resume& operator=(const Resume&) = delete;
  ~Resume() { (*this)(); }

  void operator()() noexcept;
  /// True until called (or moved from).
  explicit operator bool() const noexcept { return !exchange_.expired(); }

 private:
  friend class detail::Exchange;
  explicit Resume(std::weak_ptr<detail::Exchange> ex) noexcept : exchange_(std::move(ex)) {}
  std::weak_ptr<detail::Exchange> exchange_;
};

/// What a body sink with two parameters gets with each piece: the means to pause the body.
class BodyFlow {
 public:
  BodyFlow(const BodyFlow&) = delete;
  BodyFlow& operator=(const BodyFlow&) = delete;

  /// Pauses the body after this piece: no more pieces reach the sink and the connection reads nothing
  /// more (the server's sends fill the socket buffers, then wait) until the returned `Resume` is
  /// called or dropped. At most one read's worth of bytes (64 KiB) is held meanwhile. The read
  /// timeout stops while paused (the consumer is slow, not the server); the request timeout runs on.
  /// Pausing again from the sink before resuming returns an empty `Resume`.
  [[nodiscard]] Resume pause();
  /// Bytes of the body received so far, this piece included (as sent: before any decoding).
  std::uint64_t received() const noexcept;

 private:
  friend class detail::Exchange;
  explicit BodyFlow(detail::Exchange& ex) noexcept : exchange_(ex) {}
  detail::Exchange& exchange_;
};

/// Receives each piece of a streamed body. A sink may also take `(std::string_view, BodyFlow&)`
/// to pause the body (see `BodyFlow`); one taking the piece only is adapted to this.
using BodySink = duet::detail::UniqueFunction<void(std::string_view, BodyFlow&)>;

/// A response whose body is read piece by piece (`Client::open`): the connection reads only as fast
/// as the pieces are taken, holding at most one piece and one read (64 KiB each) between them.
/// Move-only. Destroyed before its body has ended, it cancels the request: the connection is closed,
/// not reused.
class ResponseStream {
 public:
  ResponseStream() noexcept = default;
  ResponseStream(ResponseStream&&) noexcept = default;
  ResponseStream& operator=(ResponseStream&& other) noexcept;
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;
  ~ResponseStream();

  /// Status, reason and headers (the body stays empty: it is read with `read`). After a failed
  /// `open`, `reason` says what went wrong.
  Response& response() noexcept { return head_; }
  const Response& response() const noexcept { return head_; }

  /// The next piece of the body: `cb(std::error_code, std::string piece)`. An empty piece means the
  /// body has ended (and every read after it returns one too). On error (the connection failed, a
  /// timeout, a limit) `cb` gets the code; the awaitable throws `RequestError`. One read at a time (a
  /// second while one is pending fails with `errc::invalid_argument`). Cancelling a read cancels the
  /// request: the rest of the body is dropped with the connection. Once the Loop is destroyed, `read`
  /// throws `errc::loop_closed`; a read waiting then is never called, and its callback is destroyed (with
  /// what it owns: a reader that holds its own stream is freed).
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, std::string> ||
      std::invocable<Callback&, std::error_code, std::string, std::exception_ptr>
  void read(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    read_piece(
        [cb = std::forward<Callback>(cb)](std::error_code ec, std::string piece, std::exception_ptr e) mutable {
          if constexpr (std::is_invocable_v<Callback&, std::error_code, std::string, std::exception_ptr>)
            cb(ec, std::move(piece), std::move(e));
          else
            cb(ec, std::move(piece));
        },
        std::move(token));
  }
  /// Coroutine face: `std::string piece = co_await stream.read();` (empty at the end).
  template <class = void>
  [[nodiscard]] auto read() {
    return awaitable<std::string>([this](auto cb) { read(std::move(cb)); });
  }
  /// True once a read has returned the end of the body.
  bool ended() const noexcept;

 private:
  friend class detail::BodyQueue;
  using PieceDone = duet::detail::UniqueFunction<void(std::error_code, std::string, std::exception_ptr)>;
  void read_piece(PieceDone done, std::stop_token token);
  std::shared_ptr<detail::BodyQueue> queue_;
  Response head_;
};

namespace detail {
class ClientCore;
using Completion = duet::detail::UniqueFunction<void(std::error_code, Response&&, std::exception_ptr)>;

/// Adapts a body sink taking the piece only to `BodySink`.
template <class Sink>
BodySink body_sink(Sink&& sink) {
  if constexpr (std::is_convertible_v<Sink&&, BodySink> && std::is_invocable_v<Sink&, std::string_view, BodyFlow&>) {
    return BodySink(std::forward<Sink>(sink));
  } else {
    static_assert(std::is_invocable_v<Sink&, std::string_view>,
                  "a body sink is void(std::string_view) or void(std::string_view, BodyFlow&)");
    return [sink = std::forward<Sink>(sink)](std::string_view piece, BodyFlow&) mutable { sink(piece); };
  }
}

/// Adapts a user callback taking (ec, Response) or (ec, Response, std::exception_ptr).
template <class Callback>
Completion completion(Callback&& cb) {
  return [cb = std::forward<Callback>(cb)](std::error_code ec, Response&& r, std::exception_ptr e) mutable {
    if constexpr (std::is_invocable_v<Callback&, std::error_code, Response, std::exception_ptr>)
      cb(ec, std::move(r), std::move(e));
    else
      cb(ec, std::move(r));
  };
}
}  // namespace detail

class Client {
 public:
  explicit Client(Loop& loop, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// GET `url`; calls `cb(std::error_code, Response)`.
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, Response>
  void get(std::string_view url, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    start_get(url, detail::completion(std::forward<Callback>(cb)), std::move(token));
  }

  /// Sends `req` (any method, headers, body); calls `cb(std::error_code, Response)`.
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, Response>
  void request(Request req, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    start(std::move(req), nullptr, detail::completion(std::forward<Callback>(cb)), std::move(token));
  }

  /// Sends `req`, streaming the response body to `on_body` (`void(std::string_view)`, or
  /// `void(std::string_view, BodyFlow&)` to pause it); `cb` gets the response without its body.
  template <class Sink, class Callback>
  requires std::invocable<Callback&, std::error_code, Response>
  void request(Request req, Sink&& on_body, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    start(std::move(req), detail::body_sink(std::forward<Sink>(on_body)),
          detail::completion(std::forward<Callback>(cb)), std::move(token));
  }

  /// Sends `req` with a body produced piece by piece by `body` (a streamed upload): with the length
  /// `req` declares in Content-Length (the body is held to it: more or less fails the request with
  /// `errc::invalid_argument`), else chunked. Backpressure: `body` is asked for the next piece only
  /// once the last one has been taken by the kernel, so a server that stops reading stops the
  /// producer, and each write must complete within `read_timeout` (without one, `header_timeout`).
  /// With `Expect: 100-continue` in
  /// `req`, the body waits for the server's 100 Continue (or `expect_continue_timeout`); a final
  /// response instead (417, 413, 401, ...) is returned and the body is never asked for. A response
  /// that comes before the body is all sent ends the request (the connection is then closed). An
  /// upload is not retried on a fresh connection once its body has been asked for, and redirects are
  /// returned as responses, not followed (the body cannot be sent twice). A producer that answers
  /// with an error code fails the request with it; one that lets its `BodyPiece` be destroyed
  /// uncalled (returning without it, or throwing) fails it with `errc::body_producer_failed` (the
  /// reason says which, with what it threw); what it throws after giving its piece, or while keeping
  /// it for later, goes to the loop's error hook. `cb(std::error_code, Response)`, never inside this
  /// call.
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, Response>
  void upload(Request req, BodySource body, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    start_upload(std::move(req), std::move(body), detail::completion(std::forward<Callback>(cb)), std::move(token));
  }
  /// Coroutine face: `Response res = co_await client.upload(std::move(req), std::move(body));`
  template <class = void>
  [[nodiscard]] auto upload(Request req, BodySource body) {
    return awaitable<Response>([this, req = std::move(req), body = std::move(body)](auto cb) mutable {
      upload(std::move(req), std::move(body), std::move(cb));
    });
  }

  /// Sends `req` and calls `cb(std::error_code, ResponseStream)` as soon as the final response's
  /// head has arrived; its body is then read piece by piece from the stream (redirects are followed
  /// first, as for `request`). On error the stream's `response().reason` says what went wrong.
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, ResponseStream> ||
      std::invocable<Callback&, std::error_code, ResponseStream, std::exception_ptr>
  void open(Request req, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    start_open(
        std::move(req),
        [cb = std::forward<Callback>(cb)](std::error_code ec, ResponseStream s, std::exception_ptr e) mutable {
          if constexpr (std::is_invocable_v<Callback&, std::error_code, ResponseStream, std::exception_ptr>)
            cb(ec, std::move(s), std::move(e));
          else
            cb(ec, std::move(s));
        },
        std::move(token));
  }

  /// Downloads `req`'s response body into the file `path`, as `fs::write_file_atomic` writes one: to a
  /// new temporary file beside it, in order through the thread pool (one write in flight while the
  /// next piece is read, so memory stays at two pieces whatever the size), then fsynced and renamed
  /// over `path`. `path` is either untouched or the whole new body; a failure or a cancel removes the
  /// temporary file. Calls `cb(std::error_code, Response)` with the response's head (its body empty).
  /// A status other than 2xx is not saved: its body comes back in `Response::body`, bounded as a
  /// buffered body is. Errors are the request's, and the file system's (UV_ENOSPC, UV_EACCES, ...)
  /// with a reason naming the path.
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, Response>
  void download_to_file(Request req, std::string path, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    start_download(std::move(req), std::move(path), detail::completion(std::forward<Callback>(cb)), std::move(token));
  }
  /// Coroutine face: `Response head = co_await client.download_to_file(std::move(req), "big.iso");`
  template <class = void>
  [[nodiscard]] auto download_to_file(Request req, std::string path) {
    return awaitable<Response>([this, req = std::move(req), path = std::move(path)](auto cb) mutable {
      download_to_file(std::move(req), std::move(path), std::move(cb));
    });
  }

  /// Coroutine face: `Response res = co_await client.get(url);`
  /// (Flattened: the URL's move into the awaitable is inlined, where GCC would call it out of line
  /// from a large coroutine.)
  template <class = void>
  [[nodiscard, gnu::flatten]] auto get(std::string url) {
    return Awaitable<Response, GetInit>(std::in_place, this, std::move(url));
  }
  /// Coroutine face: `Response res = co_await client.request(std::move(req));`
  template <class = void>
  [[nodiscard]] auto request(Request req) {
    return awaitable<Response>(
        [this, req = std::move(req)](auto cb) mutable { request(std::move(req), std::move(cb)); });
  }
  /// Coroutine face of the streaming request.
  template <class Sink>
  [[nodiscard]] auto request(Request req, Sink&& on_body) {
    return awaitable<Response>([this, req = std::move(req), sink = detail::body_sink(std::forward<Sink>(on_body))](
                                   auto cb) mutable { this->request(std::move(req), std::move(sink), std::move(cb)); });
  }
  /// Coroutine face of `open`: `ResponseStream s = co_await client.open(std::move(req));`
  template <class = void>
  [[nodiscard]] auto open(Request req) {
    return awaitable<ResponseStream>(
        [this, req = std::move(req)](auto cb) mutable { open(std::move(req), std::move(cb)); });
  }

  /// Connections open (in use or idle), and idle ones, across all origins (for tests and diagnostics).
  std::size_t open_connections() const noexcept;
  std::size_t idle_connections() const noexcept;
  /// Origins the client keeps state for: those with a connection, a request or a waiter.
  std::size_t known_origins() const noexcept;

 private:
  /// `get`'s initiating function in the coroutine face, built inside the awaitable (the URL is moved
  /// once, not twice as through a lambda).
  struct GetInit {
    Client* client;
    std::string url;
    template <class Callback>
    void operator()(Callback cb) {
      client->get(url, std::move(cb));
    }
  };
  void start_get(std::string_view url, detail::Completion done, std::stop_token token);
  void start(Request req, BodySink sink, detail::Completion done, std::stop_token token);
  using Opened = duet::detail::UniqueFunction<void(std::error_code, ResponseStream, std::exception_ptr)>;
  void start_open(Request req, Opened done, std::stop_token token);
  void start_download(Request req, std::string path, detail::Completion done, std::stop_token token);
  void start_upload(Request req, BodySource body, detail::Completion done, std::stop_token token);
  std::shared_ptr<detail::ClientCore> core_;
};

}  // namespace duet::http
