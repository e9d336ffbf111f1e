// duet/event.hpp — a flag that tasks wait for (asyncio.Event): `set()` wakes every waiter.
//
//     duet::Event ready;
//     co_await ready.wait();                 // coroutine face: returns once the event is set
//     ready.wait([](std::error_code ec) {})  // callback face
//     ready.set();                           // elsewhere: every waiter runs, in arrival order
//
// `wait` completes at once (inside the call) while the event is set; otherwise it waits until
// `set()`, which calls every waiter queued at that moment, in order, inside `set()`. A waiter that
// calls `clear()` does not un-wake the others (as in asyncio: they were all woken by that `set()`),
// and a `wait` begun after the clear waits for the next `set()`. `clear()` never wakes anyone.
//
// A waiter's callback that destroys the event ends the set(): the waiters not yet woken get
// UV_ECANCELED, as on any destruction.
//
// Cancellation, destruction with waiters (they get UV_ECANCELED) and a stop requested from another
// thread behave as for `Semaphore` (semaphore.hpp), whose waiter list this shares. Loop thread only.
//
// Cost: no allocation while set; one small allocation per waiter otherwise.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/wait_list.hpp"

namespace duet {

class Event {
 public:
  explicit Event(bool set = false) noexcept : set_(set) {}
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event();

  /// Calls `cb(std::error_code)` once the event is set (inside `wait` if it is set now).
  template <class Callback>
  requires std::invocable<Callback&, std::error_code>
  void wait(Callback&& cb) {
    if (set_ && !stop_requested_of(cb)) return cb(std::error_code());
    waiters_.push(std::forward<Callback>(cb), next_ticket_++);  // a stopped token is called back here
  }

  /// Coroutine face: `co_await event.wait();` throws `duet::Cancelled` if the waiting task is cancelled.
  template <class = void>
  [[nodiscard]] auto wait() {
    return awaitable<void>([this](auto cb) { this->wait(std::move(cb)); });
  }

  /// Sets the event and wakes every waiter queued now, in order. A waiter's callback may throw (the
  /// others are still woken; the first exception is rethrown afterwards) or destroy the event.
  void set();

  /// Clears the event: later waits wait for the next `set()`.
  void clear() noexcept { set_ = false; }

  bool is_set() const noexcept { return set_; }
  std::size_t waiting() const noexcept { return waiters_.size(); }

 private:
  bool set_;
  std::uint64_t next_ticket_ = 0;  // each waiter's place in line
  std::uint64_t wake_before_ = 0;  // the last set() wakes the waiters with a smaller ticket
  detail::WaitList<void(std::error_code), std::uint64_t> waiters_;
  detail::Serving serving_;
};

}  // namespace duet
