// The state behind a `duet::TlsContext`: OpenSSL's SSL_CTX and the client's resumable sessions.
#pragma once

#include <openssl/ssl.h>

#include <map>
#include <mutex>
#include <string>

namespace duet::detail {

struct TlsContextImpl {
  TlsContextImpl() = default;
  TlsContextImpl(const TlsContextImpl&) = delete;
  TlsContextImpl& operator=(const TlsContextImpl&) = delete;
  ~TlsContextImpl();

  /// Keeps `session` (one reference, taken over) as the one to resume with the server `key`.
  void store_session(const std::string& key, SSL_SESSION* session);
  /// The session to resume with `key` (a new reference), or null.
  SSL_SESSION* find_session(const std::string& key);

  static constexpr std::size_t kMaxSessions = 1024;

  SSL_CTX* ctx = nullptr;
  bool server = false;
  bool verify = true;
  bool resume = true;
  std::string alpn;  // a server's protocols, in ALPN's wire format
  // Contexts may be shared by loops on several threads: the session map is locked.
  std::mutex mutex;
  std::map<std::string, SSL_SESSION*> sessions;
};

}  // namespace duet::detail
