// The HTTP client against scripted servers (the edge cases) — both faces.
#include <catch2/catch.hpp>
#include <optional>
#include <thread>

#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "http_faces.hpp"
#include "scripted_server.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::http::Client;
using duet::http::ClientOptions;
using duet::http::Response;
using duet::test::ScriptedServer;
using Step = ScriptedServer::Step;

using duet::test::Face;
using Result = duet::test::GetResult;

TEST_CASE("a GET with a Content-Length body, the request carries Host and User-Agent", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(
      loop, [](auto, auto, auto&) { return Step{duet::test::ok("GIF89a", "Content-Type: image/gif\r\n")}; });
  Client client(loop);
  Result r = duet::test::get(face, loop, client, server.url("/flags/br/br.gif"));
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.status == 200);
  CHECK(r.res.reason == "OK");
  CHECK(r.res.headers.get("content-type") == "image/gif");
  CHECK(r.res.body == "GIF89a");
  REQUIRE(server.requests().size() == 1);
  const std::string& head = server.requests()[0];
  CHECK(head.rfind("GET /flags/br/br.gif HTTP/1.1\r\n", 0) == 0);
  CHECK(head.find("\r\nHost: 127.0.0.1:") != std::string::npos);
  CHECK(head.find("\r\nUser-Agent: duet/") != std::string::npos);
}

TEST_CASE("keep-alive: sequential requests reuse one connection", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop,
                        [](auto, std::size_t n, auto&) { return Step{duet::test::ok("reply " + std::to_string(n))}; });
  Client client(loop);
  for (int i = 0; i < 5; ++i) {
    Result r = duet::test::get(face, loop, client, server.url());
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.body == "reply " + std::to_string(i));
  }
  CHECK(server.connections() == 1);
  CHECK(client.idle_connections() == 1);
}

TEST_CASE("chunked and close-delimited bodies, and a response sent one byte at a time", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop, [](std::size_t conn, auto, auto&) {
    if (conn == 0)
      return Step{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"};
    if (conn == 1) return Step{"HTTP/1.0 200 OK\r\n\r\nuntil the close", true};
    return Step{duet::test::ok("slowly"), false, false, true};
  });
  ClientOptions opts;
  opts.max_connections_per_origin = 1;
  std::optional<Client> client(std::in_place, loop, opts);
  CHECK(duet::test::get(face, loop, *client, server.url()).res.body == "hello world");
  client.emplace(loop, opts);  // a new client: fresh connections for the next cases
  Result closed = duet::test::get(face, loop, *client, server.url());
  REQUIRE_FALSE(closed.ec);
  CHECK(closed.res.body == "until the close");
  CHECK(client->open_connections() == 0);  // a close-delimited response cannot be reused
  Result slow = duet::test::get(face, loop, *client, server.url());
  REQUIRE_FALSE(slow.ec);
  CHECK(slow.res.body == "slowly");
}

TEST_CASE("a truncated body is an error, never a success", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) {
    return Step{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", true};
  });
  Client client(loop);
  Result r = duet::test::get(face, loop, client, server.url());
  CHECK(r.ec == duet::errc::malformed_response);
  CHECK(r.res.status == 0);
  CHECK(r.res.reason.find("truncated") != std::string::npos);
}

TEST_CASE("a reset in the middle of the body is UV_ECONNRESET", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) {
    Step step{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", false, true};
    step.pause_before_close = 50ms;  // the client has read "partial" and waits for the rest
    return step;
  });
  Client client(loop);
  Result r = duet::test::get(face, loop, client, server.url());
  CHECK(r.ec.value() == UV_ECONNRESET);
  CHECK(r.res.status == 0);
}

TEST_CASE("an invalid status line fails and says why", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) { return Step{"HTTP/1.1 OK 200\r\n\r\n", true}; });
  Client client(loop);
  Result r = duet::test::get(face, loop, client, server.url());
  CHECK(r.ec == duet::errc::malformed_response);
  CHECK(r.res.reason == "a status code that is not three digits");
}

