// duet/tls.hpp — TLS (OpenSSL 3) over any duet stream: `TlsContext` for the settings, `tls_connect`
// and `tls_accept` for the handshake, `TlsStream` for the encrypted connection.
//
//     auto ctx = duet::TlsContext::client();   // the system's trust store
//     duet::connect(loop, to, 5s, [&](std::error_code ec, duet::TcpStream tcp) {
//       duet::tls_connect(std::move(tcp), ctx, "example.org", 10s, [](std::error_code ec, duet::TlsStream tls) {
//         if (ec) return report(ec, tls.error_reason());   // e.g. "hostname mismatch"
//         tls.write("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", [](std::error_code) {});
//       });
//     });
//     duet::TlsStream tls = co_await duet::tls_connect(std::move(tcp), ctx, "example.org", 10s);
//
// How: OpenSSL runs on memory buffers, never on the socket. Ciphertext from the transport stream is
// fed to OpenSSL; what OpenSSL wants to send is written through the transport like any other bytes.
// So libuv owns every socket read and write, and no OpenSSL call waits on I/O. The transport is any
// duet stream (a `TcpStream`, a `PipeStream`), handed over with `std::move`: the TLS stream owns it.
//
// Trust: a client context verifies by default — the certificate chain against the trust store, and
// the name the caller gives (sent as SNI too) against the certificate's DNS names, or, for an IP
// address, its IP addresses. The store is the system's default (Debian: /etc/ssl/certs), where
// `SSL_CERT_FILE` and `SSL_CERT_DIR` work as they do for curl and Python; `ca_file`/`ca_directory`
// replace it. `insecure_skip_verify` turns verification off, by that one name. The minimum version is
// TLS 1.2. Clients resume sessions per server name and port (TLS 1.3 tickets, 1.2 session ids);
// servers issue tickets.
//
// The stream's faces are `Stream`'s (stream.hpp): `read` once or `read_start` for every chunk,
// `read_stop` (backpressure: the transport stops reading too), `write` (the callback runs once the
// encrypted bytes are handed to the kernel), `shutdown` (sends close_notify, then ends the
// transport's sending side; a write after it fails with UV_EPIPE, reading goes on), `close`
// (close_notify if the kernel takes it at once, then closes), `abort` (closes without it). One
// reader at a time; writes go out in order.
//
// Errors (`std::error_code`; `error_reason()` on the stream, or `what()` of the `TlsError` the
// coroutine face throws, says more, such as OpenSSL's reason):
//   errc::tls_untrusted_issuer     the chain does not lead to a trusted CA (or is self-signed)
//   errc::tls_hostname_mismatch    the certificate is not for that name or IP address
//   errc::tls_certificate_expired  past its notAfter (or before its notBefore)
//   errc::tls_certificate_invalid  any other verification failure
//   errc::tls_handshake_failed     no common version or cipher, not TLS at all, the peer closed or
//                                  refused during the handshake
//   errc::tls_truncated            the peer closed the connection without close_notify: what came
//                                  before may be cut short (reported in place of end-of-stream)
//   errc::tls_protocol_error       a corrupt or unexpected record after the handshake
//   UV_ETIMEDOUT                   the handshake did not finish within its timeout
//   UV_ECANCELED                   cancelled (stop token or awaiting task), or closed
// and the transport's own errors (UV_ECONNRESET, ...) as they are.
//
// Cancellation: a handshake, a one-shot read, a write and a shutdown take stop tokens as every duet
// operation does (cancellation.hpp). A cancelled handshake closes the transport.
//
// Loop destruction: as for `Stream`: the stream becomes inert; handshakes in flight are dropped.
//
// Hostile peers: a stream reads its transport only while it is read from (or handshaking), so a peer
// that sends forever fills kernel buffers, not this process's; what OpenSSL answers on its own (alerts,
// key updates) is bounded too (64 KiB waiting to be sent, then reading pauses). TLS 1.2 renegotiation
// is refused: a peer that asks for it gets `tls_protocol_error`. Names are checked against the
// certificate's subjectAltName only, never its CN; "[::1]" and a trailing dot ("example.org.") work.
//
// Cost: per connection, OpenSSL's state (some 30 KiB once the handshake is done), a 16 KiB buffer for
// decrypted bytes while reading, and one transport write per `write` (the record's bytes). Contexts
// are shared, copyable handles: make one per configuration, not per connection; they may be used by
// loops on several threads. A context reads its files (certificates, keys, the trust store's bundle)
// when it is made, so make it before the loop runs; a CA *directory* is searched by OpenSSL as
// certificates arrive (small files, read on the loop thread).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/chrono.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/stream.hpp"
#include "duet/timer.hpp"

