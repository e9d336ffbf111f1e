// duet/http/url.hpp — HTTP URLs: parse, normalise, resolve a redirect's Location against a base.
//
//     auto url = duet::http::Url::parse("http://[::1]:8001/flags/br/br.gif?x=1#top");
//     url.host;       // "::1"          url.port;  // 8001
//     url.path;       // "/flags/br/br.gif"         url.query; // "x=1"   (the fragment is dropped)
//     url.target();   // "/flags/br/br.gif?x=1"     — what goes on the request line
//     url.authority();// "[::1]:8001"               — what goes in the Host header
//
// Accepted: `http://` and `https://` URLs (scheme and host case-insensitive, kept lower-case),
// registered names, IPv4 and bracketed IPv6 literals, an optional port (1–65535, default 80 for http
// and 443 for https), a path and a query. The
// path and query are kept percent-encoded as sent on the wire: bytes that may not appear raw (spaces,
// controls, non-ASCII, ...) are encoded, existing `%XX` escapes are kept, a malformed escape is an
// error. An empty path becomes "/".
//
// Errors are `std::system_error` with `duet::errc::bad_url` (what is wrong is in `what()`), or
// `duet::errc::unsupported_scheme` (any scheme but http and https). `Url::parse(text, ec)`
// reports the same without throwing. Pure functions: no I/O, no locale.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "duet/error.hpp"

namespace duet::http {

struct Url {
  std::string scheme = "http";
  std::string host;         ///< without brackets for IPv6
  std::uint16_t port = 80;  ///< the explicit port, or the scheme's default
  std::string path = "/";   ///< percent-encoded, starts with '/'
  std::string query;        ///< percent-encoded, without the '?'

  /// Parses `text`; throws `std::system_error` (errc::bad_url or errc::unsupported_scheme).
  static Url parse(std::string_view text);
  /// Parses `text`; on failure sets `ec` (and `why`, if given, to a human-readable reason).
  static std::optional<Url> parse(std::string_view text, std::error_code& ec, std::string* why = nullptr);

  /// Resolves a reference (a redirect's Location: absolute, `//host/...`, `/path`, or relative
  /// `a/b`, `../c`, `?q`) against this URL, as RFC 3986 section 5 does. Throws as `parse` does.
  Url resolve(std::string_view reference) const;

  /// path + "?" + query (the request target).
  std::string target() const;
  /// host, with brackets for IPv6, and ":port" unless it is the default (the Host header).
  std::string authority() const;
  /// Appends `authority()` to `out` (no temporary string: the client writes a Host header per request).
  void append_authority(std::string& out) const;
  /// The whole URL, normalised.
  std::string to_string() const;
  /// True for https:// (TLS).
  bool secure() const noexcept { return scheme == "https"; }
  /// 443 for https, 80 for http.
  std::uint16_t default_port() const noexcept { return secure() ? 443 : 80; }
  /// True if the host is an IPv6 literal.
  bool host_is_ipv6() const noexcept { return host.find(':') != std::string::npos; }

  friend bool operator==(const Url&, const Url&) = default;
};

/// Percent-decodes `text` ("%20" -> " "); throws std::system_error(errc::bad_url) on a malformed escape.
std::string percent_decode(std::string_view text);

namespace detail {
/// `Url::parse(text, ec, why)` into an existing Url, for the client, which parses a URL per request
/// straight into the request it sends. On failure returns false and leaves `url` unspecified.
bool parse_url_into(std::string_view text, Url& url, std::error_code& ec, std::string* why);
/// Whether `text` is an authority a URL could hold, `host[:port]` (as `parse` takes one, without
/// credentials): what a server checks a request's Host field against.
bool valid_authority(std::string_view text);
}  // namespace detail

}  // namespace duet::http
