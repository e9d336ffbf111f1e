// upload — one large HTTP upload from a file through duet, in the face asked for, with the figures
// that show its memory is bounded: bytes, seconds, MB/s, and the process's peak resident set.
//
//   upload --url URL --file PATH [--face callbacks|coroutines]
//
// Both faces call `Client::upload` with `http::file_body` (the file read piece by piece on the pool,
// each piece asked for only once the last has been taken by the kernel) and the file's size as
// Content-Length, as a POST. Prints one line:
//   face=callbacks bytes=268435456 seconds=0.912 mb_per_s=294.3 peak_rss_mb=8.1 cpu_s=0.40 status=200
// and exits 1 (saying why) if the upload fails. bench/transfers.sh runs it against Python's http.server.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "bench_cli.hpp"
#include "duet/duet.hpp"
#include "duet/http/client.hpp"
#include "duet/http/file_body.hpp"

namespace {
constexpr const char* kUsage = "upload --url URL --file PATH [--face callbacks|coroutines]";
}

int main(int argc, char** argv) {
  std::string url, file, face = "callbacks";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) bench::usage_error(kUsage, arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--url")
      url = value();
    else if (arg == "--file")
      file = value();
    else if (arg == "--face")
      face = value();
    else
      bench::usage_error(kUsage, "unknown option '" + arg + "'");
  }
  if (url.empty() || file.empty()) bench::usage_error(kUsage, "--url and --file are required");
  if (face != "callbacks" && face != "coroutines") bench::usage_error(kUsage, "--face is callbacks or coroutines");
  std::error_code size_error;
  const auto bytes = std::filesystem::file_size(file, size_error);
  if (size_error) bench::usage_error(kUsage, "cannot read --file '" + file + "': " + size_error.message());

  duet::http::Request req;
  std::error_code parse_error;
  std::string why;
  auto parsed = duet::http::Url::parse(url, parse_error, &why);
  if (!parsed) bench::usage_error(kUsage, "bad --url '" + url + "': " + why);
  req.method = "POST";
  req.url = std::move(*parsed);
  req.headers.add("Content-Length", std::to_string(bytes));

  duet::Loop loop;
  duet::http::Client client(loop);
  const auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  std::string reason;
  int status = 0;
  if (face == "callbacks") {
    client.upload(std::move(req), duet::http::file_body(loop, file), [&](std::error_code e, duet::http::Response res) {
      ec = e;
      status = res.status;
      reason = res.reason;
    });
    loop.run();
  } else {
    auto task = [&]() -> duet::Task<> {
      try {
        duet::http::Response res = co_await client.upload(std::move(req), duet::http::file_body(loop, file));
        status = res.status;
      } catch (const std::system_error& e) {
        ec = e.code();
        reason = e.what();
      }
    };
    duet::run(loop, task());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (ec || status != 200) {
    std::fprintf(stderr, "upload failed: %s\n", ec ? reason.c_str() : ("status " + std::to_string(status)).c_str());
    return 1;
  }
  std::printf("face=%s bytes=%ju seconds=%.3f mb_per_s=%.1f peak_rss_mb=%.1f cpu_s=%.2f status=%d\n", face.c_str(),
              static_cast<std::uintmax_t>(bytes), seconds, static_cast<double>(bytes) / 1e6 / seconds,
              bench::peak_rss_mb(), bench::cpu_seconds(), status);
}
