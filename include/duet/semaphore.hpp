// duet/semaphore.hpp — a counting semaphore for throttling: at most N holders at once, FIFO.
//
//     duet::Semaphore sem(5);
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
// from inside a waiter's callback does not recurse; the outer `release()` serves the next waiter.
//
// Cancellation: a waiting acquire whose callback's stop token is stopped leaves the queue and its
// callback is called with UV_ECANCELED immediately, on the thread that requested stop (the only duet
// operation that calls back inside `request_stop()`, since a semaphore has no loop to defer to).
// Destroying a semaphore calls every waiter with UV_ECANCELED; those callbacks must not throw.
//
// Cost: no allocation when a permit is free; one small allocation per waiter otherwise.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdio>
#include <optional>
#include <stop_token>
#include <system_error>
#include <utility>

#include "duet/cancellation.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/error.hpp"

namespace duet {

class Semaphore {
 public:
  explicit Semaphore(std::size_t permits) noexcept : available_(permits) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  ~Semaphore() {
    while (Waiter* w = head_) {
      unlink(w);
      auto cb = std::move(w->cb);
      delete w;
      cb(cancelled());
    }
  }

  /// Calls `cb(std::error_code)` when a permit is acquired (possibly before returning).
  template <class Callback>
  void acquire(Callback&& cb) {
    if (available_ > 0 && !head_) {
      --available_;
      cb(std::error_code());
      return;
    }
    std::stop_token token = stop_token_of(cb);
    auto* w = new Waiter(this, detail::UniqueFunction<void(std::error_code)>(std::forward<Callback>(cb)));
    link(w);
    if (token.stop_possible()) w->stop.emplace(std::move(token), StopFn{w});
  }

  /// Takes a permit if one is free and nobody is waiting; never waits.
  bool try_acquire() noexcept {
    if (available_ == 0 || head_) return false;
    --available_;
    return true;
  }

  /// Returns a permit: the longest waiter gets it (its callback runs now), or it becomes available.
  void release() {
    ++available_;
    if (dispatching_) return;  // the release() further up the stack serves the waiters
    dispatching_ = true;
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }
    } reset{dispatching_};
    while (available_ > 0 && head_) {
      --available_;
      Waiter* w = head_;
      unlink(w);
      auto cb = std::move(w->cb);
      delete w;
      cb(std::error_code());
    }
  }

  std::size_t available() const noexcept { return available_; }  ///< permits free now
  std::size_t waiting() const noexcept { return waiting_; }      ///< acquires queued

 private:
  struct Waiter;
  struct StopFn {
    Waiter* w;
    void operator()() const noexcept { w->sem->cancel(w); }
  };
  struct Waiter {
    Waiter(Semaphore* s, detail::UniqueFunction<void(std::error_code)> c) : sem(s), cb(std::move(c)) {}
    Semaphore* sem;
    detail::UniqueFunction<void(std::error_code)> cb;
    std::optional<std::stop_callback<StopFn>> stop;
    Waiter* prev = nullptr;
    Waiter* next = nullptr;
  };

  static std::error_code cancelled() noexcept { return uv_error(UV_ECANCELED); }

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
    if (tail_) tail_->next = w;
    else head_ = w;
    tail_ = w;
    ++waiting_;
  }

  void unlink(Waiter* w) noexcept {
    if (w->prev) w->prev->next = w->next;
    else head_ = w->next;
    if (w->next) w->next->prev = w->prev;
    else tail_ = w->prev;
    --waiting_;
  }

  std::size_t available_;
  std::size_t waiting_ = 0;
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
  bool dispatching_ = false;
};

}  // namespace duet
