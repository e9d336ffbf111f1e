// duet's HTTP client against real servers nobody here wrote, started by the tests on loopback ports:
// nginx, Python's http.server (HTTP/1.0, close-delimited bodies) and a Node.js http server (chunked).
// Both faces for each.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "http_faces.hpp"
#include "nginx_process.hpp"
#include "peer_process.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::Task;
using duet::http::Client;
using duet::http::ClientOptions;
using duet::http::Response;
using duet::test::Face;
using duet::test::get;
using duet::test::PeerProcess;
using duet::test::random_bytes;
using duet::test::TempDir;

namespace {

/// "http://127.0.0.1:PORT" + path (appended: g++ 12's -Wrestrict misfires on "literal" + string chains).
std::string local_url(std::uint16_t port, const std::string& path = "") {
  std::string url = "http://127.0.0.1:";
  url += std::to_string(port);
  url += path;
  return url;
}

std::string file_name(int i) {
  std::string name = "f";
  name += std::to_string(i);
  name += ".bin";
  return name;
}

void write_file(const std::filesystem::path& p, const std::string& data) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << data;
}

}  // namespace

TEST_CASE("nginx: many files over keep-alive, byte-identical, 404, HEAD", "[http][peers][nginx]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  TempDir www;
  std::vector<std::string> files;
  for (int i = 0; i < 40; ++i) {
    files.push_back(random_bytes(static_cast<std::size_t>(1 + i * 2731), static_cast<unsigned>(i)));
    write_file(www.path() / file_name(i), files.back());
  }
  duet::test::Nginx nginx(www.path());
  ClientOptions opts;
  opts.max_connections_per_origin = 4;
  Client client(loop, opts);
  for (int i = 0; i < 40; ++i) {
    auto [ec, res] = get(face, loop, client, nginx.url("/" + file_name(i)));
    REQUIRE_FALSE(ec);
    CHECK(res.status == 200);
    CHECK(res.body == files[static_cast<std::size_t>(i)]);
  }
  CHECK(client.open_connections() == 1);  // sequential requests: one kept-alive connection

  auto [ec404, missing] = get(face, loop, client, nginx.url("/no-such-file"));
  REQUIRE_FALSE(ec404);
  CHECK(missing.status == 404);

  duet::http::Request head;
  head.method = "HEAD";
  head.url = duet::http::Url::parse(nginx.url("/f39.bin"));
  std::optional<Response> head_res;
  client.request(std::move(head), [&](std::error_code ec, Response res) {
    REQUIRE_FALSE(ec);
    head_res = std::move(res);
  });
  while (!head_res) loop.run_once();
  CHECK(head_res->headers.get("Content-Length") == std::to_string(files[39].size()));
  CHECK(head_res->body.empty());
}

TEST_CASE("nginx: concurrent requests share the per-origin pool", "[http][peers][nginx]") {
  duet::Loop loop;
  TempDir www;
  write_file(www.path() / "flag.gif", random_bytes(367, 7));
  duet::test::Nginx nginx(www.path());
  ClientOptions opts;
  opts.max_connections_per_origin = 8;
  Client client(loop, opts);
  int ok = 0;
  for (int i = 0; i < 500; ++i)
    client.get(nginx.url("/flag.gif"),
               [&](std::error_code ec, Response res) { ok += (!ec && res.body.size() == 367) ? 1 : 0; });
  while (ok < 500 && loop.run_once()) {
  }
  CHECK(ok == 500);
  CHECK(client.open_connections() <= 8);
}