namespace duet {

enum class TlsVersion { tls1_2, tls1_3 };

/// What a client trusts and offers. (Every member has an initializer, so that designated initializers
/// may leave any of them out.)
struct TlsClientOptions {
  /// PEM bundle of trusted CAs. With `ca_directory` also empty: the system's default trust store.
  std::string ca_file{};
  /// A directory of CA certificates named by hash (`openssl rehash`).
  std::string ca_directory{};
  /// Accepts any certificate for any name: for tests against a peer you cannot verify. Off by default.
  bool insecure_skip_verify = false;
  /// Protocols offered through ALPN, most preferred first (e.g. {"http/1.1"}); empty: no ALPN.
  std::vector<std::string> alpn{};
  TlsVersion min_version = TlsVersion::tls1_2;
  /// Resumes sessions with a server (by name and port) seen before: a shorter handshake.
  bool session_resumption = true;
  /// A client certificate (PEM, chain after it) and its key, for servers that ask for one.
  std::string certificate_file{};
  std::string private_key_file{};
};

/// What a server presents.
struct TlsServerOptions {
  /// PEM: the server's certificate, then its intermediate CAs.
  std::string certificate_file{};
  std::string private_key_file{};
  /// Protocols accepted through ALPN, most preferred first; empty: ALPN is ignored.
  std::vector<std::string> alpn{};
  TlsVersion min_version = TlsVersion::tls1_2;
  /// Issues session tickets (and keeps a session cache) so that clients can resume.
  bool session_resumption = true;
};

/// What a failed handshake or TLS operation throws in the coroutine face: the error code, and as
/// `what()` the reason (`TlsStream::error_reason()` in the callback face).
class TlsError : public std::system_error {
 public:
  TlsError(std::error_code ec, std::string reason) : std::system_error(ec), reason_(std::move(reason)) {}
  const char* what() const noexcept override { return reason_.c_str(); }

 private:
  std::string reason_;
};

class TlsStream;

namespace detail {
struct TlsContextImpl;
class TlsSession;
struct StreamAccess;
void start_tls(HandlePtr<StreamImpl> transport, const std::shared_ptr<TlsContextImpl>& ctx, bool server,
               std::string server_name, std::uint64_t timeout_ms, UniqueFunction<void(std::error_code, TlsStream)> cb,
               std::stop_token token);
}  // namespace detail

/// The settings shared by many connections (OpenSSL's SSL_CTX): copyable, cheap to copy.
class TlsContext {
 public:
  /// A client context. Throws `TlsError` (errc::invalid_argument) for a CA file, directory,
  /// certificate or key that cannot be read.
  static TlsContext client(const TlsClientOptions& options = {});
  /// A server context. Throws `TlsError` for a certificate or key that cannot be read or do not match.
  static TlsContext server(const TlsServerOptions& options);

  bool is_server() const noexcept;
  /// Client sessions kept for resumption (one per server name and port).
  std::size_t cached_sessions() const noexcept;

  /// The implementation (for duet's own layers).
  const std::shared_ptr<detail::TlsContextImpl>& impl() const noexcept { return impl_; }

 private:
  explicit TlsContext(std::shared_ptr<detail::TlsContextImpl> impl) noexcept : impl_(std::move(impl)) {}
  std::shared_ptr<detail::TlsContextImpl> impl_;
};

/// An encrypted stream, made by `tls_connect` or `tls_accept`. Move-only.
class TlsStream {
 public:
  TlsStream() noexcept = default;
  TlsStream(TlsStream&&) noexcept = default;
  TlsStream& operator=(TlsStream&&) noexcept = default;
  ~TlsStream() = default;

  /// True from a successful handshake until `close()` (or until the loop is destroyed).
  bool is_open() const noexcept { return static_cast<bool>(impl_); }