TEST_CASE("oversized headers fail with header_too_large", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) {
    return Step{"HTTP/1.1 200 OK\r\nX-Huge: " + std::string(100'000, 'h') + "\r\nContent-Length: 0\r\n\r\n"};
  });
  Client client(loop);
  CHECK(duet::test::get(face, loop, client, server.url()).ec == duet::errc::header_too_large);
}

TEST_CASE("headers that never finish hit the header timeout", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) { return Step{"HTTP/1.1 200 OK\r\nX-Slow: "}; });
  ClientOptions opts;
  opts.header_timeout = 100ms;
  Client client(loop, opts);
  const auto start = std::chrono::steady_clock::now();
  Result r = duet::test::get(face, loop, client, server.url());
  CHECK(r.ec.value() == UV_ETIMEDOUT);
  CHECK(r.res.reason.find("header") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start >= 99ms);
}

TEST_CASE("the client's deadlines count from the request, after blocking work outside the loop", "[http][client]") {
  // The callback face: `get` is called here, outside the loop. (A coroutine's `get` runs inside
  // `duet::run`, where libuv's time for the turn is fresh either way.)
  const Face face = Face::callbacks;
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, const std::string& head) {
    return head.rfind("GET /slow", 0) == 0 ? Step{"HTTP/1.1 200 OK\r\nX-Slow: "} : Step{duet::test::ok("x")};
  });
  ClientOptions opts;
  opts.connect_timeout = opts.header_timeout = opts.request_timeout = 300ms;
  Client client(loop, opts);
  // Blocking work before the loop runs, longer than every timeout: counted from the time libuv read
  // when the Loop was made, each deadline of the request would be past before it was sent.
  std::this_thread::sleep_for(400ms);
  Result r = duet::test::get(face, loop, client, server.url());
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == "x");

  // And between runs, on the kept-alive connection: the header timeout counts from this request.
  std::this_thread::sleep_for(400ms);
  const auto start = std::chrono::steady_clock::now();
  Result slow = duet::test::get(face, loop, client, server.url("/slow"));
  CHECK(slow.ec.value() == UV_ETIMEDOUT);
  CHECK(std::chrono::steady_clock::now() - start >= 299ms);
}

TEST_CASE("the header timeout holds on a reused connection, long after its idle timeout was armed", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  // The first request on a connection is answered; the second never gets its headers.
  ScriptedServer server(loop, [](auto, std::size_t n, auto&) {
    return n == 0 ? Step{duet::test::ok("x")} : Step{"HTTP/1.1 200 OK\r\nX-Slow: "};
  });
  ClientOptions opts;
  opts.header_timeout = 150ms;
  opts.idle_timeout = 10'000ms;  // armed when the first response left the connection idle
  Client client(loop, opts);
  REQUIRE_FALSE(duet::test::get(face, loop, client, server.url()).ec);
  REQUIRE(client.idle_connections() == 1);
  const auto start = std::chrono::steady_clock::now();
  Result r = duet::test::get(face, loop, client, server.url());
  CHECK(server.connections() == 1);  // the second request went out on the kept-alive connection
  CHECK(r.ec.value() == UV_ETIMEDOUT);
  CHECK(r.res.reason.find("header") != std::string::npos);
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 149ms);
  CHECK(waited < 5s);  // the header timeout, not the idle one
  CHECK(client.open_connections() == 0);
}

TEST_CASE("a request cancelled while it waits for a connection slot is told so, and the others go on",
          "[http][client][cancel]") {
  duet::Loop loop;
  // The first connection's response never finishes its headers; later connections are answered.
  ScriptedServer server(loop, [](std::size_t connection, auto, auto&) {
    return connection == 0 ? Step{"HTTP/1.1 200 OK\r\nX-Slow: "} : Step{duet::test::ok("y")};
  });
  ClientOptions opts;
  opts.max_connections_per_origin = 1;
  opts.header_timeout = 300ms;  // frees the slot the first request holds (it counts from sending)
  Client client(loop, opts);
  std::optional<std::error_code> first, queued, last;
  std::stop_source stop;
  client.get(server.url(), [&](std::error_code ec, Response) { first = ec; });
  client.get(server.url(),
             duet::with_cancellation(stop.get_token(), [&](std::error_code ec, Response) { queued = ec; }));
  client.get(server.url(), [&](std::error_code ec, Response) { last = ec; });
  while (server.requests().empty()) loop.run_once();
  stop.request_stop();  // the queue held the only reference to the second request
  CHECK_FALSE(queued);  // never inside request_stop
  while (!first || !queued || !last) loop.run_once();
  CHECK(duet::is_cancelled(*queued));
  CHECK(first->value() == UV_ETIMEDOUT);
  CHECK_FALSE(*last);
  CHECK(server.requests().size() == 2);  // the cancelled request never went out
}

