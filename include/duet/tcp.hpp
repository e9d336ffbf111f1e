// duet/tcp.hpp — TCP: connect, read, write, shutdown, close; `TcpListener` for servers.
//
//     duet::connect(loop, duet::Endpoint::loopback(8000), 5s, [](std::error_code ec, duet::TcpStream s) {
//       s.write("GET / HTTP/1.0\r\n\r\n", [](std::error_code ec) { ... });
//     });
//
// Connecting: `connect(loop, endpoint, [timeout,] cb)` calls `cb(std::error_code, TcpStream)`:
// UV_ECONNREFUSED, UV_ETIMEDOUT when `timeout` passes first, UV_ECANCELED when cancelled (see
// cancellation.hpp), or a connected stream.
//
// Reading, two ways (one at a time per stream; a second reader gets `duet::errc::already_reading`):
// - `read(buffer, cb)` reads once into the caller's buffer and calls `cb(std::error_code, std::size_t n)`;
//   n == 0 means the peer finished sending (end of stream). The buffer must stay valid until the
//   callback runs or the read is cancelled; nothing is written to it after either. Cancellable.
// - `read_start(cb)` calls `cb(std::error_code, std::span<const char> chunk)` for every chunk as it
//   arrives, until `read_stop()`, end of stream (an empty chunk) or an error. The chunk lives in a
//   buffer shared by the loop: it is valid only during the callback. `read_stop()` is backpressure:
//   the kernel buffers, then the peer's sends block, until `read_start` is called again.
//
// Writing: `write(bytes, cb)` takes the bytes by value (`std::string`) and owns them until the write
// completes, so the caller can never free what is being sent. Writes go out in order. Closing the stream
// completes pending writes with UV_ECANCELED.
//
// Cancelling a write or a shutdown (its callback's stop token, see cancellation.hpp; or the task
// awaiting it) detaches the caller: the callback gets UV_ECANCELED on the next turn of the loop, and
// the awaiting coroutine throws `duet::Cancelled`, even if the peer never reads. The request itself
// cannot be recalled (part of the bytes may already be in the kernel): it stays queued on the stream,
// owning its bytes, and the stream goes on sending them. To drop them, close the stream.
//
// Ending: `shutdown(cb)` sends FIN after pending writes; `close()` closes at once (a pending one-shot
// read gets UV_ECANCELED). The destructor closes. The `uv_tcp_t` lives until its close callback.
//
// Errors: UV_ECONNRESET, UV_EPIPE, UV_ENOTCONN and friends, as libuv reports them. Starting an
// operation on a closed or default-constructed stream is a programming error: it throws
// `std::system_error` with `duet::errc::not_connected` (the callback is not called).
//
// Loop destruction: the stream (or listener) is closed with its loop and becomes inert, as if
// `close()` had been called: it may be destroyed, moved or closed after its Loop; starting an
// operation on it throws `not_connected`.
//
// Cost: a stream is one `uv_tcp_t` plus a few pointers (no per-stream read buffer); each write is one
// pooled request object.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/endpoint.hpp"
#include "duet/loop.hpp"
#include "duet/timer.hpp"

namespace duet {

namespace detail {
struct TcpImpl;
struct ListenerImpl;
template <class Cb>
class ConnectOp;
}  // namespace detail

class TcpStream {
 public:
  TcpStream() noexcept = default;
  TcpStream(TcpStream&& other) noexcept;
  TcpStream& operator=(TcpStream&& other) noexcept;
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;
  ~TcpStream();

  /// True until `close()` (or until the loop is destroyed).
  bool is_open() const noexcept { return impl_ != nullptr; }

  /// Reads once into `buffer`; calls `cb(std::error_code, std::size_t)` (0 bytes: end of stream).
  template <class Callback>
  void read(std::span<char> buffer, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    read_once(buffer, detail::UniqueFunction<void(std::error_code, std::size_t)>(std::forward<Callback>(cb)),
              std::move(token));
  }

  /// Coroutine face: `std::size_t n = co_await stream.read(buffer);` (0: end of stream).
  [[nodiscard]] auto read(std::span<char> buffer) {
    return awaitable<std::size_t>([this, buffer](auto cb) { read(buffer, std::move(cb)); });
  }

