// duet's HTTP server, driven by duet's client and by raw sockets (pipelining, abuse).
#include <catch2/catch.hpp>
#include <functional>
#include <optional>

#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "duet/http/server.hpp"
#include "program_on_loop.hpp"
#include "raw_exchange.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;
using duet::http::Client;
using duet::http::Reply;
using duet::http::Response;
using duet::http::Server;
using duet::http::ServerRequest;
using duet::test::count;
using duet::test::raw_exchange;

namespace {

Response text(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.add("Content-Type", "text/plain");
  r.body = std::move(body);
  return r;
}

}  // namespace

TEST_CASE("the server answers duet's client over keep-alive, callback-face handler", "[http][server]") {
  duet::Loop loop;
  Server server(loop, duet::Endpoint::loopback(0), [](ServerRequest req, Reply reply) {
    if (req.path == "/hello") return reply(text(200, "hello " + req.query));
    reply(text(404, "no " + req.path));
  });
  Client client(loop);
  const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
  auto t = [&]() -> Task<std::pair<Response, Response>> {
    Response a = co_await client.get(base + "/hello?name=x");
    Response b = co_await client.get(base + "/missing");
    co_return std::pair(std::move(a), std::move(b));
  };
  auto [a, b] = duet::run(loop, t());
  CHECK(a.status == 200);
  CHECK(a.body == "hello name=x");
  CHECK(a.headers.get("Content-Type") == "text/plain");
  CHECK(b.status == 404);
  CHECK(b.reason == "Not Found");
  CHECK(server.connections() == 1);  // both requests on one kept-alive connection
}

TEST_CASE("a coroutine-face handler, an exception in a handler becomes a 500", "[http][server][coro]") {
  duet::test::ErrorLog log;  // declared first: the loop reports to it until it is gone
  duet::Loop loop;
  Server server(loop, duet::Endpoint::loopback(0), [&](ServerRequest req) -> Task<Response> {
    co_await duet::sleep(loop, 1ms);
    if (req.path == "/fail") throw std::runtime_error("handler failed");
    co_return text(200, "slept");
  });
  Client client(loop);
  const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
  auto t = [&]() -> Task<std::pair<Response, Response>> {
    Response ok = co_await client.get(base + "/");
    Response bad = co_await client.get(base + "/fail");
    co_return std::pair(std::move(ok), std::move(bad));
  };
  loop.set_error_handler(log.handler());
  auto [ok, bad] = duet::run(loop, t());
  CHECK(ok.body == "slept");
  CHECK(bad.status == 500);
  CHECK(bad.body == "internal error\n");  // the exception's text stays on the server...
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0] == "handler failed");  // ...in the loop's error hook
}

TEST_CASE("pipelined requests are answered in order, whatever order the handlers finish in", "[http][server]") {
  duet::Loop loop;
  Server server(loop, duet::Endpoint::loopback(0), [&](ServerRequest req) -> Task<Response> {
    const int delay = req.path == "/1" ? 30 : req.path == "/2" ? 15 : 1;  // the first finishes last
    co_await duet::sleep(loop, std::chrono::milliseconds(delay));
    co_return text(200, "answer" + req.path);
  });
  const std::string three =
      "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\n\r\n";
  const std::string got = raw_exchange(loop, server.local_endpoint(), three);
  const auto a1 = got.find("answer/1"), a2 = got.find("answer/2"), a3 = got.find("answer/3");
  REQUIRE(a1 != std::string::npos);
  REQUIRE(a2 != std::string::npos);
  REQUIRE(a3 != std::string::npos);
  CHECK(a1 < a2);
  CHECK(a2 < a3);
  CHECK(count(got, "HTTP/1.1 200") == 3);
  CHECK(got.find("Connection: close") != std::string::npos);  // honoured, and the server closed
}

