#include "duet/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <list>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace duet {
namespace detail {

/// A child process's handle. It lives until the child has exited and nobody holds it any more, or
/// until the Loop's destruction (which kills and reaps a child still running, unless detached).
class ProcessImpl final : public OwnedHandle {
 public:
  using WaitCallback = UniqueFunction<void(std::error_code, ExitStatus)>;

  explicit ProcessImpl(LoopCore* core) noexcept : OwnedHandle(core, &process) {}

  /// uv_spawn with this object's exit callback; returns libuv's status. The handle is initialised
  /// (and this object adopts it) either way.
  int spawn(uv_process_options_t options) noexcept;
  /// Calls `cb` once the child has exited (later, if it already has).
  void wait(WaitCallback cb, std::stop_token token);
  /// The Process lets go while the child runs: waits are cancelled; freed once the child has exited.
  void let_go() noexcept;
  /// As `let_go`, and the child no longer keeps the loop running nor is killed with it.
  void detach() noexcept;

  bool pending() const noexcept override;

  uv_process_t process{};
  int pid = 0;
  std::optional<ExitStatus> exit;

 private:
  struct Waiter;
  struct StopWait {
    ProcessImpl* self;
    Waiter* waiter;
    void operator()() const noexcept { self->cancel_wait(waiter); }
  };
  struct Waiter {
    WaitCallback cb;  // empty once cancelled (the node is removed later, never inside its stop callback)
    OnLoopStop<StopWait> stop;
  };

  void before_close() noexcept override;
  void cancel_wait(Waiter* waiter) noexcept;
  void cancel_waits() noexcept;
  static void on_exit(uv_process_t* process, std::int64_t status, int signal) noexcept;

  std::list<Waiter> waiters_;
  bool let_go_ = false;
  bool detached_ = false;
};

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kThreadSanitizer = true;
#else
constexpr bool kThreadSanitizer = false;
#endif
#else
constexpr bool kThreadSanitizer = false;
#endif

/// Under ThreadSanitizer only: sets up the runtime's signal state for the calling thread before a
/// child exists to signal it. The runtime makes that state on a thread's first blocking call, and a
/// signal landing while it does so is lost (the handler makes a second state, which the first then
/// overwrites). A child that exits at once sends its SIGCHLD into that window when the loop's first
/// epoll_wait is its thread's first blocking call, and the loop never sees the exit (seen in 6 of
/// about 1,800 runs of a test with one child, and by the second run of one with eleven). A
/// zero-timeout poll is such a blocking call, and returns at once.
void prepare_thread_sanitizer() noexcept {
  if constexpr (kThreadSanitizer) {
    thread_local bool prepared = false;
    if (!prepared) {
      ::poll(nullptr, 0, 0);
      prepared = true;
    }
  }
}

}  // namespace

int ProcessImpl::spawn(uv_process_options_t options) noexcept {
  options.exit_cb = &on_exit;
  prepare_thread_sanitizer();
  const int rc = uv_spawn(core()->uv(), &process, &options);
  adopt(&process);  // uv_spawn initialised the handle even if it failed: it must be closed either way
  if (rc == 0) pid = process.pid;
  return rc;
}

bool ProcessImpl::pending() const noexcept {
  return std::any_of(waiters_.begin(), waiters_.end(), [](const Waiter& w) { return static_cast<bool>(w.cb); });
}

void ProcessImpl::wait(WaitCallback cb, std::stop_token token) {
  if (exit && !token.stop_requested()) {  // a stopped token is cancelled by its watch below
    core()->defer([cb = std::move(cb), status = *exit]() mutable { cb(std::error_code(), status); });
    return;
  }
  // Waits cancelled earlier left their nodes behind (a node is never removed inside its own stop
  // callback): none of those callbacks is running now.
  waiters_.remove_if([](const Waiter& w) { return !w.cb; });
  Waiter& w = waiters_.emplace_back();
  w.cb = std::move(cb);
  w.stop.watch(core(), std::move(token), StopWait{this, &w});  // may cancel at once
}

void ProcessImpl::cancel_wait(Waiter* waiter) noexcept {
  if (!waiter->cb) return;
  core()->defer([cb = std::move(waiter->cb)]() mutable { cb(uv_error(UV_ECANCELED), ExitStatus{}); });
  waiter->cb.reset();
}

