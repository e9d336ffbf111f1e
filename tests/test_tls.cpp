// TLS (tls.hpp): handshakes, verification and its failures, resumption, truncation, timeouts and
// cancellation, both faces; then https in the HTTP client against nginx, Python, Node.js and
// `openssl s_server`, and the HTTP server's TLS against curl and Python's client. Every certificate is
// made at run time (tls_certs.hpp).
#include <fcntl.h>
#include <openssl/ssl.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <functional>
#include <list>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "duet/detail/tls_engine.hpp"
#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "duet/http/server.hpp"
#include "duet/process.hpp"
#include "duet/tls.hpp"
#include "http_faces.hpp"
#include "program_on_loop.hpp"
#include "support.hpp"
#include "tls_certs.hpp"
#include "tls_peers.hpp"

using namespace std::chrono_literals;
using duet::test::CertFiles;
using duet::test::Face;
using duet::test::Pki;
using duet::test::run_program;

namespace {

/// A CA, and a certificate from it for localhost, 127.0.0.1 and ::1.
struct Certs {
  duet::test::TempDir dir;
  Pki pki{dir.path() / "pki"};
  CertFiles server = pki.issue("localhost", {"localhost"}, {"127.0.0.1", "::1"});

  duet::TlsContext client(duet::TlsClientOptions o = {}) const {
    o.ca_file = pki.ca_file().string();
    return duet::TlsContext::client(o);
  }
  static duet::TlsContext server_for(const CertFiles& c, duet::TlsServerOptions o = {}) {
    o.certificate_file = c.cert.string();
    o.private_key_file = c.key.string();
    return duet::TlsContext::server(o);
  }
};

/// A duet TLS server on a loopback port: echoes what it reads; answers close_notify with its own.
struct EchoServer {
  EchoServer(duet::Loop& loop, duet::TlsContext c) : ctx(std::move(c)), listener(loop, duet::Endpoint::loopback(0)) {
    accept();
  }
  void accept() {
    listener.accept([this](std::error_code ec, duet::TcpStream tcp) {
      if (ec) return;
      duet::tls_accept(std::move(tcp), ctx, 5s, [this](std::error_code ec, duet::TlsStream tls) {
        if (ec) return errors.push_back(ec);
        duet::TlsStream* s = &streams.emplace_back(std::move(tls));
        reused.push_back(s->session_reused());
        s->read_start([s](std::error_code ec, std::span<const char> chunk) {
          if (ec) return s->close();
          if (chunk.empty()) return s->shutdown([](std::error_code) {});
          s->write(std::string(chunk.data(), chunk.size()), [](std::error_code) {});
        });
      });
      accept();
    });
  }
  duet::Endpoint endpoint() const { return listener.local_endpoint(); }

  duet::TlsContext ctx;
  duet::TcpListener listener;
  std::list<duet::TlsStream> streams;
  std::vector<std::error_code> errors;
  std::vector<bool> reused;
};

/// A listener that accepts every connection and never answers: a handshake with it stalls.
struct SilentListener {
  explicit SilentListener(duet::Loop& loop) : listener(loop, duet::Endpoint::loopback(0)) { accept(); }
  void accept() {
    listener.accept([this](std::error_code ec, duet::TcpStream s) {
      if (ec) return;
      silent.push_back(std::move(s));
      accept();
    });
  }
  duet::Endpoint endpoint() const { return listener.local_endpoint(); }

  duet::TcpListener listener;
  std::vector<duet::TcpStream> silent;  // accepted, never answered
};

struct Connected {
  std::error_code ec;
  duet::TlsStream tls;
  std::string reason;  // error_reason() in the callback face, TlsError::what() in the coroutine face
};

/// TCP connect to `to`, then the TLS handshake as `name`, through `face`.
Connected connect_tls(Face face, duet::Loop& loop, duet::Endpoint to, const duet::TlsContext& ctx, std::string name,
                      std::chrono::milliseconds timeout = 5s, std::stop_token stop = {}) {
  if (face == Face::callbacks) {
    std::optional<Connected> out;
    duet::connect(loop, to, 5s, [&](std::error_code ec, duet::TcpStream tcp) {
      if (ec) return void(out = Connected{ec, {}, "connect: " + ec.message()});
      duet::tls_connect(std::move(tcp), ctx, name, timeout,
                        duet::with_cancellation(stop, [&](std::error_code ec, duet::TlsStream tls) {
                          std::string why = tls.error_reason();
                          out = Connected{ec, std::move(tls), std::move(why)};
                        }));
    });
    while (!out) loop.run_once();
    return std::move(*out);
  }
  auto t = [&]() -> duet::Task<Connected> {
    try {
      duet::TcpStream tcp = co_await duet::connect(loop, to, 5s);
      duet::TlsStream tls = co_await duet::tls_connect(std::move(tcp), ctx, name, timeout);
      co_return Connected{{}, std::move(tls), {}};
    } catch (const std::system_error& e) {
      co_return Connected{e.code(), {}, e.what()};
    }
  };
  auto handle = duet::spawn(loop, t());
  std::stop_callback forward(stop, [&] { handle.cancel(); });
  std::optional<Connected> out;
  handle.on_done([&] { out = handle.result(); });
  while (!out) loop.run_once();
  return std::move(*out);
}

/// Sends `text` and reads until as many bytes came back (the echo), through `face`.
std::string echo(Face face, duet::Loop& loop, duet::TlsStream& tls, const std::string& text) {
  if (face == Face::callbacks) {
    std::string got;
    bool failed = false;
    tls.write(text, [&](std::error_code ec) { failed |= static_cast<bool>(ec); });
    tls.read_start([&](std::error_code ec, std::span<const char> chunk) {
      if (ec || chunk.empty()) return void(failed = true);
      got.append(chunk.data(), chunk.size());
      if (got.size() >= text.size()) tls.read_stop();
    });
    while (got.size() < text.size() && !failed) loop.run_once();
    return got;
  }
  return duet::run(loop, [&]() -> duet::Task<std::string> {
    co_await tls.write(text);
    std::string got;
    char buf[4096];
    while (got.size() < text.size()) {
      const std::size_t n = co_await tls.read(buf);
      if (n == 0) break;
      got.append(buf, n);
    }
    co_return got;
  }());
}

/// One read through `face`: the bytes, or the error that ended the stream ("" and no error: end of stream).
std::pair<std::error_code, std::string> read_rest(Face face, duet::Loop& loop, duet::TlsStream& tls) {
  if (face == Face::callbacks) {
    std::optional<std::pair<std::error_code, std::string>> out;
    std::string got;
    tls.read_start([&](std::error_code ec, std::span<const char> chunk) {
      if (ec || chunk.empty()) return void(out.emplace(ec, got));
      got.append(chunk.data(), chunk.size());
    });
    while (!out) loop.run_once();
    return *out;
  }
  return duet::run(loop, [&]() -> duet::Task<std::pair<std::error_code, std::string>> {
    std::string got;
    char buf[4096];
    try {
      for (;;) {
        const std::size_t n = co_await tls.read(buf);
        if (n == 0) co_return std::pair(std::error_code(), got);
        got.append(buf, n);
      }
    } catch (const std::system_error& e) {
      co_return std::pair(e.code(), got);
    }
  }());
}

}  // namespace

