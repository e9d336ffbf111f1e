// Test support: helpers shared by the test files.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "duet/offload.hpp"
#include "duet/spawn.hpp"
#include "duet/task.hpp"
#include "duet/timer.hpp"

namespace duet::test {

/// The number of libuv pool threads (UV_THREADPOOL_SIZE, default 4).
inline int threadpool_size() {
  const char* env = std::getenv("UV_THREADPOOL_SIZE");
  return env ? std::atoi(env) : 4;
}

/// Occupies every libuv pool thread until `release()`, so that the next request is certain to be
/// queued (and therefore cancellable). The constructor returns once every thread is busy.
class PoolBlocker {
 public:
  explicit PoolBlocker(Loop& loop) : total_(threadpool_size()) {
    for (int i = 0; i < total_; ++i) {
      offload(
          loop,
          [this] {
            std::unique_lock lock(mutex_);
            ++started_;
            cv_.notify_all();
            cv_.wait(lock, [this] { return released_; });
          },
          [this](std::error_code) { ++finished; });
    }
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return started_ == total_; });
  }
  ~PoolBlocker() { release(); }

  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    cv_.notify_all();
  }

  int finished = 0;  // blocker jobs whose callback ran (loop thread)

 private:
  int total_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int started_ = 0;
  bool released_ = false;
};

/// Makes `busy` let go of the pool from inside `loop`'s destructor, right after the loop has cancelled
/// the requests still queued behind it: so that a test can destroy a loop whose requests are certainly
/// queued (cancelled), not running. A spawned task holds the release, suspended on a day-long sleep;
/// the loop's destruction cancels its tasks (and destroys their frames) only after cancelling its
/// requests, and then waits for the pool. Call on the loop thread, before the requests are started
/// (it runs the loop until the task waits); `busy` must outlive the loop.
inline void release_during_destruction(Loop& loop, PoolBlocker& busy) {
  struct Release {
    PoolBlocker* busy;
    ~Release() { busy->release(); }
  };
  bool waiting = false;
  auto hold = [](Loop& l, PoolBlocker& b, bool& w) -> Task<> {
    Release release{&b};
    w = true;
    co_await duet::sleep(l, std::chrono::hours(24));
  };
  spawn(loop, hold(loop, busy, waiting)).detach();
  while (!waiting) loop.run_once();
}

/// Collects the messages of what reaches a loop's error hook: `loop.set_error_handler(log.handler())`.
struct ErrorLog {
  std::vector<std::string> messages;
  auto handler() {
    return [this](std::exception_ptr e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        messages.emplace_back(ex.what());
      } catch (...) {
        messages.emplace_back("(not a std::exception)");
      }
    };
  }
};

/// 127.0.0.1:`port` as the socket calls take it.
inline sockaddr_in loopback_address(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  return addr;
}

/// A loopback port whose accept queue is full (listen backlog 0, one connection queued and never
/// accepted): the kernel drops further SYNs, so connects to it hang — which makes connect timeouts
/// and cancellation testable without any outside address.
class FullBacklog {
 public:
  FullBacklog() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = loopback_address(0);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener_, 0) != 0)
      throw std::system_error(errno, std::generic_category(), "FullBacklog: bind/listen");
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    queued_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(queued_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::system_error(errno, std::generic_category(), "FullBacklog: connect");
    // connect() returns on the SYN-ACK; the queue is full only once the listener has taken the final
    // ACK, which a loaded kernel may do later. A listener is readable exactly when its queue is not empty.
    pollfd queued{listener_, POLLIN, 0};
    if (::poll(&queued, 1, 5000) != 1) throw std::runtime_error("FullBacklog: the connection was never queued");
  }
  FullBacklog(const FullBacklog&) = delete;
  FullBacklog& operator=(const FullBacklog&) = delete;
  ~FullBacklog() {
    ::close(queued_);
    ::close(listener_);
  }
  std::uint16_t port() const noexcept { return port_; }

 private:
  int listener_ = -1;
  int queued_ = -1;
  std::uint16_t port_ = 0;
};

/// A loopback TCP port that refuses connections for as long as this object lives: a socket bound to
/// it, not listening, holds it, so that no other socket (of this test or of one running in parallel)
/// can take it and answer. (A port bound to 0 and released can be handed to the next such socket.)
class RefusingPort {
 public:
  RefusingPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr = loopback_address(0);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const int err = errno;
      if (fd_ >= 0) ::close(fd_);
      throw std::system_error(err, std::generic_category(), "RefusingPort");
    }
    port_ = ntohs(addr.sin_port);
  }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  ~RefusingPort() { ::close(fd_); }
  std::uint16_t port() const noexcept { return port_; }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