  /// Calls `cb(std::error_code, std::span<const char>)` for each chunk until stopped (see above).
  template <class Callback>
  void read_start(Callback&& cb) {
    read_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>)>(std::forward<Callback>(cb)));
  }
  /// Pauses `read_start` delivery (backpressure). Safe to call when not reading.
  void read_stop() noexcept;

  /// Sends `bytes`; calls `cb(std::error_code)` once they are handed to the kernel.
  template <class Callback>
  void write(std::string bytes, Callback&& cb);

  /// Coroutine face: `co_await stream.write(std::move(bytes));`
  [[nodiscard]] auto write(std::string bytes) {
    return awaitable<void>(
        [this, bytes = std::move(bytes)](auto cb) mutable { write(std::move(bytes), std::move(cb)); });
  }

  /// Half-closes after pending writes; calls `cb(std::error_code)`.
  template <class Callback>
  void shutdown(Callback&& cb);
  /// Coroutine face: `co_await stream.shutdown();`
  [[nodiscard]] auto shutdown() {
    return awaitable<void>([this](auto cb) { shutdown(std::move(cb)); });
  }

  /// Closes the connection now. Idempotent.
  void close() noexcept;

  Endpoint local_endpoint() const;   ///< throws std::system_error if closed
  Endpoint remote_endpoint() const;  ///< throws std::system_error if closed
  /// Disables Nagle's algorithm (on by default for duet streams).
  void set_nodelay(bool enable);

  /// The libuv handle, or null when closed.
  uv_tcp_t* native() noexcept;

 private:
  friend struct detail::TcpImpl;
  friend struct detail::ListenerImpl;
  template <class Cb>
  friend class detail::ConnectOp;
  explicit TcpStream(detail::TcpImpl* impl) noexcept;

  void read_once(std::span<char> buffer, detail::UniqueFunction<void(std::error_code, std::size_t)> cb,
                 std::stop_token token);
  void read_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>)> cb);
  detail::LoopCore* core_if_open() const noexcept;
  uv_stream_t* stream_if_open() noexcept;

  detail::TcpImpl* impl_ = nullptr;
};

namespace detail {

/// Creates a TcpImpl (an initialised, not yet connected uv_tcp_t) on `core`. Throws on failure.
TcpImpl* make_tcp(LoopCore* core);
uv_tcp_t* tcp_handle(TcpImpl* impl) noexcept;
void close_tcp(TcpImpl* impl) noexcept;

/// A write (`uv_write_t`, owning the bytes it sends) or a shutdown (`uv_shutdown_t`) on a stream: a
/// request that completes once with a status. libuv cannot recall either: closing the stream completes
/// them with UV_ECANCELED, which is also how the loop's destruction ends them. A stop request detaches
/// the callback instead (UV_ECANCELED on the next turn); the request completes later, silently.
template <class Req, class Cb>
class StreamOp final : public Resource, public StopWatch<StreamOp<Req, Cb>> {
 public:
  Req req{};
  std::string bytes;  // a write's bytes, owned until it completes

  StreamOp(LoopCore* core, Cb&& cb, std::string b = {}) : bytes(std::move(b)), core_(core), cb_(std::move(cb)) {
    req.data = this;
  }
  void abandon() noexcept override {}
  bool pending() const noexcept override { return !detached_; }

  /// Call once libuv has taken the request.
  void watch_stop() { this->watch(core_, stop_token_of(cb_)); }

  // Stop requested: the caller hears UV_ECANCELED from the loop; the request goes on without it.
  void on_stop() noexcept {
    detached_ = true;
    fail_later<void>(*core_, std::move(cb_), uv_error(UV_ECANCELED));
  }

  static void on_done(Req* req, int status) noexcept {
    auto* self = static_cast<StreamOp*>(req->data);
    LoopCore* core = self->core_;
    self->unwatch();
    if (core->closing || self->detached_) return core->destroy(self);
    Cb cb = std::move(self->cb_);
    core->destroy(self);
    core->invoke(cb, uv_error(status));
  }

