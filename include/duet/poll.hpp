// duet/poll.hpp — waiting until a descriptor another library owns is readable or writable.
//
//     duet::wait_readable(loop, fd, [](std::error_code ec) { ... });          // once
//     co_await duet::wait_readable(loop, fd);                               // the coroutine face
//     auto ready = co_await duet::wait_ready(loop, fd, duet::PollEvents::readable | duet::PollEvents::disconnect);
//
//     duet::Poller poller(loop, fd);                                        // repeatedly
//     poller.start(duet::PollEvents::readable, [](std::error_code ec, duet::PollEvents ready) { ... });
//
// For a descriptor that duet does not own: a database client's socket, an eventfd, a pipe a C library
// hands out. duet only waits; the owner reads, writes and closes. This is libuv's `uv_poll_t`, with its
// rules, which are the caller's to keep:
//  - libuv makes the descriptor non-blocking when the wait or the Poller is set up;
//  - only one wait or Poller per descriptor at a time on a loop: a second gets UV_EEXIST (a Poller
//    holds the descriptor from its construction, or from a start after a stop, until it stops);
//  - the descriptor must stay open while it is polled: close it only after the wait's callback, or
//    after `Poller::stop()`/`close()`;
//  - readiness is level-triggered and may be spurious (another reader may get there first): the owner
//    reads or writes until EAGAIN, and waits again;
//  - a regular file cannot be polled (epoll refuses it): UV_EPERM. Use fs.hpp for files.
//
// One-shot waits: `wait_readable(loop, fd, cb)` / `wait_writable(loop, fd, cb)` call `cb(std::error_code)`,
// `wait_ready(loop, fd, events, cb)` calls `cb(std::error_code, PollEvents)` with what is ready. Each
// call back once, after their handle is closed (so the descriptor may be closed in the callback).
// Cancellable (their callback's stop token): UV_ECANCELED on a later turn. Cost: one pooled object
// holding a `uv_poll_t` per wait (an epoll registration added and removed each time): a descriptor
// waited on again and again is better served by a started `Poller` (a Poller's `wait` costs the same
// as a one-shot wait, after the first).
//
// `Poller(loop, fd)` sets up a `uv_poll_t` on `fd` and holds it until it stops — by `stop()`, at the
// end of a `wait`, or on an error — and sets up a new one when started again. libuv forgets a
// descriptor, by its number, when its handle closes: a handle closed after the descriptor was closed
// and its number taken by another would silence that other. `start(events, cb)` calls
// `cb(std::error_code, PollEvents)` each time the descriptor is ready, until `stop()`; `wait(events,
// cb)` (coroutine face `co_await poller.wait(events)`) waits once and is cancellable. One of the two at
// a time: a `wait` while started, or a second `wait`, gets `duet::errc::already_reading`; `start`
// replaces a previous `start` callback (and fails a pending `wait` with UV_ECANCELED).
//
// Errors: UV_EEXIST, UV_EPERM, UV_EBADF when the descriptor cannot be polled (the one-shot waits, and
// a Poller started again after a stop, call back with it; the Poller's constructor throws it);
// UV_EBADF in the callback when the system reports an error condition on the descriptor (the Poller
// is then stopped). Starting anything on a closed or
// default-constructed Poller throws `std::system_error` with `duet::errc::not_connected`.
//
// Loop destruction: a pending one-shot wait is dropped without a call; a Poller is closed with its loop
// and becomes inert: `is_open()` and `active()` are false, `start`/`wait` throw `not_connected`;
// `stop()`, `close()`, moving and destroying are safe. The descriptor itself is never closed by duet.
#pragma once

#include <uv.h>

#include <memory>
#include <new>
#include <stop_token>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/handle.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/loop.hpp"