TEST_CASE("a server that closes an idle keep-alive connection: GET is retried once, POST is not", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  // Every connection answers its first request, then closes instead of answering the second: the
  // race of a server closing an idle connection just as the client reuses it.
  ScriptedServer server(loop, [](auto, std::size_t n, auto&) {
    if (n == 0) return Step{duet::test::ok("fresh")};
    return Step{"", false, false, false, true};
  });
  Client client(loop);
  REQUIRE_FALSE(duet::test::get(face, loop, client, server.url()).ec);
  Result retried = duet::test::get(face, loop, client, server.url());  // reuses, meets the close, retries fresh
  REQUIRE_FALSE(retried.ec);
  CHECK(retried.res.body == "fresh");
  CHECK(server.connections() == 2);

  duet::http::Request post;
  post.method = "POST";
  post.url = duet::http::Url::parse(server.url());
  post.body = "not idempotent";
  std::optional<Result> out;
  client.request(std::move(post), [&](std::error_code ec, Response res) { out = Result{ec, std::move(res)}; });
  while (!out) loop.run_once();
  CHECK(out->ec);  // never retried: the server may have acted on it
  CHECK(server.connections() == 2);
}

TEST_CASE("redirects: a 301/302/307 chain is followed, a loop ends in too_many_redirects", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, const std::string& head) {
    auto redirect = [](int code, const std::string& to) {
      return Step{"HTTP/1.1 " + std::to_string(code) + " Moved\r\nLocation: " + to + "\r\nContent-Length: 0\r\n\r\n"};
    };
    if (head.rfind("GET /a ", 0) == 0) return redirect(301, "/b");
    if (head.rfind("GET /b ", 0) == 0) return redirect(302, "c");
    if (head.rfind("GET /c ", 0) == 0) return redirect(307, "/final?x=1");
    if (head.rfind("GET /loop ", 0) == 0) return redirect(302, "/loop");
    return Step{duet::test::ok("arrived")};
  });
  Client client(loop);
  Result chain = duet::test::get(face, loop, client, server.url("/a"));
  REQUIRE_FALSE(chain.ec);
  CHECK(chain.res.body == "arrived");
  CHECK(server.requests().back().rfind("GET /final?x=1 HTTP/1.1", 0) == 0);

  Result loop_result = duet::test::get(face, loop, client, server.url("/loop"));
  CHECK(loop_result.ec == duet::errc::too_many_redirects);

  ClientOptions no_follow;
  no_follow.max_redirects = 0;
  Client literal(loop, no_follow);
  Result first = duet::test::get(face, loop, literal, server.url("/a"));
  REQUIRE_FALSE(first.ec);
  CHECK(first.res.status == 301);
  CHECK(first.res.headers.get("Location") == "/b");
}

