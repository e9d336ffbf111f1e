#include <uv.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/error.hpp"

TEST_CASE("libuv codes become error_codes with libuv's names and messages", "[error]") {
  const std::error_code ec = duet::uv_error(UV_ECONNREFUSED);
  CHECK(ec);
  CHECK(ec.category() == duet::uv_category());
  CHECK(std::string(ec.category().name()) == "libuv");
  CHECK(ec.message() == uv_strerror(UV_ECONNREFUSED));
  CHECK(duet::error_name(ec) == "ECONNREFUSED");
  CHECK_FALSE(duet::uv_error(0));
  CHECK_FALSE(duet::uv_error(42));  // positive results (byte counts) are not errors
}

TEST_CASE("libuv codes compare equal to the portable std::errc conditions", "[error]") {
  CHECK(duet::uv_error(UV_ECONNREFUSED) == std::errc::connection_refused);
  CHECK(duet::uv_error(UV_ENOENT) == std::errc::no_such_file_or_directory);
  CHECK(duet::uv_error(UV_ETIMEDOUT) == std::errc::timed_out);
  CHECK(duet::uv_error(UV_ENOENT) != std::errc::permission_denied);
  // getaddrinfo's codes have no errno equivalent: they stay libuv's.
  CHECK(duet::uv_error(UV_EAI_NONAME).default_error_condition().category() == duet::uv_category());
}

TEST_CASE("duet's own codes have their own category and messages", "[error]") {
  const std::error_code ec = duet::errc::offload_threw;  // implicit conversion via is_error_code_enum
  CHECK(ec.category() == duet::error_category());
  CHECK(std::string(ec.category().name()) == "duet");
  CHECK(ec.message() == "the offloaded function threw an exception");
  CHECK(duet::make_error_code(duet::errc::unsupported_scheme).message() == "unsupported URL scheme");
  CHECK(duet::make_error_code(duet::errc::tls_truncated).message().find("close_notify") != std::string::npos);
  CHECK(duet::error_name(ec) == "offload_threw");
  CHECK(ec != duet::uv_error(1));
}

TEST_CASE("error_name gives duet's own codes their enumerator's name", "[error]") {
  using duet::errc;
  const std::pair<errc, const char*> names[] = {
      {errc::offload_threw, "offload_threw"},
      {errc::loop_closed, "loop_closed"},
      {errc::not_connected, "not_connected"},
      {errc::already_reading, "already_reading"},
      {errc::invalid_argument, "invalid_argument"},
      {errc::malformed_response, "malformed_response"},
      {errc::header_too_large, "header_too_large"},
      {errc::body_too_large, "body_too_large"},
      {errc::bad_url, "bad_url"},
      {errc::unsupported_scheme, "unsupported_scheme"},
      {errc::too_many_redirects, "too_many_redirects"},
      {errc::tls_untrusted_issuer, "tls_untrusted_issuer"},
      {errc::tls_hostname_mismatch, "tls_hostname_mismatch"},
      {errc::tls_certificate_expired, "tls_certificate_expired"},
      {errc::tls_certificate_invalid, "tls_certificate_invalid"},
      {errc::tls_handshake_failed, "tls_handshake_failed"},
      {errc::tls_truncated, "tls_truncated"},
      {errc::tls_protocol_error, "tls_protocol_error"},
      {errc::insecure_redirect, "insecure_redirect"},
      {errc::queue_closed, "queue_closed"},
      {errc::body_producer_failed, "body_producer_failed"},
  };
  for (auto [code, name] : names) CHECK(duet::error_name(duet::make_error_code(code)) == name);
  // A value duet does not define, and codes of other categories, keep "category:value".
  CHECK(duet::error_name(std::error_code(99, duet::error_category())) == "duet:99");
  CHECK(duet::error_name(std::make_error_code(std::errc::no_such_file_or_directory)) ==
        "generic:" + std::to_string(ENOENT));
}

TEST_CASE("TimedOut says 'timed out', whatever ran out — Cancelled carries UV_ECANCELED", "[error]") {
  const duet::TimedOut timed_out;
  CHECK(std::string(timed_out.what()) == "timed out");
  CHECK(timed_out.code() == duet::uv_error(UV_ETIMEDOUT));
  CHECK(timed_out.code() == std::errc::timed_out);
  const duet::Cancelled cancelled;
  CHECK(duet::is_cancelled(cancelled.code()));
}

TEST_CASE("is_cancelled recognises libuv's UV_ECANCELED only", "[error]") {
  CHECK(duet::is_cancelled(duet::uv_error(UV_ECANCELED)));
  CHECK_FALSE(duet::is_cancelled(duet::uv_error(UV_ETIMEDOUT)));
  CHECK_FALSE(duet::is_cancelled(std::error_code(-UV_ECANCELED, std::generic_category())));
  CHECK_FALSE(duet::is_cancelled({}));
}