TEST_CASE("TLS: handshake, echo and close_notify, both faces", "[tls]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server, {.alpn = {"h2", "http/1.1"}}));
  auto ctx = certs.client({.alpn = {"http/1.1"}});
  Connected c = connect_tls(face, loop, server.endpoint(), ctx, "localhost");
  REQUIRE_FALSE(c.ec);
  CHECK(c.tls.is_open());
  CHECK(c.tls.version() == "TLSv1.3");
  CHECK(c.tls.alpn_protocol() == "http/1.1");
  const std::string big(200'000, 'z');  // many records each way
  CHECK(echo(face, loop, c.tls, "hello") == "hello");
  CHECK(echo(face, loop, c.tls, big) == big);
  // Our close_notify; the server answers with its own: a clean end of stream (0 bytes), not truncation.
  bool shut = false;
  c.tls.shutdown([&](std::error_code ec) {
    CHECK_FALSE(ec);
    shut = true;
  });
  auto [ec, rest] = read_rest(face, loop, c.tls);
  CHECK_FALSE(ec);
  CHECK(rest.empty());
  CHECK(shut);
  CHECK(server.errors.empty());
}

TEST_CASE("TLS: an IPv4 address is checked against the certificate's IP addresses, and no ALPN is offered unless asked",
          "[tls]") {
  Certs certs;
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server));
  auto ctx = certs.client();
  Connected c = connect_tls(Face::callbacks, loop, server.endpoint(), ctx, "127.0.0.1");
  REQUIRE_FALSE(c.ec);
  CHECK(echo(Face::callbacks, loop, c.tls, "by address") == "by address");
  CHECK(c.tls.alpn_protocol().empty());  // nothing offered
}

TEST_CASE("TLS: sessions are resumed per server, and not when resumption is off", "[tls]") {
  Certs certs;
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server));
  for (bool resume : {true, false}) {
    auto ctx = certs.client({.session_resumption = resume});
    for (int i = 0; i < 2; ++i) {
      Connected c = connect_tls(Face::callbacks, loop, server.endpoint(), ctx, "localhost");
      REQUIRE_FALSE(c.ec);
      CHECK(c.tls.session_reused() == (resume && i == 1));
      // TLS 1.3 hands out its ticket after the handshake: a round trip reads it.
      CHECK(echo(Face::callbacks, loop, c.tls, "ticket?") == "ticket?");
    }
    CHECK(ctx.cached_sessions() == (resume ? 1u : 0u));
  }
}

