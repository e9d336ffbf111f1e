// duet/http/detail/response_parser.hpp — one HTTP/1.x response at a time, parsed by llhttp.
//
// Bytes go in as they arrive (`feed`, any split); the parser stops at the end of one response and
// says how many bytes it used (the rest belong to the next one). Handles Content-Length, chunked and
// close-delimited bodies (`finish` at end of stream), skips 1xx interim responses, knows that a
// response to HEAD, and a 204 or 304, has no body whatever its headers say, and enforces limits on
// the header block (bytes and fields) and the body. Trailer fields are checked and dropped, never
// merged into the headers. What llhttp 8.1.0 lets through in the framing (a bare CR in the head, a
// chunk not followed by CRLF) is checked again by a `FramingCheck`. A malformed response (an unsolicited
// 101 included) fails with `duet::errc::malformed_response` and the reason; a limit with
// `errc::header_too_large` / `errc::body_too_large`; an end of stream before the response is
// complete with `errc::malformed_response` ("truncated ...").
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>

#include "duet/detail/unique_function.hpp"
#include "duet/http/detail/framing_check.hpp"
#include "duet/http/detail/head_collector.hpp"
#include "duet/http/message.hpp"

namespace duet::http::detail {

struct ParserLimits {
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_header_fields = 100;
  std::size_t max_body_bytes = 16 * 1024 * 1024;
};

class ResponseParser {
 public:
  enum class State { incomplete, complete, failed };

  explicit ResponseParser(ParserLimits limits = {}) noexcept;
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  /// Prepares for the next response; `head` if it answers a HEAD request (no body follows). Clears
  /// any body sink: each response sets its own.
  void reset(bool head = false);
  /// Streams the body to `*sink` instead of collecting it in `response().body` (call after `reset`).
  /// The caller keeps the sink alive while this parser parses.
  void stream_body_to(duet::detail::UniqueFunction<void(std::string_view)>* sink) noexcept { sink_ = sink; }

  /// Parses `data`; `consumed` is how much of it belongs to this response.
  State feed(std::string_view data, std::size_t& consumed);
  /// The peer closed the connection: completes a close-delimited body, or fails a partial response.
  State finish();

  State state() const noexcept { return state_; }
  Response& response() noexcept { return response_; }
  /// Whether the connection may carry another response (llhttp's keep-alive verdict).
  bool keep_alive() const noexcept { return keep_alive_; }
  /// True once any byte of this response has arrived.
  bool started() const noexcept { return started_; }
  /// True once the final (non-1xx) response's header block is complete.
  bool headers_complete() const noexcept { return headers_complete_; }
  std::error_code error() const noexcept { return error_; }
  const std::string& error_reason() const noexcept { return reason_; }

 private:
  static int on_message_begin(llhttp_t*) noexcept;
  static int on_status(llhttp_t*, const char*, std::size_t) noexcept;
  static int on_header_field(llhttp_t*, const char*, std::size_t) noexcept;
  static int on_header_value(llhttp_t*, const char*, std::size_t) noexcept;
  static int on_header_value_complete(llhttp_t*) noexcept;
  static int on_headers_complete(llhttp_t*) noexcept;
  static int on_body(llhttp_t*, const char*, std::size_t) noexcept;
  static int on_message_complete(llhttp_t*) noexcept;

  int fail(std::error_code ec, std::string reason) noexcept;
  int field_done() noexcept;
  int too_large() noexcept;
  State check_framing(const char* data, std::size_t len);
  State after_execute(llhttp_errno_t rc, const char* data, std::size_t len, std::size_t& consumed);

  friend const llhttp_settings_t& llhttp_settings_for<ResponseParser, HTTP_RESPONSE>() noexcept;

  llhttp_t parser_{};
  ParserLimits limits_;
  Response response_;
  duet::detail::UniqueFunction<void(std::string_view)>* sink_ = nullptr;
  HeadCollector head_parts_;
  FramingCheck framing_;
  std::size_t body_bytes_ = 0;
  State state_ = State::incomplete;
  std::error_code error_;
  std::string reason_;
  bool head_ = false;
  bool informational_ = false;
  bool keep_alive_ = false;
  bool started_ = false;
  bool headers_complete_ = false;
};

}  // namespace duet::http::detail
