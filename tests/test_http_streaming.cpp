// Streamed response bodies: a sink that pauses and resumes, a ResponseStream read piece by piece
// (both faces), per-request limits, and download_to_file. The server is a raw one on the same loop
// that writes its whole response in one write, so a test can see whether the client's backpressure
// held that write back.
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "deadline.hpp"
#include "duet/http/client.hpp"
#include "duet/http/file_body.hpp"
#include "duet/http/server.hpp"
#include "duet/process.hpp"
#include "duet/spawn.hpp"
#include "duet/tcp.hpp"
#include "duet/timer.hpp"
#include "expecting_client.hpp"
#include "http_faces.hpp"
#include "program_on_loop.hpp"
#include "scripted_server.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::test::expecting_head;
using duet::test::ExpectingClient;
using duet::test::Face;
using duet::test::run_program;

namespace {

/// Bytes that differ from piece to piece, so that a lost, repeated or reordered piece shows.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

/// Answers every request on a connection with the same response, written in one write, and notes
/// when the kernel has taken all of it.
class BodyServer {
 public:
  enum class Framing { length, chunked, close };

  BodyServer(duet::Loop& loop, std::string body, Framing framing = Framing::length, std::size_t chunk = 4096,
             const std::string& extra_headers = "")
      : listener_(loop, duet::Endpoint::loopback(0)), body_(std::move(body)) {
    response_ = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + extra_headers;
    switch (framing) {
      case Framing::length:
        response_ += "Content-Length: " + std::to_string(body_.size()) + "\r\n\r\n" + body_;
        break;
      case Framing::chunked: {
        response_ += "Transfer-Encoding: chunked\r\n\r\n";
        char size[32];
        for (std::size_t at = 0; at < body_.size(); at += chunk) {
          const std::size_t n = std::min(chunk, body_.size() - at);
          std::snprintf(size, sizeof size, "%zx\r\n", n);
          response_.append(size).append(body_, at, n).append("\r\n");
        }
        response_ += "0\r\n\r\n";
        break;
      }
      case Framing::close:
        close_after_ = true;
        response_ += "Connection: close\r\n\r\n" + body_;
        break;
    }
    accept_next();
  }

  std::string url(const std::string& path = "/big") const {
    return "http://127.0.0.1:" + std::to_string(listener_.local_endpoint().port()) + path;
  }
  const std::string& body() const { return body_; }
  /// The last request's head.
  const std::string& last_head() const { return last_head_; }
  /// Responses the kernel has taken whole.
  std::size_t written() const { return written_; }
  std::size_t requests() const { return requests_; }

 private:
  struct Conn {
    duet::TcpStream stream;
    std::string head;
  };

  void accept_next() {
    listener_.accept([this](std::error_code ec, duet::TcpStream s) {
      if (ec) return;
      auto c = std::make_shared<Conn>();
      c->stream = std::move(s);
      conns_.push_back(c);
      c->stream.read_start([this, c](std::error_code ec, std::span<const char> data) {
        if (ec || data.empty()) return c->stream.close();
        c->head.append(data.data(), data.size());
        while (c->head.find("\r\n\r\n") != std::string::npos) {
          last_head_ = c->head.substr(0, c->head.find("\r\n\r\n") + 4);
          c->head.erase(0, c->head.find("\r\n\r\n") + 4);
          ++requests_;
          c->stream.write(response_, [this, c](std::error_code ec) {
            if (!ec) ++written_;
            if (close_after_) c->stream.close();
          });
        }
      });
      accept_next();
    });
  }

  duet::TcpListener listener_;
  std::string body_;
  std::string response_;
  std::string last_head_;
  bool close_after_ = false;
  std::size_t written_ = 0;
  std::size_t requests_ = 0;
  std::vector<std::shared_ptr<Conn>> conns_;
};

/// `data` compressed by zlib: `window_bits` 15+16 for gzip, 15 for zlib's format, -15 for bare deflate.
std::string compressed(const std::string& data, int window_bits) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

duet::http::Request get_request(const std::string& url) {
  duet::http::Request req;
  req.url = duet::http::Url::parse(url);
  return req;
}

}  // namespace

TEST_CASE("a paused body is not read: the server's write waits until the sink resumes", "[http][streaming]") {
  duet::Loop loop;
  BodyServer server(loop, pattern(16 << 20));  // far more than the socket buffers hold
  duet::http::ClientOptions options;
  // Shorter than the pause (a paused body has no read timeout), and long enough that a loaded machine
  // does not stall between two pieces for that long.
  options.read_timeout = 250ms;
  duet::http::Client client(loop, options);
  duet::Timer timer(loop);

  std::string got;
  std::size_t pieces_while_paused = 0;
  bool paused = false;
  bool write_done_while_paused = true;
  std::optional<std::error_code> result;
  duet::http::Response head;
  client.request(
      get_request(server.url()),
      [&](std::string_view piece, duet::http::BodyFlow& flow) {
        if (paused) ++pieces_while_paused;
        got.append(piece);
        CHECK(flow.received() == got.size());
        if (got.size() == piece.size()) {  // the first piece: pause for 750 ms
          paused = true;
          timer.start(750ms, 0ms, [&, resume = std::make_shared<duet::http::Resume>(flow.pause())] {
            write_done_while_paused = server.written() != 0;
            paused = false;
            (*resume)();
          });
        }
      },
      [&](std::error_code ec, duet::http::Response res) {
        result = ec;
        head = std::move(res);
      });
  while (!result) loop.run_once();
  REQUIRE_FALSE(*result);
  CHECK(head.status == 200);
  CHECK(pieces_while_paused == 0);
  CHECK_FALSE(write_done_while_paused);  // without backpressure the client would have taken all 16 MiB
  CHECK(got == server.body());
  CHECK(server.written() == 1);
  CHECK(client.idle_connections() == 1);  // the body ended cleanly: the connection is reused
}