TEST_CASE("TLS: verification failures are distinct errors with reasons, both faces", "[tls]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  struct Case {
    CertFiles cert;
    std::string name;
    duet::errc expected;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {certs.pki.issue("other", {"localhost"}, {"127.0.0.1"}, -1h, 24h, true), "localhost",
       duet::errc::tls_untrusted_issuer, "unable to get local issuer certificate"},
      {certs.pki.self_signed("self", {"localhost"}, {}), "localhost", duet::errc::tls_untrusted_issuer,
       "self-signed certificate"},
      {certs.pki.issue("elsewhere", {"elsewhere.example"}, {}), "localhost", duet::errc::tls_hostname_mismatch,
       "hostname mismatch"},
      {certs.server, "wrong.localhost", duet::errc::tls_hostname_mismatch, "hostname mismatch"},
      {certs.pki.issue("names-only", {"localhost"}, {}), "127.0.0.1", duet::errc::tls_hostname_mismatch,
       "IP address mismatch"},
      {certs.pki.issue("expired", {"localhost"}, {"127.0.0.1"}, -48h, -24h), "localhost",
       duet::errc::tls_certificate_expired, "certificate has expired"},
      {certs.pki.issue("future", {"localhost"}, {"127.0.0.1"}, 24h, 48h), "localhost",
       duet::errc::tls_certificate_expired, "certificate is not yet valid"},
      // A name only in the subject's CN (no subjectAltName) does not count, as in browsers.
      {certs.pki.issue("cn-only", {}, {}), "cn-only", duet::errc::tls_hostname_mismatch, "hostname mismatch"},
  };
  duet::Loop loop;
  auto ctx = certs.client();
  std::list<EchoServer> servers;  // each lives until the loop ends: its side of the failed handshake finishes later
  for (const Case& c : cases) {
    INFO(c.cert.cert.string() << " as " << c.name);
    EchoServer& server = servers.emplace_back(loop, Certs::server_for(c.cert));
    Connected r = connect_tls(face, loop, server.endpoint(), ctx, c.name);
    CHECK(r.ec == c.expected);
    CHECK_FALSE(r.tls.is_open());
    CHECK_THAT(r.reason, Catch::Contains(c.reason));
  }
  // The one named way to skip verification accepts the untrusted certificate.
  EchoServer server(loop, Certs::server_for(cases[0].cert));
  auto trusting = duet::TlsContext::client({.insecure_skip_verify = true});
  Connected r = connect_tls(face, loop, server.endpoint(), trusting, "anything.example");
  REQUIRE_FALSE(r.ec);
  CHECK(echo(face, loop, r.tls, "unverified") == "unverified");
}

TEST_CASE("TLS: the system trust store is the default, and SSL_CERT_FILE points it elsewhere", "[tls]") {
  Certs certs;
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server));
  {
    auto system = duet::TlsContext::client();  // Debian's CAs: our private CA is not among them
    CHECK(connect_tls(Face::callbacks, loop, server.endpoint(), system, "localhost").ec ==
          duet::errc::tls_untrusted_issuer);
  }
  ::setenv("SSL_CERT_FILE", certs.pki.ca_file().c_str(), 1);
  auto from_env = duet::TlsContext::client();
  ::unsetenv("SSL_CERT_FILE");
  Connected c = connect_tls(Face::callbacks, loop, server.endpoint(), from_env, "localhost");
  REQUIRE_FALSE(c.ec);
  CHECK(echo(Face::callbacks, loop, c.tls, "trusted") == "trusted");
}

TEST_CASE("TLS: a TLS-1.0-only server fails the handshake with OpenSSL's reason", "[tls][peers]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  duet::test::OpensslServer old(certs.server, duet::test::kOpensslTls1Only);
  duet::Loop loop;
  auto ctx = certs.client();
  Connected c = connect_tls(face, loop, duet::Endpoint::loopback(old.port), ctx, "localhost");
  CHECK(c.ec == duet::errc::tls_handshake_failed);
  CHECK_THAT(c.reason, Catch::Contains("TLS handshake failed") && Catch::Contains("protocol version"));
}

TEST_CASE("TLS: a peer that closes mid-handshake, or answers with something that is not TLS", "[tls]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  const bool garbage = GENERATE(false, true);
  Certs certs;
  duet::Loop loop;
  duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
  duet::TcpStream peer;
  char hello[512];
  listener.accept([&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    peer = std::move(s);
    peer.read(hello, [&](std::error_code ec, std::size_t n) {  // the ClientHello, or its first part
      REQUIRE_FALSE(ec);
      REQUIRE(n > 0);
      if (!garbage) return peer.close();
      peer.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", [](std::error_code) {});
    });
  });
  auto ctx = certs.client();
  Connected c = connect_tls(face, loop, listener.local_endpoint(), ctx, "localhost");
  CHECK(c.ec == duet::errc::tls_handshake_failed);
  CHECK_THAT(c.reason, garbage ? Catch::Contains("wrong version number")
                               : Catch::Contains("closed the connection during the handshake"));
}

TEST_CASE("TLS: a handshake that never completes times out, and one can be cancelled", "[tls]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  duet::Loop loop;
  SilentListener listener(loop);
  auto ctx = certs.client();
  Connected slow = connect_tls(face, loop, listener.endpoint(), ctx, "localhost", 100ms);
  CHECK(slow.ec.value() == UV_ETIMEDOUT);
  if (face == Face::callbacks) CHECK_THAT(slow.reason, Catch::Contains("did not finish within 100 ms"));

  std::stop_source stop;
  duet::Timer timer(loop);
  timer.start(20ms, 0ms, [&] { stop.request_stop(); });
  Connected cancelled = connect_tls(face, loop, listener.endpoint(), ctx, "localhost", 0ms, stop.get_token());
  CHECK(duet::is_cancelled(cancelled.ec));
  CHECK_FALSE(cancelled.tls.is_open());
}

