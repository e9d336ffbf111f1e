// countdown — the smallest program: count down a second apart, then blast off.
// This is the coroutines style; examples/callbacks/countdown.cpp is the same program with callbacks.
#include "duet/spawn.hpp"
#include "duet/timer.hpp"
#include "spinner.hpp"

using namespace std::chrono_literals;

duet::Task<> count_down(duet::Loop& loop, int from) {
  for (int n = from; n > 0; --n) {
    std::printf("%d\n", n);
    std::fflush(stdout);
    co_await duet::sleep(loop, 1s);
  }
  std::puts("Blast off!");
}

int main(int argc, char** argv) {
  const int from = spinner::start_from(argc, argv);
  if (from == 0) return 2;
  duet::Loop loop;
  duet::run(loop, count_down(loop, from));
}