TEST_CASE("a body paused at every piece, resumed later, inline or by dropping the Resume", "[http][streaming]") {
  duet::Loop loop;
  const auto framing = GENERATE(BodyServer::Framing::length, BodyServer::Framing::chunked, BodyServer::Framing::close);
  const int how = GENERATE(0, 1, 2);  // 0: resumed on a later turn; 1: at once, from the sink; 2: Resume dropped
  CAPTURE(static_cast<int>(framing), how);
  // Tiny chunks: one read holds hundreds, so the parser stops and goes on many times within a read.
  BodyServer server(loop, pattern(300'000), framing, 7);
  duet::http::Client client(loop);
  std::string got;
  std::size_t pieces = 0;
  std::optional<std::error_code> result;
  client.request(
      get_request(server.url()),
      [&](std::string_view piece, duet::http::BodyFlow& flow) {
        got.append(piece);
        ++pieces;
        duet::http::Resume resume = flow.pause();
        CHECK(static_cast<bool>(resume));
        CHECK_FALSE(static_cast<bool>(flow.pause()));  // already paused
        if (how == 0) loop.post([r = std::make_shared<duet::http::Resume>(std::move(resume))] { (*r)(); });
        if (how == 1) resume();
      },
      [&](std::error_code ec, duet::http::Response) { result = ec; });
  while (!result) loop.run_once();
  REQUIRE_FALSE(*result);
  CHECK(got == server.body());
  if (framing == BodyServer::Framing::chunked) CHECK(pieces >= 300'000 / 7);
}

TEST_CASE("ResponseStream: the head first, then the body piece by piece, in both faces", "[http][streaming]") {
  duet::Loop loop;
  const auto framing = GENERATE(BodyServer::Framing::length, BodyServer::Framing::chunked, BodyServer::Framing::close);
  BodyServer server(loop, pattern(8 << 20), framing, 10'000);
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  CAPTURE(static_cast<int>(framing), static_cast<int>(face));

  std::string got;
  bool write_done_after_first = true;
  int status = 0;
  std::optional<std::error_code> result;
  if (face == Face::callbacks) {
    duet::Timer timer(loop);
    duet::http::ResponseStream stream;
    std::function<void()> next = [&] {
      stream.read([&](std::error_code ec, std::string piece) {
        if (ec || piece.empty()) return void(result = ec);
        const bool first = got.empty();
        got += piece;
        if (!first) return next();
        // A slow reader: the rest stays with the server until it reads again.
        timer.start(200ms, 0ms, [&] {
          write_done_after_first = server.written() != 0;
          next();
        });
      });
    };
    client.open(get_request(server.url()), [&](std::error_code ec, duet::http::ResponseStream s) {
      if (ec) return void(result = ec);
      stream = std::move(s);
      status = stream.response().status;
      CHECK(stream.response().body.empty());
      next();
    });
    while (!result) loop.run_once();
    CHECK(stream.ended());
  } else {
    auto task = [&]() -> duet::Task<> {
      duet::http::ResponseStream stream = co_await client.open(get_request(server.url()));
      status = stream.response().status;
      for (;;) {
        std::string piece = co_await stream.read();
        if (piece.empty()) break;
        const bool first = got.empty();
        got += piece;
        if (first) {
          co_await duet::sleep(loop, 200ms);
          write_done_after_first = server.written() != 0;
        }
      }
      CHECK(stream.ended());
      CHECK((co_await stream.read()).empty());  // and again: the end stays the end
      result = std::error_code();
    };
    duet::run(loop, task());
  }
  REQUIRE(result);
  REQUIRE_FALSE(*result);
  CHECK(status == 200);
  CHECK_FALSE(write_done_after_first);
  CHECK(got == server.body());
}

TEST_CASE("a ResponseStream dropped mid-body cancels the request and closes its connection", "[http][streaming]") {
  duet::Loop loop;
  BodyServer server(loop, pattern(8 << 20));
  duet::http::Client client(loop);
  std::size_t got = 0;
  auto task = [&]() -> duet::Task<> {
    {
      duet::http::ResponseStream stream = co_await client.open(get_request(server.url()));
      got = (co_await stream.read()).size();
    }
    // The connection could not be reused with most of a body unread: it is closed, not pooled.
    CHECK(client.idle_connections() == 0);
    // And the client goes on: a new request gets a fresh connection and the whole body.
    duet::http::Response res = co_await client.get(server.url());
    CHECK(res.body == server.body());
  };
  duet::run(loop, task());
  CHECK(got > 0);
  CHECK(server.requests() == 2);
}

TEST_CASE("cancelling a read cancels the request", "[http][streaming]") {
  duet::Loop loop;
  BodyServer server(loop, pattern(8 << 20));
  duet::http::Client client(loop);
  std::stop_source stop;
  std::optional<std::error_code> read_result;
  client.open(get_request(server.url()), [&](std::error_code ec, duet::http::ResponseStream s) {
    REQUIRE_FALSE(ec);
    auto stream = std::make_shared<duet::http::ResponseStream>(std::move(s));
    stream->read([&, stream](std::error_code ec, std::string) {
      REQUIRE_FALSE(ec);
      stream->read(duet::with_cancellation(stop.get_token(), [&, stream](std::error_code ec, std::string piece) {
        read_result = ec;
        CHECK(piece.empty());
      }));
      stop.request_stop();
      CHECK_FALSE(read_result);  // never called back inside request_stop
    });
  });
  while (!read_result) loop.run_once();
  CHECK(read_result->value() == UV_ECANCELED);
  while (client.open_connections() != 0) loop.run_once();  // the connection is closed, not pooled
  CHECK(client.idle_connections() == 0);
}

TEST_CASE("a read whose token is already stopped is cancelled even with the end at hand", "[http][streaming][cancel]") {
  duet::Loop loop;
  BodyServer server(loop, pattern(100'000));
  duet::http::Client client(loop);
  std::stop_source stop;
  stop.request_stop();
  std::optional<std::error_code> stopped;
  duet::http::ResponseStream stream;
  std::string got;
  std::function<void()> next = [&] {
    stream.read([&](std::error_code ec, std::string piece) {
      REQUIRE_FALSE(ec);
      if (!piece.empty()) {
        got += piece;
        return next();
      }
      // The end has been delivered: a read now has the end at hand.
      stream.read(duet::with_cancellation(stop.get_token(), [&](std::error_code e, std::string) { stopped = e; }));
    });
  };
  client.open(get_request(server.url()), [&](std::error_code ec, duet::http::ResponseStream s) {
    REQUIRE_FALSE(ec);
    stream = std::move(s);
    next();
  });
  while (!stopped) loop.run_once();
  CHECK(duet::is_cancelled(*stopped));
  CHECK(got == server.body());
}

TEST_CASE("per-request limits: a streamed body's own limit, a smaller buffered limit, no redirects",
          "[http][streaming]") {
  duet::Loop loop;
  BodyServer server(loop, pattern(100'000));
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);

  // A streamed body has no limit by default, and the request's own when it sets one.
  auto req = get_request(server.url());
  std::size_t streamed = 0;
  auto r = duet::test::send(face, loop, client, req, [&](std::string_view piece) { streamed += piece.size(); });
  CHECK_FALSE(r.ec);
  CHECK(streamed == 100'000);
  req.max_body_bytes = 50'000;
  r = duet::test::send(face, loop, client, req, [](std::string_view) {});
  CHECK(r.ec == duet::errc::body_too_large);

  // A buffered body: the request's limit instead of the client's 16 MiB.
  r = duet::test::send(face, loop, client, req);
  CHECK(r.ec == duet::errc::body_too_large);
  req.max_body_bytes = 100'000;
  r = duet::test::send(face, loop, client, req);
  CHECK_FALSE(r.ec);
  CHECK(r.res.body == server.body());
}

TEST_CASE("download_to_file: the whole body, renamed into place, in both faces", "[http][streaming]") {
  duet::Loop loop;
  const auto framing = GENERATE(BodyServer::Framing::length, BodyServer::Framing::chunked);
  BodyServer server(loop, pattern(6 << 20), framing, 65'000);
  duet::http::Client client(loop);
  duet::test::TempDir dir;
  const std::string path = dir / "big.bin";
  duet::test::write_file(path, "the old file");
  const Face face = GENERATE(Face::callbacks, Face::coroutines);

  std::optional<std::error_code> result;
  duet::http::Response head;
  if (face == Face::callbacks) {
    client.download_to_file(get_request(server.url()), path, [&](std::error_code ec, duet::http::Response res) {
      result = ec;
      head = std::move(res);
    });
    while (!result) loop.run_once();
  } else {
    auto task = [&]() -> duet::Task<> {
      head = co_await client.download_to_file(get_request(server.url()), path);
      result = std::error_code();
    };
    duet::run(loop, task());
  }
  REQUIRE_FALSE(*result);
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(duet::test::read_file(path) == server.body());
  CHECK(duet::test::entries_in(dir.path()) == 1);  // no temporary file left
}

TEST_CASE("download_to_file: a 404 saves nothing, a cut body and a cancel leave the old file", "[http][streaming]") {
  duet::Loop loop;
  duet::http::Client client(loop);
  duet::test::TempDir dir;
  const std::string path = dir / "flag.gif";
  duet::test::write_file(path, "the old file");

  SECTION("404: not saved, its body returned") {
    duet::test::ScriptedServer server(loop, [](std::size_t, std::size_t, const std::string&) {
      return duet::test::ScriptedServer::Step{"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"};
    });
    auto task = [&]() -> duet::Task<> {
      duet::http::Response res = co_await client.download_to_file(get_request(server.url("/x")), path);
      CHECK(res.status == 404);
      CHECK(res.body == "not found");
    };
    duet::run(loop, task());
  }
  SECTION("the connection closes mid-body") {
    duet::test::ScriptedServer server(loop, [](std::size_t, std::size_t, const std::string&) {
      duet::test::ScriptedServer::Step step;
      step.reply = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(70'000, 'x');
      step.close_after = true;
      return step;
    });
    std::optional<std::error_code> result;
    std::string reason;
    client.download_to_file(get_request(server.url("/x")), path, [&](std::error_code ec, duet::http::Response res) {
      result = ec;
      reason = res.reason;
    });
    while (!result) loop.run_once();
    CHECK(*result == duet::errc::malformed_response);
    CHECK_THAT(reason, Catch::Contains("truncated"));
  }
  SECTION("cancelled mid-body") {
    BodyServer server(loop, pattern(64 << 20));
    std::stop_source stop;
    std::optional<std::error_code> result;
    duet::Timer timer(loop);
    timer.start(50ms, 0ms, [&] { stop.request_stop(); });
    client.download_to_file(
        get_request(server.url()), path,
        duet::with_cancellation(stop.get_token(), [&](std::error_code ec, duet::http::Response) { result = ec; }));
    while (!result) loop.run_once();
    CHECK(result->value() == UV_ECANCELED);
  }
  SECTION("the folder does not exist") {
    BodyServer server(loop, pattern(1000));
    std::optional<std::error_code> result;
    std::string reason;
    client.download_to_file(get_request(server.url()), dir / "missing/flag.gif",
                            [&](std::error_code ec, duet::http::Response res) {
                              result = ec;
                              reason = res.reason;
                            });
    while (!result) loop.run_once();
    CHECK(result->value() == UV_ENOENT);
    CHECK_THAT(reason, Catch::Contains("missing/flag.gif"));
  }
  // Each download called back after its last step: what is on disk now is final.
  CHECK(duet::test::read_file(path) == "the old file");
  CHECK(duet::test::entries_in(dir.path()) == 1);  // no temporary file left
}

TEST_CASE("Content-Encoding gzip and deflate: decoded on request, buffered or streamed with pauses",
          "[http][streaming][gzip]") {
  duet::Loop loop;
  const std::string plain = pattern(3 << 20);
  const int bits = GENERATE(15 + 16, 15, -15);  // gzip, deflate (zlib's format), deflate sent bare
  const std::string coding = bits > 15 ? "gzip" : "deflate";
  const auto framing = GENERATE(BodyServer::Framing::length, BodyServer::Framing::chunked);
  CAPTURE(bits, static_cast<int>(framing));
  BodyServer server(loop, compressed(plain, bits), framing, 3000, "Content-Encoding: " + coding + "\r\n");
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);

  auto req = get_request(server.url());
  req.decompress = true;
  auto r = duet::test::send(face, loop, client, req);
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == plain);
  CHECK_FALSE(r.res.headers.contains("Content-Encoding"));  // it described the body as sent, not as given
  CHECK_FALSE(r.res.headers.contains("Content-Length"));
  CHECK_THAT(server.last_head(), Catch::Contains("\r\nAccept-Encoding: gzip, deflate\r\n"));

  // Streamed, the sink pausing at every decoded piece: zlib's output is held back with the input.
  std::string streamed;
  std::vector<std::shared_ptr<duet::http::Resume>> later;
  r = duet::test::send(face, loop, client, req,
                       duet::http::detail::body_sink([&](std::string_view piece, duet::http::BodyFlow& flow) {
                         streamed.append(piece);
                         loop.post([resume = std::make_shared<duet::http::Resume>(flow.pause())] { (*resume)(); });
                       }));
  REQUIRE_FALSE(r.ec);
  CHECK(streamed == plain);

  // Not asked for: the body is handed over as it came.
  req.decompress = false;
  r = duet::test::send(face, loop, client, req);
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == server.body());
  CHECK(r.res.headers.get("Content-Encoding") == coding);
  CHECK_THAT(server.last_head(), !Catch::Contains("Accept-Encoding"));
}

TEST_CASE("a decompression bomb, a corrupt body and a cut one are errors", "[http][streaming][gzip]") {
  duet::Loop loop;
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);

  SECTION("64 MiB of zeros in 64 KiB: past the buffered limit, and a streamed body's own limit") {
    BodyServer server(loop, compressed(std::string(64 << 20, '\0'), 15 + 16), BodyServer::Framing::length, 0,
                      "Content-Encoding: gzip\r\n");
    CHECK(server.body().size() < 100'000);
    auto req = get_request(server.url());
    req.decompress = true;
    auto r = duet::test::send(face, loop, client, req);
    CHECK(r.ec == duet::errc::body_too_large);
    CHECK_THAT(r.res.reason, Catch::Contains("decoded body larger than the limit"));
    req.max_body_bytes = 1 << 20;
    std::size_t streamed = 0;
    r = duet::test::send(face, loop, client, req, [&](std::string_view piece) { streamed += piece.size(); });
    CHECK(r.ec == duet::errc::body_too_large);
    CHECK(streamed <= (1 << 20));
  }
  SECTION("corrupt") {
    std::string body = compressed(pattern(100'000), 15 + 16);
    body[body.size() / 2] ^= 0x55;
    BodyServer server(loop, body, BodyServer::Framing::length, 0, "Content-Encoding: gzip\r\n");
    auto req = get_request(server.url());
    req.decompress = true;
    auto r = duet::test::send(face, loop, client, req);
    CHECK(r.ec == duet::errc::malformed_response);
    CHECK_THAT(r.res.reason, Catch::Contains("gzip body is corrupt"));
  }
  SECTION("cut short: the HTTP framing is whole, the compressed stream is not") {
    std::string body = compressed(pattern(100'000), 15 + 16);
    body.resize(body.size() - 20);
    BodyServer server(loop, body, BodyServer::Framing::length, 0, "Content-Encoding: gzip\r\n");
    auto req = get_request(server.url());
    req.decompress = true;
    auto r = duet::test::send(face, loop, client, req);
    CHECK(r.ec == duet::errc::malformed_response);
    CHECK_THAT(r.res.reason, Catch::Contains("cut short"));
  }
}

TEST_CASE("a paused body outlived by its Resume: the Loop, then the Client, destroyed first", "[http][streaming]") {
  auto loop = std::make_unique<duet::Loop>();
  auto server = std::make_unique<BodyServer>(*loop, pattern(4 << 20));
  auto client = std::make_unique<duet::http::Client>(*loop);
  duet::http::Resume kept;
  bool called = false;
  client->request(
      get_request(server->url()), [&](std::string_view, duet::http::BodyFlow& flow) { kept = flow.pause(); },
      [&](std::error_code, duet::http::Response) { called = true; });
  while (!kept) loop->run_once();
  server.reset();
  loop.reset();    // the paused request cannot go on, nor be called back
  client.reset();  // and lets go of itself: nothing leaks (the asan preset checks)
  kept();          // a Resume after all that does nothing
  CHECK_FALSE(called);
  CHECK_FALSE(static_cast<bool>(kept));
}

namespace {

/// A producer of `total` patterned bytes in pieces of `piece`, counting what it was asked for.
struct Producer {
  std::string data;
  std::size_t piece;
  std::size_t at = 0;
  std::size_t pulls = 0;
  duet::http::BodySource source() {
    return [this](duet::http::BodyPiece give) {
      ++pulls;
      const std::size_t n = std::min(piece, data.size() - at);
      give(std::error_code(), data.substr(at, n));
      at += n;
    };
  }
};

/// duet's own server, answering each request with "LENGTH match" or "LENGTH mismatch" against `expected`.
duet::http::Server echo_length_server(duet::Loop& loop, const std::string& expected, std::size_t max_body) {
  duet::http::ServerOptions options;
  options.max_body_bytes = max_body;
  return duet::http::Server(
      loop, duet::Endpoint::loopback(0),
      [&expected](duet::http::ServerRequest req, duet::http::Reply reply) {
        reply(duet::http::Response{
            200, "OK", {}, std::to_string(req.body.size()) + (req.body == expected ? " match" : " mismatch")});
      },
      options);
}

std::string url_of(const duet::http::Server& server, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(server.local_endpoint().port()) + path;
}

duet::test::GetResult upload(Face face, duet::Loop& loop, duet::http::Client& client, duet::http::Request req,
                             duet::http::BodySource body) {
  std::optional<duet::test::GetResult> out;
  if (face == Face::callbacks) {
    client.upload(std::move(req), std::move(body), [&](std::error_code ec, duet::http::Response res) {
      out = duet::test::GetResult{ec, std::move(res)};
    });
    while (!out) loop.run_once();
    return std::move(*out);
  }
  auto task = [&]() -> duet::Task<> {
    try {
      duet::http::Response res = co_await client.upload(std::move(req), std::move(body));
      out = duet::test::GetResult{std::error_code(), std::move(res)};
    } catch (const std::system_error& e) {
      duet::http::Response failed;
      failed.reason = e.what();
      out = duet::test::GetResult{e.code(), std::move(failed)};
    }
  };
  duet::run(loop, task());
  return std::move(*out);
}

duet::http::Request post(const std::string& url) {
  duet::http::Request req;
  req.method = "POST";
  req.url = duet::http::Url::parse(url);
  return req;
}

}  // namespace

TEST_CASE(
    "a ResponseStream reader waiting when the Loop goes is destroyed uncalled, and a read after it throws loop_closed",
    "[http][streaming][lifetime]") {
  const bool hosted = GENERATE(false, true);  // duet's own loop, or a host's that it wraps
  CAPTURE(hosted);
  std::vector<duet::http::BodyPiece> held;  // the bodies' first pieces, never given
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  auto loop = hosted ? std::make_unique<duet::Loop>(&host) : std::make_unique<duet::Loop>();
  loop->set_error_handler([](std::exception_ptr) {});  // (the Loop's report of what it cut short)
  std::optional<duet::http::Server> server(
      std::in_place, *loop, duet::Endpoint::loopback(0), [&](duet::http::ServerRequest, duet::http::Reply reply) {
        reply.stream(duet::http::Response{200, "OK", {}, {}},
                     [&](duet::http::BodyPiece give) { held.push_back(std::move(give)); });
      });
  std::optional<duet::http::Client> client(std::in_place, *loop);
  // The usual callback shape: the reader keeps its stream alive until it is called. And a stream
  // kept elsewhere, with no read waiting.
  std::weak_ptr<duet::http::ResponseStream> watched;
  std::shared_ptr<duet::http::ResponseStream> kept;
  bool called = false;
  for (int i = 0; i < 2; ++i) {
    client->open(get_request(url_of(*server, "/slow")), [&](std::error_code ec, duet::http::ResponseStream s) {
      REQUIRE_FALSE(ec);
      auto stream = std::make_shared<duet::http::ResponseStream>(std::move(s));
      if (watched.expired()) {
        watched = stream;
        return stream->read([&called, stream](std::error_code, std::string) { called = true; });
      }
      kept = stream;
    });
  }
  for (int turn = 0; !kept && turn < 100000; ++turn) hosted ? void(uv_run(&host, UV_RUN_ONCE)) : void(loop->run_once());
  REQUIRE(kept);
  loop.reset();
  CHECK_THROWS_MATCHES(kept->read([](std::error_code, std::string) {}), std::system_error,
                       Catch::Predicate<std::system_error>(
                           [](const std::system_error& e) { return e.code() == duet::errc::loop_closed; }));
  client.reset();
  server.reset();
  kept.reset();
  while (uv_loop_close(&host) == UV_EBUSY) uv_run(&host, UV_RUN_DEFAULT);  // a wrapped loop's handles close
  CHECK_FALSE(called);       // a read waiting when the Loop went is never called back...
  CHECK(watched.expired());  // ...but it is destroyed, and with it the stream it owned
}

TEST_CASE("upload: a body from a producer, chunked or with its length, with and without 100-continue",
          "[http][streaming][upload]") {
  duet::Loop loop;
  const std::string data = pattern(12 << 20);
  auto server = echo_length_server(loop, data, 16 << 20);
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  const bool sized = GENERATE(false, true);
  const bool expect = GENERATE(false, true);
  CAPTURE(static_cast<int>(face), sized, expect);

  Producer producer{data, 100'000};
  auto req = post(url_of(server, "/up"));
  if (sized) req.headers.add("Content-Length", std::to_string(data.size()));
  if (expect) req.headers.add("Expect", "100-continue");
  auto r = upload(face, loop, client, req, producer.source());
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == std::to_string(data.size()) + " match");
  CHECK(producer.pulls == data.size() / 100'000 + 2);  // every piece, the last short one, and the end
  CHECK(client.idle_connections() == 1);               // all sent, all read: the connection is reused
}

TEST_CASE("upload with 100-continue: a final answer instead of 100 means the body is never asked for",
          "[http][streaming][upload]") {
  duet::Loop loop;
  const std::string data = pattern(4 << 20);
  auto server = echo_length_server(loop, data, 1 << 20);  // it takes 1 MiB at most: 413 for 4 MiB
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Producer producer{data, 100'000};
  auto req = post(url_of(server, "/up"));
  req.headers.add("Content-Length", std::to_string(data.size()));
  req.headers.add("Expect", "100-continue");
  auto r = upload(face, loop, client, req, producer.source());
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.status == 413);
  CHECK(producer.pulls == 0);
  CHECK(client.idle_connections() == 0);  // the body was announced and not sent: the connection closes
}

TEST_CASE("upload to a server that stops reading: the producer stops, then the read timeout fails it",
          "[http][streaming][upload]") {
  duet::Loop loop;
  duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
  duet::TcpStream accepted;  // accepted, never read
  listener.accept([&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    accepted = std::move(s);
  });
  duet::http::ClientOptions options;
  // Each piece is timed by the read timeout, or, with none, by the header timeout.
  const bool read_timeout = GENERATE(true, false);
  options.read_timeout = read_timeout ? 300ms : 0ms;
  options.header_timeout = read_timeout ? 30s : 300ms;
  duet::http::Client client(loop, options);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  std::size_t asked = 0;
  const std::string piece(1 << 20, 'u');
  auto endless = [&](duet::http::BodyPiece give) {
    asked += piece.size();
    give(std::error_code(), piece);
  };
  auto r = upload(face, loop, client,
                  post("http://127.0.0.1:" + std::to_string(listener.local_endpoint().port()) + "/up"), endless);
  CHECK(r.ec.value() == UV_ETIMEDOUT);
  CHECK_THAT(r.res.reason, Catch::Contains("stopped taking the request body"));
  // What was asked for is what the socket buffers hold, and one piece: not an unbounded queue.
  CHECK(asked < (64u << 20));
  CHECK(client.open_connections() == 0);
}

TEST_CASE("upload: a producer's error, and a body that breaks its Content-Length, fail the request",
          "[http][streaming][upload]") {
  duet::Loop loop;
  const std::string data = pattern(1 << 20);
  auto server = echo_length_server(loop, data, 4 << 20);
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);

  auto failing = [n = 0](duet::http::BodyPiece give) mutable {
    if (++n == 3) return give(std::make_error_code(std::errc::io_error), std::string());
    give(std::error_code(), std::string(1000, 'x'));
  };
  auto r = upload(face, loop, client, post(url_of(server, "/up")), failing);
  CHECK(r.ec == std::make_error_code(std::errc::io_error));
  CHECK_THAT(r.res.reason, Catch::Contains("producer failed"));

  for (std::size_t declared : {data.size() - 1, data.size() + 1}) {
    auto req = post(url_of(server, "/up"));
    req.headers.add("Content-Length", std::to_string(declared));
    Producer producer{data, 300'000};
    r = upload(face, loop, client, req, producer.source());
    CHECK(r.ec == duet::errc::invalid_argument);
    CHECK_THAT(r.res.reason, Catch::Contains("against a Content-Length of " + std::to_string(declared)));
  }
  auto req = post(url_of(server, "/up"));
  req.headers.add("Content-Length", "12x");
  Producer never{data, 1000};
  r = upload(face, loop, client, req, never.source());
  CHECK(r.ec == duet::errc::invalid_argument);
  req.headers.set("Content-Length", "0");
  req.body = "a string body as well";
  r = upload(face, loop, client, req, never.source());
  CHECK(r.ec == duet::errc::invalid_argument);
  CHECK(never.pulls == 0);  // refused before anything was sent
}

namespace {
/// How a failing producer of these tests ends, once it has given its good pieces.
enum class Way { throws, drops, drops_later, ends_then_throws, ends_at_once };

/// Ends a producer's call with `give` as `way` says (but `ends_at_once`, the caller's): it throws
/// `why`, drops its piece now or on the loop's next turn, or gives its last piece and then throws.
void end_producer(Way way, duet::http::BodyPiece& give, std::vector<duet::http::BodyPiece>& kept, duet::Loop& loop,
                  const char* why) {
  switch (way) {
    case Way::ends_then_throws:  // its piece given: what it throws is only reported
      give(std::error_code(), std::string());
      [[fallthrough]];
    case Way::throws:
      throw std::runtime_error(why);
    case Way::drops:
    case Way::ends_at_once:
      return;
    case Way::drops_later:
      kept.push_back(std::move(give));
      loop.post([&kept] { kept.clear(); });
      return;
  }
}
}  // namespace

TEST_CASE("upload: a producer that throws or drops its piece fails the request, never inside upload()",
          "[http][streaming][upload]") {
  duet::test::ErrorLog errors;  // outlives the loop
  duet::Loop loop;
  loop.set_error_handler(errors.handler());
  duet::test::Deadline deadline(loop, 20s);
  const std::string data = pattern(1 << 20);
  auto server = echo_length_server(loop, data, 4 << 20);
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  const Way way = GENERATE(Way::throws, Way::drops, Way::drops_later, Way::ends_then_throws);
  const int fail_at = GENERATE(1, 3);  // 1: inside upload(), on the connection a GET left idle
  CAPTURE(face, static_cast<int>(way), fail_at);
  REQUIRE_FALSE(duet::test::get(face, loop, client, url_of(server, "/warm")).ec);
  REQUIRE(client.idle_connections() == 1);

  std::vector<duet::http::BodyPiece> kept;
  auto producer = [&, n = 0](duet::http::BodyPiece give) mutable {
    if (++n < fail_at) return give(std::error_code(), std::string(1000, 'x'));
    end_producer(way, give, kept, loop, "the producer's source went away");
  };
  duet::test::GetResult r;
  if (face == Face::callbacks) {  // the callback comes on a later turn, not inside the call
    std::optional<duet::test::GetResult> out;
    bool inside = true;
    bool called_inside = false;
    client.upload(post(url_of(server, "/up")), producer, [&](std::error_code ec, duet::http::Response res) {
      called_inside = inside;
      out = duet::test::GetResult{ec, std::move(res)};
    });
    inside = false;
    while (!out && !deadline.expired) loop.run_once();
    REQUIRE(out);
    CHECK_FALSE(called_inside);
    r = std::move(*out);
  } else {
    r = upload(face, loop, client, post(url_of(server, "/up")), producer);
  }
  CHECK_FALSE(deadline.expired);
  if (way == Way::ends_then_throws) {
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.body == std::to_string(1000 * (fail_at - 1)) + " mismatch");  // the body it gave, whole
    REQUIRE(errors.messages.size() == 1);
    CHECK_THAT(errors.messages[0], Catch::Contains("the producer's source went away"));
    return;
  }
  CHECK(errors.messages.empty());
  CHECK(r.ec == duet::errc::body_producer_failed);
  CHECK_THAT(r.res.reason, Catch::Contains(way == Way::throws ? "threw: the producer's source went away"
                                                              : "dropped its piece unanswered"));
  // The connection the body was going out on is closed (half a body cannot be taken back).
  while (client.open_connections() != 0 && !deadline.expired) loop.run_once();
  CHECK(client.open_connections() == 0);
}

// ---- streamed server responses ---------------------------------------------------------------------

namespace {

/// A handler that streams `data` in pieces of `piece`, each handed over on a later turn of the loop
/// (an asynchronous producer), with its length declared or not; counts what it was asked for.
struct StreamingSite {
  duet::Loop& loop;
  std::string data;
  std::size_t piece = 100'000;
  bool declare_length = false;
  std::size_t asked = 0;
  std::size_t given = 0;

  duet::http::BodySource body() {
    auto at = std::make_shared<std::size_t>(0);
    return [this, at](duet::http::BodyPiece give) {
      ++asked;
      const std::size_t n = std::min(piece, data.size() - *at);
      std::string next = data.substr(*at, n);
      *at += n;
      given += n;
      loop.post(
          [give = std::move(give), next = std::move(next)]() mutable { give(std::error_code(), std::move(next)); });
    };
  }
  duet::http::Response head() const {
    duet::http::Response h{200, "OK", {}, {}};
    h.headers.add("Content-Type", "application/octet-stream");
    if (declare_length) h.headers.add("Content-Length", std::to_string(data.size()));
    return h;
  }
};

/// Sends `raw` on a new connection to `port` and reads until the server closes it.
std::string raw_exchange(duet::Loop& loop, std::uint16_t port, std::string raw) {
  std::string got;
  bool done = false;
  duet::connect(loop, duet::Endpoint::loopback(port), [&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    auto stream = std::make_shared<duet::TcpStream>(std::move(s));
    stream->write(std::move(raw), [](std::error_code) {});
    stream->read_start([&, stream](std::error_code ec, std::span<const char> data) {
      if (ec || data.empty()) {
        done = true;
        return stream->close();
      }
      got.append(data.data(), data.size());
    });
  });
  while (!done) loop.run_once();
  return got;
}

}  // namespace

TEST_CASE("a streamed server response, chunked or with its length, from either handler face",
          "[http][streaming][server]") {
  duet::Loop loop;
  StreamingSite site{loop, pattern(5 << 20)};
  site.declare_length = GENERATE(false, true);
  const bool coroutine_handler = GENERATE(false, true);
  CAPTURE(site.declare_length, coroutine_handler);
  std::optional<duet::http::Server> server;
  if (coroutine_handler)
    server.emplace(loop, duet::Endpoint::loopback(0),
                   [&](duet::http::ServerRequest, duet::http::Reply reply) -> duet::Task<> {
                     co_await duet::sleep(loop, 1ms);
                     reply.stream(site.head(), site.body());
                   });
  else
    server.emplace(loop, duet::Endpoint::loopback(0),
                   [&](duet::http::ServerRequest, duet::http::Reply reply) { reply.stream(site.head(), site.body()); });
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  auto r = duet::test::get(face, loop, client, url_of(*server, "/big"));
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == site.data);
  if (site.declare_length)
    CHECK(r.res.headers.get("Content-Length") == std::to_string(site.data.size()));
  else
    CHECK(r.res.headers.get("Transfer-Encoding") == "chunked");
  CHECK(client.idle_connections() == 1);  // the body ended cleanly: kept alive

  // HEAD: the head only, and the producer is never asked.
  site.asked = 0;
  duet::http::Request head;
  head.method = "HEAD";
  head.url = duet::http::Url::parse(url_of(*server, "/big"));
  r = duet::test::send(face, loop, client, head);
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body.empty());
  CHECK(site.asked == 0);
}

TEST_CASE("a streamed server response waits for a client that reads slowly: the producer is not asked ahead",
          "[http][streaming][server]") {
  duet::Loop loop;
  StreamingSite site{loop, pattern(96 << 20), 1 << 20};
  duet::http::Server server(loop, duet::Endpoint::loopback(0), [&](duet::http::ServerRequest, duet::http::Reply reply) {
    reply.stream(site.head(), site.body());
  });
  duet::http::Client client(loop);
  std::size_t asked_after_wait = 0;
  auto task = [&]() -> duet::Task<> {
    duet::http::ResponseStream stream = co_await client.open(get_request(url_of(server, "/big")));
    CHECK((co_await stream.read()).size() > 0);
    co_await duet::sleep(loop, 300ms);
    asked_after_wait = site.given;
  };  // the stream is dropped: the request is cancelled, the connection closed
  duet::run(loop, task());
  // What the producer handed over is what the socket buffers hold, and a piece or two: not 96 MiB.
  CHECK(asked_after_wait < (48u << 20));
  while (server.connections() != 0) loop.run_once();  // the server saw the close and let go
  const std::size_t asked = site.asked;
  loop.run_once();
  CHECK(site.asked == asked);
}

TEST_CASE("streamed server responses: HTTP/1.0, pipelined order, a failing producer, a broken length",
          "[http][streaming][server]") {
  duet::test::ErrorLog errors;  // outlives the loop, which may report as it is destroyed
  duet::Loop loop;
  loop.set_error_handler(errors.handler());
  StreamingSite site{loop, pattern(300'000), 50'000};
  int fail_at = 0;  // 0: never; else the producer fails at that piece
  bool lie_about_length = false;
  duet::http::Server server(loop, duet::Endpoint::loopback(0),
                            [&](duet::http::ServerRequest req, duet::http::Reply reply) {
                              if (req.path == "/small") return reply(duet::http::Response{200, "OK", {}, "small"});
                              auto head = site.head();
                              if (lie_about_length)
                                head.headers.set("Content-Length", std::to_string(site.data.size() + 1));
                              if (fail_at == 0) return reply.stream(head, site.body());
                              reply.stream(head, [&, n = 0](duet::http::BodyPiece give) mutable {
                                if (++n == fail_at)
                                  return give(std::make_error_code(std::errc::io_error), std::string());
                                give(std::error_code(), std::string(1000, 'f'));
                              });
                            });
  const std::uint16_t port = server.local_endpoint().port();

  SECTION("HTTP/1.0: no framing field, the body ends with the connection") {
    const std::string got = raw_exchange(loop, port, "GET /big HTTP/1.0\r\n\r\n");
    const auto end = got.find("\r\n\r\n");
    REQUIRE(end != std::string::npos);
    const std::string head = got.substr(0, end);
    CHECK_THAT(head, !Catch::Contains("Content-Length") && !Catch::Contains("Transfer-Encoding"));
    CHECK_THAT(head, Catch::Contains("Connection: close"));
    CHECK(got.substr(end + 4) == site.data);
  }
  SECTION("pipelined: a quick response after a streamed one waits its turn") {
    const std::string got = raw_exchange(
        loop, port, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const auto small = got.find("\r\n\r\nsmall");
    REQUIRE(small != std::string::npos);
    CHECK(small == got.size() - 9);                                 // the small response is last
    CHECK(got.find("0\r\n\r\nHTTP/1.1 200") != std::string::npos);  // right after the chunked body's end
  }
  SECTION("a producer that fails cuts the response short: the client sees a truncated body") {
    fail_at = 4;
    duet::http::Client client(loop);
    auto r = duet::test::get(Face::callbacks, loop, client, url_of(server, "/big"));
    CHECK(r.ec == duet::errc::malformed_response);
    REQUIRE(errors.messages.size() == 1);
    CHECK_THAT(errors.messages[0], Catch::Contains("producer failed"));
  }
  SECTION("a body longer or shorter than its Content-Length is cut short") {
    lie_about_length = true;
    site.declare_length = true;
    duet::http::Client client(loop);
    auto r = duet::test::get(Face::callbacks, loop, client, url_of(server, "/big"));
    CHECK(r.ec == duet::errc::malformed_response);
    REQUIRE(errors.messages.size() == 1);
    CHECK_THAT(errors.messages[0], Catch::Contains("broke its Content-Length"));
  }
}

namespace {
bool producer_freed = false;  // set by the producer's captures as they are destroyed
struct FreedWitness {
  FreedWitness() = default;
  FreedWitness(FreedWitness&& other) noexcept : live(std::exchange(other.live, false)) {}
  ~FreedWitness() {
    if (live) producer_freed = true;
  }
  bool live = true;
};
}  // namespace

TEST_CASE("a streamed server response's producer that throws, drops its piece, or ends at once",
          "[http][streaming][server]") {
  duet::test::ErrorLog errors;  // outlives the loop, which may report as it is destroyed
  duet::Loop loop;
  loop.set_error_handler(errors.handler());
  duet::test::Deadline deadline(loop, 20s);  // a connection nothing ends would hang the test instead
  const Way way = GENERATE(Way::throws, Way::drops, Way::drops_later, Way::ends_at_once, Way::ends_then_throws);
  CAPTURE(static_cast<int>(way));
  std::vector<duet::http::BodyPiece> kept;  // a piece held by the producer, dropped on a later turn
  producer_freed = false;
  bool alive_after_answer = false;
  duet::http::Server server(loop, duet::Endpoint::loopback(0), [&](duet::http::ServerRequest, duet::http::Reply reply) {
    reply.stream(duet::http::Response{200, "OK", {}, {}},
                 [&, n = 0, witness = FreedWitness()](duet::http::BodyPiece give) mutable {
                   if (n++ == 0) return give(std::error_code(), "first piece\n");
                   if (way == Way::ends_at_once) {
                     give(std::error_code(), std::string());  // the last piece ends the response here...
                     alive_after_answer = !producer_freed;    // ...while this producer still runs
                     return;
                   }
                   end_producer(way, give, kept, loop, "the producer's disk went away");
                 });
  });
  duet::http::ClientOptions options;
  options.read_timeout = 5s;  // (before the fix, the client's only way out)
  duet::http::Client client(loop, options);
  auto r = duet::test::get(Face::callbacks, loop, client, url_of(server, "/"));
  if (way == Way::ends_at_once) {
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.body == "first piece\n");
    CHECK(alive_after_answer);  // it was destroyed inside its own call before
    CHECK(errors.messages.empty());
    return;
  }
  if (way == Way::ends_then_throws) {
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.body == "first piece\n");
    REQUIRE(errors.messages.size() == 1);
    CHECK_THAT(errors.messages[0], Catch::Contains("the producer's disk went away"));
    return;
  }
  // The body is cut short (a chunked body without its end), the connection closed, the failure reported.
  CHECK(r.ec == duet::errc::malformed_response);
  while (server.connections() != 0 && !deadline.expired) loop.run_once();
  CHECK(server.connections() == 0);
  REQUIRE(errors.messages.size() == 1);
  CHECK_THAT(errors.messages[0],
             Catch::Contains(way == Way::throws ? "the producer's disk went away" : "dropped its piece unanswered"));
}

TEST_CASE("a streamed server response read by curl and by Node.js", "[http][streaming][server][peers]") {
  duet::Loop loop;
  StreamingSite site{loop, pattern(3 << 20), 64 << 10};
  duet::http::Server server(loop, duet::Endpoint::loopback(0), [&](duet::http::ServerRequest, duet::http::Reply reply) {
    reply.stream(site.head(), site.body());
  });
  duet::test::TempDir out;
  CHECK(run_program(loop, {"curl", "-sS", url_of(server, "/big")}, out / "curl.bin").success());
  CHECK(duet::test::read_file(out / "curl.bin") == site.data);

  duet::test::write_file(out / "data", site.data);
  CHECK(run_program(loop, {"sha256sum", out / "data"}, out / "sum.txt").success());
  CHECK(run_program(loop, {"node", DUET_TEST_PEERS_DIR "/node_get.js", url_of(server, "/big")}, out / "node.txt")
            .success());
  CHECK(duet::test::read_file(out / "node.txt") ==
        "200 " + std::to_string(site.data.size()) + " " + duet::test::read_file(out / "sum.txt").substr(0, 64) + "\n");
}

TEST_CASE("file_body: a file uploaded and served piece by piece, and a missing file as the transfer's error",
          "[http][streaming]") {
  duet::test::ErrorLog errors;
  duet::Loop loop;
  loop.set_error_handler(errors.handler());
  duet::test::TempDir dir;
  const std::string data = pattern((3 << 20) + 123);
  duet::test::write_file(dir / "data.bin", data);
  auto server = echo_length_server(loop, data, 4 << 20);
  duet::http::Server files(loop, duet::Endpoint::loopback(0),
                           [&](duet::http::ServerRequest req, duet::http::Reply reply) {
                             reply.stream(duet::http::Response{200, "OK", {}, {}},
                                          duet::http::file_body(loop, dir / req.path.substr(1), 10'000));
                           });
  duet::http::Client client(loop);
  const Face face = GENERATE(Face::callbacks, Face::coroutines);

  auto req = post(url_of(server, "/up"));
  req.headers.add("Content-Length", std::to_string(data.size()));
  auto r = upload(face, loop, client, req, duet::http::file_body(loop, dir / "data.bin"));
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == std::to_string(data.size()) + " match");

  r = duet::test::get(face, loop, client, url_of(files, "/data.bin"));
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == data);

  r = upload(face, loop, client, post(url_of(server, "/up")), duet::http::file_body(loop, dir / "missing.bin"));
  CHECK(r.ec.value() == UV_ENOENT);
  CHECK_THAT(r.res.reason, Catch::Contains("producer failed"));
  r = duet::test::get(face, loop, client, url_of(files, "/missing.bin"));
  CHECK(r.ec == duet::errc::malformed_response);  // the head went out; the body was cut short
  REQUIRE(errors.messages.size() == 1);
  CHECK_THAT(errors.messages[0], Catch::Contains("no such file or directory"));
}

// ---- streamed request bodies on the server --------------------------------------------------------

namespace {

/// A server streaming the bodies of requests to /up to its handler, which reads them whole, piece
/// by piece, and answers "LENGTH match|mismatch PIECES"; in the coroutine face, it sleeps once after
/// the first piece when `nap` is set. Other paths are buffered as usual.
struct UploadSite {
  duet::Loop& loop;
  std::string expected;
  std::chrono::milliseconds nap{0};
  std::size_t max_streamed = 0;
  std::optional<duet::http::Server> server{};
  std::vector<std::error_code> read_errors{};
  std::string received{};  // every piece the handler read, in order
  std::function<void()> after_first_piece{};

  void start(bool coroutine_handler) {
    duet::http::ServerOptions options;
    options.stream_body = [](const duet::http::ServerRequest& head) { return head.path == "/up"; };
    options.max_streamed_body_bytes = max_streamed;
    if (coroutine_handler) {
      server.emplace(
          loop, duet::Endpoint::loopback(0),
          [this](duet::http::ServerRequest req, duet::http::Reply reply) -> duet::Task<> {
            if (!req.body_stream.streamed()) {
              reply(duet::http::Response{200, "OK", {}, "buffered"});
              co_return;
            }
            std::string got;
            std::size_t pieces = 0;
            try {
              for (;;) {
                std::string piece = co_await req.body_stream.read();
                if (piece.empty()) break;
                got += piece;
                received += piece;
                if (++pieces == 1 && nap.count() > 0) {
                  co_await duet::sleep(loop, nap);
                  if (after_first_piece) after_first_piece();
                }
              }
            } catch (const std::system_error& e) {
              read_errors.push_back(e.code());
              reply(duet::http::Response{413, "", {}, "stopped: " + std::string(e.what()) + "\n"});
              co_return;
            }
            reply(duet::http::Response{200, "OK", {}, answer(got, pieces)});
          },
          options);
    } else {
      server.emplace(
          loop, duet::Endpoint::loopback(0),
          [this](duet::http::ServerRequest req, duet::http::Reply reply) {
            if (!req.body_stream.streamed()) return reply(duet::http::Response{200, "OK", {}, "buffered"});
            struct Read {
              duet::http::RequestBody body;
              duet::http::Reply reply;
              std::string got;
              std::size_t pieces = 0;
            };
            auto r = std::make_shared<Read>(Read{std::move(req.body_stream), std::move(reply), {}, 0});
            auto next = std::make_shared<std::function<void()>>();
            *next = [this, r, next] {
              r->body.read([this, r, next](std::error_code ec, std::string piece) {
                if (ec || piece.empty()) *next = nullptr;  // the last read: break the function's cycle
                if (ec) {
                  read_errors.push_back(ec);
                  return r->reply(duet::http::Response{413, "", {}, "stopped\n"});
                }
                if (piece.empty()) {
                  return r->reply(duet::http::Response{200, "OK", {}, answer(r->got, r->pieces)});
                }
                r->got += piece;
                received += piece;
                ++r->pieces;
                (*next)();
              });
            };
            (*next)();
          },
          options);
    }
  }
  std::string answer(const std::string& got, std::size_t pieces) const {
    return std::to_string(got.size()) + (got == expected ? " match " : " mismatch ") + std::to_string(pieces);
  }
  std::string url(const std::string& path = "/up") const { return url_of(*server, path); }
};

}  // namespace

TEST_CASE("a server streams a request body to its handler: both handler faces, chunked or sized, 100-continue",
          "[http][streaming][server][upload]") {
  duet::Loop loop;
  UploadSite site{loop, pattern(6 << 20)};
  const bool coroutine_handler = GENERATE(false, true);
  const bool sized = GENERATE(false, true);
  const bool expect = GENERATE(false, true);
  CAPTURE(coroutine_handler, sized, expect);
  site.start(coroutine_handler);
  duet::http::Client client(loop);

  Producer producer{site.expected, 100'000};
  auto req = post(site.url());
  if (sized) req.headers.add("Content-Length", std::to_string(site.expected.size()));
  if (expect) req.headers.add("Expect", "100-continue");
  auto r = upload(Face::coroutines, loop, client, req, producer.source());
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.status == 200);
  CHECK_THAT(r.res.body, Catch::StartsWith(std::to_string(site.expected.size()) + " match "));
  CHECK(site.read_errors.empty());
  CHECK(client.idle_connections() == 1);  // read to its end: the connection goes on

  // The same connection serves a buffered request next.
  auto again = duet::test::get(Face::callbacks, loop, client, site.url("/other"));
  CHECK_FALSE(again.ec);
  CHECK(again.res.status == 200);
}

TEST_CASE("a handler that reads slowly holds the client's upload back", "[http][streaming][server][upload]") {
  duet::Loop loop;
  UploadSite site{loop, pattern(96 << 20)};
  site.nap = 300ms;
  Producer producer{site.expected, 1 << 20};
  std::size_t given_during_nap = 0;
  site.after_first_piece = [&] { given_during_nap = producer.at; };
  site.start(true);
  duet::http::Client client(loop);
  auto req = post(site.url());
  req.headers.add("Content-Length", std::to_string(site.expected.size()));
  auto r = upload(Face::callbacks, loop, client, req, producer.source());
  REQUIRE_FALSE(r.ec);
  CHECK_THAT(r.res.body, Catch::StartsWith(std::to_string(site.expected.size()) + " match "));
  // While the handler slept on its first piece, the client could hand over only what the socket
  // buffers hold, and a piece or two: not the 96 MiB.
  CHECK(given_during_nap > 0);
  CHECK(given_during_nap < (48u << 20));
}

TEST_CASE("a streamed request body past its limit, cut off by the client, or dropped by the handler",
          "[http][streaming][server][upload]") {
  duet::Loop loop;
  UploadSite site{loop, std::string(2000, 'b')};
  site.max_streamed = 1000;
  const bool coroutine_handler = GENERATE(false, true);
  site.start(coroutine_handler);
  const std::uint16_t port = site.server->local_endpoint().port();

  SECTION("past max_streamed_body_bytes: the reader gets body_too_large, its answer closes") {
    const std::string got = raw_exchange(loop, port,
                                         "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" +
                                             std::string(2000, 'b') + "\r\n0\r\n\r\n");
    CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 413 "));
    CHECK_THAT(got, Catch::Contains("Connection: close"));
    REQUIRE(site.read_errors.size() == 1);
    CHECK(site.read_errors[0] == duet::errc::body_too_large);
  }
  SECTION("a declared length past max_streamed_body_bytes: 413 at once, the handler never called") {
    const std::string got = raw_exchange(
        loop, port, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + std::string(2000, 'b'));
    CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 413 "));
    CHECK_THAT(got, Catch::EndsWith("request body too large\n"));  // the server's refusal, not the handler's
    CHECK(site.read_errors.empty());
    CHECK(site.received.empty());
  }
  SECTION("100-continue with a declared length past the limit: 413 at once, the handler never called") {
    const std::string got = raw_exchange(
        loop, port, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n");
    CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 413 "));
    CHECK(site.read_errors.empty());
  }
  SECTION("the client goes away mid-body: the reader gets UV_ECONNABORTED") {
    site.max_streamed = 0;  // (no limit: the declared length is not refused at its head)
    site.start(coroutine_handler);
    std::optional<duet::TcpStream> client;
    duet::connect(loop, site.server->local_endpoint(), [&](std::error_code ec, duet::TcpStream s) {
      REQUIRE_FALSE(ec);
      client.emplace(std::move(s));
      client->write("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + std::string(500, 'b'),
                    [&](std::error_code) { client->close(); });
    });
    while (site.read_errors.empty()) loop.run_once();
    CHECK(site.read_errors[0].value() == UV_ECONNABORTED);
  }
  SECTION("a trailer Connection field: the reader gets malformed_response, and the connection closes") {
    // llhttp acts on a trailer Connection (before: the response went out without Connection: close,
    // and the next request on the connection was never answered).
    const std::string got = raw_exchange(loop, port,
                                         "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         "5\r\nbbbbb\r\n0\r\nConnection: close\r\n\r\n"
                                         "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 413 "));  // the handler's own answer to the error
    CHECK_THAT(got, Catch::Contains("Connection: close"));
    CHECK(got.find("HTTP/1.1", 1) == std::string::npos);  // nothing for /next
    REQUIRE(site.read_errors.size() == 1);
    CHECK(site.read_errors[0] == duet::errc::malformed_response);
  }
  SECTION("malformed chunked framing mid-body: the reader gets malformed_response") {
    const std::string got = raw_exchange(
        loop, port, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nbbbbb\r\nzz\r\n");
    CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 413 "));  // the handler's own answer to the error
    REQUIRE(site.read_errors.size() == 1);
    CHECK(site.read_errors[0] == duet::errc::malformed_response);
  }
  SECTION("a chunk after bytes that are not CRLF, in the same read: the reader never gets it") {
    const std::string got = raw_exchange(loop, port,
                                         "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         "5\r\nbbbbbXX5\r\ncccccc\r\n0\r\n\r\n");
    CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 413 "));
    REQUIRE(site.read_errors.size() == 1);
    CHECK(site.read_errors[0] == duet::errc::malformed_response);
    CHECK(site.received == "bbbbb");
  }
}

TEST_CASE("a handler that drops a streamed body unread answers, and the connection closes after",
          "[http][streaming][server][upload]") {
  duet::Loop loop;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [](duet::http::ServerRequest req, duet::http::Reply reply) {
        { auto unwanted = std::move(req.body_stream); }  // dropped before any of it was read
        reply(duet::http::Response{200, "OK", {}, "no thanks"});
      },
      options);
  // Only the head is sent: the server must not wait for the 100000 bytes it announced.
  const std::string got = raw_exchange(loop, server.local_endpoint().port(),
                                       "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 200 OK"));
  CHECK_THAT(got, Catch::Contains("Connection: close"));
  CHECK_THAT(got, Catch::EndsWith("no thanks"));
}

TEST_CASE("a streamed body's 100 Continue goes out when its handler first reads it — never if it does not",
          "[http][streaming][server][upload]") {
  duet::Loop loop;
  // 0: void(ServerRequest, Reply); 1: Task<void>(ServerRequest, Reply); 2: Task<Response>(ServerRequest)
  const int face = GENERATE(0, 1, 2);
  CAPTURE(face);
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest& head) { return head.path != "/other"; };
  options.request_timeout = 100ms;  // shorter than /later's wait: it must not run while the 100 is owed
  int reads_started = 0;
  auto read_all = [&](duet::http::ServerRequest req) -> duet::Task<duet::http::Response> {
    if (req.path == "/later") co_await duet::sleep(loop, 300ms);  // deciding, say
    ++reads_started;
    std::string got;
    for (std::string piece; !(piece = co_await req.body_stream.read()).empty();) got += piece;
    co_return duet::http::Response{200, "OK", {}, "got " + got};
  };
  const duet::http::Response refusal{401, "", {}, "who are you?"};
  const duet::http::Response other{200, "OK", {}, "other"};
  std::optional<duet::http::Server> server;
  if (face == 0) {
    server.emplace(
        loop, duet::Endpoint::loopback(0),
        [&](duet::http::ServerRequest req, duet::http::Reply reply) {
          if (req.path == "/other") return reply(other);
          if (req.path == "/slow")
            return duet::sleep(loop, 300ms,
                               [&other, reply = std::move(reply)](std::error_code) mutable { reply(other); });
          if (req.path == "/refuse") return reply(refusal);  // the request, and its body, still held
          ++reads_started;
          auto body = std::make_shared<duet::http::RequestBody>(std::move(req.body_stream));
          auto got = std::make_shared<std::string>();
          auto next = std::make_shared<std::function<void()>>();
          *next = [body, got, next, reply = std::make_shared<duet::http::Reply>(std::move(reply))] {
            body->read([body, got, next, reply](std::error_code ec, std::string piece) {
              if (!ec && !piece.empty()) {
                *got += piece;
                return (*next)();
              }
              (*reply)(duet::http::Response{ec ? 500 : 200, "", {}, "got " + *got});
              *next = nullptr;  // the function's cycle
            });
          };
          (*next)();
        },
        options);
  } else if (face == 1) {
    server.emplace(
        loop, duet::Endpoint::loopback(0),
        [&](duet::http::ServerRequest req, duet::http::Reply reply) -> duet::Task<> {
          if (req.path == "/other") {
            reply(other);
          } else if (req.path == "/slow") {
            co_await duet::sleep(loop, 300ms);
            reply(other);
          } else if (req.path == "/refuse") {
            reply(refusal);  // the request, and its body, still held in this frame
          } else {
            reply(co_await read_all(std::move(req)));
          }
        },
        options);
  } else {
    server.emplace(
        loop, duet::Endpoint::loopback(0),
        [&](duet::http::ServerRequest req) -> duet::Task<duet::http::Response> {
          if (req.path == "/other") co_return other;
          if (req.path == "/slow") {
            co_await duet::sleep(loop, 300ms);
            co_return other;
          }
          if (req.path == "/refuse") co_return refusal;
          co_return co_await read_all(std::move(req));
        },
        options);
  }
  const std::uint16_t port = server->local_endpoint().port();

  SECTION("a handler that answers without reading: no 100, so no body — after the answer before it") {
    ExpectingClient client;
    client.exchange(loop, port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n" + expecting_head("/refuse", 5), "hello");
    CHECK_FALSE(client.timed_out);
    CHECK_THAT(client.got, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
    CHECK_THAT(client.got, Catch::Contains("\r\n\r\notherHTTP/1.1 401 Unauthorized\r\n"));
    CHECK_THAT(client.got, Catch::EndsWith("who are you?"));
    CHECK(client.got.find("100 Continue") == std::string::npos);
    CHECK_FALSE(client.body_sent);
  }
  SECTION("a handler that reads its ended body late does not send the 100 owed to the request after it") {
    ExpectingClient client;
    client.exchange(
        loop, port,
        "POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + expecting_head("/refuse", 5),
        "hello");
    CHECK_FALSE(client.timed_out);
    CHECK_THAT(client.got, Catch::Contains("\r\n\r\ngot HTTP/1.1 401 Unauthorized\r\n"));
    CHECK(client.got.find("100 Continue") == std::string::npos);
    CHECK_FALSE(client.body_sent);
  }
  SECTION("behind a slow answer, a 100 waits its turn, and the client's deadline waits with it") {
    for (const std::string path : {"/read", "/other"}) {  // a body streamed to its handler, and one not
      CAPTURE(path);
      ExpectingClient client;
      client.exchange(loop, port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + expecting_head(path, 5), "hello");
      CHECK_FALSE(client.timed_out);
      CHECK(client.body_sent);
      CHECK_THAT(client.got, Catch::Contains("\r\n\r\notherHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
      CHECK_THAT(client.got, Catch::EndsWith(path == "/read" ? "got hello" : "other"));
    }
  }
  SECTION("a handler that reads: the 100, then the body, then the answer") {
    ExpectingClient client;
    client.exchange(loop, port, expecting_head("/read", 5), "hello");
    CHECK_FALSE(client.timed_out);
    CHECK(client.body_sent);
    CHECK_THAT(client.got, Catch::StartsWith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
    CHECK_THAT(client.got, Catch::EndsWith("got hello"));
  }
  if (face != 0) {
    SECTION("a handler that reads after a while: the 100 waits for the read, the client's deadline with it") {
      ExpectingClient client;
      int reads_at_continue = -1;
      client.on_continue = [&] { reads_at_continue = reads_started; };
      client.exchange(loop, port, expecting_head("/later", 5), "hello");
      CHECK_FALSE(client.timed_out);
      CHECK(reads_at_continue == 1);  // not while the handler was still deciding
      CHECK_THAT(client.got, Catch::StartsWith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
      CHECK_THAT(client.got, Catch::EndsWith("got hello"));
    }
  }
}

TEST_CASE("a streamed answer before the body is read — the 100 goes out if the handler still holds the body",
          "[http][streaming][server][upload]") {
  duet::test::ErrorLog errors;  // (before the Loop, which may report as it goes)
  duet::Loop loop;
  loop.set_error_handler(errors.handler());
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  options.request_timeout = 100ms;  // shorter than the slow answers' wait: it must not cut them short
  const std::string large(8 << 20, 'n');
  auto answer_with_echo = [](duet::http::RequestBody& body, duet::http::Reply& reply) {
    // The answer's body is the request's, read as the answer streams.
    auto held = std::make_shared<duet::http::RequestBody>(std::move(body));
    reply.stream(duet::http::Response{200, "OK", {}, {}}, [held](duet::http::BodyPiece piece) {
      held->read(
          [piece = std::move(piece)](std::error_code ec, std::string bytes) mutable { piece(ec, std::move(bytes)); });
    });
  };
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        if (req.path == "/echo") return answer_with_echo(req.body_stream, reply);
        if (req.path == "/slow-echo")
          return duet::sleep(loop, 300ms, [&, req = std::move(req), reply = std::move(reply)](std::error_code) mutable {
            answer_with_echo(req.body_stream, reply);
          });
        if (req.path == "/slow-refuse") {  // a long answer, the request held a while after it
          auto held = std::make_shared<duet::http::ServerRequest>(std::move(req));
          return duet::sleep(loop, 300ms, [&, held, reply = std::move(reply)](std::error_code) mutable {
            reply(duet::http::Response{401, "", {}, large});
            duet::sleep(loop, 300ms, [held](std::error_code) {});
          });
        }
        if (req.path == "/bad") {  // a head that cannot be sent: a 500, the body still held
          auto held = std::make_shared<duet::http::RequestBody>(std::move(req.body_stream));
          return reply.stream(duet::http::Response{99, "", {}, {}},
                              [held](duet::http::BodyPiece piece) { piece({}, std::string()); });
        }
        auto said = std::make_shared<bool>(false);  // the body dropped with the request, unread
        reply.stream(duet::http::Response{200, "OK", {}, {}}, [said](duet::http::BodyPiece piece) {
          piece({}, std::exchange(*said, true) ? std::string() : std::string("bye"));
        });
      },
      options);
  const std::uint16_t port = server.local_endpoint().port();

  const std::string continued = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n";
  const std::string echoed = "\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  struct Case {
    std::string path;
    bool body_sent;  // a 100 came
    std::string starts, ends;
  };
  for (const Case& c : {
           Case{"/echo", true, continued, echoed},  // no deadlock: the answer's head does not wait for a read
           Case{"/drop", false, "HTTP/1.1 200 OK\r\n", "\r\n\r\n3\r\nbye\r\n0\r\n\r\n"},
           // An answer after longer than `request_timeout`: no deadline of the client's is left to cut it.
           Case{"/slow-echo", true, continued, echoed},
           Case{"/slow-refuse", false, "HTTP/1.1 401 Unauthorized\r\n", "\r\n\r\n" + large},
           Case{"/bad", false, "HTTP/1.1 500 ", "internal error\n"},
       }) {
    CAPTURE(c.path);
    ExpectingClient client;
    client.exchange(loop, port, expecting_head(c.path, 5), "hello");
    CHECK_FALSE(client.timed_out);
    CHECK(client.body_sent == c.body_sent);
    CHECK_THAT(client.got, Catch::StartsWith(c.starts));
    CHECK_THAT(client.got, Catch::EndsWith(c.ends));
  }
  REQUIRE(errors.messages.size() == 1);
  CHECK_THAT(errors.messages[0], Catch::Contains("status"));
}

TEST_CASE("a 100 Continue one request waits for stops no deadline of another, nor loses a refusal",
          "[http][streaming][server][upload]") {
  duet::Loop loop;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest& head) { return head.path.starts_with("/up"); };
  options.max_streamed_body_bytes = 1000;
  options.header_timeout = 200ms;
  options.request_timeout = 200ms;
  bool slow_answered = false;
  std::vector<std::pair<std::error_code, bool>> read_ends;  // each read's end, and whether /slow had answered
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        if (req.path.starts_with("/slow")) {  // "/slowMS": answers after MS milliseconds
          const auto ms = std::chrono::milliseconds(std::stoi(req.path.substr(5)));
          return duet::sleep(loop, ms, [&, reply = std::move(reply)](std::error_code) mutable {
            slow_answered = true;
            reply(duet::http::Response{200, "OK", {}, "slow"});
          });
        }
        if (!req.body_stream.streamed()) return reply(duet::http::Response{200, "OK", {}, "buffered"});
        auto body = std::make_shared<duet::http::RequestBody>(std::move(req.body_stream));
        if (req.path == "/up/answer-first") reply(duet::http::Response{200, "OK", {}, "answered"});
        auto next = std::make_shared<std::function<void()>>();
        *next = [&, body, next, reply = std::make_shared<duet::http::Reply>(std::move(reply))] {
          body->read([&, body, next, reply](std::error_code ec, std::string piece) {
            if (!ec && !piece.empty()) return (*next)();
            read_ends.emplace_back(ec, slow_answered);
            *next = nullptr;  // the function's cycle
            duet::sleep(loop, 300ms, [reply](std::error_code) {
              (*reply)(duet::http::Response{200, "OK", {}, "read"});
            });
          });
        };
        (*next)();
      },
      options);
  const std::uint16_t port = server.local_endpoint().port();

  SECTION("a head cut short after a request that sent its body at once: the header timeout holds") {
    ExpectingClient client;
    client.exchange(loop, port,
                    "GET /slow3000 HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /other HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"
                    "GET /other HTTP/1.1\r\nHo",
                    "");
    CHECK_FALSE(client.timed_out);
    CHECK(client.got.empty());  // closed by the deadline, not after the slow answer
    CHECK_FALSE(slow_answered);
  }
  SECTION("two requests that ask for a 100: the first one's does not restart the second's deadline") {
    ExpectingClient client;
    client.continues = 2;
    client.exchange(loop, port,
                    "GET /slow300 HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /slow600 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" +
                        expecting_head("/other", 5),
                    "hello");
    CHECK_FALSE(client.timed_out);
    CHECK(client.body_sent);
    CHECK(client.count_continues() == 2);
    CHECK_THAT(client.got, Catch::EndsWith("buffered"));
  }
  SECTION("a streamed request refused at its head after a streamed one: the earlier answer keeps the connection") {
    for (const std::string refused :
         {"Expect: 100-continue\r\nContent-Length: 99999", "Expect: teapot\r\nContent-Length: 5"}) {
      CAPTURE(refused);
      const std::string got = raw_exchange(loop, port,
                                           "POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                                           "POST /up/b HTTP/1.1\r\nHost: x\r\n" +
                                               refused + "\r\n\r\n");
      CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nread"));
      CHECK_THAT(got, Catch::Contains(refused.starts_with("Expect: 100") ? "\r\n\r\nreadHTTP/1.1 413 "
                                                                         : "\r\n\r\nreadHTTP/1.1 417 "));
    }
  }
  SECTION("a body answered before it is read: a half-close mid-body reaches its reader at once") {
    ExpectingClient client;
    client.half_close = true;
    client.exchange(loop, port,
                    "GET /slow1000 HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /up/answer-first HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhel",
                    "");
    CHECK_FALSE(client.timed_out);
    CHECK_THAT(client.got, Catch::EndsWith("\r\n\r\nanswered"));
    REQUIRE(read_ends.size() == 1);
    CHECK(read_ends[0].first.value() == UV_ECONNABORTED);
    CHECK_FALSE(read_ends[0].second);  // told at the half-close, not when the connection ended
  }
}

TEST_CASE("a streamed request behind an answer that ends the connection is not handed to its handler",
          "[http][streaming][server][upload]") {
  duet::Loop loop;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  options.request_timeout = 100ms;  // shorter than the answer's body takes: it must not cut it
  int uploads = 0;
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        if (req.path == "/up") ++uploads;
        auto said = std::make_shared<bool>(false);  // no length: in HTTP/1.0 the body ends with the connection
        reply.stream(duet::http::Response{200, "OK", {}, {}}, [&loop, said](duet::http::BodyPiece piece) {
          duet::sleep(loop, 300ms, [said, piece = std::move(piece)](std::error_code) mutable {
            piece({}, std::exchange(*said, true) ? std::string() : std::string("bye"));
          });
        });
      },
      options);
  for (const std::string expect : {"Expect: 100-continue\r\n", ""}) {
    CAPTURE(expect);
    const std::string got = raw_exchange(loop, server.local_endpoint().port(),
                                         "GET /last HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                         "POST /up HTTP/1.1\r\nHost: x\r\n" +
                                             expect + "Content-Length: 5\r\n\r\n");
    CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
    CHECK_THAT(got, Catch::EndsWith("\r\n\r\nbye"));
    CHECK(got.find("100 Continue") == std::string::npos);
  }
  CHECK(uploads == 0);
}

TEST_CASE("Expect: 100-continue with max_body_bytes 0 (no body allowed): 413 at once", "[http][server][upload]") {
  duet::Loop loop;
  duet::http::ServerOptions options;
  options.max_body_bytes = 0;
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [](duet::http::ServerRequest, duet::http::Reply reply) {
        reply(duet::http::Response{200, "OK", {}, "ok"});
      },
      options);
  ExpectingClient client;
  client.exchange(loop, server.local_endpoint().port(), expecting_head("/x", 10), "0123456789");
  CHECK_FALSE(client.timed_out);
  CHECK_FALSE(client.body_sent);
  CHECK_THAT(client.got, Catch::StartsWith("HTTP/1.1 413 "));
}

TEST_CASE("a streamed body read after its Loop is gone throws loop_closed, and one waiting is never called",
          "[http][streaming][server][upload]") {
  auto loop = std::make_unique<duet::Loop>();
  loop->set_error_handler([](std::exception_ptr) {});  // (the Loop's report of what it cut short)
  std::optional<duet::http::ServerRequest> kept;
  std::optional<duet::http::Reply> kept_reply;
  bool called = false;
  std::stop_source stop;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  std::optional<duet::http::Server> server;
  server.emplace(
      *loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        kept.emplace(std::move(req));
        kept_reply.emplace(std::move(reply));
        kept->body_stream.read(  // (no body comes)
            duet::with_cancellation(stop.get_token(), [&](std::error_code, std::string) { called = true; }));
      },
      options);
  std::optional<duet::TcpStream> client;
  duet::connect(*loop, server->local_endpoint(), [&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    client.emplace(std::move(s));
    client->write(expecting_head("/up", 5), [](std::error_code) {});
  });
  while (!kept) loop->run_once();
  loop.reset();  // before the Server, the request and the Reply
  CHECK_THROWS_MATCHES(kept->body_stream.read([](std::error_code, std::string) {}), std::system_error,
                       Catch::Predicate<std::system_error>(
                           [](const std::system_error& e) { return e.code() == duet::errc::loop_closed; }));
  stop.request_stop();                                         // reaches nothing of the freed loop (ASan)
  (*kept_reply)(duet::http::Response{200, "OK", {}, "late"});  // sends nothing, reports nothing
  kept.reset();
  kept_reply.reset();
  server.reset();
  CHECK_FALSE(called);  // a read waiting when the Loop went is never called back
}

TEST_CASE("a body reader waiting when the Loop goes is destroyed uncalled: a reader owning its body is not leaked",
          "[http][streaming][server][upload]") {
  // The Server destroyed after its Loop, before it, or by the reader's own destruction as the Loop goes;
  // or that destruction takes another Server, made earlier (the Loop's end has yet to reach it).
  enum Order { loop_first, server_first, server_by_reader, other_server_by_reader };
  const int order = GENERATE(loop_first, server_first, server_by_reader, other_server_by_reader);
  CAPTURE(order);
  struct OnDestroy {
    std::function<void()> fn;
    ~OnDestroy() { fn(); }
  };
  auto loop = std::make_unique<duet::Loop>();
  loop->set_error_handler([](std::exception_ptr) {});  // (the Loop's report of what it cut short)
  std::vector<std::weak_ptr<duet::http::RequestBody>> watched;
  int called = 0;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  std::optional<duet::http::Server> other(
      std::in_place, *loop, duet::Endpoint::loopback(0), [](duet::http::ServerRequest, duet::http::Reply) {}, options);
  std::optional<duet::http::Server> server;
  server.emplace(
      *loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        // The usual callback shape: the reader keeps the body (and the Reply) alive until it is called.
        auto body = std::make_shared<duet::http::RequestBody>(std::move(req.body_stream));
        watched.push_back(body);
        auto last_words = std::make_shared<OnDestroy>();
        last_words->fn = [&] {
          if (order == server_by_reader) server.reset();
          if (order == other_server_by_reader) other.reset();
        };
        body->read([&called, body, reply = std::move(reply), last_words](std::error_code, std::string) { ++called; });
      },
      options);
  // A second connection waits the same way: the Loop's end reaches both, whichever goes first.
  std::vector<duet::TcpStream> clients;
  for (int i = 0; i < 2; ++i) {
    duet::connect(*loop, server->local_endpoint(), [&](std::error_code ec, duet::TcpStream s) {
      REQUIRE_FALSE(ec);
      clients.push_back(std::move(s));
      clients.back().write("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", [](std::error_code) {});
    });
  }
  while (watched.size() < 2) loop->run_once();
  if (order == server_first) server.reset();  // its connections end the bodies: the readers hear that
  loop.reset();
  server.reset();
  other.reset();
  clients.clear();
  CHECK(called == (order == server_first ? 2 : 0));  // after the Loop, a reader waiting is never called back...
  for (const auto& w : watched) CHECK(w.expired());  // ...but it is destroyed, and with it the body it owned
}

TEST_CASE(
    "a host's Loop destroyed from inside a body reader, a handler or a client's callback: nothing runs on into it",
    "[http][streaming][lifetime][embed]") {
  // Each callback returns into duet's code with the Loop object gone: that code must hold only what
  // outlives it (the loop's core, alive until duet's last handle on the host's loop has closed), and
  // must call nothing more: no other handler, no other request's callback.
  enum Where { body_reader, handler, pipelined, predicate, response_reader, body_sink, completion, timeouts };
  const int where =
      GENERATE(body_reader, handler, pipelined, predicate, response_reader, body_sink, completion, timeouts);
  CAPTURE(where);
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  auto loop = std::make_unique<duet::Loop>(&host);
  duet::test::ErrorLog log;  // the Loop's report of what it cut short, and nothing else
  loop->set_error_handler(log.handler());
  std::vector<std::weak_ptr<void>> watched;  // what the callbacks owned: freed in the end
  int handled = 0;                           // handlers called
  int completed = 0;                         // client callbacks called
  const std::string big = pattern(1 << 20);
  std::vector<duet::http::Reply> held;  // answers never given: the client's header deadlines run out
  duet::http::ServerOptions options;
  options.stream_body = [&](const duet::http::ServerRequest& req) {
    if (where == predicate) loop.reset();
    return req.method == "POST";
  };
  std::optional<duet::http::Server> server;
  server.emplace(
      *loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        ++handled;
        if (where == pipelined) loop.reset();  // the request behind it is not handed to the handler
        if (where == timeouts) {
          held.push_back(std::move(reply));
          // Keeps the loop busy past both deadlines (500 ms from each request's write, and the two
          // are written in the same few turns), so that one run of the client's header timer expires
          // both requests: the first one's callback destroys the Loop.
          if (held.size() == 2) std::this_thread::sleep_for(600ms);
          return;
        }
        if (req.method != "POST") return reply(duet::http::Response{200, "OK", {}, big});
        auto body = std::make_shared<duet::http::RequestBody>(std::move(req.body_stream));
        watched.push_back(body);
        body->read(
            [&, body, reply = std::make_shared<duet::http::Reply>(std::move(reply))](std::error_code, std::string) {
              body->read([body, reply](std::error_code, std::string) {});  // waits for the rest
              if (where == body_reader) loop.reset();
            });
        if (where == handler) loop.reset();  // with the body's first piece parsed right after
      },
      options);
  duet::http::ClientOptions client_options;
  client_options.header_timeout = 500ms;
  std::optional<duet::http::Client> client(std::in_place, *loop, client_options);
  std::vector<duet::TcpStream> raw;
  auto send_raw = [&](std::string bytes) {
    duet::connect(*loop, server->local_endpoint(), [&, bytes](std::error_code ec, duet::TcpStream s) {
      REQUIRE_FALSE(ec);
      raw.push_back(std::move(s));
      raw.back().write(bytes, [](std::error_code) {});
    });
  };
  switch (where) {
    case body_reader:
    case handler:
    case predicate:
      send_raw("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello");
      break;
    case pipelined:
      send_raw("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
      break;
    case response_reader:
      client->open(get_request(url_of(*server, "/")), [&](std::error_code ec, duet::http::ResponseStream s) {
        REQUIRE_FALSE(ec);
        auto stream = std::make_shared<duet::http::ResponseStream>(std::move(s));
        watched.push_back(stream);
        stream->read([&, stream](std::error_code, std::string) {
          stream->read([stream](std::error_code, std::string) {});
          loop.reset();
        });
      });
      break;
    case body_sink:
      client->request(
          get_request(url_of(*server, "/")), [&](std::string_view) { loop.reset(); },
          [](std::error_code, duet::http::Response) {});
      break;
    case completion:
    case timeouts:
      for (int i = 0; i < 2; ++i)  // the second is still going when the first's callback destroys the Loop
        client->get(url_of(*server, "/"), [&](std::error_code, duet::http::Response) {
          ++completed;
          loop.reset();
        });
      break;
  }
  // Nothing is reported but the Loop's own report: no error out of duet's code running on after it
  // (a timer or a read started on the gone Loop, a freed exchange's shared_from_this).
  const std::string printed = duet::test::stderr_of([&] {
    for (int turn = 0; loop && turn < 100000; ++turn) uv_run(&host, UV_RUN_ONCE);
    if (loop) return;  // (the callback did not destroy it: failed below)
    client.reset();
    server.reset();
    raw.clear();
    held.clear();
    while (uv_loop_close(&host) == UV_EBUSY) uv_run(&host, UV_RUN_DEFAULT);  // duet's handles close: the core is freed
  });
  REQUIRE_FALSE(loop);
  CHECK(printed.empty());
  for (const auto& m : log.messages) CHECK(m.find("duet::Loop destroyed with") != std::string::npos);
  CHECK(watched.size() == (where == body_reader || where == handler || where == response_reader ? 1U : 0U));
  for (const auto& w : watched) CHECK(w.expired());
  if (where != completion) CHECK(handled == (where == predicate ? 0 : where == timeouts ? 2 : 1));
  CHECK(completed == (where == completion || where == timeouts ? 1 : 0));
}

TEST_CASE(
    "a Client and a Server outliving a host's Loop start nothing on it: queued requests, paused bodies, late pieces",
    "[http][streaming][lifetime][embed]") {
  // The Loop goes from a callback inside a response's parse, or from outside; then (`host_ran`, or
  // not) the host runs its loop, which frees duet's state; then the program lets go of what it kept.
  enum Case { sink_then_queued, opened_then_queued, paused_stream_dropped, stop_after, late_piece };
  const int which = GENERATE(sink_then_queued, opened_then_queued, paused_stream_dropped, stop_after, late_piece);
  const bool host_ran = GENERATE(false, true);
  CAPTURE(which, host_ran);
  uv_loop_t host;
  REQUIRE(uv_loop_init(&host) == 0);
  auto loop = std::make_unique<duet::Loop>(&host);
  duet::test::ErrorLog log;  // the Loop's report of what it cut short, and nothing else
  loop->set_error_handler(log.handler());
  const std::string big = pattern(1 << 20);
  std::vector<duet::http::Reply> held;       // answers never given
  std::vector<duet::http::BodyPiece> asked;  // a streamed answer's producer, holding its pieces
  std::optional<duet::http::Server> server;
  server.emplace(*loop, duet::Endpoint::loopback(0), [&](duet::http::ServerRequest req, duet::http::Reply reply) {
    if (req.target == "/hold") return held.push_back(std::move(reply));
    if (req.target == "/stream")
      return reply.stream(duet::http::Response{200, "OK", {}, {}},
                          [&](duet::http::BodyPiece give) { asked.push_back(std::move(give)); });
    duet::http::Response res{200, "OK", {}, req.target == "/big" ? big : std::string("hi")};
    if (req.target == "/close") res.headers.add("Connection", "close");  // its end frees the origin's slot
    reply(std::move(res));
  });
  duet::http::ClientOptions options;
  options.max_connections_per_origin = 1;  // a second request waits in the Client's queue
  std::optional<duet::http::Client> client(std::in_place, *loop, options);
  std::shared_ptr<duet::http::ResponseStream> kept;
  std::stop_source stop;
  int called = 0;
  auto turn = [&] { uv_run(&host, UV_RUN_ONCE); };
  switch (which) {
    case sink_then_queued:  // the sink destroys the Loop; the response's end frees the slot
      client->request(
          get_request(url_of(*server, "/close")), [&](std::string_view) { loop.reset(); },
          [&](std::error_code, duet::http::Response) { ++called; });
      break;
    case opened_then_queued:  // the opener destroys the Loop; the body-less end frees the slot
      client->open(get_request(url_of(*server, "/close")),
                   [&](std::error_code, duet::http::ResponseStream) { loop.reset(); });
      break;
    case paused_stream_dropped:  // a body paused with a piece waiting (from the head's read) for a read
      client->open(get_request(url_of(*server, "/big")), [&](std::error_code ec, duet::http::ResponseStream s) {
        REQUIRE_FALSE(ec);
        kept = std::make_shared<duet::http::ResponseStream>(std::move(s));
      });
      break;
    case stop_after:  // the first request is never answered
      client->get(url_of(*server, "/hold"), [&](std::error_code, duet::http::Response) { ++called; });
      break;
    case late_piece:  // the producer answers after the Loop has gone
      client->get(url_of(*server, "/stream"), [&](std::error_code, duet::http::Response) { ++called; });
      break;
  }
  if (which != opened_then_queued && which != sink_then_queued) {
    // The second request waits behind the first, for a connection, with a stop token.
    client->get(url_of(*server, "/"),
                duet::with_cancellation(stop.get_token(), [&](std::error_code, duet::http::Response) { ++called; }));
    for (int i = 0; loop && i < 100000 && held.empty() && asked.empty() && !kept; ++i) turn();
    loop.reset();  // from outside any callback
  } else {
    client->get(url_of(*server, "/"), [&](std::error_code, duet::http::Response) { ++called; });
  }
  const std::string printed = duet::test::stderr_of([&] {
    for (int i = 0; loop && i < 100000; ++i) turn();
    if (loop) return;                                          // (the callback did not destroy it: failed below)
    if (host_ran) uv_run(&host, UV_RUN_NOWAIT);                // duet's state on the host's loop is freed
    kept.reset();                                              // a paused body's stream, dropped
    stop.request_stop();                                       // a request queued in the Client, stopped
    for (auto& give : asked) give(std::error_code(), "late");  // a streamed answer's late piece
    asked.clear();
    held.clear();
    client.reset();
    server.reset();
    while (uv_loop_close(&host) == UV_EBUSY) uv_run(&host, UV_RUN_DEFAULT);
  });
  REQUIRE_FALSE(loop);
  CHECK(printed.empty());  // nothing went wrong in duet's code running on after the Loop
  for (const auto& m : log.messages) CHECK(m.find("duet::Loop destroyed with") != std::string::npos);
  CHECK(called == 0);  // the Loop went with every request unanswered: none is called back
}

TEST_CASE("curl uploads to a streamed request body", "[http][streaming][server][upload][peers]") {
  duet::Loop loop;
  UploadSite site{loop, pattern(5 << 20)};
  site.start(false);
  duet::test::TempDir dir;
  duet::test::write_file(dir / "data.bin", site.expected);
  CHECK(run_program(loop, {"curl", "-sS", "-X", "POST", "-T", dir / "data.bin", site.url()}, dir / "answer.txt")
            .success());
  CHECK_THAT(duet::test::read_file(dir / "answer.txt"),
             Catch::StartsWith(std::to_string(site.expected.size()) + " match "));
  CHECK(run_program(loop,
                    {"curl", "-sS", "-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary",
                     "@" + dir / "data.bin", site.url()},
                    dir / "answer2.txt")
            .success());
  CHECK_THAT(duet::test::read_file(dir / "answer2.txt"),
             Catch::StartsWith(std::to_string(site.expected.size()) + " match "));
}

// ---- edge cases found by reading the above ---------------------------------------------------------

TEST_CASE("a sink that cancels the request on a piece handed over by a resume", "[http][streaming]") {
  duet::Loop loop;
  BodyServer server(loop, pattern(4 << 20));
  duet::http::Client client(loop);
  std::stop_source stop;
  std::optional<std::error_code> result;
  std::size_t pieces = 0;
  client.request(
      get_request(server.url()),
      [&](std::string_view, duet::http::BodyFlow& flow) {
        if (++pieces == 1)
          loop.post([resume = std::make_shared<duet::http::Resume>(flow.pause())] { (*resume)(); });
        else
          stop.request_stop();  // from inside the piece the resume handed over
      },
      duet::with_cancellation(stop.get_token(), [&](std::error_code ec, duet::http::Response) { result = ec; }));
  while (!result) loop.run_once();
  CHECK(result->value() == UV_ECANCELED);
  CHECK(pieces >= 2);
}

TEST_CASE("gzip with several members is decoded whole, and bytes after a deflate stream or a bad member are errors",
          "[http][streaming][gzip]") {
  duet::Loop loop;
  duet::http::Client client(loop);
  const std::string a = pattern(70'000), b = pattern(90'000).substr(1000);
  auto fetch = [&](const std::string& body, const std::string& coding) {
    BodyServer server(loop, body, BodyServer::Framing::chunked, 1000, "Content-Encoding: " + coding + "\r\n");
    auto req = get_request(server.url());
    req.decompress = true;
    return duet::test::send(Face::callbacks, loop, client, req);
  };
  auto r = fetch(compressed(a, 15 + 16) + compressed(b, 15 + 16), "gzip");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == a + b);
  r = fetch(compressed(a, 15 + 16) + "TRAILING GARBAGE", "gzip");
  CHECK(r.ec == duet::errc::malformed_response);
  r = fetch(compressed(a, 15) + "x", "deflate");
  CHECK(r.ec == duet::errc::malformed_response);
  CHECK_THAT(r.res.reason, Catch::Contains("after the end of the deflate body"));
}

TEST_CASE("bare deflate whose first bytes come one at a time", "[http][streaming][gzip]") {
  duet::Loop loop;
  duet::http::Client client(loop);
  const std::string plain = pattern(20'000);
  const int bits = GENERATE(15, -15);
  BodyServer server(loop, compressed(plain, bits), BodyServer::Framing::chunked, 1, "Content-Encoding: deflate\r\n");
  auto req = get_request(server.url());
  req.decompress = true;
  auto r = duet::test::send(Face::callbacks, loop, client, req);
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == plain);
}

TEST_CASE("upload with 100-continue: a final answer whose body is slow still means no body is sent",
          "[http][streaming][upload]") {
  duet::Loop loop;
  duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
  duet::TcpStream conn;
  duet::Timer later(loop);
  std::string received;
  listener.accept([&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    conn = std::move(s);
    conn.read_start([&](std::error_code, std::span<const char> data) {
      received.append(data.data(), data.size());
      if (received.find("\r\n\r\n") == std::string::npos || later.active()) return;
      conn.write("HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\n\r\n", [](std::error_code) {});
      // The body comes long after the client would have given up waiting for 100 Continue.
      later.start(750ms, 0ms, [&] { conn.write("nope", [](std::error_code) {}); });
    });
  });
  duet::http::ClientOptions options;
  options.expect_continue_timeout = 250ms;  // the 417 on loopback comes well within it, even under load
  duet::http::Client client(loop, options);
  auto req = post("http://127.0.0.1:" + std::to_string(listener.local_endpoint().port()) + "/up");
  req.headers.add("Content-Length", "100000");
  req.headers.add("Expect", "100-continue");
  Producer producer{pattern(100'000), 10'000};
  auto r = upload(Face::callbacks, loop, client, req, producer.source());
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.status == 417);
  CHECK(r.res.body == "nope");
  CHECK(producer.pulls == 0);
  CHECK(received.find("\r\n\r\n") == received.size() - 4);  // the head only, no byte of the body
}

TEST_CASE("an early answer to a streamed body ends the connection: a request pipelined behind it is not served",
          "[http][streaming][server][upload]") {
  duet::Loop loop;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest& head) { return head.path == "/up"; };
  int others = 0;
  std::vector<duet::http::RequestBody> draining;
  std::function<void(duet::http::RequestBody&)> drain = [&](duet::http::RequestBody& body) {
    body.read([&](std::error_code ec, std::string piece) {
      if (!ec && !piece.empty()) drain(draining.back());
    });
  };
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        if (req.path != "/up") {
          ++others;
          return reply(duet::http::Response{200, "OK", {}, "second"});
        }
        reply(duet::http::Response{403, "", {}, "no"});  // answered before the body is read
        draining.push_back(std::move(req.body_stream));  // and the body read on, to its end
        drain(draining.back());
      },
      options);
  const std::string got = raw_exchange(
      loop, server.local_endpoint().port(),
      "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 403 "));
  CHECK_THAT(got, Catch::Contains("Connection: close"));
  CHECK_THAT(got, Catch::EndsWith("\r\n\r\nno"));  // nothing after it
  CHECK(others == 0);
}

