// Real TLS servers for duet's TLS tests, each started as a child process on a loopback port for the
// duration of a test: nginx with `ssl`, Python's http.server over its ssl module (peers/https_server.py,
// which can also speak only TLS 1.0 or truncate every response), Node.js's https server
// (peers/https_server.js, chunked bodies, ALPN) and `openssl s_server -www` with any extra options.
// Each is ready for connections when its constructor returns. Certificates come from tls_certs.hpp.
#pragma once

#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
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


/// The options that make `openssl s_server` (OpensslServer) speak TLS 1.0 and nothing else: OpenSSL 3
/// allows TLS 1.0 only at security level 0. A client with a TLS 1.2 minimum must fail to connect.
inline const std::vector<std::string> kOpensslTls1Only = {"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"};

/// "https://HOST:PORT" + path (path as given, with its leading "/").
inline std::string https_url(std::uint16_t port, const std::string& path, const std::string& host = "localhost") {
  std::string url = "https://";
  url += host;
  url += ':';
  url += std::to_string(port);
  url += path;
  return url;
}

/// A loopback port free a moment ago: bound to port 0, then released for a server that cannot report
/// the port it chose itself (nginx).
inline std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "bind");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port` (a server just started);
/// throws if nothing does within `limit`.
inline void wait_until_accepting(std::uint16_t port, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const bool accepted = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (accepted) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("the server did not start listening on port " + std::to_string(port));
}

/// nginx with `ssl` on a loopback port, serving `root` with `cert` (its `.pem` may hold a chain):
/// TLS 1.2 and 1.3, a shared session cache and tickets (resumption), keep-alive for a million requests.
/// `extra_server` is pasted into the `server` block (e.g. "ssl_protocols TLSv1.3;" to override).
/// Its error log is dir/error.log.
struct NginxTls {
  TempDir dir;
  std::uint16_t port = 0;
  std::optional<PeerProcess> process;

  NginxTls(const CertFiles& cert, const std::filesystem::path& root, const std::string& extra_server = "") {
    port = free_loopback_port();
    const std::string d = dir.path().string();
    std::ofstream(dir / "nginx.conf") << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
                                      << "error_log " << d << "/error.log;\npid " << d << "/nginx.pid;\n"
                                      << "events { worker_connections 1024; }\n"
                                      << "http {\n  access_log off;\n  client_body_temp_path " << d << "/tmp_body;\n"
                                      << "  proxy_temp_path " << d << "/tmp_proxy;\n  fastcgi_temp_path " << d
                                      << "/tmp_fastcgi;\n  uwsgi_temp_path " << d << "/tmp_uwsgi;\n  scgi_temp_path "
                                      << d << "/tmp_scgi;\n"
                                      << "  types { image/gif gif; text/plain txt; application/octet-stream bin; }\n"
                                      << "  keepalive_requests 1000000;\n"
                                      << "  server {\n    listen 127.0.0.1:" << port << " ssl;\n"
                                      << "    root " << root.string() << ";\n"
                                      << "    ssl_certificate " << cert.cert.string() << ";\n"
                                      << "    ssl_certificate_key " << cert.key.string() << ";\n"
                                      << "    ssl_protocols TLSv1.2 TLSv1.3;\n"
                                      << "    ssl_session_cache shared:SSL:1m;\n    ssl_session_tickets on;\n"
                                      << "    " << extra_server << "\n  }\n}\n";
    process.emplace(std::vector<std::string>{"nginx", "-c", dir / "nginx.conf", "-p", d, "-e", dir / "error.log"},
                    false);
    wait_until_accepting(port);
  }
  /// https://localhost:PORT + path ("/file.bin").
  std::string url(const std::string& path) const { return https_url(port, path); }
  /// https://127.0.0.1:PORT + path: for certificates checked against an IP address.
  std::string ip_url(const std::string& path) const { return https_url(port, path, "127.0.0.1"); }
};

/// Python's http.server over TLS (peers/https_server.py) serving `root` (HTTP/1.0, one request per
/// connection, close_notify before each close). `options`: "--tls1-only" (TLS 1.0 and nothing else),
/// "--truncate" (every answer is 1000 bytes of "x" ended by a close without close_notify).
struct PythonHttps {
  PeerProcess process;
  std::uint16_t port;

  PythonHttps(const CertFiles& cert, const std::filesystem::path& root, const std::vector<std::string>& options = {})
      : process(argv(cert, root, options), true), port(process.port()) {}
  std::string url(const std::string& path) const { return https_url(port, path); }
  std::string ip_url(const std::string& path) const { return https_url(port, path, "127.0.0.1"); }

 private:
  static std::vector<std::string> argv(const CertFiles& cert, const std::filesystem::path& root,
                                       const std::vector<std::string>& options) {
    std::vector<std::string> args = {"python3", DUET_TEST_PEERS_DIR "/https_server.py", cert.cert.string(),
                                     cert.key.string(), root.string()};
    args.insert(args.end(), options.begin(), options.end());
    return args;
  }
};

/// Node.js's https server (peers/https_server.js) serving `root` with chunked bodies, keep-alive and
/// ALPN "http/1.1"; /chunked streams ten small chunks a few milliseconds apart.
struct NodeHttps {
  PeerProcess process;
  std::uint16_t port;

  NodeHttps(const CertFiles& cert, const std::filesystem::path& root)
      : process({"node", DUET_TEST_PEERS_DIR "/https_server.js", cert.cert.string(), cert.key.string(), root.string()},
                true),
        port(process.port()) {}
  std::string url(const std::string& path) const { return https_url(port, path); }
  std::string ip_url(const std::string& path) const { return https_url(port, path, "127.0.0.1"); }
};

/// `openssl s_server -www` on a loopback port with `cert` and `extra` options (kOpensslTls1Only, "-tls1_3",
/// "-no_ticket", ...): any GET is answered with an HTML page describing the session, then the
/// connection is closed. One connection at a time. Its stderr (handshake failures) goes to errors().
struct OpensslServer {
  TempDir dir;
  std::optional<PeerProcess> process;
  std::uint16_t port = 0;

  explicit OpensslServer(const CertFiles& cert, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"openssl",          "s_server", "-accept",         "127.0.0.1:0", "-cert",
                                     cert.cert.string(), "-key",     cert.key.string(), "-www"};
    args.insert(args.end(), extra.begin(), extra.end());
    process.emplace(std::move(args), false, dir / "stderr.txt");
    // s_server says "ACCEPT 127.0.0.1:PORT" once it listens (after lines such as "Using default temp DH
    // parameters").
    for (int lines = 0; lines < 10 && port == 0; ++lines) {
      const std::string line = process->read_line();
      if (line.rfind("ACCEPT ", 0) == 0) port = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
    }
    if (port == 0) throw std::runtime_error("openssl s_server did not say which port it accepts on");
  }
  std::string url(const std::string& path) const { return https_url(port, path); }
  std::string ip_url(const std::string& path) const { return https_url(port, path, "127.0.0.1"); }
  /// What s_server wrote on stderr so far (e.g. "unsupported protocol" after a refused handshake).
  std::string errors() const {
    std::ifstream in(dir.path() / "stderr.txt", std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
};

}  // namespace duet::test
