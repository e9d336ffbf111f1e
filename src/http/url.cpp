#include "duet/http/url.hpp"

#include <uv.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <vector>

#include "duet/error.hpp"

namespace duet::http {
namespace {

struct Failure {
  std::error_code ec;
  std::string why;
};

Failure bad(std::string why) { return {make_error_code(errc::bad_url), std::move(why)}; }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return lower(c) - 'a' + 10;
}

// RFC 3986 unreserved and sub-delims, plus ':' and '@' and '/': what a path may hold raw; a query may
// also hold '?'. One table look-up a character: URLs are parsed on every request.
// A host name (reg-name) may hold letters, digits and "-._~". `/`, `?` and `#` end an authority.
struct CharTable {
  bool path[256] = {};
  bool query[256] = {};
  bool host[256] = {};
  bool ends_authority[256] = {};
  constexpr CharTable() {
    for (int c = 0; c < 256; ++c) {
      const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      path[c] = alnum;
      host[c] = alnum;
    }
    for (unsigned char c : std::string_view("-._~!$&'()*+,;=:@/")) path[c] = true;
    for (unsigned char c : std::string_view("-._~")) host[c] = true;
    for (unsigned char c : std::string_view("/?#")) ends_authority[c] = true;
    for (int c = 0; c < 256; ++c) query[c] = path[c];
    query[static_cast<unsigned char>('?')] = true;
  }
};
constexpr CharTable kChars;

bool path_char(char c) { return kChars.path[static_cast<unsigned char>(c)]; }
bool query_char(char c) { return kChars.query[static_cast<unsigned char>(c)]; }

// Keeps valid %XX escapes and allowed characters, encodes everything else; nullopt on a bad escape.
std::optional<std::string> encode(std::string_view in, bool (*allowed)(char)) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  if (std::all_of(in.begin(), in.end(), allowed)) return std::string(in);  // the usual case: nothing to do
  std::string out;
  out.reserve(in.size() + 16);
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size() || !is_hex(in[i + 1]) || !is_hex(in[i + 2])) return std::nullopt;
      out.append(in.substr(i, 3));
      i += 2;
    } else if (allowed(c)) {
      out.push_back(c);
    } else {
      const auto b = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0xF]);
    }
  }
  return out;
}

// True if some segment of `path` is "." or "..". Such a segment starts with a dot at the path's start
// or after a '/', so only the dots are looked at (most paths have one, before a file's extension).
bool has_dot_segments(std::string_view path) {
  for (std::size_t i = path.find('.'); i != std::string_view::npos; i = path.find('.', i + 1)) {
    if (i != 0 && path[i - 1] != '/') continue;
    const std::string_view rest = path.substr(i + 1);  // after the dot: "", "/...", ".", "./..."
    if (rest.empty() || rest[0] == '/') return true;
    if (rest[0] == '.' && (rest.size() == 1 || rest[1] == '/')) return true;
  }
  return false;
}

// Removes "." and ".." segments (RFC 3986 section 5.2.4).
std::string remove_dot_segments(std::string owned) {
  if (!has_dot_segments(owned)) {  // the usual case: as it is (moved out, not copied)
    if (owned.empty()) owned = "/";
    return owned;
  }
  const std::string_view path = owned;
  std::vector<std::string_view> out;
  std::size_t i = 0;
  const bool absolute = !path.empty() && path[0] == '/';
  if (absolute) i = 1;
  bool trailing_slash = false;
  while (i <= path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i, j - i);
    trailing_slash = false;
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
      trailing_slash = true;
    } else if (seg == ".") {
      trailing_slash = true;
    } else {
      out.push_back(seg);
    }
    i = j + 1;
  }
  std::string result = absolute ? "/" : "";
  for (std::size_t k = 0; k < out.size(); ++k) {
    if (k) result.push_back('/');
    result.append(out[k]);
  }
  if (trailing_slash && (result.empty() || result.back() != '/')) result.push_back('/');
  return result.empty() ? "/" : result;
}

bool valid_reg_name(std::string_view host) {
  if (host.empty()) return false;
  return std::all_of(host.begin(), host.end(), [](char c) { return kChars.host[static_cast<unsigned char>(c)]; });
}

std::optional<Failure> parse_authority(std::string_view auth, Url& url) {
  if (auth.find('@') != std::string_view::npos) return bad("credentials in URLs are not supported");
  std::string_view host;
  std::string_view port;
  if (!auth.empty() && auth.front() == '[') {
    const auto close = auth.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 literal");
    host = auth.substr(1, close - 1);
    std::string_view rest = auth.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("junk after the IPv6 literal");
      port = rest.substr(1);
      if (port.empty()) return bad("empty port");
    }
    std::string text(host);
    unsigned char buf[16];
    if (uv_inet_pton(AF_INET6, text.c_str(), buf) != 0) return bad("invalid IPv6 address '" + text + "'");
  } else {
    const auto colon = auth.rfind(':');
    host = auth.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = auth.substr(colon + 1);
      if (port.empty()) return bad("empty port");
    }
    if (!valid_reg_name(host)) return bad(host.empty() ? "missing host" : "invalid host '" + std::string(host) + "'");
  }
  url.host.assign(host);
  for (char& c : url.host) c = lower(c);
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return bad("invalid port '" + std::string(port) + "'");
    int value = 0;
    for (char c : port) value = value * 10 + (c - '0');
    if (value < 1 || value > 65535) return bad("port out of range: " + std::string(port));
    url.port = static_cast<std::uint16_t>(value);
  }
  return std::nullopt;
}

