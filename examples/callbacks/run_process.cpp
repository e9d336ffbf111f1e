// run_process — run a command, print its output line by line with numbers, then say how it ended.
// This is the callbacks style: each step names the next one as its callback.
// examples/coroutines/run_process.cpp is the same program with coroutines; diff them to see the difference.
#include "duet/process.hpp"
#include "run_process.hpp"

void number_lines(duet::Process& child, run_process::Lines& lines, int& exit_code);
void report_exit(duet::Process& child, int& exit_code);

int main(int argc, char** argv) {
  const duet::ProcessOptions command = run_process::command(argc, argv);
  duet::Loop loop;
  duet::Process child;
  try {
    child = duet::spawn(loop, command);  // a program that cannot start is reported here, at once
  } catch (const std::system_error& e) {
    return run_process::cannot_start(command, e);
  }
  run_process::Lines lines;
  int exit_code = 1;
  number_lines(child, lines, exit_code);
  loop.run();
  return exit_code;
}

// Reads the child's output a buffer at a time, until it closes its end (a read of 0 bytes).
void number_lines(duet::Process& child, run_process::Lines& lines, int& exit_code) {
  child.pipe(1).read(lines.buffer, [&child, &lines, &exit_code](std::error_code ec, std::size_t n) {
    if (ec) run_process::read_failed(ec);
    if (ec || n == 0) {
      lines.finish();
      return report_exit(child, exit_code);
    }
    lines.add(n);
    number_lines(child, lines, exit_code);
  });
}

// The output is over: waits for the child to exit, then says how it ended.
void report_exit(duet::Process& child, int& exit_code) {
  child.wait([&exit_code](std::error_code ec, duet::ExitStatus status) {
    if (!ec) exit_code = run_process::report(status);
  });
}
