// spinner_blocking — what goes wrong: the slow function called on the loop's own thread.
// The spinner task is spawned, but a coroutine that blocks keeps the loop from running anything else
// until it returns: the spinner never spins (at most its first frame), and the answer comes after the
// same seconds of a frozen terminal. examples/coroutines/spinner.cpp is the right version; the only
// difference is the line marked WRONG. docs/spinner.md runs both.
#include "duet/spawn.hpp"
#include "duet/timer.hpp"
#include "spinner.hpp"

using namespace std::chrono_literals;

duet::Task<> spin(duet::Loop& loop) {
  for (unsigned frame = 0;; ++frame) {  // every 100 ms until cancelled
    spinner::draw(frame);
    co_await duet::sleep(loop, 100ms);
  }
}

duet::Task<int> supervisor(duet::Loop& loop) {
  auto spinning = duet::spawn(loop, spin(loop));
  int answer = spinner::slow();  // WRONG: a blocking call; the right one is co_await duet::offload(loop, spinner::slow)
  spinning.cancel();
  try {
    co_await spinning;
  } catch (const duet::Cancelled&) {
  }
  spinner::erase();
  co_return answer;
}

int main() {
  duet::Loop loop;
  std::printf("Answer: %d\n", duet::run(loop, supervisor(loop)));
}
