// duet/queue.hpp — a FIFO queue between tasks (asyncio.Queue), bounded or not, with a clear end.
//
//     duet::Queue<std::string> codes(100);          // at most 100 waiting; Queue<T>() is unbounded
//     co_await codes.push("BR");                    // waits while the queue is full
//     while (std::optional<std::string> cc = co_await codes.pop()) { ... }   // empty: closed and drained
//     codes.close();                                // no more pushes; poppers drain what is left
//
//     codes.push("BR", [](std::error_code ec) {});                      // callback faces
//     codes.pop([](std::error_code ec, std::string cc) {});            // ec: errc::queue_closed at the end
//
// - `push(value, cb)` calls `cb(std::error_code)` once the value is in the queue: inside `push` when
//   there is room and no earlier push waits, otherwise when a pop makes room. `pop(cb)` calls
//   `cb(std::error_code, T)` with the oldest value: inside `pop` when one is there, otherwise when one
//   is pushed (handed straight to the longest-waiting popper). Waiting pushers and poppers are each
//   served strictly in arrival order; nobody overtakes the queue.
// - `try_push(value)` / `try_pop()` never wait: false / an empty optional when they would.
// - `close()` ends the queue: pushes from then on, and the pushes still waiting, fail with
//   `errc::queue_closed` (their values are dropped: the pusher learns it from the error). Values
//   already queued stay, and pops take them; a pop that finds the queue closed and empty gets
//   `errc::queue_closed` (the coroutine face: an empty optional), as do the poppers waiting then.
// - Cancellation: a waiting push or pop whose stop token is stopped leaves the queue with
//   UV_ECANCELED (a cancelled push drops its value; a cancelled pop loses nothing). A push or pop whose
//   token is already stopped is called back so inside the call, before anything else (a closed queue,
//   room, a value waiting): the push's value is dropped, the pop takes nothing. Stops from other
//   threads, and destruction with waiters (UV_ECANCELED to each), behave as for `Semaphore`, whose
//   waiter list this shares (detail/wait_list.hpp).
// - A waiter's callback runs inside the call that served it (push, pop, close), may push or pop
//   again (served by that call's loop, not by recursion), and may destroy the queue. An exception
//   from one propagates from that call after the other waiters are served; from `try_push` and
//   `try_pop`, which must not lose the value they moved, it is written to stderr instead.
//
// Not thread-safe: the loop's thread only. T must be nothrow-movable; the callback face of `pop` also needs
// it default-constructible (the value a failed pop passes), the coroutine face does not.
//
// Cost: a `std::deque<T>`; no allocation for a push or pop that does not wait, one small allocation
// per waiter otherwise.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdio>
#include <deque>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/wait_list.hpp"

namespace duet {

template <class T>
class Queue {
  static_assert(std::movable<T> && std::is_nothrow_move_constructible_v<T>,
                "duet::Queue<T>: T must be nothrow-movable (a value is never lost half-way through a hand-over)");

 public:
  static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

  /// A queue that holds at most `capacity` values (at least 1).
  explicit Queue(std::size_t capacity = unbounded) : capacity_(capacity) {
    if (capacity == 0) throw std::invalid_argument("duet::Queue: the capacity must be at least 1");
  }
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
  ~Queue() {
    serving_.end();
    pushers_.fail_all(uv_error(UV_ECANCELED));
    poppers_.fail_all(uv_error(UV_ECANCELED));
  }

  /// Calls `cb(std::error_code)` once `value` is in the queue (possibly before returning).
  template <class Callback>
  requires std::invocable<Callback&, std::error_code>
  void push(T value, Callback&& cb) {
    if (stop_requested_of(cb)) return cb(uv_error(UV_ECANCELED));
    if (closed_) return cb(make_error_code(errc::queue_closed));
    if (!pushers_.empty() || items_.size() >= capacity_)
      return pushers_.push_unstopped(std::forward<Callback>(cb), std::move(value));  // checked above
    items_.push_back(std::move(value));
    served_then(cb);
  }

  /// Calls `cb(std::error_code, T)` with the oldest value (possibly before returning).
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, T>
  void pop(Callback&& cb) {
    static_assert(std::default_initializable<T>,
                  "duet::Queue<T>::pop(cb) passes T() with an error: use the "
                  "coroutine face for a T that has no default constructor");
    pop_any(ValueOrDefault<std::decay_t<Callback>>{std::forward<Callback>(cb)});
  }

  /// Coroutine face: `co_await queue.push(v)`. Throws `std::system_error` (`errc::queue_closed`) if the
  /// queue is closed, `duet::Cancelled` if the waiting task is cancelled.
  [[nodiscard]] auto push(T value) {
    return awaitable<void>([this, v = std::move(value)](auto cb) mutable { this->push(std::move(v), std::move(cb)); });
  }

  /// Coroutine face: `co_await queue.pop()` — the oldest value, or an empty optional once the queue is
  /// closed and drained. Throws `duet::Cancelled` if the waiting task is cancelled.
  [[nodiscard]] auto pop() {
    return awaitable<std::optional<T>>([this](auto cb) { this->pop_any(EndAsEmpty<decltype(cb)>{std::move(cb)}); });
  }

