#include "duet/tcp.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace duet {
namespace detail {

namespace {

int init_tcp(uv_loop_t* loop, uv_tcp_t* tcp) noexcept { return uv_tcp_init(loop, tcp); }

class TcpListenerImpl final : public ListenerImpl {
 public:
  /// `family` other than AF_UNSPEC: the socket is made now (so that options can be set before bind).
  TcpListenerImpl(LoopCore* core, unsigned family) : ListenerImpl(core, reinterpret_cast<uv_handle_t*>(&tcp)) {
    if (int rc = uv_tcp_init_ex(core->uv(), &tcp, family); rc < 0)
      throw std::system_error(uv_error(rc), "uv_tcp_init_ex");
    adopt(&tcp);
  }
  uv_tcp_t tcp{};

 private:
  HandlePtr<StreamImpl> make_peer() override { return make_tcp(core()); }
};

Endpoint endpoint_of(const uv_tcp_t* tcp, bool peer) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  int rc = peer ? uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len)
                : uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc < 0) throw std::system_error(uv_error(rc), peer ? "uv_tcp_getpeername" : "uv_tcp_getsockname");
  return Endpoint(reinterpret_cast<const sockaddr*>(&ss));
}

}  // namespace

HandlePtr<StreamImpl> make_tcp(LoopCore* core) {
  HandlePtr<StreamImpl> impl(core->make<StreamHandle<uv_tcp_t>>(core, &init_tcp));
  uv_tcp_nodelay(tcp_handle(impl.get()), 1);
  return impl;
}

uv_tcp_t* tcp_handle(StreamImpl* impl) noexcept { return reinterpret_cast<uv_tcp_t*>(impl->handle()); }

}  // namespace detail

// ---- TcpStream -----------------------------------------------------------------------------------------

TcpStream TcpStream::open(Loop& loop, uv_os_sock_t socket) {
  TcpStream s(detail::make_tcp(&loop.core()));
  if (int rc = uv_tcp_open(s.native(), socket); rc < 0) throw std::system_error(uv_error(rc), "duet::TcpStream::open");
  uv_tcp_nodelay(s.native(), 1);
  return s;
}

uv_tcp_t* TcpStream::native() const noexcept { return impl_ ? detail::tcp_handle(impl_.get()) : nullptr; }

Endpoint TcpStream::local_endpoint() const {
  return detail::endpoint_of(detail::tcp_handle(open_impl("local_endpoint")), false);
}

Endpoint TcpStream::remote_endpoint() const {
  return detail::endpoint_of(detail::tcp_handle(open_impl("remote_endpoint")), true);
}

void TcpStream::set_nodelay(bool enable) {
  if (int rc = uv_tcp_nodelay(detail::tcp_handle(open_impl("set_nodelay")), enable ? 1 : 0); rc < 0)
    throw std::system_error(uv_error(rc), "uv_tcp_nodelay");
}

void TcpStream::set_keepalive(bool enable, std::chrono::seconds idle) {
  if (enable && idle.count() < 1)
    throw std::system_error(make_error_code(errc::invalid_argument), "set_keepalive: idle < 1 s");
  const auto delay = static_cast<unsigned>(std::min<long long>(idle.count(), 0x7fffffff));
  if (int rc = uv_tcp_keepalive(detail::tcp_handle(open_impl("set_keepalive")), enable ? 1 : 0, delay); rc < 0)
    throw std::system_error(uv_error(rc), "uv_tcp_keepalive");
}

void TcpStream::close_reset() noexcept {
  if (!impl_) return;
  // The reset closes the handle; its close callback frees the stream as a plain close would. After a
  // shutdown libuv refuses a reset (UV_EINVAL): the stream is then closed plainly.
  impl_->close_with([](uv_handle_t* h, uv_close_cb done) noexcept {
    return uv_tcp_close_reset(reinterpret_cast<uv_tcp_t*>(h), done);
  });
}

// ---- TcpListener ---------------------------------------------------------------------------------------

TcpListener::TcpListener(Loop& loop, const Endpoint& at, int backlog, bool reuse_port) {
  auto* impl = loop.core().make<detail::TcpListenerImpl>(&loop.core(), reuse_port ? at.data()->sa_family : AF_UNSPEC);
  impl_ = detail::HandlePtr<detail::ListenerImpl>(impl);
  int rc = 0;
  if (reuse_port) {  // libuv (before 1.49) has no flag for it: set on the socket before bind
    uv_os_fd_t fd;
    int one = 1;
    rc = uv_fileno(reinterpret_cast<const uv_handle_t*>(&impl->tcp), &fd);
    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) rc = uv_translate_sys_error(errno);
  }
  if (rc == 0) rc = uv_tcp_bind(&impl->tcp, at.data(), 0);
  if (rc == 0) rc = impl->listen(backlog);
  if (rc < 0) {
    impl_.reset();
    throw std::system_error(uv_error(rc), "duet::TcpListener: cannot listen on " + at.to_string());
  }
}

Endpoint TcpListener::local_endpoint() const {
  if (!impl_) throw std::system_error(make_error_code(errc::not_connected), "duet::TcpListener::local_endpoint");
  return detail::endpoint_of(reinterpret_cast<const uv_tcp_t*>(impl_->handle()), false);
}

}  // namespace duet
