#include "duet/error.hpp"

#include <uv.h>

namespace duet {
namespace {

class UvCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "libuv"; }
  std::string message(int ev) const override { return uv_strerror(ev); }
  std::error_condition default_error_condition(int ev) const noexcept override {
    // On Unix libuv's codes are negated errno values (small numbers), except the getaddrinfo family
    // (UV_EAI_*, around -3000) and libuv's own (UV_EOF, UV_UNKNOWN, ... around -4000), which have no
    // errno: those stay in this category.
    if (ev < 0 && ev > -1000) return std::generic_category().default_error_condition(-ev);
    return {ev, *this};
  }
};

class DuetCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "duet"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::offload_threw:
        return "the offloaded function threw an exception";
      case errc::loop_closed:
        return "the loop was closed while the operation was pending";
      case errc::not_connected:
        return "not connected, or closed";
      case errc::already_reading:
        return "already being read or waited on";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::malformed_response:
        return "malformed HTTP message";
      case errc::header_too_large:
        return "HTTP header block too large";
      case errc::body_too_large:
        return "HTTP body too large";
      case errc::bad_url:
        return "malformed URL";
      case errc::unsupported_scheme:
        return "unsupported URL scheme";
      case errc::too_many_redirects:
        return "too many redirects";
      case errc::tls_untrusted_issuer:
        return "the certificate is not signed by a trusted CA";
      case errc::tls_hostname_mismatch:
        return "the certificate does not match the host name";
      case errc::tls_certificate_expired:
        return "the certificate has expired or is not yet valid";
      case errc::tls_certificate_invalid:
        return "the certificate failed verification";
      case errc::tls_handshake_failed:
        return "the TLS handshake failed";
      case errc::tls_truncated:
        return "the TLS peer closed the connection without close_notify (truncated)";
      case errc::tls_protocol_error:
        return "TLS protocol error";
      case errc::insecure_redirect:
        return "redirect from https to http refused";
      case errc::queue_closed:
        return "the queue is closed";
      case errc::body_producer_failed:
        return "a streamed body's producer threw or dropped its piece unanswered";
    }
    return "unknown duet error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& uv_category() noexcept {
  static const UvCategory category;
  return category;
}

const std::error_category& error_category() noexcept {
  static const DuetCategory category;
  return category;
}

namespace {
const char* duet_error_name(int ev) noexcept {
  switch (static_cast<errc>(ev)) {
    case errc::offload_threw:
      return "offload_threw";
    case errc::loop_closed:
      return "loop_closed";
    case errc::not_connected:
      return "not_connected";
    case errc::already_reading:
      return "already_reading";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::malformed_response:
      return "malformed_response";
    case errc::header_too_large:
      return "header_too_large";
    case errc::body_too_large:
      return "body_too_large";
    case errc::bad_url:
      return "bad_url";
    case errc::unsupported_scheme:
      return "unsupported_scheme";
    case errc::too_many_redirects:
      return "too_many_redirects";
    case errc::tls_untrusted_issuer:
      return "tls_untrusted_issuer";
    case errc::tls_hostname_mismatch:
      return "tls_hostname_mismatch";
    case errc::tls_certificate_expired:
      return "tls_certificate_expired";
    case errc::tls_certificate_invalid:
      return "tls_certificate_invalid";
    case errc::tls_handshake_failed:
      return "tls_handshake_failed";
    case errc::tls_truncated:
      return "tls_truncated";
    case errc::tls_protocol_error:
      return "tls_protocol_error";
    case errc::insecure_redirect:
      return "insecure_redirect";
    case errc::queue_closed:
      return "queue_closed";
    case errc::body_producer_failed:
      return "body_producer_failed";
  }
  return nullptr;
}
}  // namespace

std::string error_name(const std::error_code& ec) {
  if (ec.category() == uv_category()) return uv_err_name(ec.value());
  if (ec.category() == error_category()) {
    if (const char* name = duet_error_name(ec.value())) return name;
  }
  return std::string(ec.category().name()) + ":" + std::to_string(ec.value());
}

bool is_cancelled(const std::error_code& ec) noexcept {
  return ec.value() == UV_ECANCELED && ec.category() == uv_category();
}

}  // namespace duet

#include "duet/awaitable.hpp"

namespace duet::detail {

void throw_error(std::error_code ec) {
  if (ec.category() == uv_category()) {
    if (ec.value() == UV_ECANCELED) throw Cancelled();
    if (ec.value() == UV_ETIMEDOUT) throw TimedOut();
  }
  throw std::system_error(ec);
}

}  // namespace duet::detail
