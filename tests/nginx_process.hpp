// nginx as a child process on a free loopback port, serving a folder over plain HTTP or, given a
// certificate, over https; and the socket helper it needs (waiting for a listener).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "peer_process.hpp"
#include "support.hpp"
#include "tls_certs.hpp"

namespace duet::test {

/// Waits until something accepts TCP connections on 127.0.0.1:`port` (a server just started);
/// throws if nothing does within `limit`.
inline void wait_until_accepting(std::uint16_t port, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
    const sockaddr_in addr = loopback_address(port);
    const bool accepted = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (accepted) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("the server did not start listening on port " + std::to_string(port));
}

/// nginx on a free loopback port serving `root`, keep-alive for a million requests. With `tls`:
/// `listen ... ssl` with that certificate (its `.pem` may hold a chain), TLS 1.2 and 1.3, a shared
/// session cache and tickets (resumption). `extra_server` is pasted into the `server` block (e.g.
/// "ssl_protocols TLSv1.3;"). Its error log is dir/error.log. Ready when the constructor returns.
struct Nginx {
  TempDir dir;
  std::uint16_t port = 0;
  bool secure = false;
  std::optional<PeerProcess> process;

  explicit Nginx(const std::filesystem::path& root, const CertFiles* tls = nullptr,
                 const std::string& extra_server = "")
      : port(unbound_port(SOCK_STREAM)), secure(tls != nullptr) {
    const std::string d = dir.path().string();
    std::ofstream conf(dir / "nginx.conf");
    conf << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
         << "error_log " << d << "/error.log;\npid " << d << "/nginx.pid;\n"
         << "events { worker_connections 1024; }\n"
         << "http {\n  access_log off;\n";
    for (const char* temp : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
      conf << "  " << temp << "_temp_path " << d << "/tmp_" << temp << ";\n";
    conf << "  types { image/gif gif; text/plain txt; application/octet-stream bin; }\n"
         << "  keepalive_requests 1000000;\n"
         << "  server {\n    listen 127.0.0.1:" << port << (secure ? " ssl" : "") << ";\n"
         << "    root " << root.string() << ";\n";
    if (tls)
      conf << "    ssl_certificate " << tls->cert.string() << ";\n"
           << "    ssl_certificate_key " << tls->key.string() << ";\n"
           << "    ssl_protocols TLSv1.2 TLSv1.3;\n"
           << "    ssl_session_cache shared:SSL:1m;\n    ssl_session_tickets on;\n";
    conf << "    " << extra_server << "\n  }\n}\n";
    conf.close();
    process.emplace(std::vector<std::string>{"nginx", "-c", dir / "nginx.conf", "-p", d, "-e", dir / "error.log"},
                    false);
    wait_until_accepting(port);
  }
  /// http://127.0.0.1:PORT + path, or https://localhost:PORT + path ("/file.bin").
  std::string url(const std::string& path) const { return base(secure ? "localhost" : "127.0.0.1") + path; }
  /// The same by IP address: https://127.0.0.1:PORT + path, for certificates checked against it.
  std::string ip_url(const std::string& path) const { return base("127.0.0.1") + path; }

 private:
  std::string base(const std::string& host) const {
    std::string url = secure ? "https://" : "http://";
    url += host;
    url += ':';
    url += std::to_string(port);
    return url;
  }
};

}  // namespace duet::test
