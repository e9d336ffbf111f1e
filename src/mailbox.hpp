// A loop's mailbox (include/duet/detail/loop_core.hpp): the queue that other threads, and the loop's
// own deferred work, post functions to. A header of the library's own, never installed.
#pragma once

#include <uv.h>

#include <mutex>
#include <stop_token>
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

  // A task's cancel() on another thread requests stop under this lock, and the Loop's destruction
  // takes it to refuse them from then on. So a stop requested on another thread has either been
  // routed here in full before the mailbox closes, or is not requested at all (the destruction cancels
  // the task itself). Recursive: a stop callback of the user's may cancel another task of the loop.
  // Taken before `mutex`, never inside it. (On the loop thread, where no destruction can run at the
  // same time, the stop is requested outside it: it runs the code of the coroutines it resumes.)
  std::recursive_mutex cancel_mutex;
  bool cancels_refused = false;  // (under cancel_mutex)
  LoopCore* core = nullptr;      // (under cancel_mutex) valid until `cancels_refused` is set
};

}  // namespace duet::detail
