// duet/semaphore.hpp — a counting semaphore for throttling: at most N holders at once, FIFO.
//
//     duet::Semaphore sem(5);
//     auto permit = co_await sem.acquire();   // coroutine face: an RAII permit
//     sem.acquire([&](std::error_code ec, duet::Semaphore::Permit permit) {   // callback face
//       if (ec) return;                 // UV_ECANCELED: cancelled while waiting
//       start_download(..., [permit = std::move(permit)] { /* released when this is dropped */ });
//     });
//
// `acquire(cb)` calls `cb(std::error_code, Permit)` (or `cb(std::error_code)`) once a permit is the
// caller's: right away, inside `acquire`, when one is free and nobody is waiting; otherwise from the
// `release()` that frees one, waiters served strictly in arrival order. A callback taking the
// `Permit` owns it: it is released when the permit is destroyed, wherever the chain that carries it
// ends (so it must not destroy the semaphore while the permit lives: `forget()` it first). A callback
// taking only the error code owes exactly one `release()`.
// Permits are handed straight to the next waiter, so a waiter can never be overtaken.
//
// Not bound to a loop and not thread-safe: use it from one thread (the loop's). A `release()` made
// from inside a waiter's callback does not recurse; the outer `release()` serves the next waiter. A
// waiter's callback may destroy the semaphore.
//
// Cancellation: a waiting acquire whose callback's stop token is stopped leaves the queue and its
// callback is called with UV_ECANCELED immediately, inside `request_stop()` (with `Lock`, `Event` and
// `Queue`, which share its waiter list, the only duet operations that call back there: they have no
// loop to defer to). An acquire whose token is already stopped calls back with UV_ECANCELED inside
// `acquire`, even with a permit free. A stop requested on another thread is posted to the loop when
// the callback knows it (the coroutine face: the awaiting task's loop), and handled there; a plain
// callback knows no loop, so its stop must be requested on the semaphore's thread.
// Destroying a semaphore calls every waiter with UV_ECANCELED; those callbacks must not throw.
//
// A permit can outlive the code that took it: `Permit::forget()` gives up the RAII release, and the
// holder calls `release()` when it is done (a producer that hands a permit to a consumer, say).
//
// Cost: no allocation when a permit is free; one small allocation per waiter otherwise (the waiter
// list is detail/wait_list.hpp, shared with Lock, Event and Queue).
#pragma once

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <system_error>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/wait_list.hpp"

namespace duet {

class Semaphore {
 public:
  explicit Semaphore(std::size_t permits) noexcept : available_(permits) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  ~Semaphore() {
    serving_.end();  // a release() further up the stack must stop touching *this
    waiters_.fail_all(uv_error(UV_ECANCELED));
  }

  /// Calls `cb(std::error_code)` when a permit is acquired (possibly before returning).
  template <class Callback>
  requires std::invocable<Callback&, std::error_code>
  void acquire(Callback&& cb) {
    if (stop_requested_of(cb)) return cb(uv_error(UV_ECANCELED));  // even with a permit free
    if (try_acquire()) return cb(std::error_code());
    waiters_.push_unstopped(std::forward<Callback>(cb));
  }

  /// A permit held for a scope: released when destroyed (or by `release()`). Move-only.
  class Permit {
   public:
    Permit() noexcept = default;
    explicit Permit(Semaphore* sem) noexcept : sem_(sem) {}
    Permit(Permit&& o) noexcept : sem_(std::exchange(o.sem_, nullptr)) {}
    Permit& operator=(Permit&& o) noexcept {
      if (this != &o) {
        release_quietly();
        sem_ = std::exchange(o.sem_, nullptr);
      }
      return *this;
    }
    ~Permit() { release_quietly(); }
    /// Returns the permit now (idempotent).
    void release() {
      if (sem_) std::exchange(sem_, nullptr)->release();
    }
    /// Gives up the automatic release: the permit stays taken until someone calls the semaphore's
    /// `release()` by hand. Returns the semaphore (null if this held no permit).
    Semaphore* forget() noexcept { return std::exchange(sem_, nullptr); }
    explicit operator bool() const noexcept { return sem_ != nullptr; }

   private:
    /// A destructor must not throw: what a waiter's callback threw while taking this permit is said
    /// on stderr instead (the semaphore has no loop whose error hook could take it).
    void release_quietly() noexcept {
      try {
        release();
      } catch (...) {
        std::fputs("duet::Semaphore: a waiter's callback threw when a permit was released by its destructor\n", stderr);
      }
    }
    Semaphore* sem_ = nullptr;
  };

  /// Calls `cb(std::error_code, Permit)` when a permit is acquired: the callback face with the RAII
  /// permit, for a chain of callbacks that carries it along (moved into the next callback) and so
  /// releases it wherever the chain ends. With an error the Permit is empty.
  template <class Callback>
  requires std::invocable<Callback&, std::error_code, Permit>
  void acquire(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    acquire(with_cancellation(std::move(token), [this, cb = std::forward<Callback>(cb)](std::error_code ec) mutable {
      cb(ec, ec ? Permit() : Permit(this));
    }));
  }

  /// Coroutine face: `auto permit = co_await sem.acquire();` — the permit is released when `permit`
  /// goes out of scope. Throws `duet::Cancelled` if the waiting coroutine is cancelled.
  template <class = void>
  [[nodiscard]] auto acquire() {
    // The awaitable has just seen the task's stop token (the one `cb` carries) not stopped: no second look.
    auto op = awaitable<void>([this](auto cb) {
      if (try_acquire()) return cb(std::error_code());
      waiters_.push_unstopped(std::move(cb));
    });
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
    if (available_ == 0 || !waiters_.empty()) return false;
    --available_;
    return true;
  }

  /// Returns a permit: the longest waiter gets it (its callback runs now), or it becomes available.
  /// A waiter's callback may release again (served by this loop, not by recursion), may throw (the
  /// other waiters are still served; the first exception is rethrown afterwards), and may even destroy
  /// the semaphore.
  void release() {
    ++available_;
    serving_.run([this] {
      if (available_ == 0 || waiters_.empty()) return false;
      --available_;
      waiters_.take_front().cb(std::error_code());
      return true;
    });
  }

  std::size_t available() const noexcept { return available_; }     ///< permits free now
  std::size_t waiting() const noexcept { return waiters_.size(); }  ///< acquires queued

 private:
  std::size_t available_;
  detail::WaitList<void(std::error_code)> waiters_;
  detail::Serving serving_;
};

}  // namespace duet