namespace duet {

/// What to wait for, and what is ready: a set of libuv's poll events.
enum class PollEvents : int {
  none = 0,
  readable = UV_READABLE,
  writable = UV_WRITABLE,
  disconnect = UV_DISCONNECT,    ///< the peer closed its end (EPOLLRDHUP); may come with `readable`
  prioritized = UV_PRIORITIZED,  ///< out-of-band data (EPOLLPRI)
};
constexpr PollEvents operator|(PollEvents a, PollEvents b) noexcept {
  return static_cast<PollEvents>(static_cast<int>(a) | static_cast<int>(b));
}
constexpr PollEvents operator&(PollEvents a, PollEvents b) noexcept {
  return static_cast<PollEvents>(static_cast<int>(a) & static_cast<int>(b));
}
/// True if `set` holds every event of `events`.
constexpr bool has(PollEvents set, PollEvents events) noexcept { return (set & events) == events; }

namespace detail {

/// One wait on a descriptor: a `uv_poll_t` set up, started, and closed once something is ready.
template <class Cb>
class PollWaitOp final : public HandleOwner, public StopWatch<PollWaitOp<Cb>> {
 public:
  PollWaitOp(LoopCore* core, Cb&& cb) : HandleOwner(core), cb_(std::move(cb)) {}

  /// Returns libuv's error when the descriptor cannot be polled (nothing was set up: the caller
  /// reports it and frees this object).
  int start(int fd, PollEvents events) {
    try {
      if (!core()->claim_polled_fd(fd)) return UV_EEXIST;
    } catch (const std::bad_alloc&) {
      return UV_ENOMEM;
    }
    if (int rc = uv_poll_init(core()->uv(), &poll_, fd); rc < 0) {
      core()->release_polled_fd(fd);
      return rc;
    }
    fd_ = fd;
    adopt(&poll_);
    if (int rc = uv_poll_start(&poll_, static_cast<int>(events), &on_poll); rc < 0) {
      result_ = uv_error(rc);
      done_ = true;
      close_handle(&poll_);
      return 0;
    }
    this->watch(core(), stop_token_of(cb_));
    return 0;
  }

  // Stop requested: close the handle; its close callback reports UV_ECANCELED.
  void on_stop() noexcept {
    if (done_) return;
    done_ = true;
    result_ = uv_error(UV_ECANCELED);
    close_handle(&poll_);
  }

  void abandon() noexcept override {
    abandoned_ = true;
    close_handle(&poll_);
  }

  Cb& callback() noexcept { return cb_; }

 private:
  static void on_poll(uv_poll_t* h, int status, int events) noexcept {
    auto* self = of<PollWaitOp>(h);
    if (self->done_) return;
    self->done_ = true;
    self->result_ = uv_error(status);
    self->ready_ = status < 0 ? PollEvents::none : static_cast<PollEvents>(events);
    self->close_handle(&self->poll_);
  }

  // The handle is closed (the descriptor is free again): report once, then free.
  void finished() noexcept override {
    this->unwatch();
    core()->release_polled_fd(fd_);
    Cb cb = std::move(cb_);
    const std::error_code ec = result_;
    const PollEvents ready = ready_;
    const bool call = !abandoned_;
    LoopCore* core = this->core();
    core->destroy(this);
    if (call) core->invoke(cb, ec, ready);
  }

  uv_poll_t poll_{};
  int fd_ = -1;
  Cb cb_;
  std::error_code result_;
  PollEvents ready_ = PollEvents::none;
  bool done_ = false;
  bool abandoned_ = false;
};

/// Adapts a `cb(std::error_code)` to the `cb(std::error_code, PollEvents)` of a wait, keeping its stop token.
template <class Cb>
struct IgnoreEvents {
  Cb cb;
  std::stop_token stop_token() const noexcept { return stop_token_of(cb); }
  void operator()(std::error_code ec, PollEvents) { cb(ec); }
};

class PollerImpl;

}  // namespace detail

/// Calls `cb(std::error_code, PollEvents)` once `fd` is ready for one of `events`.
template <class Callback>
void wait_ready(Loop& loop, int fd, PollEvents events, Callback&& cb) {
  using Op = detail::PollWaitOp<std::decay_t<Callback>>;
  auto& core = loop.core();
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)));
  if (int rc = op->start(fd, events); rc < 0) {
    auto callback = std::move(op->callback());
    core.destroy(op);
    detail::fail_later<PollEvents>(core, std::move(callback), uv_error(rc));
  }
}
/// Coroutine face: `duet::PollEvents ready = co_await duet::wait_ready(loop, fd, events);`
template <class = void>
[[nodiscard]] inline auto wait_ready(Loop& loop, int fd, PollEvents events) {
  return awaitable<PollEvents>([&loop, fd, events](auto cb) { duet::wait_ready(loop, fd, events, std::move(cb)); });
}

