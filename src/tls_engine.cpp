// OpenSSL behind duet's TLS: contexts (trust, certificates, ALPN, session resumption) and the
// per-connection engine on memory BIOs (see duet/detail/tls_engine.hpp).
#include "duet/detail/tls_engine.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "duet/error.hpp"
#include "duet/tls.hpp"
#include "tls_context.hpp"

namespace duet::detail {

namespace {

/// The reasons in OpenSSL's error queue (emptied), joined: "wrong version number".
std::string openssl_reasons() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* why = ERR_reason_error_string(e);
    std::string text = why ? why : "error " + std::to_string(ERR_GET_REASON(e));
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out;
}

[[noreturn]] void throw_tls(std::string what) {
  std::string why = openssl_reasons();
  if (!why.empty()) what += ": " + why;
  throw TlsError(make_error_code(errc::invalid_argument), "duet: " + what);
}

std::string alpn_wire(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255)
      throw TlsError(make_error_code(errc::invalid_argument), "duet: bad ALPN protocol name");
    wire += static_cast<char>(p.size());
    wire += p;
  }
  return wire;
}

int min_version(TlsVersion v) { return v == TlsVersion::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION; }

// The engine of an SSL, for OpenSSL's callbacks.
int engine_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

/// Empties this thread's OpenSSL error queue, so that what an SSL call leaves there is its own. The
/// queue is nearly always empty: looking first costs a fraction of clearing.
void clear_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

bool is_ip_address(const std::string& name) {
  unsigned char buf[16];
  return uv_inet_pton(AF_INET, name.c_str(), buf) == 0 || uv_inet_pton(AF_INET6, name.c_str(), buf) == 0;
}

std::error_code verify_error(long result) {
  switch (result) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
      return make_error_code(errc::tls_untrusted_issuer);
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH:
      return make_error_code(errc::tls_hostname_mismatch);
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return make_error_code(errc::tls_certificate_expired);
    default:
      return make_error_code(errc::tls_certificate_invalid);
  }
}

// Post-handshake messages from the peer: a HelloRequest (to a client) or ClientHello (to a server)
// asks for TLS 1.2 renegotiation. OpenSSL refuses it with a warning alert and goes on, so a peer could
// ask forever and have alerts pile up unread; the engine ends the connection instead.
void on_message(int write_p, int, int content_type, const void* buf, std::size_t len, SSL* ssl, void*) {
  if (write_p || content_type != SSL3_RT_HANDSHAKE || len == 0) return;
  auto* engine = static_cast<TlsEngine*>(SSL_get_ex_data(ssl, engine_index()));
  const auto type = *static_cast<const unsigned char*>(buf);
  if (engine && engine->handshake_done() && (type == SSL3_MT_HELLO_REQUEST || type == SSL3_MT_CLIENT_HELLO))
    engine->renegotiation_asked();
}

}  // namespace

// ---- contexts ---------------------------------------------------------------------------------------

TlsContextImpl::~TlsContextImpl() {
  for (auto& [key, session] : sessions) SSL_SESSION_free(session);
  SSL_CTX_free(ctx);
}

void TlsContextImpl::store_session(const std::string& key, SSL_SESSION* session) {
  std::lock_guard lock(mutex);
  if (sessions.size() >= kMaxSessions && !sessions.contains(key)) {  // bounded: forget one server
    SSL_SESSION_free(sessions.begin()->second);
    sessions.erase(sessions.begin());
  }
  auto [it, inserted] = sessions.emplace(key, session);
  if (!inserted) {
    SSL_SESSION_free(it->second);
    it->second = session;
  }
}

SSL_SESSION* TlsContextImpl::find_session(const std::string& key) {
  std::lock_guard lock(mutex);
  auto it = sessions.find(key);
  if (it == sessions.end()) return nullptr;
  SSL_SESSION_up_ref(it->second);
  return it->second;
}

namespace {

// A client's new session (at the handshake for TLS 1.2; a ticket after it for 1.3): kept per server.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* engine = static_cast<TlsEngine*>(SSL_get_ex_data(ssl, engine_index()));
  auto* ctx = static_cast<TlsContextImpl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!engine || !ctx || engine->session_key().empty() || !SSL_SESSION_is_resumable(session)) return 0;
  ctx->store_session(engine->session_key(), session);
  return 1;  // the reference is ours
}

