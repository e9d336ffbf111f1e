// The flag programs, both styles, run as built against flags_server on ephemeral ports.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "duet/tcp.hpp"
#include "flags_server_process.hpp"
#include "peer_process.hpp"
#include "scripted_server.hpp"
#include "support.hpp"
#include "tls_certs.hpp"
#include "tls_peers.hpp"

using duet::test::Finished;
using duet::test::FlagsServer;
using duet::test::kFlagTree;
using duet::test::read_file;
using duet::test::run_to_end;
using duet::test::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kExamples = DUET_EXAMPLES_DIR;
const char* const kStyles[] = {"callbacks", "coroutines"};
/// Every way the flag program is written: two styles of both shapes, and the threads style.
const std::pair<const char*, const char*> kFlagPrograms[] = {{"callbacks", "flags"},
                                                             {"coroutines", "flags"},
                                                             {"callbacks", "flags_workers"},
                                                             {"coroutines", "flags_workers"},
                                                             {"threads", "flags"}};
constexpr int kFlagProgramCount = 5;

Finished run(const std::string& style, const std::string& program, std::vector<std::string> args) {
  args.insert(args.begin(), kExamples + "/" + style + "/" + program);
  return run_to_end(std::move(args));
}

/// The report without its elapsed time or the server's port, and with -v lines (which come in completion
/// order) sorted.
std::string comparable(std::string out) {
  for (auto at = out.find("127.0.0.1:"); at != std::string::npos; at = out.find("127.0.0.1:", at + 1)) {
    const auto digits = at + 10;
    out.replace(digits, out.find_first_not_of("0123456789", digits) - digits, "PORT");
  }
  std::istringstream in(out);
  std::vector<std::string> head, lines, tail;
  bool in_body = false, in_tail = false;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("Elapsed time: ")) continue;
    if (line == "--------------------") in_tail = true;
    (in_tail ? tail : in_body ? lines : head).push_back(line);
    if (line.find("will be used.") != std::string::npos) in_body = true;
  }
  std::sort(lines.begin(), lines.end());
  std::string all;
  for (const auto* part : {&head, &lines, &tail})
    for (const auto& l : *part) all += l + "\n";
  return all;
}

/// A count from the closing report: "downloaded", "not found" or "error" (0 when the line is absent).
std::size_t count_of(const std::string& out, const std::string& what) {
  const auto report = out.find("--------------------\n");
  if (report == std::string::npos) return 0;
  std::istringstream in(out.substr(report));
  for (std::string line; std::getline(in, line);)
    if (line.find(what) != std::string::npos && !line.starts_with("Elapsed")) return std::stoul(line);
  return 0;
}

std::size_t searched(const std::string& out) {
  const auto at = out.find("Searching for ");
  return at == std::string::npos ? 0 : std::stoul(out.substr(at + 14));
}

/// The seconds on the report's "Elapsed time: 1.52s" line (-1 when it is missing).
double elapsed(const std::string& out) {
  const auto at = out.find("\nElapsed time: ");
  return at == std::string::npos ? -1 : std::stod(out.substr(at + 15));
}

}  // namespace

TEST_CASE(
    "every style, and both shapes (flags, flags_workers), print the same report and save byte-identical flags, "
    "LOCAL, DELAY and ERROR",
    "[examples]") {
  FlagsServer server({"--delay", "0.05:0.3", "--seed", "11"});
  struct Run {
    std::string site;
    std::vector<std::string> args;
  };
  const std::vector<Run> runs = {
      {"LOCAL", {"-a", "-m", "50"}},
      {"DELAY", {"-e", "-m", "100"}},
      {"ERROR", {"-m", "5"}},  // the 20 default codes all exist: only the teapots count as errors
  };
  for (const auto& r : runs) {
    INFO(r.site);
    std::string reports[kFlagProgramCount];
    for (int s = 0; s < kFlagProgramCount; ++s) {
      // Each run against a fresh server with the same seed, so that ERROR draws the same teapots.
      FlagsServer fresh({"--delay", "0", "--seed", "11"});
      TempDir out;
      auto args = r.args;
      args.insert(args.end(), {"-s", (r.site == "DELAY" ? server : fresh).url(r.site), "-o", out.path().string()});
      const auto [style, program] = kFlagPrograms[s];
      const Finished f = run(style, program, args);
      INFO(style << " " << program << "\n" << f.out << f.err);
      CHECK(f.exit_code == 0);
      const std::size_t ok = count_of(f.out, "downloaded"), nf = count_of(f.out, "not found"),
                        err = count_of(f.out, "error");
      CHECK(ok + nf + err == searched(f.out));
      CHECK(ok > 0);
      if (r.site == "ERROR") CHECK(err > 0);
      // What was saved is what the server has, and nothing else: no partial or temporary file.
      std::size_t files = 0;
      for (const auto& file : fs::directory_iterator(out.path())) {
        ++files;
        const std::string cc = file.path().stem().string();
        CHECK(file.path().extension() == ".gif");
        std::string lc = cc;
        std::transform(lc.begin(), lc.end(), lc.begin(), ::tolower);
        CHECK(read_file(file.path()) == read_file(kFlagTree / "flags" / lc / (lc + ".gif")));
      }
      CHECK(files == ok);
      reports[s] = comparable(f.out);
    }
    for (int s = 1; s < kFlagProgramCount; ++s) CHECK(reports[0] == reports[s]);
  }
}

