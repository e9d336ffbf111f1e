#include "duet/http/detail/response_parser.hpp"

#include "body_decoder.hpp"
#include "duet/error.hpp"

namespace duet::http::detail {
namespace {
ResponseParser& self_of(llhttp_t* p) noexcept { return *static_cast<ResponseParser*>(p->data); }
}  // namespace

ResponseParser::ResponseParser(ParserLimits limits) noexcept
    : limits_(limits), head_parts_(limits.max_header_bytes, limits.max_header_fields) {
  // Every other member starts as reset() leaves it (in-class initializers): only llhttp needs setting
  // up. (The client takes a parser per response, new or a spare that was reset when given back:
  // doing all of reset() here too would cost a new one about 200 instructions.)
  llhttp_init(&parser_, HTTP_RESPONSE, &llhttp_settings_for<ResponseParser, HTTP_RESPONSE>());
  parser_.data = this;
}

ResponseParser::~ResponseParser() = default;

void ResponseParser::reset(bool head) {
  llhttp_init(&parser_, HTTP_RESPONSE, &llhttp_settings_for<ResponseParser, HTTP_RESPONSE>());
  parser_.data = this;
  response_ = Response();
  sink_ = nullptr;
  head_parts_.reset();
  framing_.reset();
  body_bytes_ = 0;
  delivered_bytes_ = 0;
  decoder_.reset();
  decode_ = false;
  state_ = State::incomplete;
  error_.clear();
  reason_.clear();
  head_ = head;
  informational_ = false;
  keep_alive_ = false;
  started_ = false;
  headers_complete_ = false;
  pause_ = false;
  continued_ = false;
  close_after_ = false;
}

void ResponseParser::resume_body() noexcept {
  if (state_ != State::paused) return;
  state_ = State::incomplete;
  pause_ = false;
  llhttp_resume(&parser_);
}

int ResponseParser::too_large() noexcept {
  return fail(make_error_code(errc::header_too_large), "header block too large");
}

int ResponseParser::fail(std::error_code ec, std::string reason) noexcept {
  error_ = ec;
  try {
    reason_ = std::move(reason);
  } catch (...) {
  }
  return HPE_USER;
}

// Each callback appends to strings, which may throw: llhttp is C, so nothing may escape.
#define DUET_PARSER_GUARD(body)                                                            \
  try {                                                                                    \
    body                                                                                   \
  } catch (...) {                                                                          \
    return self.fail(std::make_error_code(std::errc::not_enough_memory), "out of memory"); \
  }

int ResponseParser::on_message_begin(llhttp_t* p) noexcept {
  auto& self = self_of(p);
  self.started_ = true;
  return 0;
}

int ResponseParser::on_status(llhttp_t* p, const char* at, std::size_t n) noexcept {
  auto& self = self_of(p);
  DUET_PARSER_GUARD(if (!self.head_parts_.start_line(self.response_.reason, at, n)) return self.too_large(); return 0;)
}

int ResponseParser::on_header_field(llhttp_t* p, const char* at, std::size_t n) noexcept {
  auto& self = self_of(p);
  DUET_PARSER_GUARD(if (!self.head_parts_.field(self.response_.headers, at, n)) return self.too_large(); return 0;)
}

int ResponseParser::on_header_value(llhttp_t* p, const char* at, std::size_t n) noexcept {
  auto& self = self_of(p);
  DUET_PARSER_GUARD(if (!self.head_parts_.value(self.response_.headers, at, n)) return self.too_large(); return 0;)
}

int ResponseParser::field_refused(FieldVerdict verdict) noexcept {
  switch (verdict) {
    case FieldVerdict::ok:
      return 0;
    case FieldVerdict::too_large:
      return fail(make_error_code(errc::header_too_large), "header block too large (bytes or fields)");
    case FieldVerdict::bad_name:
      break;
    case FieldVerdict::framing_trailer:
      return fail(make_error_code(errc::malformed_response),
                  "a trailer field that only the head may carry (Connection, Content-Length, ...)");
  }
  return fail(make_error_code(errc::malformed_response), "an empty or invalid header field name");
}

int ResponseParser::on_header_value_complete(llhttp_t* p) noexcept {
  auto& self = self_of(p);
  const FieldVerdict verdict = self.head_parts_.field_done(self.response_.headers);
  return verdict == FieldVerdict::ok ? 0 : self.field_refused(verdict);
}

int ResponseParser::on_headers_complete(llhttp_t* p) noexcept {
  auto& self = self_of(p);
  self.response_.status = llhttp_get_status_code(p);
  self.response_.version_minor = llhttp_get_http_minor(p);
  if (llhttp_get_http_major(p) != 1)  // llhttp takes HTTP/2.0 and HTTP/0.9 status lines too
    return self.fail(make_error_code(errc::malformed_response), "a response in a version other than HTTP/1.x");
  // HTTP's status code is three digits; llhttp takes fewer ("HTTP/1.1 20 OK" is garbage, not status 20).
  if (self.response_.status < 100 || self.response_.status > 999)
    return self.fail(make_error_code(errc::malformed_response), "malformed status code");
  // duet never asks to switch protocols: a 101 would hand the connection to a protocol it cannot speak.
  if (self.response_.status == 101)
    return self.fail(make_error_code(errc::malformed_response), "an unsolicited 101 Switching Protocols");
  self.informational_ = self.response_.status < 200;
  if (self.response_.status == 100) self.continued_ = true;
  if (self.informational_) return 1;  // an interim response has no body, whatever its headers say
  self.headers_complete_ = true;
  self.head_parts_.end_head();  // what follows a chunked body are trailers
  // A response to HEAD, and a 204 or 304, has no body, whatever its headers say (RFC 9110 §6.4.1).
  if (self.head_ || self.response_.status == 204 || self.response_.status == 304) return 1;
  if (self.head_parts_.has_transfer_encoding()) {
    switch (transfer_coding(self.response_.headers, (p->flags & F_CHUNKED) != 0)) {
      case TransferCoding::chunked:
        break;
      case TransferCoding::misread:  // llhttp would hand the chunks, and what follows, over as the body
        return self.fail(make_error_code(errc::malformed_response), kChunkedNotLast);
      case TransferCoding::empty:  // beside a Content-Length, llhttp would frame by it
        return self.fail(make_error_code(errc::malformed_response), "an empty Transfer-Encoding");
      case TransferCoding::other:  // the body would come still in that coding
        return self.fail(make_error_code(errc::malformed_response), "a transfer coding other than chunked");
    }
    // RFC 9112 6.1: HTTP/1.0 with Transfer-Encoding is faulty framing: the connection ends with it.
    if (self.response_.version_minor == 0) self.close_after_ = true;
  }
  if (p->flags & F_CHUNKED) self.framing_.expect_chunked_body();
  if (self.decode_) {
    const auto encoding = self.response_.headers.get("Content-Encoding");
    const BodyDecoder::Coding* coding = encoding ? BodyDecoder::coding_of(*encoding) : nullptr;
    if (coding) {
      DUET_PARSER_GUARD(self.decoder_ = std::make_unique<BodyDecoder>(*coding);
                        self.response_.headers.remove("Content-Encoding");
                        self.response_.headers.remove("Content-Length");)
    }
  }
  return 0;
}

int ResponseParser::on_body(llhttp_t* p, const char* at, std::size_t n) noexcept {
  auto& self = self_of(p);
  if (n == 0) return 0;  // llhttp ends an open span this way when it is given no bytes (after a pause)
  // A chunked body's framing up to the end of this piece is checked before the piece is handed over:
  // llhttp skips the two bytes after a chunk's data unchecked, and a piece after bad framing is not data.
  if (self.framing_.chunked_body()) {
    if (!self.framing_.feed(self.checked_to_, static_cast<std::size_t>(at + n - self.checked_to_)))
      return self.fail(make_error_code(errc::malformed_response), self.framing_.why());
    self.checked_to_ = at + n;
  }
  self.body_bytes_ += n;
  if (!self.decoder_) return self.deliver(at, n);
  const int rc = self.decoder_->decode(at, n, &deliver_decoded, &self);
  if (rc < 0) return self.fail(make_error_code(errc::malformed_response), self.decoder_->error());
  return rc;
}

int ResponseParser::deliver_decoded(void* self, const char* at, std::size_t n) noexcept {
  return static_cast<ResponseParser*>(self)->deliver(at, n);
}

// The body as the caller gets it (decoded, if it was encoded): bounded, then streamed or kept.
int ResponseParser::deliver(const char* at, std::size_t n) noexcept {
  auto& self = *this;
  delivered_bytes_ += n;
  if (sink_) {  // a streamed body has its own limit (none by default): max_body_bytes is for buffered ones
    if (limits_.max_streamed_body_bytes != 0 && delivered_bytes_ > limits_.max_streamed_body_bytes)
      return fail(make_error_code(errc::body_too_large), "streamed body larger than the limit");
    try {
      (*sink_)(std::string_view(at, n));
    } catch (...) {
      return fail(make_error_code(errc::body_too_large), "the body callback refused the data (it threw)");
    }
    if (!pause_) return 0;
    pause_ = false;
    state_ = State::paused;
    return HPE_PAUSED;  // `feed` reports where it stopped
  }
  if (delivered_bytes_ > limits_.max_body_bytes)
    return fail(make_error_code(errc::body_too_large),
                decoder_ ? "decoded body larger than the limit" : "body larger than the limit");
  DUET_PARSER_GUARD(response_.body.append(at, n); return 0;)
}

int ResponseParser::on_message_complete(llhttp_t* p) noexcept {
  auto& self = self_of(p);
  if (self.informational_) return HPE_PAUSED;  // 100 Continue and friends: `feed` checks it, then goes on
  if (self.decoder_ && !self.decoder_->finished() && !self.decoder_->untouched())
    return self.fail(make_error_code(errc::malformed_response), "the compressed body is cut short");
  self.keep_alive_ = self.head_parts_.persistent(p) && !self.close_after_;
  self.state_ = State::complete;
  return HPE_PAUSED;  // stop here: what follows belongs to the next response
}

#undef DUET_PARSER_GUARD

ResponseParser::State ResponseParser::after_execute(llhttp_errno_t rc, const char* data, std::size_t len,
                                                    std::size_t& consumed) {
  if (rc == HPE_OK) {
    consumed = len;
    return check_framing(data + len);
  }
  if (rc == HPE_PAUSED && (state_ == State::complete || state_ == State::paused)) {
    const char* pos = llhttp_get_error_pos(&parser_);
    consumed = pos ? static_cast<std::size_t>(pos - data) : len;
    return check_framing(data + consumed);
  }
  consumed = 0;
  if (!error_) {
    // Where llhttp and the framing check both see a fault, the check's reason is given, whatever the
    // bytes' split: llhttp skips two bytes after a chunk's data and errs later, on the bytes after them.
    const char* pos = llhttp_get_error_pos(&parser_);
    if (pos && pos >= checked_to_ && pos < data + len &&
        !framing_.feed(checked_to_, static_cast<std::size_t>(pos + 1 - checked_to_)))
      return framing_failed();
    error_ = make_error_code(errc::malformed_response);
    reason_ = std::string(llhttp_errno_name(rc)) + ": " + llhttp_get_error_reason(&parser_);
  }
  state_ = State::failed;
  keep_alive_ = false;
  return state_;
}

ResponseParser::State ResponseParser::check_framing(const char* end) {
  return framing_.feed(checked_to_, static_cast<std::size_t>(end - checked_to_)) ? state_ : framing_failed();
}

ResponseParser::State ResponseParser::framing_failed() {
  state_ = State::failed;
  keep_alive_ = false;  // llhttp may have ended the message before the check saw its last bytes
  error_ = make_error_code(errc::malformed_response);
  reason_ = framing_.why();
  return state_;
}

ResponseParser::State ResponseParser::feed(std::string_view data, std::size_t& consumed) {
  consumed = 0;
  if (state_ != State::incomplete) return state_;
  if (decoder_ && decoder_->pending()) {  // what a pause left in the decoder goes first
    const int rc = decoder_->resume(&deliver_decoded, this);
    if (rc < 0) fail(make_error_code(errc::malformed_response), decoder_->error());
    if (rc != 0 && state_ != State::paused) state_ = State::failed;
    if (state_ != State::incomplete) return state_;
  }
  if (!data.empty()) started_ = true;
  const char* at = data.data();
  std::size_t len = data.size();
  for (;;) {
    if (!framing_.check_head(at, len)) return framing_failed();  // before llhttp acts on a head that fails
    checked_to_ = at;
    const llhttp_errno_t rc = llhttp_execute(&parser_, at, len);
    if (rc != HPE_PAUSED || !informational_) {
      const State s = after_execute(rc, at, len, consumed);
      consumed += static_cast<std::size_t>(at - data.data());
      return s;
    }
    // An interim (1xx) response ended: check its framing, forget it, and wait for the real response.
    const char* pos = llhttp_get_error_pos(&parser_);
    const std::size_t used = static_cast<std::size_t>(pos - at);
    if (check_framing(pos) == State::failed) return state_;
    // A `Connection: close` on the interim response holds for the connection; to llhttp it closed the
    // stream, and the final response that follows would be refused: llhttp starts over instead.
    if (!head_parts_.persistent(&parser_)) close_after_ = true;
    response_.status = 0;
    response_.reason.clear();
    response_.headers.clear();
    head_parts_.reset();
    framing_.reset();
    informational_ = false;
    llhttp_reset(&parser_);
    at = pos;
    len -= used;
  }
}

ResponseParser::State ResponseParser::finish() {
  if (state_ != State::incomplete) return state_;
  if (!started_) {
    state_ = State::failed;
    error_ = make_error_code(errc::malformed_response);
    reason_ = "the connection closed before a response arrived";
    return state_;
  }
  const llhttp_errno_t rc = llhttp_finish(&parser_);
  if ((rc == HPE_OK || rc == HPE_PAUSED) && state_ == State::complete) {
    keep_alive_ = false;  // the body ended with the connection
    return state_;
  }
  state_ = State::failed;
  if (!error_) {
    error_ = make_error_code(errc::malformed_response);
    reason_ = "truncated response: the connection closed before it was complete";
  }
  return state_;
}

}  // namespace duet::http::detail