// The server picks the first of its protocols that the client offers; none in common: no ALPN.
int on_alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                   void* arg) {
  const auto* self = static_cast<const TlsContextImpl*>(arg);
  const std::string& ours = self->alpn;
  for (std::size_t i = 0; i < ours.size(); i += 1 + static_cast<unsigned char>(ours[i])) {
    const std::string_view want(ours.data() + i + 1, static_cast<unsigned char>(ours[i]));
    for (unsigned int j = 0; j < inlen; j += 1u + in[j]) {
      if (j + 1u + in[j] > inlen) break;
      if (std::string_view(reinterpret_cast<const char*>(in + j + 1), in[j]) == want) {
        *out = in + j + 1;
        *outlen = in[j];
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

std::shared_ptr<TlsContextImpl> new_context(bool server, TlsVersion version) {
  ERR_clear_error();
  auto impl = std::make_shared<TlsContextImpl>();
  impl->server = server;
  impl->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!impl->ctx) throw_tls("cannot make a TLS context");
  SSL_CTX_set_app_data(impl->ctx, impl.get());
  SSL_CTX_set_min_proto_version(impl->ctx, min_version(version));
  // No renegotiation (a write could otherwise wait for a read); buffers released while idle.
  SSL_CTX_set_options(impl->ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(impl->ctx, SSL_MODE_RELEASE_BUFFERS);
  return impl;
}

void load_identity(SSL_CTX* ctx, const std::string& certificate, const std::string& key) {
  if (certificate.empty() && key.empty()) return;
  if (SSL_CTX_use_certificate_chain_file(ctx, certificate.c_str()) != 1)
    throw_tls("cannot read the certificate '" + certificate + "'");
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      throw_tls("the private key '" + key + "' does not match the certificate '" + certificate + "'");
    }
    throw_tls("cannot read the private key '" + key + "'");
  }
}

}  // namespace

}  // namespace duet::detail

namespace duet {

TlsContext TlsContext::client(const TlsClientOptions& options) {
  auto impl = detail::new_context(false, options.min_version);
  SSL_CTX* ctx = impl->ctx;
  impl->verify = !options.insecure_skip_verify;
  if (impl->verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (options.ca_file.empty() && options.ca_directory.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) detail::throw_tls("cannot load the system's trust store");
    } else if (SSL_CTX_load_verify_locations(ctx, options.ca_file.empty() ? nullptr : options.ca_file.c_str(),
                                             options.ca_directory.empty() ? nullptr : options.ca_directory.c_str()) !=
               1) {
      detail::throw_tls("cannot read the CA file '" + options.ca_file + "' or directory '" + options.ca_directory +
                        "'");
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!options.alpn.empty()) {
    const std::string wire = detail::alpn_wire(options.alpn);
    SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));
  }
  impl->resume = options.session_resumption;
  if (impl->resume) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &detail::on_new_session);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  detail::load_identity(ctx, options.certificate_file, options.private_key_file);
  return TlsContext(std::move(impl));
}

TlsContext TlsContext::server(const TlsServerOptions& options) {
  if (options.certificate_file.empty() || options.private_key_file.empty())
    throw TlsError(make_error_code(errc::invalid_argument), "duet: a TLS server needs a certificate and a key");
  auto impl = detail::new_context(true, options.min_version);
  SSL_CTX* ctx = impl->ctx;
  detail::load_identity(ctx, options.certificate_file, options.private_key_file);
  if (!options.alpn.empty()) {
    impl->alpn = detail::alpn_wire(options.alpn);
    SSL_CTX_set_alpn_select_cb(ctx, &detail::on_alpn_select, impl.get());
  }
  impl->resume = options.session_resumption;
  static const unsigned char id[] = "duet";
  SSL_CTX_set_session_id_context(ctx, id, sizeof id - 1);
  if (impl->resume) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
  }
  return TlsContext(std::move(impl));
}

bool TlsContext::is_server() const noexcept { return impl_ && impl_->server; }

std::size_t TlsContext::cached_sessions() const noexcept {
  if (!impl_) return 0;
  std::lock_guard lock(impl_->mutex);
  return impl_->sessions.size();
}

}  // namespace duet