TEST_CASE("a 303 and a 301 or 302 after a POST continue as GET without a body but a HEAD stays a HEAD",
          "[http][client]") {
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, const std::string& head) {
    // Each connection serves one request (a POST is never retried on a stale one), its body unread.
    if (head.find(" /to ") != std::string::npos) return Step{duet::test::ok("arrived", "Connection: close\r\n"), true};
    const auto code = head.substr(head.find(" /") + 2, 3);  // "/303", "/301", ...: the status to answer with
    return Step{"HTTP/1.1 " + code + " See\r\nLocation: /to\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", true};
  });
  Client client(loop);
  struct Case {
    std::string method;
    int status;
    std::string method_after;
  };
  for (const Case& c :
       {Case{"POST", 303, "GET"}, Case{"PUT", 303, "GET"}, Case{"POST", 301, "GET"}, Case{"POST", 302, "GET"},
        Case{"PUT", 302, "PUT"}, Case{"POST", 307, "POST"}, Case{"HEAD", 303, "HEAD"}}) {
    INFO(c.method << " answered with " << c.status);
    duet::http::Request req;
    req.method = c.method;
    req.url = duet::http::Url::parse(server.url("/" + std::to_string(c.status)));
    if (c.method != "HEAD") {
      req.body = "payload";
      req.headers.add("Content-Type", "text/plain");
    }
    std::optional<Result> out;
    client.request(std::move(req), [&](std::error_code ec, Response res) { out = Result{ec, std::move(res)}; });
    while (!out) loop.run_once();
    REQUIRE_FALSE(out->ec);
    const std::string& second = server.requests().back();
    CHECK(second.rfind(c.method_after + " /to HTTP/1.1", 0) == 0);
    const bool has_body = c.method_after == "PUT" || c.method_after == "POST";
    CHECK((second.find("Content-Length: 7") != std::string::npos) == has_body);
    CHECK((second.find("Content-Type") != std::string::npos) == has_body);
    CHECK(out->res.body == (c.method_after == "HEAD" ? "" : "arrived"));
  }
}

TEST_CASE("connection errors: refused, unknown host, unsupported scheme", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  const duet::test::RefusingPort refusing;
  const auto port = refusing.port();
  Client client(loop);
  CHECK(duet::test::get(face, loop, client, "http://127.0.0.1:" + std::to_string(port) + "/").ec.value() ==
        UV_ECONNREFUSED);
  Result unknown = duet::test::get(face, loop, client, "http://no-such-host.invalid/");
  CHECK(duet::error_name(unknown.ec).rfind("EAI_", 0) == 0);
  Result ftp = duet::test::get(face, loop, client, "ftp://example.com/");
  CHECK(ftp.ec == duet::errc::unsupported_scheme);
  CHECK(ftp.res.reason.find("unsupported scheme 'ftp'") != std::string::npos);
}

TEST_CASE("at most max_connections_per_origin at once, the rest wait their turn", "[http][client]") {
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) { return Step{duet::test::ok("x")}; });
  ClientOptions opts;
  opts.max_connections_per_origin = 2;
  Client client(loop, opts);
  int done = 0;
  for (int i = 0; i < 10; ++i) client.get(server.url(), [&](std::error_code ec, Response) { done += ec ? 0 : 1; });
  while (done < 10) loop.run_once();
  CHECK(server.max_concurrent() <= 2);
  CHECK(server.connections() <= 2);
}

TEST_CASE("a streamed body arrives piece by piece and is not collected", "[http][client]") {
  duet::Loop loop;
  const std::string big(1 << 20, 'b');
  ScriptedServer server(loop, [&](auto, auto, auto&) { return Step{duet::test::ok(big)}; });
  Client client(loop);
  std::size_t received = 0;
  int pieces = 0;
  duet::http::Request req;
  req.url = duet::http::Url::parse(server.url());
  std::optional<Result> out;
  client.request(
      std::move(req),
      [&](std::string_view piece) {
        received += piece.size();
        ++pieces;
      },
      [&](std::error_code ec, Response res) {
        out = Result{ec, std::move(res)};
      });
  while (!out) loop.run_once();
  REQUIRE_FALSE(out->ec);
  CHECK(received == big.size());
  CHECK(pieces > 1);
  CHECK(out->res.body.empty());
}

TEST_CASE("a streamed body's sink may cancel its own request, mid-body or on the last piece",
          "[http][client][cancel]") {
  const bool last_piece = GENERATE(false, true);
  duet::Loop loop;
  // Mid-body: the server promises 10 bytes and sends 4. Last piece: it sends the whole body.
  ScriptedServer server(loop, [&](auto, auto, auto&) {
    return Step{last_piece ? duet::test::ok("abcd") : std::string("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")};
  });
  Client client(loop);
  std::stop_source stop;
  duet::http::Request req;
  req.url = duet::http::Url::parse(server.url());
  std::optional<std::error_code> ended;
  std::size_t received = 0;
  client.request(
      std::move(req),
      [&](std::string_view piece) {
        received += piece.size();
        stop.request_stop();  // from inside the parser, on the connection's read callback
      },
      duet::with_cancellation(stop.get_token(), [&](std::error_code ec, Response) { ended = ec; }));
  while (!ended) loop.run_once();
  CHECK(received > 0);
  CHECK(duet::is_cancelled(*ended));
  CHECK(client.open_connections() == 0);  // a connection whose response was cut short is not reused
}

