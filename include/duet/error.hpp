// duet/error.hpp — errors as values: libuv's codes and duet's own, both as std::error_code.
//
// Every callback-form operation reports failure through a `std::error_code` (first argument); the
// coroutine face throws `std::system_error` carrying the same code. Two categories:
//
// - `duet::uv_category()`: libuv's negative error numbers (`UV_ECONNREFUSED`, `UV_EAI_NONAME`, ...).
//   `ec.message()` is libuv's `uv_strerror`, `duet::error_name(ec)` its `uv_err_name` ("ECONNREFUSED").
//   Codes that mirror an errno compare equal to the portable `std::errc` condition, so
//   `ec == std::errc::connection_refused` works.
// - `duet::error_category()`: duet's own codes (`duet::errc`) for the layers above libuv.
//
// Cancellation is always `UV_ECANCELED` (test with `duet::is_cancelled(ec)`); a timeout set through
// duet's options is `UV_ETIMEDOUT`. Neither function allocates; both categories are immortal singletons.
#pragma once

#include <string>
#include <system_error>

namespace duet {

/// libuv's error category. `value()` is libuv's (negative) error number.
const std::error_category& uv_category() noexcept;

/// Wraps a libuv status (< 0) as an error_code; 0 and positive values give a success code.
inline std::error_code uv_error(int status) noexcept {
  return status < 0 ? std::error_code(status, uv_category()) : std::error_code();
}

/// duet's own error codes, for what libuv does not know about.
enum class errc {
  offload_threw = 1,   ///< the function given to `offload` threw (the exception is reported with it)
  loop_closed,         ///< the loop was destroyed while the operation was pending
  not_connected,       ///< an operation on a stream never connected, or on any closed duet object
  already_reading,     ///< a second reader (or waiter) on a stream, socket or handle that has one
  invalid_argument,    ///< an argument duet rejected before reaching libuv
  malformed_response,  ///< HTTP: a peer sent bytes that are not HTTP (llhttp's reason is attached)
  header_too_large,    ///< HTTP: the header block passed its limit
  body_too_large,      ///< HTTP: the body passed its limit
  bad_url,             ///< HTTP: a URL that does not parse
  unsupported_scheme,  ///< HTTP: a URL scheme other than http and https
  too_many_redirects,  ///< HTTP: the redirect limit was reached
  tls_untrusted_issuer,  ///< TLS: the certificate chain does not lead to a trusted CA
  tls_hostname_mismatch,  ///< TLS: the certificate is not for the name (or IP address) connected to
  tls_certificate_expired,  ///< TLS: the certificate has expired (or is not valid yet)
  tls_certificate_invalid,  ///< TLS: any other certificate verification failure
  tls_handshake_failed,  ///< TLS: the handshake failed (OpenSSL's reason is attached)
  tls_truncated,  ///< TLS: the peer closed without close_notify (the data may be cut short)
  tls_protocol_error,  ///< TLS: a corrupt or unexpected record after the handshake
  insecure_redirect,  ///< HTTP: a redirect from https to http (refused by default)
  queue_closed,  ///< Queue: closed (a push is refused; a pop finds it closed and empty)
  body_producer_failed,  ///< HTTP: a streamed body's producer threw, or dropped its `BodyPiece` uncalled
};

/// duet's own error category.
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// The short name of a code: libuv's for `uv_category()` ("ECONNREFUSED"), the enumerator's for duet's
/// own (`errc::unsupported_scheme`: "unsupported_scheme"); for any other category (or a value duet does
/// not define), the category's name and the value ("generic:2", "duet:99").
std::string error_name(const std::error_code& ec);

/// True if `ec` means "cancelled" (libuv's UV_ECANCELED).
bool is_cancelled(const std::error_code& ec) noexcept;

}  // namespace duet

template <>
struct std::is_error_code_enum<duet::errc> : std::true_type {};
