#include "duet/http/detail/framing_check.hpp"

#include <algorithm>
#include <cstring>

namespace duet::http::detail {
namespace {
int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool FramingCheck::feed(const char* data, std::size_t n) noexcept {
  if (why_) return false;
  const char* p = data;
  const char* const end = data + n;
  while (p < end) {
    const char c = *p;
    switch (state_) {
      case State::leading:
        if (c == '\r')
          state_ = State::leading_lf;
        else if (c != '\n')
          state_ = State::line;
        break;
      case State::leading_lf:
        if (c != '\n') return fail("a CR not followed by LF in the head");
        state_ = State::leading;
        break;
      case State::line: {
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

}  // namespace duet::http::detail
