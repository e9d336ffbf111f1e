// duet/with_timeout.hpp — give up on an operation that takes too long.
//
//     auto bytes = co_await duet::with_timeout(2s, duet::read_file(loop, path));
//     auto flag  = co_await duet::with_timeout(5s, get_flag(loop, cc));      // a Task works too
//     auto [a, b] = co_await duet::with_timeout(5s, duet::when_all(f(), g()));   // and combinators
//
// Awaits `awaitable` (any duet operation, Task, combinator, TaskGroup or JoinHandle: an rvalue is
// moved in, an lvalue is awaited in place and must outlive the wait). If it has not finished after
// `duration`, it is cancelled (exactly as `JoinHandle::cancel` would cancel it) and, once it has
// stopped, `duet::TimedOut` is thrown. A result that arrives in the same turn as the deadline wins.
// Cancelling the awaiting coroutine cancels both, and it sees `duet::Cancelled` (even if the work
// finished in that turn; a failure of the work's own is rethrown as it is). A JoinHandle is the
// exception: the timeout stops only the waiting, as cancelling its awaiter does, and the spawned task
// runs on (cancel it through the handle if it should stop too).
//
// Must be awaited inside a duet task (it takes the loop from the task's context); elsewhere it throws
// `std::logic_error`. Cost: one timer request from the loop's pool and one child frame (recycled).
#pragma once

#include <optional>
#include <stdexcept>

#include "duet/detail/child.hpp"
#include "duet/detail/chrono.hpp"
#include "duet/timer.hpp"

namespace duet {
namespace detail {

template <class A>
struct AwaitResult {
  using type = decltype(std::declval<A&&>().await_resume());
};
template <class A>
requires requires(A&& a) { static_cast<A&&>(a).operator co_await(); }
struct AwaitResult<A> {
  using type = decltype(std::declval<A&&>().operator co_await().await_resume());
};

template <class A>
class WithTimeout final : public Join {
  using T = typename AwaitResult<A>::type;

 public:
  WithTimeout(std::chrono::nanoseconds limit, A&& awaitable) : limit_(limit), awaitable_(static_cast<A&&>(awaitable)) {}
  WithTimeout(WithTimeout&&) = default;

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> parent) {
    const TaskContext& context = context_of(parent);
    if (!context.loop) throw std::logic_error("duet::with_timeout must be awaited inside a duet task");
    parent_ = parent;
    parent_token_ = context.stop_token;
    link_.link(context.stop_token, work_stop_);
    remaining_ = 3;  // the work, the timer, and this call until both are started
    Loop* loop = context.loop;
    duet::sleep(*loop, limit_, duet::with_cancellation(timer_stop_.get_token(), [this, loop](std::error_code ec) {
      if (ec) {  // the work finished first and stopped the timer
        if (auto next = arrive(); next != std::noop_coroutine()) resume(next);
        return;
      }
      // The deadline passed. Libuv runs timers before I/O in each turn, so the cancel waits
      // for the next turn: a result that arrives in this same turn still wins.
      timed_out_ = true;
      loop->core().defer([this] {
        if (!work_done_) work_stop_.request_stop();
        if (auto next = arrive(); next != std::noop_coroutine()) resume(next);
      });
    }));
    child_ = make_child<T, A>(static_cast<A&&>(awaitable_), outcome_);
    child_.start(*this, 0, {context.loop, work_stop_.get_token()});
    return arrive() == std::noop_coroutine();
  }

  T await_resume() {
    if (outcome_.failed()) {
      if (timed_out_ && is_cancelled_exception(outcome_.error()) && !parent_token_.stop_requested()) throw TimedOut();
      // (a result that arrived in the deadline's own turn is returned below, timed out or not)
      std::rethrow_exception(outcome_.error());
    }
    if (parent_token_.stop_requested()) throw Cancelled();  // it finished, but the awaiter was cancelled
    if constexpr (std::is_void_v<T>)
      return;
    else
      return outcome_.take();
  }

  // Join: the work is done; stop the timer (its callback still has to arrive).
  std::coroutine_handle<> child_done(std::size_t) noexcept override {
    work_done_ = true;
    timer_stop_.request_stop();
    return arrive();
  }

 private:
  std::coroutine_handle<> arrive() noexcept { return --remaining_ == 0 ? parent_ : std::noop_coroutine(); }

  std::chrono::nanoseconds limit_;
  A awaitable_;
  Outcome<T> outcome_;
  Child child_;
  std::coroutine_handle<> parent_;
  std::stop_token parent_token_;
  int remaining_ = 0;
  bool timed_out_ = false;
  bool work_done_ = false;
  std::stop_source work_stop_;
  std::stop_source timer_stop_;
  StopLink link_;
};

}  // namespace detail

/// Awaits `awaitable`, or throws `duet::TimedOut` after `duration` (see the top of this header).
/// An rvalue is moved in; an lvalue (a TaskGroup, a JoinHandle) is awaited where it is.
template <class Rep, class Period, class A>
[[nodiscard]] detail::WithTimeout<A> with_timeout(std::chrono::duration<Rep, Period> duration, A&& awaitable) {
  return detail::WithTimeout<A>(std::chrono::duration_cast<std::chrono::nanoseconds>(duration),
                                std::forward<A>(awaitable));
}

}  // namespace duet
