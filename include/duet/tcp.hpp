// duet/tcp.hpp — TCP: `connect` and `TcpStream` for clients, `TcpListener` for servers.
//
//     duet::connect(loop, duet::Endpoint::loopback(8000), 5s, [](std::error_code ec, duet::TcpStream s) {
//       s.write("GET / HTTP/1.0\r\n\r\n", [](std::error_code ec) { ... });
//     });
//
// Connecting: `connect(loop, endpoint, [timeout,] cb)` calls `cb(std::error_code, TcpStream)`:
// UV_ECONNREFUSED, UV_ETIMEDOUT when `timeout` passes first, UV_ECANCELED when cancelled (see
// cancellation.hpp), or a connected stream. `TcpStream::open(loop, socket)` adopts a socket that
// another library connected.
//
// A `TcpStream` is a `Stream` (stream.hpp: read, write with backpressure, try_write, shutdown, close,
// their failure modes and what happens when the loop is destroyed), plus what only TCP has: the two
// endpoints, Nagle's algorithm (off by default for duet streams), keep-alive probes, and closing with
// a reset (RST instead of FIN: the peer gets ECONNRESET, unsent data is dropped).
//
// `TcpListener(loop, endpoint)` binds and listens; `accept` takes one connection at a time.
//
// Cost: a stream is one `uv_tcp_t` plus a few pointers (no per-stream read buffer); each write is one
// pooled request object; a connect is one pooled object holding the request, and its timeout timer
// when it has a timeout.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/chrono.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/endpoint.hpp"
#include "duet/loop.hpp"
#include "duet/stream.hpp"
#include "duet/timer.hpp"

namespace duet {

namespace detail {
struct ListenerAccess;
template <class Cb, bool Timed>
class ConnectOp;
}  // namespace detail

class TcpStream : public Stream {
 public:
  TcpStream() noexcept = default;
  TcpStream(TcpStream&&) noexcept = default;
  TcpStream& operator=(TcpStream&&) noexcept = default;

  /// Adopts `socket`, an open (usually connected) TCP socket another library made; the stream owns
  /// it from now on and closes it. Throws `std::system_error` if libuv refuses it.
  static TcpStream open(Loop& loop, uv_os_sock_t socket);

  Endpoint local_endpoint() const;   ///< throws std::system_error if closed
  Endpoint remote_endpoint() const;  ///< throws std::system_error if closed
  /// Disables Nagle's algorithm (on by default for duet streams).
  void set_nodelay(bool enable);
  /// Turns TCP keep-alive probes on (first probe after `idle` without traffic) or off.
  void set_keepalive(bool enable, std::chrono::seconds idle = std::chrono::seconds(60));
  /// Closes now with a reset (RST): pending writes are dropped and the peer sees ECONNRESET.
  /// Idempotent; on a stream already closing it does nothing more.
  void close_reset() noexcept;

  /// The libuv handle, or null when closed.
  uv_tcp_t* native() const noexcept;

 private:
  template <class Cb, bool Timed>
  friend class detail::ConnectOp;
  friend class TcpListener;
  explicit TcpStream(detail::HandlePtr<detail::StreamImpl> impl) noexcept : Stream(std::move(impl)) {}
};

namespace detail {

/// A new, unconnected TCP stream on `core` (Nagle off). Throws on failure.
HandlePtr<StreamImpl> make_tcp(LoopCore* core);
uv_tcp_t* tcp_handle(StreamImpl* impl) noexcept;

/// A connect in flight: the uv_connect_t, the new stream and, if `Timed`, the timeout timer (a connect
/// without one is 128 bytes smaller: the HTTP client keeps its connect deadlines on a list of its own).
/// Freed once both the connect callback has run and the timer (if any) is closed.
template <class Cb, bool Timed>
class ConnectOp final : public HandleOwner, public StopWatch<ConnectOp<Cb, Timed>> {
 public:
  ConnectOp(LoopCore* core, Cb&& cb) : HandleOwner(core), cb_(std::move(cb)) { req_.data = this; }

  void start(const Endpoint& to, std::uint64_t timeout_ms) {
    try {
      tcp_ = make_tcp(core());
    } catch (...) {
      core()->destroy(this);
      throw;
    }
    if (int rc = uv_tcp_connect(&req_, tcp_handle(tcp_.get()), to.data(), &on_connect); rc < 0) {
      tcp_.reset();
      Cb cb = std::move(cb_);
      LoopCore* core = this->core();
      core->destroy(this);
      return fail_later<TcpStream>(*core, std::move(cb), uv_error(rc));
    }
    hold();  // until on_connect
    if constexpr (Timed) {
      uv_timer_init(core()->uv(), &timer_);
      adopt(&timer_);
      core()->update_time();
      uv_timer_start(&timer_, &on_timeout, timeout_ms, 0);
    }
    this->watch(core(), stop_token_of(cb_));
  }

