// duet/http/detail/framing_check.hpp — checks the framing bytes that llhttp lets through.
//
// llhttp 8.1.0 (Debian's) is lenient where a message's framing is decided: a bare CR followed by any
// byte ends a header block (`X-A: 1\r\n\rXGET /other ...` reads as two requests), and the two bytes
// after a chunk's data are skipped unchecked (`5\r\nhelloXX0\r\n\r\n` is accepted). Either lets a peer
// make duet see message boundaries that another parser on the path would not: request smuggling.
//
// A FramingCheck is fed exactly the bytes llhttp consumed for one message, after llhttp has parsed
// them, and before the message is acted on. It checks them on its own, independently of llhttp:
// every line of the head (start line, fields, and the trailer section) ends with CRLF — no bare CR,
// and no bare LF, which llhttp 8.1.0 takes as the end of a head after a CRLF — and a chunked
// body is `size[;extensions] CRLF data CRLF ... 0 CRLF trailers CRLF` exactly, with the size line
// (extensions included) at most `kMaxChunkLine` bytes. Built with `Folding::refused` (the server's),
// it also fails a head or trailer line that starts with a space or a tab: obsolete line folding, which
// llhttp 8.1.0 takes as the previous field's value going on (`Host: a\r\n\tX: 1` is one Host field,
// `a\tX: 1`), where another parser may see two fields or none; RFC 9112 §5.2 lets a server refuse it
// with 400. A client must accept it (the same section), and does: its parser's default lets it
// through, the value then holding the fold's whitespace in place of its CRLF. It keeps a few integers
// of state and allocates nothing. The head goes 16 bytes at a time where SSE2 is there (every x86-64), otherwise a
// memchr to each line's end; a chunk's data is skipped, not scanned.
#pragma once

#include <cstddef>
#include <cstdint>

namespace duet::http::detail {

class FramingCheck {
 public:
  static constexpr std::size_t kMaxChunkLine = 1024;  ///< a chunk's size line, extensions included

  /// Whether a line starting with a space or a tab (obsolete line folding) fails the check.
  enum class Folding : std::uint8_t { allowed, refused };
  explicit FramingCheck(Folding folding = Folding::allowed) noexcept : folding_(folding) {}

  /// Ready for the next message (any CRLFs before its start line are allowed, as llhttp allows them).
  void reset() noexcept { *this = FramingCheck(folding_); }
  /// The message's body is chunked (llhttp's verdict, given once its head is parsed). Without it, the
  /// check ends with the head: a Content-Length or close-delimited body has no framing bytes.
  void expect_chunked_body() noexcept { chunked_ = true; }

  /// Checks the next `n` bytes of the message; false (and `why()` says what) at the first violation.
  bool feed(const char* data, std::size_t n) noexcept;
  const char* why() const noexcept { return why_; }
  /// Between messages, with no byte of the next one seen: a fresh FramingCheck would say the same.
  bool at_rest() const noexcept { return state_ == State::leading; }

 private:
  enum class State : std::uint8_t {
    leading,        // before the start line: empty lines only
    leading_lf,     // a CR before the start line: LF must follow
    line,           // inside a head line
    line_lf,        // a CR in a head line: LF must follow
    line_start,     // at the start of a head line: an empty one ends the head
    end_lf,         // the CR of the empty line: LF must follow
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

  bool folded(char c) const noexcept { return folding_ == Folding::refused && (c == ' ' || c == '\t'); }

  Folding folding_;
  State state_ = State::leading;
  bool chunked_ = false;
  std::uint32_t digits_ = 0;
  std::size_t line_bytes_ = 0;
  std::uint64_t remaining_ = 0;  // a chunk's data still to come
  const char* why_ = nullptr;
};

}  // namespace duet::http::detail
