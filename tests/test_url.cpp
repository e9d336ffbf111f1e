#include <catch2/catch.hpp>

#include "duet/http/url.hpp"

using duet::http::Url;

namespace {
std::error_code parse_error(std::string_view text, std::string* why = nullptr) {
  std::error_code ec;
  auto url = Url::parse(text, ec, why);
  CHECK_FALSE(url);
  return ec;
}
}  // namespace

TEST_CASE("Url parses scheme, host, port, path and query", "[url]") {
  Url u = Url::parse("HTTP://Example.COM:8080/Flags/BR/br.gif?size=2&x=y#top");
  CHECK(u.scheme == "http");
  CHECK(u.host == "example.com");
  CHECK(u.port == 8080);
  CHECK(u.path == "/Flags/BR/br.gif");  // the path keeps its case
  CHECK(u.query == "size=2&x=y");       // the fragment is dropped
  CHECK(u.target() == "/Flags/BR/br.gif?size=2&x=y");
  CHECK(u.authority() == "example.com:8080");
  CHECK(u.to_string() == "http://example.com:8080/Flags/BR/br.gif?size=2&x=y");
}

TEST_CASE("Url defaults: port 80, path /, no query", "[url]") {
  Url u = Url::parse("http://localhost");
  CHECK(u.port == 80);
  CHECK(u.path == "/");
  CHECK(u.query.empty());
  CHECK(u.target() == "/");
  CHECK(u.authority() == "localhost");  // the default port is not repeated
  CHECK(Url::parse("http://h?q").target() == "/?q");
}

TEST_CASE("Url accepts IPv4 and bracketed IPv6 literals", "[url]") {
  Url v4 = Url::parse("http://127.0.0.1:8000/flags");
  CHECK(v4.host == "127.0.0.1");
  CHECK_FALSE(v4.host_is_ipv6());
  Url v6 = Url::parse("http://[::1]:8001/flags");
  CHECK(v6.host == "::1");
  CHECK(v6.host_is_ipv6());
  CHECK(v6.authority() == "[::1]:8001");
  CHECK(Url::parse("http://[2001:db8::7]/").authority() == "[2001:db8::7]");
}

TEST_CASE("Url percent-encodes what may not appear raw and keeps valid escapes", "[url]") {
  Url u = Url::parse("http://h/a b/caf\xc3\xa9/%41?q=a b&r=%2F");
  CHECK(u.path == "/a%20b/caf%C3%A9/%41");
  CHECK(u.query == "q=a%20b&r=%2F");
  CHECK(duet::http::percent_decode("caf%C3%A9%20") == "caf\xc3\xa9 ");
  CHECK_THROWS_AS(duet::http::percent_decode("%zz"), std::system_error);
  CHECK_THROWS_AS(duet::http::percent_decode("abc%4"), std::system_error);
}

TEST_CASE("Url removes dot segments", "[url]") {
  CHECK(Url::parse("http://h/a/b/../c/./d").path == "/a/c/d");
  CHECK(Url::parse("http://h/../../x").path == "/x");
  CHECK(Url::parse("http://h/a/.").path == "/a/");
  CHECK(Url::parse("http://h/a/..").path == "/");
  CHECK(Url::parse("http://h/./a").path == "/a");
  CHECK(Url::parse("http://h/a/b/..?q=1").path == "/a/");
  // Dots that are not whole segments stay.
  for (const char* kept : {"/a.b", "/a./b", "/.a/b", "/..a/b", "/a../b", "/a/...", "/.../x", "/a/b.c.d/e.f"}) {
    INFO(kept);
    CHECK(Url::parse(std::string("http://h") + kept).path == kept);
  }
}

