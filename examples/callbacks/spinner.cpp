// spinner — keep the terminal alive while a slow computation runs on the thread pool.
// This is the callbacks style; examples/coroutines/spinner.cpp is the same program with coroutines.
#include "spinner.hpp"

#include "duet/offload.hpp"
#include "duet/timer.hpp"

using namespace std::chrono_literals;

int main() {
  duet::Loop loop;
  duet::Timer spin(loop);
  unsigned frame = 0;
  spin.start(0ms, 100ms, [&] { spinner::draw(frame++); });  // every 100 ms until stopped
  duet::offload(loop, spinner::slow, [&](std::error_code, int answer) {
    spin.stop();
    spinner::erase();
    std::printf("Answer: %d\n", answer);
  });
  loop.run();
}
