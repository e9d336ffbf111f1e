// duet/udp.hpp — UDP: datagrams to and from any endpoint, on one socket.
//
//     duet::UdpSocket socket(loop, duet::Endpoint::loopback(0));      // bound; port 0 picks one
//     socket.send_to(peer, "ping", [](std::error_code ec) { ... });
//     socket.receive_start([](std::error_code ec, std::span<const char> data, const duet::Endpoint& from) { ... });
//
//     auto got = co_await socket.receive(buffer);    // the coroutine face: got.size, got.from, got.truncated
//     co_await socket.send_to(peer, "pong");
//
// Opening: `UdpSocket(loop)` makes a socket that is not bound yet (the system creates it on `bind`,
// `connect`, the first send or the first receive, bound then to an ephemeral port on every interface);
// `UdpSocket(loop, endpoint[, options])` binds at once. `connect(endpoint)` fixes the peer: `send`
// then goes there without an address, only its datagrams are received, and an ICMP "port
// unreachable" comes back as UV_ECONNREFUSED on a later receive.
//
// Sending: `send_to(endpoint, bytes, cb)` and, once connected, `send(bytes, cb)` take the bytes by
// value and own them until the datagram is handed to the kernel; the callback then gets success or
// the error (UV_EMSGSIZE above 65507 bytes on IPv4, UV_EDESTADDRREQ for `send` before `connect`,
// UV_EISCONN for `send_to` after it). A datagram sent to a port nobody listens on is simply lost: UDP
// says nothing. Cancelling a send (its callback's stop token) detaches the caller, as a stream write
// does (stream.hpp): UV_ECANCELED on the next turn, while the datagram goes out all the same.
//
// Receiving, two ways (one at a time: a second receiver gets `duet::errc::already_reading`):
// - `receive(buffer, cb)` receives one datagram into the caller's buffer and calls
//   `cb(std::error_code, UdpReceived)`: its size, its sender, and `truncated` when the datagram was
//   larger than the buffer (the kernel kept the first `size` bytes and discarded the rest: no error,
//   but never ignore the flag). The buffer must stay valid until the callback runs or the receive is
//   cancelled; nothing is written to it after either. Cancellable (its stop token), which is also how
//   to wait with a deadline: `co_await duet::with_timeout(1s, socket.receive(buffer))`.
// - `receive_start(cb)` calls `cb(std::error_code, std::span<const char> data, const Endpoint& from)`
//   for every datagram until `receive_stop()`. The data lives in the loop's shared 64 KiB read
//   buffer, valid only during the callback; 64 KiB holds any UDP datagram (at most 65507 bytes of
//   payload on IPv4, 65527 on IPv6), so nothing is ever truncated here. An empty datagram is an empty
//   span. Errors (UV_ECONNREFUSED on a connected socket, UV_ENOBUFS if the shared buffer cannot be
//   allocated) are passed to the callback with an empty span and receiving goes on.
//
// Options (`set_broadcast`, `set_ttl`, `set_multicast_loop`, `set_multicast_ttl`,
// `set_multicast_interface`, `join_group`, `leave_group`) act on the system's socket, so they need one:
// bind first. Each throws `std::system_error` with libuv's error (UV_EBADF before the socket exists,
// UV_EINVAL for a TTL out of range or a group that is not a multicast address, UV_EADDRNOTAVAIL for
// leaving a group not joined, UV_ENODEV for an interface without multicast).
//
// Errors: starting an operation on a closed or default-constructed socket throws `std::system_error`
// with `duet::errc::not_connected` (the callback is not called); `bind` and `connect` throw libuv's
// error (UV_EADDRINUSE, UV_EACCES, ...). `close()` cancels a pending `receive` (UV_ECANCELED) and
// completes pending sends with UV_ECANCELED; the destructor closes.
//
// Loop destruction: the socket is closed with its loop and becomes inert, as if `close()` had been
// called: `is_open()` is false, starting an operation throws `not_connected`; `close()`, moving and
// destroying are safe.
//
// Cost: a socket is one `uv_udp_t` plus a few pointers (no receive buffer of its own); each send is one
// pooled request object owning its bytes; `receive_start` copies nothing (a datagram is handed over
// from the shared buffer).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/endpoint.hpp"
#include "duet/loop.hpp"
#include "duet/stream.hpp"  // detail::StreamOp: a send is a request that completes once, like a write

namespace duet {

/// What `bind` sets on the socket.
struct UdpBindOptions {
  /// SO_REUSEADDR: several sockets (of this or other processes) may bind the same address and port,
  /// as multicast receivers do; each of them receives multicast, only the last one unicast.
  bool reuse_address = false;
  /// For an IPv6 address: no IPv4 traffic (no dual stack).
  bool ipv6_only = false;
};

/// One datagram received into the caller's buffer.
struct UdpReceived {
  std::size_t size = 0;    ///< bytes written to the buffer
  Endpoint from;           ///< the sender
  bool truncated = false;  ///< the datagram was larger than the buffer: the rest is lost (UV_UDP_PARTIAL)
};

namespace detail {
class UdpImpl;
}  // namespace detail

/// A UDP socket. Loop-thread only. Move-only; the destructor closes it.
class UdpSocket {
 public:
  UdpSocket() noexcept = default;
  /// A socket not bound yet (see the top of this header).
  explicit UdpSocket(Loop& loop);
  /// A socket bound to `at` (port 0 picks a free port: see `local_endpoint()`). Throws
  /// `std::system_error` (UV_EADDRINUSE, UV_EADDRNOTAVAIL, UV_EACCES) when binding fails.
  UdpSocket(Loop& loop, const Endpoint& at, UdpBindOptions options = {});