TEST_CASE("TLS: a cancelled handshake calls back on a later turn, never inside request_stop()", "[tls]") {
  Certs certs;
  duet::Loop loop;
  SilentListener listener(loop);
  std::optional<duet::TcpStream> tcp;
  duet::connect(loop, listener.endpoint(), 5s, [&](std::error_code ec, duet::TcpStream s) {
    REQUIRE_FALSE(ec);
    tcp = std::move(s);
  });
  while (!tcp || listener.silent.empty()) loop.run_once();
  std::stop_source stop;
  std::optional<std::error_code> got;
  duet::tls_connect(std::move(*tcp), certs.client(), "localhost", 0ms,
                    duet::with_cancellation(stop.get_token(), [&](std::error_code ec, duet::TlsStream) { got = ec; }));
  loop.run_once();  // the ClientHello goes out; the server says nothing
  REQUIRE_FALSE(got);
  stop.request_stop();
  CHECK_FALSE(got);  // cancellation.hpp: "called once, later, from the loop (never inside request_stop())"
  while (!got) loop.run_once();
  CHECK(duet::is_cancelled(*got));
}

TEST_CASE("TLS: the coroutine face keeps its own copy of the context: one made for the call may be gone", "[tls]") {
  Certs certs;
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server));
  auto t = [&]() -> duet::Task<std::string> {
    duet::TcpStream tcp = co_await duet::connect(loop, server.endpoint(), 5s);
    // The context is a temporary, the only owner of its settings, gone before the awaitable starts.
    auto handshake = duet::tls_connect(std::move(tcp), certs.client(), "localhost", 5s);
    duet::TlsStream tls = co_await std::move(handshake);
    co_await tls.write("copied");
    char buf[16];
    const std::size_t n = co_await tls.read(buf);
    co_return std::string(buf, n);
  };
  CHECK(duet::run(loop, t()) == "copied");
}

TEST_CASE("TLS: a peer closing without close_notify is reported as truncation, after the data", "[tls]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  duet::Loop loop;
  auto sctx = Certs::server_for(certs.server);
  duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
  duet::TlsStream served;
  listener.accept([&](std::error_code ec, duet::TcpStream tcp) {
    REQUIRE_FALSE(ec);
    duet::tls_accept(std::move(tcp), sctx, 5s, [&](std::error_code ec, duet::TlsStream tls) {
      REQUIRE_FALSE(ec);
      served = std::move(tls);
      // The data, then a close of the socket with no close_notify.
      served.write("partial body", [&](std::error_code ec) {
        CHECK_FALSE(ec);
        served.abort();
      });
    });
  });
  auto ctx = certs.client();
  Connected c = connect_tls(face, loop, listener.local_endpoint(), ctx, "localhost");
  REQUIRE_FALSE(c.ec);
  auto [ec, got] = read_rest(face, loop, c.tls);
  CHECK(got == "partial body");
  CHECK(ec == duet::errc::tls_truncated);
  CHECK_THAT(c.tls.error_reason(), Catch::Contains("without close_notify"));
}

TEST_CASE("TLS: contexts report unreadable or mismatched files and wrong roles clearly", "[tls]") {
  Certs certs;
  const CertFiles other = certs.pki.issue("other", {"localhost"}, {});
  auto what = [](auto&& make) -> std::string {
    try {
      make();
    } catch (const duet::TlsError& e) {
      CHECK(e.code() == duet::errc::invalid_argument);
      return e.what();
    }
    return "no error";
  };
  CHECK_THAT(what([&] { duet::TlsContext::server({.certificate_file = "/nonexistent.pem", .private_key_file = "k"}); }),
             Catch::Contains("/nonexistent.pem"));
  CHECK_THAT(what([&] {
               duet::TlsContext::server(
                   {.certificate_file = certs.server.cert.string(), .private_key_file = other.key.string()});
             }),
             Catch::Contains("does not match"));
  CHECK_THAT(what([&] { duet::TlsContext::server({}); }), Catch::Contains("certificate and a key"));
  CHECK_THAT(what([&] { duet::TlsContext::client({.ca_file = "/nonexistent-ca.pem"}); }),
             Catch::Contains("/nonexistent-ca.pem"));
  CHECK_THAT(what([&] { duet::TlsContext::client({.alpn = {""}}); }), Catch::Contains("ALPN"));

  // A client context used to accept, or no name to verify against: refused before any byte is sent.
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server));
  auto ctx = certs.client();
  Connected nameless = connect_tls(Face::callbacks, loop, server.endpoint(), ctx, "");
  CHECK(nameless.ec == duet::errc::invalid_argument);
  CHECK_THAT(nameless.reason, Catch::Contains("server's name"));
  auto server_ctx = Certs::server_for(certs.server);
  Connected wrong_role = connect_tls(Face::callbacks, loop, server.endpoint(), server_ctx, "localhost");
  CHECK(wrong_role.ec == duet::errc::invalid_argument);
  CHECK_THAT(wrong_role.reason, Catch::Contains("client context"));
}

// ---- https in the HTTP client, against real servers -------------------------------------------------

namespace {

/// Files of assorted sizes (up to 300 KB) in a folder, served by every peer.
struct Site {
  duet::test::TempDir root;
  std::vector<std::string> names;
  Site() {
    for (std::size_t size : {0u, 1u, 1000u, 16'384u, 16'385u, 300'000u}) {
      std::string bytes(size, '\0');
      for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + size) % 251);
      names.push_back("f" + std::to_string(size) + ".bin");
      duet::test::write_file(root.path() / names.back(), bytes);
    }
  }
  std::string bytes(const std::string& name) const { return duet::test::read_file(root.path() / name); }
};

