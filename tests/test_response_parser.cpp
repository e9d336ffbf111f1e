#include <catch2/catch.hpp>

#include "duet/http/detail/response_parser.hpp"

using duet::http::detail::ParserLimits;
using duet::http::detail::ResponseParser;
using State = ResponseParser::State;

namespace {

/// Feeds `bytes` in pieces cut at `cuts` (offsets), then finishes at `eof`; returns the final state.
State parse(ResponseParser& p, std::string_view bytes, std::vector<std::size_t> cuts = {}, bool eof = false,
            std::size_t* used = nullptr) {
  cuts.push_back(bytes.size());
  std::size_t from = 0, total = 0;
  State s = State::incomplete;
  for (std::size_t cut : cuts) {
    std::size_t consumed = 0;
    s = p.feed(bytes.substr(from, cut - from), consumed);
    total += consumed;
    from = cut;
    if (s != State::incomplete) break;
  }
  if (used) *used = total;
  if (s == State::incomplete && eof) s = p.finish();
  return s;
}

const std::string kLength =
    "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nGIF89";
const std::string kChunked =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n6\r\npedia \r\n0\r\nTrailer: t\r\n\r\n";
const std::string kClose = "HTTP/1.0 200 OK\r\nServer: SimpleHTTP\r\n\r\nbody until close";

}  // namespace

TEST_CASE("a Content-Length response: status, reason, headers (case-insensitive), body", "[http][parser]") {
  ResponseParser p;
  std::size_t used = 0;
  REQUIRE(parse(p, kLength, {}, false, &used) == State::complete);
  CHECK(used == kLength.size());
  auto& r = p.response();
  CHECK(r.status == 200);
  CHECK(r.reason == "OK");
  CHECK(r.headers.get("content-type") == "image/gif");
  CHECK(r.headers.get("CONTENT-LENGTH") == "5");
  CHECK(r.headers.get_all("X-A") == std::vector<std::string_view>{"1", "2"});
  CHECK_FALSE(r.headers.get("missing"));
  CHECK(r.body == "GIF89");
  CHECK(p.keep_alive());
}

TEST_CASE("a chunked response with extensions and trailers", "[http][parser]") {
  ResponseParser p;
  REQUIRE(parse(p, kChunked) == State::complete);
  CHECK(p.response().body == "Wikipedia ");
  CHECK(p.keep_alive());
}

TEST_CASE("a close-delimited HTTP/1.0 body completes at end of stream", "[http][parser]") {
  ResponseParser p;
  REQUIRE(parse(p, kClose) == State::incomplete);
  REQUIRE(p.finish() == State::complete);
  CHECK(p.response().body == "body until close");
  CHECK(p.response().version_minor == 0);
  CHECK_FALSE(p.keep_alive());
}

TEST_CASE("any split of the bytes gives the same response", "[http][parser]") {
  for (const std::string* bytes : {&kLength, &kChunked, &kClose}) {
    ResponseParser whole;
    parse(whole, *bytes, {}, true);
    REQUIRE(whole.state() == State::complete);
    for (std::size_t cut = 1; cut < bytes->size(); ++cut) {  // every two-piece split
      ResponseParser p;
      REQUIRE(parse(p, *bytes, {cut}, true) == State::complete);
      CHECK(p.response() == whole.response());
    }
    std::vector<std::size_t> every;  // one byte at a time
    for (std::size_t i = 1; i < bytes->size(); ++i) every.push_back(i);
    ResponseParser p;
    REQUIRE(parse(p, *bytes, every, true) == State::complete);
    CHECK(p.response() == whole.response());
  }
}

