#include "duet/http/detail/request_writer.hpp"

#include <cstdio>
#include <vector>

namespace duet::http::detail {
namespace {
/// True if `s` can go into a request line or Host field: no control byte, space or non-ASCII byte.
bool is_wire_safe(std::string_view s) noexcept {
  for (char ch : s) {
    const auto b = static_cast<unsigned char>(ch);
    if (b <= 0x20 || b >= 0x7f) return false;
  }
  return true;
}
}  // namespace

const char* unsendable_url(const Url& url) noexcept {
  if (url.host.empty() || !is_wire_safe(url.host)) return "the URL's host holds a byte that cannot be sent";
  if (url.path.empty() || url.path[0] != '/' || !is_wire_safe(url.path))
    return "the URL's path holds a byte that cannot be sent (encode it)";
  if (!is_wire_safe(url.query)) return "the URL's query holds a byte that cannot be sent (encode it)";
  return nullptr;
}

std::optional<std::uint64_t> declared_length(const Headers& headers) noexcept {
  std::vector<std::string_view> all;
  try {
    all = headers.get_all("Content-Length");
  } catch (...) {
    return std::nullopt;
  }
  if (all.size() != 1 || all[0].empty() || all[0].size() > 19) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : all[0]) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

std::string chunk(std::string_view piece) {
  char size[20];
  const int n = std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
  std::string bytes;
  bytes.reserve(static_cast<std::size_t>(n) + piece.size() + 2);
  bytes.append(size, static_cast<std::size_t>(n)).append(piece).append("\r\n");
  return bytes;
}

const char* unsendable(const Request& req, std::string_view user_agent, bool streamed_body) noexcept {
  if (!is_token(req.method)) return "the method is not a token";
  for (const auto& [name, value] : req.headers) {
    if (!is_token(name)) return "a header field name is not a token";
    if (!is_field_value(value)) return "a header field value holds a CR, LF or other control byte";
  }
  if (!is_field_value(user_agent)) return "ClientOptions::user_agent holds a CR, LF or other control byte";
  // The framing is the client's: a length that is not the body's, or a transfer coding, would make the
  // server read a second request out of the body.
  if (req.headers.contains("Transfer-Encoding")) return "Transfer-Encoding is the client's to set";
  if (streamed_body) {
    if (!req.body.empty()) return "a request with a streamed body has no `body` string";
    if (req.headers.contains("Content-Length") && !declared_length(req.headers))
      return "a Content-Length that is not one decimal number";
  } else {
    for (std::string_view length : req.headers.get_all("Content-Length"))
      if (length != std::to_string(req.body.size())) return "a Content-Length that is not the body's";
  }
  if (req.headers.get_all("Host").size() > 1) return "more than one Host";
  return unsendable_url(req.url);
}

void write_request(std::string& out, const Request& req, std::string_view user_agent, bool streamed_body) {
  out.reserve(out.size() + 128 + req.body.size());
  out.append(req.method).append(" ").append(req.url.path);
  if (!req.url.query.empty()) out.append("?").append(req.url.query);
  out.append(" HTTP/1.1\r\n");
  if (!req.headers.contains("Host")) {
    out.append("Host: ");
    req.url.append_authority(out);
    out.append("\r\n");
  }
  if (!req.headers.contains("User-Agent")) out.append("User-Agent: ").append(user_agent).append("\r\n");
  if (!req.headers.contains("Accept")) out.append("Accept: */*\r\n");
  if (req.decompress && !req.headers.contains("Accept-Encoding")) out.append("Accept-Encoding: gzip, deflate\r\n");
  for (const auto& [name, value] : req.headers) out.append(name).append(": ").append(value).append("\r\n");
  if (streamed_body) {
    if (!req.headers.contains("Content-Length")) out.append("Transfer-Encoding: chunked\r\n");
    out.append("\r\n");
    return;
  }
  if (!req.body.empty() || (req.method != "GET" && req.method != "HEAD"))
    if (!req.headers.contains("Content-Length"))
      out.append("Content-Length: ").append(std::to_string(req.body.size())).append("\r\n");
  out.append("\r\n").append(req.body);
}

}  // namespace duet::http::detail
