// Fuzzes the server's request handling with the bytes a hostile or broken client might send.
//
// Input: the bytes a client writes on one connection before it half-closes. A real duet::http::Server
// on loopback reads them (requests, pipelined or not, then end of stream); its handler answers each
// request with "METHOD TARGET BODY-SIZE", at once or — for an odd-length path — on a later loop turn,
// so that replies finish out of order. The checks:
//   - what comes back is a sequence of well-formed responses, one per request the handler saw, in
//     request order, each with the body the handler gave (none for HEAD);
//   - interim `100 Continue` responses may come before any of them (for `Expect: 100-continue`);
//   - at most one more response follows: a refusal (4xx/5xx, "Connection: close") for what could not
//     be parsed; nothing follows a response that says "Connection: close";
//   - the server then closes the connection and keeps no state for it;
//   - every header field the handler sees has a token for a name (an empty line `:` is refused) and a
//     value without trailing blanks; a Host it sees is host[:port]; Transfer-Encoding only in HTTP/1.1;
//     its path starts with '/' (or is `*`, for OPTIONS);
//   - a first request whose head holds a bare CR or a folded line (one starting with a space or a
//     tab), or whose first chunk is not followed by CRLF, is refused and never reaches the handler
//     (llhttp 8.1.0 lets all three through: request smuggling).
#include <cstdint>
#include <string>
#include <vector>

#include "duet/http/server.hpp"
#include "duet/loop.hpp"
#include "duet/tcp.hpp"
#include "fuzz_check.hpp"
#include "raw_exchange.hpp"  // tests/

namespace {

using namespace std::chrono_literals;
using duet::http::detail::ResponseParser;

struct Seen {
  bool head = false;
  std::string body;  ///< what the handler answered
};

struct World {
  duet::Loop loop;
  std::vector<Seen> seen;
  duet::http::Server server{
      loop, duet::Endpoint::loopback(0),
      [this](duet::http::ServerRequest req, duet::http::Reply reply) {
        duet::http::Response res;
        res.status = 200;
        res.body = req.method + " " + req.target + " " + std::to_string(req.body.size());
        for (const auto& [name, value] : req.headers) {
          DUET_FUZZ_CHECK(duet::http::is_token(name));
          DUET_FUZZ_CHECK(value.empty() || (value.back() != ' ' && value.back() != '\t'));
          if (duet::http::iequals(name, "Host")) DUET_FUZZ_CHECK(duet::http::detail::valid_authority(value));
          if (duet::http::iequals(name, "Transfer-Encoding")) DUET_FUZZ_CHECK(req.version_minor == 1);
        }
        DUET_FUZZ_CHECK(req.path == "*" ? req.method == "OPTIONS" : req.path.starts_with('/'));
        seen.push_back({req.method == "HEAD", res.body});
        if (req.path.size() % 2 == 0) return reply(std::move(res));
        loop.post([reply = std::move(reply), res = std::move(res)]() mutable { reply(std::move(res)); });
      },
      [] {
        duet::http::ServerOptions o;
        o.max_header_bytes = 1024;  // small limits, so that inputs reach them
        o.max_body_bytes = 1024;
        return o;
      }()};
  // At exit: close the server and let the loop finish what is left (the last connection's close, a
  // write cut short), so that LeakSanitizer finds nothing pending.
  ~World() {
    server.close();
    loop.run();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;  // one loop and server for the whole run
  w.seen.clear();
  // Sends the bytes, half-closes, and collects everything until the server closes (the limit only
  // guards against a server that never does: the check below then catches it).
  const std::string received = duet::test::raw_exchange(
      w.loop, w.server.local_endpoint(), std::string(reinterpret_cast<const char*>(data), size), 10s, true);

  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (duet::fuzz::bare_cr_in_first_head(input) || duet::fuzz::folded_line_in_first_head(input) ||
      duet::fuzz::bad_first_chunk(input))
    DUET_FUZZ_CHECK(w.seen.empty());

  std::string_view rest = received;
  std::size_t answered = 0;
  bool closing = false;  // a response said "Connection: close" (a refusal always does)
  while (!rest.empty()) {
    DUET_FUZZ_CHECK(!closing);  // nothing follows it
    // `Expect: 100-continue` gets an interim response before the final one (which a client that then
    // sends too little body never gets: the connection ends with the request incomplete).
    constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    if (rest.starts_with(kContinue)) {
      rest.remove_prefix(kContinue.size());
      continue;
    }
    ResponseParser parser;
    const bool head = answered < w.seen.size() && w.seen[answered].head;
    parser.reset(head);
    std::size_t used = 0;
    auto state = parser.feed(rest, used);
    if (state == ResponseParser::State::incomplete) state = parser.finish();
    DUET_FUZZ_CHECK(state == ResponseParser::State::complete);
    const auto& res = parser.response();
    if (answered < w.seen.size()) {
      DUET_FUZZ_CHECK(res.status == 200);
      DUET_FUZZ_CHECK(res.body == (head ? "" : w.seen[answered].body));
      ++answered;
    } else {
      DUET_FUZZ_CHECK(res.status >= 400 && res.status <= 599);
      DUET_FUZZ_CHECK(!parser.keep_alive());
    }
    closing = !parser.keep_alive();
    rest.remove_prefix(used == 0 ? rest.size() : used);
  }
  DUET_FUZZ_CHECK(answered == w.seen.size());
  // The server closed the connection (that is how the read above ended) and forgot it.
  while (w.server.connections() != 0) w.loop.run_once();
  return 0;
}
