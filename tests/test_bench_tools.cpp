// The load generators of bench/ count what they fetch correctly: their figures are only worth
// something if every request they report really happened. Run as built, against flags_server.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "flags_server_process.hpp"
#include "peer_process.hpp"
#include "support.hpp"

using duet::test::Finished;
using duet::test::FlagsServer;
using duet::test::kFlagTree;
using duet::test::read_file;
using duet::test::run_to_end;
using duet::test::TempDir;
namespace fs = std::filesystem;

namespace {

/// The `key=value` fields of a load generator's one line.
std::map<std::string, std::string> fields(const std::string& line) {
  std::map<std::string, std::string> out;
  std::istringstream in(line);
  for (std::string word; in >> word;)
    if (auto eq = word.find('='); eq != std::string::npos) out[word.substr(0, eq)] = word.substr(eq + 1);
  return out;
}

Finished http_load(const std::string& face, std::vector<std::string> args) {
  args.insert(args.begin(), {DUET_HTTP_LOAD, "--face", face});
  return run_to_end(std::move(args));
}

/// How many of AA..ZZ have a flag in the tree.
std::size_t flags_in_tree() {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(kFlagTree / "flags"))
    if (fs::exists(e.path() / (e.path().filename().string() + ".gif"))) ++n;
  return n;
}

}  // namespace

TEST_CASE("the load generators count every request: 200s, 404s and nothing else", "[bench]") {
  FlagsServer server;
  const std::string requests = std::to_string(2 * 676);  // AA..ZZ twice over
  const std::size_t found = 2 * flags_in_tree();
  const std::vector<std::string> args = {"--url", server.url("LOCAL"), "--requests", requests, "--concurrency",
                                         "20",    "--codes",           "every"};
  std::vector<Finished> runs = {http_load("callbacks", args), http_load("coroutines", args)};
  std::vector<std::string> bare = args;
  bare.insert(bare.begin(), DUET_BARE_CLIENT);
  runs.push_back(run_to_end(bare));
  for (const Finished& run : runs) {
    INFO(run.out << run.err);
    CHECK(run.exit_code == 0);
    auto f = fields(run.out);
    CHECK(f["requests"] == requests);
    CHECK(std::stoul(f["ok"]) == found);
    CHECK(std::stoul(f["notfound"]) == 2 * 676 - found);
    CHECK(f["errors"] == "0");
    CHECK(std::stod(f["req_per_s"]) > 0);
    CHECK(std::stod(f["cpu_us_per_req"]) > 0);
  }
}

TEST_CASE("http_load --save writes each flag byte for byte, in both faces", "[bench]") {
  FlagsServer server;
  for (const char* face : {"callbacks", "coroutines"}) {
    TempDir out;
    Finished run = http_load(face, {"--url", server.url("LOCAL"), "--requests", "249", "--concurrency", "10", "--save",
                                    out.path().string()});
    INFO(face << ": " << run.out << run.err);
    REQUIRE(run.exit_code == 0);
    const std::size_t ok = std::stoul(fields(run.out)["ok"]);
    CHECK(ok > 200);  // the assigned codes: nearly all have a flag
    std::size_t saved = 0;
    for (const auto& e : fs::directory_iterator(out.path())) {
      const std::string cc = e.path().stem().string();
      std::string lower = cc;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      CHECK(read_file(e.path()) == read_file(kFlagTree / "flags" / lower / (lower + ".gif")));
      ++saved;
    }
    CHECK(saved == ok);
  }
}

TEST_CASE("a load generator facing a closed port counts errors, says why, and exits 1", "[bench]") {
  const duet::test::RefusingPort refusing;
  const std::uint16_t port = refusing.port();
  const std::vector<std::string> args = {
      "--url", "http://127.0.0.1:" + std::to_string(port) + "/flags", "--requests", "30", "--concurrency", "5"};
  for (const char* face : {"callbacks", "coroutines"}) {
    Finished run = http_load(face, args);
    INFO(face << ": " << run.out << run.err);
    CHECK(run.exit_code == 1);
    CHECK(fields(run.out)["errors"] == "30");
    CHECK(run.err.find("connection refused") != std::string::npos);
  }
  std::vector<std::string> bare = args;
  bare.insert(bare.begin(), DUET_BARE_CLIENT);
  Finished run = run_to_end(bare);
  INFO(run.out << run.err);
  CHECK(run.exit_code == 1);
  CHECK(fields(run.out)["errors"] == "30");
}

TEST_CASE("the load generators reject bad options with exit status 2", "[bench]") {
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {DUET_HTTP_LOAD, "--url", "http://127.0.0.1:1/", "--requests", "0"},
           {DUET_HTTP_LOAD, "--face", "threads", "--url", "http://127.0.0.1:1/"},
           {DUET_HTTP_LOAD, "--requests", "10"},
           {DUET_BARE_CLIENT, "--url", "https://127.0.0.1:1/"},
           {DUET_BARE_CLIENT, "--url", "http://127.0.0.1:1/", "--concurrency", "x"}}) {
    Finished run = run_to_end(bad);
    INFO(run.err);
    CHECK(run.exit_code == 2);
    CHECK(run.err.find("*** Usage error: ") == 0);
  }
}

TEST_CASE("bench/download saves the body byte for byte in both faces, and fails clearly", "[bench]") {
  FlagsServer server;
  for (const char* face : {"callbacks", "coroutines"}) {
    TempDir out;
    Finished run = run_to_end({DUET_DOWNLOAD, "--face", face, "--url", server.url("LOCAL", "/br/br.gif"),
                               "--out", (out.path() / "br.gif").string()});
    INFO(face << ": " << run.out << run.err);
    REQUIRE(run.exit_code == 0);
    CHECK(read_file(out.path() / "br.gif") == read_file(kFlagTree / "flags" / "br" / "br.gif"));
    CHECK(fields(run.out)["bytes"] == std::to_string(fs::file_size(out.path() / "br.gif")));
    CHECK(std::stod(fields(run.out)["peak_rss_mb"]) > 0);

    run = run_to_end({DUET_DOWNLOAD, "--face", face, "--url", server.url("LOCAL", "/qq/qq.gif"), "--out",
                      (out.path() / "qq.gif").string()});
    CHECK(run.exit_code == 1);
    CHECK(run.err == "download failed: status 404\n");
    CHECK_FALSE(fs::exists(out.path() / "qq.gif"));
  }
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {DUET_DOWNLOAD, "--url", "http://127.0.0.1:1/"},
           {DUET_DOWNLOAD, "--url", "ftp://x/", "--out", "x"},
           {DUET_DOWNLOAD, "--url", "http://127.0.0.1:1/", "--out", "x", "--face", "threads"}}) {
    Finished run = run_to_end(bad);
    INFO(run.err);
    CHECK(run.exit_code == 2);
    CHECK(run.err.find("*** Usage error: ") == 0);
  }
}