  /// Binds to `at`; throws `std::system_error` on failure.
  void bind(const Endpoint& at, UdpBindOptions options = {});
  /// Fixes the peer: `send` goes there, and only its datagrams are received. Throws on failure
  /// (UV_EISCONN if already connected).
  void connect(const Endpoint& to);
  /// Forgets the peer of `connect`. Throws on failure (UV_ENOTCONN if not connected).
  void disconnect();

  Endpoint local_endpoint() const;   ///< throws std::system_error (closed, or not bound yet: UV_EBADF)
  Endpoint remote_endpoint() const;  ///< the peer of `connect`; throws UV_ENOTCONN without one

  /// Sends `bytes` as one datagram to `to`; calls `cb(std::error_code)` once the kernel has it.
  template <class Callback>
  void send_to(const Endpoint& to, std::string bytes, Callback&& cb) {
    send_erased(to.data(), std::move(bytes), std::forward<Callback>(cb));
  }
  /// Coroutine face: `co_await socket.send_to(endpoint, std::move(bytes));`
  template <class = void>
  [[nodiscard]] auto send_to(Endpoint to, std::string bytes) {
    return awaitable<void>([this, to, bytes = std::move(bytes)](auto cb) mutable {
      send_to(to, std::move(bytes), std::move(cb));
    });
  }

  /// Sends `bytes` to the peer of `connect`; calls `cb(std::error_code)`.
  template <class Callback>
  void send(std::string bytes, Callback&& cb) {
    send_erased(nullptr, std::move(bytes), std::forward<Callback>(cb));
  }
  /// Coroutine face: `co_await socket.send(std::move(bytes));`
  template <class = void>
  [[nodiscard]] auto send(std::string bytes) {
    return awaitable<void>([this, bytes = std::move(bytes)](auto cb) mutable { send(std::move(bytes), std::move(cb)); });
  }

  /// Receives one datagram into `buffer`; calls `cb(std::error_code, UdpReceived)`. Cancellable.
  template <class Callback>
  void receive(std::span<char> buffer, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    receive_once(buffer, detail::UniqueFunction<void(std::error_code, UdpReceived)>(std::forward<Callback>(cb)),
                 std::move(token));
  }
  /// Coroutine face: `duet::UdpReceived got = co_await socket.receive(buffer);`
  template <class = void>
  [[nodiscard]] auto receive(std::span<char> buffer) {
    return awaitable<UdpReceived>([this, buffer](auto cb) { receive(buffer, std::move(cb)); });
  }

  /// Calls `cb(std::error_code, std::span<const char>, const Endpoint&)` for every datagram until
  /// `receive_stop()`. Calling it again replaces the callback.
  template <class Callback>
  void receive_start(Callback&& cb) {
    receive_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>, const Endpoint&)>(
        std::forward<Callback>(cb)));
  }
  /// Stops `receive_start` delivery (datagrams then wait in the kernel's buffer, or are dropped once
  /// it is full). Safe to call when not receiving.
  void receive_stop() noexcept;

  void set_broadcast(bool on);
  /// The TTL of unicast datagrams, 1..255.
  void set_ttl(int ttl);
  /// Whether multicast datagrams this socket sends are looped back to this host's members.
  void set_multicast_loop(bool on);
  /// The TTL of multicast datagrams, 0..255 (0: this host only; 1, the default: the local network).
  void set_multicast_ttl(int ttl);
  /// The interface multicast goes out on, by its address ("127.0.0.1"); empty: the system's choice.
  void set_multicast_interface(const std::string& interface_address);
  /// Joins multicast group `group` ("224.0.0.250") on the interface with address `interface_address`
  /// (empty: the system's choice).
  void join_group(const std::string& group, const std::string& interface_address = {});
  /// Leaves a group joined with `join_group`.
  void leave_group(const std::string& group, const std::string& interface_address = {});

  /// Bytes queued by sends and not yet handed to the kernel.
  std::size_t send_queue_size() const noexcept;

  /// True until `close()` (or until the loop is destroyed).
  bool is_open() const noexcept { return static_cast<bool>(impl_); }
  /// Closes the socket now (see the top of this header). Idempotent.
  void close() noexcept;
  /// Whether this socket keeps `Loop::run()` from returning while it receives (it does by default).
  void keep_loop_alive(bool keep) noexcept;
  /// The libuv handle, or null when closed.
  uv_udp_t* native() const noexcept;

 private:
  template <class Callback>
  void send_erased(const sockaddr* to, std::string bytes, Callback&& cb) {
    using Op = detail::StreamOp<uv_udp_send_t, std::decay_t<Callback>>;
    uv_udp_t* udp = open_handle("send");
    detail::LoopCore* core = loop_core();
    Op* op = core->make<Op>(core, std::decay_t<Callback>(std::forward<Callback>(cb)), std::move(bytes));
    uv_buf_t buf = detail::buffer(op->bytes.data(), op->bytes.size());
    if (int rc = uv_udp_send(&op->req, udp, &buf, 1, to, &Op::on_done); rc < 0) return op->fail(rc);
    op->watch_stop();
  }
  void receive_once(std::span<char> buffer, detail::UniqueFunction<void(std::error_code, UdpReceived)> cb,
                    std::stop_token token);
  void receive_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>, const Endpoint&)> cb);
  /// The libuv handle, or throws `not_connected` naming `what` if the socket is closed.
  uv_udp_t* open_handle(const char* what) const;
  detail::LoopCore* loop_core() const noexcept;

  detail::HandlePtr<detail::UdpImpl> impl_;
};

}  // namespace duet
