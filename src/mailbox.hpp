// A loop's mailbox (include/duet/detail/loop_core.hpp): the queue that other threads, and the loop's
// own deferred work, post functions to. A header of the library's own, never installed.
#pragma once

#include <uv.h>

#include <mutex>
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
};

}  // namespace duet::detail
