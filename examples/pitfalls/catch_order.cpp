// catch_order — why the flag programs catch duet::Cancelled before anything else. Cancellation
// reaches a coroutine as an exception, `duet::Cancelled`, which is a `std::system_error` (and so a
// `std::exception`). A `catch (const std::system_error&)` meant for network errors catches it too:
// the cancelled task counts the cancellation as one more error and carries on instead of ending.
// (Python 3.8 made asyncio.CancelledError a BaseException, out of `except Exception`'s reach, for
// this reason; C++ has no such split, so the order of the handlers does it.)
//
//     catch_order          cancels both versions a moment after they start and prints how each ended
//
// docs/pitfalls.md explains it; a test checks what it prints.
#include <cstdio>
#include <system_error>

#include "duet/spawn.hpp"
#include "duet/timer.hpp"

using namespace std::chrono_literals;

// WRONG: the handler for failed steps also takes the cancellation, and the loop goes on.
duet::Task<int> three_steps_wrong(duet::Loop& loop) {
  int errors = 0;
  for (int step = 0; step < 3; ++step) {
    try {
      co_await duet::sleep(loop, 10s);  // stands for a request that may fail
    } catch (const std::system_error&) {
      ++errors;
    }
  }
  co_return errors;
}

// Right: a cancellation is rethrown before the handler for failures sees it.
duet::Task<int> three_steps(duet::Loop& loop) {
  int errors = 0;
  for (int step = 0; step < 3; ++step) {
    try {
      co_await duet::sleep(loop, 10s);
    } catch (const duet::Cancelled&) {
      throw;
    } catch (const std::system_error&) {
      ++errors;
    }
  }
  co_return errors;
}

/// Starts `task`, cancels it 10 ms later, and says how it ended.
void cancel_soon(duet::Loop& loop, const char* name, duet::Task<int> task) {
  auto handle = duet::spawn(loop, std::move(task));
  duet::sleep(loop, 10ms, [&handle](std::error_code) { handle.cancel(); });
  loop.run();
  try {
    std::printf("%s: finished, %d errors counted\n", name, handle.result());
  } catch (const duet::Cancelled&) {
    std::printf("%s: cancelled\n", name);
  }
}

int main() {
  duet::Loop loop;
  cancel_soon(loop, "wrong", three_steps_wrong(loop));
  cancel_soon(loop, "right", three_steps(loop));
}
