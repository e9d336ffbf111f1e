// dangling_reference — a C++ pitfall a Python reader meets first: a lazy coroutine that takes a
// reference parameter. A duet::Task does not start when it is called (a Python coroutine object does
// not either); it keeps its parameters in its frame as they were declared, so a `const std::string&`
// is still a reference when the body runs — to a string that may be gone by then. Take by value.
//
//     dangling_reference          the right version: prints "7 letters"
//     dangling_reference --wrong  the wrong one: reads a destroyed string (AddressSanitizer reports it)
//
// docs/pitfalls.md explains it; the tests run both under AddressSanitizer.
#include <cstdio>
#include <string>
#include <string_view>

#include "duet/spawn.hpp"
#include "duet/timer.hpp"

using namespace std::chrono_literals;

// WRONG: `name` refers to the caller's string, which may be destroyed before the body runs.
duet::Task<std::size_t> count_letters_wrong(duet::Loop& loop, const std::string& name) {
  co_await duet::sleep(loop, 1ms);
  co_return name.size();
}

// Right: the frame holds its own copy (the flag programs' `download_one(job, std::string cc)`).
duet::Task<std::size_t> count_letters(duet::Loop& loop, std::string name) {
  co_await duet::sleep(loop, 1ms);
  co_return name.size();
}

int main(int argc, char** argv) {
  const bool wrong = argc > 1 && std::string_view(argv[1]) == "--wrong";
  duet::Loop loop;
  // The string is a temporary: it lives until the end of this statement, and the task runs after.
  duet::Task<std::size_t> task =
      wrong ? count_letters_wrong(loop, std::string("Ireland")) : count_letters(loop, std::string("Ireland"));
  std::printf("%zu letters\n", duet::run(loop, std::move(task)));
}
