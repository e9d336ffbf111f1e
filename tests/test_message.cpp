// duet::http::Headers: the field list requests and responses carry.
#include <catch2/catch.hpp>

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
