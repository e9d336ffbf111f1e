// flags_server: its request mapping directly, and the built binary over real sockets.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "duet/http/client.hpp"
#include "duet/tcp.hpp"
#include "flag_tree.hpp"
#include "flags_server_process.hpp"
#include "http_faces.hpp"
#include "peer_process.hpp"
#include "raw_exchange.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::test::count;
using duet::test::Face;
using duet::test::FlagsServer;
using duet::test::kFlagTree;
using duet::test::PeerProcess;
using duet::test::raw_exchange;
using duet::test::read_file;
using duet::test::TempDir;
using duet::test::write_file;
using flags_server::FlagTree;
using flags_server::Lookup;
using flags_server::relative_path;
namespace fs = std::filesystem;

namespace {

/// Runs flags_server to completion with `args`; returns its exit code.
int exit_code_of(std::vector<std::string> args) {
  args.insert(args.begin(), DUET_FLAGS_SERVER);
  return duet::test::run_to_end(std::move(args)).exit_code;
}

std::string get_raw(duet::Loop& loop, const duet::Endpoint& at, const std::string& target) {
  return raw_exchange(loop, at, "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
}

/// GETs every URL through `client`, all at once; returns the responses in order.
std::vector<duet::http::Response> get_all(duet::Loop& loop, duet::http::Client& client,
                                          const std::vector<std::string>& urls) {
  std::vector<duet::http::Response> out(urls.size());
  std::size_t done = 0;
  for (std::size_t i = 0; i < urls.size(); ++i) {
    client.get(urls[i], [&, i](std::error_code ec, duet::http::Response res) {
      CHECK_FALSE(ec);
      out[i] = std::move(res);
      ++done;
    });
  }
  while (done < urls.size()) loop.run_once();
  return out;
}

}  // namespace

// ---- the request mapping ------------------------------------------------------------------------------

TEST_CASE("request paths map into the tree, climbing, empty and encoded-separator segments are refused",
          "[flags_server]") {
  CHECK(relative_path("/flags/br/br.gif") == "flags/br/br.gif");
  CHECK(relative_path("/flags/br/br.gif?size=2#top") == "flags/br/br.gif");
  CHECK(relative_path("/flags/c%C3%B4te/x.gif") == "flags/c\xC3\xB4te/x.gif");
  CHECK(relative_path("http://localhost:8000/flags/br/br.gif") == "flags/br/br.gif");  // absolute form
  CHECK(relative_path("HTTP://localhost:8000/flags/br/br.gif") == "flags/br/br.gif");  // in any case
  CHECK(relative_path("/") == "");  // folders: well-formed, and simply not found
  CHECK(relative_path("/flags/") == "flags");
  CHECK(relative_path("/flags/br/") == "flags/br");
  for (const char* bad :
       {"/flags/../../etc/passwd", "/flags/%2e%2e/%2E%2E/etc/passwd", "/flags/.%2e/x", "/flags/./br/br.gif",
        "//etc/passwd", "/flags//br.gif", "/flags/br/..%2f..%2fx", "/flags/br/br.gif%00.txt", "/flags/%zz", "/flags/%2",
        "etc/passwd", "*", "", "http://host", "http://host/../x", "/flags/br/.."}) {
    INFO(bad);
    CHECK_FALSE(relative_path(bad));
  }
}

TEST_CASE("a tree is read at load, symlinks out of the root are forbidden, dot-files never served", "[flags_server]") {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  write_file(root / "flags/br/br.gif", "GIF89a-br");
  write_file(root / "flags/br/metadata.json", R"({"country": "Brazil"})");
  write_file(root / "flags/br/.secret", "dot");
  write_file(root / "shared/common.gif", "GIF89a-shared");
  write_file(dir.path() / "outside/secret.txt", "SECRET");
  fs::create_directories(root / "flags/xx");
  fs::create_symlink(dir.path() / "outside/secret.txt", root / "flags/xx/xx.gif");  // a file link out
  fs::create_directory_symlink(dir.path() / "outside", root / "flags/yy");          // a folder link out
  fs::create_symlink(root / "shared/common.gif", root / "flags/br/inside.gif");     // a link that stays inside
  fs::create_symlink(root / "flags/br/.secret", root / "flags/br/visible.gif");     // a link to a dot-file

  const FlagTree tree = FlagTree::load(root);
  CHECK(tree.files() == 3);  // br.gif, metadata.json, inside.gif
  const Lookup gif = tree.find("/flags/br/br.gif");
  REQUIRE(gif.status == Lookup::found);
  CHECK(gif.file->body == "GIF89a-br");
  CHECK(gif.file->content_type == "image/gif");
  CHECK(tree.find("/flags/br/metadata.json").file->content_type == "application/json");
  CHECK(tree.find("/flags/br/inside.gif").status == Lookup::found);
  CHECK(tree.find("/flags/xx/xx.gif").status == Lookup::forbidden);
  CHECK(tree.find("/flags/yy/secret.txt").status == Lookup::forbidden);
  CHECK(tree.find("/flags/br/.secret").status == Lookup::not_found);
  CHECK(tree.find("/flags/br/visible.gif").status == Lookup::not_found);
  CHECK(tree.find("/").status == Lookup::not_found);
  CHECK(tree.find("/flags/br/").status == Lookup::not_found);
  CHECK(tree.find("/flags/zz/zz.gif").status == Lookup::not_found);
  CHECK(tree.find("/flags/../outside/secret.txt").status == Lookup::bad_path);
}

TEST_CASE("loading a folder that is not a flag tree says what is wrong", "[flags_server]") {
  TempDir dir;
  CHECK_THROWS_WITH(FlagTree::load(dir.path() / "missing"), Catch::Contains("missing"));
  CHECK_THROWS_WITH(FlagTree::load(dir.path()), Catch::Contains("ROOT/flags/{cc}/{cc}.gif"));
  fs::create_directories(dir.path() / "elsewhere/flags/br");
  fs::create_directories(dir.path() / "root");
  fs::create_directory_symlink(dir.path() / "elsewhere/flags", dir.path() / "root/flags");
  CHECK_THROWS_WITH(FlagTree::load(dir.path() / "root"), Catch::Contains("links outside"));
}

// ---- the built server -------------------------------------------------------------------------------

TEST_CASE("the build's tree: every flag and its metadata, named from iso-codes", "[flags_server]") {
  REQUIRE(fs::is_directory(kFlagTree / "flags"));
  std::size_t flags = 0;
  for (const auto& dir : fs::directory_iterator(kFlagTree / "flags")) {
    const std::string cc = dir.path().filename().string();
    CHECK(fs::is_regular_file(dir.path() / (cc + ".gif")));
    CHECK(read_file(dir.path() / (cc + ".gif")).starts_with("GIF8"));
    ++flags;
  }
  CHECK(flags > 200);
  CHECK(read_file(kFlagTree / "flags/br/metadata.json") ==
        "{\"country\":\"Brazil\",\"iso_cc\":\"BR\",\"tld_cc\":\".br\"}\n");
  CHECK(read_file(kFlagTree / "flags/gb/metadata.json").find("\".uk\"") != std::string::npos);
  CHECK(read_file(kFlagTree / "flags/ci/metadata.json").find("C\xC3\xB4te d'Ivoire") != std::string::npos);
}

TEST_CASE("LOCAL serves every file of the tree byte for byte, with its content type, over keep-alive",
          "[flags_server]") {
  FlagsServer server;
  duet::Loop loop;
  duet::http::Client client(loop);
  std::vector<std::string> urls;
  std::vector<fs::path> files;
  for (const auto& dir : fs::directory_iterator(kFlagTree / "flags")) {
    for (const auto& file : fs::directory_iterator(dir.path())) {
      files.push_back(file.path());
      urls.push_back(server.url("LOCAL", "/" + dir.path().filename().string() + "/" + file.path().filename().string()));
    }
  }
  const auto responses = get_all(loop, client, urls);
  for (std::size_t i = 0; i < files.size(); ++i) {
    INFO(urls[i]);
    CHECK(responses[i].status == 200);
    CHECK(responses[i].body == read_file(files[i]));
    CHECK(responses[i].headers.get("Content-Type") ==
          (files[i].extension() == ".gif" ? "image/gif" : "application/json"));
  }
}

TEST_CASE("HEAD, 404, 405 and 400 answers", "[flags_server]") {
  FlagsServer server;
  duet::Loop loop;
  const auto at = server.at("LOCAL");
  const std::string head =
      raw_exchange(loop, at, "HEAD /flags/br/br.gif HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(head.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(head.find("Content-Length: " + std::to_string(fs::file_size(kFlagTree / "flags/br/br.gif"))) !=
        std::string::npos);
  CHECK(head.ends_with("\r\n\r\n"));  // no body

  CHECK(get_raw(loop, at, "/flags/zz/zz.gif").starts_with("HTTP/1.1 404 Not Found\r\n"));
  CHECK(get_raw(loop, at, "/flags/br/BR.gif").starts_with("HTTP/1.1 404 "));  // paths are case-sensitive
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    const std::string got =
        raw_exchange(loop, at,
                     std::string(method) +
                         " /flags/br/br.gif HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    INFO(method);
    CHECK(got.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    CHECK(got.find("Allow: GET, HEAD\r\n") != std::string::npos);
  }
  CHECK(raw_exchange(loop, at, "NONSENSE\r\n\r\n").starts_with("HTTP/1.1 400 "));
  CHECK(raw_exchange(loop, at, "GET /flags/br/br.gif HTTP/1.1\r\nHost x\r\n\r\n").starts_with("HTTP/1.1 400 "));
}

TEST_CASE("no request escapes the root", "[flags_server]") {
  // A tree with a secret beside it, and links leading to it.
  TempDir dir;
  const fs::path root = dir.path() / "root";
  write_file(root / "flags/br/br.gif", "GIF89a-br");
  write_file(dir.path() / "secret.txt", "TOP-SECRET");
  fs::create_directories(root / "flags/xx");
  fs::create_symlink(dir.path() / "secret.txt", root / "flags/xx/xx.gif");
  fs::create_directory_symlink(dir.path(), root / "flags/up");
  FlagsServer server({"--root", root.string()});
  duet::Loop loop;
  const auto at = server.at("LOCAL");
  for (const char* target : {"/flags/../secret.txt", "/flags/br/../../../secret.txt", "/flags/%2e%2e/secret.txt",
                             "/flags/%2E%2E/%2e%2e/secret.txt", "/flags/br/..%2F..%2Fsecret.txt", "//secret.txt",
                             "/flags/br/br.gif%00", "http://x/flags/../../secret.txt"}) {
    const std::string got = get_raw(loop, at, target);
    INFO(target);
    CHECK(got.starts_with("HTTP/1.1 400 "));
    CHECK(got.find("TOP-SECRET") == std::string::npos);
  }
  for (const char* target : {"/flags/xx/xx.gif", "/flags/up/secret.txt"}) {
    const std::string got = get_raw(loop, at, target);
    INFO(target);
    CHECK(got.starts_with("HTTP/1.1 403 "));
    CHECK(got.find("TOP-SECRET") == std::string::npos);
  }
  for (const char* target : {"/secret.txt", "/etc/passwd", dir.path().c_str()}) {
    INFO(target);
    CHECK(get_raw(loop, at, target).starts_with("HTTP/1.1 404 "));
  }
  CHECK(get_raw(loop, at, "/flags/br/br.gif").ends_with("GIF89a-br"));  // the tree itself is served
}

TEST_CASE("pipelined requests on one connection are answered in order", "[flags_server]") {
  FlagsServer server;
  duet::Loop loop;
  const std::string got = raw_exchange(loop, server.at("LOCAL"),
                                       "GET /flags/br/metadata.json HTTP/1.1\r\nHost: x\r\n\r\n"
                                       "GET /flags/zz/zz.gif HTTP/1.1\r\nHost: x\r\n\r\n"
                                       "GET /flags/jp/metadata.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const auto br = got.find("Brazil"), nf = got.find("404 Not Found"), jp = got.find("Japan");
  REQUIRE(br != std::string::npos);
  REQUIRE(nf != std::string::npos);
  REQUIRE(jp != std::string::npos);
  CHECK((br < nf && nf < jp));
  CHECK(count(got, "HTTP/1.1 ") == 3);
}

TEST_CASE("ERROR answers its share of requests with 418, repeatably with a seed", "[flags_server]") {
  auto teapots = [](const std::string& seed) {
    FlagsServer server({"--delay", "0", "--error-share", "0.25", "--seed", seed});
    duet::Loop loop;
    duet::http::ClientOptions options;
    options.max_connections_per_origin = 50;
    duet::http::Client client(loop, options);
    const std::vector<std::string> urls(2000, server.url("ERROR", "/br/br.gif"));
    std::size_t n = 0;
    for (const auto& res : get_all(loop, client, urls)) {
      if (res.status == 418) {
        ++n;
        CHECK(res.reason == "I'm a Teapot");
      } else {
        CHECK(res.status == 200);
      }
    }
    return n;
  };
  const std::size_t first = teapots("7");
  CHECK(first >= 440);  // 25% of 2,000 is 500; the binomial spread is about 19
  CHECK(first <= 560);
  CHECK(teapots("7") == first);  // the same seed, the same sequence
}

TEST_CASE("DELAY holds each answer for a time within its range, LOCAL and ERROR with no share send none",
          "[flags_server]") {
  TempDir dir;
  const std::string log = dir / "server.log";
  {
    FlagsServer server({"--delay", "0.2:0.4", "--error-share", "0", "--seed", "3", "-v"}, log);
    duet::Loop loop;
    duet::http::ClientOptions options;
    options.max_connections_per_origin = 20;
    duet::http::Client client(loop, options);
    const auto start = std::chrono::steady_clock::now();
    const auto delayed = get_all(loop, client, std::vector<std::string>(20, server.url("DELAY", "/br/br.gif")));
    CHECK(std::chrono::steady_clock::now() - start >= 200ms);  // none can come back before the least delay
    for (const auto& res : delayed) CHECK(res.status == 200);
    for (const auto& res : get_all(loop, client, std::vector<std::string>(20, server.url("ERROR", "/br/br.gif"))))
      CHECK(res.status == 200);
    CHECK(server.process().stop(SIGTERM) == 0);  // also flushes the log
  }
  // The log has the delay each answer got: all within the range, and not all the same.
  // Lines such as "DELAY BR 200 0.312s GET /flags/br/br.gif".
  std::istringstream in(read_file(log));
  std::map<std::string, std::vector<double>> delays;
  for (std::string text; std::getline(in, text);) {
    std::istringstream fields(text);
    std::string label, cc, status, delay, method, target;
    fields >> label >> cc >> status >> delay >> method >> target;
    if (cc == "BR" && status == "200" && delay.ends_with('s') && method == "GET" && target == "/flags/br/br.gif")
      delays[label].push_back(std::stod(delay));
  }
  REQUIRE(delays["DELAY"].size() == 20);
  REQUIRE(delays["ERROR"].size() == 20);
  for (const auto& label : {"DELAY", "ERROR"}) {
    const auto [lo, hi] = std::minmax_element(delays[label].begin(), delays[label].end());
    CHECK(*lo >= 0.2);
    CHECK(*hi <= 0.4);
    CHECK(*hi - *lo > 0.05);
  }
}

TEST_CASE("many slow clients do not stall a fast one, the connection limit and header timeout free slots",
          "[flags_server]") {
  // The header timeout is the margin each step below has to finish in, slow machines included.
  FlagsServer server({"--max-connections", "40", "--header-timeout", "3"});
  duet::Loop loop;
  // 40 clients that start a request and never finish its headers: the limit is reached.
  std::vector<duet::TcpStream> slow(40);
  std::size_t connected = 0, dropped = 0;
  for (auto& s : slow) {
    duet::connect(loop, server.at("LOCAL"), [&](std::error_code ec, duet::TcpStream stream) {
      REQUIRE_FALSE(ec);
      s = std::move(stream);
      s.write(std::string("GET /flags/br/br.gif HTTP/1.1\r\nHost: sl"), [](std::error_code) {});
      s.read_start([&](std::error_code, std::span<const char> chunk) {
        if (chunk.empty()) ++dropped;  // EOF or reset: the server let go of it
      });
      ++connected;
    });
  }
  while (connected < slow.size()) loop.run_once();
  // Beyond the limit a new connection is closed at once...
  duet::http::Client client(loop);
  const auto refused = duet::test::get(Face::callbacks, loop, client, server.url("LOCAL", "/br/br.gif"));
  CHECK(refused.ec);
  CHECK(dropped == 0);  // ...while the slow ones are still held
  // ...and once the header timeout has dropped them, everyone is served again.
  while (dropped < slow.size()) loop.run_once();
  const auto served = duet::test::get(Face::callbacks, loop, client, server.url("LOCAL", "/br/br.gif"));
  CHECK_FALSE(served.ec);
  CHECK(served.res.status == 200);

  // Under the limit, slow clients cost a fast one nothing: it is served while they wait.
  std::vector<duet::TcpStream> dribbling(30);
  connected = dropped = 0;
  for (auto& s : dribbling) {
    duet::connect(loop, server.at("DELAY"), [&](std::error_code ec, duet::TcpStream stream) {
      REQUIRE_FALSE(ec);
      s = std::move(stream);
      s.write(std::string("GET /flags/br/br.gif HTTP/1.1\r\n"), [](std::error_code) {});
      s.read_start([&](std::error_code, std::span<const char> chunk) { dropped += chunk.empty() ? 1 : 0; });
      ++connected;
    });
  }
  while (connected < dribbling.size()) loop.run_once();
  const auto urls = std::vector<std::string>(100, server.url("LOCAL", "/br/br.gif"));
  for (const auto& res : get_all(loop, client, urls)) CHECK(res.status == 200);
  CHECK(dropped == 0);  // the fast client finished while every slow one was still connected
  for (auto& s : dribbling) s.close();
  for (auto& s : slow) s.close();
  loop.run();
}

TEST_CASE("with -v each request is logged, and SIGINT or SIGTERM stop the server at once, dropping delayed answers",
          "[flags_server]") {
  for (int signum : {SIGINT, SIGTERM}) {
    TempDir dir;
    const std::string log = dir / "server.log";
    FlagsServer server({"--delay", "30", "-v"}, log);
    duet::Loop loop;
    duet::http::Client client(loop);
    CHECK(duet::test::get(Face::callbacks, loop, client, server.url("LOCAL", "/ar/ar.gif")).res.status == 200);
    // A request the server will hold for 30 s: its log line says it has arrived.
    std::optional<std::error_code> pending;
    client.get(server.url("DELAY", "/br/br.gif"), [&](std::error_code ec, duet::http::Response) { pending = ec; });
    duet::Timer poll(loop);  // wakes the loop to look at the log again
    poll.start(5ms, 5ms, [] {});
    while (read_file(log).find("DELAY BR 200 30.000s GET /flags/br/br.gif") == std::string::npos) loop.run_once();
    poll.stop();

    const auto start = std::chrono::steady_clock::now();
    const int status = server.process().stop(signum);
    CHECK(std::chrono::steady_clock::now() - start < 20s);  // it did not wait out the delay
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    while (!pending) loop.run_once();
    CHECK(*pending);  // the connection closed without an answer
    const std::string text = read_file(log);
    CHECK(text.find("LOCAL AR 200 0.000s GET /flags/ar/ar.gif") != std::string::npos);
    CHECK(text.find(signum == SIGINT ? "SIGINT, stopping" : "SIGTERM, stopping") != std::string::npos);
    CHECK(text.find("DELAY answered 0 request(s); dropped 1 still waiting") != std::string::npos);
  }
}

TEST_CASE("bad options exit with status 2, an unusable tree or port with status 1", "[flags_server]") {
  CHECK(exit_code_of({"--delay", "5:1"}) == 2);
  CHECK(exit_code_of({"--delay", "fast"}) == 2);
  CHECK(exit_code_of({"--error-share", "1.5"}) == 2);
  CHECK(exit_code_of({"--local-port", "70000"}) == 2);
  CHECK(exit_code_of({"--host", "localhost"}) == 2);
  CHECK(exit_code_of({"--no-such-option"}) == 2);
  TempDir dir;
  CHECK(exit_code_of({"--root", dir.path().string()}) == 1);
  duet::Loop loop;
  duet::TcpListener taken(loop, duet::Endpoint::loopback(0));
  CHECK(exit_code_of({"--local-port", std::to_string(taken.local_endpoint().port()), "--delay-port", "0",
                      "--error-port", "0"}) == 1);
}