  /// Puts `value` in the queue if there is room, it is open and no push waits; never waits.
  /// `value` is moved from only on success.
  template <class U>
  requires std::constructible_from<T, U&&>
  bool try_push(U&& value) {
    if (closed_ || !pushers_.empty() || items_.size() >= capacity_) return false;
    items_.emplace_back(std::forward<U>(value));
    hand_out_reporting();
    return true;
  }

  /// Takes the oldest value if there is one and no pop waits; never waits.
  std::optional<T> try_pop() {
    if (items_.empty() || !poppers_.empty()) return std::nullopt;
    std::optional<T> value(std::move(items_.front()));
    items_.pop_front();
    hand_out_reporting();
    return value;
  }

  /// Ends the queue (see the top of this header). Idempotent.
  void close() {
    closed_ = true;
    hand_out();
  }

  std::size_t size() const noexcept { return items_.size(); }  ///< values waiting to be popped
  bool empty() const noexcept { return items_.empty(); }
  bool full() const noexcept { return items_.size() >= capacity_; }
  bool closed() const noexcept { return closed_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t waiting_pushers() const noexcept { return pushers_.size(); }
  std::size_t waiting_poppers() const noexcept { return poppers_.size(); }

 private:
  /// Both faces of pop: `cb(std::error_code, std::optional<T>)`, the value present on success.
  template <class Callback>
  void pop_any(Callback&& cb) {
    if (stop_requested_of(cb)) return cb(uv_error(UV_ECANCELED), std::optional<T>());
    if (items_.empty() || !poppers_.empty()) {
      if (closed_ && items_.empty()) return cb(make_error_code(errc::queue_closed), std::optional<T>());
      poppers_.push_unstopped(std::forward<Callback>(cb));  // checked above
      return hand_out();  // values queued while poppers wait go to the longest waiting
    }
    std::optional<T> value(std::move(items_.front()));
    items_.pop_front();
    served_then(cb, std::move(value));  // the room made goes to a waiting pusher
  }

  /// The callback face's pop: a plain T (T() with an error). Keeps the callback's stop token.
  template <class Callback>
  struct ValueOrDefault {
    Callback cb;
    std::stop_token stop_token() const noexcept { return stop_token_of(cb); }
    void operator()(std::error_code ec, std::optional<T> value) {
      if (value)
        cb(ec, std::move(*value));
      else
        cb(ec, T());
    }
  };

  /// The coroutine face's pop: the end of the queue is an empty optional, not an error.
  template <class Completion>
  struct EndAsEmpty {
    Completion done;
    const std::stop_token& stop_token() const noexcept { return done.stop_token(); }
    /// The token is the awaiting task's, as the Completion's is (see wait_list.hpp).
    static constexpr bool stop_token_outside = requires { requires Completion::stop_token_outside; };
    Loop* loop() const noexcept { return done.loop(); }
    void operator()(std::error_code ec, std::optional<T> value) {
      if (ec == errc::queue_closed) return done(std::error_code(), std::optional<T>());
      done(ec, std::move(value));
    }
  };

  /// Serves the waiters this call made servable, then calls the caller's own callback, then rethrows
  /// what a waiter's callback threw. Nothing touches `*this` once the waiters are served.
  template <class Callback, class... Args>
  void served_then(Callback& cb, Args&&... args) {
    std::exception_ptr failure;
    try {
      hand_out();
    } catch (...) {
      failure = std::current_exception();
    }
    cb(std::error_code(), std::forward<Args>(args)...);
    if (failure) std::rethrow_exception(failure);
  }

  void hand_out_reporting() noexcept {
    try {
      hand_out();
    } catch (...) {
      std::fputs("duet::Queue: a waiter's callback threw inside try_push or try_pop; dropped\n", stderr);
    }
  }

  /// Moves values and waiters along until nothing more can be served.
  void hand_out() {
    serving_.run([this] {
      if (closed_ && !pushers_.empty()) {
        pushers_.take_front().cb(make_error_code(errc::queue_closed));  // its value is dropped
        return true;
      }
      if (!items_.empty() && !poppers_.empty()) {
        T value = std::move(items_.front());
        items_.pop_front();
        poppers_.take_front().cb(std::error_code(), std::optional<T>(std::move(value)));
        return true;
      }
      if (!closed_ && !pushers_.empty() && items_.size() < capacity_) {
        auto pusher = pushers_.take_front();
        std::error_code ec;
        try {
          items_.push_back(std::move(pusher.payload));
        } catch (const std::bad_alloc&) {
          ec = uv_error(UV_ENOMEM);  // the pusher hears that its value did not go in
        }
        pusher.cb(ec);
        return true;
      }
      if (closed_ && items_.empty() && !poppers_.empty()) {
        poppers_.take_front().cb(make_error_code(errc::queue_closed), std::optional<T>());
        return true;
      }
      return false;
    });
  }

  std::size_t capacity_;
  bool closed_ = false;
  std::deque<T> items_;
  detail::WaitList<void(std::error_code, std::optional<T>)> poppers_;
  detail::WaitList<void(std::error_code), T> pushers_;
  detail::Serving serving_;
};

}  // namespace duet