TEST_CASE("a request in flight when its client and then its loop go away leaves nothing behind", "[http][client]") {
  std::weak_ptr<int> watch;  // held by the request's callback: expired once the request is freed
  {
    duet::Loop loop;
    ScriptedServer server(loop, [](auto, auto, auto&) { return Step{"HTTP/1.1 200 OK\r\n"}; });  // never finishes
    Client client(loop);
    auto token = std::make_shared<int>(0);
    watch = token;
    client.get(server.url(), [token](std::error_code, Response) {});
    token.reset();
    while (server.requests().empty()) loop.run_once();
  }  // ~Client posts the cancellation; ~Loop drops it unrun
  CHECK(watch.expired());
}

namespace {
/// A server that answers each connection with a head and the first piece of a 100,000-byte body, then
/// nothing: a request whose sink pauses at that piece stays paused, its connection read no more.
struct FirstPieceOnly {
  explicit FirstPieceOnly(duet::Loop& loop) : listener(loop, duet::Endpoint::loopback(0)) {
    listener.accept([this](std::error_code ec, duet::TcpStream s) {
      REQUIRE_FALSE(ec);
      accepted = std::move(s);
      accepted->write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nfirst piece", [](std::error_code) {});
    });
  }
  duet::http::Request request(std::chrono::milliseconds timeout = {}) const {
    duet::http::Request r;
    r.url = duet::http::Url::parse("http://127.0.0.1:" + std::to_string(listener.local_endpoint().port()) + "/");
    r.timeout = timeout;
    return r;
  }
  duet::TcpListener listener;
  std::optional<duet::TcpStream> accepted;
};
}  // namespace

TEST_CASE("a Loop destroyed under a Client counts each request whose callback waits once", "[http][client]") {
  // One connection per origin. The first request's body sink has paused it (its connection reads no
  // more); four more wait in the client's queue for that connection, two of them with a deadline (a
  // timer, which the report counts already). Five callbacks will not be called; the report says five
  // (before: nothing stood for the paused one, and a queued one with a deadline counted twice).
  duet::test::ErrorLog log;
  int called = 0;
  std::optional<Client> client;  // outlives its Loop
  std::optional<duet::http::Resume> resume;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    FirstPieceOnly server(loop);
    ClientOptions options;
    options.max_connections_per_origin = 1;
    client.emplace(loop, options);
    auto count = [&](std::error_code, Response) { ++called; };
    client->request(
        server.request(),
        [&](std::string_view, duet::http::BodyFlow& flow) {
          if (!resume) resume.emplace(flow.pause());
        },
        count);
    for (const std::chrono::milliseconds timeout : {0ms, 0ms, 30000ms, 30000ms})
      client->request(server.request(timeout), count);
    while (!resume) loop.run_once();
  }
  CHECK(called == 0);
  REQUIRE(log.messages.size() == 1);
  CHECK_THAT(log.messages[0], Catch::Contains(" 5 operation(s) pending"));
}

TEST_CASE("a paused request cancelled just before its Loop is destroyed counts once", "[http][client][cancel]") {
  // Its cancellation is posted (the callback gets UV_ECANCELED on the next turn): that, and only that,
  // stands for it in the report (before: the paused request was counted too).
  duet::test::ErrorLog log;
  std::optional<Client> client;  // outlives its Loop
  std::optional<duet::http::Resume> resume;
  std::stop_source stop;
  bool called = false;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    FirstPieceOnly server(loop);
    client.emplace(loop);
    client->request(
        server.request(),
        [&](std::string_view, duet::http::BodyFlow& flow) {
          if (!resume) resume.emplace(flow.pause());
        },
        duet::with_cancellation(stop.get_token(), [&](std::error_code, Response) { called = true; }));
    while (!resume) loop.run_once();
    stop.request_stop();
  }
  CHECK_FALSE(called);
  REQUIRE(log.messages.size() == 1);
  CHECK_THAT(log.messages[0], Catch::Contains(" 1 operation(s) pending"));
}

