// duet/resume_on.hpp — move the running coroutine to another loop's thread.
//
//     duet::LoopGroup workers(4);
//     duet::Task<> handle(duet::Loop& home, std::string text) {
//       co_await duet::resume_on(workers[1]);   // from here on, this task runs on workers[1]'s thread
//       auto digest = hash(text);              //   (and awaits operations made on that loop)
//       co_await duet::resume_on(home);        // back home
//     }
//
// `co_await duet::resume_on(there)` suspends the task and resumes it on `there`'s thread, on a later
// turn of that loop (never inside the `co_await`). Awaiting the loop the task is on already does not
// suspend. Operations awaited while away must be made on the loop the task is on at that moment
// (every duet object stays bound to its loop).
//
// A task's own loop is the one it was spawned on, or whose task awaited it. A task that finishes while
// away is not a problem: its awaiting coroutine is resumed on its own loop all the same. While a task
// is away its own loop keeps running (as with a `Loop::Hold`), so `duet::run` does not return early.
//
// Cancellation crosses the hop: the task keeps its stop token, so cancelling it (from its own loop or
// anywhere) cancels what it awaits on the other loop; a stop requested while the task is in transit
// makes its next operation throw `duet::Cancelled`. A task already cancelled does not hop to another
// loop: the `co_await` throws `duet::Cancelled`.
//
// Failure: if `there` is destroyed before the task gets there, the task is resumed where it was (or,
// if that loop is being destroyed too, on its own loop) and the `co_await` throws `std::system_error`
// with `duet::errc::loop_closed`. `resume_on` awaited outside
// a duet task running on a loop (`spawn`, `run`, or a task they await) throws `std::logic_error`.
//
// Lifetime rule: a loop must outlive the tasks it has sent away, or be destroyed only once they are
// home or no loop runs them: `LoopGroup` stops all its loops, and cancels their tasks, before it
// destroys any (a loop a task is away on must not be destroyed before the task's own loop).
//
// Cost: a hop is one small shared allocation and a post (a mutex and a `uv_async_send`); the first hop
// away from the task's own loop allocates its record of where it is (freed when it comes home).
#pragma once

#include <concepts>
#include <coroutine>
#include <memory>

#include "duet/loop.hpp"
#include "duet/task.hpp"

namespace duet {
namespace detail {

struct HopState;
/// Starts the hop of `task` (suspended as `h`) to `there`; false if it is there already.
bool start_hop(PromiseBase& task, std::coroutine_handle<> h, Loop& there, std::shared_ptr<HopState>& hop);
/// Throws if the hop failed (the target loop was destroyed first).
void check_hop(const HopState& hop);
/// The awaiter is being destroyed: a hop still in flight will not resume the (destroyed) task.
void leave_hop(HopState& hop) noexcept;

}  // namespace detail

/// The awaiter of `resume_on`.
class [[nodiscard]] ResumeOn {
 public:
  explicit ResumeOn(Loop& there) noexcept : there_(&there) {}
  ResumeOn(const ResumeOn&) = delete;
  ResumeOn& operator=(const ResumeOn&) = delete;
  ~ResumeOn() {
    if (hop_) detail::leave_hop(*hop_);
  }

  bool await_ready() const noexcept { return false; }
  template <class Promise>
  requires std::derived_from<Promise, detail::PromiseBase>
  bool await_suspend(std::coroutine_handle<Promise> h) { return detail::start_hop(h.promise(), h, *there_, hop_); }
  void await_resume() const {
    if (hop_) detail::check_hop(*hop_);
  }

 private:
  Loop* there_;
  std::shared_ptr<detail::HopState> hop_;
};

/// `co_await duet::resume_on(there)`: the task goes on on `there`'s thread.
inline ResumeOn resume_on(Loop& there) noexcept { return ResumeOn(there); }

}  // namespace duet