duet::http::ClientOptions trusting(const Certs& certs) {
  duet::http::ClientOptions o;
  o.tls.ca_file = certs.pki.ca_file().string();
  return o;
}

}  // namespace

TEST_CASE("https: a request deadline that runs out during the TLS handshake is a timeout, not a cancellation",
          "[tls][http]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  duet::Loop loop;
  SilentListener listener(loop);  // the handshake stalls
  duet::http::ClientOptions o = trusting(certs);
  o.request_timeout = 200ms;  // well before the 10 s handshake timeout
  duet::http::Client client(loop, o);
  const auto got =
      duet::test::get(face, loop, client, "https://localhost:" + std::to_string(listener.endpoint().port()) + "/");
  CHECK(got.ec.value() == UV_ETIMEDOUT);
  CHECK_THAT(got.res.reason, Catch::Contains("the request timed out"));
}

TEST_CASE("https: nginx, Python's ssl http.server and Node.js https serve byte-identical files, both faces",
          "[tls][http][peers]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  Site site;
  duet::test::NginxTls nginx(certs.server, site.root.path());
  duet::test::PythonHttps python(certs.server, site.root.path());
  duet::test::NodeHttps node(certs.server, site.root.path());
  duet::Loop loop;
  duet::http::Client client(loop, trusting(certs));
  for (const std::string& name : site.names) {
    INFO(name);
    for (const std::string& url :
         {nginx.url("/" + name), nginx.ip_url("/" + name), python.url("/" + name), node.url("/" + name)}) {
      INFO(url);
      auto r = duet::test::get(face, loop, client, url);
      REQUIRE_FALSE(r.ec);
      CHECK(r.res.status == 200);
      CHECK(r.res.body == site.bytes(name));
    }
  }
  auto missing = duet::test::get(face, loop, client, nginx.url("/nope"));
  CHECK(missing.res.status == 404);
}

TEST_CASE("https: openssl s_server answers, and the wrong CA is an untrusted issuer with the URL's host",
          "[tls][http][peers]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  duet::test::OpensslServer s_server(certs.server);
  duet::Loop loop;
  duet::http::Client client(loop, trusting(certs));
  auto r = duet::test::get(face, loop, client, s_server.url("/"));
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.status == 200);
  CHECK_THAT(r.res.body, Catch::Contains("TLSv1.3"));  // -www's status page names the protocol

  duet::http::Client system_trust(loop);  // Debian's store: our CA is unknown
  auto refused = duet::test::get(face, loop, system_trust, s_server.url("/"));
  CHECK(refused.ec == duet::errc::tls_untrusted_issuer);
  CHECK_THAT(refused.res.reason, Catch::Contains("localhost:" + std::to_string(s_server.port)) &&
                                     Catch::Contains("unable to get local issuer certificate"));
}

TEST_CASE("https: a close-delimited body cut without close_notify fails as truncated, not short",
          "[tls][http][peers]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  Site site;
  duet::test::PythonHttps truncating(certs.server, site.root.path(), {"--truncate"});
  duet::Loop loop;
  duet::http::Client client(loop, trusting(certs));
  auto r = duet::test::get(face, loop, client, truncating.url("/anything"));
  CHECK(r.ec == duet::errc::tls_truncated);
  CHECK(r.res.status == 0);
}

TEST_CASE("https: duet's server over TLS, to curl and to Python's urllib, and keep-alive reuse", "[tls][http][peers]") {
  Certs certs;
  duet::Loop loop;
  const std::string body(100'000, 'b');
  duet::http::ServerOptions so;
  so.tls = duet::TlsServerOptions{.certificate_file = certs.server.cert.string(),
                                  .private_key_file = certs.server.key.string(),
                                  .alpn = {"http/1.1"}};
  duet::http::Server server(
      loop, duet::Endpoint::loopback(0),
      [&](duet::http::ServerRequest req, duet::http::Reply reply) {
        reply(duet::http::Response{200, "OK", {}, req.target == "/big" ? body : "hello over tls\n"});
      },
      so);
  const std::string base = "https://localhost:" + std::to_string(server.local_endpoint().port());
  duet::test::TempDir out;
  const std::string ca = certs.pki.ca_file().string();

  CHECK(run_program(loop, {"curl", "-sS", "--cacert", ca, base + "/big"}, out / "curl.txt").success());
  CHECK(duet::test::read_file(out / "curl.txt") == body);
  CHECK(run_program(loop, {"curl", "-sS", "--cacert", ca, base + "/"}, out / "curl2.txt").success());
  CHECK(duet::test::read_file(out / "curl2.txt") == "hello over tls\n");
  CHECK(run_program(loop,
                    {"python3", "-c",
                     "import ssl, sys, urllib.request\n"
                     "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
                     "sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[2], context=ctx).read())\n",
                     ca, base + "/big"},
                    out / "python.txt")
            .success());
  CHECK(duet::test::read_file(out / "python.txt") == body);
  // curl without our CA refuses the server (exit 60: peer certificate cannot be authenticated).
  CHECK(run_program(loop, {"curl", "-sS", base + "/"}, out / "refused.txt").code == 60);

  // duet's own client: three requests, one connection.
  duet::http::Client client(loop, trusting(certs));
  for (int i = 0; i < 3; ++i) {
    auto r = duet::test::get(Face::callbacks, loop, client, base + "/");
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.body == "hello over tls\n");
  }
  CHECK(server.connections() == 1);
}