/// A loopback port nothing is bound to now, where no socket can be held: a UDP port that answers a
/// datagram with "port unreachable" (a bound socket would receive it), or a port for a server that
/// cannot report the one it chose itself (nginx). `type` is SOCK_STREAM or SOCK_DGRAM. The port lies
/// outside the kernel's ephemeral range (below it, on a usual configuration) and is checked free by
/// binding it, so no socket bound to port 0, by this test or one running in parallel, can be given it
/// before it is used. Test processes start their search at places spread by their pid.
inline std::uint16_t unbound_port(int type) {
  int low = 32768, high = 60999;  // the ephemeral range, Linux's defaults
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low >> high;
  int first = std::max(1024, std::min(10000, low - 1000)), end = low;  // [first, end): below the range
  if (end - first < 1000) {                                            // or above it
    first = high + 1;
    end = 65536;
  }
  if (end - first < 1000) {  // no room outside it: any free port, the best that can be done
    first = 1024;
    end = 65536;
  }
  const int count = end - first;
  const int start =
      static_cast<int>(static_cast<std::uint32_t>(::getpid()) * 2654435761u % static_cast<std::uint32_t>(count));
  for (int i = 0; i < count; ++i) {
    const int port = first + (start + i) % count;
    const int fd = ::socket(AF_INET, type, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "unbound_port: socket");
    const sockaddr_in addr = loopback_address(static_cast<std::uint16_t>(port));
    const bool free = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (free) return static_cast<std::uint16_t>(port);
  }
  throw std::runtime_error("unbound_port: no free loopback port");
}

/// A fresh, empty temporary folder, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "duet-test-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// A whole file's bytes ("" if it cannot be read).
inline std::string read_file(const std::filesystem::path& path) {
  // Through the stream buffer in blocks (a file in /proc says size 0, so no size is asked): a byte at a
  // time through a stream iterator takes seconds for tens of MiB in the unoptimised sanitizer build.
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  if (in) bytes << in.rdbuf();
  return std::move(bytes).str();
}

/// `n` pseudo-random bytes, the same for the same `seed`: eight bytes a draw, so tens of MiB take a
/// moment even in the unoptimised sanitizer build.
inline std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::string s(n, '\0');
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t word = gen();
    std::memcpy(s.data() + i, &word, 8);
  }
  for (const std::uint64_t word = gen(); i < n; ++i) s[i] = static_cast<char>(word >> (8 * (i % 8)));
  return s;
}

/// Writes `bytes` to `path`, making its folders.
inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

/// The names in a folder.
inline std::size_t entries_in(const std::filesystem::path& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

/// A task that returns `value` after `ms` milliseconds (a timer: the order of several is deterministic).
inline Task<int> after(Loop& loop, int ms, int value) {
  co_await sleep(loop, std::chrono::milliseconds(ms));
  co_return value;
}

/// A task that throws std::runtime_error(`what`, or "failed after Nms") after `ms` milliseconds.
inline Task<int> fail_after(Loop& loop, int ms, std::string what = {}) {
  co_await sleep(loop, std::chrono::milliseconds(ms));
  throw std::runtime_error(what.empty() ? "failed after " + std::to_string(ms) + "ms" : what);
}

/// Awaits `awaitable`, which the test means to cancel: counts the cancellation (the awaiting frame's
/// cleanup has run by then) and rethrows it. Returns -1 if it ended some other way.
template <class Awaitable>
Task<int> until_cancelled(Awaitable awaitable, int& cancelled) {
  try {
    co_await std::move(awaitable);
  } catch (const Cancelled&) {
    ++cancelled;
    throw;
  }
  co_return -1;
}

/// What `fn` writes to this process's stderr (fd 2 goes to a temporary file meanwhile).
inline std::string stderr_of(const std::function<void()>& fn) {
  std::fflush(stderr);
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::tmpfile(), &std::fclose);
  std::FILE* tmp = file.get();
  if (!tmp) throw std::runtime_error("stderr_of: no temporary file");
  struct Restore {  // fd 2 comes back even if `fn` throws (a failed REQUIRE)
    int saved = ::dup(2);
    ~Restore() {
      std::fflush(stderr);
      ::dup2(saved, 2);
      ::close(saved);
    }
  };
  {
    Restore restore;
    ::dup2(::fileno(tmp), 2);
    fn();
  }
  std::rewind(tmp);
  std::string text;
  for (int c; (c = std::fgetc(tmp)) != EOF;) text += static_cast<char>(c);
  return text;
}

/// How a forked child running `fn` ended: whether it died (a signal, or a failing exit: the
/// sanitizers turn an abort into one) rather than returning, and what it wrote on stderr. For checks
/// that abort the process by design. The child must not need the parent's other threads (libuv's
/// pool among them).
struct Death {
  bool died = false;
  std::string said;
};
inline Death death_of(const std::function<void()>& fn) {
  std::fflush(nullptr);
  int err[2];
  // (close-on-exec: a process another thread starts meanwhile must not hold the write end open)
  if (::pipe2(err, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "death_of: pipe");
  const pid_t child = ::fork();
  if (child < 0) throw std::system_error(errno, std::generic_category(), "death_of: fork");
  if (child == 0) {
    // The test framework's handlers would report the signal as the parent's failure: the child dies
    // the default way instead, and says nothing on stdout.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) std::signal(sig, SIG_DFL);
    ::close(err[0]);
    ::dup2(err[1], STDERR_FILENO);
    if (const int null = ::open("/dev/null", O_WRONLY); null >= 0) ::dup2(null, STDOUT_FILENO);
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // a death by design leaves no core file
    ::alarm(30);                         // one that hangs instead dies too, without the message looked for
    try {
      fn();
    } catch (...) {
      std::_Exit(0);  // an exception is not the death looked for
    }
    std::_Exit(0);
  }
  ::close(err[1]);
  Death death;
  char buf[512];
  for (ssize_t n; (n = ::read(err[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    death.said.append(buf, static_cast<std::size_t>(n));
  }
  ::close(err[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  death.died = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
  return death;
}

}  // namespace duet::test
