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

  // The loop's thread, as the core has it (loop_core.hpp): for a task's cancel() on another thread,
  // which may outlive the Loop, to tell whether it is on the loop's thread.
  std::atomic<std::thread::id> loop_thread;
};

}  // namespace duet::detail
