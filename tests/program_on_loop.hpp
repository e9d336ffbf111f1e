// A program run on a test's own loop (curl or Node against a server on that loop), its stdout to a
// file: the loop turns while the program runs, so the server it talks to can answer.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "duet/process.hpp"

namespace duet::test {

/// Runs `args` on `loop` with its stdout into `out_file`; returns its exit status.
inline ExitStatus run_program(Loop& loop, std::vector<std::string> args, const std::string& out_file) {
  const int fd = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  Process p = spawn(loop, {.file = args[0], .args = args, .stdio = {Stdio::ignore(), Stdio::fd(fd), Stdio::inherit()}});
  ::close(fd);
  std::optional<ExitStatus> status;
  p.wait([&](std::error_code ec, ExitStatus st) {
    REQUIRE_FALSE(ec);
    status = st;
  });
  while (!status) loop.run_once();
  return *status;
}

}  // namespace duet::test
