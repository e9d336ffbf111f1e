// duet/timer.hpp — waiting: a one-shot `sleep` and a repeating `Timer`.
//
//     duet::sleep(loop, 250ms, [](std::error_code ec) { ... });   // ec: success, or UV_ECANCELED
//     co_await duet::sleep(loop, 250ms);                            // the coroutine face
//
//     duet::Timer tick(loop);
//     tick.start(1s, 1s, [] { std::puts("tick"); });                // every second until stop()
//
// `sleep` calls back once after at least `duration` (libuv's millisecond clock, rounded up), or with
// UV_ECANCELED soon after its callback's stop token is stopped (see cancellation.hpp). Cost: one
// pooled allocation holding a `uv_timer_t`, which is closed before its memory is reused.
//
// Both count from when they are armed: inside `Loop::run` or `run_once`, from libuv's cached time for
// the current turn; outside them (before the first run, between runs, on a wrapped loop) the clock is
// read first (one clock read), so blocking work done while the loop was not running does not shorten
// the wait.
//
// `Timer` owns a `uv_timer_t` for as long as it lives; its callback runs on the loop thread. Destroying
// the Timer stops it and closes the handle (freed in the close callback). If the loop is destroyed
// first, the Timer becomes inert: `active()` is false and `start` throws.
#pragma once

#include <cstdint>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/chrono.hpp"
#include "duet/detail/handle.hpp"
#include "duet/loop.hpp"

namespace duet {

namespace detail {

inline std::uint64_t to_uv_millis(std::chrono::nanoseconds d) noexcept {
  if (d <= std::chrono::nanoseconds::zero()) return 0;
  return static_cast<std::uint64_t>(std::chrono::ceil<std::chrono::milliseconds>(d).count());
}

template <class Cb>
class SleepOp final : public HandleOwner, public StopWatch<SleepOp<Cb>> {
 public:
  SleepOp(LoopCore* core, Cb&& cb) : HandleOwner(core), cb_(std::move(cb)) {
    uv_timer_init(core->uv(), &timer_);  // cannot fail for timers
    adopt(&timer_);
  }

  void start(std::uint64_t millis) {
    core()->update_time();
    uv_timer_start(&timer_, &on_fire, millis, 0);
    this->watch(core(), stop_token_of(cb_));
  }

  // Stop requested: fire on the next turn of the loop, which reports UV_ECANCELED.
  void on_stop() noexcept { uv_timer_start(&timer_, &on_fire, 0, 0); }

  void abandon() noexcept override { close_handle(&timer_); }
  bool pending() const noexcept override { return !fired_; }

 private:
  static void on_fire(uv_timer_t* t) noexcept {
    auto* self = of<SleepOp>(t);
    self->fired_ = true;
    std::error_code ec = self->stop_requested() ? uv_error(UV_ECANCELED) : std::error_code();
    self->unwatch();
    Cb cb = std::move(self->cb_);
    LoopCore* core = self->core();
    self->close_handle(&self->timer_);  // freed in the close callback
    core->invoke(cb, ec);
  }

  uv_timer_t timer_{};
  Cb cb_;
  bool fired_ = false;
};

class TimerImpl;

}  // namespace detail

/// Calls `cb(std::error_code)` once `duration` has passed. Never calls back inside this call.
template <class Rep, class Period, class Callback>
void sleep(Loop& loop, std::chrono::duration<Rep, Period> duration, Callback&& cb) {
  using Op = detail::SleepOp<std::decay_t<Callback>>;
  auto& core = loop.core();
  std::decay_t<Callback> callback(std::forward<Callback>(cb));
  Op* op = core.make<Op>(&core, std::move(callback));
  op->start(detail::to_uv_millis(duration));
}

/// Coroutine face: `co_await duet::sleep(loop, duration);` — throws `duet::Cancelled` if cancelled.
template <class Rep, class Period>
[[nodiscard]] auto sleep(Loop& loop, std::chrono::duration<Rep, Period> duration) {
  return awaitable<void>([&loop, duration](auto cb) { duet::sleep(loop, duration, std::move(cb)); });
}

/// A repeating (or one-shot) timer handle. Loop-thread only. Move-only.
class Timer {
 public:
  explicit Timer(Loop& loop);

  /// (Re)starts the timer: `cb()` runs after `timeout`, then every `repeat` (zero: only once).
  /// Replaces any previous callback. Throws `std::system_error` if the loop is gone.
  template <class Rep1, class Period1, class Rep2 = int, class Period2 = std::ratio<1>, class Callback>
  void start(std::chrono::duration<Rep1, Period1> timeout, std::chrono::duration<Rep2, Period2> repeat, Callback&& cb) {
    start_erased(detail::to_uv_millis(timeout), detail::to_uv_millis(repeat),
                 detail::UniqueFunction<void()>(std::forward<Callback>(cb)));
  }

  /// Stops the timer; the callback is kept for a later `again()`.
  void stop() noexcept;
  /// Restarts a stopped repeating timer with its last settings.
  void again();
  /// True while the timer is started.
  bool active() const noexcept;
  /// Whether this timer keeps `Loop::run()` from returning (it does by default; libuv's uv_ref/uv_unref).
  void keep_loop_alive(bool keep) noexcept;

 private:
  void start_erased(std::uint64_t timeout, std::uint64_t repeat, detail::UniqueFunction<void()> cb);
  detail::HandlePtr<detail::TimerImpl> impl_;
};

}  // namespace duet
