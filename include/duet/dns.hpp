// duet/dns.hpp — name resolution on libuv's thread pool: host to addresses (`uv_getaddrinfo`) and
// address to host name (`uv_getnameinfo`).
//
//     duet::resolve(loop, "localhost", 8000, [](std::error_code ec, std::vector<duet::Endpoint> eps) {...});
//     duet::reverse_resolve(loop, duet::Endpoint::loopback(80), [](std::error_code ec, duet::NameInfo n) {...});
//
// `resolve` calls back with every TCP endpoint the system resolver returns, in its order (IPv4 and
// IPv6), or with an error: UV_EAI_NONAME for an unknown host, UV_EAI_AGAIN for a temporary failure,
// UV_ECANCELED when cancelled (a lookup still queued is `uv_cancel`ed; one already running finishes
// unheard). A numeric address ("127.0.0.1", "::1") resolves to itself without the thread pool: the
// callback comes on the loop's next turn (UV_ECANCELED if its stop token was stopped meanwhile).
//
// `reverse_resolve` asks the system (/etc/hosts, then DNS, as configured) for the name of an
// endpoint's address and of its port's service: `{"localhost", "http"}` for 127.0.0.1:80. A name is
// required: an address that has none is UV_EAI_NONAME (not its own digits back); UV_EAI_AGAIN when
// no resolver answers; an endpoint that is neither IPv4 nor IPv6 (a default `Endpoint`) is refused
// with `errc::invalid_argument`; cancelling works as for `resolve`.
//
// Cost of a lookup: one pooled request object, plus (for `resolve`) libuv's own `addrinfo` list,
// freed before the callback runs, or (for `reverse_resolve`) the two strings of the result.
#pragma once

#include <netdb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/endpoint.hpp"
#include "duet/error.hpp"
#include "duet/loop.hpp"

namespace duet {

/// What `reverse_resolve` finds: the name of the address, and of the port's service ("http"; the
/// port's digits when the system knows no name for it).
struct NameInfo {
  std::string host;
  std::string service;
};

namespace detail {

/// The IPv4 and IPv6 endpoints of a getaddrinfo result, in its order; UV_ENOMEM if they cannot be kept.
std::error_code endpoints_of(const addrinfo* res, std::vector<Endpoint>& out) noexcept;
/// Copies a getnameinfo result into `out`; UV_ENOMEM (and `out` left empty) if it cannot.
std::error_code copy_name_info(const char* host, const char* service, NameInfo& out) noexcept;
/// True (and `out` set) if `host` is an IPv4 or IPv6 address: nothing to look up. (Out of line: a
/// `std::optional<Endpoint>` here would cost every includer its instantiation.)
bool parse_numeric(const std::string& host, std::uint16_t port, Endpoint& out) noexcept;
/// Starts `req` looking up `host` for TCP on `port` (uv_getaddrinfo's status).
int start_resolve(uv_loop_t* loop, uv_getaddrinfo_t* req, uv_getaddrinfo_cb cb, const std::string& host,
                  std::uint16_t port);

template <class Cb>
class ResolveOp final : public RequestOp<ResolveOp<Cb>, uv_getaddrinfo_t, Cb> {
 public:
  using RequestOp<ResolveOp<Cb>, uv_getaddrinfo_t, Cb>::RequestOp;

  static void on_done(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
    auto* self = static_cast<ResolveOp*>(req->data);
    std::vector<Endpoint> endpoints;
    std::error_code ec = self->status_error(status);
    if (!ec && !self->loop_closing()) ec = endpoints_of(res, endpoints);
    uv_freeaddrinfo(res);
    if (self->loop_closing()) return self->finish_silently();
    self->complete(ec, std::move(endpoints));
  }
};

template <class Cb>
class NameInfoOp final : public RequestOp<NameInfoOp<Cb>, uv_getnameinfo_t, Cb> {
 public:
  using RequestOp<NameInfoOp<Cb>, uv_getnameinfo_t, Cb>::RequestOp;

  // `host` and `service` point into the request, which is gone once `complete` runs: copied first.
  static void on_done(uv_getnameinfo_t* req, int status, const char* host, const char* service) noexcept {
    auto* self = static_cast<NameInfoOp*>(req->data);
    if (self->loop_closing()) return self->finish_silently();
    std::error_code ec = self->status_error(status);
    NameInfo info;
    if (!ec) ec = copy_name_info(host, service, info);
    self->complete(ec, std::move(info));
  }
};

}  // namespace detail

/// Resolves `host` to TCP endpoints with `port`; calls `cb(std::error_code, std::vector<Endpoint>)`.
template <class Callback>
requires std::invocable<Callback&, std::error_code, std::vector<Endpoint>>
void resolve(Loop& loop, const std::string& host, std::uint16_t port, Callback&& cb) {
  using Op = detail::ResolveOp<std::decay_t<Callback>>;
  auto& core = loop.core();
  if (Endpoint ep; detail::parse_numeric(host, port, ep)) {  // nothing to look up
    core.defer([cb = std::decay_t<Callback>(std::forward<Callback>(cb)), ep]() mutable {
      if (stop_token_of(cb).stop_requested())
        return detail::call_with_error<std::vector<Endpoint>>(cb, uv_error(UV_ECANCELED));
      cb(std::error_code(), std::vector<Endpoint>{ep});
    });
    return;
  }
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)));
  if (int rc = detail::start_resolve(core.uv(), &op->req, &Op::on_done, host, port); rc < 0)
    return op->template fail_submission<std::vector<Endpoint>>(rc);
  op->watch_stop();
}

/// Coroutine face: `auto endpoints = co_await duet::resolve(loop, host, port);`
template <class = void>
[[nodiscard]] inline auto resolve(Loop& loop, std::string host, std::uint16_t port) {
  return awaitable<std::vector<Endpoint>>(
      [&loop, host = std::move(host), port](auto cb) { duet::resolve(loop, host, port, std::move(cb)); });
}

/// Looks up the host name of `endpoint`'s address and the service name of its port; calls
/// `cb(std::error_code, NameInfo)`. An address without a name is UV_EAI_NONAME.
template <class Callback>
requires std::invocable<Callback&, std::error_code, NameInfo>
void reverse_resolve(Loop& loop, const Endpoint& endpoint, Callback&& cb) {
  using Op = detail::NameInfoOp<std::decay_t<Callback>>;
  auto& core = loop.core();
  if (endpoint.family() != AF_INET && endpoint.family() != AF_INET6)  // libuv would say only UV_EINVAL
    return detail::fail_later<NameInfo>(core, std::decay_t<Callback>(std::forward<Callback>(cb)),
                                        make_error_code(errc::invalid_argument));
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)));
  if (int rc = uv_getnameinfo(core.uv(), &op->req, &Op::on_done, endpoint.data(), NI_NAMEREQD); rc < 0)
    return op->template fail_submission<NameInfo>(rc);
  op->watch_stop();
}

/// Coroutine face: `duet::NameInfo name = co_await duet::reverse_resolve(loop, endpoint);`
template <class = void>
[[nodiscard]] inline auto reverse_resolve(Loop& loop, const Endpoint& endpoint) {
  return awaitable<NameInfo>([&loop, endpoint](auto cb) { duet::reverse_resolve(loop, endpoint, std::move(cb)); });
}

}  // namespace duet