  /// Reads once into `buffer`; calls `cb(std::error_code, std::size_t)` (0: close_notify received).
  template <class Callback>
  void read(std::span<char> buffer, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    read_once(buffer, detail::UniqueFunction<void(std::error_code, std::size_t)>(std::forward<Callback>(cb)),
              std::move(token));
  }
  /// Coroutine face: `std::size_t n = co_await tls.read(buffer);` (0: end of stream).
  template <class = void>
  [[nodiscard]] auto read(std::span<char> buffer) {
    return awaitable<std::size_t>([this, buffer](auto cb) { read(buffer, std::move(cb)); });
  }

  /// Calls `cb(std::error_code, std::span<const char>)` for each decrypted chunk until `read_stop()`,
  /// end of stream (an empty chunk) or an error. The chunk is valid only during the callback.
  template <class Callback>
  void read_start(Callback&& cb) {
    read_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>)>(std::forward<Callback>(cb)));
  }
  /// Pauses `read_start` delivery, and the transport's reading with it. Safe when not reading.
  void read_stop() noexcept;

  /// Encrypts and sends `bytes`; calls `cb(std::error_code)` once the record is handed to the kernel.
  template <class Callback>
  void write(std::string bytes, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    const bool from_library = detail::from_library(cb);
    write_erased(std::move(bytes), detail::UniqueFunction<void(std::error_code)>(std::forward<Callback>(cb)),
                 std::move(token), from_library);
  }
  /// Coroutine face: `co_await tls.write(std::move(bytes));`
  template <class = void>
  [[nodiscard]] auto write(std::string bytes) {
    return awaitable<void>(
        [this, bytes = std::move(bytes)](auto cb) mutable { write(std::move(bytes), std::move(cb)); });
  }

  /// Sends close_notify after pending writes, then ends the transport's sending side; calls
  /// `cb(std::error_code)`. The stream may still read what the peer sends until it closes.
  template <class Callback>
  void shutdown(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    const bool from_library = detail::from_library(cb);
    shutdown_erased(detail::UniqueFunction<void(std::error_code)>(std::forward<Callback>(cb)), std::move(token),
                    from_library);
  }
  /// Coroutine face: `co_await tls.shutdown();`
  template <class = void>
  [[nodiscard]] auto shutdown() {
    return awaitable<void>([this](auto cb) { shutdown(std::move(cb)); });
  }

  /// Closes the stream and its transport now, after sending close_notify if the kernel takes it at
  /// once (it never waits: a peer that does not read gets none). Idempotent.
  void close() noexcept;
  /// Closes the stream and its transport now, without close_notify (the peer sees a truncation).
  void abort() noexcept;

  /// As `Stream::keep_loop_alive`: false for a stream kept idle (a pooled connection).
  void keep_loop_alive(bool keep) noexcept;
  /// Encrypted bytes queued on the transport, not yet handed to the kernel.
  std::size_t write_queue_size() const noexcept;

  /// The protocol ALPN chose ("http/1.1"), or empty.
  std::string alpn_protocol() const;
  /// "TLSv1.3", "TLSv1.2", or empty when closed.
  std::string version() const;
  /// True if the handshake resumed an earlier session.
  bool session_reused() const noexcept;
  /// What went wrong last: the reason behind the last error this stream (or its failed handshake)
  /// reported; empty if none.
  const std::string& error_reason() const noexcept;

 private:
  friend class detail::TlsSession;
  friend void detail::start_tls(detail::HandlePtr<detail::StreamImpl>, const std::shared_ptr<detail::TlsContextImpl>&,
                                bool, std::string, std::uint64_t,
                                detail::UniqueFunction<void(std::error_code, TlsStream)>, std::stop_token);
  explicit TlsStream(detail::HandlePtr<detail::TlsSession> impl) noexcept;
  explicit TlsStream(std::string reason) noexcept : reason_(std::move(reason)) {}

  void read_once(std::span<char> buffer, detail::UniqueFunction<void(std::error_code, std::size_t)> cb,
                 std::stop_token token);
  void read_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>)> cb);
  void write_erased(std::string bytes, detail::UniqueFunction<void(std::error_code)> cb, std::stop_token token,
                    bool from_library);
  void shutdown_erased(detail::UniqueFunction<void(std::error_code)> cb, std::stop_token token, bool from_library);
  detail::TlsSession* open_impl(const char* what) const;

  detail::HandlePtr<detail::TlsSession> impl_;
  std::string reason_;
};

