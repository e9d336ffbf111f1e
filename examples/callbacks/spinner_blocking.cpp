// spinner_blocking — what goes wrong: the slow function called on the loop's own thread.
// The timer is started, but a callback that blocks keeps the loop from running anything else until it
// returns: the spinner never spins (at most its first frame), and the answer comes after the same
// seconds of a frozen terminal. examples/callbacks/spinner.cpp is the right version; the only
// difference is the callback marked WRONG. docs/spinner.md runs both.
#include "duet/timer.hpp"
#include "spinner.hpp"

using namespace std::chrono_literals;

int main() {
  duet::Loop loop;
  duet::Timer spin(loop);
  unsigned frame = 0;
  spin.start(0ms, 100ms, [&] { spinner::draw(frame++); });  // every 100 ms until stopped
  loop.post([&] {                                            // WRONG: runs spinner::slow on the loop's thread;
    const int answer = spinner::slow();                      // the right one is duet::offload(loop, spinner::slow, cb)
    spin.stop();
    spinner::erase();
    std::printf("Answer: %d\n", answer);
  });
  loop.run();
}
