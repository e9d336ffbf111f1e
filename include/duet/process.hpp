// duet/process.hpp — child processes: start one, talk to it through pipes, learn how it ended.
//
//     duet::Process child = duet::spawn(loop, {.file = "sh", .args = {"sh", "-c", "ls -l /"},
//                                              .stdio = {duet::Stdio::ignore(), duet::Stdio::pipe(),
//                                                        duet::Stdio::inherit()}});
//     child.pipe(1).read_start(...);                                   // its stdout, a PipeStream
//     child.wait([](std::error_code ec, duet::ExitStatus st) { ... });  // st.code, st.signal
//     duet::ExitStatus st = co_await child.wait();                     // the coroutine face
//
// `spawn(loop, options)` starts `options.file` (a name without '/' is looked up in PATH, as execvp
// does) with `options.args` as its argv (argv[0] included; empty: just the file), `options.env` as
// its whole environment ("NAME=value" strings; unset: this process's), in `options.cwd` (empty: this
// process's). Each entry of `options.stdio` says what the child's descriptor of that number is:
// `Stdio::inherit()` (this process's descriptor of the same number), `Stdio::ignore()` (/dev/null,
// so a descriptor of this process with that number never reaches the child), `Stdio::fd(n)` (a copy of this process's
// descriptor n) or `Stdio::pipe()` (a new pipe whose parent end is `process.pipe(i)`, a `PipeStream`: write to the
// child's stdin, read its stdout, with backpressure as on any stream; `shutdown()` or `close()` on the
// stdin pipe is the end of its input). The default is {inherit, inherit, inherit}.
//
// Failing to start is reported at once: `spawn` throws `std::system_error` whose code is what the
// system said (UV_ENOENT for a program or a cwd that does not exist, UV_EACCES for a file that is not
// executable, UV_EMFILE, ...) and whose `what()` names the program. (libuv learns of a failed exec
// before `uv_spawn` returns, so there is nothing to call back: no Process exists.) An empty `file` is
// `duet::errc::invalid_argument`.
//
// How it ended: `wait(cb)` calls `cb(std::error_code, ExitStatus{code, signal})` once the child has
// exited (on a later turn if it already has); `code` is its exit status, `signal` the signal that
// killed it (then `code` is 0). Any number of waits may be pending; each is cancellable through its
// callback's stop token (UV_ECANCELED; the child is not touched). `kill(signum)` sends a signal
// (uv_process_kill) and returns false if the child has already exited (the pid may belong to another
// process by then, so nothing is sent); `duet::kill(pid, signum)` signals any process (uv_kill).
//
// The Process object and the child's lifetime (a running child keeps `Loop::run()` going, as any
// active handle does, whether or not anyone waits for it):
// - Destroying (or assigning over) a Process whose child still runs does not stop the child: it
//   runs on, duet still reaps it when it exits (no zombie), and `Loop::run()` keeps running until it
//   has; pending waits get UV_ECANCELED. Its pipes close with the Process (move them out first to
//   keep them).
// - `detach()` lets the child go for good: pending waits get UV_ECANCELED, it no longer keeps
//   `Loop::run()` going, it is reaped if it exits while the Loop lives, and the Loop's destruction
//   leaves it running. If it exits after that, nothing reaps it: it stays a zombie until this
//   program reaps it (`waitpid`) or exits.
// - Destroying the Loop while a child (not detached) still runs kills it with SIGKILL and reaps it
//   before the destructor returns (waiting the moment the kernel takes to end it): no child outlives
//   its Loop by accident, and none is left a zombie. The Process becomes inert: `is_open()` is false,
//   `wait` and `kill` throw `std::system_error` with `duet::errc::not_connected`, `pid()` still says
//   which process it was; its pipes are closed as every stream is.
// - A default-constructed, moved-from or detached Process is closed in the same way.
//
// Cost: one `uv_process_t` plus a few pointers, and one `uv_pipe_t` per pipe; a pending wait is one
// small heap node. Starting a child is a fork and an exec (libuv 1.44 forks): milliseconds for a
// large parent. libuv catches SIGCHLD for the whole process while any child started by it runs.
#pragma once

#include <uv.h>

#include <csignal>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "duet/awaitable.hpp"
#include "duet/detail/handle.hpp"
#include "duet/loop.hpp"
#include "duet/pipe.hpp"

