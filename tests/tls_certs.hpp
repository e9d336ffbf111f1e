// A small PKI made at run time for the TLS tests, with OpenSSL's C API: a CA (the trust anchor, ca.pem)
// and the leaf certificates a test needs — good ones, expired or not yet valid ones, ones for the
// wrong name, ones from a CA nobody trusts, self-signed ones. Everything is written as PEM files into
// a folder the test owns (a fresh temporary one), so that servers outside the process (nginx, Python,
// Node.js, openssl s_server) can use the same files. Keys are EC P-256: quick to make.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace duet::test {

/// A certificate (PEM) and its private key (PEM, unencrypted), as written by `Pki`.
struct CertFiles {
  std::filesystem::path cert;
  std::filesystem::path key;
};

namespace tls_certs_detail {

struct FreeKey {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct FreeCert {
  void operator()(X509* p) const noexcept { X509_free(p); }
};
struct FreeBio {
  void operator()(BIO* p) const noexcept { BIO_free_all(p); }
};
struct FreeBn {
  void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};
struct FreeExt {
  void operator()(X509_EXTENSION* p) const noexcept { X509_EXTENSION_free(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, FreeKey>;
using CertPtr = std::unique_ptr<X509, FreeCert>;

/// Throws, with OpenSSL's reason, unless `ok`.
inline void check(bool ok, const char* what) {
  if (ok) return;
  std::string message = "tls_certs: ";
  message += what;
  const unsigned long code = ERR_get_error();
  if (code != 0) {
    char reason[256];
    ERR_error_string_n(code, reason, sizeof reason);
    message += ": ";
    message += reason;
  }
  ERR_clear_error();
  throw std::runtime_error(message);
}

/// A fresh EC P-256 key pair.
inline KeyPtr make_key() {
  KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  check(key != nullptr, "EC key generation");
  return key;
}

inline void write_key(const std::filesystem::path& path, EVP_PKEY* key) {
  std::unique_ptr<BIO, FreeBio> out(BIO_new_file(path.c_str(), "w"));
  check(out != nullptr, "cannot open the key file");
  check(PEM_write_bio_PrivateKey(out.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1, "writing a key");
}

/// Writes the certificates one after the other (leaf first) into `path`.
inline void write_certs(const std::filesystem::path& path, const std::vector<X509*>& certs) {
  std::unique_ptr<BIO, FreeBio> out(BIO_new_file(path.c_str(), "w"));
  check(out != nullptr, "cannot open the certificate file");
  for (X509* cert : certs) check(PEM_write_bio_X509(out.get(), cert) == 1, "writing a certificate");
}

/// Adds an extension written as in openssl.cnf ("critical,CA:TRUE"); `issuer` may be `cert` itself.
inline void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, FreeExt> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  check(ext != nullptr, "making an extension");
  check(X509_add_ext(cert, ext.get(), -1) == 1, "adding an extension");
}

/// An unsigned certificate for `subject_key`, named `common_name`, issued by `issuer` (null: by
/// itself), valid from now + `not_before` to now + `not_after`, with a random positive serial.
inline CertPtr new_cert(EVP_PKEY* subject_key, const std::string& common_name, X509* issuer,
                        std::chrono::seconds not_before, std::chrono::seconds not_after) {
  CertPtr cert(X509_new());
  check(cert != nullptr, "X509_new");
  check(X509_set_version(cert.get(), X509_VERSION_3) == 1, "setting the version");
  std::unique_ptr<BIGNUM, FreeBn> serial(BN_new());
  check(serial != nullptr, "BN_new");
  check(BN_rand(serial.get(), 127, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1, "a random serial");
  check(BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) != nullptr, "setting the serial");
  check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(not_before.count())) != nullptr,
        "setting notBefore");
  check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(not_after.count())) != nullptr,
        "setting notAfter");
  X509_NAME* name = X509_get_subject_name(cert.get());
  check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("duet tests"), -1,
                                   -1, 0) == 1,
        "setting the subject");
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0) == 1,
        "setting the subject");
  check(X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name) == 1, "setting the issuer");
  check(X509_set_pubkey(cert.get(), subject_key) == 1, "setting the public key");
  return cert;
}