TEST_CASE("every option means the same in every style and both shapes", "[examples]") {
  FlagsServer server({"--delay", "0"});
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> expected;  // lines the report must have
  };
  const std::vector<Case> cases = {
      {{},
       {"Searching for 20 flags: from BD to VN", "5 concurrent connections will be used.", " 20 flags downloaded."}},
      {{"-v", "B"},
       {"Searching for 26 flags: from BA to BZ", "BR OK", "BC not found: http://127.0.0.1:PORT/flags/bc/bc.gif"}},
      {{"-l", "3", "-a", "-v"}, {"Searching for 3 flags: AD, AE, AF", "3 concurrent connections will be used."}},
      {{"br", "jp", "Zz", "-v"},
       {"Searching for 3 flags: BR, JP, ZZ", "JP OK", "ZZ not found: http://127.0.0.1:PORT/flags/zz/zz.gif"}},
      {{"-e", "-l", "30", "-v"},
       {"Searching for 30 flags: from AA to BD", "AA not found: http://127.0.0.1:PORT/flags/aa/aa.gif"}},
      {{"-a", "-e", "-l", "5", "BR"}, {"Searching for 5 flags: AA, AB, AC, AD, AE"}},  // -e wins, CCs ignored
      {{"-m", "1", "-v", "a"}, {"1 connection will be used.", "AR OK"}},
      {{"--limit", "2", "--verbose", "--max_req", "2", "C"},
       {"Searching for 2 flags: CA, CB", "2 concurrent connections will be used."}},
      {{"--timeout", "0", "-v", "BR"}, {"BR OK", "  1 flag downloaded."}},  // 0: no deadline
      {{"--timeout", "2.5", "-v", "JP", "ZZ"}, {"JP OK", "ZZ not found: http://127.0.0.1:PORT/flags/zz/zz.gif"}},
  };
  for (const auto& c : cases) {
    std::string reports[kFlagProgramCount];
    for (int s = 0; s < kFlagProgramCount; ++s) {
      TempDir out;
      auto args = c.args;
      args.insert(args.end(), {"-s", server.url("LOCAL"), "-o", out.path().string()});
      const auto [style, program] = kFlagPrograms[s];
      const Finished f = run(style, program, args);
      INFO(style << " " << program << "\n" << f.out << f.err);
      CHECK(f.exit_code == 0);
      reports[s] = comparable(f.out);
    }
    for (int s = 1; s < kFlagProgramCount; ++s) CHECK(reports[0] == reports[s]);
    for (const auto& line : c.expected) {
      INFO(reports[0]);
      CHECK(reports[0].find(line + "\n") != std::string::npos);
    }
  }
}

TEST_CASE("usage errors print the book's message and exit 2", "[examples]") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"-m", "0"}, "*** Usage error: --max_req CONCURRENT must be >= 1"},
      {{"-l", "0"}, "*** Usage error: --limit N must be >= 1"},
      {{"-o", ""}, "*** Usage error: --output DIR must not be empty"},  // found by fuzz_flags_args
      {{"B1"}, "*** Usage error: each CC argument must be A to Z or AA to ZZ."},
      {{"ABC"}, "*** Usage error: each CC argument must be A to Z or AA to ZZ."},
      {{"-s", "NOWHERE"}, "*** Usage error: --server LABEL must be one of LOCAL, REMOTE, DELAY, ERROR"},
      {{"--no-such-option"}, "*** Usage error:"},
      {{"--timeout", "abc"}, "*** Usage error: --timeout SECONDS must be a number from 0 (never) to 86400"},
      {{"--timeout=-1"}, "*** Usage error: --timeout SECONDS must be a number from 0 (never) to 86400"},
      {{"--timeout", "-1"}, "*** Usage error: --timeout SECONDS must be a number from 0 (never) to 86400"},
      {{"--timeout", "1e3"}, "*** Usage error: --timeout SECONDS must be a number from 0 (never) to 86400"},
      {{"--timeout", "86401"}, "*** Usage error: --timeout SECONDS must be a number from 0 (never) to 86400"},
      {{"--timeout", ""}, "*** Usage error: --timeout SECONDS must be a number from 0 (never) to 86400"},
  };
  for (const char* style : kStyles) {
    for (const char* program : {"flags", "flags_names", "flags_workers"}) {
      for (const auto& [args, message] : cases) {
        const Finished f = run(style, program, args);
        INFO(style << " " << program << " " << args[0] << "\n" << f.err);
        CHECK(f.exit_code == 2);
        CHECK(f.err.find(message) != std::string::npos);
        CHECK(f.err.find("usage: ") != std::string::npos);
        CHECK(f.out.empty());
      }
    }
  }
}

TEST_CASE("an unreachable server makes every code an error, and the run still ends normally", "[examples]") {
  const duet::test::RefusingPort refusing;
  const std::string url = "http://127.0.0.1:" + std::to_string(refusing.port()) + "/flags";
  for (const char* style : kStyles) {
    TempDir out;
    const Finished f = run(style, "flags", {"-s", url, "-o", out.path().string(), "-v", "BR", "JP", "FR"});
    INFO(style << "\n" << f.out << f.err);
    CHECK(f.exit_code == 0);
    CHECK(f.out.find("  3 errors.") != std::string::npos);
    CHECK(f.out.find("BR error: cannot connect to 127.0.0.1") != std::string::npos);
    CHECK(duet::test::entries_in(out.path()) == 0);
  }
}

