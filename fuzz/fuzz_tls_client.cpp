// Fuzzes the TLS client's handshake and record layer (duet/detail/tls_engine.hpp, the OpenSSL state
// behind every TlsStream) with what a hostile server might send.
//
// Input: one mode byte, one chunk-size byte, then the rest.
//   mode bit 0 clear — the handshake: the rest is what the "server" sends, fed to a client engine in
//     chunks of the given size (0: all at once), the handshake advanced after each. A handshake cannot
//     succeed against bytes that are not a real server; it must end in `more` or `failed` with a
//     TLS error code and a reason, never anything else, and never a crash or leak.
//   mode bit 0 set — the record layer, after a real handshake between a client and a server engine in
//     memory: the first half of the rest is plaintext the server sends; its records are then damaged
//     by XOR-ing them with the second half (byte i with byte i of the key, cycled), and fed to the
//     client in chunks. The client must read back exactly the plaintext, or a prefix of it and then
//     fail with `tls_protocol_error`: never different bytes (TLS's integrity), never a crash.
//     Mode bit 1 adds close_notify after the data; bit 2 cuts the records short instead.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "duet/detail/tls_engine.hpp"
#include "duet/error.hpp"
#include "duet/tls.hpp"
#include "fuzz_check.hpp"
#include "tls_certs.hpp"

namespace {

using duet::detail::TlsEngine;
using Status = TlsEngine::Status;

bool is_tls_error(std::error_code ec) {
  using duet::errc;
  for (errc e : {errc::tls_untrusted_issuer, errc::tls_hostname_mismatch, errc::tls_certificate_expired,
                 errc::tls_certificate_invalid, errc::tls_handshake_failed, errc::tls_protocol_error})
    if (ec == e) return true;
  return false;
}

/// A CA and a server certificate, made once per process in a temporary folder (removed at exit).
struct Contexts {
  Contexts() : dir(std::filesystem::temp_directory_path() / ("duet-fuzz-tls-" + std::to_string(::getpid()))) {
    duet::test::Pki pki(dir);
    const auto cert = pki.issue("server", {"localhost"}, {});
    client.emplace(duet::TlsContext::client({.ca_file = pki.ca_file().string()}));
    server.emplace(
        duet::TlsContext::server({.certificate_file = cert.cert.string(), .private_key_file = cert.key.string()}));
  }
  ~Contexts() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path dir;
  std::optional<duet::TlsContext> client, server;
};

Contexts& contexts() {
  static Contexts c;
  return c;
}

/// Feeds `bytes` to `engine` in chunks of `chunk` (0: all at once), calling `after` after each.
template <class After>
void feed_in_chunks(TlsEngine& engine, std::string_view bytes, std::size_t chunk, After after) {
  if (chunk == 0) chunk = bytes.size() ? bytes.size() : 1;
  for (std::size_t at = 0; at < bytes.size(); at += chunk) {
    const std::string_view piece = bytes.substr(at, chunk);
    engine.feed(piece.data(), piece.size());
    if (!after()) return;
  }
}

void fuzz_handshake(std::string_view server_bytes, std::size_t chunk) {
  TlsEngine client(contexts().client->impl(), false, "localhost", "");
  Status status = client.handshake();  // the ClientHello
  DUET_FUZZ_CHECK(status == Status::more);
  DUET_FUZZ_CHECK(client.has_output());
  client.take_output();
  feed_in_chunks(client, server_bytes, chunk, [&] {
    status = client.handshake();
    client.take_output();  // alerts, or a Finished that goes nowhere
    return status == Status::more;
  });
  DUET_FUZZ_CHECK(status == Status::more || status == Status::failed);
  if (status == Status::failed) {
    DUET_FUZZ_CHECK(is_tls_error(client.error()));
    DUET_FUZZ_CHECK(!client.reason().empty());
    std::size_t got = 0;
    char buf[64];
    DUET_FUZZ_CHECK(client.read(buf, sizeof buf, got) == Status::failed);  // failed stays failed
  }
}

/// A real handshake between two engines in memory.
void handshake(TlsEngine& client, TlsEngine& server) {
  for (int round = 0; round < 10 && !(client.handshake_done() && server.handshake_done()); ++round) {
    client.handshake();
    std::string out = client.take_output();
    server.feed(out.data(), out.size());
    server.handshake();
    out = server.take_output();
    client.feed(out.data(), out.size());
  }
  DUET_FUZZ_CHECK(client.handshake() == Status::ok);
  DUET_FUZZ_CHECK(server.handshake() == Status::ok);
  client.take_output();
}

void fuzz_records(std::uint8_t mode, std::string_view rest, std::size_t chunk) {
  const std::string_view plaintext = rest.substr(0, rest.size() / 2);
  const std::string_view key = rest.substr(rest.size() / 2);
  TlsEngine client(contexts().client->impl(), false, "localhost", "");
  TlsEngine server(contexts().server->impl(), true, "", "");
  handshake(client, server);

  DUET_FUZZ_CHECK(server.write(plaintext) == Status::ok);
  if (mode & 2) server.close_notify();
  std::string records = server.take_output();
  bool damaged = false;
  if (!key.empty()) {
    for (std::size_t i = 0; i < records.size(); ++i) {
      const char k = key[i % key.size()];
      damaged |= k != 0;
      records[i] = static_cast<char>(records[i] ^ k);
    }
  }
  if (mode & 4) records.resize(records.size() / 2);

  std::string got;
  Status status = Status::more;
  char buf[4096];
  feed_in_chunks(client, records, chunk, [&] {
    for (;;) {
      std::size_t n = 0;
      status = client.read(buf, sizeof buf, n);
      if (status != Status::ok) break;
      got.append(buf, n);
    }
    client.take_output();
    return status == Status::more;
  });
  // Integrity: what was read is the plaintext or a prefix of it, whatever was done to the records.
  DUET_FUZZ_CHECK(plaintext.substr(0, got.size()) == got);
  if (status == Status::failed) {
    DUET_FUZZ_CHECK(client.error() == duet::errc::tls_protocol_error);
    DUET_FUZZ_CHECK(!client.reason().empty());
  } else if (!damaged && !(mode & 4)) {
    DUET_FUZZ_CHECK(got == plaintext);  // undamaged records arrive whole
    DUET_FUZZ_CHECK(status == ((mode & 2) ? Status::closed : Status::more));
  }
  if (status == Status::closed) DUET_FUZZ_CHECK(client.received_close_notify());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t mode = data[0];
  const std::size_t chunk = data[1];
  const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  if (mode & 1)
    fuzz_records(mode, rest, chunk);
  else
    fuzz_handshake(rest, chunk);
  return 0;
}
