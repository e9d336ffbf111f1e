// duet/cancellation.hpp — cancelling an operation started with a callback.
//
// Any duet operation can be cancelled by the `std::stop_token` associated with its callback. A plain
// lambda has none; wrap it with `duet::with_cancellation(token, cb)` to give it one:
//
//     std::stop_source stop;
//     duet::sleep(loop, 10s, duet::with_cancellation(stop.get_token(), [](std::error_code ec) {
//       // ec == UV_ECANCELED if stop.request_stop() ran first
//     }));
//     stop.request_stop();
//
// What cancelling does (see DESIGN.md): queued fs, work and DNS requests are `uv_cancel`ed; timers are
// stopped; connects and pending reads are abandoned by closing or stopping their handle. The callback is
// then called once, later, from the loop (never inside `request_stop()`), with `UV_ECANCELED`. A request
// already running on the thread pool cannot be stopped: it finishes, its result is discarded (an opened
// file is closed), and the callback still gets `UV_ECANCELED`. A started write is never cancelled.
//
// Thread rule: call `request_stop()` on the loop's thread (from another thread, `loop.post` it).
//
// The coroutine face uses the same hook: its callbacks expose their task's stop token.
#pragma once

#include <concepts>
#include <functional>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace duet {

/// A callback bound to a stop token. Calls forward to the wrapped callable.
template <class Callback>
class WithCancellation {
 public:
  WithCancellation(std::stop_token token, Callback cb) : token_(std::move(token)), cb_(std::move(cb)) {}

  const std::stop_token& stop_token() const noexcept { return token_; }

  template <class... Args>
  requires std::invocable<Callback&, Args...>
  decltype(auto) operator()(Args&&... args) { return std::invoke(cb_, std::forward<Args>(args)...); }

 private:
  std::stop_token token_;
  Callback cb_;
};

/// Associates `token` with `cb`: requesting stop on the token cancels the operation `cb` is given to.
template <class Callback>
WithCancellation<std::decay_t<Callback>> with_cancellation(std::stop_token token, Callback&& cb) {
  return {std::move(token), std::forward<Callback>(cb)};
}

/// The stop token associated with a callback: its `stop_token()` if it has one, else a token that
/// can never be stopped.
template <class Callback>
std::stop_token stop_token_of(const Callback& cb) noexcept {
  if constexpr (requires {
                  { cb.stop_token() } -> std::convertible_to<std::stop_token>;
                }) {
    return cb.stop_token();
  } else {
    return {};
  }
}

}  // namespace duet
