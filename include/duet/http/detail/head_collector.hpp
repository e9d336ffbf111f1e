// duet/http/detail/head_collector.hpp — what parsing requests and responses shares: the head.
//
// llhttp hands over the start line's text (a request's target, a response's reason) and each header
// field's name and value in pieces. This gathers them into `Headers` and counts every byte of the head
// against a limit. Used by the client's response parser and the server's request parser. May throw
// std::bad_alloc only (the parsers catch it: nothing is thrown through llhttp).
#pragma once

#include <cstddef>
#include <string>

#include "duet/http/message.hpp"

namespace duet::http::detail {

class HeadCollector {
 public:
  explicit HeadCollector(std::size_t max_bytes) noexcept : max_bytes_(max_bytes) {}

  /// Forgets the head collected so far (a new message, or the next after a 1xx response).
  void reset() noexcept {
    field_.clear();
    value_.clear();
    bytes_ = 0;
  }

  /// Appends a piece of the start line to `to`; false (nothing appended) once the head is over the limit.
  bool start_line(std::string& to, const char* at, std::size_t n) { return append(to, at, n); }
  bool field(const char* at, std::size_t n) { return append(field_, at, n); }
  bool value(const char* at, std::size_t n) { return append(value_, at, n); }
  /// The current field is complete: it goes into `headers`.
  void field_done(Headers& headers) {
    if (headers.empty()) headers.reserve(kTypicalFields);  // one allocation, not one per doubling
    headers.add(std::move(field_), std::move(value_));
    field_.clear();
    value_.clear();
  }

 private:
  bool append(std::string& to, const char* at, std::size_t n) {
    bytes_ += n;
    if (bytes_ > max_bytes_) return false;
    to.append(at, n);
    return true;
  }

  static constexpr std::size_t kTypicalFields = 12;  // nginx sends 7 on a static file, Node.js 5
  std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  std::string field_;
  std::string value_;
};

}  // namespace duet::http::detail
