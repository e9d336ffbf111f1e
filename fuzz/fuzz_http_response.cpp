// Fuzzes the client's response handling with the bytes a hostile or broken server might send.
//
// Input: one flag byte (bit 0: the request was HEAD), then the bytes the peer sends before closing.
// Each input is checked three ways:
//   1. the response parser fed the whole stream at once;
//   2. the same bytes split at every possible boundary (for inputs up to kMaxSplitInput bytes; the
//      splits are how TCP may hand them over) — each split must give exactly the outcome of (1);
//   3. a real duet::http::Client over loopback against a fake peer that answers the request with the
//      bytes and closes: the client must fail exactly when (1) failed, and otherwise deliver (1)'s
//      status and body — never a partial response as a success, never a hang or a leak.
// And what RFC 9112 asks of a response whatever llhttp 8.1.0 allows: 204 and 304 have no body, a 101
// nobody asked for is an error, field names are tokens, and a bare CR in the first head or a first
// chunk not followed by CRLF fails the response.
#include <cstdint>
#include <optional>
#include <string>

#include "duet/http/client.hpp"
#include "duet/loop.hpp"
#include "duet/tcp.hpp"
#include "fuzz_check.hpp"

namespace {

using duet::fuzz::parse_in_pieces;
using duet::fuzz::ParseOutcome;
using State = duet::http::detail::ResponseParser::State;

constexpr std::size_t kMaxSplitInput = 2048;

/// A loopback server that reads one request head per connection, sends `reply`, then closes.
class FakePeer {
 public:
  explicit FakePeer(duet::Loop& loop) : listener_(loop, duet::Endpoint::loopback(0)) { accept_next(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(listener_.local_endpoint().port()) + "/x"; }
  void close() { listener_.close(); }
  std::string reply;

 private:
  struct Conn {
    duet::TcpStream stream;
    std::string head;
  };
  void accept_next() {
    listener_.accept([this](std::error_code ec, duet::TcpStream s) {
      if (ec) return;  // closed
      serve(std::make_shared<Conn>(Conn{std::move(s), {}}));
      accept_next();
    });
  }
  void serve(std::shared_ptr<Conn> c) {
    c->stream.read_start([this, c](std::error_code ec, std::span<const char> chunk) {
      if (ec || chunk.empty()) return c->stream.close();
      c->head.append(chunk.data(), chunk.size());
      if (c->head.find("\r\n\r\n") == std::string::npos) return;
      c->stream.read_stop();
      c->stream.write(reply, [c](std::error_code) { c->stream.close(); });
    });
  }
  duet::TcpListener listener_;
};

struct World {
  duet::Loop loop;
  FakePeer peer{loop};
  // The client's limits are the parser's defaults, so that all three ways agree on what is too large.
  std::optional<duet::http::Client> client{std::in_place, loop, [] {
                                             duet::http::ClientOptions o;
                                             o.max_redirects = 0;  // a Location names other hosts: never follow one
                                             return o;
                                           }()};
  // At exit: close the client and the peer and let the loop finish what is left, so that
  // LeakSanitizer finds nothing pending.
  ~World() {
    client.reset();
    peer.close();
    loop.run();
  }
};

void check_client(World& w, std::string_view bytes, bool head, const ParseOutcome& parsed) {
  w.peer.reply.assign(bytes);
  duet::http::Request req;
  req.method = head ? "HEAD" : "GET";
  req.url = duet::http::Url::parse(w.peer.url());
  std::optional<std::error_code> result;
  duet::http::Response res;
  w.client->request(std::move(req), [&](std::error_code ec, duet::http::Response r) {
    result = ec;
    res = std::move(r);
  });
  while (!result) w.loop.run_once();
  if (parsed.state == State::complete) {
    DUET_FUZZ_CHECK(!*result);
    DUET_FUZZ_CHECK(res.status == parsed.status);
    DUET_FUZZ_CHECK(res.body == parsed.body);
  } else {
    DUET_FUZZ_CHECK(*result);
    DUET_FUZZ_CHECK(!res.reason.empty());  // a failure always says why
  }
  // The peer closes every connection: once the client has seen that, no pooled connection carries
  // over into the next input, which then starts as it would on its own.
  while (w.client->open_connections() > 0) w.loop.run_once();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool head = (data[0] & 1) != 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  const ParseOutcome whole = parse_in_pieces(bytes, head, {});
  if (whole.state == State::complete) {
    DUET_FUZZ_CHECK(whole.status >= 100 && whole.status <= 999);
    DUET_FUZZ_CHECK(whole.consumed <= bytes.size());
    if (head || whole.status == 204 || whole.status == 304) DUET_FUZZ_CHECK(whole.body.empty());
    DUET_FUZZ_CHECK(whole.status != 101);
    for (const auto& [name, value] : whole.headers) DUET_FUZZ_CHECK(duet::http::is_token(name));
    DUET_FUZZ_CHECK(!duet::fuzz::bare_cr_in_first_head(bytes));
    if (!head && whole.status != 204 && whole.status != 304)  // those have no body to be chunked
      DUET_FUZZ_CHECK(!duet::fuzz::bad_first_chunk(bytes));
  } else {
    DUET_FUZZ_CHECK(whole.state == State::failed && whole.error);
  }

  if (bytes.size() <= kMaxSplitInput)
    for (std::size_t cut = 1; cut < bytes.size(); ++cut) DUET_FUZZ_CHECK(parse_in_pieces(bytes, head, {cut}) == whole);

  static World world;  // one loop, client and peer for the whole run
  check_client(world, bytes, head, whole);
  return 0;
}
