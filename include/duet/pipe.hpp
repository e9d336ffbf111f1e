// duet/pipe.hpp — local byte streams: Unix-domain sockets by path, and pipes by file descriptor.
//
//     duet::connect(loop, "/run/app.sock", [](std::error_code ec, duet::PipeStream s) { ... });
//     duet::PipeStream s = co_await duet::connect(loop, "/run/app.sock");   // the coroutine face
//
//     duet::PipeListener server(loop, "/run/app.sock");    // binds, listens; accept() as TcpListener
//
// A `PipeStream` is a `Stream` (stream.hpp: read, write with backpressure, try_write, shutdown, close,
// their failure modes and what happens when the loop is destroyed) on a libuv `uv_pipe_t`: a
// Unix-domain stream socket, or any pipe-like descriptor given to `PipeStream::open` (one end of a
// `socketpair`, a `pipe()` end, an inherited descriptor). The standard streams of a child process
// started with `Stdio::pipe()` come back as PipeStreams too (process.hpp).
//
// Connecting: `connect(loop, path, cb)` calls `cb(std::error_code, PipeStream)`: UV_ENOENT when
// nothing is at `path`, UV_ECONNREFUSED when a socket file is there but nobody listens on it,
// UV_EACCES, UV_ENAMETOOLONG for a path longer than a socket address holds (107 bytes on Linux:
// libuv would cut it silently, duet refuses it), UV_ECANCELED when cancelled (the callback's stop
// token, see cancellation.hpp), UV_EAGAIN when the listener's backlog is full (a local connect does
// not wait for room). There is no timeout of duet's own: a local connect succeeds or fails at once.
//
// Listening: `PipeListener(loop, path)` creates the socket file and listens (it throws
// `std::system_error` naming the path: UV_EADDRINUSE when the file exists — a stale socket file of a
// dead server must be removed first —, UV_EACCES, UV_ENAMETOOLONG). `accept` takes one connection at a
// time, as `TcpListener::accept` does. `chmod` lets every user read and/or write the socket file
// (libuv only adds permissions). Closing the listener removes its socket file (libuv unlinks it).
//
// Descriptors: `PipeStream::open(loop, fd)` takes `fd` over: the stream closes it when it closes.
//
// Closed objects: starting an operation on a closed (or default-constructed, or moved-from)
// `PipeStream` or `PipeListener` throws `std::system_error` with `duet::errc::not_connected`. Loop
// destruction closes both, as it closes a TCP stream: they become inert (see
// docs/loop-and-operations.md, "What may outlive its Loop").
//
// Cost: a stream is one `uv_pipe_t` plus a few pointers, as a TCP stream; a connect is one pooled
// object holding the request.
#pragma once

#include <sys/un.h>

#include <concepts>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/loop.hpp"
#include "duet/stream.hpp"

namespace duet {

class PipeStream;

namespace detail {
template <class Cb>
class PipeConnectOp;

/// A new, unconnected pipe on `core`. Throws on failure.
HandlePtr<StreamImpl> make_pipe(LoopCore* core);
uv_pipe_t* pipe_handle(StreamImpl* impl) noexcept;
/// The longest path a Unix-domain socket address holds (without its terminating NUL).
inline constexpr std::size_t kMaxPipePath = sizeof(sockaddr_un::sun_path) - 1;
/// UV_ENAMETOOLONG for a path a socket address cannot hold, UV_EINVAL for an empty one, else 0.
int check_pipe_path(const std::string& path) noexcept;
PipeStream pipe_stream(HandlePtr<StreamImpl> impl) noexcept;
}  // namespace detail

class PipeStream : public Stream {
 public:
  PipeStream() noexcept = default;
  PipeStream(PipeStream&&) noexcept = default;
  PipeStream& operator=(PipeStream&&) noexcept = default;

  /// Adopts `fd`, an open pipe-like descriptor (a socketpair or pipe end); the stream owns it from
  /// now on and closes it. Throws `std::system_error` if libuv refuses it (UV_EBADF, UV_EEXIST when
  /// another handle on this loop already has it).
  static PipeStream open(Loop& loop, uv_file fd);

  /// The socket's own path ("" for a connecting client or a socketpair end). Throws if closed.
  std::string local_name() const;
  /// The path of the socket it is connected to ("" for a socketpair end). Throws if closed.
  std::string peer_name() const;

  /// The libuv handle, or null when closed.
  uv_pipe_t* native() const noexcept;

 private:
  friend PipeStream detail::pipe_stream(detail::HandlePtr<detail::StreamImpl> impl) noexcept;
  explicit PipeStream(detail::HandlePtr<detail::StreamImpl> impl) noexcept : Stream(std::move(impl)) {}
};

namespace detail {

/// A pipe connect in flight: the uv_connect_t and the new pipe. Freed once the connect callback ran.
template <class Cb>
class PipeConnectOp final : public HandleOwner, public StopWatch<PipeConnectOp<Cb>> {
 public:
  PipeConnectOp(LoopCore* core, Cb&& cb) : HandleOwner(core), cb_(std::move(cb)) { req_.data = this; }

