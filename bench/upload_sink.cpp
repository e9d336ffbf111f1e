// upload_sink — duet's server taking uploads streamed, for bench/transfers.sh: every request's body
// is streamed to the handler (ServerOptions::stream_body), read piece by piece and dropped, and
// answered with "LENGTH FNV1A64" of what arrived. Prints its port on the first line, serves until
// killed (SIGTERM or Ctrl-C), then prints its peak resident set on stderr.
//
//   upload_sink [--port N]
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <string>

#include "bench_cli.hpp"
#include "duet/duet.hpp"
#include "duet/http/server.hpp"

int main(int argc, char** argv) {
  const char* usage = "upload_sink [--port N]";
  long port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--port" && i + 1 < argc)
      port = bench::whole_number(usage, argv[++i], "--port");
    else
      bench::usage_error(usage, "unknown option '" + arg + "'");
  }
  duet::Loop loop;
  duet::http::ServerOptions options;
  options.stream_body = [](const duet::http::ServerRequest&) { return true; };
  options.request_timeout = std::chrono::seconds(30);
  duet::http::Server server(
      loop, duet::Endpoint::loopback(static_cast<std::uint16_t>(port)),
      [](duet::http::ServerRequest req, duet::http::Reply reply) -> duet::Task<> {
        std::uint64_t length = 0, hash = 1469598103934665603ull;  // FNV-1a, 64 bits
        for (;;) {
          const std::string piece = co_await req.body_stream.read();
          if (piece.empty()) break;
          length += piece.size();
          for (unsigned char c : piece) hash = (hash ^ c) * 1099511628211ull;
        }
        char answer[64];
        std::snprintf(answer, sizeof answer, "%ju %016jx", static_cast<std::uintmax_t>(length),
                      static_cast<std::uintmax_t>(hash));
        reply(duet::http::Response{200, "OK", {}, answer});
      },
      options);
  std::printf("%u\n", server.local_endpoint().port());
  std::fflush(stdout);
  duet::wait_for_signal(loop, {SIGINT, SIGTERM}, [&](std::error_code, int) { server.close(); });
  loop.run();
  std::fprintf(stderr, "upload_sink: peak_rss_mb=%.1f\n", bench::peak_rss_mb());
}