// Splits path?query#fragment and normalises both parts into `url`.
std::optional<Failure> parse_path_and_query(std::string_view rest, Url& url) {
  if (const auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  std::string_view path = rest;
  std::string_view query;
  bool has_query = false;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    path = rest.substr(0, q);
    query = rest.substr(q + 1);
    has_query = true;
  }
  auto encoded_path = encode(path, path_char);
  if (!encoded_path) return bad("malformed percent-escape in the path");
  url.path = remove_dot_segments(std::move(*encoded_path));
  url.query.clear();
  if (has_query) {
    auto encoded_query = encode(query, query_char);
    if (!encoded_query) return bad("malformed percent-escape in the query");
    url.query = std::move(*encoded_query);
  }
  return std::nullopt;
}

// True if `text` holds a byte below 0x20 or 0x7f (bytes from 0x80 up are let through, to be
// percent-encoded). Eight bytes at a time, since every URL a client is given comes through here: in a
// word w, (w - 0x20 in each byte) & ~w has a byte's top bit set for some byte iff some byte is below
// 0x20; the same with w ^ 0x7f..7f and 1 finds a 0x7f.
bool has_control_characters(std::string_view text) {
  constexpr std::uint64_t kOnes = 0x0101010101010101u;
  constexpr std::uint64_t kTops = 0x8080808080808080u;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, text.data() + i, 8);
    const std::uint64_t del = w ^ (0x7f * kOnes);
    if ((((w - 0x20 * kOnes) & ~w) | ((del - kOnes) & ~del)) & kTops) return true;
  }
  for (; i < text.size(); ++i) {
    if (static_cast<unsigned char>(text[i]) < 0x20 || text[i] == 0x7f) return true;
  }
  return false;
}

std::optional<Failure> parse_into(std::string_view text, Url& url) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return bad("empty URL");
  if (has_control_characters(text)) return bad("control characters in the URL");
  const auto colon = text.find("://");
  if (colon == std::string_view::npos) return bad("missing scheme (expected http:// or https://)");
  std::string scheme(text.substr(0, colon));
  for (char& c : scheme) c = lower(c);
  if (scheme != "http" && scheme != "https")
    return Failure{make_error_code(errc::unsupported_scheme), "unsupported scheme '" + scheme + "'"};
  url.scheme = std::move(scheme);
  url.port = url.default_port();
  std::string_view rest = text.substr(colon + 3);
  const auto end_at = std::find_if(rest.begin(), rest.end(),
                                   [](char c) { return kChars.ends_authority[static_cast<unsigned char>(c)]; });
  const auto end = end_at == rest.end() ? std::string_view::npos : static_cast<std::size_t>(end_at - rest.begin());
  const std::string_view auth = rest.substr(0, end);
  if (auto f = parse_authority(auth, url)) return f;
  return parse_path_and_query(end == std::string_view::npos ? std::string_view() : rest.substr(end), url);
}

}  // namespace

namespace detail {
bool parse_url_into(std::string_view text, Url& url, std::error_code& ec, std::string* why) {
  if (auto failure = parse_into(text, url)) {
    ec = failure->ec;
    if (why) *why = std::move(failure->why);
    return false;
  }
  ec.clear();
  return true;
}

bool valid_authority(std::string_view text) {
  Url scratch;
  return !parse_authority(text, scratch);
}
}  // namespace detail

std::optional<Url> Url::parse(std::string_view text, std::error_code& ec, std::string* why) {
  Url url;
  if (!detail::parse_url_into(text, url, ec, why)) return std::nullopt;
  return url;
}

Url Url::parse(std::string_view text) {
  std::error_code ec;
  std::string why;
  auto url = parse(text, ec, &why);
  if (!url) throw std::system_error(ec, "bad URL '" + std::string(text) + "': " + why);
  return std::move(*url);
}

Url Url::resolve(std::string_view ref) const {
  auto fail = [&](const Failure& f) -> Url {
    throw std::system_error(f.ec, "bad URL reference '" + std::string(ref) + "': " + f.why);
  };
  if (ref.find("://") != std::string_view::npos) {
    const auto first_special = ref.find_first_of("/?#");
    if (first_special == std::string_view::npos || first_special > ref.find("://")) return parse(ref);
  }
  Url out = *this;
  if (ref.substr(0, 2) == "//") {  // scheme-relative
    const std::string absolute = scheme + ":" + std::string(ref);
    return parse(absolute);
  }
  if (ref.empty() || ref.front() == '#') return out;
  if (ref.front() == '/') {
    if (auto f = parse_path_and_query(ref, out)) return fail(*f);
    return out;
  }
  if (ref.front() == '?') {
    if (auto f = parse_path_and_query(path + std::string(ref), out)) return fail(*f);
    return out;
  }
  // A relative path: merge with this URL's folder.
  const std::string folder = path.substr(0, path.rfind('/') + 1);
  if (auto f = parse_path_and_query(folder + std::string(ref), out)) return fail(*f);
  return out;
}

std::string Url::target() const { return query.empty() ? path : path + "?" + query; }

std::string Url::authority() const {
  std::string out;
  append_authority(out);
  return out;
}

void Url::append_authority(std::string& out) const {
  if (host_is_ipv6()) {
    out.push_back('[');
    out.append(host);
    out.push_back(']');
  } else {
    out.append(host);
  }
  if (port != default_port()) {
    char digits[8];
    out.push_back(':');
    out.append(digits, std::to_chars(digits, digits + sizeof digits, port).ptr);
  }
}

std::string Url::to_string() const { return scheme + "://" + authority() + target(); }

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2]))
      throw std::system_error(make_error_code(errc::bad_url),
                              "malformed percent-escape in '" + std::string(text) + "'");
    out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
    i += 2;
  }
  return out;
}

}  // namespace duet::http
