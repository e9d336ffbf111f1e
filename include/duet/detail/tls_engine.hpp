// duet/detail/tls_engine.hpp — one TLS connection's OpenSSL state, with no I/O of its own: ciphertext
// goes in through `feed`, out through `take_output`; plaintext in through `write`, out through `read`.
// `TlsStream` (tls.hpp) moves the ciphertext over a duet stream; the fuzzer feeds it arbitrary bytes.
//
// Every call clears OpenSSL's (thread-local) error queue first and reads it after, so a failure's
// reason is this connection's. Loop-thread only (one engine per connection; contexts are shared).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

struct ssl_st;
struct bio_st;

namespace duet::detail {

struct TlsContextImpl;

class TlsEngine {
 public:
  enum class Status {
    ok,      ///< done (handshake complete, bytes read or written)
    more,    ///< needs more ciphertext from the peer
    closed,  ///< the peer sent close_notify
    failed,  ///< see error() and reason()
  };

  /// A client (verifying the peer as `server_name` unless the context skips verification; SNI sent
  /// for a name, not for an IP address) or a server. `session_key` names the server for session
  /// resumption (empty: none). Throws `std::system_error` if OpenSSL cannot make the connection or the
  /// name is unusable (errc::invalid_argument).
  TlsEngine(std::shared_ptr<TlsContextImpl> ctx, bool server, const std::string& server_name, std::string session_key);
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  /// Ciphertext received from the peer.
  void feed(const char* data, std::size_t n);
  /// Advances the handshake: ok once it is complete.
  Status handshake();
  bool handshake_done() const noexcept { return done_; }
  /// Decrypts up to `n` bytes into `buffer`; `got` is how many (only with Status::ok).
  Status read(char* buffer, std::size_t n, std::size_t& got);
  /// True if bytes from the peer wait inside the engine (a `read` may give something without more).
  bool has_buffered() const noexcept;
  /// Encrypts `bytes` (after the handshake); the records are then in the output.
  Status write(std::string_view bytes);
  /// Queues close_notify in the output.
  void close_notify();
  bool received_close_notify() const noexcept;

  /// Ciphertext waiting to be sent to the peer; `take_output` empties it.
  bool has_output() const noexcept;
  std::string take_output();

  std::error_code error() const noexcept { return error_; }
  const std::string& reason() const noexcept { return reason_; }

  std::string alpn_protocol() const;
  std::string version() const;
  bool session_reused() const noexcept;
  const std::string& session_key() const noexcept { return session_key_; }
  /// The peer asked for renegotiation (OpenSSL's message callback): the next read fails.
  void renegotiation_asked() noexcept { renegotiation_ = true; }

 private:
  Status fail_handshake();
  Status fail(std::error_code ec, std::string reason);

  std::shared_ptr<TlsContextImpl> ctx_;
  ssl_st* ssl_ = nullptr;
  bio_st* in_ = nullptr;   // ciphertext from the peer (owned by ssl_)
  bio_st* out_ = nullptr;  // ciphertext for the peer (owned by ssl_)
  std::string session_key_;
  bool done_ = false;
  bool renegotiation_ = false;
  std::error_code error_;
  std::string reason_;
};

}  // namespace duet::detail
