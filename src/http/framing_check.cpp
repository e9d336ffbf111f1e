#include "duet/http/detail/framing_check.hpp"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "duet/http/message.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace duet::http::detail {
namespace {
#if defined(__SSE2__)
/// The head's fast path, 16 bytes at a time (SSE2, which every x86-64 has): from `p`, inside a head
/// line, while 16 bytes remain, checks that every CR is followed by LF and every LF follows a CR, with
/// two compares and two masks a block instead of two memchr calls a line. It stops at the CR of an
/// empty line (the head's end, which the state machine takes) and at the start of any block that
/// breaks the rule (the state machine finds the byte and says what is wrong with it); with
/// `kRefuseFolding`, also at one where a line starts with a space or a tab. Returns where it stopped and
/// sets `state` to what holds there: inside a line, after a CR, or at a line's start.
template <bool kRefuseFolding, class State>
const char* skip_sound_lines(const char* p, const char* end, State& state) noexcept {
  const __m128i cr_byte = _mm_set1_epi8('\r');
  const __m128i lf_byte = _mm_set1_epi8('\n');
  const __m128i space_byte = _mm_set1_epi8(' ');
  const __m128i tab_byte = _mm_set1_epi8('\t');
  unsigned after_cr = 0;  // the byte before the block was a CR (its LF must open the block)
  unsigned after_lf = 0;  // ... was a LF (a CR opening the block is an empty line's)
  while (end - p >= 16) {
    const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const auto cr = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(block, cr_byte)));
    const auto lf = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(block, lf_byte)));
    const unsigned lf_wanted = ((cr << 1) | after_cr) & 0xFFFFu;  // right after each CR, and only there
    const unsigned line_starts = (lf << 1) | after_lf;
    unsigned folds = 0;  // lines that start with a space or a tab
    if constexpr (kRefuseFolding) {
      const __m128i blank = _mm_or_si128(_mm_cmpeq_epi8(block, space_byte), _mm_cmpeq_epi8(block, tab_byte));
      folds = static_cast<unsigned>(_mm_movemask_epi8(blank)) & line_starts;
    }
    if (const unsigned empty_line = cr & line_starts) {
      const unsigned before = (empty_line & (0u - empty_line)) - 1;  // the bytes before that CR
      if ((lf & before) != (lf_wanted & before) || (folds & before) != 0) break;
      p += __builtin_ctz(empty_line);
      after_cr = 0;
      after_lf = 1;
      break;
    }
    if (lf != lf_wanted || folds != 0) break;
    after_cr = cr >> 15;
    after_lf = (lf >> 15) & 1u;
    p += 16;
  }
  state = after_cr ? State::line_lf : after_lf ? State::line_start : State::line;
  return p;
}
#endif

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

