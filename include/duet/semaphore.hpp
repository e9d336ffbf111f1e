// duet/semaphore.hpp — a counting semaphore for throttling: at most N holders at once, FIFO.
//
//     duet::Semaphore sem(5);
//     auto permit = co_await sem.acquire();   // coroutine face: an RAII permit

//     sem.acquire([&](std::error_code ec) {
//       if (ec) return;                 // UV_ECANCELED: cancelled while waiting
//       start_download(..., [&] { sem.release(); });
//     });
//
// `acquire(cb)` calls `cb(std::error_code)` once a permit is the caller's: right away, inside
// `acquire`, when one is free and nobody is waiting; otherwise from the `release()` that frees one,
// waiters served strictly in arrival order. Every successful acquire owes exactly one `release()`.
// Permits are handed straight to the next waiter, so a waiter can never be overtaken.
//
// Not bound to a loop and not thread-safe: use it from one thread (the loop's). A `release()` made
// from inside a waiter's callback does not recurse; the outer `release()` serves the next waiter. A
// waiter's callback may destroy the semaphore.
//
// Cancellation: a waiting acquire whose callback's stop token is stopped leaves the queue and its
// callback is called with UV_ECANCELED immediately, inside `request_stop()` (the only duet operation
// that calls back there, since a semaphore has no loop to defer to). An acquire whose token is already
// stopped calls back with UV_ECANCELED inside `acquire`. A stop requested on another thread is posted
// to the loop when the callback knows it (the coroutine face: the awaiting task's loop), and handled
// there; a plain callback knows no loop, so its stop must be requested on the semaphore's thread.
// Destroying a semaphore calls every waiter with UV_ECANCELED; those callbacks must not throw.
//
// Cost: no allocation when a permit is free; one small allocation per waiter otherwise.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdio>
#include <exception>
#include <optional>
#include <stop_token>
#include <system_error>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/loop_core.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/error.hpp"
#include "duet/loop.hpp"

namespace duet {

class Semaphore {
 public:
  explicit Semaphore(std::size_t permits) noexcept : available_(permits) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  ~Semaphore() {
    if (destroyed_) *destroyed_ = true;  // a release() further up the stack must stop touching *this
    while (Waiter* w = head_) {
      unlink(w);
      auto cb = std::move(w->cb);
      delete w;
      cb(cancelled());
    }
  }

  /// Calls `cb(std::error_code)` when a permit is acquired (possibly before returning).
  template <class Callback>
  requires std::invocable<Callback&, std::error_code>
  void acquire(Callback&& cb) {
    if (available_ > 0 && !head_) {
      --available_;
      cb(std::error_code());
      return;
    }
    std::stop_token token = stop_token_of(cb);
    if (token.stop_requested()) {  // cancelled before it could wait
      cb(cancelled());
      return;
    }
    detail::LoopCore* core = loop_core_of(cb);
    auto* w = new Waiter(this, detail::UniqueFunction<void(std::error_code)>(std::forward<Callback>(cb)));
    link(w);
    // A stop requested from now on reaches `cancel`, on this thread (or posted to it). One requested
    // since the check above runs inside `watch`, where `w` must not be freed: it is served after.
    w->registering = true;
    w->stop.watch(core, std::move(token), StopFn{w});
    w->registering = false;
    if (w->stopped_while_registering) cancel(w);
  }

  /// A permit held for a scope: released when destroyed (or by `release()`). Move-only.
  class Permit {
   public:
    Permit() noexcept = default;
    explicit Permit(Semaphore* sem) noexcept : sem_(sem) {}
    Permit(Permit&& o) noexcept : sem_(std::exchange(o.sem_, nullptr)) {}
    Permit& operator=(Permit&& o) noexcept {
      if (this != &o) {
        release();
        sem_ = std::exchange(o.sem_, nullptr);
      }
      return *this;
    }
    ~Permit() { release(); }
    /// Returns the permit now (idempotent).
    void release() {
      if (sem_) std::exchange(sem_, nullptr)->release();
    }
    explicit operator bool() const noexcept { return sem_ != nullptr; }

   private:
    Semaphore* sem_ = nullptr;
  };

