// Fuzzes URL parsing: Url::parse, its normal form, and resolving a redirect's Location against it.
//
// Input: a URL, optionally followed by a NUL byte and a reference to resolve against it. The checks:
//   - parse either succeeds or fails with errc::bad_url / errc::unsupported_scheme and a reason, and the
//     throwing and non-throwing forms agree;
//   - a parsed URL is normal: its text parses back to the same URL (parse is idempotent on its output),
//     its target starts with '/', its port is not 0, and its host is not empty;
//   - resolving any reference either fails cleanly or gives a URL with the same properties.
#include <cstdint>
#include <string>
#include <system_error>

#include "duet/error.hpp"
#include "duet/http/url.hpp"
#include "fuzz_check.hpp"

namespace {

using duet::http::Url;

void check_normal(const Url& url) {
  DUET_FUZZ_CHECK(!url.host.empty());
  DUET_FUZZ_CHECK(url.port != 0);
  DUET_FUZZ_CHECK(url.path.starts_with('/'));
  DUET_FUZZ_CHECK(url.target().starts_with(url.path));
  const std::string text = url.to_string();
  std::error_code ec;
  const auto again = Url::parse(text, ec);
  DUET_FUZZ_CHECK(again && !ec);
  DUET_FUZZ_CHECK(*again == url);
  DUET_FUZZ_CHECK(again->to_string() == text);
}

bool expected_error(const std::error_code& ec) {
  return ec == duet::errc::bad_url || ec == duet::errc::unsupported_scheme;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto nul = input.find('\0');
  const std::string_view text = input.substr(0, nul);
  const std::string_view reference = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);

  std::error_code ec;
  std::string why;
  const auto url = Url::parse(text, ec, &why);
  bool threw = false;
  try {
    const Url thrown = Url::parse(text);
    DUET_FUZZ_CHECK(url && thrown == *url);
  } catch (const std::system_error& e) {
    threw = true;
    DUET_FUZZ_CHECK(e.code() == ec);
  }
  if (!url) {
    DUET_FUZZ_CHECK(threw && expected_error(ec) && !why.empty());
    return 0;
  }
  DUET_FUZZ_CHECK(!threw && !ec);
  check_normal(*url);

  if (nul == std::string_view::npos) return 0;
  try {
    check_normal(url->resolve(reference));
  } catch (const std::system_error& e) {
    DUET_FUZZ_CHECK(expected_error(e.code()));
  }
  try {
    (void)duet::http::percent_decode(reference);
  } catch (const std::system_error& e) {
    DUET_FUZZ_CHECK(e.code() == duet::errc::bad_url);
  }
  return 0;
}