TEST_CASE("a streamed body dropped by its handler: the client's deadlines no longer run against the answer",
          "[http][streaming][server][upload]") {
  duet::Loop loop;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  options.request_timeout = 100ms;
  duet::Timer later(loop);
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        { auto unwanted = std::move(req.body_stream); }
        // A slow backend: the answer comes well after the request timeout.
        later.start(300ms, 0ms, [r = std::make_shared<duet::http::Reply>(std::move(reply))] {
          (*r)(duet::http::Response{200, "OK", {}, "late answer"});
        });
      },
      options);
  const std::string got = raw_exchange(loop, server.local_endpoint().port(),
                                       "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nsome");
  CHECK_THAT(got, Catch::StartsWith("HTTP/1.1 200 OK"));
  CHECK_THAT(got, Catch::EndsWith("late answer"));
}

TEST_CASE("a Server destroyed by the body reader its own close() wakes: close() touches nothing after",
          "[http][streaming][server]") {
  duet::Loop loop;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  std::optional<duet::http::RequestBody> body;
  std::optional<duet::http::Reply> unanswered;
  auto server = std::make_unique<duet::http::Server>(
      loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        body = std::move(req.body_stream);
        unanswered = std::move(reply);
      },
      options);
  std::optional<duet::TcpStream> client;
  duet::connect(loop, server->local_endpoint(), 5s, [&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    client = std::move(s);
    client->write("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nsome", [](std::error_code) {});
  });
  while (!body) loop.run_once();
  std::string first;
  body->read([&](std::error_code, std::string piece) { first = std::move(piece); });
  while (first.empty()) loop.run_once();
  CHECK(first == "some");

  // The next read waits for bytes that never come; closing the server ends it, and its reader lets
  // the Server go, inside close().
  std::error_code woke;
  body->read([&](std::error_code ec, std::string) {
    woke = ec;
    server.reset();
  });
  server->close();
  CHECK(woke);
  CHECK_FALSE(server);
  client->close();
  loop.run();
}
