// duet/lock.hpp — a mutual-exclusion lock for code on one loop (asyncio.Lock): one holder at a time,
// waiters served in arrival order.
//
//     auto guard = co_await lock.lock();   // coroutine face: an RAII guard, unlocked when it goes
//     ...                                   // out of scope (or by guard.release())
//
//     lock.lock([&](std::error_code ec) {  // callback face
//       if (ec) return;                      // UV_ECANCELED: cancelled while waiting
//       ...; lock.unlock();
//     });
//
// It guards a critical section that spans `co_await`s (two tasks appending to one file, say); code
// that does not suspend needs no lock, since a loop runs one callback at a time. It is not a thread
// mutex: use it from the loop's thread.
//
// `lock(cb)` calls `cb(std::error_code)` once the lock is the caller's: inside `lock` if it is free
// and nobody waits, otherwise from the `unlock()` that hands it over. `unlock()` gives the lock
// straight to the longest waiter, so nobody can overtake the queue. Unlocking a lock that is not
// locked throws `std::logic_error`. Not reentrant: a holder that locks again waits for itself.
//
// Cancellation, destruction with waiters and a stop requested from another thread behave as for
// `Semaphore` (semaphore.hpp): a Lock is a semaphore with one permit, and shares its waiter list.
//
// Cost: no allocation when the lock is free; one small allocation per waiter otherwise.
#pragma once

#include <concepts>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "duet/semaphore.hpp"

namespace duet {

class Lock {
 public:
  Lock() noexcept = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  /// Holds the lock for a scope: unlocks when destroyed (or by `release()`). Move-only.
  using Guard = Semaphore::Permit;

  /// Calls `cb(std::error_code)` once the lock is held (possibly before returning).
  template <class Callback>
  requires std::invocable<Callback&, std::error_code>
  void lock(Callback&& cb) {
    sem_.acquire(std::forward<Callback>(cb));
  }

  /// Coroutine face: `auto guard = co_await lock.lock();`. Throws `duet::Cancelled` if the waiting
  /// coroutine is cancelled.
  template <class T = void>
  [[nodiscard]] auto lock() { return sem_.acquire<T>(); }  // dependent: built only if called

  /// Takes the lock if it is free and nobody waits; never waits.
  bool try_lock() noexcept { return sem_.try_acquire(); }

  /// Hands the lock to the longest waiter (its callback runs now), or frees it.
  void unlock() {
    if (!locked()) throw std::logic_error("duet::Lock::unlock: the lock is not locked");
    sem_.release();
  }

  bool locked() const noexcept { return sem_.available() == 0; }
  std::size_t waiting() const noexcept { return sem_.waiting(); }  ///< lock calls queued

 private:
  Semaphore sem_{1};
};

}  // namespace duet