TEST_CASE("a Server destroyed mid-answer and then its Loop, with no run between, reports nothing pending",
          "[tls][http]") {
  // The answer (32 MB) is still being written to a client that read one chunk of it: the Server
  // closes the connection, and the write's UV_ECANCELED would come on the next turn. Nobody waits for
  // it (the write is the server's own), so a Loop destroyed first reports nothing; over plain TCP and
  // over TLS (whose own records are written beside the answer).
  Certs certs;
  for (const bool secure : {false, true}) {
    INFO("over TLS: " << secure);
    duet::test::ErrorLog log;
    const std::string body(32 * 1024 * 1024, 'x');
    std::optional<duet::TcpStream> plain;  // the client: outlives its Loop, inert
    std::optional<duet::TlsStream> tls;
    const duet::TlsContext client_ctx = certs.client();
    {
      duet::Loop loop;
      loop.set_error_handler(log.handler());
      duet::http::ServerOptions so;
      if (secure)
        so.tls = duet::TlsServerOptions{.certificate_file = certs.server.cert.string(),
                                        .private_key_file = certs.server.key.string()};
      duet::http::Server server(
          loop, duet::Endpoint::loopback(0),
          [&](duet::http::ServerRequest, duet::http::Reply reply) {
            reply(duet::http::Response{200, "OK", {}, body});
          },
          so);
      const std::string request = "GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n";
      char first[1];
      std::size_t got = 0;
      auto read_one = [&](std::error_code ec, std::size_t n) {
        REQUIRE_FALSE(ec);
        got = n;
      };
      duet::connect(loop, server.local_endpoint(), 5s, [&](std::error_code ec, duet::TcpStream tcp) {
        REQUIRE_FALSE(ec);
        if (!secure) {
          plain = std::move(tcp);
          plain->write(request, [](std::error_code) {});
          return plain->read(first, read_one);
        }
        duet::tls_connect(std::move(tcp), client_ctx, "localhost", 5s, [&](std::error_code ec, duet::TlsStream s) {
          REQUIRE_FALSE(ec);
          tls = std::move(s);
          tls->write(request, [](std::error_code) {});
          tls->read(first, read_one);
        });
      });
      duet::Timer guard(loop);
      bool timed_out = false;
      guard.start(10s, 0ms, [&] { timed_out = true; });
      while (got == 0 && !timed_out) loop.run_once();
      REQUIRE_FALSE(timed_out);
      CHECK(first[0] == 'H');
      guard.stop();
      REQUIRE(server.connections() == 1);
    }                             // the Server, then the Loop
    CHECK(log.messages.empty());  // before: "1 operation(s) pending"
  }
}

TEST_CASE("https: an early 413 reaches a Python client still sending its body (close_notify, then drained)",
          "[tls][http][peers]") {
  // As over plain TCP (test_http_server.cpp): closing with the body unread resets the connection and
  // the answer is lost; the server sends close_notify, drops what comes, and closes when the client does.
  Certs certs;
  duet::Loop loop;
  duet::test::TempDir out;
  for (const auto linger : {5000ms, 0ms}) {
    INFO("linger_timeout " << linger.count() << " ms");
    duet::http::ServerOptions so;
    so.tls = duet::TlsServerOptions{.certificate_file = certs.server.cert.string(),
                                    .private_key_file = certs.server.key.string()};
    so.max_body_bytes = 1024;
    so.linger_timeout = linger;
    duet::http::Server server(
        loop, duet::Endpoint::loopback(0),
        [](duet::http::ServerRequest, duet::http::Reply reply) {
          reply(duet::http::Response{200, "OK", {}, "ok"});
        },
        so);
    const std::string url = "https://localhost:" + std::to_string(server.local_endpoint().port()) + "/";
    REQUIRE(
        run_program(loop,
                    {"python3", DUET_TEST_PEERS_DIR "/python_upload.py", url, "16777216", certs.pki.ca_file().string()},
                    out / "python.txt")
            .success());
    CHECK_THAT(duet::test::read_file(out / "python.txt"),
               Catch::StartsWith(linger.count() > 0 ? "status 413\n" : "error "));
    while (server.connections() > 0) loop.run_once();
  }
}

TEST_CASE("https: redirects from http to https are followed, from https to http refused by default", "[tls][http]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  duet::Loop loop;
  duet::http::ServerOptions so;
  so.tls = duet::TlsServerOptions{.certificate_file = certs.server.cert.string(),
                                  .private_key_file = certs.server.key.string()};
  std::string plain_base, secure_base;
  auto redirecting = [&](const std::string* other) {
    return [&, other](duet::http::ServerRequest req, duet::http::Reply reply) {
      if (req.target == "/here") return reply(duet::http::Response{200, "OK", {}, "arrived"});
      duet::http::Response r{302, "Found", {}, ""};
      r.headers.set("Location", *other + "/here");
      reply(std::move(r));
    };
  };
  duet::http::Server secure(loop, duet::Endpoint::loopback(0), redirecting(&plain_base), so);
  duet::http::Server plain(loop, duet::Endpoint::loopback(0), redirecting(&secure_base));
  plain_base = "http://localhost:" + std::to_string(plain.local_endpoint().port());
  secure_base = "https://localhost:" + std::to_string(secure.local_endpoint().port());

  duet::http::ClientOptions o = trusting(certs);
  duet::http::Client client(loop, o);
  auto up = duet::test::get(face, loop, client, plain_base + "/go");
  REQUIRE_FALSE(up.ec);
  CHECK(up.res.body == "arrived");
  auto down = duet::test::get(face, loop, client, secure_base + "/go");
  CHECK(down.ec == duet::errc::insecure_redirect);
  CHECK_THAT(down.res.reason, Catch::Contains(plain_base + "/here"));

  o.allow_https_to_http_redirects = true;
  duet::http::Client allowing(loop, o);
  auto allowed = duet::test::get(face, loop, allowing, secure_base + "/go");
  REQUIRE_FALSE(allowed.ec);
  CHECK(allowed.res.body == "arrived");
}

