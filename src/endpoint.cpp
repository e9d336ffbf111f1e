#include "duet/endpoint.hpp"

#include <netinet/in.h>
#include <uv.h>

#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <vector>
#include <system_error>

#include "duet/dns.hpp"
#include "duet/error.hpp"

namespace duet {

Endpoint::Endpoint(const sockaddr* addr) noexcept {
  if (addr->sa_family == AF_INET)
    std::memcpy(&storage_.v4, addr, sizeof(sockaddr_in));
  else if (addr->sa_family == AF_INET6)
    std::memcpy(&storage_.v6, addr, sizeof(sockaddr_in6));
}

std::optional<Endpoint> Endpoint::try_parse(std::string_view ip, std::uint16_t port) noexcept {
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  char text[64];  // the longest IPv6 text with a zone ("%eth0") fits; anything longer is not an address
  if (ip.size() >= sizeof text) return std::nullopt;
  std::memcpy(text, ip.data(), ip.size());
  text[ip.size()] = '\0';
  Endpoint ep;
  if (uv_ip4_addr(text, port, &ep.storage_.v4) == 0) return ep;
  if (uv_ip6_addr(text, port, &ep.storage_.v6) == 0) return ep;
  return std::nullopt;
}

Endpoint Endpoint::parse(std::string_view ip, std::uint16_t port) {
  if (auto ep = try_parse(ip, port)) return *ep;
  throw std::system_error(uv_error(UV_EINVAL), "not a numeric IP address: '" + std::string(ip) + "'");
}

Endpoint Endpoint::loopback(std::uint16_t port, bool ipv6) noexcept {
  Endpoint ep;
  if (ipv6)
    uv_ip6_addr("::1", port, &ep.storage_.v6);
  else
    uv_ip4_addr("127.0.0.1", port, &ep.storage_.v4);
  return ep;
}

std::uint16_t Endpoint::port() const noexcept {
  if (family() == AF_INET) return ntohs(storage_.v4.sin_port);
  if (family() == AF_INET6) return ntohs(storage_.v6.sin6_port);
  return 0;
}

std::string Endpoint::address() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET)
    uv_ip4_name(&storage_.v4, buf, sizeof buf);
  else if (family() == AF_INET6)
    uv_ip6_name(&storage_.v6, buf, sizeof buf);
  return buf;
}

std::string Endpoint::to_string() const {
  // Built by appending: g++ 12's -Wrestrict misfires on "[" + s + "]:" chains at -O2.
  std::string out;
  if (family() == AF_INET6) out.push_back('[');
  out.append(address());
  if (family() == AF_INET6) out.push_back(']');
  out.push_back(':');
  out.append(std::to_string(port()));
  return out;
}

namespace detail {

std::error_code endpoints_of(const addrinfo* res, std::vector<Endpoint>& out) noexcept {
  try {
    for (const addrinfo* ai = res; ai; ai = ai->ai_next)
      if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) out.emplace_back(ai->ai_addr);
  } catch (const std::bad_alloc&) {
    return uv_error(UV_ENOMEM);
  }
  return {};
}

std::error_code copy_name_info(const char* host, const char* service, NameInfo& out) noexcept {
  try {
    out.host = host;
    out.service = service;
  } catch (const std::bad_alloc&) {
    out = NameInfo();
    return uv_error(UV_ENOMEM);
  }
  return {};
}

bool parse_numeric(const std::string& host, std::uint16_t port, Endpoint& out) noexcept {
  std::optional<Endpoint> ep = Endpoint::try_parse(host, port);
  if (ep) out = *ep;
  return ep.has_value();
}

int start_resolve(uv_loop_t* loop, uv_getaddrinfo_t* req, uv_getaddrinfo_cb cb, const std::string& host,
                  std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  const std::string service = std::to_string(port);
  return uv_getaddrinfo(loop, req, cb, host.c_str(), service.c_str(), &hints);
}

}  // namespace detail
}  // namespace duet
