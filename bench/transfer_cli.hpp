// What bench/download and bench/upload share: their command line (`--url`, `--face`, and one file
// option each) and their one line of figures.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "bench_cli.hpp"
#include "duet/http/message.hpp"

namespace bench {

struct TransferOptions {
  duet::http::Request request;  // the URL's, parsed
  std::string file;             // --out (download) or --file (upload)
  std::string face = "callbacks";
  bool gzip = false;  // --gzip (download only)
};

/// Parses `--url URL <file_option> PATH [--face callbacks|coroutines]` (and `--gzip` if `gzip_allowed`);
/// a usage error (exit 2) for anything else or missing.
inline TransferOptions transfer_options(int argc, char** argv, const char* usage, const std::string& file_option,
                                        bool gzip_allowed) {
  TransferOptions o;
  std::string url;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(usage, arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--url")
      url = value();
    else if (arg == file_option)
      o.file = value();
    else if (arg == "--face")
      o.face = value();
    else if (arg == "--gzip" && gzip_allowed)
      o.gzip = true;
    else
      usage_error(usage, "unknown option '" + arg + "'");
  }
  if (url.empty() || o.file.empty()) usage_error(usage, "--url and " + file_option + " are required");
  if (o.face != "callbacks" && o.face != "coroutines") usage_error(usage, "--face is callbacks or coroutines");
  std::error_code ec;
  std::string why;
  auto parsed = duet::http::Url::parse(url, ec, &why);
  if (!parsed) usage_error(usage, "bad --url '" + url + "': " + why);
  o.request.url = std::move(*parsed);
  return o;
}

/// Prints the one line of figures, or the failure (exit status 1).
inline int report_transfer(const std::string& face, std::uintmax_t bytes, std::chrono::steady_clock::time_point start,
                           const char* what, std::error_code ec, const std::string& reason, int status) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (ec || status != 200) {
    std::fprintf(stderr, "%s failed: %s\n", what, ec ? reason.c_str() : ("status " + std::to_string(status)).c_str());
    return 1;
  }
  std::printf("face=%s bytes=%ju seconds=%.3f mb_per_s=%.1f peak_rss_mb=%.1f cpu_s=%.2f\n", face.c_str(), bytes,
              seconds, static_cast<double>(bytes) / 1e6 / seconds, peak_rss_mb(), cpu_seconds());
  return 0;
}

}  // namespace bench
