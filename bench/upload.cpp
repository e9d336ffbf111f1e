// upload — one large HTTP upload from a file through duet, in the face asked for, with the figures
// that show its memory is bounded: bytes, seconds, MB/s, and the process's peak resident set.
//
//   upload --url URL --file PATH [--face callbacks|coroutines]
//
// Both faces call `Client::upload` with `http::file_body` (the file read piece by piece on the pool,
// each piece asked for only once the last has been taken by the kernel) and the file's size as
// Content-Length, as a POST. Prints one line:
//   face=callbacks bytes=268435456 seconds=0.912 mb_per_s=294.3 peak_rss_mb=8.1 cpu_s=0.40
// and exits 1 (saying why) if the upload fails. bench/transfers.sh runs it against Python's http.server.
#include <chrono>
#include <filesystem>
#include <string>

#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "duet/http/file_body.hpp"
#include "transfer_cli.hpp"

int main(int argc, char** argv) {
  const char* usage = "upload --url URL --file PATH [--face callbacks|coroutines]";
  bench::TransferOptions o = bench::transfer_options(argc, argv, usage, "--file", false);
  std::error_code size_error;
  const auto bytes = std::filesystem::file_size(o.file, size_error);
  if (size_error) bench::usage_error(usage, "cannot read --file '" + o.file + "': " + size_error.message());
  o.request.method = "POST";
  o.request.headers.add("Content-Length", std::to_string(bytes));

  duet::Loop loop;
  duet::http::Client client(loop);
  const auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  std::string reason;
  int status = 0;
  if (o.face == "callbacks") {
    client.upload(std::move(o.request), duet::http::file_body(loop, o.file),
                  [&](std::error_code e, duet::http::Response res) {
                    ec = e;
                    status = res.status;
                    reason = res.reason;
                  });
    loop.run();
  } else {
    auto task = [&]() -> duet::Task<> {
      try {
        duet::http::Response res = co_await client.upload(std::move(o.request), duet::http::file_body(loop, o.file));
        status = res.status;
      } catch (const std::system_error& e) {
        ec = e.code();
        reason = e.what();
      }
    };
    duet::run(loop, task());
  }
  return bench::report_transfer(o.face, bytes, start, "upload", ec, reason, status);
}
