// duet/http/detail/head_collector.hpp — what parsing requests and responses shares: the head.
//
// llhttp hands over the start line's text (a request's target, a response's reason) and each header
// field's name and value in pieces. This gathers them into `Headers`, counts every line of the head
// (its bytes, and the line itself) against a byte limit and a field limit, refuses field names that
// are not tokens (empty ones included; llhttp refuses most non-token bytes itself, see
// `is_field_name`), and keeps trailer fields out of the headers. Used by the client's response
// parser and the server's request parser. May throw std::bad_alloc only (the parsers catch it:
// nothing is thrown through llhttp).
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "duet/http/message.hpp"

namespace duet::http::detail {

/// The llhttp callback table of parser class `P`, made once and shared by all its parsers (llhttp
/// only reads it, so none is copied per connection). `P` has static callbacks named after llhttp's
/// fields — `on_url` for a request parser (`Type` HTTP_REQUEST), `on_status` for a response parser —
/// and befriends this function.
template <class P, llhttp_type_t Type>
const llhttp_settings_t& llhttp_settings_for() noexcept {
  static const llhttp_settings_t shared = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &P::on_message_begin;
    if constexpr (Type == HTTP_REQUEST)
      s.on_url = &P::on_url;
    else
      s.on_status = &P::on_status;
    s.on_header_field = &P::on_header_field;
    s.on_header_value = &P::on_header_value;
    s.on_header_value_complete = &P::on_header_value_complete;
    s.on_headers_complete = &P::on_headers_complete;
    s.on_body = &P::on_body;
    s.on_message_complete = &P::on_message_complete;
    return s;
  }();
  return shared;
}

/// What `HeadCollector::field_done` found.
enum class FieldVerdict {
  ok,
  too_large,       ///< the head passed its byte limit or its field limit
  bad_name,        ///< an empty field name, or one that is not a token (a space, a control byte, ...)
  framing_trailer  ///< a trailer that only a head may carry: Connection, Content-Length, Transfer-Encoding, Upgrade
};

/// What a message's Transfer-Encoding fields (all of them, as one list) ask for.
enum class TransferCoding {
  chunked,  ///< `chunked` alone: the one coding duet frames and decodes
  misread,  ///< `chunked` alone to RFC 9110, not to llhttp, which would frame the body some other way
  empty,    ///< fields with no coding in them: malformed
  other,    ///< a coding besides `chunked` (`gzip, chunked`): not implemented
};
/// Reads `headers`' Transfer-Encoding fields (call it only when there is one: `has_transfer_encoding`);
/// `llhttp_chunked` is llhttp's verdict (its F_CHUNKED flag). RFC 9110 §5.6.1 drops empty list
/// elements and the blanks around each; llhttp 8.1.0 reads `chunked` as the coding only when nothing
/// but spaces follows it (`chunked,`, `chunked<TAB>`, a later empty Transfer-Encoding field): where
/// the two differ, the message is `misread` and fails with `kChunkedNotLast`.
TransferCoding transfer_coding(const Headers& headers, bool llhttp_chunked) noexcept;
inline constexpr const char* kChunkedNotLast =
    "a Transfer-Encoding with something besides spaces after chunked: an empty element, a tab or a fold";

/// Whether `s` is `lower` (a literal of lowercase letters and other bytes that are not letters) in any
/// case, 8 bytes at a time: OR-ing 0x20 into an ASCII letter lowers it and turns no other byte into a
/// lowercase letter, and the bytes that are not letters are compared as they are. A few instructions
/// where `iequals` takes several a byte: it runs on the fields of every message.
template <std::size_t N>
[[gnu::always_inline]] inline bool equals_lowercase(std::string_view s, const char (&lower)[N]) noexcept {
  constexpr std::size_t n = N - 1;
  if (s.size() != n) return false;
  auto letter_bit = [&](std::size_t i) -> unsigned char { return lower[i] >= 'a' && lower[i] <= 'z' ? 0x20 : 0; };
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t word = 0, want = 0, mask = 0;
    std::memcpy(&word, s.data() + i, 8);
    std::memcpy(&want, lower + i, 8);
    for (std::size_t k = 0; k < 8; ++k) mask |= std::uint64_t{letter_bit(i + k)} << (8 * k);
    if ((word | mask) != want) return false;
  }
  for (; i < n; ++i)
    if (static_cast<char>(s[i] | static_cast<char>(letter_bit(i))) != lower[i]) return false;
  return true;
}

/// The options of a Connection field's value that decide whether its connection persists: a bit for
/// `close`, a bit for `keep-alive` (a comma-separated list, blanks around each option, any case).
enum ConnectionOption : unsigned { kConnectionClose = 1, kConnectionKeepAlive = 2 };
unsigned connection_options(std::string_view value) noexcept;

class HeadCollector {
 public:
  /// Each line of the head costs its bytes plus the 4 of `: ` and CRLF, so that empty lines (which
  /// llhttp reports as a field with an empty name and value) count too.
  static constexpr std::size_t kLineOverhead = 4;

  HeadCollector(std::size_t max_bytes, std::size_t max_fields) noexcept
      : max_bytes_(max_bytes), max_fields_(max_fields) {}

  /// Forgets the head collected so far (a new message, or the next after a 1xx response).
  void reset() noexcept {
    if (field_.capacity() > 256) std::string().swap(field_);  // a long trailer name is not kept
    field_.clear();
    bytes_ = 0;
    fields_ = 0;
    open_ = false;
    in_trailers_ = false;
    transfer_encoding_ = false;
    connection_ = 0;
  }

