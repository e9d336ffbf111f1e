// Starts a real server (Python, Node.js, nginx, flags_server) as a child process for the duration of a
// test. Its stdout is read through `read_line`; its stderr goes to the test's, or to a file.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace duet::test {

/// Forks and runs `argv` with its stdout on `out_fd` and its stderr on `err_fd` (-1: left as ours);
/// returns the child's pid.
inline pid_t start_process(std::vector<std::string>& argv, int out_fd, int err_fd, std::vector<int> close_in_child) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    ::dup2(out_fd, 1);
    if (err_fd >= 0) ::dup2(err_fd, 2);
    for (int fd : close_in_child) ::close(fd);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::_Exit(127);
  }
  return pid;
}

class PeerProcess {
 public:
  /// Runs `argv`. If `reads_port`, waits (up to 10 s) for the port number on the first line of its
  /// stdout; otherwise the caller knows the port.
  PeerProcess(std::vector<std::string> argv, bool reads_port, const std::string& stderr_file = "") {
    int out[2];
    if (::pipe(out) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    const int err = stderr_file.empty() ? -1 : ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_ = start_process(argv, out[1], err, {out[0], out[1], err});
    if (err >= 0) ::close(err);
    ::close(out[1]);
    out_ = out[0];
    if (reads_port) port_ = static_cast<std::uint16_t>(std::stoi(read_line(std::chrono::seconds(10))));
  }
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;
  ~PeerProcess() {
    if (pid_ > 0) stop(SIGTERM);
    ::close(out_);
  }

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  /// Sends `signum` and waits for the process to end; returns its wait status (see WIFEXITED).
  int stop(int signum) {
    ::kill(pid_, signum);
    return wait();
  }

  /// Waits for the process to end by itself; returns its wait status.
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  /// The next line the process prints on stdout; throws if none comes within `limit`.
  std::string read_line(std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{out_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        throw std::runtime_error("the peer did not print a line in time");
      char c;
      if (::read(out_, &c, 1) != 1) throw std::runtime_error("the peer exited before printing a line");
      if (c == '\n') return line;
      line.push_back(c);
    }
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::uint16_t port_ = 0;
};

/// What a program that ran to its end printed, and how it ended.
struct Finished {
  int exit_code = -1;  ///< -1 if killed by a signal
  std::string out, err;
};

/// Runs `argv` to its end, collecting its stdout and stderr (the test's limit bounds the wait).
inline Finished run_to_end(std::vector<std::string> argv) {
  int out[2], err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  const pid_t pid = start_process(argv, out[1], err[1], {out[0], out[1], err[0], err[1]});
  ::close(out[1]);
  ::close(err[1]);
  Finished done;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* into[2] = {&done.out, &done.err};
  int open = 2;
  while (open > 0 && ::poll(fds, 2, -1) > 0) {
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        into[i]->append(buf, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  done.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return done;
}

}  // namespace duet::test
