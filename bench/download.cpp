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
#include <cstdio>
#include <filesystem>
#include <string>

#include "bench_cli.hpp"
#include "duet/duet.hpp"
#include "duet/http/client.hpp"

namespace {
constexpr const char* kUsage = "download --url URL --out PATH [--face callbacks|coroutines] [--gzip]";
}

int main(int argc, char** argv) {
  std::string url, out, face = "callbacks";
  bool gzip = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) bench::usage_error(kUsage, arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--url")
      url = value();
    else if (arg == "--out")
      out = value();
    else if (arg == "--face")
      face = value();
    else if (arg == "--gzip")
      gzip = true;
    else
      bench::usage_error(kUsage, "unknown option '" + arg + "'");
  }
  if (url.empty() || out.empty()) bench::usage_error(kUsage, "--url and --out are required");
  if (face != "callbacks" && face != "coroutines") bench::usage_error(kUsage, "--face is callbacks or coroutines");

  duet::http::Request req;
  std::error_code parse_error;
  std::string why;
  auto parsed = duet::http::Url::parse(url, parse_error, &why);
  if (!parsed) bench::usage_error(kUsage, "bad --url '" + url + "': " + why);
  req.url = std::move(*parsed);
  req.decompress = gzip;

  duet::Loop loop;
  duet::http::Client client(loop);
  const auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  std::string reason;
  int status = 0;
  if (face == "callbacks") {
    client.download_to_file(std::move(req), out, [&](std::error_code e, duet::http::Response head) {
      ec = e;
      status = head.status;
      reason = head.reason;
    });
    loop.run();
  } else {
    auto task = [&]() -> duet::Task<> {
      try {
        duet::http::Response head = co_await client.download_to_file(std::move(req), out);
        status = head.status;
      } catch (const std::system_error& e) {
        ec = e.code();
        reason = e.what();
      }
    };
    duet::run(loop, task());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (ec || status != 200) {
    std::fprintf(stderr, "download failed: %s\n", ec ? reason.c_str() : ("status " + std::to_string(status)).c_str());
    return 1;
  }
  const auto bytes = std::filesystem::file_size(out);
  std::printf("face=%s bytes=%ju seconds=%.3f mb_per_s=%.1f peak_rss_mb=%.1f cpu_s=%.2f\n", face.c_str(),
              static_cast<std::uintmax_t>(bytes), seconds, static_cast<double>(bytes) / 1e6 / seconds,
              bench::peak_rss_mb(), bench::cpu_seconds());
}