namespace duet::detail {

// ---- the engine -------------------------------------------------------------------------------------

TlsEngine::TlsEngine(std::shared_ptr<TlsContextImpl> ctx, bool server, const std::string& server_name,
                     std::string session_key)
    : ctx_(std::move(ctx)), session_key_(std::move(session_key)) {
  clear_errors();
  if (!ctx_ || ctx_->server != server)
    throw TlsError(make_error_code(errc::invalid_argument),
                   server ? "duet: tls_accept needs a server context (TlsContext::server)"
                          : "duet: tls_connect needs a client context (TlsContext::client)");
  // The name as TLS wants it: "[::1]" is the address ::1, and "example.org." (fully qualified) is
  // "example.org", both for SNI (which has no trailing dot) and for the certificate's names.
  std::string name = server_name;
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  if (name.size() > 1 && name.back() == '.') name.pop_back();
  if (name.find('\0') != std::string::npos)
    throw TlsError(make_error_code(errc::invalid_argument), "duet: a TLS server name with a NUL byte");
  if (!server && ctx_->verify && name.empty())
    throw TlsError(make_error_code(errc::invalid_argument),
                   "duet: tls_connect needs the server's name to verify its certificate");
  ssl_ = SSL_new(ctx_->ctx);
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (!ssl_ || !in_ || !out_) {
    BIO_free(in_);
    BIO_free(out_);
    SSL_free(ssl_);
    throw_tls("cannot start a TLS connection");
  }
  BIO_set_mem_eof_return(in_, -1);  // empty means "wait for more", never end of stream
  BIO_set_mem_eof_return(out_, -1);
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_ex_data(ssl_, engine_index(), this);
  SSL_set_msg_callback(ssl_, &on_message);
  if (server) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  if (!name.empty()) {
    const bool ip = is_ip_address(name);
    if (!ip) SSL_set_tlsext_host_name(ssl_, name.c_str());
    if (ctx_->verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      X509_VERIFY_PARAM_set_hostflags(param,
                                      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
      const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                        : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
      if (ok != 1) {
        SSL_free(ssl_);
        throw TlsError(make_error_code(errc::invalid_argument), "duet: unusable TLS server name '" + name + "'");
      }
    }
  }
  if (ctx_->resume && !session_key_.empty()) {
    if (SSL_SESSION* session = ctx_->find_session(session_key_)) {
      SSL_set_session(ssl_, session);
      SSL_SESSION_free(session);
    }
  }
}

TlsEngine::~TlsEngine() {
  // Freed without close_notify, OpenSSL marks the session not resumable; a connection that ended
  // without an error (closed by the pool, or by a peer that skips close_notify) may be resumed.
  if (done_ && !error_) SSL_set_shutdown(ssl_, SSL_get_shutdown(ssl_) | SSL_SENT_SHUTDOWN);
  SSL_free(ssl_);
}

bool TlsEngine::has_buffered() const noexcept { return SSL_has_pending(ssl_) == 1 || BIO_ctrl_pending(in_) > 0; }

void TlsEngine::feed(const char* data, std::size_t n) {
  while (n > 0) {
    const int chunk = static_cast<int>(std::min<std::size_t>(n, 1 << 30));
    BIO_write(in_, data, chunk);
    data += chunk;
    n -= static_cast<std::size_t>(chunk);
  }
}

TlsEngine::Status TlsEngine::fail(std::error_code ec, std::string reason) {
  if (!error_) {
    error_ = ec;
    reason_ = std::move(reason);
  }
  return Status::failed;
}

TlsEngine::Status TlsEngine::fail_handshake() {
  std::string why = openssl_reasons();
  const long verified = SSL_get_verify_result(ssl_);
  if (!SSL_is_server(ssl_) && ctx_->verify && verified != X509_V_OK)
    return fail(verify_error(verified),
                std::string("certificate verify failed: ") + X509_verify_cert_error_string(verified));
  if (why.empty()) why = "the handshake failed";
  return fail(make_error_code(errc::tls_handshake_failed), "TLS handshake failed: " + why);
}

TlsEngine::Status TlsEngine::handshake() {
  if (error_) return Status::failed;
  if (done_) return Status::ok;
  clear_errors();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    done_ = true;
    return Status::ok;
  }
  const int why = SSL_get_error(ssl_, rc);
  if (why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE) return Status::more;
  return fail_handshake();
}

TlsEngine::Status TlsEngine::read(char* buffer, std::size_t n, std::size_t& got) {
  got = 0;
  if (error_) return Status::failed;
  clear_errors();
  const int rc = SSL_read_ex(ssl_, buffer, n, &got);
  if (renegotiation_) {
    got = 0;
    return fail(make_error_code(errc::tls_protocol_error), "TLS error: the peer asked to renegotiate (refused)");
  }
  if (rc == 1) return Status::ok;
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return Status::more;
    case SSL_ERROR_ZERO_RETURN:
      return Status::closed;
    default: {
      std::string why = openssl_reasons();
      return fail(make_error_code(errc::tls_protocol_error), "TLS error: " + (why.empty() ? "bad record" : why));
    }
  }
}

TlsEngine::Status TlsEngine::write(std::string_view bytes) {
  if (error_) return Status::failed;
  clear_errors();
  std::size_t written = 0;
  if (bytes.empty() || SSL_write_ex(ssl_, bytes.data(), bytes.size(), &written) == 1) return Status::ok;
  std::string why = openssl_reasons();
  return fail(make_error_code(errc::tls_protocol_error), "TLS write failed: " + (why.empty() ? "unknown" : why));
}

void TlsEngine::close_notify() {
  clear_errors();
  if (done_) SSL_shutdown(ssl_);
  clear_errors();
}

bool TlsEngine::received_close_notify() const noexcept { return (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) != 0; }

bool TlsEngine::has_output() const noexcept { return BIO_ctrl_pending(out_) > 0; }

std::string TlsEngine::take_output() {
  std::string out(BIO_ctrl_pending(out_), '\0');
  if (!out.empty()) {
    const int n = BIO_read(out_, out.data(), static_cast<int>(out.size()));
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  }
  return out;
}

std::string TlsEngine::alpn_protocol() const {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}

std::string TlsEngine::version() const { return done_ ? SSL_get_version(ssl_) : ""; }

bool TlsEngine::session_reused() const noexcept { return SSL_session_reused(ssl_) == 1; }

}  // namespace duet::detail
