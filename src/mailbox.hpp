// A loop's mailbox (include/duet/detail/loop_core.hpp): the queue that other threads, and the loop's
// own deferred work, post functions to. A header of the library's own, never installed.
#pragma once

#include <uv.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "duet/detail/loop_core.hpp"
#include "duet/detail/unique_function.hpp"

namespace duet::detail {

/// Posted to with `post_to` (loop_core.hpp); the loop drains `queue` when `async` fires.
struct Mailbox {
  std::mutex mutex;
  std::vector<UniqueFunction<void()>> queue;
  uv_async_t* async = nullptr;  // (under mutex) valid until `closed` is set
  bool closed = false;          // (under mutex) the Loop is being destroyed
  // (under mutex) Stops routed here from another thread after `closed` was set: a task's cancel() on
  // another thread that raced the Loop's destruction. That destruction waits for such cancels of its
  // tasks to return, then delivers these before it frees any task's frame.
  std::vector<UniqueFunction<void()>> late_stops;

  // The loop's thread, as the core has it (loop_core.hpp): for a task's cancel(), which may come from
  // a thread that outlives the Loop, to tell whether it is on the loop's thread.
  std::atomic<std::thread::id> loop_thread;
};

}  // namespace duet::detail