  /// Appends a piece of the start line to `to`; false (nothing appended) once the head is over the limit.
  bool start_line(std::string& to, const char* at, std::size_t n) { return append(to, at, n); }
  /// A piece of the current field's name, or of its value: appended in place to the field's entry in
  /// `headers` (no copy, no move afterwards); a trailer's name is kept apart, its value only counted.
  bool field(Headers& headers, const char* at, std::size_t n) {
    if (in_trailers_) return append(field_, at, n);
    return count(n) && (open(headers).first.append(at, n), true);
  }
  bool value(Headers& headers, const char* at, std::size_t n) {
    if (in_trailers_) return count(n);
    return count(n) && (open(headers).second.append(at, n), true);
  }
  /// The header block is over: fields from now on are trailers. They are checked and counted against
  /// the same limits, and dropped: a trailer never passes for a header.
  void end_head() noexcept { in_trailers_ = true; }
  /// The head has a Transfer-Encoding field (llhttp's F_TRANSFER_ENCODING misses an empty one).
  bool has_transfer_encoding() const noexcept { return transfer_encoding_; }
  /// Whether the connection goes on after the message `p` has just parsed: only where llhttp says so
  /// and so do the head's Connection fields, read as RFC 9112 §9.3 reads them (never with a `close`
  /// option, in HTTP/1.1 otherwise, in HTTP/1.0 only with `keep-alive`). llhttp 8.1.0 takes a tab after
  /// an option as part of it (`close<TAB>` is not close to it), lets `keep-alive` beat `close` in
  /// HTTP/1.0 and reads Proxy-Connection as Connection; where the readings differ, the connection ends.
  bool persistent(const llhttp_t* p) const noexcept {
    return llhttp_should_keep_alive(p) != 0 && !(connection_ & kConnectionClose) &&
           (p->http_minor >= 1 || (connection_ & kConnectionKeepAlive));
  }
  /// The current field is complete (in `headers`, where `field` and `value` put it, its value without
  /// the blanks llhttp leaves at its end; a trailer is dropped). A field refused here is taken out of
  /// `headers` again.
  FieldVerdict field_done(Headers& headers) noexcept {
    bytes_ += kLineOverhead;
    if (++fields_ > max_fields_ || bytes_ > max_bytes_) return refuse(headers, FieldVerdict::too_large);
    if (in_trailers_) {  // a trailer is only checked: its name was kept apart, its value counted
      const FieldVerdict verdict = !is_field_name(field_)     ? FieldVerdict::bad_name
                                   : is_framing_field(field_) ? FieldVerdict::framing_trailer
                                                              : FieldVerdict::ok;
      field_.clear();
      return verdict;
    }
    if (!open_) return FieldVerdict::bad_name;  // nothing came: an empty name and an empty value
    open_ = false;
    auto& [name, value] = headers.fields_.back();
    if (!is_field_name(name)) {
      headers.fields_.pop_back();
      return FieldVerdict::bad_name;
    }
    trim_end(value);
    if (equals_lowercase(name, "transfer-encoding")) transfer_encoding_ = true;
    if (equals_lowercase(name, "connection")) connection_ |= connection_options(value);
    return FieldVerdict::ok;
  }

 private:
  FieldVerdict refuse(Headers& headers, FieldVerdict verdict) noexcept {
    if (open_) headers.fields_.pop_back();
    open_ = false;
    field_.clear();
    return verdict;
  }
  bool count(std::size_t n) noexcept {
    bytes_ += n;
    return bytes_ <= max_bytes_;
  }
  bool append(std::string& to, const char* at, std::size_t n) {
    if (!count(n)) return false;
    to.append(at, n);
    return true;
  }
  /// The field being collected: the last in `headers`, added by its first piece.
  Headers::Field& open(Headers& headers) {
    if (!open_) {
      if (headers.fields_.empty()) headers.fields_.reserve(kTypicalFields);  // one allocation, not one per doubling
      headers.fields_.emplace_back();
      open_ = true;
    }
    return headers.fields_.back();
  }

  /// Whether a name llhttp has parsed is a token. llhttp refuses every byte that is not one but the
  /// space (its lenient alphabet, the one Debian builds), and passes an empty name: those two are left
  /// to check here, at a memchr a field instead of a table look-up a byte. test_response_parser feeds
  /// all 256 bytes at each place in a name, so a parser that let another byte through would fail there.
  static bool is_field_name(std::string_view name) noexcept {
    return !name.empty() && name.find(' ') == std::string_view::npos;
  }

  /// RFC 9110 5.5: a field value's trailing whitespace is not part of it (llhttp drops only the leading).
  static void trim_end(std::string& value) noexcept {
    if (value.empty() || (value.back() != ' ' && value.back() != '\t')) return;  // nearly always
    std::size_t n = value.size() - 1;
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) --n;
    value.erase(n);
  }
  /// A field that decides a message's framing or its connection, which llhttp would act on even in the
  /// trailers (a trailer `Connection: close` would end the connection after the message): RFC 9110
  /// 6.5.1 lets none of them be a trailer, and both sides refuse one.
  static bool is_framing_field(std::string_view name) noexcept {
    return iequals(name, "Connection") || iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
           iequals(name, "Upgrade");
  }

  static constexpr std::size_t kTypicalFields = 12;  // nginx sends 7 on a static file, Node.js 5
  std::size_t max_bytes_;
  std::size_t max_fields_;
  std::size_t bytes_ = 0;
  std::size_t fields_ = 0;
  bool open_ = false;  // the last field in the headers is being collected
  bool in_trailers_ = false;
  bool transfer_encoding_ = false;
  unsigned connection_ = 0;  // the options of every Connection field
  std::string field_;        // a trailer's name, to check it
};

}  // namespace duet::http::detail