  /// libuv refused the request: report it from the loop, as a completion.
  void fail(int status) noexcept {
    Cb cb = std::move(cb_);
    LoopCore* core = core_;
    core->destroy(this);
    fail_later<void>(*core, std::move(cb), status < 0 ? uv_error(status) : make_error_code(errc::not_connected));
  }

 private:
  LoopCore* core_;
  Cb cb_;
  bool detached_ = false;
};

/// A connect in flight: the uv_connect_t, the new stream and the optional timeout timer. Freed once
/// both the connect callback has run and the timer (if any) is closed.
template <class Cb>
class ConnectOp final : public Resource, public StopWatch<ConnectOp<Cb>> {
 public:
  ConnectOp(LoopCore* core, Cb&& cb) : core_(core), cb_(std::move(cb)) { req_.data = this; }

  void start(const Endpoint& to, std::uint64_t timeout_ms) {
    try {
      tcp_ = make_tcp(core_);
    } catch (...) {
      core_->destroy(this);
      throw;
    }
    if (int rc = uv_tcp_connect(&req_, tcp_handle(tcp_), to.data(), &on_connect); rc < 0) {
      close_tcp(tcp_);
      Cb cb = std::move(cb_);
      LoopCore* core = core_;
      core->destroy(this);
      return fail_later<TcpStream>(*core, std::move(cb), uv_error(rc));
    }
    outstanding_ = 1;
    if (timeout_ms > 0) {
      uv_timer_init(core_->uv, &timer_);
      timer_.data = this;
      uv_timer_start(&timer_, &on_timeout, timeout_ms, 0);
      timer_open_ = true;
      ++outstanding_;
    }
    this->watch(core_, stop_token_of(cb_));
  }

  // Closing the socket makes libuv call on_connect with UV_ECANCELED.
  void on_stop() noexcept {
    if (!connected_) close_tcp(tcp_);
  }
  void abandon() noexcept override { close_timer(); }
  bool pending() const noexcept override { return !connected_; }

 private:
  static void on_timeout(uv_timer_t* t) noexcept {
    auto* self = static_cast<ConnectOp*>(t->data);
    self->timed_out_ = true;
    if (!self->connected_) close_tcp(self->tcp_);
  }

  static void on_connect(uv_connect_t* req, int status) noexcept {
    auto* self = static_cast<ConnectOp*>(req->data);
    self->connected_ = true;
    self->close_timer();
    LoopCore* core = self->core_;
    if (core->closing) return self->release();
    std::error_code ec = uv_error(status);
    if (self->stop_requested())
      ec = uv_error(UV_ECANCELED);
    else if (self->timed_out_ && status < 0)
      ec = uv_error(UV_ETIMEDOUT);
    self->unwatch();
    Cb cb = std::move(self->cb_);
    TcpImpl* tcp = self->tcp_;
    self->release();
    if (ec) {
      close_tcp(tcp);
      return core->invoke(cb, ec, TcpStream());
    }
    core->invoke(cb, ec, TcpStream(tcp));
  }

  void close_timer() noexcept {
    if (!timer_open_) return;
    timer_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_),
             [](uv_handle_t* h) noexcept { static_cast<ConnectOp*>(h->data)->release(); });
  }

  void release() noexcept {
    if (--outstanding_ == 0) core_->destroy(this);
  }

  uv_connect_t req_{};
  uv_timer_t timer_{};
  LoopCore* core_;
  Cb cb_;
  TcpImpl* tcp_ = nullptr;
  int outstanding_ = 0;
  bool timer_open_ = false;
  bool timed_out_ = false;
  bool connected_ = false;
};

}  // namespace detail

/// Connects to `to`, giving up after `timeout` (zero: no timeout beyond the system's); calls
/// `cb(std::error_code, TcpStream)`.
template <class Rep, class Period, class Callback>
requires std::invocable<Callback&, std::error_code, TcpStream>
void connect(Loop& loop, const Endpoint& to, std::chrono::duration<Rep, Period> timeout, Callback&& cb) {
  using Op = detail::ConnectOp<std::decay_t<Callback>>;
  auto& core = loop.core();
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)));
  op->start(to, detail::to_uv_millis(timeout));
}