namespace duet {

/// How a child process ended.
struct ExitStatus {
  std::int64_t code = 0;  ///< its exit status (0 when a signal ended it)
  int signal = 0;         ///< the signal that ended it, or 0
  bool success() const noexcept { return code == 0 && signal == 0; }
  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

/// What one of a child's descriptors (0 stdin, 1 stdout, 2 stderr, 3...) is connected to.
class Stdio {
 public:
  enum class Kind { inherit, ignore, pipe, fd };
  /// This process's descriptor of the same number.
  static Stdio inherit() noexcept { return Stdio(Kind::inherit, -1); }
  /// /dev/null (this process's descriptor of the same number, if any, does not reach the child).
  static Stdio ignore() noexcept { return Stdio(Kind::ignore, -1); }
  /// A new pipe; the parent's end is `Process::pipe(n)`.
  static Stdio pipe() noexcept { return Stdio(Kind::pipe, -1); }
  /// A copy of this process's descriptor `fd` (which stays this process's to close).
  static Stdio fd(int fd) noexcept { return Stdio(Kind::fd, fd); }

  Kind kind() const noexcept { return kind_; }
  int descriptor() const noexcept { return fd_; }

 private:
  Stdio(Kind kind, int fd) noexcept : kind_(kind), fd_(fd) {}
  Kind kind_;
  int fd_;
};

/// What to run, and how (see the top of this file).
struct ProcessOptions {
  // (Each member has an initializer, so that designated initializers may leave any of them out.)
  std::string file{};                             ///< the program (searched in PATH when it has no '/')
  std::vector<std::string> args{};                ///< argv, argv[0] included; empty: {file}
  std::optional<std::vector<std::string>> env{};  ///< "NAME=value" each; unset: this process's environment
  std::string cwd{};                              ///< the child's working directory; empty: this process's
  std::vector<Stdio> stdio{Stdio::inherit(), Stdio::inherit(), Stdio::inherit()};  ///< descriptors 0, 1, 2, ...
};

class Process;

namespace detail {
class ProcessImpl;  // src/process.cpp
}  // namespace detail

/// Starts a child process (see the top of this file). Throws `std::system_error` if it cannot start.
Process spawn(Loop& loop, const ProcessOptions& options);

/// Sends `signum` to the process `pid` (uv_kill). Throws `std::system_error` (UV_ESRCH: no such
/// process, UV_EPERM, UV_EINVAL).
void kill(int pid, int signum);

/// A child process started by `spawn`. Loop-thread only. Move-only.
class Process {
 public:
  Process() noexcept = default;
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  /// Lets a running child run on (see the top of this file); closes the pipes.
  ~Process();

  /// The child's process id (0 for a default-constructed or moved-from Process).
  int pid() const noexcept { return pid_; }
  /// True until the Process is detached, moved from or its Loop destroyed.
  bool is_open() const noexcept { return static_cast<bool>(impl_); }
  /// True while the child has not exited (as far as the loop has seen).
  bool running() const noexcept;
  /// How the child ended, once the loop has seen it exit.
  std::optional<ExitStatus> exit_status() const noexcept;

  /// Calls `cb(std::error_code, ExitStatus)` once the child has exited. Cancellable.
  template <class Callback>
  void wait(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    detail::ProcessImpl* impl = open_impl("wait");  // a closed Process throws with `cb` untouched
    wait_impl(impl, WaitCallback(std::forward<Callback>(cb)), std::move(token));
  }
  /// Coroutine face: `duet::ExitStatus st = co_await process.wait();`
  template <class = void>
  [[nodiscard]] auto wait() {
    return awaitable<ExitStatus>([this](auto cb) { wait(std::move(cb)); });
  }

  /// Sends `signum` to the child (uv_process_kill). Returns false, sending nothing, if it has exited.
  /// Throws `std::system_error` (UV_EINVAL for a bad signal number; `not_connected` if closed).
  bool kill(int signum = SIGTERM);

  /// Lets the child go for good (see the top of this file); the Process is closed afterwards, but its
  /// pipes stay open.
  void detach() noexcept;

  /// The parent's end of the pipe on the child's descriptor `fd` (a closed PipeStream if that
  /// descriptor is not a pipe, or once moved out). Throws `std::out_of_range` beyond `options.stdio`.
  PipeStream& pipe(int fd);

  /// The libuv handle, or null when closed.
  uv_process_t* native() const noexcept;

 private:
  friend Process spawn(Loop& loop, const ProcessOptions& options);
  using WaitCallback = detail::UniqueFunction<void(std::error_code, ExitStatus)>;
  detail::ProcessImpl* open_impl(const char* what) const;
  static void wait_impl(detail::ProcessImpl* impl, WaitCallback cb, std::stop_token token);
  void let_go() noexcept;

  detail::HandlePtr<detail::ProcessImpl> impl_;
  std::vector<PipeStream> pipes_;
  int pid_ = 0;
};

}  // namespace duet