TEST_CASE("HEAD carries the length but no body, Connection: close is honoured", "[http][server]") {
  duet::Loop loop;
  Server server(loop, duet::Endpoint::loopback(0),
                [](ServerRequest, Reply reply) { reply(text(200, "twelve bytes")); });
  const std::string got =
      raw_exchange(loop, server.local_endpoint(), "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(got.find("Content-Length: 12\r\n") != std::string::npos);
  CHECK(got.find("twelve bytes") == std::string::npos);
  CHECK(got.find("Connection: close") != std::string::npos);
}

TEST_CASE("malformed requests get 400, oversized headers 431, oversized bodies 413", "[http][server]") {
  duet::Loop loop;
  duet::http::ServerOptions opts;
  opts.max_header_bytes = 1024;
  opts.max_body_bytes = 10;
  int handled = 0;
  Server server(
      loop, duet::Endpoint::loopback(0),
      [&](ServerRequest, Reply reply) {
        ++handled;
        reply(text(200, "ok"));
      },
      opts);
  CHECK(raw_exchange(loop, server.local_endpoint(), "NOT HTTP AT ALL\r\n\r\n").rfind("HTTP/1.1 400", 0) == 0);
  CHECK(raw_exchange(loop, server.local_endpoint(), "GET / HTTP/1.1\r\nX: " + std::string(2000, 'x') + "\r\n\r\n")
            .rfind("HTTP/1.1 431", 0) == 0);
  CHECK(raw_exchange(loop, server.local_endpoint(),
                     "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n01234567890123456789\r\n"
                     "0\r\n\r\n")
            .rfind("HTTP/1.1 413", 0) == 0);
  // A declared length past the limit: refused at its head, without waiting for a body that never comes.
  CHECK(raw_exchange(loop, server.local_endpoint(), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n", 5s)
            .rfind("HTTP/1.1 413", 0) == 0);
  CHECK(handled == 0);
}

TEST_CASE("a client that never finishes its headers is disconnected after the header timeout", "[http][server]") {
  duet::Loop loop;
  duet::http::ServerOptions opts;
  opts.header_timeout = 100ms;
  Server server(
      loop, duet::Endpoint::loopback(0), [](ServerRequest, Reply reply) { reply(text(200, "ok")); }, opts);
  const auto start = std::chrono::steady_clock::now();
  const std::string got = raw_exchange(loop, server.local_endpoint(), "GET / HTTP/1.1\r\nHost: sl", 5s);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(got.empty());
  CHECK(took >= 99ms);
  CHECK(took < 4s);  // closed by the server, not by the test's own limit
  CHECK(server.connections() == 0);
}

TEST_CASE("a request begun behind an answered one keeps its header deadline", "[http][server]") {
  // The answer to the first request is written while the second's headers are still coming: the idle
  // timeout (long) must not replace the second's header timeout (short).
  duet::Loop loop;
  duet::http::ServerOptions opts;
  opts.header_timeout = 100ms;
  opts.idle_timeout = 30s;
  Server server(
      loop, duet::Endpoint::loopback(0), [](ServerRequest, Reply reply) { reply(text(200, "ok")); }, opts);
  const auto start = std::chrono::steady_clock::now();
  const std::string got =
      raw_exchange(loop, server.local_endpoint(), "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo", 5s);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(count(got, "HTTP/1.1 200 OK") == 1);
  CHECK(took < 4s);  // closed by the server's header timeout, not by the test's own limit
  CHECK(server.connections() == 0);
}

TEST_CASE("beyond max_connections new connections are closed at once", "[http][server]") {
  duet::Loop loop;
  duet::http::ServerOptions opts;
  opts.max_connections = 1;
  Server server(
      loop, duet::Endpoint::loopback(0), [](ServerRequest, Reply reply) { reply(text(200, "ok")); }, opts);
  std::optional<duet::TcpStream> first;
  duet::connect(loop, server.local_endpoint(), [&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    first = std::move(s);
  });
  while (server.connections() < 1) loop.run_once();
  CHECK(raw_exchange(loop, server.local_endpoint(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5s).empty());
  CHECK(server.connections() == 1);
}

TEST_CASE("a Server destroyed before its Loop, with no run between, leaves nothing pending", "[http][server]") {
  // Its listener's accept was waiting; the Server needs no word of that accept's cancellation, so a Loop
  // destroyed next must not report it as an operation whose callback will not be called. With and
  // without a connection served (a stop from a signal handler, say, then both leave scope).
  for (const bool served : {false, true}) {
    INFO("served a connection: " << served);
    duet::test::ErrorLog log;
    {
      duet::Loop loop;
      loop.set_error_handler(log.handler());
      Server server(loop, duet::Endpoint::loopback(0), [](ServerRequest, Reply reply) { reply(text(200, "ok")); });
      if (served)
        CHECK(raw_exchange(loop, server.local_endpoint(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5s, true)
                  .starts_with("HTTP/1.1 200 OK\r\n"));
    }
    CHECK(log.messages.empty());
  }
}

TEST_CASE("a Server destroyed with its 100 Continue decision queued, then its Loop, reports nothing pending",
          "[http][server]") {
  // A streamed request that asks for a 100 is answered before its body is read: whether the 100 is
  // still owed is decided on the next turn (the handler may start reading first). That queued decision
  // is the server's own: a Loop destroyed before it runs has no callback of the user's to report.
  duet::test::ErrorLog log;
  std::optional<duet::TcpStream> client;        // outlives the Loop, inert
  std::optional<duet::http::RequestBody> body;  // kept by the handler, unread
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    duet::http::ServerOptions opts;
    opts.stream_body = [](const ServerRequest&) { return true; };
    bool answered = false;
    Server server(
        loop, duet::Endpoint::loopback(0),
        [&](ServerRequest req, Reply reply) {
          body.emplace(std::move(req.body_stream));
          answered = true;
          reply.stream(Response{200, "OK", {}, ""}, [](duet::http::BodyPiece piece) { piece({}, ""); });
        },
        opts);
    bool written = false;
    duet::connect(loop, server.local_endpoint(), 5s, [&](std::error_code ec, duet::TcpStream s) {
      REQUIRE_FALSE(ec);
      client = std::move(s);
      client->write("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
                    [&](std::error_code wec) {
                      CHECK_FALSE(wec);
                      written = true;
                    });
    });
    duet::Timer guard(loop);
    bool timed_out = false;
    guard.start(10s, 0ms, [&] { timed_out = true; });
    while ((!answered || !written) && !timed_out) loop.run_once();
    REQUIRE_FALSE(timed_out);
    guard.stop();
  }                             // the Server, then the Loop
  CHECK(log.messages.empty());  // before: "1 operation(s) pending"
}

TEST_CASE("an early answer reaches a client still sending its body: the server drains before it closes",
          "[http][server][python]") {
  // Python's http.client sends the whole body before it reads a byte. A server that answers first (a
  // 413 for a declared length past its limit, a 401 without reading a streamed body) and then closes
  // with the body unread makes the kernel reset the connection: the client's send fails and the answer
  // is lost. Lingering (half-close, drop what comes, close when the client does) lets it through;
  // `linger_timeout` 0, closing at once, shows what it prevents.
  struct Case {
    const char* path;
    std::chrono::milliseconds linger;
    const char* answer;
  };
  duet::Loop loop;
  duet::test::TempDir out;
  for (const Case c :
       {Case{"/big", 5s, "status 413\n"}, Case{"/private", 5s, "status 401\n"}, Case{"/big", 0ms, "error "}}) {
    INFO(c.path << " with linger_timeout " << c.linger.count() << " ms");
    duet::http::ServerOptions opts;
    opts.max_body_bytes = 1024;
    opts.linger_timeout = c.linger;
    opts.stream_body = [](const ServerRequest& head) { return head.path == "/private"; };
    Server server(
        loop, duet::Endpoint::loopback(0), [](ServerRequest, Reply reply) { reply(text(401, "who are you?\n")); },
        opts);
    const std::string url = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port()) + c.path;
    REQUIRE(duet::test::run_program(loop, {"python3", DUET_TEST_PEERS_DIR "/python_upload.py", url, "16777216"},
                                    out / "python.txt")
                .success());
    CHECK_THAT(duet::test::read_file(out / "python.txt"), Catch::StartsWith(c.answer));
    while (server.connections() > 0) loop.run_once();  // the client has closed: so does the server
  }
}

namespace {

/// A raw client for a connection the server half-closes: sends `request`, then (with `flood`) sends
/// without end, and reads what comes. Never closes its side until destroyed.
struct StubbornClient {
  std::optional<duet::TcpStream> stream;
  std::string got;
  bool server_done = false;  // end of stream, or an error, on the reading side
  std::error_code write_error;
  int writes = 0;

  StubbornClient(duet::Loop& loop, const duet::Endpoint& at, std::string request, bool flood) {
    duet::connect(loop, at, 5s, [this, request = std::move(request), flood](std::error_code ec, duet::TcpStream s) {
      REQUIRE_FALSE(ec);
      stream = std::move(s);
      send(std::move(request), flood);
      stream->read_start([this](std::error_code rec, std::span<const char> chunk) {
        if (rec || chunk.empty()) {
          server_done = true;
          stream->read_stop();
          return;
        }
        got.append(chunk.begin(), chunk.end());
      });
    });
  }
  void send(std::string bytes, bool flood) {
    ++writes;
    stream->write(std::move(bytes), [this, flood](std::error_code ec) {
      --writes;
      if (ec) {
        write_error = ec;
        return;
      }
      if (flood && stream && stream->is_open()) send(std::string(64 * 1024, 'x'), true);
    });
  }
  void close(duet::Loop& loop) {
    if (stream) stream->close();
    while (writes > 0) loop.run_once();
  }
};

}  // namespace

TEST_CASE("a lingering connection closes when the client does, or at linger_timeout — not after a last request",
          "[http][server][hardening]") {
  duet::Loop loop;
  duet::http::ServerOptions opts;
  opts.max_body_bytes = 1024;
  opts.linger_timeout = 300ms;
  Server server(
      loop, duet::Endpoint::loopback(0), [](ServerRequest, Reply reply) { reply(text(200, "ok")); }, opts);
  const std::string refused = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
  bool timed_out = false;
  duet::Timer guard(loop);
  guard.start(20s, 0ms, [&] { timed_out = true; });

  SECTION("a client that sends forever is cut off at linger_timeout, its answer read whole first") {
    // Timed from before the request: the linger timer is armed later, so no stall of this process
    // can bring the close below linger_timeout (less the loop clock's coarseness).
    const auto start = std::chrono::steady_clock::now();
    StubbornClient client(loop, server.local_endpoint(), refused, /*flood=*/true);
    while (!client.server_done && !timed_out) loop.run_once();  // the 413, then the server's FIN
    CHECK_THAT(client.got, Catch::StartsWith("HTTP/1.1 413 "));
    while (server.connections() > 0 && !timed_out) loop.run_once();
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK_FALSE(timed_out);
    CHECK(took >= 250ms);  // drained meanwhile: the client's sends went on
    while (!client.write_error && !timed_out) loop.run_once();
    CHECK(client.write_error);  // then the server closed for good
    client.close(loop);
  }
  SECTION("a client that sends nothing more and never closes is closed at linger_timeout") {
    const auto start = std::chrono::steady_clock::now();  // before the request, as above
    StubbornClient client(loop, server.local_endpoint(), refused, /*flood=*/false);
    while (!client.server_done && !timed_out) loop.run_once();
    CHECK_THAT(client.got, Catch::StartsWith("HTTP/1.1 413 "));
    while (server.connections() > 0 && !timed_out) loop.run_once();
    CHECK_FALSE(timed_out);
    CHECK(std::chrono::steady_clock::now() - start >= 250ms);
    client.close(loop);
  }
  SECTION("a client that closes after reading the answer: the server closes then, not at linger_timeout") {
    server.close();
    opts.linger_timeout = 30s;
    Server patient(
        loop, duet::Endpoint::loopback(0), [](ServerRequest, Reply reply) { reply(text(200, "ok")); }, opts);
    const auto start = std::chrono::steady_clock::now();
    CHECK_THAT(raw_exchange(loop, patient.local_endpoint(), refused, 10s), Catch::StartsWith("HTTP/1.1 413 "));
    while (patient.connections() > 0 && !timed_out) loop.run_once();
    CHECK(std::chrono::steady_clock::now() - start < 10s);
  }
  SECTION("a request that said close, read whole, closes at once: the client sends nothing more") {
    server.close();
    opts.linger_timeout = 30s;
    Server patient(
        loop, duet::Endpoint::loopback(0), [](ServerRequest, Reply reply) { reply(text(200, "ok")); }, opts);
    StubbornClient client(loop, patient.local_endpoint(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                          /*flood=*/false);
    const auto start = std::chrono::steady_clock::now();
    while (!client.server_done && !timed_out) loop.run_once();
    CHECK_THAT(client.got, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
    while (patient.connections() > 0 && !timed_out) loop.run_once();
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    client.close(loop);
  }
}

TEST_CASE("a lingering close begun inside the parse still drains, and ends when the client closes",
          "[http][server][streaming][hardening]") {
  // An echo answers before the body's end, so its answer closes the connection; the body's end (in a
  // read of its own) reaches the reader inside the parse, whose producer then ends the answer there.
  // The lingering close begun then must still read (before: the parse stopped reading after it, so
  // nothing was drained and the client's close went unseen until linger_timeout).
  duet::Loop loop;
  duet::http::ServerOptions opts;
  opts.linger_timeout = 30s;
  opts.stream_body = [](const ServerRequest&) { return true; };
  Server server(
      loop, duet::Endpoint::loopback(0),
      [](ServerRequest req, Reply reply) {
        auto body = std::make_shared<duet::http::RequestBody>(std::move(req.body_stream));
        Response head;
        head.status = 200;
        head.headers.add("Content-Length", "4");
        reply.stream(std::move(head), [body](duet::http::BodyPiece piece) {
          body->read([piece = std::move(piece)](std::error_code ec, std::string bytes) mutable {
            piece(ec, std::move(bytes));
          });
        });
      },
      opts);
  bool timed_out = false;
  duet::Timer guard(loop);
  guard.start(20s, 0ms, [&] { timed_out = true; });
  StubbornClient client(loop, server.local_endpoint(),
                        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",
                        /*flood=*/false);
  while (!client.got.ends_with("abcd") && !timed_out) loop.run_once();
  client.send("0\r\n\r\n", false);                            // the body's end, read on its own
  while (!client.server_done && !timed_out) loop.run_once();  // the answer is whole: the server's FIN
  CHECK_THAT(client.got, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
  client.send(std::string(16 * 1024 * 1024, 'x'), false);   // more than the socket buffers hold
  while (client.writes > 0 && !timed_out) loop.run_once();  // taken only if the server drains
  CHECK_FALSE(timed_out);
  CHECK_FALSE(client.write_error);
  client.close(loop);
  const auto start = std::chrono::steady_clock::now();
  while (server.connections() > 0 && !timed_out) loop.run_once();
  CHECK(std::chrono::steady_clock::now() - start < 10s);  // at the client's close, not at linger_timeout
}

TEST_CASE("a Reply dropped while its connection lingers is not reported: nobody waits for it", "[http][server]") {
  // HTTP/1.0 keep-alive, two requests at once: the first is answered with a body that ends with the
  // connection, so the second's handler, still at work, answers a connection already closing.
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  duet::http::ServerOptions opts;
  opts.linger_timeout = 30s;
  // Or the second request's body is streamed, and its handler drops its Reply when the body fails:
  // when the connection begins to linger, which ends that body.
  const bool second_reads = GENERATE(false, true);
  INFO("the second handler reads a streamed body: " << second_reads);
  opts.stream_body = [](const ServerRequest& head) { return head.path == "/second"; };
  std::optional<Reply> first, second;
  std::optional<duet::http::RequestBody> body;
  std::function<void()> read_on;
  Server server(
      loop, duet::Endpoint::loopback(0),
      [&](ServerRequest req, Reply reply) {
        if (req.path == "/first") return void(first.emplace(std::move(reply)));
        second.emplace(std::move(reply));  // (both handlers called: now the first answers)
        if (second_reads) {
          body.emplace(std::move(req.body_stream));
          read_on = [&] {
            body->read([&](std::error_code ec, std::string) {
              if (!ec) return read_on();  // its 3 bytes, then the 97 that never come
              second.reset();             // dropped unanswered
            });
          };
          read_on();
        }
        Response head;
        head.status = 200;
        first->stream(std::move(head), [n = 0](duet::http::BodyPiece piece) mutable {
          piece({}, n++ == 0 ? "the body ends with the connection\n" : "");
        });
      },
      opts);
  bool timed_out = false;
  duet::Timer guard(loop);
  guard.start(20s, 0ms, [&] { timed_out = true; });
  StubbornClient client(loop, server.local_endpoint(),
                        std::string("GET /first HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") +
                            (second_reads ? "POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"
                                          : "GET /second HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
                        /*flood=*/false);
  while (!client.server_done && !timed_out) loop.run_once();
  CHECK_THAT(client.got, Catch::EndsWith("the body ends with the connection\n"));
  if (!second_reads) {
    REQUIRE(second);
    second.reset();  // dropped unanswered
  }
  CHECK_FALSE(second);
  CHECK(server.connections() == 1);  // lingering
  client.close(loop);
  while (server.connections() > 0 && !timed_out) loop.run_once();
  CHECK_FALSE(timed_out);
  CHECK(log.messages.empty());
}

TEST_CASE("a client that half-closes after its request still gets the whole of a large response", "[http][server]") {
  // An HTTP/1.0-style client shuts down its sending side at once. The response (16 MB, more than the
  // socket buffers hold) is still being written when the end of stream arrives: it must not be cut.
  duet::Loop loop;
  const std::string body(16 * 1024 * 1024, 'x');
  Server server(loop, duet::Endpoint::loopback(0), [&](ServerRequest, Reply reply) { reply(text(200, body)); });
  for (const char* request : {"GET /big HTTP/1.1\r\nHost: x\r\n\r\n", "GET /big HTTP/1.0\r\n\r\n",
                              "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"}) {
    INFO(request);
    const std::string got = raw_exchange(loop, server.local_endpoint(), request, 20s, /*half_close=*/true);
    const std::size_t responses = count(std::string(request), "GET ");
    REQUIRE(count(got, "HTTP/1.1 200 OK\r\n") == responses);
    const std::size_t head = got.find("\r\n\r\n") + 4;
    CHECK(got.size() == responses * (head + body.size()));
    CHECK(got.ends_with(std::string(64, 'x')));
  }
  while (server.connections() > 0) loop.run_once();
  server.close();
  loop.run();
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a client that stops reading a large response is dropped after the write timeout", "[http][server]") {
  // The response (32 MB) cannot all go out while the client reads nothing: the write stays pending,
  // and the write timeout bounds how long the connection may hold it.
  duet::Loop loop;
  duet::http::ServerOptions opts;
  opts.write_timeout = 200ms;
  const std::string body(32 * 1024 * 1024, 'x');
  Server server(
      loop, duet::Endpoint::loopback(0), [&](ServerRequest, Reply reply) { reply(text(200, body)); }, opts);
  std::optional<duet::TcpStream> client;
  bool written = false;
  duet::connect(loop, server.local_endpoint(), 5s, [&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    client = std::move(s);
    client->write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n", [&](std::error_code) { written = true; });
  });
  bool timed_out = false;
  duet::Timer guard(loop);
  guard.start(10s, 0ms, [&] { timed_out = true; });
  while (server.connections() == 0 && !timed_out) loop.run_once();
  const auto start = std::chrono::steady_clock::now();
  while (server.connections() > 0 && !timed_out) loop.run_once();
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK_FALSE(timed_out);  // before: held for as long as the client liked
  CHECK(took >= 150ms);
  guard.stop();
  client->close();
  while (!written) loop.run_once();
}

TEST_CASE("nothing is answered after a response that closes the connection", "[http][server]") {
  // A request that ends the connection (HTTP/1.0, or Connection: close): what follows it in the same
  // packet is neither handled nor refused.
  duet::Loop loop;
  int handled = 0;
  Server server(loop, duet::Endpoint::loopback(0), [&](ServerRequest, Reply reply) {
    ++handled;
    reply(text(200, "ok"));
  });
  for (const char* bytes :
       {"GET / HTTP/1.0\r\n\r\nGARBAGE", "GET / HTTP/1.0\r\n\r\nX",
        "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"}) {
    INFO(bytes);
    handled = 0;
    const std::string got = raw_exchange(loop, server.local_endpoint(), bytes);
    CHECK(handled == 1);
    CHECK(count(got, "HTTP/1.1 ") == 1);
    CHECK(got.find("Connection: close") != std::string::npos);
    CHECK(got.ends_with("ok"));
  }
}
