// countdown — the smallest program: count down a second apart, then blast off.
// This is the callbacks style; examples/coroutines/countdown.cpp is the same program with coroutines.
#include "duet/timer.hpp"
#include "spinner.hpp"

using namespace std::chrono_literals;

void count_down(duet::Loop& loop, int n) {
  if (n == 0) return void(std::puts("Blast off!"));
  std::printf("%d\n", n);
  std::fflush(stdout);
  duet::sleep(loop, 1s, [&loop, n](std::error_code) { count_down(loop, n - 1); });
}

int main(int argc, char** argv) {
  const int from = spinner::start_from(argc, argv);
  if (from == 0) return 2;
  duet::Loop loop;
  count_down(loop, from);
  loop.run();
}