TEST_CASE("1xx interim responses are skipped", "[http][parser]") {
  ResponseParser p;
  REQUIRE(parse(p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n" + kLength) ==
          State::complete);
  CHECK(p.response().status == 200);
  CHECK_FALSE(p.response().headers.contains("Link"));
  CHECK(p.response().body == "GIF89");
}

TEST_CASE("a response to HEAD has no body, whatever its Content-Length says", "[http][parser]") {
  ResponseParser p;
  p.reset(/*head=*/true);
  std::size_t used = 0;
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
  REQUIRE(parse(p, head + "HTTP/1.1 404 Not Found\r\n", {}, false, &used) == State::complete);
  CHECK(used == head.size());  // the next response's bytes are left alone
  CHECK(p.response().body.empty());
}

TEST_CASE("pipelined responses: the parser stops at the end of the first", "[http][parser]") {
  ResponseParser p;
  std::size_t used = 0;
  const std::string two = kLength + kChunked;
  REQUIRE(parse(p, two, {}, false, &used) == State::complete);
  CHECK(used == kLength.size());
  p.reset();
  REQUIRE(parse(p, std::string_view(two).substr(used)) == State::complete);
  CHECK(p.response().body == "Wikipedia ");
}

TEST_CASE("malformed responses fail with llhttp's reason", "[http][parser]") {
  for (const char* bad : {"HTTP/1.1 2OO OK\r\n\r\n", "HTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    INFO(bad);
    ResponseParser p;
    REQUIRE(parse(p, bad) == State::failed);
    CHECK(p.error() == duet::errc::malformed_response);
    CHECK_FALSE(p.error_reason().empty());
  }
}

TEST_CASE("a field name with any byte that is not a token fails: at its start, inside, at its end, in trailers",
          "[http][parser]") {
  // The parser leaves most of this check to llhttp (HeadCollector::is_field_name): every byte is tried,
  // so that a byte llhttp let through would show here.
  const std::string_view tchar_punctuation = "!#$%&'*+-.^_`|~";
  auto is_tchar = [&](unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           tchar_punctuation.find(static_cast<char>(c)) != std::string_view::npos;
  };
  int refused = 0;
  for (int b = 0; b < 256; ++b) {
    const auto c = static_cast<unsigned char>(b);
    if (c == ':') continue;  // it ends the name: tried by the empty-name cases
    for (const std::string& name :
         {std::string(1, static_cast<char>(c)) + "X", "X" + std::string(1, static_cast<char>(c)) + "Y",
          "XY" + std::string(1, static_cast<char>(c))}) {
      for (const bool trailer : {false, true}) {
        const std::string bytes =
            trailer ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + name + ": 1\r\n\r\n"
                    : "HTTP/1.1 200 OK\r\n" + name + ": 1\r\nContent-Length: 0\r\n\r\n";
        INFO("byte " << b << (trailer ? " in a trailer" : " in a header") << " name " << name);
        ResponseParser p;
        const State s = parse(p, bytes);
        if (is_tchar(c)) {
          REQUIRE(s == State::complete);
          CHECK(p.response().headers.contains(name) != trailer);
        } else {
          REQUIRE(s == State::failed);
          CHECK(p.error() == duet::errc::malformed_response);
          ++refused;
        }
      }
    }
  }
  CHECK(refused == (256 - 1 - 77) * 3 * 2);  // every byte but ':' and the 77 tchars, three places, head and trailer
  for (const char* empty : {"HTTP/1.1 200 OK\r\n: 1\r\nContent-Length: 0\r\n\r\n",
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n: 1\r\n\r\n"}) {
    ResponseParser p;
    REQUIRE(parse(p, empty) == State::failed);
    CHECK(p.error_reason() == "an empty or invalid header field name");
  }
}

TEST_CASE("a folded field in a response is accepted, unfolded: no CR or LF in its value", "[http][parser]") {
  // RFC 9112 §5.2: a client must accept obsolete line folding (a server refuses it: test_http_hardening).
  for (const char blank : {' ', '\t'}) {
    const std::string bytes = std::string("HTTP/1.1 200 OK\r\nX-A: b\r\n") + blank + "c\r\nContent-Length: 2\r\n\r\nok";
    for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
      INFO("blank " << int(blank) << " cut at " << cut);
      ResponseParser p;
      REQUIRE(parse(p, bytes, {cut}) == State::complete);
      const auto value = p.response().headers.get("X-A");
      REQUIRE(value);
      CHECK(value->find_first_of("\r\n") == std::string_view::npos);
      CHECK(value->starts_with("b"));
      CHECK(value->ends_with("c"));
      CHECK(p.response().body == "ok");
    }
  }
}

TEST_CASE("responses another parser would frame differently fail: what RFC 9112 asks of a client", "[http][parser]") {
  for (const char* bad : {
           "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 2\r\n\r\nok",             // an empty coding list
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",  // not decoded
           "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
           "HTTP/0.9 200 OK\r\nContent-Length: 2\r\n\r\nok",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nConnection: close\r\n\r\n",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nUpgrade: h2c\r\n\r\n",
       }) {
    INFO(bad);
    ResponseParser p;
    REQUIRE(parse(p, bad) == State::failed);
    CHECK(p.error() == duet::errc::malformed_response);
    CHECK_FALSE(p.error_reason().empty());
  }
}

TEST_CASE("an HTTP/1.0 chunked response ends its connection, whatever it says (RFC 9112 6.1)", "[http][parser]") {
  const std::string chunked = "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n2\r\nok\r\n0\r\n\r\n";
  ResponseParser p10;
  REQUIRE(parse(p10, "HTTP/1.0 200 OK\r\n" + chunked) == State::complete);
  CHECK(p10.response().body == "ok");
  CHECK_FALSE(p10.keep_alive());
  ResponseParser p11;  // the same in HTTP/1.1 is kept
  REQUIRE(parse(p11, "HTTP/1.1 200 OK\r\n" + chunked) == State::complete);
  CHECK(p11.keep_alive());
}

TEST_CASE("an interim response that says Connection: close is followed by the final one, and the connection ends",
          "[http][parser]") {
  const std::string bytes =
      "HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
    INFO("cut at " << cut);
    ResponseParser p;
    REQUIRE(parse(p, bytes, {cut}) == State::complete);  // before: "truncated response"
    CHECK(p.response().status == 200);
    CHECK(p.response().body == "ok");
    CHECK(p.continued());
    CHECK_FALSE(p.keep_alive());
  }
  ResponseParser plain;  // without it, the connection is kept
  REQUIRE(parse(plain, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") ==
          State::complete);
  CHECK(plain.keep_alive());
}

TEST_CASE("a field value loses its trailing blanks (RFC 9110 5.5)", "[http][parser]") {
  ResponseParser p;
  REQUIRE(parse(p, "HTTP/1.1 200 OK\r\nX-A: 1 \t \r\nX-B:  two words  \r\nContent-Length: 0 \r\n\r\n") ==
          State::complete);
  CHECK(p.response().headers.get("X-A") == "1");
  CHECK(p.response().headers.get("X-B") == "two words");
  CHECK(p.response().headers.get("Content-Length") == "0");
}

TEST_CASE("a status code below 100 is malformed (found by fuzz_http_response)", "[http][parser]") {
  for (const auto& [bad, why] :
       {std::pair{"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", "a status code that is not three digits"},
        std::pair{"HTTP/1.1 099 Hm\r\n\r\n", "malformed status code"}}) {
    INFO(bad);
    ResponseParser p;
    REQUIRE(parse(p, bad) == State::failed);
    CHECK(p.error() == duet::errc::malformed_response);
    CHECK(p.error_reason() == why);
  }
}

TEST_CASE("a truncated body, or no response at all, fails at end of stream", "[http][parser]") {
  ResponseParser p;
  REQUIRE(parse(p, kLength.substr(0, kLength.size() - 2)) == State::incomplete);
  REQUIRE(p.finish() == State::failed);
  CHECK(p.error() == duet::errc::malformed_response);
  CHECK(p.error_reason().find("truncated") != std::string::npos);

  ResponseParser silent;
  REQUIRE(silent.finish() == State::failed);
  CHECK(silent.error_reason().find("before a response") != std::string::npos);
}

TEST_CASE("header and body limits", "[http][parser]") {
  ResponseParser small_headers(ParserLimits{.max_header_bytes = 64, .max_body_bytes = 1024});
  REQUIRE(parse(small_headers, "HTTP/1.1 200 OK\r\nX-Big: " + std::string(100, 'a') + "\r\n\r\n") == State::failed);
  CHECK(small_headers.error() == duet::errc::header_too_large);

  ResponseParser small_body(ParserLimits{.max_header_bytes = 1024, .max_body_bytes = 4});
  REQUIRE(parse(small_body, kLength) == State::failed);
  CHECK(small_body.error() == duet::errc::body_too_large);
}

TEST_CASE("the body can be streamed to a callback instead of collected", "[http][parser]") {
  ResponseParser p;
  std::string streamed;
  int chunks = 0;
  duet::detail::UniqueFunction<void(std::string_view)> sink = [&](std::string_view piece) {
    streamed.append(piece);
    ++chunks;
  };
  p.stream_body_to(&sink);
  REQUIRE(parse(p, kChunked) == State::complete);
  CHECK(streamed == "Wikipedia ");
  CHECK(chunks >= 2);
  CHECK(p.response().body.empty());
}

TEST_CASE("a chunked body's piece after bad chunk framing is never handed over, at any split, paused or not",
          "[http][parser][hardening]") {
  // llhttp 8.1.0 skips the two bytes after a chunk's data unchecked, and takes a size line of any
  // length: were the framing checked only once llhttp returns, "world" below would reach the sink
  // from the same read, before the response failed.
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string after_data = head + "5\r\nhelloXX5\r\nworld\r\n0\r\n\r\n";
  const std::string long_size_line = head + "5\r\nhello\r\n5;" + std::string(2000, 'e') + "\r\nworld\r\n0\r\n\r\n";
  const std::string sound = head + "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
  for (const std::string* bytes : {&after_data, &long_size_line, &sound}) {
    for (const bool pausing : {false, true}) {
      for (std::size_t split = 0; split <= bytes->size(); ++split) {
        INFO(bytes->substr(head.size(), 12) << " pausing " << pausing << " split " << split);
        ResponseParser p;
        std::string streamed;
        duet::detail::UniqueFunction<void(std::string_view)> sink = [&](std::string_view piece) {
          streamed.append(piece);
          if (pausing) p.pause_body();
        };
        p.stream_body_to(&sink);
        std::string_view rest(*bytes);
        std::size_t cut = split;
        State s = State::incomplete;
        while (s == State::incomplete || s == State::paused) {
          if (s == State::paused) p.resume_body();
          const std::string_view piece = rest.substr(0, cut == 0 ? rest.size() : std::min(cut, rest.size()));
          std::size_t consumed = 0;
          s = p.feed(piece, consumed);
          REQUIRE(consumed <= piece.size());
          if (s == State::incomplete) REQUIRE(consumed == piece.size());
          rest.remove_prefix(consumed);
          cut = cut > consumed ? cut - consumed : 0;  // the first read is `split` bytes, the second the rest
          if (s == State::incomplete && rest.empty()) break;
        }
        if (bytes == &sound) {
          CHECK(s == State::complete);
          CHECK(streamed == "helloworld");
        } else {
          REQUIRE(s == State::failed);
          CHECK(p.error() == duet::errc::malformed_response);
          CHECK(std::string_view("hello").substr(0, streamed.size()) == streamed);  // never a byte of "world"
        }
      }
    }
  }
}

TEST_CASE("a Transfer-Encoding that is chunked to RFC 9110 but not to llhttp fails: its chunks are never the body",
          "[http][parser][hardening]") {
  // llhttp 8.1.0 reads `chunked` as the coding only when nothing but spaces follows it; otherwise it
  // would read to the end of the stream and hand over the chunks' framing, and the next response, as
  // the body.
  const std::string body = "5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  for (const char* field :
       {"Transfer-Encoding: chunked,", "Transfer-Encoding: chunked ,", "Transfer-Encoding: chunked,,",
        "Transfer-Encoding: Chunked, ", "Transfer-Encoding: chunked\t", "Transfer-Encoding: chunked\r\n ",
        "Transfer-Encoding: chunked\r\nX: 1\r\nTransfer-Encoding: ,"}) {
    INFO(field);
    ResponseParser p;
    std::string streamed;
    duet::detail::UniqueFunction<void(std::string_view)> sink = [&](std::string_view piece) { streamed += piece; };
    p.stream_body_to(&sink);
    REQUIRE(parse(p, "HTTP/1.1 200 OK\r\n" + std::string(field) + "\r\n\r\n" + body, {}, true) == State::failed);
    CHECK(p.error() == duet::errc::malformed_response);
    CHECK(p.error_reason() == duet::http::detail::kChunkedNotLast);
    CHECK(streamed.empty());  // before: the whole rest of the stream
  }
  // What llhttp reads as chunked too: spaces after it, an empty element before it, any case.
  for (const char* field : {"Transfer-Encoding: chunked  ", "Transfer-Encoding: , chunked",
                            "Transfer-Encoding: CHUNKED", "Transfer-Encoding: \r\n chunked"}) {
    INFO(field);
    ResponseParser p;
    std::size_t used = 0;
    REQUIRE(parse(p, "HTTP/1.1 200 OK\r\n" + std::string(field) + "\r\n\r\n" + body, {}, false, &used) ==
            State::complete);
    CHECK(p.response().body == "hello");
    CHECK(used == body.find("HTTP/") + std::string_view(field).size() + 21);
  }
}

TEST_CASE("a fault in a chunked body gets the same reason, and no keep-alive, however the bytes are split",
          "[http][parser][hardening]") {
  // llhttp skips the two bytes after a chunk's data and errs later, or ends the message before the
  // check has seen its last bytes: the verdict must not depend on where the reads were cut.
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const std::string tail :
       {"5\r\nhello\n5\r\nworld\r\n0\r\n\r\n", "5\r\nhello\r\r\n0\r\n\r\n", "000\rX\n", "0\r\n\rX", "0\r\n\r\r\n"}) {
    const std::string bytes = head + tail;
    INFO(tail);
    ResponseParser whole;
    REQUIRE(parse(whole, bytes) == State::failed);
    const std::string reason = whole.error_reason();
    CHECK_FALSE(whole.keep_alive());
    for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
      INFO("cut at " << cut);
      ResponseParser p;
      REQUIRE(parse(p, bytes, {cut}) == State::failed);
      CHECK(p.error_reason() == reason);
      CHECK_FALSE(p.keep_alive());
    }
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < bytes.size(); ++i) every.push_back(i);
    ResponseParser bytewise;
    REQUIRE(parse(bytewise, bytes, every) == State::failed);
    CHECK(bytewise.error_reason() == reason);
  }
}
