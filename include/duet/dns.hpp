// duet/dns.hpp — host name resolution on libuv's thread pool (`uv_getaddrinfo`).
//
//     duet::resolve(loop, "localhost", 8000, [](std::error_code ec, std::vector<duet::Endpoint> eps) {...});
//
// Calls back with every TCP endpoint the system resolver returns, in its order (IPv4 and IPv6), or
// with an error: UV_EAI_NONAME for an unknown host, UV_EAI_AGAIN for a temporary failure, UV_ECANCELED
// when cancelled (a lookup still queued is `uv_cancel`ed; one already running finishes unheard).
// A numeric address ("127.0.0.1", "::1") resolves to itself without the thread pool: the callback
// comes on the loop's next turn (UV_ECANCELED if its stop token was stopped meanwhile). Cost of a
// lookup: one pooled request object, plus libuv's own `addrinfo` list, freed before the callback runs.
#pragma once

#include <netdb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/endpoint.hpp"
#include "duet/loop.hpp"

namespace duet {
namespace detail {

template <class Cb>
class ResolveOp final : public RequestOp<ResolveOp<Cb>, uv_getaddrinfo_t, Cb> {
 public:
  using RequestOp<ResolveOp<Cb>, uv_getaddrinfo_t, Cb>::RequestOp;

  static void on_done(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
    auto* self = static_cast<ResolveOp*>(req->data);
    std::vector<Endpoint> endpoints;
    std::error_code ec = self->status_error(status);
    if (!ec && !self->loop_closing()) {
      try {
        for (addrinfo* ai = res; ai; ai = ai->ai_next) {
          if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) endpoints.emplace_back(ai->ai_addr);
        }
      } catch (const std::bad_alloc&) {
        ec = uv_error(UV_ENOMEM);
      }
    }
    uv_freeaddrinfo(res);
    if (self->loop_closing()) return self->finish_silently();
    self->complete(ec, std::move(endpoints));
  }
};

}  // namespace detail

/// Resolves `host` to TCP endpoints with `port`; calls `cb(std::error_code, std::vector<Endpoint>)`.
template <class Callback>
requires std::invocable<Callback&, std::error_code, std::vector<Endpoint>>
void resolve(Loop& loop, const std::string& host, std::uint16_t port, Callback&& cb) {
  using Op = detail::ResolveOp<std::decay_t<Callback>>;
  auto& core = loop.core();
  if (auto numeric = Endpoint::try_parse(host, port)) {  // nothing to look up
    core.defer([cb = std::decay_t<Callback>(std::forward<Callback>(cb)), ep = *numeric]() mutable {
      if (stop_token_of(cb).stop_requested())
        return detail::call_with_error<std::vector<Endpoint>>(cb, uv_error(UV_ECANCELED));
      cb(std::error_code(), std::vector<Endpoint>{ep});
    });
    return;
  }
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  const std::string service = std::to_string(port);
  if (int rc = uv_getaddrinfo(core.uv(), &op->req, &Op::on_done, host.c_str(), service.c_str(), &hints); rc < 0)
    return op->template fail_submission<std::vector<Endpoint>>(rc);
  op->watch_stop();
}

/// Coroutine face: `auto endpoints = co_await duet::resolve(loop, host, port);`
[[nodiscard]] inline auto resolve(Loop& loop, std::string host, std::uint16_t port) {
  return awaitable<std::vector<Endpoint>>(
      [&loop, host = std::move(host), port](auto cb) { duet::resolve(loop, host, port, std::move(cb)); });
}

}  // namespace duet
