// What the fuzzers share: a check that holds in every build (assert() vanishes under NDEBUG), and the
// outcome of one HTTP response parse, compared field by field across the ways of feeding it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "duet/http/detail/response_parser.hpp"

#define DUET_FUZZ_CHECK(cond)                                                            \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace duet::fuzz {

/// The first head of a message stream: up to and including its first empty line (or all of it).
inline std::string_view first_head(std::string_view bytes) {
  const auto end = bytes.find("\r\n\r\n");
  return end == std::string_view::npos ? bytes : bytes.substr(0, end + 4);
}

/// True if the first head holds a CR followed by something other than LF: a message that must be
/// refused (llhttp 8.1.0 takes `\r` + any byte as the end of the head).
inline bool bare_cr_in_first_head(std::string_view bytes) {
  const std::string_view head = first_head(bytes);
  for (std::size_t i = 0; i < head.size(); ++i)
    if (head[i] == '\r' && i + 1 < bytes.size() && bytes[i + 1] != '\n') return true;
  return false;
}

/// True if a line of the first head after its start line begins with a space or a tab: obsolete line
/// folding, which a server must refuse (llhttp 8.1.0 takes it as the field before going on).
inline bool folded_line_in_first_head(std::string_view bytes) {
  const std::string_view head = first_head(bytes);
  const std::size_t start = head.find_first_not_of("\r\n");  // CRLFs before the start line are allowed
  if (start == std::string_view::npos) return false;
  for (std::size_t i = head.find("\r\n", start); i != std::string_view::npos; i = head.find("\r\n", i + 2))
    if (i + 2 < head.size() && (head[i + 2] == ' ' || head[i + 2] == '\t')) return true;
  return false;
}

/// True if the first message declares a chunked body (a `Transfer-Encoding: chunked` line) whose first
/// chunk, `SIZE CRLF data`, is not followed by CRLF: a message that must be refused (llhttp 8.1.0
/// skips those two bytes unchecked).
inline bool bad_first_chunk(std::string_view bytes) {
  const std::string_view head = first_head(bytes);
  if (head.size() == bytes.size() && !head.ends_with("\r\n\r\n")) return false;
  if (head.find("\r\nTransfer-Encoding: chunked\r\n") == std::string_view::npos) return false;
  std::string_view rest = bytes.substr(head.size());
  std::size_t n = 0, digits = 0;
  for (; digits < rest.size() && digits < 4; ++digits) {
    const char c = rest[digits];
    const int v = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
    if (v < 0) break;
    n = n * 16 + static_cast<std::size_t>(v);
  }
  if (digits == 0 || n == 0 || rest.substr(digits, 2) != "\r\n") return false;
  rest.remove_prefix(digits + 2);
  return rest.size() >= n + 2 && rest.substr(n, 2) != "\r\n";
}

/// Everything a client would act on once a response has been parsed (or has failed).
struct ParseOutcome {
  duet::http::detail::ResponseParser::State state{};
  std::error_code error;
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive = false;
  std::size_t consumed = 0;  ///< bytes of the stream that belonged to the response

  friend bool operator==(const ParseOutcome&, const ParseOutcome&) = default;
};

/// Feeds `bytes` to a fresh parser in the pieces `cuts` makes (offsets, ascending), as a connection
/// would hand them over, then ends the stream if the response is still incomplete.
inline ParseOutcome parse_in_pieces(std::string_view bytes, bool head, const std::vector<std::size_t>& cuts) {
  using duet::http::detail::ResponseParser;
  ResponseParser parser;
  parser.reset(head);
  ParseOutcome out;
  std::size_t from = 0;
  auto state = ResponseParser::State::incomplete;
  for (std::size_t i = 0; i <= cuts.size() && state == ResponseParser::State::incomplete; ++i) {
    const std::size_t to = i < cuts.size() ? cuts[i] : bytes.size();
    std::size_t used = 0;
    state = parser.feed(bytes.substr(from, to - from), used);
    out.consumed += used;
    from = to;
  }
  if (state == ResponseParser::State::incomplete) state = parser.finish();
  out.state = state;
  out.error = parser.error();
  if (state == ResponseParser::State::complete) {
    const auto& res = parser.response();
    out.status = res.status;
    out.reason = res.reason;
    for (const auto& [name, value] : res.headers) out.headers.emplace_back(name, value);
    out.body = res.body;
    out.keep_alive = parser.keep_alive();
  } else {
    out.consumed = 0;
  }
  return out;
}

}  // namespace duet::fuzz