TEST_CASE("the coroutine face: responses returned, errors thrown with the reason", "[http][client][coro]") {
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, std::size_t n, auto&) {
    if (n == 0) return Step{duet::test::ok("first")};
    return Step{"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", true};
  });
  Client client(loop);
  auto t = [](Client& c, std::string url) -> duet::Task<std::string> {
    Response first = co_await c.get(url);
    try {
      co_await c.get(url);
    } catch (const std::system_error& e) {
      CHECK(e.code() == duet::errc::malformed_response);
      CHECK(std::string(e.what()).find("truncated") != std::string::npos);
      co_return first.body;
    }
    co_return "no error";
  };
  CHECK(duet::run(loop, t(client, server.url())) == "first");
}

TEST_CASE("a request can be cancelled, and destroying the client cancels what is in flight", "[http][client][cancel]") {
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) { return Step{"HTTP/1.1 200 OK\r\n"}; });  // never finishes
  std::optional<Client> client(std::in_place, loop);
  std::stop_source stop;
  std::optional<std::error_code> cancelled, dropped;
  client->get(server.url(),
              duet::with_cancellation(stop.get_token(), [&](std::error_code ec, Response) { cancelled = ec; }));
  client->get(server.url(), [&](std::error_code ec, Response) { dropped = ec; });
  while (server.requests().size() < 2) loop.run_once();
  stop.request_stop();
  CHECK_FALSE(cancelled);  // never inside request_stop
  client.reset();
  while (!cancelled || !dropped) loop.run_once();
  CHECK(duet::is_cancelled(*cancelled));
  CHECK(duet::is_cancelled(*dropped));
  server.close();
  loop.run();
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("an idle keep-alive connection is closed after the idle timeout", "[http][client]") {
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) { return Step{duet::test::ok("x")}; });
  ClientOptions opts;
  opts.idle_timeout = 50ms;
  Client client(loop, opts);
  REQUIRE_FALSE(duet::test::get(Face::callbacks, loop, client, server.url()).ec);
  CHECK(client.idle_connections() == 1);
  while (client.idle_connections() > 0) loop.run_once();  // ends by the idle timer, not by the test
  CHECK(client.open_connections() == 0);
}

