// duet/http/detail/framing_check.hpp — checks the framing bytes that llhttp lets through.
//
// llhttp 8.1.0 (Debian's) is lenient where a message's framing is decided: a bare CR followed by any
// byte ends a header block (`X-A: 1\r\n\rXGET /other ...` reads as two requests), and the two bytes
// after a chunk's data are skipped unchecked (`5\r\nhelloXX0\r\n\r\n` is accepted). Either lets a peer
// make duet see message boundaries that another parser on the path would not: request smuggling.
//
// A FramingCheck is fed exactly the bytes llhttp consumed for one message, in order, before the
// message is acted on: the head's bytes before llhttp even parses them (`check_head`), so that
// nothing llhttp's callbacks do (a 100 Continue sent, a body piece handed over) happens for a head
// that fails; a chunked body's bytes up to each piece as llhttp hands the piece over (the client's
// parser, which passes pieces on from within llhttp) or once llhttp has paused after it (the
// server's). It checks them on its own, independently of llhttp: every line of the head (start
// line, fields, and the trailer section) ends with CRLF — no bare CR, and no bare LF, which llhttp
// 8.1.0 takes as the end of a head after a CRLF — and a chunked body is `size[;extensions] CRLF
// data CRLF ... 0 CRLF trailers CRLF` exactly, with the size line (extensions included) at most
// `kMaxChunkLine` bytes. Built with `Folding::refused` (the server's), it also fails a head or
// trailer line that starts with a space or a tab: obsolete line folding, which llhttp 8.1.0 takes
// as the previous field's value going on (`Host: a\r\n\tX: 1` is one Host field, `a\tX: 1`), where
// another parser may see two fields or none; RFC 9112 §5.2 lets a server refuse it with 400. A
// client must accept it (the same section), and does: its parser's default lets it through, the
// value then holding the fold's whitespace in place of its CRLF.
//
// Built with `StartLine::request` (the server's) or `StartLine::response` (the client's), it also checks
// the start line's shape, which llhttp 8.1.0 reads loosely: it takes `GET / RTSP/1.1` and
// `SETUP / RTSP/1.0` as HTTP requests, runs of spaces between a request line's parts, and a status code
// of any length up to 999 (`HTTP/1.1 0200 OK` is a 200). A request line must be `method SP target SP
// HTTP/d.d` (RFC 9112 §3: one space each, which a server behind a proxy that parses otherwise relies
// on), with a method of token bytes; a status line `HTTP/d.d SP ddd` then a space and a reason phrase
// of no control byte but HTAB, or nothing (RFC 9112 §4; a missing space before an empty reason is
// common and allowed). A request target holds visible ASCII but `#` (no control or non-ASCII byte,
// no fragment: RFC 9112 §3.2). A failure names what is wrong with the line.
//
// It keeps a few integers of state and allocates nothing. The head goes 16 bytes at a time where SSE2
// is there (every x86-64), otherwise a memchr to each line's end; a chunk's data is skipped, not
// scanned.
#pragma once

#include <cstddef>
#include <cstdint>

namespace duet::http::detail {

class FramingCheck {
 public:
  static constexpr std::size_t kMaxChunkLine = 1024;  ///< a chunk's size line, extensions included

  /// Whether a line starting with a space or a tab (obsolete line folding) fails the check.
  enum class Folding : std::uint8_t { allowed, refused };
  /// Which start line the messages have, if it is checked: a request line, or a status line.
  enum class StartLine : std::uint8_t { unchecked, request, response };
  explicit FramingCheck(Folding folding = Folding::allowed, StartLine start_line = StartLine::unchecked) noexcept
      : folding_(folding), start_line_(start_line) {}

  /// Ready for the next message (any empty lines before its start line are allowed, CRLF or a bare LF,
  /// as llhttp allows them: they frame nothing).
  void reset() noexcept { *this = FramingCheck(folding_, start_line_); }
  /// The message's body is chunked (llhttp's verdict, given once its head is parsed). Without it, the
  /// check ends with the head: a Content-Length or close-delimited body has no framing bytes.
  void expect_chunked_body() noexcept { chunked_ = true; }
  bool chunked_body() const noexcept { return chunked_; }

  /// Checks the next `n` bytes of the message; false (and `why()` says what) at the first violation.
  /// Bytes already checked by `check_head` are not checked again.
  bool feed(const char* data, std::size_t n) noexcept;
  /// Checks the head's bytes among the `n` at `data` before llhttp parses them, so that llhttp's
  /// callbacks never act on a head that fails (a 100 Continue sent, a streamed body handed over):
  /// `data` starts where `feed` is to go on, and the check stops short of the head's last LF (what
  /// follows depends on llhttp's verdict on the head), though it fails a byte there that is not LF.
  /// `feed` then skips what this checked.
  bool check_head(const char* data, std::size_t n) noexcept;
  const char* why() const noexcept { return why_; }
  /// Between messages, with no byte of the next one seen: a fresh FramingCheck would say the same.
  bool at_rest() const noexcept { return state_ == State::leading; }

 private:
  enum class State : std::uint8_t {
    leading,        // before the start line: empty lines only
    leading_lf,     // a CR before the start line: LF must follow
    method,         // a request line's method: token bytes up to its space
    target_start,   // the target's first byte (not a second space)
    target,         // the target's bytes, up to its space
    version,        // a request line's version, `digits_` bytes of it seen
    status_line,    // a status line's version, space and code, `digits_` bytes of them seen
    status_end,     // after the code: a space, or the line's CR
    reason,         // the reason phrase, up to the line's CR
    line,           // inside a head line
    line_lf,        // a CR in a head line: LF must follow
    line_start,     // at the start of a head line: an empty one ends the head
    end_lf,         // the CR of the empty line: LF must follow (the head's states are the ones before)
    size,           // a chunk's size digits
    extension,      // a chunk's extensions, up to CR
    size_lf,        // the CR after a size line: LF must follow
    data,           // a chunk's data
    data_cr,        // after a chunk's data: CR must follow
    data_lf,        // then LF
    trailer_start,  // at the start of a trailer line: an empty one ends the message
    trailer,        // inside a trailer line
    trailer_lf,     // a CR in a trailer line: LF must follow
    final_lf,       // the CR of the last empty line: LF must follow
    done,
  };
  bool fail(const char* why) noexcept {
    why_ = why;
    return false;
  }

  const char* refused(const char* why) noexcept {  // the start line's failure
    why_ = why;
    return nullptr;
  }

  bool folded(char c) const noexcept { return folding_ == Folding::refused && (c == ' ' || c == '\t'); }

  const char* start_line(const char* p, const char* end) noexcept;
  template <bool kHeadOnly>
  bool scan(const char*& p, const char* end) noexcept;

  Folding folding_;
  StartLine start_line_;
  State state_ = State::leading;
  bool chunked_ = false;
  std::uint32_t digits_ = 0;  // a chunk size's digits; in the start line, the bytes of the part being read
  std::size_t line_bytes_ = 0;
  std::uint64_t remaining_ = 0;  // a chunk's data still to come
  std::size_t ahead_ = 0;        // bytes past where `feed` is that `check_head` has checked
  const char* why_ = nullptr;
};

}  // namespace duet::http::detail