inline void sign(X509* cert, EVP_PKEY* issuer_key) {
  check(X509_sign(cert, issuer_key, EVP_sha256()) > 0, "signing a certificate");
}

/// "DNS:a,DNS:b,IP:127.0.0.1" ("" for no names).
inline std::string alt_names(const std::vector<std::string>& dns_names, const std::vector<std::string>& ip_addresses) {
  std::string value;
  for (const auto& dns : dns_names) {
    if (!value.empty()) value += ',';
    value += "DNS:";
    value += dns;
  }
  for (const auto& ip : ip_addresses) {
    if (!value.empty()) value += ',';
    value += "IP:";
    value += ip;
  }
  return value;
}

/// A CA: its key and self-signed certificate (CA:TRUE, keyCertSign), valid for 30 days either side of now.
struct Authority {
  KeyPtr key;
  CertPtr cert;

  static Authority make(const std::string& common_name) {
    Authority ca{make_key(), nullptr};
    ca.cert = new_cert(ca.key.get(), common_name, nullptr, std::chrono::hours(-24 * 30), std::chrono::hours(24 * 30));
    add_extension(ca.cert.get(), ca.cert.get(), NID_basic_constraints, "critical,CA:TRUE");
    add_extension(ca.cert.get(), ca.cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    add_extension(ca.cert.get(), ca.cert.get(), NID_subject_key_identifier, "hash");
    sign(ca.cert.get(), ca.key.get());
    return ca;
  }
};

}  // namespace tls_certs_detail

/// A CA in `dir` (ca.pem) and the certificates a test asks it for. Files are written as they are made;
/// the folder belongs to the caller (a `TempDir`), which removes it.
class Pki {
 public:
  /// Makes the CA and writes its certificate as `dir`/ca.pem (`dir` is created if need be).
  explicit Pki(std::filesystem::path dir)
      : dir_(std::move(dir)), ca_(tls_certs_detail::Authority::make("duet test CA")) {
    std::filesystem::create_directories(dir_);
    tls_certs_detail::write_certs(ca_file(), {ca_.cert.get()});
  }

  /// The trusted CA's certificate (PEM): what clients are given as `ca_file`.
  std::filesystem::path ca_file() const { return dir_ / "ca.pem"; }
  /// The second, untrusted CA's certificate (other-ca.pem), made by the first `by_other_ca` issue.
  std::filesystem::path other_ca_file() const { return dir_ / "other-ca.pem"; }
  const std::filesystem::path& dir() const { return dir_; }

  /// A server certificate `<file_stem>.pem` (the leaf only) and its key `<file_stem>.key`, issued by
  /// the CA (or by a second CA nobody trusts), for `dns_names` and `ip_addresses` (subjectAltName),
  /// with extendedKeyUsage serverAuth, valid from now + `not_before` to now + `not_after`: an expired
  /// one is issue("expired", {"localhost"}, {"127.0.0.1"}, -48h, -24h).
  CertFiles issue(const std::string& file_stem, const std::vector<std::string>& dns_names,
                  const std::vector<std::string>& ip_addresses,
                  std::chrono::seconds not_before = std::chrono::hours(-1),
                  std::chrono::seconds not_after = std::chrono::hours(24), bool by_other_ca = false) {
    const tls_certs_detail::Authority& ca = by_other_ca ? other_ca() : ca_;
    auto key = tls_certs_detail::make_key();
    auto cert = leaf(key.get(), file_stem, dns_names, ip_addresses, ca.cert.get(), not_before, not_after);
    tls_certs_detail::add_extension(cert.get(), ca.cert.get(), NID_authority_key_identifier, "keyid:always");
    tls_certs_detail::sign(cert.get(), ca.key.get());
    return write(file_stem, key.get(), {cert.get()});
  }

