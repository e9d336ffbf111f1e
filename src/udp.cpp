#include "duet/udp.hpp"

#include <string>
#include <system_error>

namespace duet {
namespace detail {

/// The socket behind a `UdpSocket`: its handle and the receive in progress.
class UdpImpl final : public OwnedHandle {
 public:
  enum class Receiving { no, once, stream };

  explicit UdpImpl(LoopCore* core) : OwnedHandle(core, &udp) {
    if (int rc = uv_udp_init(core->uv(), &udp); rc < 0) throw std::system_error(uv_error(rc), "uv_udp_init");
    adopt(&udp);
  }

  uv_udp_t udp{};

  bool pending() const noexcept override { return receiving_ != Receiving::no && uv_has_ref(handle()) != 0; }

  void receive_once(std::span<char> buffer, UniqueFunction<void(std::error_code, UdpReceived)> cb,
                    std::stop_token token) {
    auto fail = [&](std::error_code ec) { core()->defer([cb = std::move(cb), ec]() mutable { cb(ec, UdpReceived{}); }); };
    if (receiving_ != Receiving::no) return fail(make_error_code(errc::already_reading));
    if (buffer.empty()) return fail(make_error_code(errc::invalid_argument));
    if (int rc = uv_udp_recv_start(&udp, &on_alloc, &on_receive); rc < 0) return fail(uv_error(rc));
    receiving_ = Receiving::once;
    once_buffer_ = buffer;
    once_cb_ = std::move(cb);
    stop_receive_.watch(core(), std::move(token), StopReceive{this});
  }

  void receive_stream(UniqueFunction<void(std::error_code, std::span<const char>, const Endpoint&)> cb) {
    auto fail = [&](std::error_code ec) {
      core()->defer([cb = std::move(cb), ec]() mutable { cb(ec, std::span<const char>(), Endpoint()); });
    };
    if (receiving_ == Receiving::once) return fail(make_error_code(errc::already_reading));
    if (receiving_ == Receiving::no) {
      if (int rc = uv_udp_recv_start(&udp, &on_alloc, &on_receive); rc < 0) return fail(uv_error(rc));
      receiving_ = Receiving::stream;
    }
    stream_cb_ = std::move(cb);  // already receiving: the new callback takes over
  }

  void receive_stop() noexcept {
    if (receiving_ != Receiving::stream) return;
    uv_udp_recv_stop(&udp);
    receiving_ = Receiving::no;
    stream_cb_.reset();
  }

 private:
  struct StopReceive {
    UdpImpl* self;
    void operator()() const noexcept { self->cancel_receive(); }
  };

  void before_close() noexcept override {
    cancel_receive();
    receiving_ = Receiving::no;
    stream_cb_.reset();
  }

  // A one-shot receive is abandoned: stop receiving, and report UV_ECANCELED from the loop.
  void cancel_receive() noexcept {
    if (receiving_ != Receiving::once) return;
    uv_udp_recv_stop(&udp);
    receiving_ = Receiving::no;
    once_buffer_ = {};
    stop_receive_.reset();
    core()->defer([cb = std::move(once_cb_)]() mutable { cb(uv_error(UV_ECANCELED), UdpReceived{}); });
  }

  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
    auto* self = of<UdpImpl>(h);
    if (self->receiving_ == Receiving::once) {
      *buf = buffer(self->once_buffer_.data(), self->once_buffer_.size());
      return;
    }
    char* shared = self->core()->read_buffer();
    *buf = shared ? buffer(shared, LoopCore::kReadBufferSize) : uv_buf_init(nullptr, 0);  // null: UV_ENOBUFS
  }

  static void on_receive(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                         unsigned flags) noexcept {
    auto* self = of<UdpImpl>(h);
    if (nread == 0 && !addr) return;  // nothing more to read this time (an empty datagram has a sender)
    const std::error_code ec = nread < 0 ? uv_error(static_cast<int>(nread)) : std::error_code();
    const std::size_t n = nread > 0 ? static_cast<std::size_t>(nread) : 0;
    const Endpoint from = addr ? Endpoint(addr) : Endpoint();
    LoopCore* core = self->core();

    if (self->receiving_ == Receiving::once) {
      uv_udp_recv_stop(h);
      self->receiving_ = Receiving::no;
      self->once_buffer_ = {};
      self->stop_receive_.reset();
      auto cb = std::move(self->once_cb_);
      UdpReceived got;
      if (!ec) got = UdpReceived{n, from, (flags & UV_UDP_PARTIAL) != 0};
      return core->invoke(cb, ec, std::move(got));
    }
    if (self->receiving_ != Receiving::stream) return;
    // The callback may stop, restart with another callback, or close: run it from a local.
    auto cb = std::move(self->stream_cb_);
    core->invoke(cb, ec, std::span<const char>(ec ? nullptr : buf->base, n), from);
    if (self->receiving_ == Receiving::stream && !self->stream_cb_) self->stream_cb_ = std::move(cb);
  }

  Receiving receiving_ = Receiving::no;
  std::span<char> once_buffer_;
  UniqueFunction<void(std::error_code, UdpReceived)> once_cb_;
  UniqueFunction<void(std::error_code, std::span<const char>, const Endpoint&)> stream_cb_;
  OnLoopStop<StopReceive> stop_receive_;  // a one-shot receive's stop token, routed to the loop thread
};

namespace {

[[noreturn]] void throw_udp(int rc, const std::string& what) { throw std::system_error(uv_error(rc), "duet::UdpSocket::" + what); }

unsigned bind_flags(UdpBindOptions options) noexcept {
  unsigned flags = 0;
  if (options.reuse_address) flags |= UV_UDP_REUSEADDR;
  if (options.ipv6_only) flags |= UV_UDP_IPV6ONLY;
  return flags;
}

const char* or_null(const std::string& s) noexcept { return s.empty() ? nullptr : s.c_str(); }

}  // namespace
}  // namespace detail

