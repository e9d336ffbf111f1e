// duet/signal.hpp — waiting for a POSIX signal (Ctrl-C, SIGTERM) as an operation.
//
//     duet::wait_for_signal(loop, {SIGINT, SIGTERM}, [](std::error_code ec, int signum) { ... });
//     int signum = co_await duet::wait_for_signal(loop, {SIGINT, SIGTERM});   // the coroutine face
//
// Calls back once, on the loop thread, with the number of the first of the given signals to arrive
// (at most four signals per wait). While the wait is on, libuv catches those signals for the whole
// process, so Ctrl-C no longer kills it; when the wait ends (a signal came, or it was cancelled) and no
// other wait holds the signal, libuv restores its default action — a second Ctrl-C then terminates as
// usual, the customary way out of a program whose clean shutdown hangs. SIGPIPE is the exception: it
// goes back to "ignored", the Loop's setting (loop.hpp), so that a write to a closed connection still
// fails with UV_EPIPE instead of killing the process.
//
// A wait keeps `Loop::run()` from returning, like any operation: a program that waits for Ctrl-C beside
// its real work cancels the wait (its callback's stop token, see cancellation.hpp) once the work is
// done. Cancelled, it calls back with UV_ECANCELED; an empty list, more than four signals or a number
// outside 1..64 gives `errc::invalid_argument`, and a signal libuv cannot catch (SIGKILL, SIGSTOP)
// UV_EINVAL. The callback runs a turn after the signal, once the wait's handles are closed.
//
// Cost: one allocation holding a `uv_signal_t` per signal. libuv delivers signals to the loop through
// a pipe, so the callback is ordinary loop-thread code (no async-signal-safety rules apply to it).
#pragma once

#include <uv.h>

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/handle.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/loop.hpp"

namespace duet {

/// The signals a wait is for: `{SIGINT, SIGTERM}`. A number outside 1..64 makes the set invalid.
/// (A set, not an initializer_list: g++ 12 cannot take a braced list's array into a coroutine frame.)
class SignalSet {
 public:
  template <class... Signum>
  requires(std::same_as<Signum, int>&&...) constexpr SignalSet(
      Signum... signums) noexcept {  // NOLINT: implicit, for `{SIGINT, SIGTERM}`
    (add(signums), ...);
  }

  constexpr bool valid() const noexcept { return valid_ && bits_ != 0; }
  constexpr std::size_t size() const noexcept { return static_cast<std::size_t>(std::popcount(bits_)); }
  constexpr bool contains(int signum) const noexcept {
    return signum >= 1 && signum <= 64 && (bits_ >> (signum - 1)) & 1U;
  }

 private:
  constexpr void add(int signum) noexcept {
    if (signum < 1 || signum > 64)
      valid_ = false;
    else
      bits_ |= std::uint64_t{1} << (signum - 1);
  }
  std::uint64_t bits_ = 0;
  bool valid_ = true;
};

namespace detail {

inline constexpr std::size_t kMaxSignalsPerWait = 4;

/// Sets SIGPIPE to "ignored" if it is at its default action (as creating a Loop does).
void ignore_sigpipe_if_default() noexcept;

template <class Cb>
class SignalWaitOp final : public HandleOwner, public StopWatch<SignalWaitOp<Cb>> {
 public:
  SignalWaitOp(LoopCore* core, Cb&& cb) : HandleOwner(core), cb_(std::move(cb)) {}

  void start(SignalSet signums) {
    hold();  // until every handle is set up: a failure part-way must not free this object early
    for (int signum = 1; signum <= 64; ++signum) {
      if (!signums.contains(signum)) continue;
      uv_signal_t& h = handles_[count_++];
      uv_signal_init(core()->uv(), &h);  // cannot fail on Unix
      adopt(&h);
      if (int rc = uv_signal_start(&h, &on_signal, signum); rc < 0) {
        result_ = uv_error(rc);
        break;
      }
    }
    if (result_)
      close_all();
    else
      this->watch(core(), stop_token_of(cb_));
    release();
  }

  // Stop requested (on the loop thread): close the handles; the last close reports UV_ECANCELED.
  void on_stop() noexcept {
    if (!result_ && signum_ == 0) result_ = uv_error(UV_ECANCELED);
    close_all();
  }

  void abandon() noexcept override {
    abandoned_ = true;
    close_all();
  }

 private:
  static void on_signal(uv_signal_t* h, int signum) noexcept {
    auto* self = of<SignalWaitOp>(h);
    if (self->signum_ == 0 && !self->result_) self->signum_ = signum;
    self->close_all();
  }

  void close_all() noexcept {
    bool sigpipe = false;
    for (std::size_t i = 0; i < count_; ++i) {
      sigpipe |= handles_[i].signum == SIGPIPE;
      close_handle(&handles_[i]);
    }
    // libuv has just put SIGPIPE back to its default action (if no other wait holds it), which kills.
    if (sigpipe) ignore_sigpipe_if_default();
  }

  // Every handle is closed: report once, then free.
  void finished() noexcept override {
    this->unwatch();
    Cb cb = std::move(cb_);
    const std::error_code ec = result_;
    const int signum = signum_;
    const bool call = !abandoned_;
    LoopCore* core = this->core();
    core->destroy(this);
    if (call) core->invoke(cb, ec, signum);
  }

  std::array<uv_signal_t, kMaxSignalsPerWait> handles_{};
  std::size_t count_ = 0;
  Cb cb_;
  std::error_code result_;
  int signum_ = 0;
  bool abandoned_ = false;
};

}  // namespace detail

/// Calls `cb(std::error_code, int signum)` once, when the first of `signums` arrives.
template <class Callback>
void wait_for_signal(Loop& loop, SignalSet signums, Callback&& cb) {
  auto& core = loop.core();
  if (!signums.valid() || signums.size() > detail::kMaxSignalsPerWait)
    return detail::fail_later<int>(core, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  using Op = detail::SignalWaitOp<std::decay_t<Callback>>;
  std::decay_t<Callback> callback(std::forward<Callback>(cb));
  core.make<Op>(&core, std::move(callback))->start(signums);
}

/// Coroutine face: `int signum = co_await duet::wait_for_signal(loop, {SIGINT, SIGTERM});` — throws
/// `duet::Cancelled` if cancelled.
template <class = void>
[[nodiscard]] inline auto wait_for_signal(Loop& loop, SignalSet signums) {
  return awaitable<int>([&loop, signums](auto cb) { duet::wait_for_signal(loop, signums, std::move(cb)); });
}

}  // namespace duet