/// Calls `cb(std::error_code)` once `fd` is readable (or at its end, or in error).
template <class Callback>
void wait_readable(Loop& loop, int fd, Callback&& cb) {
  wait_ready(loop, fd, PollEvents::readable, detail::IgnoreEvents<std::decay_t<Callback>>{std::forward<Callback>(cb)});
}
/// Coroutine face: `co_await duet::wait_readable(loop, fd);`
template <class = void>
[[nodiscard]] inline auto wait_readable(Loop& loop, int fd) {
  return awaitable<void>([&loop, fd](auto cb) { duet::wait_readable(loop, fd, std::move(cb)); });
}

/// Calls `cb(std::error_code)` once `fd` is writable.
template <class Callback>
void wait_writable(Loop& loop, int fd, Callback&& cb) {
  wait_ready(loop, fd, PollEvents::writable, detail::IgnoreEvents<std::decay_t<Callback>>{std::forward<Callback>(cb)});
}
/// Coroutine face: `co_await duet::wait_writable(loop, fd);`
template <class = void>
[[nodiscard]] inline auto wait_writable(Loop& loop, int fd) {
  return awaitable<void>([&loop, fd](auto cb) { duet::wait_writable(loop, fd, std::move(cb)); });
}

/// Watches one descriptor for as long as it lives (see the top of this header). Loop-thread only.
/// Move-only; the destructor stops watching (the descriptor stays open).
class Poller {
 public:
  Poller() noexcept = default;
  /// Sets up polling of `fd` (made non-blocking). Throws `std::system_error`: UV_EEXIST (already
  /// polled on this loop), UV_EPERM (a regular file), UV_EBADF (not open).
  Poller(Loop& loop, int fd);

  /// Calls `cb(std::error_code, PollEvents)` each time `fd` is ready for one of `events`, until
  /// `stop()`. Replaces a previous callback and events.
  template <class Callback>
  void start(PollEvents events, Callback&& cb) {
    start_erased(events, detail::UniqueFunction<void(std::error_code, PollEvents)>(std::forward<Callback>(cb)));
  }
  /// Stops watching and lets the descriptor go, so it may be closed now (a pending `wait` gets
  /// UV_ECANCELED). Safe when not started.
  void stop() noexcept;

  /// Waits once for `events`: `cb(std::error_code, PollEvents)`. Cancellable.
  template <class Callback>
  void wait(PollEvents events, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    wait_erased(events, detail::UniqueFunction<void(std::error_code, PollEvents)>(std::forward<Callback>(cb)),
                std::move(token));
  }
  /// Coroutine face: `duet::PollEvents ready = co_await poller.wait(events);`
  template <class = void>
  [[nodiscard]] auto wait(PollEvents events) {
    return awaitable<PollEvents>([this, events](auto cb) { wait(events, std::move(cb)); });
  }

  /// True while started or waiting.
  bool active() const noexcept;
  /// True until `close()` (or until the loop is destroyed).
  bool is_open() const noexcept { return alive_ && *alive_; }
  /// Stops watching for good; the descriptor stays open. Idempotent.
  void close() noexcept;
  /// Whether this poller keeps `Loop::run()` from returning while active (it does by default).
  void keep_loop_alive(bool keep) noexcept;

 private:
  void start_erased(PollEvents events, detail::UniqueFunction<void(std::error_code, PollEvents)> cb);
  void wait_erased(PollEvents events, detail::UniqueFunction<void(std::error_code, PollEvents)> cb,
                   std::stop_token token);
  bool set_up(detail::UniqueFunction<void(std::error_code, PollEvents)>& cb);

  detail::HandlePtr<detail::PollerImpl> impl_;  // the uv_poll_t, from set-up until the next stop
  detail::LoopCore* core_ = nullptr;
  std::shared_ptr<bool> alive_;  // the Loop's: false once it is gone (null: closed or moved from)
  int fd_ = -1;
  bool keep_loop_alive_ = true;
};

}  // namespace duet
