// Fuzzes how the client builds a request from what its caller passes (issue: CR/LF injection).
//
// Input: fields, each one length byte then that many bytes: the method, the URL's path, query and
// host, the User-Agent, then name/value pairs of header fields. The checks:
//   - a request with a CR or LF anywhere the caller put one is refused (`unsendable` says why);
//   - a request that is accepted is written as exactly one head: the request line the caller asked
//     for, then only `name: value` lines whose names are tokens (the caller's, in order, and those the
//     client adds), then one empty line, with no CR or LF anywhere else.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "duet/http/detail/request_writer.hpp"
#include "fuzz_check.hpp"

namespace {

/// Takes the next length-prefixed field of the input (shorter if the input ends).
std::string take(std::string_view& in) {
  if (in.empty()) return {};
  const std::size_t n = static_cast<unsigned char>(in[0]);
  in.remove_prefix(1);
  std::string out(in.substr(0, n));
  in.remove_prefix(out.size());
  return out;
}

bool has_line_break(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  duet::http::Request req;
  req.method = take(in);
  req.url.path = take(in);
  req.url.query = take(in);
  req.url.host = take(in);
  const std::string agent = take(in);
  std::vector<std::pair<std::string, std::string>> fields;
  while (!in.empty()) {
    std::string name = take(in);
    std::string value = take(in);
    fields.emplace_back(name, value);
    req.headers.add(std::move(name), std::move(value));
  }

  bool injected = has_line_break(req.method) || has_line_break(req.url.path) || has_line_break(req.url.query) ||
                  has_line_break(req.url.host) || has_line_break(agent);
  for (const auto& [name, value] : fields) injected = injected || has_line_break(name) || has_line_break(value);

  const char* why = duet::http::detail::unsendable(req, agent);
  if (injected) DUET_FUZZ_CHECK(why != nullptr);
  if (why) return 0;

  const std::string bytes = duet::http::detail::write_request(req, agent);
  const auto end = bytes.find("\r\n\r\n");
  DUET_FUZZ_CHECK(end != std::string::npos && end + 4 == bytes.size());  // one head, no body here
  std::vector<std::string_view> lines;
  for (std::string_view head(bytes.data(), end + 2); !head.empty();) {
    const auto eol = head.find("\r\n");
    lines.push_back(head.substr(0, eol));
    head.remove_prefix(eol + 2);
  }
  for (std::string_view line : lines) DUET_FUZZ_CHECK(!has_line_break(line));
  std::string request_line = req.method + " " + req.url.path;
  if (!req.url.query.empty()) request_line += "?" + req.url.query;
  DUET_FUZZ_CHECK(lines[0] == request_line + " HTTP/1.1");
  std::vector<std::string_view> names;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto colon = lines[i].find(": ");
    DUET_FUZZ_CHECK(colon != std::string_view::npos);
    DUET_FUZZ_CHECK(duet::http::is_token(lines[i].substr(0, colon)));
    names.push_back(lines[i].substr(0, colon));
  }
  // The caller's fields appear whole and in order, among at most four the client adds.
  std::size_t next = 1;
  for (const auto& [name, value] : fields) {
    const std::string line = name + ": " + value;
    while (next < lines.size() && lines[next] != line) ++next;
    DUET_FUZZ_CHECK(next < lines.size());
    ++next;
  }
  DUET_FUZZ_CHECK(lines.size() - 1 <= fields.size() + 4);
  return 0;
}
