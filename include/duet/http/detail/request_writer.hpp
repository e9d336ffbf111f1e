// duet/http/detail/request_writer.hpp — a client request as bytes on the wire, and the check before it.
//
// `unsendable` says why a request cannot be written as it is (a method or field name that is not a
// token; a CR, LF or other control byte in a field value, the User-Agent, or the URL's host, path or
// query; a Transfer-Encoding, a Content-Length other than the body's, or two Hosts), or null. `write_request` writes a
// request that passed: the request line, Host (from the URL unless the caller set one), User-Agent and Accept unless
// set, the caller's fields, Content-Length when there is a body or the method is not GET/HEAD, then the body. Nothing a
// caller passes can end a line and begin another: the client checks before it writes, and the request-writer fuzzer
// holds both to that.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "duet/http/message.hpp"

namespace duet::http::detail {

/// Why the URL's host, path or query cannot be written into a request line or Host field, or null.
const char* unsendable_url(const Url& url) noexcept;
/// Why `req`, sent with `user_agent`, cannot be written as it is, or null. With `streamed_body`, the
/// body comes later from a producer: `req.body` must be empty, and a Content-Length, if set, a number
/// (the body is then held to it).
const char* unsendable(const Request& req, std::string_view user_agent, bool streamed_body = false) noexcept;
/// Appends the bytes of `req` (which `unsendable` accepted) to `out`. With `streamed_body`, the head
/// only: with the caller's Content-Length, else `Transfer-Encoding: chunked`. (The client writes into
/// a buffer it keeps, so that a request's head costs no allocation.)
void write_request(std::string& out, const Request& req, std::string_view user_agent, bool streamed_body = false);
/// The same, as a new string.
inline std::string write_request(const Request& req, std::string_view user_agent, bool streamed_body = false) {
  std::string out;
  write_request(out, req, user_agent, streamed_body);
  return out;
}
/// The Content-Length `headers` declare (one decimal number), if they declare one that is valid.
/// (Shared by the client's uploads and the server's streamed responses.)
std::optional<std::uint64_t> declared_length(const Headers& headers) noexcept;
/// `piece` framed as one chunk of a chunked body: its size in hex, CRLF, the bytes, CRLF.
std::string chunk(std::string_view piece);

}  // namespace duet::http::detail
