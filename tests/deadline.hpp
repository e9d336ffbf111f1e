// Test support: a limit on how long a test's loop may run, so that an event that never comes fails
// the test (`expired`) instead of hanging it.
#pragma once

#include <chrono>

#include "duet/timer.hpp"

namespace duet::test {

/// Stops the loop once `limit` has passed. Its timer does not keep the loop running by itself.
class Deadline {
 public:
  Deadline(Loop& loop, std::chrono::milliseconds limit) : timer_(loop) {
    timer_.keep_loop_alive(false);
    timer_.start(limit, std::chrono::milliseconds(0), [this, &loop] {
      expired = true;
      loop.stop();
    });
  }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  bool expired = false;

 private:
  Timer timer_;
};

}  // namespace duet::test
