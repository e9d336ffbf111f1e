// duet/http/detail/response_parser.hpp — one HTTP/1.x response at a time, parsed by llhttp.
//
// Bytes go in as they arrive (`feed`, any split); the parser stops at the end of one response and
// says how many bytes it used (the rest belong to the next one). Handles Content-Length, chunked and
// close-delimited bodies (`finish` at end of stream), skips 1xx interim responses, knows that a
// response to HEAD, and a 204 or 304, has no body whatever its headers say, and enforces limits on
// the header block (bytes and fields) and the body. Trailer fields are checked and dropped, never
// merged into the headers. What llhttp 8.1.0 lets through in the framing (a bare CR in the head, a
// chunk not followed by CRLF) and in the status line (`HTTP/1.1 0200`) is checked again by a
// `FramingCheck`, before llhttp acts on a head and before each piece of a chunked body is handed
// over. A malformed response (an unsolicited 101 included) fails with `duet::errc::malformed_response`
// and the reason; a limit with `errc::header_too_large` / `errc::body_too_large`; an end of stream
// before the response is complete with `errc::malformed_response` ("truncated ...").
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "duet/detail/unique_function.hpp"
#include "duet/http/detail/framing_check.hpp"
#include "duet/http/detail/head_collector.hpp"
#include "duet/http/message.hpp"

namespace duet::http::detail {

class BodyDecoder;

struct ParserLimits {
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_header_fields = 100;
  std::size_t max_body_bytes = 16 * 1024 * 1024;  ///< a buffered body
  std::size_t max_streamed_body_bytes = 0;        ///< a streamed body (0: no limit)
};

class ResponseParser {
 public:
  /// `paused`: the body's sink asked to pause (`pause_body`); `feed`'s `consumed` says where to go on
  /// from once `resume_body` has been called.
  enum class State { incomplete, paused, complete, failed };

  explicit ResponseParser(ParserLimits limits = {}) noexcept;
  ~ResponseParser();
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  /// Prepares for the next response; `head` if it answers a HEAD request (no body follows). Clears
  /// any body sink: each response sets its own.
  void reset(bool head = false);
  /// Whether the next response answers a HEAD request (after `reset`, which clears it).
  void expect_head(bool head) noexcept { head_ = head; }
  /// Streams the body to `*sink` instead of collecting it in `response().body` (call after `reset`).
  /// The caller keeps the sink alive while this parser parses.
  void stream_body_to(duet::detail::UniqueFunction<void(std::string_view)>* sink) noexcept { sink_ = sink; }

  /// Decodes a gzip or deflate Content-Encoding (from the next head on; call after `reset`): the body
  /// is handed over decoded, the limits count decoded bytes, and the response's Content-Encoding and
  /// Content-Length fields, which describe the encoded body, are removed.
  void decode_content(bool decode) noexcept { decode_ = decode; }

  /// Called from the sink: stop after this piece (`feed` returns `paused`). Called again from the sink
  /// with `false`, it takes the request back.
  void pause_body(bool pause = true) noexcept { pause_ = pause; }
  /// Goes on after `paused`: feed the bytes that were not consumed next.
  void resume_body() noexcept;
  /// Changes the limit on a buffered or streamed body (e.g. per request), after construction.
  void limit_body(std::size_t buffered, std::size_t streamed) noexcept {
    limits_.max_body_bytes = buffered;
    limits_.max_streamed_body_bytes = streamed;
  }

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
  /// True once a `100 Continue` has come (the server wants the request's body).
  bool continued() const noexcept { return continued_; }
  /// True once the final (non-1xx) response's header block is complete.
  bool headers_complete() const noexcept { return headers_complete_; }
  /// Body bytes received so far (before any decoding).
  std::uint64_t body_bytes() const noexcept { return body_bytes_; }
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
  int deliver(const char* at, std::size_t n) noexcept;
  static int deliver_decoded(void* self, const char* at, std::size_t n) noexcept;
  [[gnu::noinline]] int field_refused(FieldVerdict verdict) noexcept;  // a field's failure, named
  int too_large() noexcept;
  State check_framing(const char* end);  // from `checked_to_` to `end`
  State framing_failed();
  State after_execute(llhttp_errno_t rc, const char* data, std::size_t len, std::size_t& consumed);

  friend const llhttp_settings_t& llhttp_settings_for<ResponseParser, HTTP_RESPONSE>() noexcept;

  llhttp_t parser_{};
  ParserLimits limits_;
  Response response_;
  duet::detail::UniqueFunction<void(std::string_view)>* sink_ = nullptr;
  HeadCollector head_parts_;
  FramingCheck framing_{FramingCheck::Folding::allowed, FramingCheck::StartLine::response};
  const char* checked_to_ = nullptr;  // in the bytes llhttp is parsing: how far `framing_` has seen
  std::size_t body_bytes_ = 0;        // received
  std::size_t delivered_bytes_ = 0;   // decoded, when decoding
  std::unique_ptr<BodyDecoder> decoder_;
  State state_ = State::incomplete;
  std::error_code error_;
  std::string reason_;
  bool head_ = false;
  bool informational_ = false;
  bool keep_alive_ = false;
  bool started_ = false;
  bool headers_complete_ = false;
  bool pause_ = false;
  bool decode_ = false;
  bool continued_ = false;
  bool close_after_ = false;  // the connection ends with this response, whatever it says (HTTP/1.0 chunked)
};

}  // namespace duet::http::detail