  /// A self-signed server certificate (no CA behind it) for the names, valid from an hour ago for a day.
  CertFiles self_signed(const std::string& file_stem, const std::vector<std::string>& dns_names,
                        const std::vector<std::string>& ip_addresses) {
    auto key = tls_certs_detail::make_key();
    auto cert =
        leaf(key.get(), file_stem, dns_names, ip_addresses, nullptr, std::chrono::hours(-1), std::chrono::hours(24));
    tls_certs_detail::sign(cert.get(), key.get());
    return write(file_stem, key.get(), {cert.get()});
  }

  /// A server certificate issued by an intermediate CA that the CA issued: `<file_stem>.pem` holds
  /// the leaf, then the intermediate (the chain a server sends), `<file_stem>.key` the leaf's key.
  CertFiles issue_via_intermediate(const std::string& file_stem, const std::vector<std::string>& dns_names,
                                   const std::vector<std::string>& ip_addresses) {
    namespace d = tls_certs_detail;
    auto mid_key = d::make_key();
    auto mid = d::new_cert(mid_key.get(), "duet test intermediate CA", ca_.cert.get(), std::chrono::hours(-24),
                           std::chrono::hours(24 * 7));
    d::add_extension(mid.get(), ca_.cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    d::add_extension(mid.get(), ca_.cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    d::add_extension(mid.get(), ca_.cert.get(), NID_subject_key_identifier, "hash");
    d::add_extension(mid.get(), ca_.cert.get(), NID_authority_key_identifier, "keyid:always");
    d::sign(mid.get(), ca_.key.get());
    auto key = d::make_key();
    auto cert =
        leaf(key.get(), file_stem, dns_names, ip_addresses, mid.get(), std::chrono::hours(-1), std::chrono::hours(24));
    d::add_extension(cert.get(), mid.get(), NID_authority_key_identifier, "keyid:always");
    d::sign(cert.get(), mid_key.get());
    return write(file_stem, key.get(), {cert.get(), mid.get()});
  }

 private:
  const tls_certs_detail::Authority& other_ca() {
    if (!other_ca_.cert) {
      other_ca_ = tls_certs_detail::Authority::make("duet untrusted test CA");
      tls_certs_detail::write_certs(other_ca_file(), {other_ca_.cert.get()});
    }
    return other_ca_;
  }

  /// An unsigned server certificate with the leaf's extensions; `issuer` null: self-issued.
  static tls_certs_detail::CertPtr leaf(EVP_PKEY* key, const std::string& file_stem,
                                        const std::vector<std::string>& dns_names,
                                        const std::vector<std::string>& ip_addresses, X509* issuer,
                                        std::chrono::seconds not_before, std::chrono::seconds not_after) {
    namespace d = tls_certs_detail;
    const std::string common_name = dns_names.empty() ? file_stem : dns_names.front();
    auto cert = d::new_cert(key, common_name, issuer, not_before, not_after);
    X509* by = issuer ? issuer : cert.get();
    d::add_extension(cert.get(), by, NID_basic_constraints, "critical,CA:FALSE");
    d::add_extension(cert.get(), by, NID_key_usage, "critical,digitalSignature");
    d::add_extension(cert.get(), by, NID_ext_key_usage, "serverAuth,clientAuth");
    d::add_extension(cert.get(), by, NID_subject_key_identifier, "hash");
    const std::string names = d::alt_names(dns_names, ip_addresses);
    if (!names.empty()) d::add_extension(cert.get(), by, NID_subject_alt_name, names);
    return cert;
  }

  CertFiles write(const std::string& file_stem, EVP_PKEY* key, const std::vector<X509*>& chain) const {
    CertFiles files{dir_ / (file_stem + ".pem"), dir_ / (file_stem + ".key")};
    tls_certs_detail::write_certs(files.cert, chain);
    tls_certs_detail::write_key(files.key, key);
    return files;
  }

  std::filesystem::path dir_;
  tls_certs_detail::Authority ca_;
  tls_certs_detail::Authority other_ca_;
};

}  // namespace duet::test
