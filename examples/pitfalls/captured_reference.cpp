// captured_reference — the callbacks style's version of the same pitfall: a lambda that captures a
// local by reference (`[&]`) and runs after the function that made it has returned. A Python closure
// keeps its variables alive; a C++ lambda's reference capture does not. Capture by value what a
// later callback needs (the flag programs' `[&job, cc]`: the job outlives every callback, the code
// is copied).
//
//     captured_reference          the right version: prints "BR done"
//     captured_reference --wrong  the wrong one: reads a dead stack frame (AddressSanitizer reports it
//                                 with ASAN_OPTIONS=detect_stack_use_after_return=1)
//
// docs/pitfalls.md explains it; the tests run both under AddressSanitizer.
#include <cstdio>
#include <string>
#include <string_view>

#include "duet/timer.hpp"

using namespace std::chrono_literals;

// WRONG: `cc` is this function's local; the callback runs on a later turn of the loop, after return.
void start_wrong(duet::Loop& loop) {
  std::string cc = "BR";
  duet::sleep(loop, 1ms, [&cc](std::error_code) { std::printf("%s done\n", cc.c_str()); });
}

// Right: the callback holds its own copy.
void start(duet::Loop& loop) {
  std::string cc = "BR";
  duet::sleep(loop, 1ms, [cc](std::error_code) { std::printf("%s done\n", cc.c_str()); });
}

int main(int argc, char** argv) {
  const bool wrong = argc > 1 && std::string_view(argv[1]) == "--wrong";
  duet::Loop loop;
  wrong ? start_wrong(loop) : start(loop);
  loop.run();
}