  // Closing the socket makes libuv call on_connect with UV_ECANCELED.
  void on_stop() noexcept {
    if (!connected_) tcp_.reset();
  }
  void abandon() noexcept override {
    if constexpr (Timed)
      if (timer_.data) close_handle(&timer_);
  }
  bool pending() const noexcept override { return !connected_; }

 private:
  static void on_timeout(uv_timer_t* t) noexcept {
    auto* self = of<ConnectOp>(t);
    self->timed_out_ = true;
    if (!self->connected_) self->tcp_.reset();
  }

  static void on_connect(uv_connect_t* req, int status) noexcept {
    auto* self = static_cast<ConnectOp*>(req->data);
    self->connected_ = true;
    if constexpr (Timed)
      if (self->timer_.data) self->close_handle(&self->timer_);
    LoopCore* core = self->core();
    if (core->closing()) return self->release();
    std::error_code ec = uv_error(status);
    if (self->stop_requested())
      ec = uv_error(UV_ECANCELED);
    else if (self->timed_out_ && status < 0)
      ec = uv_error(UV_ETIMEDOUT);
    self->unwatch();
    Cb cb = std::move(self->cb_);
    HandlePtr<StreamImpl> tcp = std::move(self->tcp_);
    self->release();
    if (ec) {
      tcp.reset();
      return core->invoke(cb, ec, TcpStream());
    }
    core->invoke(cb, ec, TcpStream(std::move(tcp)));
  }

  uv_connect_t req_{};
  struct NoTimer {};
  [[no_unique_address]] std::conditional_t<Timed, uv_timer_t, NoTimer> timer_{};  // adopted once started
  Cb cb_;
  HandlePtr<StreamImpl> tcp_;
  bool timed_out_ = false;
  bool connected_ = false;
};

}  // namespace detail

/// Connects to `to`, giving up after `timeout` (zero: no timeout beyond the system's); calls
/// `cb(std::error_code, TcpStream)`.
template <class Rep, class Period, class Callback>
requires std::invocable<Callback&, std::error_code, TcpStream>
void connect(Loop& loop, const Endpoint& to, std::chrono::duration<Rep, Period> timeout, Callback&& cb) {
  auto& core = loop.core();
  const std::uint64_t ms = detail::to_uv_millis(timeout);
  auto start = [&]<bool Timed>(std::bool_constant<Timed>) {
    using Op = detail::ConnectOp<std::decay_t<Callback>, Timed>;
    core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)))->start(to, ms);
  };
  if (ms > 0)
    start(std::true_type());
  else
    start(std::false_type());
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

/// A listening TCP socket. Loop-thread only. Move-only; the destructor closes it.
class TcpListener {
 public:
  TcpListener() noexcept = default;
  /// Binds and listens on `at` (port 0 picks a free port: see `local_endpoint()`). Throws
  /// `std::system_error` (UV_EADDRINUSE, UV_EACCES, ...) when that fails. With `reuse_port`, other
  /// listeners that set it too may listen on the same address and port (Linux's SO_REUSEPORT, for
  /// one listener per loop): the kernel spreads new connections over them.
  TcpListener(Loop& loop, const Endpoint& at, int backlog = 511, bool reuse_port = false);

  /// Takes the next incoming connection: `cb(std::error_code, TcpStream)`. One accept at a time
  /// (a second gets `duet::errc::already_reading`); cancellable; never calls back inside this call.
  template <class Callback>
  void accept(Callback&& cb) {
    if (!impl_) detail::throw_closed("accept");
    std::stop_token token = stop_token_of(cb);
    impl_->accept(
        [cb = std::decay_t<Callback>(std::forward<Callback>(cb))](
            std::error_code ec, detail::HandlePtr<detail::StreamImpl> s) mutable { cb(ec, TcpStream(std::move(s))); },
        std::move(token));
  }

  /// Coroutine face: `duet::TcpStream client = co_await listener.accept();`
  template <class = void>
  [[nodiscard]] auto accept() {
    return awaitable<TcpStream>([this](auto cb) { accept(std::move(cb)); });
  }

  Endpoint local_endpoint() const;
  bool is_open() const noexcept { return static_cast<bool>(impl_); }
  /// Stops listening; a pending accept gets UV_ECANCELED. Idempotent.
  void close() noexcept { impl_.reset(); }

 private:
  friend struct detail::ListenerAccess;
  detail::HandlePtr<detail::ListenerImpl> impl_;
};

namespace detail {
/// For the HTTP server, whose accept callback needs no word of its own cancellation: closes the
/// listener with the pending accept's callback dropped uncalled.
struct ListenerAccess {
  static void close_quietly(TcpListener& listener) noexcept {
    if (listener.impl_) listener.impl_->forget_accept();
    listener.close();
  }
};
}  // namespace detail

}  // namespace duet
