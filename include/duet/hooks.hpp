// duet/hooks.hpp — `Idle`, `Prepare` and `Check`: code that runs at fixed points of every loop turn.
//
//     duet::Prepare before(loop);
//     before.start([&] { other_library.flush(); });       // right before the loop waits for I/O
//     duet::Check after(loop);
//     after.start([&] { other_library.dispatch(); });     // right after the wait
//
// For driving another event source from duet's loop (a library that wants "call me before you block"
// and "call me after you woke up"). libuv's turn is: timers, pending callbacks, **idle**, **prepare**,
// wait for I/O (the poll), I/O callbacks, **check**, close callbacks. Each hook runs once per turn
// while started:
//  - `Prepare`: just before the poll;
//  - `Check`: just after the poll and its I/O callbacks;
//  - `Idle`: before prepare — and while an Idle is started the poll does not block (zero timeout), so
//    the loop spins, calling it again and again: that burns a core; stop it as soon as there is no
//    background work left.
//
// Each is a handle owned by its object: `start(cb)` calls `cb()` on every turn until `stop()` (calling
// `start` again replaces the callback); `next(cb)` (coroutine face `co_await hook.next()`) waits for
// the next time the hook runs once, and calls `cb(std::error_code)` — a coroutine resumes inside that
// phase of the turn. A started hook keeps `Loop::run()` from returning (as any active handle does),
// unless `keep_loop_alive(false)`. `start` and `next` may be used together: both run, the waiter first.
//
// Prepare and Check do not make the loop turn: they run when it turns anyway (I/O, a timer, a post, an
// Idle). A Check started on a loop with nothing else to do keeps `run()` waiting in the poll, forever
// if nothing comes — so does a `co_await check.next()`.
//
// These are loop-thread only, like every duet handle: from another thread, `Loop::post` is the way in
// (it wakes the loop; a hook does not).
//
// Errors: none from libuv once the hook exists. `next` is cancellable (its callback's stop token):
// UV_ECANCELED on a later turn; `stop()` and `close()` cancel it the same way. Starting anything on a
// closed or default-constructed hook throws `std::system_error` with `duet::errc::not_connected`.
//
// Loop destruction: the hook is closed with its loop and becomes inert: `is_open()` and `active()` are
// false, `start`/`next` throw `not_connected`; `stop()`, `close()`, moving and destroying are safe.
//
// Cost: one libuv handle (a few dozen bytes) per object; a started hook costs one call per loop turn.
#pragma once

#include <stop_token>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/handle.hpp"
#include "duet/loop.hpp"

namespace duet {

namespace detail {

class HookImpl;

/// What `Idle`, `Prepare` and `Check` share: everything but their libuv handle type.
class LoopHook {
 public:
  /// Calls `cb()` on every turn of the loop, at this hook's point, until `stop()`.
  template <class Callback>
  void start(Callback&& cb) {
    start_erased(UniqueFunction<void()>(std::forward<Callback>(cb)));
  }
  /// Stops calling the `start` callback; a pending `next` gets UV_ECANCELED. Safe when not started.
  void stop() noexcept;

  /// Calls `cb(std::error_code)` the next time the hook runs. Cancellable.
  template <class Callback>
  void next(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    next_erased(UniqueFunction<void(std::error_code)>(std::forward<Callback>(cb)), std::move(token));
  }
  /// Coroutine face: `co_await hook.next();`
  template <class = void>
  [[nodiscard]] auto next() {
    return awaitable<void>([this](auto cb) { next(std::move(cb)); });
  }

  /// True while started or waited on.
  bool active() const noexcept;
  /// True until `close()` (or until the loop is destroyed).
  bool is_open() const noexcept { return static_cast<bool>(impl_); }
  /// Closes the handle (a pending `next` gets UV_ECANCELED). Idempotent.
  void close() noexcept { impl_.reset(); }
  /// Whether this hook keeps `Loop::run()` from returning while active (it does by default).
  void keep_loop_alive(bool keep) noexcept;

 protected:
  enum class Kind { idle, prepare, check };
  LoopHook() noexcept = default;
  LoopHook(Loop& loop, Kind kind);
  LoopHook(LoopHook&&) noexcept = default;
  LoopHook& operator=(LoopHook&&) noexcept = default;
  ~LoopHook() = default;

 private:
  void start_erased(UniqueFunction<void()> cb);
  void next_erased(UniqueFunction<void(std::error_code)> cb, std::stop_token token);
  HandlePtr<HookImpl> impl_;
};

}  // namespace detail

/// Runs on every turn before `Prepare`, and keeps the loop from blocking while started (libuv's uv_idle_t).
class Idle : public detail::LoopHook {
 public:
  Idle() noexcept = default;
  explicit Idle(Loop& loop) : LoopHook(loop, Kind::idle) {}
};

/// Runs on every turn just before the loop waits for I/O (libuv's uv_prepare_t).
class Prepare : public detail::LoopHook {
 public:
  Prepare() noexcept = default;
  explicit Prepare(Loop& loop) : LoopHook(loop, Kind::prepare) {}
};

/// Runs on every turn just after the loop's wait for I/O (libuv's uv_check_t).
class Check : public detail::LoopHook {
 public:
  Check() noexcept = default;
  explicit Check(Loop& loop) : LoopHook(loop, Kind::check) {}
};

}  // namespace duet