  /// Coroutine face: `auto permit = co_await sem.acquire();` — the permit is released when `permit`
  /// goes out of scope. Throws `duet::Cancelled` if the waiting coroutine is cancelled.
  [[nodiscard]] auto acquire() {
    auto op = awaitable<void>([this](auto cb) { acquire(std::move(cb)); });
    return PermitAwaitable<decltype(op)>{std::move(op), this};
  }

  /// The awaitable `acquire()` returns: the generic one, with a Permit as its result.
  template <class Inner>
  struct PermitAwaitable {
    Inner inner;
    Semaphore* sem;
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
      return inner.await_suspend(h);
    }
    Permit await_resume() {
      inner.await_resume();
      return Permit(sem);
    }
  };

  /// Takes a permit if one is free and nobody is waiting; never waits.
  bool try_acquire() noexcept {
    if (available_ == 0 || head_) return false;
    --available_;
    return true;
  }

  /// Returns a permit: the longest waiter gets it (its callback runs now), or it becomes available.
  /// A waiter's callback may release again (served by this loop, not by recursion), may throw (the
  /// other waiters are still served; the first exception is rethrown afterwards), and may even destroy
  /// the semaphore.
  void release() {
    ++available_;
    if (destroyed_) return;  // a release() further up the stack serves the waiters
    bool destroyed = false;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"  // cleared below before returning, unless *this is gone
#endif
    destroyed_ = &destroyed;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    std::exception_ptr failure;
    while (available_ > 0 && head_) {
      --available_;
      Waiter* w = head_;
      unlink(w);
      auto cb = std::move(w->cb);
      delete w;
      try {
        cb(std::error_code());
      } catch (...) {
        if (!failure) failure = std::current_exception();
      }
      if (destroyed) break;
    }
    if (!destroyed) destroyed_ = nullptr;
    if (failure) std::rethrow_exception(failure);
  }

  std::size_t available() const noexcept { return available_; }  ///< permits free now
  std::size_t waiting() const noexcept { return waiting_; }      ///< acquires queued

 private:
  struct Waiter;
  struct StopFn {
    Waiter* w;
    void operator()() const noexcept {
      if (w->registering)
        w->stopped_while_registering = true;
      else
        w->sem->cancel(w);
    }
  };
  struct Waiter {
    Waiter(Semaphore* s, detail::UniqueFunction<void(std::error_code)> c) : sem(s), cb(std::move(c)) {}
    Semaphore* sem;
    detail::UniqueFunction<void(std::error_code)> cb;
    detail::OnLoopStop<StopFn> stop;
    bool registering = false;
    bool stopped_while_registering = false;
    Waiter* prev = nullptr;
    Waiter* next = nullptr;
  };

  static std::error_code cancelled() noexcept { return uv_error(UV_ECANCELED); }

  /// The loop a callback knows (an awaiting task's), if any.
  template <class Callback>
  static detail::LoopCore* loop_core_of(const Callback& cb) noexcept {
    if constexpr (requires {
                    { cb.loop() } -> std::convertible_to<Loop*>;
                  }) {
      Loop* loop = cb.loop();
      return loop ? &loop->core() : nullptr;
    } else {
      return nullptr;
    }
  }

  void cancel(Waiter* w) noexcept {
    unlink(w);
    auto cb = std::move(w->cb);
    delete w;  // destroys the stop_callback that is running now: allowed on its own thread
    try {
      cb(cancelled());
    } catch (...) {
      // The semaphore has no loop whose error hook could take this; say so rather than lose it.
      std::fputs("duet::Semaphore: a waiter's callback threw while being cancelled\n", stderr);
    }
  }

  void link(Waiter* w) noexcept {
    w->prev = tail_;
    if (tail_)
      tail_->next = w;
    else
      head_ = w;
    tail_ = w;
    ++waiting_;
  }

  void unlink(Waiter* w) noexcept {
    if (w->prev)
      w->prev->next = w->next;
    else
      head_ = w->next;
    if (w->next)
      w->next->prev = w->prev;
    else
      tail_ = w->prev;
    --waiting_;
  }

  std::size_t available_;
  std::size_t waiting_ = 0;
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
  bool* destroyed_ = nullptr;  // set while release() serves waiters
};

}  // namespace duet