TEST_CASE("Python http.server: HTTP/1.0, Content-Length and close-delimited bodies", "[http][peers][python]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  TempDir www;
  const std::string data = random_bytes(50'000, 3);
  write_file(www.path() / "data.bin", data);
  PeerProcess python({"python3", DUET_TEST_PEERS_DIR "/python_server.py", www.path().string()}, true);
  Client client(loop);
  const std::string base = local_url(python.port());
  auto [ec, file] = get(face, loop, client, base + "/data.bin");
  REQUIRE_FALSE(ec);
  CHECK(file.status == 200);
  CHECK(file.body == data);
  auto [ec2, closed] = get(face, loop, client, base + "/close-delimited");
  REQUIRE_FALSE(ec2);
  CHECK(closed.headers.get("Content-Length") == std::nullopt);
  std::string expected;
  for (int i = 0; i < 100; ++i) expected += "the body ends when the connection does\n";
  CHECK(closed.body == expected);
  CHECK(client.open_connections() == 0);  // HTTP/1.0: nothing kept alive
}

TEST_CASE("Node.js http: a chunked response streamed in pieces, keep-alive reuse", "[http][peers][node]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  PeerProcess node({"node", DUET_TEST_PEERS_DIR "/node_server.js"}, true);
  Client client(loop);
  const std::string base = local_url(node.port());
  std::string expected;
  for (int i = 0; i < 10; ++i) expected += "chunk " + std::to_string(i) + ";";
  auto [ec, res] = get(face, loop, client, base + "/chunked");
  REQUIRE_FALSE(ec);
  CHECK(res.headers.get("Transfer-Encoding") == "chunked");
  CHECK(res.body == expected);
  auto [ec2, again] = get(face, loop, client, base + "/");
  REQUIRE_FALSE(ec2);
  CHECK(again.body == "hello");
  CHECK(client.open_connections() == 1);  // the second request reused the first connection

  std::string streamed;
  int pieces = 0;
  duet::http::Request req;
  req.url = duet::http::Url::parse(base + "/chunked");
  std::optional<std::error_code> done;
  client.request(
      std::move(req),
      [&](std::string_view piece) {
        streamed.append(piece);
        ++pieces;
      },
      [&](std::error_code e, Response) { done = e; });
  while (!done) loop.run_once();
  REQUIRE_FALSE(*done);
  CHECK(streamed == expected);
  CHECK(pieces >= 2);
}

TEST_CASE("nginx: gzip responses decoded byte-identical, a large file streamed and downloaded to disk",
          "[http][peers][nginx][streaming]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  TempDir root;
  std::string text;
  for (int i = 0; text.size() < (2 << 20); ++i) text += "line " + std::to_string(i) + " of a compressible text\n";
  write_file(root.path() / "text.txt", text);
  const std::string big = random_bytes(24 << 20, 7);
  write_file(root.path() / "big.bin", big);
  duet::test::Nginx nginx(root.path(), nullptr, "gzip on; gzip_types text/plain; gzip_min_length 1;");
  Client client(loop);

  duet::http::Request req;
  req.url = duet::http::Url::parse(local_url(nginx.port, "/text.txt"));
  req.decompress = true;
  auto r = duet::test::send(face, loop, client, req);
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == text);
  CHECK_FALSE(r.res.headers.contains("Content-Encoding"));
  req.decompress = false;  // nginx sends gzip only to those who ask for it
  r = duet::test::send(face, loop, client, req);
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body == text);

  // 24 MiB to a file: byte-identical, nothing left beside it.
  TempDir out;
  req.url = duet::http::Url::parse(local_url(nginx.port, "/big.bin"));
  std::optional<std::error_code> result;
  if (face == Face::callbacks) {
    client.download_to_file(req, out / "big.bin", [&](std::error_code ec, Response) { result = ec; });
    while (!result) loop.run_once();
  } else {
    auto task = [&]() -> Task<> {
      Response head = co_await client.download_to_file(req, out / "big.bin");
      CHECK(head.status == 200);
      result = std::error_code();
    };
    duet::run(loop, task());
  }
  REQUIRE_FALSE(*result);
  CHECK(duet::test::read_file(out / "big.bin") == big);
  CHECK(duet::test::entries_in(out.path()) == 1);
}

TEST_CASE("Python http.server: a 32 MiB upload streamed with its Content-Length", "[http][peers][python][streaming]") {
  const Face face = GENERATE(Face::callbacks, Face::coroutines);
  duet::Loop loop;
  TempDir www;
  PeerProcess python({"python3", DUET_TEST_PEERS_DIR "/python_server.py", www.path().string()}, true);
  Client client(loop);
  const std::string data = random_bytes(32 << 20, 11);
  duet::http::Request req;
  req.method = "POST";
  req.url = duet::http::Url::parse(local_url(python.port(), "/upload"));
  req.headers.add("Content-Length", std::to_string(data.size()));
  std::size_t at = 0;
  auto body = [&](duet::http::BodyPiece give) {
    const std::size_t n = std::min<std::size_t>(1 << 18, data.size() - at);
    give(std::error_code(), data.substr(at, n));
    at += n;
  };
  Response res;
  std::optional<std::error_code> result;
  if (face == Face::callbacks) {
    client.upload(req, body, [&](std::error_code ec, Response r) {
      result = ec;
      res = std::move(r);
    });
    while (!result) loop.run_once();
  } else {
    auto task = [&]() -> Task<> {
      res = co_await client.upload(req, body);
      result = std::error_code();
    };
    duet::run(loop, task());
  }
  REQUIRE_FALSE(*result);
  CHECK(res.status == 200);
  // The digest Python computed of what it received, against the data's own (sha256sum of a copy).
  TempDir tmp;
  write_file(tmp.path() / "data", data);
  duet::test::Finished sum = duet::test::run_to_end({"sha256sum", (tmp.path() / "data").string()});
  CHECK(res.body == std::to_string(data.size()) + " " + sum.out.substr(0, 64));
}