UdpSocket::UdpSocket(Loop& loop) : impl_(loop.core().make<detail::UdpImpl>(&loop.core())) {}

UdpSocket::UdpSocket(Loop& loop, const Endpoint& at, UdpBindOptions options) : UdpSocket(loop) {
  try {
    bind(at, options);
  } catch (...) {
    close();
    throw;
  }
}

uv_udp_t* UdpSocket::open_handle(const char* what) const {
  if (!impl_)
    throw std::system_error(make_error_code(errc::not_connected),
                            std::string("duet::UdpSocket::") + what + " on a closed socket");
  return &impl_->udp;
}

detail::LoopCore* UdpSocket::loop_core() const noexcept { return impl_->core(); }

uv_udp_t* UdpSocket::native() const noexcept { return impl_ ? &impl_->udp : nullptr; }

void UdpSocket::close() noexcept { impl_.reset(); }

void UdpSocket::keep_loop_alive(bool keep) noexcept {
  if (impl_) keep ? uv_ref(impl_->handle()) : uv_unref(impl_->handle());
}

void UdpSocket::bind(const Endpoint& at, UdpBindOptions options) {
  if (int rc = uv_udp_bind(open_handle("bind"), at.data(), detail::bind_flags(options)); rc < 0)
    detail::throw_udp(rc, "bind: cannot bind " + at.to_string());
}

void UdpSocket::connect(const Endpoint& to) {
  if (int rc = uv_udp_connect(open_handle("connect"), to.data()); rc < 0)
    detail::throw_udp(rc, "connect: cannot connect to " + to.to_string());
}

void UdpSocket::disconnect() {
  if (int rc = uv_udp_connect(open_handle("disconnect"), nullptr); rc < 0) detail::throw_udp(rc, "disconnect");
}

Endpoint UdpSocket::local_endpoint() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (int rc = uv_udp_getsockname(open_handle("local_endpoint"), reinterpret_cast<sockaddr*>(&ss), &len); rc < 0)
    detail::throw_udp(rc, "local_endpoint");
  return Endpoint(reinterpret_cast<const sockaddr*>(&ss));
}

Endpoint UdpSocket::remote_endpoint() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (int rc = uv_udp_getpeername(open_handle("remote_endpoint"), reinterpret_cast<sockaddr*>(&ss), &len); rc < 0)
    detail::throw_udp(rc, "remote_endpoint");
  return Endpoint(reinterpret_cast<const sockaddr*>(&ss));
}

void UdpSocket::receive_once(std::span<char> buffer, detail::UniqueFunction<void(std::error_code, UdpReceived)> cb,
                             std::stop_token token) {
  open_handle("receive");
  impl_->receive_once(buffer, std::move(cb), std::move(token));
}

void UdpSocket::receive_stream(
    detail::UniqueFunction<void(std::error_code, std::span<const char>, const Endpoint&)> cb) {
  open_handle("receive_start");
  impl_->receive_stream(std::move(cb));
}

void UdpSocket::receive_stop() noexcept {
  if (impl_) impl_->receive_stop();
}

void UdpSocket::set_broadcast(bool on) {
  if (int rc = uv_udp_set_broadcast(open_handle("set_broadcast"), on ? 1 : 0); rc < 0)
    detail::throw_udp(rc, "set_broadcast");
}

void UdpSocket::set_ttl(int ttl) {
  if (int rc = uv_udp_set_ttl(open_handle("set_ttl"), ttl); rc < 0) detail::throw_udp(rc, "set_ttl");
}

void UdpSocket::set_multicast_loop(bool on) {
  if (int rc = uv_udp_set_multicast_loop(open_handle("set_multicast_loop"), on ? 1 : 0); rc < 0)
    detail::throw_udp(rc, "set_multicast_loop");
}

void UdpSocket::set_multicast_ttl(int ttl) {
  if (int rc = uv_udp_set_multicast_ttl(open_handle("set_multicast_ttl"), ttl); rc < 0)
    detail::throw_udp(rc, "set_multicast_ttl");
}

void UdpSocket::set_multicast_interface(const std::string& interface_address) {
  if (int rc = uv_udp_set_multicast_interface(open_handle("set_multicast_interface"), detail::or_null(interface_address));
      rc < 0)
    detail::throw_udp(rc, "set_multicast_interface: '" + interface_address + "'");
}

void UdpSocket::join_group(const std::string& group, const std::string& interface_address) {
  if (int rc = uv_udp_set_membership(open_handle("join_group"), group.c_str(), detail::or_null(interface_address),
                                     UV_JOIN_GROUP);
      rc < 0)
    detail::throw_udp(rc, "join_group: cannot join " + group);
}

void UdpSocket::leave_group(const std::string& group, const std::string& interface_address) {
  if (int rc = uv_udp_set_membership(open_handle("leave_group"), group.c_str(), detail::or_null(interface_address),
                                     UV_LEAVE_GROUP);
      rc < 0)
    detail::throw_udp(rc, "leave_group: cannot leave " + group);
}

std::size_t UdpSocket::send_queue_size() const noexcept { return impl_ ? uv_udp_get_send_queue_size(&impl_->udp) : 0; }

}  // namespace duet
