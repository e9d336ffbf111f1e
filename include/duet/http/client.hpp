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
// 301/302 after a POST, continue as GET without a body. A redirect to another origin (scheme, host or
// port) drops `Authorization`, `Proxy-Authorization`, `Cookie` and a caller-set `Host`; one from https
// to http fails with `errc::insecure_redirect` unless `allow_https_to_http_redirects` is set.
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
// TLS errors of tls.hpp (`errc::tls_*`, with OpenSSL's reason), `errc::insecure_redirect`, UV_ECANCELED. A
// response that fails midway is never delivered as a success. An HTTP error status (404, 500, ...)
// is not an error: it is a response.
//
// Streaming: `request(req, on_body, cb)` hands each piece of the body to `on_body(std::string_view)`
// as it arrives instead of collecting it, so a large download need not fit in memory. Only the final
// response's body reaches the sink: a redirect's body, when the redirect is followed, is dropped.
//
// Cost: an exchange per request (under 1 KB, freed when its callback has run), one allocation for
// the serialized request, and the response's own strings. The header and idle timeouts cost no timer
// per request: the connections waiting for headers, and the idle ones, are kept in two lists per
// client, each in the order of its deadlines, under one timer each. A `request_timeout` is one timer
// per request, running from the call (waiting for a connection included) to the response. See
// docs/performance.md for the figures.
//
// Lifetime: destroying the Client cancels its requests in flight (their callbacks get UV_ECANCELED,
// later, from the loop) and closes its connections. A Client may outlive its Loop: destroyed after
// it, it closes what is left and calls nothing back (the Loop reported the pending work as it went).
// Loop-thread only.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
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
  /// Follow a redirect from https to http (off: it fails with `errc::insecure_redirect`).
  bool allow_https_to_http_redirects = false;
};

/// Receives each piece of a streamed body.
using BodySink = duet::detail::UniqueFunction<void(std::string_view)>;

namespace detail {
class ClientCore;
using Completion = duet::detail::UniqueFunction<void(std::error_code, Response&&, std::exception_ptr)>;

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

  /// Sends `req`, streaming the response body to `on_body`; `cb` gets the response without its body.
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, Response>
  void request(Request req, BodySink on_body, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    start(std::move(req), std::move(on_body), detail::completion(std::forward<Callback>(cb)), std::move(token));
  }

  /// Coroutine face: `Response res = co_await client.get(url);`
  [[nodiscard]] auto get(std::string url) {
    return awaitable<Response>([this, url = std::move(url)](auto cb) { get(url, std::move(cb)); });
  }
  /// Coroutine face: `Response res = co_await client.request(std::move(req));`
  [[nodiscard]] auto request(Request req) {
    return awaitable<Response>(
        [this, req = std::move(req)](auto cb) mutable { request(std::move(req), std::move(cb)); });
  }
  /// Coroutine face of the streaming request.
  [[nodiscard]] auto request(Request req, BodySink on_body) {
    return awaitable<Response>([this, req = std::move(req), sink = std::move(on_body)](auto cb) mutable {
      request(std::move(req), std::move(sink), std::move(cb));
    });
  }

  /// Connections open (in use or idle), and idle ones, across all origins (for tests and diagnostics).
  std::size_t open_connections() const noexcept;
  std::size_t idle_connections() const noexcept;
  /// Origins the client keeps state for: those with a connection, a request or a waiter.
  std::size_t known_origins() const noexcept;

 private:
  void start_get(std::string_view url, detail::Completion done, std::stop_token token);
  void start(Request req, BodySink sink, detail::Completion done, std::stop_token token);
  std::shared_ptr<detail::ClientCore> core_;
};

}  // namespace duet::http
