// Terminals, on a pseudo-terminal the test opens: the Tty is on the slave end, the test plays the
// terminal on the master end.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "duet/spawn.hpp"
#include "duet/timer.hpp"
#include "duet/tty.hpp"
#include "support.hpp"

using duet::Task;
using duet::Tty;

namespace {

/// A pseudo-terminal pair, closed on destruction.
struct Pty {
  int master = -1;
  int slave = -1;
  Pty() {
    master = ::posix_openpt(O_RDWR | O_NOCTTY);
    REQUIRE(master >= 0);
    REQUIRE(::grantpt(master) == 0);
    REQUIRE(::unlockpt(master) == 0);
    slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
    REQUIRE(slave >= 0);
  }
  Pty(const Pty&) = delete;
  Pty& operator=(const Pty&) = delete;
  ~Pty() {
    ::close(slave);
    ::close(master);
  }

  termios attributes() const {
    termios t{};
    REQUIRE(::tcgetattr(slave, &t) == 0);
    return t;
  }
  bool canonical_and_echoing() const {
    const termios t = attributes();
    return (t.c_lflag & ICANON) && (t.c_lflag & ECHO);
  }

  /// What the terminal shows: reads the master until `want` bytes came (or 5 s passed).
  std::string read_master(std::size_t want) const {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
      pollfd p{master, POLLIN, 0};
      if (::poll(&p, 1, 100) != 1) continue;
      char buf[256];
      const ssize_t n = ::read(master, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }
  /// Types `keys` on the terminal.
  void type(const std::string& keys) const {
    REQUIRE(::write(master, keys.data(), keys.size()) == static_cast<ssize_t>(keys.size()));
  }
};

bool not_connected(const std::system_error& e) { return e.code() == duet::errc::not_connected; }

}  // namespace

TEST_CASE("a Tty's writes come out on the terminal (the pseudo-terminal's master)", "[tty]") {
  duet::Loop loop;
  Pty pty;
  Tty tty(loop, pty.slave);
  CHECK(tty.is_open());
  std::optional<std::error_code> written;
  tty.write(std::string("hello, terminal\n"), [&](std::error_code ec) {
    written = ec;
    tty.close();
  });
  loop.run();
  REQUIRE(written);
  CHECK_FALSE(*written);
  CHECK(pty.read_master(17) == "hello, terminal\r\n");  // the line discipline turns \n into \r\n
}

TEST_CASE("a Tty in normal mode reads a whole typed line, in raw mode each key", "[tty]") {
  duet::Loop loop;
  Pty pty;
  Tty tty(loop, pty.slave);
  std::string line;
  char buf[64];
  pty.type("abc");  // no Enter yet: a canonical read waits for the line
  tty.read(buf, [&](std::error_code ec, std::size_t n) {
    REQUIRE_FALSE(ec);
    line.assign(buf, n);
  });
  bool typed_rest = false;
  duet::sleep(loop, std::chrono::milliseconds(20), [&](std::error_code) {
    CHECK(line.empty());  // nothing came before the Enter
    typed_rest = true;
    pty.type("def\n");
  });
  loop.run();
  CHECK(typed_rest);
  CHECK(line == "abcdef\n");

  tty.set_mode(Tty::Mode::raw);
  pty.type("x");
  std::string key;
  tty.read(buf, [&](std::error_code ec, std::size_t n) {
    REQUIRE_FALSE(ec);
    key.assign(buf, n);
    tty.close();
  });
  loop.run();
  CHECK(key == "x");
}

TEST_CASE("raw mode turns canonical input and echo off, normal mode puts them back", "[tty]") {
  duet::Loop loop;
  Pty pty;
  const termios original = pty.attributes();
  REQUIRE(pty.canonical_and_echoing());
  Tty tty(loop, pty.slave);
  CHECK(tty.mode() == Tty::Mode::normal);
  tty.set_mode(Tty::Mode::raw);
  CHECK(tty.mode() == Tty::Mode::raw);
  const termios raw = pty.attributes();
  CHECK_FALSE(raw.c_lflag & ICANON);
  CHECK_FALSE(raw.c_lflag & ECHO);
  tty.set_mode(Tty::Mode::normal);
  const termios back = pty.attributes();
  CHECK(back.c_lflag == original.c_lflag);
  CHECK(back.c_iflag == original.c_iflag);
  CHECK(back.c_oflag == original.c_oflag);

  tty.set_mode(Tty::Mode::io);
  CHECK_FALSE(pty.attributes().c_lflag & ICANON);
  tty.close();  // closing restores the mode too
  CHECK(pty.attributes().c_lflag == original.c_lflag);
  CHECK(tty.mode() == Tty::Mode::normal);
}

TEST_CASE("window_size reads the size TIOCSWINSZ set on the master", "[tty]") {
  duet::Loop loop;
  Pty pty;
  winsize ws{};
  ws.ws_row = 33;
  ws.ws_col = 101;
  REQUIRE(::ioctl(pty.master, TIOCSWINSZ, &ws) == 0);
  Tty tty(loop, pty.slave);
  const Tty::WindowSize size = tty.window_size();
  CHECK(size.width == 101);
  CHECK(size.height == 33);
  ws.ws_row = 24;
  ws.ws_col = 80;
  REQUIRE(::ioctl(pty.master, TIOCSWINSZ, &ws) == 0);
  CHECK(tty.window_size().width == 80);
  CHECK(tty.window_size().height == 24);
}

TEST_CASE("the coroutine face: co_await write and read on a Tty", "[tty][coro]") {
  duet::Loop loop;
  Pty pty;
  Tty tty(loop, pty.slave);
  auto talk = [](Tty& t, const Pty& p) -> Task<std::string> {
    co_await t.write("prompt> ");
    p.type("answer\n");
    char buf[32];
    const std::size_t n = co_await t.read(buf);
    co_return std::string(buf, n);
  };
  CHECK(duet::run(loop, talk(tty, pty)) == "answer\n");
  CHECK(pty.read_master(8).starts_with("prompt> "));
}

TEST_CASE("a regular file is not a terminal: Tty refuses it with UV_EINVAL", "[tty]") {
  duet::Loop loop;
  duet::test::TempDir dir;
  duet::test::write_file(dir / "plain", "text");
  const int fd = ::open((dir / "plain").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  try {
    Tty tty(loop, fd);
    FAIL("a Tty opened a regular file");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == UV_EINVAL);
    CHECK(std::string(e.what()).find(std::to_string(fd)) != std::string::npos);
  }
  ::close(fd);
  loop.run();
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("operations on a closed Tty throw not_connected", "[tty]") {
  Tty none;
  CHECK_FALSE(none.is_open());
  CHECK(none.mode() == Tty::Mode::normal);
  CHECK_THROWS_MATCHES(none.set_mode(Tty::Mode::raw), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(none.window_size(), std::system_error, Catch::Predicate<std::system_error>(not_connected));
  CHECK_THROWS_MATCHES(none.write("x", [](std::error_code) {}), std::system_error,
                       Catch::Predicate<std::system_error>(not_connected));
  none.close();
}

// Run only by the next test, in a child process of its own (hidden from ordinary runs by "[.]"): a
// Tty left in raw mode, a Loop never destroyed, and std::exit — only the exit handler can restore.
TEST_CASE("a helper that exits with a Tty in raw mode", "[.tty_exit_helper]") {
  const char* fd = std::getenv("DUET_TTY_FD");
  if (!fd) return;
  static duet::Loop* loop = new duet::Loop;
  const int count = std::getenv("DUET_TTY_COUNT") ? std::atoi(std::getenv("DUET_TTY_COUNT")) : 1;
  for (int i = 0; i < count; ++i) {  // a second Tty on the terminal finds it raw, and remembers that
    static std::vector<Tty*> ttys;
    ttys.push_back(new Tty(*loop, std::atoi(fd)));
    ttys.back()->set_mode(Tty::Mode::raw);
  }
  termios now{};
  const bool raw = ::tcgetattr(std::atoi(fd), &now) == 0 && !(now.c_lflag & ICANON);
  std::exit(raw ? 0 : 2);
}

TEST_CASE("a program that exits with a Tty in raw mode gives the terminal its mode back", "[tty]") {
  const int ttys = GENERATE(1, 2);  // two: the exit handler restores the newest first
  CAPTURE(ttys);
  Pty pty;
  const termios original = pty.attributes();
  // The helper above, in a fresh process on the same binary; the slave descriptor is inherited.
  std::vector<std::string> env = {"DUET_TTY_FD=" + std::to_string(pty.slave), "DUET_TTY_COUNT=" + std::to_string(ttys),
                                  "ASAN_OPTIONS=detect_leaks=0"};
  std::vector<std::string> args = {"/proc/self/exe", "[.tty_exit_helper]"};
  std::vector<char*> envp, argv;
  for (auto& e : env) envp.push_back(e.data());
  for (auto& a : args) argv.push_back(a.data());
  envp.push_back(nullptr);
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // it was in raw mode when it called exit
  const termios after = pty.attributes();
  CHECK(after.c_lflag == original.c_lflag);
  CHECK((after.c_lflag & ICANON));
}
