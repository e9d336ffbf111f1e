// duet/shield.hpp — keep an operation going when the task awaiting it is cancelled (asyncio.shield).
//
//     co_await duet::shield(save_progress(loop, state));   // finishes even if this task is cancelled
//
// `shield(task)` spawns `task` on the awaiting task's loop (it starts on the loop's next turn) and
// awaits it. The task runs under a stop token of its own, so cancelling the awaiting task does not
// reach it: the awaiting task stops waiting at once and sees `duet::Cancelled` (on a later turn),
// while the shielded task runs on to its end, detached. Its failure is then nobody's to catch, so it
// goes to the loop's error hook (as for any dropped JoinHandle). Without a cancellation, `co_await
// shield(task)` returns the task's value or rethrows its exception, like `co_await task`.
//
// The shielded task must not use the awaiting task's locals: it may outlive them. Destroying the loop
// still cancels it, like every spawned task. Must be awaited inside a duet task (it takes the loop from
// the task's context); elsewhere it throws `std::logic_error`.
//
// Cost: one spawn (a shared state and a driver frame) and this coroutine's frame, both recycled.
#pragma once

#include <stdexcept>
#include <type_traits>
#include <utility>

#include "duet/detail/child.hpp"
#include "duet/spawn.hpp"

namespace duet {

/// Awaits `task` in a way its awaiter's cancellation cannot reach (see the top of this header).
template <class T>
[[nodiscard]] Task<T> shield(Task<T> task) {
  const TaskContext& context = co_await detail::current_context();
  if (!context.loop) throw std::logic_error("duet::shield must be awaited inside a duet task");
  JoinHandle<T> handle = spawn(*context.loop, std::move(task));
  if constexpr (std::is_void_v<T>)
    co_await handle;
  else
    co_return co_await handle;
}

}  // namespace duet
