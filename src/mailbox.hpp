// A loop's mailbox (include/duet/detail/loop_core.hpp): the queue that other threads, and the loop's
// own deferred work, post functions to. A header of the library's own, never installed.
#pragma once

#include <uv.h>

#include <mutex>
#include <vector>

#include "duet/detail/loop_core.hpp"
#include "duet/detail/unique_function.hpp"

namespace duet::detail {

/// Once the Loop is being destroyed the mailbox is closed, and a post is refused (the caller then
/// destroys the function, on its own thread).
struct Mailbox {
  std::mutex mutex;
  std::vector<UniqueFunction<void()>> queue;
  uv_async_t* async = nullptr;  // (under mutex) valid until `closed` is set
  bool closed = false;          // (under mutex) the Loop is being destroyed

  /// Thread-safe: queues `fn` and wakes the loop. False (and `fn` untouched) if the mailbox is closed.
  bool send(UniqueFunction<void()>& fn);
};

}  // namespace duet::detail