/// Connects to `to` with no timeout of duet's own.
template <class Callback>
requires std::invocable<Callback&, std::error_code, TcpStream>
void connect(Loop& loop, const Endpoint& to, Callback&& cb) {
  connect(loop, to, std::chrono::milliseconds(0), std::forward<Callback>(cb));
}

/// Coroutine face: `auto stream = co_await duet::connect(loop, endpoint[, timeout]);` — throws
/// `std::system_error` (refused, ...), `duet::TimedOut` or `duet::Cancelled`.
template <class Rep = long, class Period = std::milli>
[[nodiscard]] auto connect(Loop& loop, Endpoint to,
                           std::chrono::duration<Rep, Period> timeout = std::chrono::milliseconds(0)) {
  return awaitable<TcpStream>([&loop, to, timeout](auto cb) { duet::connect(loop, to, timeout, std::move(cb)); });
}

template <class Callback>
void TcpStream::write(std::string bytes, Callback&& cb) {
  using Op = detail::StreamOp<uv_write_t, std::decay_t<Callback>>;
  detail::LoopCore* core = core_if_open();
  if (!core) {
    throw std::system_error(make_error_code(errc::not_connected), "duet::TcpStream::write on a closed stream");
  }
  Op* op = core->make<Op>(core, std::decay_t<Callback>(std::forward<Callback>(cb)), std::move(bytes));
  uv_buf_t buf = detail::buffer(op->bytes.data(), op->bytes.size());
  if (int rc = uv_write(&op->req, stream_if_open(), &buf, 1, &Op::on_done); rc < 0) return op->fail(rc);
  op->watch_stop();
}

template <class Callback>
void TcpStream::shutdown(Callback&& cb) {
  using Op = detail::StreamOp<uv_shutdown_t, std::decay_t<Callback>>;
  detail::LoopCore* core = core_if_open();
  if (!core) {
    throw std::system_error(make_error_code(errc::not_connected), "duet::TcpStream::shutdown on a closed stream");
  }
  Op* op = core->make<Op>(core, std::decay_t<Callback>(std::forward<Callback>(cb)));
  if (int rc = uv_shutdown(&op->req, stream_if_open(), &Op::on_done); rc < 0) return op->fail(rc);
  op->watch_stop();
}

/// A listening TCP socket. Loop-thread only. Move-only; the destructor closes it.
class TcpListener {
 public:
  TcpListener() noexcept = default;
  /// Binds and listens on `at` (port 0 picks a free port: see `local_endpoint()`). Throws
  /// `std::system_error` (UV_EADDRINUSE, UV_EACCES, ...) when that fails.
  TcpListener(Loop& loop, const Endpoint& at, int backlog = 511);
  TcpListener(TcpListener&& other) noexcept;
  TcpListener& operator=(TcpListener&& other) noexcept;
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;
  ~TcpListener();

  /// Takes the next incoming connection: `cb(std::error_code, TcpStream)`. One accept at a time
  /// (a second gets `duet::errc::already_reading`); cancellable; never calls back inside this call.
  template <class Callback>
  void accept(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    accept_erased(detail::UniqueFunction<void(std::error_code, TcpStream)>(std::forward<Callback>(cb)),
                  std::move(token));
  }

  /// Coroutine face: `duet::TcpStream client = co_await listener.accept();`
  [[nodiscard]] auto accept() {
    return awaitable<TcpStream>([this](auto cb) { accept(std::move(cb)); });
  }

  Endpoint local_endpoint() const;
  bool is_open() const noexcept { return impl_ != nullptr; }
  /// Stops listening; a pending accept gets UV_ECANCELED. Idempotent.
  void close() noexcept;

 private:
  friend struct detail::ListenerImpl;
  void accept_erased(detail::UniqueFunction<void(std::error_code, TcpStream)> cb, std::stop_token token);
  detail::ListenerImpl* impl_ = nullptr;
};

}  // namespace duet