void ProcessImpl::cancel_waits() noexcept {
  for (Waiter& w : waiters_) {
    w.stop.reset();
    cancel_wait(&w);
  }
  waiters_.clear();
}

void ProcessImpl::let_go() noexcept {
  cancel_waits();
  let_go_ = true;
  if (exit) close();
}

void ProcessImpl::detach() noexcept {
  cancel_waits();
  detached_ = true;
  uv_unref(handle());
  if (exit) close();
}

void ProcessImpl::before_close() noexcept {
  cancel_waits();
  if (exit || detached_ || pid <= 0) return;
  // Closing the handle while the child runs makes libuv forget it: it would never be reaped. This
  // happens only when the Loop is destroyed (a Process let go keeps its handle until the exit):
  // the child is killed and reaped here. SIGKILL cannot be caught, so the wait is short.
  uv_process_kill(&process, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

void ProcessImpl::on_exit(uv_process_t* process, std::int64_t status, int signal) noexcept {
  auto* self = of<ProcessImpl>(process);
  self->exit = ExitStatus{status, signal};
  LoopCore* core = self->core();
  if (core->closing()) return;
  if (self->let_go_ || self->detached_) return self->close();  // nobody holds it: freed once closed
  // A callback may destroy the Process (which closes this handle, freed on a later turn) or start
  // another wait: call back from a list of our own, no longer watching any stop token.
  std::list<Waiter> waiters = std::move(self->waiters_);
  self->waiters_.clear();
  for (Waiter& w : waiters) w.stop.reset();
  for (Waiter& w : waiters) {
    if (core->closing()) break;  // a callback destroyed the (host's) Loop: the others are dropped
    if (w.cb) core->invoke(w.cb, std::error_code(), *self->exit);
  }
}

}  // namespace detail

namespace {

// argv and envp as execvp takes them: pointers into `strings`, then a null pointer.
std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

uv_stdio_flags pipe_flags(std::size_t fd) noexcept {
  // The direction is the child's: it reads its stdin and writes its stdout and stderr. (On Unix libuv
  // makes every pipe a socketpair, which goes both ways whatever the flags.)
  int flags = UV_CREATE_PIPE;
  if (fd == 0)
    flags |= UV_READABLE_PIPE;
  else if (fd <= 2)
    flags |= UV_WRITABLE_PIPE;
  else
    flags |= UV_READABLE_PIPE | UV_WRITABLE_PIPE;
  return static_cast<uv_stdio_flags>(flags);
}

}  // namespace

Process spawn(Loop& loop, const ProcessOptions& options) {
  if (options.file.empty())
    throw std::system_error(make_error_code(errc::invalid_argument), "duet::spawn: no program given");
  detail::LoopCore& core = loop.core();

  std::vector<std::string> args = options.args.empty() ? std::vector<std::string>{options.file} : options.args;
  std::vector<char*> argv = c_strings(args);
  std::vector<std::string> env = options.env.value_or(std::vector<std::string>());
  std::vector<char*> envp = c_strings(env);

  // An ignored descriptor beyond stderr: libuv leaves the child's as it is, which hands over this
  // process's descriptor of that number unless it is close-on-exec. /dev/null goes in its place when
  // this process has the number open. (Not otherwise: libuv's own pipe for reporting a failed exec
  // takes free numbers, and /dev/null over it would make the failure look like a start.)
  std::vector<bool> ours_open(options.stdio.size());
  struct DevNull {
    int fd = -1;
    ~DevNull() {
      if (fd >= 0) ::close(fd);
    }
  } dev_null;
  for (std::size_t i = 3; i < options.stdio.size(); ++i) {
    if (options.stdio[i].kind() != Stdio::Kind::ignore || ::fcntl(static_cast<int>(i), F_GETFD) == -1) continue;
    ours_open[i] = true;
    if (dev_null.fd < 0) dev_null.fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (dev_null.fd < 0) throw std::system_error(uv_error(-errno), "duet::spawn: cannot open /dev/null");
  }

  // The pipes first: if anything below throws or fails, they close as they go.
  std::vector<detail::HandlePtr<detail::StreamImpl>> pipes(options.stdio.size());
  std::vector<uv_stdio_container_t> stdio(options.stdio.size());
  for (std::size_t i = 0; i < options.stdio.size(); ++i) {
    const Stdio& slot = options.stdio[i];
    switch (slot.kind()) {
      case Stdio::Kind::inherit:
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = static_cast<int>(i);
        break;
      case Stdio::Kind::ignore:  // libuv gives 0, 1 and 2 /dev/null itself
        stdio[i].flags = ours_open[i] ? UV_INHERIT_FD : UV_IGNORE;
        stdio[i].data.fd = dev_null.fd;
        break;
      case Stdio::Kind::fd:
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = slot.descriptor();
        break;
      case Stdio::Kind::pipe:
        pipes[i] = detail::make_pipe(&core);
        stdio[i].flags = pipe_flags(i);
        stdio[i].data.stream = pipes[i]->stream();
        break;
    }
  }

  uv_process_options_t uv_options{};
  uv_options.file = options.file.c_str();
  uv_options.args = argv.data();
  uv_options.env = options.env ? envp.data() : nullptr;
  uv_options.cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  uv_options.stdio_count = static_cast<int>(stdio.size());
  uv_options.stdio = stdio.data();

  detail::HandlePtr<detail::ProcessImpl> impl(core.make<detail::ProcessImpl>(&core));
  if (int rc = impl->spawn(uv_options); rc < 0) {
    impl.reset();  // closes the handle; no child exists
    std::string what = "duet::spawn: cannot run " + options.file;
    if (!options.cwd.empty()) what += " in " + options.cwd;
    throw std::system_error(uv_error(rc), what);
  }

  Process p;
  p.pid_ = impl->pid;
  p.impl_ = std::move(impl);
  p.pipes_.reserve(pipes.size());
  for (auto& pipe : pipes) p.pipes_.push_back(detail::pipe_stream(std::move(pipe)));
  return p;
}

void kill(int pid, int signum) {
  if (int rc = uv_kill(pid, signum); rc < 0)
    throw std::system_error(uv_error(rc), "duet::kill(" + std::to_string(pid) + ", " + std::to_string(signum) + ")");
}

// ---- Process --------------------------------------------------------------------------------------------

Process::Process(Process&& other) noexcept
    : impl_(std::move(other.impl_)), pipes_(std::move(other.pipes_)), pid_(std::exchange(other.pid_, 0)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    let_go();
    impl_ = std::move(other.impl_);
    pipes_ = std::move(other.pipes_);
    pid_ = std::exchange(other.pid_, 0);
  }
  return *this;
}

