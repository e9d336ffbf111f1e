// Uses the installed duet: a loop, a listener, a connect, a write, a read, offloaded work, and
// llhttp's installed header and library. Prints "consumer ok" and exits 0 when all of it worked.
#include <llhttp.h>

#include <cstdio>
#include <duet/duet.hpp>
#include <optional>
#include <string>

int main() {
  using namespace std::chrono_literals;
  duet::Loop loop;
  duet::TcpListener listener(loop, duet::Endpoint::loopback(0));
  std::optional<duet::TcpStream> server, client;
  std::string heard;
  char buf[16];
  int answer = 0;

  listener.accept([&](std::error_code ec, duet::TcpStream s) {
    if (ec) return;
    server = std::move(s);
    server->read(buf, [&](std::error_code rec, std::size_t n) {
      if (!rec) heard.assign(buf, n);
      server->close();
      listener.close();
    });
  });
  duet::connect(loop, listener.local_endpoint(), 5s, [&](std::error_code ec, duet::TcpStream s) {
    if (ec) return;
    client = std::move(s);
    client->write(std::string("ping"), [&](std::error_code) { client->close(); });
  });
  duet::offload(
      loop, [] { return 42; }, [&](std::error_code ec, int v) { answer = ec ? -1 : v; });
  loop.run();

  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  const char response[] = "HTTP/1.1 204 No Content\r\n\r\n";
  const bool parsed = llhttp_execute(&parser, response, sizeof response - 1) == HPE_OK && parser.status_code == 204;

  if (heard != "ping" || answer != 42 || !parsed) {
    std::printf("consumer failed: heard='%s' answer=%d parsed=%d\n", heard.c_str(), answer, parsed);
    return 1;
  }
  std::printf("consumer ok\n");
  return 0;
}
