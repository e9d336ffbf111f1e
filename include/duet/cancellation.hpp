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
// What cancelling does (the table in docs/loop-and-operations.md, "Cancellation", has every operation):
// queued fs, work, DNS and random requests are `uv_cancel`ed; timers are stopped; connects and pending
// reads are abandoned by closing or stopping their handle. The callback is then called once, later,
// from the loop (never inside `request_stop()`), with `UV_ECANCELED`. A request already running on the
// thread pool cannot be stopped: it finishes, its result is discarded (an opened file is closed, a
// temporary file or folder it made is removed), and the callback still gets `UV_ECANCELED`. (`fs::close`
// and `fs::closedir` are never cancelled: the descriptor would stay open.) A started write or shutdown
// cannot be recalled: the callback is detached and gets `UV_ECANCELED`, while the stream goes on
// sending the bytes it owns. (A wait on a `Semaphore`, `Lock`, `Event` or `Queue` is the exception to
// "later": it calls back inside `request_stop()`; see semaphore.hpp.)
//
// Thread rule: `request_stop()` may be called on any thread. Called on the loop's thread, the
// operation is cancelled inside it; called on another, the cancellation is posted to the loop and
// happens there on a later turn (if the operation finishes first, the stop is ignored: its callback
// gets its real result). Either way libuv is only ever called on the loop's thread. The one exception
// is a wait on a `Semaphore`, `Lock`, `Event` or `Queue` with a plain callback, which knows no loop:
// request its stop on the owner's thread (a coroutine awaiting one may be cancelled from anywhere).
//
// A callback whose token is already stopped when the operation starts gets `UV_ECANCELED` even when the
// result is at hand (a free permit, a set event, a queued value, a pending connection, an exited
// child, a queued file event): nothing is taken, so the next caller finds it where it was (a push's
// value is dropped, as a cancelled push's is; a `ResponseStream` read cancels its request, as any
// cancelled read does). It is called inside the call for a `Semaphore`, `Lock`, `Event` or `Queue`,
// on a later turn for an operation of the loop.
//
// The coroutine face uses the same hook: its callbacks expose their task's stop token.
#pragma once

#include <concepts>
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
  decltype(auto) operator()(Args&&... args) { return cb_(std::forward<Args>(args)...); }

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

/// True if the callback's stop token (see `stop_token_of`) has been stopped. Copies no token.
template <class Callback>
bool stop_requested_of(const Callback& cb) noexcept {
  if constexpr (requires {
                  { cb.stop_token().stop_requested() } -> std::convertible_to<bool>;
                }) {
    return cb.stop_token().stop_requested();
  } else {
    return false;
  }
}

}  // namespace duet
