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

#include "nginx_process.hpp"
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

/// nginx with `ssl` (see nginx_process.hpp), serving `root` with `cert`.
struct NginxTls : Nginx {
  NginxTls(const CertFiles& cert, const std::filesystem::path& root, const std::string& extra_server = "")
      : Nginx(root, &cert, extra_server) {}
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
