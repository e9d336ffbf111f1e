// duet/http/message.hpp — HTTP messages: Headers, Request, Response.
//
// Plain values. `Headers` keeps fields in the order they came (repeats included) and looks names up
// case-insensitively, as HTTP requires: `res.headers.get("content-type")`.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "duet/detail/chrono.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/http/url.hpp"

namespace duet::http {

/// True if `a` and `b` are equal ignoring ASCII case.
bool iequals(std::string_view a, std::string_view b) noexcept;

/// True if `s` is an HTTP token (RFC 9110 §5.6.2): one or more of the letters, digits and
/// ``!#$%&'*+-.^_`|~``. Field names and methods are tokens.
bool is_token(std::string_view s) noexcept;
/// True if `s` may be sent as a field value or a reason phrase: no control characters but HTAB (so no
/// CR, LF or NUL: nothing that could end a line and begin another), bytes 0x80 and up allowed as opaque.
bool is_field_value(std::string_view s) noexcept;

/// Hands over a streamed body's next piece: call it once, now or later, with the piece; an empty
/// piece ends the body, an error code fails the transfer with it.
using BodyPiece = duet::detail::UniqueFunction<void(std::error_code, std::string)>;
/// Produces a streamed body, piece by piece (`Client::upload`'s request body, `Reply::stream`'s
/// response body): called each time the connection is ready for the next piece (the one before it
/// has been taken by the kernel), with the `BodyPiece` to answer with. So a peer that stops reading
/// stops the producer: nothing piles up. No deadline runs while the producer works; a producer that
/// throws, or lets its `BodyPiece` be destroyed uncalled, fails the transfer
/// (`errc::body_producer_failed`), since no piece could come after.
using BodySource = duet::detail::UniqueFunction<void(BodyPiece)>;

namespace detail {
class HeadCollector;
}  // namespace detail

class Headers {
 public:
  using Field = std::pair<std::string, std::string>;

  /// Appends a field (a repeated name adds another field).
  void add(std::string name, std::string value);
  /// Replaces every field named `name` with one.
  void set(std::string name, std::string value);
  /// The first value of `name`, if any.
  std::optional<std::string_view> get(std::string_view name) const noexcept;
  /// Every value of `name`, in order.
  std::vector<std::string_view> get_all(std::string_view name) const;
  bool contains(std::string_view name) const noexcept;
  /// Removes every field named `name`.
  void remove(std::string_view name);

  std::size_t size() const noexcept { return fields_.size(); }
  bool empty() const noexcept { return fields_.empty(); }
  auto begin() const noexcept { return fields_.begin(); }
  auto end() const noexcept { return fields_.end(); }
  void clear() noexcept { fields_.clear(); }
  /// Makes room for `n` fields, so that adding them one by one allocates once.
  void reserve(std::size_t n);

  friend bool operator==(const Headers&, const Headers&) = default;

 private:
  friend class detail::HeadCollector;  // the parsers build each field in place, piece by piece
  std::vector<Field> fields_;
};

struct Response {
  int status = 0;      ///< 200, 404, ...
  std::string reason;  ///< "OK", "Not Found", as the server sent it
  Headers headers;
  std::string body;       ///< empty when the body was streamed to a callback instead
  int version_minor = 1;  ///< HTTP/1.x

  friend bool operator==(const Response&, const Response&) = default;
};

struct Request {
  std::string method = "GET";  ///< a token: anything else is refused before a byte is sent
  Url url;
  Headers headers;  ///< names are tokens, values hold no CR, LF or other control byte (else refused)
  std::string body;
  /// This request's deadline, from the call to the response, redirects included; 0: the client's
  /// `ClientOptions::request_timeout`.
  std::chrono::milliseconds timeout{0};
  /// This request's body limit: for a buffered body, instead of `ClientOptions::max_body_bytes`; for a
  /// streamed one (which has none by default), its limit. Past it the request fails with
  /// `errc::body_too_large`.
  std::optional<std::size_t> max_body_bytes;
  /// Redirects this request follows, instead of `ClientOptions::max_redirects` (0: none).
  std::optional<int> max_redirects;
  /// Ask for a compressed body and decode it: sends `Accept-Encoding: gzip, deflate` (unless the
  /// headers set Accept-Encoding) and decodes a gzip or deflate Content-Encoding; the body limit
  /// counts decoded bytes (a decompression bomb fails with `errc::body_too_large`), and the
  /// response's Content-Encoding and Content-Length, which describe the encoded body, are removed.
  bool decompress = false;
};

}  // namespace duet::http
