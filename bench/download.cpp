// download — one large HTTP download to disk through duet, in the face asked for, with the figures
// that show its memory is bounded: bytes, seconds, MB/s, and the process's peak resident set.
//
//   download --url URL --out PATH [--face callbacks|coroutines] [--gzip]
//
// Both faces call `Client::download_to_file` (the body read piece by piece with backpressure, written
// in order on the thread pool, renamed into place at the end). Prints one line:
//   face=callbacks bytes=268435456 seconds=0.412 mb_per_s=621.4 peak_rss_mb=9.8 cpu_s=0.30
// and exits 1 (saying why) if the download fails. bench/transfers.sh compares it with curl.
#include <chrono>
#include <filesystem>
#include <string>

#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "transfer_cli.hpp"

int main(int argc, char** argv) {
  const char* usage = "download --url URL --out PATH [--face callbacks|coroutines] [--gzip]";
  bench::TransferOptions o = bench::transfer_options(argc, argv, usage, "--out", true);
  o.request.decompress = o.gzip;

  duet::Loop loop;
  duet::http::Client client(loop);
  const auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  std::string reason;
  int status = 0;
  if (o.face == "callbacks") {
    client.download_to_file(std::move(o.request), o.file, [&](std::error_code e, duet::http::Response head) {
      ec = e;
      status = head.status;
      reason = head.reason;
    });
    loop.run();
  } else {
    auto task = [&]() -> duet::Task<> {
      try {
        duet::http::Response head = co_await client.download_to_file(std::move(o.request), o.file);
        status = head.status;
      } catch (const std::system_error& e) {
        ec = e.code();
        reason = e.what();
      }
    };
    duet::run(loop, task());
  }
  std::error_code size_error;
  const auto bytes = std::filesystem::file_size(o.file, size_error);
  return bench::report_transfer(o.face, size_error ? 0 : bytes, start, "download", ec, reason, status);
}