// The start line (RFC 9112 §3 and §4), from `p`: returns where it stopped, which is `end` (the line goes
// on in the next piece) or the line's CR with the state `line` (the head's check takes the CR from
// there), or null when the line is wrong. Every response comes through here: a status line whose
// version and code are whole in the piece is checked in one go.
const char* FramingCheck::start_line(const char* p, const char* end) noexcept {
  const auto digit = [](char d) { return d >= '0' && d <= '9'; };
  static constexpr std::string_view kVersion = "HTTP/d.d";  // `d`: a digit
  const auto version_byte = [&](char c, std::uint32_t at) {
    return kVersion[at] == 'd' ? digit(c) : c == kVersion[at];
  };
  const auto wrong = [this](char c, const char* why) { return refused(c == '\n' ? "a bare LF in the head" : why); };
  if (state_ == State::status_line && digits_ == 0 && end - p > 12 && std::memcmp(p, "HTTP/", 5) == 0 && digit(p[5]) &&
      p[6] == '.' && digit(p[7]) && p[8] == ' ' && digit(p[9]) && digit(p[10]) && digit(p[11])) {
    p += 12;
    state_ = State::status_end;
  }
  for (; p < end; ++p) {
    const char c = *p;
    switch (state_) {
      case State::method:
        if (c == ' ' && digits_ > 0) {
          state_ = State::target_start;
        } else if (is_token(std::string_view(&c, 1))) {
          ++digits_;
        } else {
          return wrong(c, c == ' ' ? "a request line that starts with a space" : "a method that is not a token");
        }
        break;
      case State::target_start:
        if (c == ' ') return wrong(c, "more than one space between the method and the target");
        if (c == '\r' || c == '\n') return wrong(c, "a request line with no target");
        state_ = State::target;
        [[fallthrough]];     // the byte is the target's
      case State::target: {  // visible ASCII but '#' (RFC 9112 §3.2: a fragment is not sent)
        const auto b = static_cast<unsigned char>(c);
        if (c == ' ') {
          state_ = State::version;
          digits_ = 0;
        } else if (c == '\r' || c == '\n') {
          return wrong(c, "a request line with no HTTP version");
        } else if (b < 0x20 || b >= 0x7f) {
          return refused("a control or non-ASCII byte in the request target");
        } else if (c == '#') {
          return refused("a fragment in the request target");
        }
        break;
      }
      case State::version:
        if (digits_ == kVersion.size()) {
          if (c != '\r') return wrong(c, "a request line that does not end after its HTTP version");
          state_ = State::line;
          return p;
        }
        if (!version_byte(c, digits_)) {
          return wrong(c, digits_ == 0 && c == ' ' ? "more than one space between the target and the version"
                                                   : "a request line whose version is not HTTP/d.d");
        }
        ++digits_;
        break;
      case State::status_line:  // `HTTP/d.d ddd`, `digits_` bytes of it seen
        if (!(digits_ < kVersion.size()    ? version_byte(c, digits_)
              : digits_ == kVersion.size() ? c == ' '
                                           : digit(c))) {
          return wrong(c, digits_ <= kVersion.size() ? "a status line that does not start with HTTP/d.d and a space"
                                                     : "a status code that is not three digits");
        }
        if (++digits_ == kVersion.size() + 4) state_ = State::status_end;
        break;
      case State::status_end:
        if (c == '\r') {
          state_ = State::line;
          return p;
        }
        if (c != ' ')
          return wrong(c,
                       digit(c) ? "a status code that is not three digits" : "a status code not followed by a space");
        state_ = State::reason;
        break;
      case State::reason: {  // HTAB, SP, VCHAR and obs-text, up to the CR
        const auto reason_byte = [](char r) { return static_cast<unsigned char>(r) >= 0x20 ? r != 0x7f : r == '\t'; };
        while (p < end && reason_byte(*p)) ++p;
        if (p == end) return p;
        if (*p != '\r') return refused(*p == '\n' ? "a bare LF in the head" : "a control byte in the reason phrase");
        state_ = State::line;
        return p;
      }
      default:
        return p;
    }
  }
  return p;
}

bool FramingCheck::check_head(const char* data, std::size_t n) noexcept {
  if (why_) return false;
  if (ahead_ >= n) return true;
  const char* p = data + ahead_;
  if (!scan<true>(p, data + n)) return false;
  // The byte after the empty line's CR, if it has come: llhttp takes any byte there as the LF.
  if (state_ == State::end_lf && p < data + n && *p != '\n') return fail("a CR not followed by LF in the head");
  ahead_ = static_cast<std::size_t>(p - data);
  return true;
}

bool FramingCheck::feed(const char* data, std::size_t n) noexcept {
  if (why_) return false;
  const std::size_t seen = std::min(ahead_, n);  // checked ahead already
  ahead_ -= seen;
  const char* p = data + seen;
  return scan<false>(p, data + n);
}