TEST_CASE("a control byte anywhere in a URL is refused: bytes from 0x80 up are percent-encoded", "[url]") {
  // Long enough that each byte is tried in every place of a word and in the tail after the last one.
  const std::string base = "http://host.example:8000/flags/ab/ab.gif?x=12345";
  for (std::size_t at = std::string("http://").size(); at <= base.size(); ++at) {
    for (int b = 0; b < 256; ++b) {
      if (b >= 0x20 && b != 0x7f && b < 0x80) continue;
      std::string text = base;
      text.insert(at, 1, static_cast<char>(b));
      INFO("byte " << b << " at " << at);
      std::string why;
      std::error_code ec;
      const auto url = Url::parse(text, ec, &why);
      if (b < 0x20 || b == 0x7f) {
        CHECK_FALSE(url);
        CHECK(ec == duet::errc::bad_url);
        CHECK(why.find("control") != std::string::npos);
      } else {
        CHECK(why.find("control") == std::string::npos);
      }
    }
  }
}

TEST_CASE("https URLs parse with port 443 by default, and other schemes are unsupported", "[url]") {
  const Url url = Url::parse("HTTPS://www.FluentPython.com/data/flags");
  CHECK(url.scheme == "https");
  CHECK(url.secure());
  CHECK(url.port == 443);
  CHECK(url.authority() == "www.fluentpython.com");  // the default port is left out
  CHECK(Url::parse("https://h:8443/").authority() == "h:8443");
  CHECK(Url::parse("https://h:80/").authority() == "h:80");  // 80 is not https's default
  CHECK(Url::parse("http://h:443/").authority() == "h:443");
  CHECK(url.resolve("//other.example/x").to_string() == "https://other.example/x");  // keeps the scheme
  CHECK(url.resolve("http://plain.example/").port == 80);
  std::string why;
  CHECK(parse_error("ftp://example.com/", &why) == duet::errc::unsupported_scheme);
  CHECK(why.find("unsupported scheme 'ftp'") != std::string::npos);
}

TEST_CASE("malformed URLs are refused with errc::bad_url and a reason", "[url]") {
  struct Case {
    const char* text;
    const char* reason;
  };
  for (const Case& c : {Case{"", "empty"}, Case{"example.com/path", "missing scheme"}, Case{"http://", "missing host"},
                        Case{"http:///path", "missing host"}, Case{"http://h:0/", "port out of range"},
                        Case{"http://h:65536/", "port out of range"}, Case{"http://h:80x/", "invalid port"},
                        Case{"http://h:/", "empty port"}, Case{"http://[::1/", "unterminated IPv6"},
                        Case{"http://[::g]/", "invalid IPv6"}, Case{"http://user:pw@h/", "credentials"},
                        Case{"http://h/%zz", "percent-escape"}, Case{"http://h/?q=%4", "percent-escape"},
                        Case{"http://ex ample.com/", "invalid host"}, Case{"http://h/\r\nX: y", "control"}}) {
    INFO(c.text);
    std::string why;
    CHECK(parse_error(c.text, &why) == duet::errc::bad_url);
    CHECK(why.find(c.reason) != std::string::npos);
  }
  CHECK_THROWS_AS(Url::parse("http://h:99999/"), std::system_error);
}

TEST_CASE("resolve follows redirect locations of every form", "[url]") {
  const Url base = Url::parse("http://h:8000/flags/br/br.gif?x=1");
  CHECK(base.resolve("http://other/z").to_string() == "http://other/z");
  CHECK(base.resolve("//other:81/z").to_string() == "http://other:81/z");
  CHECK(base.resolve("/new/path?y=2").to_string() == "http://h:8000/new/path?y=2");
  CHECK(base.resolve("ar.gif").to_string() == "http://h:8000/flags/br/ar.gif");
  CHECK(base.resolve("../ar/ar.gif").to_string() == "http://h:8000/flags/ar/ar.gif");
  CHECK(base.resolve("?y=2").to_string() == "http://h:8000/flags/br/br.gif?y=2");
  CHECK(base.resolve("").to_string() == base.to_string());
  CHECK(base.resolve("https://secure/").to_string() == "https://secure/");
  CHECK_THROWS_AS(base.resolve("ftp://elsewhere/"), std::system_error);
}