TEST_CASE("connect, whole-request timeouts and the body limit", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  duet::test::FullBacklog hangs;
  ClientOptions opts;
  opts.connect_timeout = 100ms;
  opts.request_timeout = 300ms;
  Client client(loop, opts);

  Result connect = duet::test::get(face, loop, client, "http://127.0.0.1:" + std::to_string(hangs.port()) + "/");
  CHECK(connect.ec.value() == UV_ETIMEDOUT);
  CHECK(connect.res.reason.find("connect timed out") != std::string::npos);

  ScriptedServer server(loop, [](auto, std::size_t n, const std::string& head) {
    if (head.rfind("GET /big", 0) == 0) return Step{duet::test::ok(std::string(5000, 'b'))};
    (void)n;
    return Step{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nslow"};  // the rest never comes
  });
  const auto start = std::chrono::steady_clock::now();
  Result slow = duet::test::get(face, loop, client, server.url("/slow"));
  CHECK(slow.ec.value() == UV_ETIMEDOUT);
  CHECK(slow.res.reason.find("request timed out") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start >= 299ms);

  // The body limit, on a client whose timeouts no slow machine reaches.
  ClientOptions limited;
  limited.max_body_bytes = 1000;
  Client strict(loop, limited);
  CHECK(duet::test::get(face, loop, strict, server.url("/big")).ec == duet::errc::body_too_large);
}

TEST_CASE("connects time out on the client's deadline list, several at once, and the client goes on",
          "[http][client]") {
  duet::Loop loop;
  duet::test::FullBacklog hangs;
  ClientOptions opts;
  opts.connect_timeout = 100ms;
  Client client(loop, opts);
  const std::string url = "http://127.0.0.1:" + std::to_string(hangs.port()) + "/";
  std::vector<std::string> reasons;
  const auto start = std::chrono::steady_clock::now();
  for (int k = 0; k < 3; ++k) {  // three connections being opened at once, all on the one list
    client.get(url, [&](std::error_code ec, Response res) {
      CHECK(ec.value() == UV_ETIMEDOUT);
      reasons.push_back(res.reason);
    });
  }
  while (reasons.size() < 3) loop.run_once();
  CHECK(std::chrono::steady_clock::now() - start >= 99ms);
  for (const auto& why : reasons) CHECK(why.find("connect timed out") != std::string::npos);
  CHECK(client.open_connections() == 0);

  // The list is empty again, and the same client connects where a server answers.
  ScriptedServer server(loop, [](auto, auto, auto&) { return Step{duet::test::ok("x")}; });
  Result ok = duet::test::get(Face::callbacks, loop, client, server.url());
  REQUIRE_FALSE(ok.ec);
  CHECK(ok.res.body == "x");
}

TEST_CASE("a response parser reused for the next request parses by that request's limit and method", "[http][client]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, const std::string& head) {
    if (head.rfind("HEAD ", 0) == 0) return Step{"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"};
    return Step{duet::test::ok(std::string(5000, 'b'))};
  });
  Client client(loop);
  auto request = [&](std::string method, std::optional<std::size_t> limit) {
    duet::http::Request req;
    req.method = std::move(method);
    req.url = duet::http::Url::parse(server.url("/big"));
    req.max_body_bytes = limit;
    return duet::test::send(face, loop, client, std::move(req));
  };
  // Each request parses with the parser the one before it gave back to the client.
  for (int round = 0; round < 2; ++round) {
    Result whole = request("GET", std::nullopt);
    REQUIRE_FALSE(whole.ec);
    CHECK(whole.res.body.size() == 5000);
    CHECK(request("GET", 1000).ec == duet::errc::body_too_large);  // the limit is this request's
    Result head = request("HEAD", std::nullopt);                   // no body follows, whatever Content-Length says
    REQUIRE_FALSE(head.ec);
    CHECK(head.res.status == 200);
    CHECK(head.res.body.empty());
  }
}

TEST_CASE("idle pooled connections do not keep Loop::run from returning", "[http][client]") {
  duet::Loop loop;
  ScriptedServer server(loop, [](auto, auto, auto&) { return Step{duet::test::ok("x")}; });
  Client client(loop);  // the default idle timeout is 30 s
  int done = 0;
  client.get(server.url(), [&](std::error_code ec, Response) {
    done += ec ? 0 : 1;
    server.close();  // nothing of the server's keeps the loop alive either
  });
  const auto start = std::chrono::steady_clock::now();
  loop.run();
  CHECK(done == 1);
  CHECK(std::chrono::steady_clock::now() - start < 5s);  // not the idle timeout
}

TEST_CASE("the coroutine face throws RequestError saying what the callback's reason says, or Cancelled",
          "[http][client][coro]") {
  duet::Loop loop;
  Client client(loop);
  const duet::test::RefusingPort refusing;
  const std::string url = "http://127.0.0.1:" + std::to_string(refusing.port()) + "/";

  std::string reason;
  client.get(url, [&](std::error_code ec, Response res) {
    CHECK(ec == std::errc::connection_refused);
    reason = res.reason;
  });
  loop.run();
  CHECK(reason.find("connection refused") != std::string::npos);

  auto fetch = [](Client& c, std::string u) -> duet::Task<std::string> {
    try {
      co_await c.get(u);
    } catch (const duet::http::RequestError& e) {
      CHECK(e.code() == std::errc::connection_refused);
      co_return e.what();
    }
    co_return "no error";
  };
  CHECK(duet::run(loop, fetch(client, url)) == reason);  // the same sentence, said once

  ScriptedServer silent(loop, [](auto, auto, auto&) { return Step{""}; });  // never answers
  auto waits = [](Client& c, std::string u) -> duet::Task<> { co_await c.get(u); };
  auto handle = duet::spawn(loop, waits(client, silent.url()));
  while (silent.requests().empty()) loop.run_once();
  handle.cancel();
  while (!handle.done()) loop.run_once();  // not run(): the server's listener keeps the loop alive
  CHECK_THROWS_AS(handle.result(), duet::Cancelled);
}