TEST_CASE("TLS over a Unix-domain socket: any duet stream can carry it", "[tls][pipe]") {
  Certs certs;
  duet::Loop loop;
  const std::string path = certs.dir / "tls.sock";
  duet::PipeListener listener(loop, path);
  auto sctx = Certs::server_for(certs.server);
  duet::TlsStream served;
  listener.accept([&](std::error_code ec, duet::PipeStream pipe) {
    REQUIRE_FALSE(ec);
    duet::tls_accept(std::move(pipe), sctx, 5s, [&](std::error_code ec, duet::TlsStream tls) {
      REQUIRE_FALSE(ec);
      served = std::move(tls);
      served.read_start([&](std::error_code ec, std::span<const char> chunk) {
        if (ec || chunk.empty()) return served.shutdown([](std::error_code) {});
        served.write(std::string(chunk.data(), chunk.size()), [](std::error_code) {});
      });
    });
  });
  auto ctx = certs.client();
  std::optional<Connected> c;
  duet::connect(loop, path, [&](std::error_code ec, duet::PipeStream pipe) {
    REQUIRE_FALSE(ec);
    duet::tls_connect(std::move(pipe), ctx, "localhost", 5s, [&](std::error_code ec, duet::TlsStream tls) {
      c = Connected{ec, std::move(tls), {}};
    });
  });
  while (!c) loop.run_once();
  REQUIRE_FALSE(c->ec);
  CHECK(echo(Face::coroutines, loop, c->tls, "over a pipe") == "over a pipe");
  c->tls.shutdown([](std::error_code) {});
  auto [ec, rest] = read_rest(Face::callbacks, loop, c->tls);
  CHECK_FALSE(ec);
  CHECK(rest.empty());
}

TEST_CASE("TLS: one context shared by loops on two threads (handshakes and the session cache at once)",
          "[tls][threads]") {
  Certs certs;
  auto client_ctx = certs.client();
  auto server_ctx = Certs::server_for(certs.server);
  auto work = [&](int* ok) {
    duet::Loop loop;
    EchoServer server(loop, server_ctx);
    for (int i = 0; i < 10; ++i) {
      Connected c = connect_tls(Face::callbacks, loop, server.endpoint(), client_ctx, "localhost");
      if (!c.ec && echo(Face::callbacks, loop, c.tls, "from a thread") == "from a thread") ++*ok;
    }
  };
  int ok[2] = {0, 0};
  std::thread other(work, &ok[1]);
  work(&ok[0]);
  other.join();
  CHECK(ok[0] == 10);
  CHECK(ok[1] == 10);
  CHECK(client_ctx.cached_sessions() == 2);  // one per server (each thread's has its own port)
}

TEST_CASE("TLS: a one-shot read is cancellable, and the stream goes on afterwards, both faces", "[tls]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  Certs certs;
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server));
  auto ctx = certs.client();
  Connected c = connect_tls(face, loop, server.endpoint(), ctx, "localhost");
  REQUIRE_FALSE(c.ec);
  char buf[64];
  std::stop_source stop;
  duet::Timer timer(loop);
  timer.start(20ms, 0ms, [&] { stop.request_stop(); });  // nothing is coming: only the stop ends the read
  std::optional<std::error_code> got;
  if (face == Face::callbacks) {
    c.tls.read(buf, duet::with_cancellation(stop.get_token(), [&](std::error_code ec, std::size_t) { got = ec; }));
    while (!got) loop.run_once();
  } else {
    auto read_once = [&]() -> duet::Task<std::error_code> {  // named: it outlives the spawn() call
      try {
        co_await c.tls.read(buf);
      } catch (const std::system_error& e) {
        co_return e.code();
      }
      co_return std::error_code();
    };
    auto handle = duet::spawn(loop, read_once());
    std::stop_callback forward(stop.get_token(), [&] { handle.cancel(); });
    handle.on_done([&] { got = handle.result(); });
    while (!got) loop.run_once();
  }
  CHECK(duet::is_cancelled(*got));
  CHECK(c.tls.is_open());
  CHECK(echo(face, loop, c.tls, "still here") == "still here");
}

TEST_CASE("TLS: a trailing dot and a bracketed IPv6 address name the same server", "[tls]") {
  Certs certs;
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server));
  auto ctx = certs.client();
  for (const char* name : {"localhost.", "[::1]", "LOCALHOST"}) {
    INFO(name);
    Connected c = connect_tls(Face::callbacks, loop, server.endpoint(), ctx, name);
    REQUIRE_FALSE(c.ec);
    CHECK(echo(Face::callbacks, loop, c.tls, name) == name);
  }
  Connected nul = connect_tls(Face::callbacks, loop, server.endpoint(), ctx, std::string("localhost\0.evil", 15));
  CHECK(nul.ec == duet::errc::invalid_argument);
  CHECK_THAT(nul.reason, Catch::Contains("NUL"));
}