TEST_CASE("a read-only output folder is a clear error per flag, not a crash", "[examples]") {
  FlagsServer server({"--delay", "0"});
  for (const char* style : kStyles) {
    TempDir dir;
    const fs::path out = dir.path() / "read-only";
    fs::create_directory(out);
    ::chmod(out.c_str(), 0555);
    ::chmod(dir.path().c_str(), 0755);
    // Root writes anywhere: then the program runs as nobody, for whom the folder is read-only, from a
    // copy in the temporary folder (the build tree may be out of nobody's reach).
    const fs::path program = dir.path() / "flags";
    fs::copy_file(kExamples + "/" + style + "/flags", program);
    std::vector<std::string> args = {program.string(), "-s", server.url("LOCAL"), "-o", out.string(), "-v", "BR", "JP"};
    if (::geteuid() == 0) args.insert(args.begin(), {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"});
    const Finished f = run_to_end(args);
    INFO(style << "\n" << f.out << f.err);
    CHECK(f.exit_code == 0);
    CHECK(f.out.find("  2 errors.") != std::string::npos);
    CHECK(f.out.find("BR error: cannot save " + (out / "BR.gif").string() + ": permission denied") !=
          std::string::npos);
    CHECK(duet::test::entries_in(out) == 0);
  }
}

TEST_CASE("an output folder that cannot be made ends the run before any download, saying why", "[examples]") {
  TempDir dir;
  std::ofstream(dir.path() / "a-file") << "not a folder";
  const fs::path out = dir.path() / "a-file" / "flags";
  const duet::test::RefusingPort refusing;  // a download would be an error line in the report
  const std::string url = "http://127.0.0.1:" + std::to_string(refusing.port()) + "/flags";
  for (const auto& [style, program] :
       {std::pair{"callbacks", "flags"}, std::pair{"coroutines", "flags"}, std::pair{"callbacks", "flags_names"},
        std::pair{"coroutines", "flags_names"}, std::pair{"callbacks", "flags_workers"},
        std::pair{"coroutines", "flags_workers"}, std::pair{"threads", "flags"}, std::pair{"threads", "flags_names"}}) {
    const Finished f = run(style, program, {"-s", url, "-o", out.string(), "-v", "BR", "JP"});
    INFO(style << " " << program << "\n" << f.out << f.err);
    CHECK(f.exit_code == 1);
    CHECK(f.err == "*** Cannot create the output folder " + out.string() + ": Not a directory\n");
    CHECK(f.out.empty());  // no header and no report: nothing was tried
  }
}

TEST_CASE("flags_names saves each flag under its country's name, spaces and punctuation included", "[examples]") {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  auto add = [&](const std::string& cc, const std::string& metadata) {
    fs::create_directories(root / "flags" / cc);
    std::ofstream(root / "flags" / cc / (cc + ".gif")) << "GIF89a-" << cc;
    std::ofstream(root / "flags" / cc / "metadata.json") << metadata;
  };
  add("ci", R"({"country": "Côte d'Ivoire", "iso_cc": "CI", "tld_cc": ".ci"})");
  add("bq", R"({"country": "Bonaire, Sint Eustatius and Saba", "iso_cc": "BQ", "tld_cc": ".bq"})");
  add("zx", R"({"country": "../../escaped", "iso_cc": "ZX", "tld_cc": ".zx"})");
  add("zy", R"({"iso_cc": "ZY"})");  // no name: an error, not a crash
  FlagsServer server({"--root", root.string(), "--delay", "0"});
  const char* const styles[] = {"callbacks", "coroutines", "threads"};
  std::string reports[3];
  for (int s = 0; s < 3; ++s) {
    TempDir out;
    const Finished f = run(styles[s], "flags_names",
                           {"-s", server.url("LOCAL"), "-o", out.path().string(), "-v", "CI", "BQ", "ZX", "ZY", "ZZ"});
    INFO(styles[s] << "\n" << f.out << f.err);
    CHECK(f.exit_code == 0);
    CHECK(read_file(out.path() / "Côte_d'Ivoire.gif") == "GIF89a-ci");
    CHECK(read_file(out.path() / "Bonaire,_Sint_Eustatius_and_Saba.gif") == "GIF89a-bq");
    CHECK(read_file(out.path() / "_._.._escaped.gif") == "GIF89a-zx");  // inside the output folder
    CHECK(duet::test::entries_in(out.path()) == 3);
    CHECK(f.out.find("ZY error: bad metadata") != std::string::npos);
    CHECK(f.out.find("ZZ not found: " + server.url("LOCAL", "/zz/zz.gif")) != std::string::npos);  // the flag first
    reports[s] = comparable(f.out);
  }
  CHECK(reports[0] == reports[1]);
  CHECK(reports[0] == reports[2]);
}

namespace {

/// How many spinner frames ("\r| thinking!", "\r/ thinking!", ...) `out` holds.
std::size_t frames_in(const std::string& out) {
  std::size_t n = 0;
  for (auto at = out.find(" thinking!"); at != std::string::npos; at = out.find(" thinking!", at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("spinner and countdown, both styles", "[examples]") {
  for (const char* style : kStyles) {
    // The slow function takes seconds and the spinner draws every 100 ms: on the pool, it keeps spinning.
    const Finished spin = run(style, "spinner", {});
    INFO(style << "\n" << spin.out << spin.err);
    CHECK(spin.exit_code == 0);
    CHECK(spin.out.find("| thinking!") != std::string::npos);
    CHECK(frames_in(spin.out) >= 5);
    CHECK(spin.out.ends_with("Answer: 42\n"));
    const Finished count = run(style, "countdown", {"2"});
    CHECK(count.out == "2\n1\nBlast off!\n");
    CHECK(run(style, "countdown", {"zero"}).exit_code == 2);
  }
}

TEST_CASE("spinner_blocking, both styles: the slow function on the loop's thread freezes the spinner", "[examples]") {
  for (const char* style : kStyles) {
    // The same seconds of work, but the loop cannot draw until the answer is in.
    const Finished frozen = run(style, "spinner_blocking", {});
    INFO(style << "\n" << frozen.out << frozen.err);
    CHECK(frozen.exit_code == 0);
    CHECK(frames_in(frozen.out) <= 1);
    CHECK(frozen.out.ends_with("Answer: 42\n"));
  }
}

TEST_CASE("a progress bar on a terminal's stderr, none with -v or without a terminal", "[examples]") {
  if (run_to_end({"script", "-qec", "true", "/dev/null"}).exit_code != 0) {
    WARN("no pseudo-terminal can be opened here: the progress bar is not tested");
    return;
  }
  FlagsServer server({"--delay", "0"});
  for (const char* style : kStyles) {
    TempDir out;
    const std::string flags =
        kExamples + "/" + style + "/flags -s " + server.url("LOCAL") + " -o " + out.path().string();
    // `script` runs the program on a pseudo-terminal and copies what it writes there to our stdout.
    const Finished on_tty = run_to_end({"script", "-qec", flags, "/dev/null"});
    INFO(style << "\n" << on_tty.out << on_tty.err);
    CHECK(on_tty.out.find("100%|##############################| 20/20") != std::string::npos);
    const Finished verbose = run_to_end({"script", "-qec", flags + " -v", "/dev/null"});
    CHECK(verbose.out.find("%|") == std::string::npos);
    CHECK(verbose.out.find("BR OK") != std::string::npos);
    const Finished piped = run(style, "flags", {"-s", server.url("LOCAL"), "-o", out.path().string()});
    CHECK(piped.err.empty());
  }
}

TEST_CASE("Ctrl-C cancels the downloads in flight and still prints the report", "[examples]") {
  for (const auto& [style, program] :
       {std::pair{"callbacks", "flags"}, std::pair{"coroutines", "flags"}, std::pair{"callbacks", "flags_names"},
        std::pair{"coroutines", "flags_names"}, std::pair{"callbacks", "flags_workers"},
        std::pair{"coroutines", "flags_workers"}, std::pair{"threads", "flags"}, std::pair{"threads", "flags_names"}}) {
    INFO(style << " " << program);
    TempDir dir;
    const std::string log = dir / "server.log";
    FlagsServer server({"--delay", "30", "-v"}, log);
    const fs::path out = dir.path() / "out";
    duet::test::PeerProcess flags({kExamples + "/" + style + "/" + program, "-s", server.url("DELAY"), "-o",
                                   out.string(), "-m", "4", "--timeout", "0"},
                                  false);
    // Four requests are waiting in the server (its -v log says so, and with no deadline they wait on)
    // when the signal comes.
    CHECK(flags.read_line() == "CUSTOM site: " + server.url("DELAY"));
    flags.read_line();
    CHECK(flags.read_line() == "4 concurrent connections will be used.");
    auto waiting = [&] {
      std::istringstream in(read_file(log));
      std::size_t n = 0;
      for (std::string line; std::getline(in, line);) n += line.starts_with("DELAY ") ? 1 : 0;
      return n;
    };
    while (waiting() < 4) ::usleep(10'000);  // polling the log for the server's word, not a guess at timing
    const auto start = std::chrono::steady_clock::now();
    const int status = flags.stop(SIGINT);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));  // not the 30 s delay
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(flags.read_line() == "--------------------");
    CHECK(flags.read_line() == "  0 flags downloaded.");
    CHECK(flags.read_line() == " 20 cancelled (interrupted).");
    CHECK(flags.read_line().starts_with("Elapsed time: "));
    CHECK(duet::test::entries_in(out) == 0);  // nothing half-written
  }
}

TEST_CASE("with -v into a pipe that closes, the run ends instead of downloading on", "[examples]") {
  FlagsServer server({"--delay", "0.05:20"});
  for (const char* style : kStyles) {
    TempDir out;
    // No deadline: the slow answers would otherwise end as timeouts in 3.1 s, pipe or no pipe.
    const std::string command = kExamples + "/" + style + "/flags -v -e -m 1000 --timeout 0 -s " + server.url("DELAY") +
                                " -o " + out.path().string() + " | head -4";
    const auto start = std::chrono::steady_clock::now();
    const Finished f = run_to_end({"sh", "-c", command});
    INFO(style << "\n" << f.out << f.err);
    CHECK(f.exit_code == 0);
    CHECK(f.out.find("Searching for 676 flags") != std::string::npos);
    // The slowest answers take 20 s; the program stopped at its first line that could not be written.
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(15));
  }
}

// ---- faults: misbehaving servers, a failing resolver, a full disk ---------------------------------

namespace {

using duet::test::ScriptedServer;

/// A ScriptedServer on a thread of its own, so that the test can run a flag program to its end while
/// the server answers it.
class SiteThread {
 public:
  explicit SiteThread(ScriptedServer::Script script) {
    std::promise<std::string> ready;
    auto url = ready.get_future();
    thread_ = std::thread([this, &ready, script = std::move(script)]() mutable {
      duet::Loop loop;
      ScriptedServer server(loop, std::move(script));
      std::optional<duet::Loop::Hold> hold(loop.hold());
      loop_ = &loop;
      server_ = &server;
      stop_ = [&] {
        server.close();
        hold.reset();
      };
      ready.set_value(server.url("/flags"));
      loop.run();
    });
    url_ = url.get();
  }
  ~SiteThread() {
    loop_->post([this] { stop_(); });
    thread_.join();
  }
  const std::string& url() const { return url_; }
  ScriptedServer& server() { return *server_; }

 private:
  std::thread thread_;
  duet::Loop* loop_ = nullptr;
  ScriptedServer* server_ = nullptr;
  std::function<void()> stop_;
  std::string url_;
};

/// The code in a flag site request ("GET /flags/br/br.gif ..." -> "BR"), and whether it asks for the flag.
std::pair<std::string, bool> code_in(const std::string& head) {
  const auto at = head.find("/flags/") + 7;
  std::string cc = head.substr(at, 2);
  for (char& c : cc) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return {cc, head.find(".gif ") != std::string::npos};
}

/// The flag the fault site serves for `cc`: `size` bytes, different per code.
std::string flag_bytes(const std::string& cc, std::size_t size = 700) {
  std::string gif = "GIF89a" + cc;
  while (gif.size() < size) gif += static_cast<char>('a' + gif.size() % 26);
  return gif;
}

std::string metadata(const std::string& cc) { return R"({"country": "Land )" + cc + R"("})"; }

/// Where the program saves `cc`'s flag: flags and flags_workers use the code, flags_names the country name.
std::string saved_name(const std::string& program, const std::string& cc) {
  return program == "flags_names" ? "Land_" + cc + ".gif" : cc + ".gif";
}

/// Every entry in `dir` is one of `expected` (file name -> content), byte for byte, and all are there.
void check_folder(const fs::path& dir, const std::map<std::string, std::string>& expected) {
  std::map<std::string, std::string> found;
  for (const auto& e : fs::directory_iterator(dir)) found[e.path().filename().string()] = read_file(e.path());
  CHECK(found == expected);  // no temporary or partial file beside them
}

}  // namespace

TEST_CASE("a misbehaving server: each fault is a clear error, the counts add up, no partial file",
          "[examples][fault]") {
  // One code per way a server can fail; the others are served properly, some after a struggle.
  std::atomic<int> fr_closes{0};
  SiteThread site([&fr_closes](std::size_t, std::size_t request, const std::string& head) {
    using Step = ScriptedServer::Step;
    const auto [cc, gif] = code_in(head);
    const std::string body = gif ? flag_bytes(cc) : metadata(cc);
    if (cc == "JP") return Step{"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"};
    if (!gif) return Step{duet::test::ok(body)};
    const std::string head_of_1000 = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    if (cc == "CN")  // resets in the middle of the body
      return Step{head_of_1000 + body.substr(0, 300), false, true, false, false, std::chrono::milliseconds(20)};
    if (cc == "IN") return Step{head_of_1000 + body.substr(0, 300), true};  // closes in the middle of the body
    if (cc == "ID") return Step{"HTTP/1.1 2x0 Bogus\r\n\r\n", true};        // not HTTP
    if (cc == "US") return Step{duet::test::ok(body), false, false, true};  // one byte at a time
    // closes its idle keep-alive connection just as the request arrives: retried on a new one
    if (cc == "FR" && request > 0) {
      ++fr_closes;
      return Step{"", false, false, false, true};
    }
    return Step{duet::test::ok(body)};
  });
  const std::vector<std::string> good = {"BR", "DE", "FR", "US"}, bad = {"CN", "ID", "IN"};
  for (const char* style : kStyles) {
    for (const char* program : {"flags", "flags_names", "flags_workers"}) {
      for (const char* concurrency : {"1", "4"}) {
        TempDir out;
        fr_closes = 0;
        const Finished f = run(style, program,
                               {"-s", site.url(), "-o", out.path().string(), "-v", "-m", concurrency, "BR", "CN", "DE",
                                "FR", "ID", "IN", "JP", "US"});
        INFO(style << " " << program << " -m " << concurrency << "\n" << f.out << f.err);
        CHECK(f.exit_code == 0);
        CHECK(searched(f.out) == 8);
        CHECK(count_of(f.out, "downloaded") == good.size());
        CHECK(count_of(f.out, "not found") == 1);
        CHECK(count_of(f.out, "error") == bad.size());
        for (const auto& cc : bad) CHECK(f.out.find(cc + " error: ") != std::string::npos);
        CHECK(f.out.find("IN error: truncated response") != std::string::npos);
        CHECK(f.out.find("ID error: a status code that is not three digits") != std::string::npos);
        // (a reset that overtakes unread data reads as an end of stream: either way, an error that says so)
        CHECK((f.out.find("CN error: connection error: connection reset by peer") != std::string::npos ||
               f.out.find("CN error: truncated response") != std::string::npos));
        // One at a time, FR's flag follows DE's on their connection: the close is met
        if (std::string(concurrency) == "1") CHECK(fr_closes == 1);
        std::map<std::string, std::string> expected;
        for (const auto& cc : good) expected[saved_name(program, cc)] = flag_bytes(cc);
        check_folder(out.path(), expected);
      }
    }
  }
}

TEST_CASE("a server that never answers makes every code a timeout error, long before the header timeout",
          "[examples][fault]") {
  // It reads each request and says nothing: only a request deadline ends the wait before the client's
  // 30 s header timeout.
  std::atomic<int> requests{0};
  SiteThread silent([&requests](std::size_t, std::size_t, const std::string&) {
    ++requests;
    return ScriptedServer::Step{""};  // never answers, never closes
  });
  const std::vector<std::string> codes = {"BR", "CN", "DE", "FR", "JP"};
  for (const char* style : kStyles) {
    for (const char* program : {"flags", "flags_names", "flags_workers"}) {
      TempDir out;
      requests = 0;
      // Two at a time: each timeout must give its permit to the next code.
      std::vector<std::string> args = {"-s", silent.url(), "-o", out.path().string(), "-v", "-m",
                                       "2",  "--timeout",  "0.5"};
      args.insert(args.end(), codes.begin(), codes.end());
      const Finished f = run(style, program, args);
      INFO(style << " " << program << "\n" << f.out << f.err);
      CHECK(f.exit_code == 0);
      CHECK(searched(f.out) == codes.size());
      CHECK(count_of(f.out, "error") == codes.size());
      CHECK(count_of(f.out, "downloaded") == 0);
      for (const auto& cc : codes) CHECK(f.out.find("\n" + cc + " error: timed out\n") != std::string::npos);
      CHECK(requests == static_cast<int>(codes.size()));  // one request each (flags_names: the flag, first)
      CHECK(duet::test::entries_in(out.path()) == 0);
      // Three rounds of 0.5 s deadlines: bounds, far from either edge, not a timing measurement.
      CHECK(elapsed(f.out) >= 1.0);
      CHECK(elapsed(f.out) < 10);
    }
    // With no --timeout, the book's 3.1 s.
    TempDir out;
    const Finished f = run(style, "flags", {"-s", silent.url(), "-o", out.path().string(), "-v", "BR"});
    INFO(style << " flags, the default timeout\n" << f.out << f.err);
    CHECK(f.out.find("\nBR error: timed out\n") != std::string::npos);
    CHECK(count_of(f.out, "error") == 1);
    CHECK(elapsed(f.out) >= 3.0);
    CHECK(elapsed(f.out) < 10);
  }
}

TEST_CASE("over https, both styles save byte-identical flags from flags_server and from nginx", "[examples][tls]") {
  TempDir pki_dir;
  duet::test::Pki pki(pki_dir.path());
  const duet::test::CertFiles cert = pki.issue("server", {"localhost"}, {"127.0.0.1"});
  // No option for trust: a private CA is given as it is to curl or Python, through SSL_CERT_FILE.
  ::setenv("SSL_CERT_FILE", pki.ca_file().c_str(), 1);
  FlagsServer server({"--delay", "0", "--tls-cert", cert.cert.string(), "--tls-key", cert.key.string()});
  duet::test::NginxTls nginx(cert, kFlagTree);
  for (const std::string& base : {server.url("LOCAL"), nginx.url("/flags")}) {
    CHECK(base.starts_with("https://"));
    for (const char* style : kStyles) {
      INFO(style << " from " << base);
      TempDir out;
      const Finished f =
          run(style, "flags", {"-s", base, "-o", out.path().string(), "-m", "20", "BR", "JP", "FR", "ZZ"});
      INFO(f.out << f.err);
      CHECK(f.exit_code == 0);
      CHECK(count_of(f.out, "downloaded") == 3);
      CHECK(count_of(f.out, "not found") == 1);
      for (const char* cc : {"br", "jp", "fr"}) {
        std::string upper = cc;
        std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
        CHECK(read_file(out.path() / (upper + ".gif")) ==
              read_file(kFlagTree / "flags" / cc / (std::string(cc) + ".gif")));
      }
    }
  }
  // Without the CA, every code fails on the certificate: an error per code, not a crash or a usage error.
  ::unsetenv("SSL_CERT_FILE");
  TempDir out;
  const Finished f = run("coroutines", "flags", {"-s", server.url("LOCAL"), "-o", out.path().string(), "-v", "BR"});
  INFO(f.out << f.err);
  CHECK(f.exit_code == 0);
  CHECK(count_of(f.out, "error") == 1);
  CHECK(f.out.find("unable to get local issuer certificate") != std::string::npos);
}

TEST_CASE("the REMOTE site is the book's https one: without internet each code is a network error, not a usage error",
          "[examples][tls]") {
  for (const char* style : kStyles) {
    TempDir out;
    const Finished f = run(style, "flags", {"-s", "REMOTE", "-o", out.path().string(), "-v", "BR", "JP"});
    INFO(style << "\n" << f.out << f.err);
    CHECK(f.exit_code == 0);
    CHECK(f.out.find("Usage error") == std::string::npos);
    CHECK(f.out.find("https://www.fluentpython.com/data/flags") != std::string::npos);
    const std::size_t ok = count_of(f.out, "downloaded"), err = count_of(f.out, "error");
    CHECK(ok + err == 2);
    // On a machine with internet both flags download; here the name does not resolve.
    if (err > 0) CHECK(f.out.find("cannot resolve www.fluentpython.com") != std::string::npos);
  }
}

TEST_CASE("a host that does not resolve makes every code an error, and the run still ends normally",
          "[examples][fault]") {
  for (const char* style : kStyles) {
    TempDir out;
    const Finished f = run(style, "flags",
                           {"-s", "http://duet-test.invalid/flags", "-o", out.path().string(), "-v", "BR", "JP", "FR"});
    INFO(style << "\n" << f.out << f.err);
    CHECK(f.exit_code == 0);
    CHECK(count_of(f.out, "error") == 3);
    CHECK(count_of(f.out, "downloaded") == 0);
    CHECK(f.out.find("BR error: cannot resolve duet-test.invalid") != std::string::npos);
    CHECK(duet::test::entries_in(out.path()) == 0);
  }
}

namespace {

/// Reads the FIFO at `path` to its end: what a writer blocked in open() (or one still to come) writes,
/// up to `limit` of waiting. Never blocks on a FIFO nobody writes to.
std::string drain_fifo(const fs::path& path, std::chrono::milliseconds limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return "(cannot open: " + std::string(std::strerror(errno)) + ")";
  std::string bytes;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    // Linux reports no hang-up on a FIFO until it has seen a writer, so this waits for one.
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      bytes += "(no writer in time)";
      break;
    }
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) bytes.append(chunk, static_cast<std::size_t>(n));
    if (n == 0) break;  // the writer closed it
    if (n < 0 && errno != EAGAIN && errno != EINTR) break;
  }
  ::close(fd);
  return bytes;
}

}  // namespace

TEST_CASE("a permit is held for a request only: at most -m requests in flight, and saves run beyond them",
          "[examples]") {
  // Every answer comes 30 ms late, so the requests overlap as far as -m lets them. The first two
  // codes' files are FIFOs: saving them blocks on the thread pool until the test reads them. Held
  // through the save, as the permits once were, the two permits would stay with the two blocked
  // saves and no other request could start.
  std::mutex mutex;
  std::condition_variable arrived;
  std::size_t requests = 0;
  std::vector<std::string> order;  // "BR gif", "BR json", ...
  SiteThread site([&](std::size_t, std::size_t, const std::string& head) {
    {
      std::lock_guard lock(mutex);
      ++requests;
      const auto [cc, gif] = code_in(head);
      order.push_back(cc + (gif ? " gif" : " json"));
    }
    arrived.notify_all();
    const auto [cc, gif] = code_in(head);
    ScriptedServer::Step step{duet::test::ok(gif ? flag_bytes(cc) : metadata(cc))};
    step.reply_after = std::chrono::milliseconds(30);
    return step;
  });
  const std::vector<std::string> codes = {"BR", "CN", "DE", "FR", "ID", "IN", "JP", "US"}, blocked = {"BR", "CN"};
  for (const char* style : kStyles) {
    for (const char* program : {"flags", "flags_names"}) {
      INFO(style << " " << program);
      TempDir out;
      for (const auto& cc : blocked) REQUIRE(::mkfifo((out.path() / saved_name(program, cc)).c_str(), 0644) == 0);
      {
        std::lock_guard lock(mutex);
        requests = 0;
      }
      site.server().reset_max_in_flight();
      std::vector<std::string> args = {
          kExamples + "/" + style + "/" + program, "-s", site.url(), "-o", out.path().string(), "-v", "-m", "2"};
      args.insert(args.end(), codes.begin(), codes.end());
      duet::test::PeerProcess run_program(args, false);
      // Every request is made (flags_names: two per code) while two saves still wait for their reader.
      const std::size_t all = codes.size() * (std::string(program) == "flags_names" ? 2 : 1);
      {
        std::unique_lock lock(mutex);
        CHECK(arrived.wait_for(lock, std::chrono::seconds(30), [&] { return requests >= all; }));
      }
      for (const auto& cc : blocked)
        CHECK(drain_fifo(out.path() / saved_name(program, cc), std::chrono::seconds(30)) == flag_bytes(cc));
      const int status = run_program.wait();
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
      std::string report;
      while (report.find("Elapsed time") == std::string::npos) report += run_program.read_line() + "\n";
      INFO(report);
      CHECK(count_of(report, "downloaded") == codes.size());
      for (const auto& cc : codes)
        if (std::find(blocked.begin(), blocked.end(), cc) == blocked.end())
          CHECK(read_file(out.path() / saved_name(program, cc)) == flag_bytes(cc));
      CHECK(site.server().max_in_flight() == 2);  // -m 2: reached, never passed
    }
    // flags_names takes a permit per request, as the book's two `async with` blocks: one at a time, each
    // code's metadata waits in line behind the flags asked for before it.
    TempDir out;
    {
      std::lock_guard lock(mutex);
      order.clear();
    }
    const Finished f =
        run(style, "flags_names", {"-s", site.url(), "-o", out.path().string(), "-m", "1", "BR", "CN", "DE"});
    INFO(f.out << f.err);
    CHECK(count_of(f.out, "downloaded") == 3);
    std::lock_guard lock(mutex);
    CHECK(order == std::vector<std::string>{"BR gif", "CN gif", "DE gif", "BR json", "CN json", "DE json"});
  }
}

TEST_CASE("a full disk while saving: the flags that fit are whole, the rest are errors, nothing partial",
          "[examples][fault]") {
  if (::geteuid() != 0) {
    WARN("mounting a small tmpfs needs root: the full-disk case is not run (the read-only case is)");
    return;
  }
  // 20,000-byte flags into a 64 KiB tmpfs: three fit (five pages each); the fourth gets a short
  // write, then ENOSPC, and must leave nothing behind.
  SiteThread site([](std::size_t, std::size_t, const std::string& head) {
    const auto [cc, gif] = code_in(head);
    return ScriptedServer::Step{duet::test::ok(gif ? flag_bytes(cc, 20'000) : metadata(cc))};
  });
  const std::vector<std::string> codes = {"BR", "CN", "DE", "FR", "ID", "IN", "JP", "US"};
  for (const char* style : kStyles) {
    for (const char* program : {"flags", "flags_names", "flags_workers"}) {
      TempDir dir;
      const fs::path out = dir.path() / "tiny";
      fs::create_directory(out);
      if (::mount("tmpfs", out.c_str(), "tmpfs", 0, "size=64k") != 0) {
        // Root without CAP_SYS_ADMIN (a container, say) may not mount.
        WARN("cannot mount a tmpfs (" << std::strerror(errno) << "): the full-disk case is not run");
        return;
      }
      struct Unmount {
        fs::path at;
        ~Unmount() { ::umount(at.c_str()); }
      } unmount{out};
      std::vector<std::string> args = {"-s", site.url(), "-o", out.string(), "-v", "-m", "1"};
      args.insert(args.end(), codes.begin(), codes.end());
      const Finished f = run(style, program, args);
      INFO(style << " " << program << "\n" << f.out << f.err);
      CHECK(f.exit_code == 0);
      const std::size_t ok = count_of(f.out, "downloaded"), errors = count_of(f.out, "error");
      CHECK(ok + errors == codes.size());
      // flags and flags_names save on the pool while the next request runs, so two saves may meet the
      // full disk together: two or three fit, each whole.
      CHECK(ok >= 2);
      CHECK(ok <= 3);
      CHECK(f.out.find("error: cannot save " + out.string()) != std::string::npos);
      CHECK(f.out.find("no space left on device") != std::string::npos);
      std::map<std::string, std::string> expected;
      for (const auto& cc : codes)
        if (f.out.find("\n" + cc + " OK\n") != std::string::npos)
          expected[saved_name(program, cc)] = flag_bytes(cc, 20'000);
      CHECK(expected.size() == ok);
      check_folder(out, expected);
    }
  }
}

TEST_CASE("run_process, both styles: the same numbered lines and exit status, a failing and a missing program",
          "[examples][process]") {
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string out;  // empty: not checked beyond both styles agreeing
  };
  const std::vector<Case> cases = {
      {{"sh", "-c", "echo first; echo; printf 'last, without a newline'"},
       0,
       "   1  first\n   2  \n   3  last, without a newline\nexit status 0\n"},
      {{"sh", "-c", "echo failing; exit 3"}, 3, "   1  failing\nexit status 3\n"},
      {{"sh", "-c", "echo killed; kill -TERM $$"}, 128 + SIGTERM, "   1  killed\nkilled by signal 15\n"},
      {{"duet-no-such-program", "--flag"}, 127, ""},
  };
  for (const auto& c : cases) {
    Finished runs[2];
    for (int s = 0; s < 2; ++s) {
      runs[s] = run(kStyles[s], "run_process", c.args);
      INFO(kStyles[s] << " " << c.args[0] << "\n" << runs[s].out << runs[s].err);
      CHECK(runs[s].exit_code == c.exit_code);
      if (!c.out.empty()) CHECK(runs[s].out == c.out);
    }
    CHECK(runs[0].out == runs[1].out);
    CHECK(runs[0].err == runs[1].err);
  }
  // The missing program: a clear message on stderr, nothing on stdout.
  const Finished missing = run("callbacks", "run_process", {"duet-no-such-program"});
  CHECK(missing.out.empty());
  CHECK(missing.err == "run_process: cannot run duet-no-such-program: no such file or directory\n");

  // The default command, ls -l /: a numbered "total" line first, then one line per (visible) entry of /.
  for (const char* style : kStyles) {
    const Finished ls = run(style, "run_process", {});
    INFO(style << "\n" << ls.out << ls.err);
    CHECK(ls.exit_code == 0);
    CHECK(ls.out.starts_with("   1  total "));
    CHECK(ls.out.ends_with("exit status 0\n"));
    std::size_t entries = 0;
    for (auto& e : fs::directory_iterator("/")) entries += e.path().filename().string().starts_with('.') ? 0 : 1;
    CHECK(static_cast<std::size_t>(std::count(ls.out.begin(), ls.out.end(), '\n')) == entries + 2);
  }
}
