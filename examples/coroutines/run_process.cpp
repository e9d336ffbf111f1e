// run_process — run a command, print its output line by line with numbers, then say how it ended.
// This is the coroutines style: the steps read top-down, awaiting each one.
// examples/callbacks/run_process.cpp is the same program with callbacks; diff them to see the difference.
#include "duet/process.hpp"
#include "duet/spawn.hpp"
#include "run_process.hpp"

duet::Task<int> number_lines(duet::Process& child);

int main(int argc, char** argv) {
  const duet::ProcessOptions command = run_process::command(argc, argv);
  duet::Loop loop;
  duet::Process child;
  try {
    child = duet::spawn(loop, command);  // a program that cannot start is reported here, at once
  } catch (const std::system_error& e) {
    return run_process::cannot_start(command, e);
  }
  return duet::run(loop, number_lines(child));
}

// Reads the child's output a buffer at a time, until it closes its end (a read of 0 bytes); then
// waits for the child to exit, and says how it ended.
duet::Task<int> number_lines(duet::Process& child) {
  run_process::Lines lines;
  try {
    while (std::size_t n = co_await child.pipe(1).read(lines.buffer)) lines.add(n);
  } catch (const std::system_error& e) {
    run_process::read_failed(e.code());
  }
  lines.finish();
  duet::ExitStatus status = co_await child.wait();
  co_return run_process::report(status);
}