TEST_CASE("TLS: after shutdown writes fail with EPIPE and reading goes on to the peer's close_notify", "[tls]") {
  Certs certs;
  duet::Loop loop;
  EchoServer server(loop, Certs::server_for(certs.server));
  auto ctx = certs.client();
  Connected c = connect_tls(Face::callbacks, loop, server.endpoint(), ctx, "localhost");
  REQUIRE_FALSE(c.ec);
  c.tls.write("sent before", [](std::error_code ec) { CHECK_FALSE(ec); });
  c.tls.shutdown([](std::error_code ec) { CHECK_FALSE(ec); });
  std::optional<std::error_code> late;
  c.tls.write("too late", [&](std::error_code ec) { late = ec; });
  auto [ec, got] = read_rest(Face::callbacks, loop, c.tls);  // the echo, then the server's close_notify
  CHECK_FALSE(ec);
  CHECK(got == "sent before");
  REQUIRE(late);
  CHECK(late->value() == UV_EPIPE);
}

TEST_CASE("TLS: close sends close_notify (a clean end for the peer), abort does not (a truncation)", "[tls]") {
  Certs certs;
  duet::Loop loop;
  // No session tickets: the client leaves nothing unread, so its close is a FIN, not a reset.
  auto sctx = Certs::server_for(certs.server, {.session_resumption = false});
  duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
  std::optional<std::pair<std::error_code, std::string>> seen;
  duet::TlsStream served;
  std::function<void()> accept = [&] {
    listener.accept([&](std::error_code ec, duet::TcpStream tcp) {
      REQUIRE_FALSE(ec);
      duet::tls_accept(std::move(tcp), sctx, 5s, [&](std::error_code ec, duet::TlsStream tls) {
        REQUIRE_FALSE(ec);
        served = std::move(tls);
        auto got = std::make_shared<std::string>();
        served.read_start([&, got](std::error_code ec, std::span<const char> chunk) {
          if (ec || chunk.empty()) return void(seen.emplace(ec, *got));
          got->append(chunk.data(), chunk.size());
        });
      });
      accept();
    });
  };
  accept();
  auto ctx = certs.client();
  for (bool graceful : {true, false}) {
    seen.reset();
    Connected c = connect_tls(Face::callbacks, loop, listener.local_endpoint(), ctx, "localhost");
    REQUIRE_FALSE(c.ec);
    bool written = false;
    c.tls.write("last words", [&](std::error_code ec) {
      CHECK_FALSE(ec);
      written = true;
    });
    while (!written) loop.run_once();
    graceful ? c.tls.close() : c.tls.abort();
    while (!seen) loop.run_once();
    CHECK(seen->second == "last words");
    if (graceful)
      CHECK_FALSE(seen->first);
    else
      CHECK(seen->first == duet::errc::tls_truncated);
  }
}

TEST_CASE("TLS: a TLS 1.2 server asking to renegotiate ends the connection with tls_protocol_error", "[tls]") {
  // A raw OpenSSL server in memory, facing the client's engine: renegotiation cannot be scripted with
  // the tools at hand, and the engine is what every TlsStream runs.
  Certs certs;
  auto ctx = certs.client();
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> sctx(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free);
  REQUIRE(SSL_CTX_use_certificate_chain_file(sctx.get(), certs.server.cert.c_str()) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey_file(sctx.get(), certs.server.key.c_str(), SSL_FILETYPE_PEM) == 1);
  SSL_CTX_set_max_proto_version(sctx.get(), TLS1_2_VERSION);
  std::unique_ptr<SSL, decltype(&SSL_free)> server(SSL_new(sctx.get()), &SSL_free);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(server.get(), in, out);
  SSL_set_accept_state(server.get());
  duet::detail::TlsEngine client(ctx.impl(), false, "localhost", "");
  auto pass = [](BIO* from, duet::detail::TlsEngine& to) {
    std::string bytes(static_cast<std::size_t>(BIO_ctrl_pending(from)), '\0');
    if (!bytes.empty()) BIO_read(from, bytes.data(), static_cast<int>(bytes.size()));
    to.feed(bytes.data(), bytes.size());
  };
  for (int i = 0; i < 10 && !client.handshake_done(); ++i) {
    client.handshake();
    const std::string hello = client.take_output();
    BIO_write(in, hello.data(), static_cast<int>(hello.size()));
    SSL_do_handshake(server.get());
    pass(out, client);
  }
  REQUIRE(client.handshake() == duet::detail::TlsEngine::Status::ok);
  CHECK(client.version() == "TLSv1.2");
  const std::string finished = client.take_output();
  BIO_write(in, finished.data(), static_cast<int>(finished.size()));
  REQUIRE(SSL_do_handshake(server.get()) == 1);
  REQUIRE(SSL_renegotiate(server.get()) == 1);
  SSL_do_handshake(server.get());  // sends the HelloRequest
  pass(out, client);
  char buf[64];
  std::size_t n = 0;
  CHECK(client.read(buf, sizeof buf, n) == duet::detail::TlsEngine::Status::failed);
  CHECK(client.error() == duet::errc::tls_protocol_error);
  CHECK_THAT(client.reason(), Catch::Contains("renegotiate"));
}