Process::~Process() { let_go(); }

void Process::let_go() noexcept {
  if (!impl_) return;
  if (impl_->exit) return impl_.reset();  // nothing runs: close the handle
  impl_.release()->let_go();
}

bool Process::running() const noexcept { return impl_ && !impl_->exit; }

std::optional<ExitStatus> Process::exit_status() const noexcept { return impl_ ? impl_->exit : std::nullopt; }

uv_process_t* Process::native() const noexcept { return impl_ ? &impl_->process : nullptr; }

void Process::wait_impl(detail::ProcessImpl* impl, WaitCallback cb, std::stop_token token) {
  impl->wait(std::move(cb), std::move(token));
}

detail::ProcessImpl* Process::open_impl(const char* what) const {
  if (!impl_)
    throw std::system_error(make_error_code(errc::not_connected),
                            std::string("duet::Process: ") + what + " on a closed process");
  return impl_.get();
}

bool Process::kill(int signum) {
  detail::ProcessImpl* impl = open_impl("kill");
  if (impl->exit) return false;
  if (int rc = uv_process_kill(&impl->process, signum); rc < 0)
    throw std::system_error(uv_error(rc), "duet::Process::kill(" + std::to_string(signum) + ")");
  return true;
}

void Process::detach() noexcept {
  if (impl_) impl_.release()->detach();
}

PipeStream& Process::pipe(int fd) {
  if (fd < 0 || static_cast<std::size_t>(fd) >= pipes_.size())
    throw std::out_of_range("duet::Process::pipe(" + std::to_string(fd) + "): no such descriptor in its stdio");
  return pipes_[static_cast<std::size_t>(fd)];
}

}  // namespace duet
