// duet/endpoint.hpp — an IP address and port (IPv4 or IPv6), as libuv's socket functions take them.
//
// A plain value of 28 bytes (a `sockaddr_in` or `sockaddr_in6`, not a 128-byte `sockaddr_storage`:
// servers keep one per connection); copying it is cheap and nothing here touches the network.
// `Endpoint::parse` rejects what is not a numeric address with `std::system_error` (UV_EINVAL); use
// `duet::resolve` for host names.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace duet {

class Endpoint {
 public:
  Endpoint() noexcept = default;
  /// Copies an `AF_INET` or `AF_INET6` socket address.
  explicit Endpoint(const sockaddr* addr) noexcept;

  /// Parses a numeric IPv4 ("127.0.0.1") or IPv6 ("::1", brackets allowed) address. Throws
  /// `std::system_error` (UV_EINVAL) when `ip` is not one.
  static Endpoint parse(std::string_view ip, std::uint16_t port);
  /// The same, without throwing: nullopt when `ip` is not a numeric address (a host name, say).
  static std::optional<Endpoint> try_parse(std::string_view ip, std::uint16_t port) noexcept;
  /// 127.0.0.1:port (or [::1]:port with `ipv6`).
  static Endpoint loopback(std::uint16_t port, bool ipv6 = false) noexcept;

  int family() const noexcept { return storage_.any.sa_family; }  ///< AF_INET, AF_INET6, or AF_UNSPEC if empty
  std::uint16_t port() const noexcept;
  std::string address() const;    ///< "127.0.0.1", "::1"
  std::string to_string() const;  ///< "127.0.0.1:80", "[::1]:80"

  const sockaddr* data() const noexcept { return &storage_.any; }

  friend bool operator==(const Endpoint& a, const Endpoint& b) noexcept {
    return a.family() == b.family() && a.port() == b.port() && a.address() == b.address();
  }

 private:
  union Storage {
    sockaddr_in6 v6;  // first, the largest: `{}` zeroes all of it
    sockaddr_in v4;
    sockaddr any;
  };
  Storage storage_{};
};

}  // namespace duet
