// spinner — keep the terminal alive while a slow computation runs on the thread pool.
// This is the coroutines style; examples/callbacks/spinner.cpp is the same program with callbacks.
#include "spinner.hpp"

#include "duet/offload.hpp"
#include "duet/spawn.hpp"
#include "duet/timer.hpp"

using namespace std::chrono_literals;

duet::Task<> spin(duet::Loop& loop) {
  for (unsigned frame = 0;; ++frame) {  // every 100 ms until cancelled
    spinner::draw(frame);
    co_await duet::sleep(loop, 100ms);
  }
}

duet::Task<int> supervisor(duet::Loop& loop) {
  auto spinning = duet::spawn(loop, spin(loop));
  int answer = co_await duet::offload(loop, spinner::slow);
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