// The check itself, from `p` (left where it stopped). With `kHeadOnly`, it stops at the CR of the
// head's empty line: what comes after (the LF, then a chunked body or none) depends on llhttp's
// verdict on the head.
template <bool kHeadOnly>
bool FramingCheck::scan(const char*& p, const char* const end) noexcept {
  while (p < end) {
    if constexpr (kHeadOnly) {
      if (state_ >= State::end_lf) return true;
    }
    const char c = *p;
    switch (state_) {
      case State::leading:
        if (c == '\r') {
          state_ = State::leading_lf;
        } else if (c == '\n') {
        } else if (start_line_ == StartLine::unchecked) {
          state_ = State::line;
        } else {  // this byte opens the start line: its check takes it
          state_ = start_line_ == StartLine::request ? State::method : State::status_line;
          continue;
        }
        break;
      case State::leading_lf:
        if (c != '\n') return fail("a CR not followed by LF in the head");
        state_ = State::leading;
        break;
      case State::method:
      case State::target_start:
      case State::target:
      case State::version:
      case State::status_line:
      case State::status_end:
      case State::reason:
        p = start_line(p, end);
        if (!p) return false;
        continue;
      case State::line: {
#if defined(__SSE2__)
        const char* q = folding_ == Folding::refused ? skip_sound_lines<true>(p, end, state_)
                                                     : skip_sound_lines<false>(p, end, state_);
        if (q != p) {
          p = q;
          continue;
        }
#endif
        // Straight to the line's CR with memchr, not a byte at a time: every head of every message
        // comes through here. A LF before the CR is a bare one.
        const auto left = static_cast<std::size_t>(end - p);
        const auto* lf = static_cast<const char*>(std::memchr(p, '\n', left));
        const auto* cr = static_cast<const char*>(std::memchr(p, '\r', lf ? static_cast<std::size_t>(lf - p) : left));
        if (!cr) {
          if (lf) return fail("a bare LF in the head");
          p = end;  // the line goes on in the next piece
          continue;
        }
        p = cr + 1;
        state_ = State::line_lf;
        continue;
      }
      case State::line_lf:
        if (c != '\n') return fail("a CR not followed by LF in the head");
        state_ = State::line_start;
        break;
      case State::line_start:
        if (c == '\r')
          state_ = State::end_lf;
        else if (c == '\n')  // llhttp 8.1.0 ends a head at CRLF LF: another parser would read on
          return fail("a bare LF in the head");
        else if (folded(c))
          return fail("obsolete line folding (a line starting with a space or a tab) in the head");
        else
          state_ = State::line;
        break;
      case State::end_lf:
        if (c != '\n') return fail("a CR not followed by LF in the head");
        state_ = chunked_ ? State::size : State::done;
        line_bytes_ = 0;
        digits_ = 0;
        remaining_ = 0;
        break;
      case State::size:
        if (++line_bytes_ > kMaxChunkLine) return fail("a chunk size line too long");
        if (const int v = hex_value(c); v >= 0) {
          if (remaining_ > (UINT64_MAX >> 4)) return fail("a chunk size too large");
          remaining_ = (remaining_ << 4) | static_cast<unsigned>(v);
          ++digits_;
        } else if (c == ';' && digits_ > 0) {
          state_ = State::extension;
        } else if (c == '\r' && digits_ > 0) {
          state_ = State::size_lf;
        } else {
          return fail("a malformed chunk size");
        }
        break;
      case State::extension:
        if (++line_bytes_ > kMaxChunkLine) return fail("chunk extensions too long");
        if (c == '\r')
          state_ = State::size_lf;
        else if (c == '\n')
          return fail("a chunk size line not ended by CRLF");
        break;
      case State::size_lf:
        if (c != '\n') return fail("a chunk size line not ended by CRLF");
        state_ = remaining_ == 0 ? State::trailer_start : State::data;
        break;
      case State::data: {
        const auto take =
            static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(end - p)));
        p += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::data_cr;
        continue;
      }
      case State::data_cr:
        if (c != '\r') return fail("chunk data not followed by CRLF");
        state_ = State::data_lf;
        break;
      case State::data_lf:
        if (c != '\n') return fail("chunk data not followed by CRLF");
        state_ = State::size;
        line_bytes_ = 0;
        digits_ = 0;
        break;
      case State::trailer_start:
        if (c == '\r')
          state_ = State::final_lf;
        else if (c == '\n')
          return fail("a trailer line not ended by CRLF");
        else if (folded(c))
          return fail("obsolete line folding (a line starting with a space or a tab) in the trailers");
        else
          state_ = State::trailer;
        break;
      case State::trailer:
        if (c == '\r')
          state_ = State::trailer_lf;
        else if (c == '\n')
          return fail("a trailer line not ended by CRLF");
        break;
      case State::trailer_lf:
        if (c != '\n') return fail("a CR not followed by LF in the trailers");
        state_ = State::trailer_start;
        break;
      case State::final_lf:
        if (c != '\n') return fail("a CR not followed by LF in the trailers");
        state_ = State::done;
        break;
      case State::done:
        return true;  // the body after a head with no chunked framing: nothing to check
    }
    ++p;
  }
  return true;
}

template bool FramingCheck::scan<true>(const char*&, const char*) noexcept;
template bool FramingCheck::scan<false>(const char*&, const char*) noexcept;

}  // namespace duet::http::detail