  void start(const std::string& path) {
    if (int rc = check_pipe_path(path); rc < 0) return fail(rc);
    try {
      pipe_ = make_pipe(core());
    } catch (...) {
      core()->destroy(this);
      throw;
    }
    uv_pipe_connect(&req_, pipe_handle(pipe_.get()), path.c_str(), &on_connect);  // calls back later
    hold();                                                                      // until on_connect
    this->watch(core(), stop_token_of(cb_));
  }

  // Closing the pipe makes libuv call on_connect with UV_ECANCELED.
  void on_stop() noexcept {
    if (!connected_) pipe_.reset();
  }
  // The pipe is a resource of its own: the loop closes it, and on_connect then finishes this object.
  void abandon() noexcept override {}
  bool pending() const noexcept override { return !connected_; }

 private:
  void fail(int status) {
    Cb cb = std::move(cb_);
    LoopCore* core = this->core();
    core->destroy(this);
    fail_later<PipeStream>(*core, std::move(cb), uv_error(status));
  }

  static void on_connect(uv_connect_t* req, int status) noexcept {
    auto* self = static_cast<PipeConnectOp*>(req->data);
    self->connected_ = true;
    LoopCore* core = self->core();
    if (core->closing()) return self->release();
    const std::error_code ec = self->stop_requested() ? uv_error(UV_ECANCELED) : uv_error(status);
    self->unwatch();
    Cb cb = std::move(self->cb_);
    HandlePtr<StreamImpl> pipe = std::move(self->pipe_);
    self->release();
    if (ec) {
      pipe.reset();
      return core->invoke(cb, ec, PipeStream());
    }
    core->invoke(cb, ec, pipe_stream(std::move(pipe)));
  }

  uv_connect_t req_{};
  Cb cb_;
  HandlePtr<StreamImpl> pipe_;
  bool connected_ = false;
};

}  // namespace detail

/// Connects to the Unix-domain socket at `path`; calls `cb(std::error_code, PipeStream)`.
template <class Callback>
requires std::invocable<Callback&, std::error_code, PipeStream>
void connect(Loop& loop, const std::string& path, Callback&& cb) {
  using Op = detail::PipeConnectOp<std::decay_t<Callback>>;
  auto& core = loop.core();
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)));
  op->start(path);
}

/// Coroutine face: `duet::PipeStream s = co_await duet::connect(loop, path);` — throws
/// `std::system_error` (UV_ENOENT, UV_ECONNREFUSED, ...) or `duet::Cancelled`.
template <class = void>
[[nodiscard]] inline auto connect(Loop& loop, std::string path) {
  return awaitable<PipeStream>(
      [&loop, path = std::move(path)](auto cb) { duet::connect(loop, path, std::move(cb)); });
}

/// Who may use a listener's socket file besides its owner (libuv's uv_pipe_chmod flags).
enum class PipeAccess { readable = UV_READABLE, writable = UV_WRITABLE, read_write = UV_READABLE | UV_WRITABLE };

/// A listening Unix-domain socket. Loop-thread only. Move-only; the destructor closes it (and libuv
/// removes its socket file).
class PipeListener {
 public:
  PipeListener() noexcept = default;
  /// Creates the socket file `path` and listens on it. Throws `std::system_error` naming `path`
  /// (UV_EADDRINUSE, UV_EACCES, UV_ENAMETOOLONG, ...) when that fails.
  PipeListener(Loop& loop, const std::string& path, int backlog = 511);

  /// Takes the next incoming connection: `cb(std::error_code, PipeStream)`. One accept at a time
  /// (a second gets `duet::errc::already_reading`); cancellable; never calls back inside this call.
  template <class Callback>
  void accept(Callback&& cb) {
    if (!impl_) detail::throw_closed("accept");
    std::stop_token token = stop_token_of(cb);
    impl_->accept([cb = std::decay_t<Callback>(std::forward<Callback>(cb))](
                      std::error_code ec, detail::HandlePtr<detail::StreamImpl> s) mutable {
      cb(ec, detail::pipe_stream(std::move(s)));
    },
                  std::move(token));
  }

  /// Coroutine face: `duet::PipeStream client = co_await listener.accept();`
  template <class = void>
  [[nodiscard]] auto accept() {
    return awaitable<PipeStream>([this](auto cb) { accept(std::move(cb)); });
  }

  /// The path of the socket file. Throws `not_connected` if closed.
  std::string local_name() const;
  /// Lets every user read and/or write the socket file (permissions are only added). Throws
  /// `std::system_error` on failure, `not_connected` if closed.
  void chmod(PipeAccess access);

  bool is_open() const noexcept { return static_cast<bool>(impl_); }
  /// Stops listening and removes the socket file; a pending accept gets UV_ECANCELED. Idempotent.
  void close() noexcept { impl_.reset(); }

 private:
  detail::HandlePtr<detail::ListenerImpl> impl_;
};

}  // namespace duet