namespace detail {

/// Hands a stream's handle over to the TLS layer.
struct StreamAccess {
  static HandlePtr<StreamImpl> take(Stream& s) noexcept { return std::move(s.impl_); }
};

/// The coroutine face's callback: passes the stream's reason on as a `TlsError`.
template <class Completion>
struct TlsCompletion {
  Completion done;
  std::stop_token stop_token() const { return stop_token_of(done); }
  void operator()(std::error_code ec, TlsStream s) {
    std::exception_ptr e;
    if (ec && !is_cancelled(ec)) e = std::make_exception_ptr(TlsError(ec, s.error_reason()));
    done(ec, std::move(s), std::move(e));
  }
};

template <class S>
concept TransportStream = std::derived_from<std::remove_cvref_t<S>, Stream> && !std::is_lvalue_reference_v<S>;

}  // namespace detail

/// Client handshake over `transport` (connected; moved in), verifying the peer as `server_name` (also
/// sent as SNI, unless it is an IP address). Gives up after `timeout` (UV_ETIMEDOUT; zero: no
/// timeout). Calls `cb(std::error_code, TlsStream)`; on failure the stream is closed (as is the
/// transport) and carries the reason.
template <detail::TransportStream S, class Rep, class Period, class Callback>
requires std::invocable<Callback&, std::error_code, TlsStream>
void tls_connect(S&& transport, const TlsContext& ctx, std::string server_name,
                 std::chrono::duration<Rep, Period> timeout, Callback&& cb) {
  std::stop_token token = stop_token_of(cb);
  detail::start_tls(
      detail::StreamAccess::take(transport), ctx.impl(), false, std::move(server_name), detail::to_uv_millis(timeout),
      detail::UniqueFunction<void(std::error_code, TlsStream)>(std::forward<Callback>(cb)), std::move(token));
}
/// Coroutine face: `TlsStream tls = co_await tls_connect(std::move(tcp), ctx, "host", 10s);` Throws
/// `TlsError` (or `TimedOut`, `Cancelled`, `std::system_error` for a transport error). The awaitable
/// holds its own copy of `ctx` (a handle), so it may be made from a temporary and awaited later.
template <detail::TransportStream S, class Rep, class Period>
[[nodiscard]] auto tls_connect(S&& transport, const TlsContext& ctx, std::string server_name,
                               std::chrono::duration<Rep, Period> timeout) {
  return awaitable<TlsStream>([t = std::move(transport), ctx, name = std::move(server_name), timeout](auto cb) mutable {
    tls_connect(std::move(t), ctx, std::move(name), timeout, detail::TlsCompletion<decltype(cb)>{std::move(cb)});
  });
}

/// Server handshake over an accepted `transport`, with a server context. As `tls_connect` otherwise.
template <detail::TransportStream S, class Rep, class Period, class Callback>
requires std::invocable<Callback&, std::error_code, TlsStream>
void tls_accept(S&& transport, const TlsContext& ctx, std::chrono::duration<Rep, Period> timeout, Callback&& cb) {
  std::stop_token token = stop_token_of(cb);
  detail::start_tls(
      detail::StreamAccess::take(transport), ctx.impl(), true, std::string(), detail::to_uv_millis(timeout),
      detail::UniqueFunction<void(std::error_code, TlsStream)>(std::forward<Callback>(cb)), std::move(token));
}
/// Coroutine face: `TlsStream tls = co_await tls_accept(std::move(tcp), ctx, 10s);`
template <detail::TransportStream S, class Rep, class Period>
[[nodiscard]] auto tls_accept(S&& transport, const TlsContext& ctx, std::chrono::duration<Rep, Period> timeout) {
  return awaitable<TlsStream>([t = std::move(transport), ctx, timeout](auto cb) mutable {
    tls_accept(std::move(t), ctx, timeout, detail::TlsCompletion<decltype(cb)>{std::move(cb)});
  });
}

}  // namespace duet
