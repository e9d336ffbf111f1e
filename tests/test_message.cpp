// duet::http::Headers: the field list requests and responses carry.
#include <catch2/catch.hpp>

#include "duet/http/detail/head_collector.hpp"
#include "duet/http/message.hpp"

using duet::http::Headers;

TEST_CASE("Headers: names are case-insensitive, set replaces every field of a name, remove drops them", "[http]") {
  Headers h;
  h.add("Accept", "text/plain");
  h.add("X-Tag", "one");
  h.add("x-tag", "two");
  CHECK(h.get("ACCEPT") == "text/plain");
  CHECK(h.get_all("X-TAG") == std::vector<std::string_view>{"one", "two"});
  CHECK_FALSE(h.get("Missing"));

  h.set("X-TAG", "three");
  CHECK(h.get_all("x-tag") == std::vector<std::string_view>{"three"});
  CHECK(h.get("Accept") == "text/plain");  // other names untouched

  h.remove("accept");
  CHECK_FALSE(h.get("Accept"));
  std::size_t fields = 0;
  for ([[maybe_unused]] const auto& f : h) ++fields;
  CHECK(fields == 1);
}

TEST_CASE("equals_lowercase agrees with iequals for every byte at every place, and Connection options are a list",
          "[http]") {
  using duet::http::iequals;
  using duet::http::detail::equals_lowercase;
  auto check = [](const auto& lower) {
    const std::string word(lower);
    for (std::size_t at = 0; at < word.size(); ++at) {
      for (int b = 0; b < 256; ++b) {
        std::string s = word;
        s[at] = static_cast<char>(b);
        INFO(word << " byte " << b << " at " << at);
        REQUIRE(equals_lowercase(s, lower) == iequals(s, word));
      }
    }
    std::string upper = word;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(equals_lowercase(upper, lower));
    CHECK_FALSE(equals_lowercase(word + "x", lower));
    CHECK_FALSE(equals_lowercase(word.substr(1), lower));
  };
  check("connection");
  check("keep-alive");
  check("close");
  check("transfer-encoding");

  using duet::http::detail::connection_options;
  using duet::http::detail::kConnectionClose;
  using duet::http::detail::kConnectionKeepAlive;
  CHECK(connection_options("Keep-Alive") == kConnectionKeepAlive);
  CHECK(connection_options("CLOSE") == kConnectionClose);
  CHECK(connection_options("close\t") == kConnectionClose);
  CHECK(connection_options(" x ,\tclose\t, keep-alive ,") == (kConnectionClose | kConnectionKeepAlive));
  CHECK(connection_options("upgrade") == 0);
  CHECK(connection_options("closed, keep-alive2, ,") == 0);
  CHECK(connection_options("") == 0);
}
