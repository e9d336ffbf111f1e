#include "duet/tcp.hpp"

#include <system_error>

namespace duet {
namespace detail {

struct TcpImpl final : Resource {
  enum class Reading { no, once, stream };

  uv_tcp_t tcp{};
  LoopCore* core;
  TcpStream* owner = nullptr;
  Reading reading = Reading::no;
  std::span<char> once_buffer;
  UniqueFunction<void(std::error_code, std::size_t)> once_cb;
  UniqueFunction<void(std::error_code, std::span<const char>)> stream_cb;

  struct StopRead {
    TcpImpl* self;
    void operator()() const noexcept { self->cancel_read(); }
  };
  OnLoopStop<StopRead> stop_read;  // a cancellable one-shot read's stop token, routed to the loop thread

  explicit TcpImpl(LoopCore* c) : core(c) {
    if (int rc = uv_tcp_init(core->uv, &tcp); rc < 0) throw std::system_error(uv_error(rc), "uv_tcp_init");
    tcp.data = this;
  }

  uv_stream_t* stream() noexcept { return reinterpret_cast<uv_stream_t*>(&tcp); }

  bool pending() const noexcept override {  // an unreferenced stream (an idle pooled one) is not pending work
    return reading != Reading::no && uv_has_ref(reinterpret_cast<const uv_handle_t*>(&tcp)) != 0;
  }
  void abandon() noexcept override { close(); }

  void close() noexcept {
    if (owner) owner->impl_ = nullptr;
    owner = nullptr;
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp))) return;
    if (reading == Reading::once) cancel_read();
    reading = Reading::no;
    stream_cb.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), [](uv_handle_t* h) noexcept {
      auto* self = static_cast<TcpImpl*>(h->data);
      self->core->destroy(self);
    });
  }

  // A one-shot read is abandoned: stop reading, and report UV_ECANCELED from the loop.
  void cancel_read() noexcept {
    if (reading != Reading::once) return;
    uv_read_stop(stream());
    reading = Reading::no;
    once_buffer = {};
    core->defer([cb = std::move(once_cb)]() mutable { cb(uv_error(UV_ECANCELED), 0); });
  }

  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
    auto* self = static_cast<TcpImpl*>(h->data);
    if (self->reading == Reading::once) {
      *buf = buffer(self->once_buffer.data(), self->once_buffer.size());
      return;
    }
    if (!self->core->read_buffer) {
      self->core->read_buffer.reset(new (std::nothrow) char[LoopCore::kReadBufferSize]);
      if (!self->core->read_buffer) {
        *buf = uv_buf_init(nullptr, 0);  // libuv reports UV_ENOBUFS to on_read
        return;
      }
    }
    *buf = uv_buf_init(self->core->read_buffer.get(), LoopCore::kReadBufferSize);
  }

  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
    auto* self = static_cast<TcpImpl*>(s->data);
    if (nread == 0) return;  // nothing this time (EAGAIN)
    const std::error_code ec = (nread < 0 && nread != UV_EOF) ? uv_error(static_cast<int>(nread)) : std::error_code();
    const std::size_t n = nread > 0 ? static_cast<std::size_t>(nread) : 0;

    if (self->reading == Reading::once) {
      uv_read_stop(s);
      self->reading = Reading::no;
      self->once_buffer = {};
      self->stop_read.reset();
      auto cb = std::move(self->once_cb);
      return self->core->invoke(cb, ec, n);
    }
    if (self->reading != Reading::stream) return;
    if (nread < 0) {  // end of stream or error ends a streaming read
      uv_read_stop(s);
      self->reading = Reading::no;
      auto cb = std::move(self->stream_cb);
      return self->core->invoke(cb, ec, std::span<const char>());
    }
    // The callback may stop, restart with another callback, or close: run it from a local.
    auto cb = std::move(self->stream_cb);
    self->core->invoke(cb, std::error_code(), std::span<const char>(buf->base, n));
    if (self->reading == Reading::stream && !self->stream_cb) self->stream_cb = std::move(cb);
  }
};

TcpImpl* make_tcp(LoopCore* core) {
  TcpImpl* impl = core->make<TcpImpl>(core);
  uv_tcp_nodelay(&impl->tcp, 1);
  return impl;
}

uv_tcp_t* tcp_handle(TcpImpl* impl) noexcept { return &impl->tcp; }

void close_tcp(TcpImpl* impl) noexcept { impl->close(); }

struct ListenerImpl final : Resource {
  uv_tcp_t tcp{};
  LoopCore* core;
  TcpListener* owner = nullptr;
  UniqueFunction<void(std::error_code, TcpStream)> acceptor;
  int ready = 0;       // connections libuv is holding for us
  int last_error = 0;  // a listen error with nobody waiting
  struct StopAccept {
    ListenerImpl* self;
    void operator()() const noexcept { self->cancel_accept(); }
  };
  OnLoopStop<StopAccept> stop_accept;

  explicit ListenerImpl(LoopCore* c) : core(c) {
    if (int rc = uv_tcp_init(core->uv, &tcp); rc < 0) throw std::system_error(uv_error(rc), "uv_tcp_init");
    tcp.data = this;
  }

  bool pending() const noexcept override { return static_cast<bool>(acceptor); }
  void abandon() noexcept override { close(); }

  void close() noexcept {
    if (owner) owner->impl_ = nullptr;
    owner = nullptr;
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp))) return;
    cancel_accept();
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), [](uv_handle_t* h) noexcept {
      auto* self = static_cast<ListenerImpl*>(h->data);
      self->core->destroy(self);
    });
  }

  void cancel_accept() noexcept {
    if (!acceptor) return;
    core->defer([cb = std::move(acceptor)]() mutable { cb(uv_error(UV_ECANCELED), TcpStream()); });
    acceptor.reset();
  }

  // Accepts the connection libuv holds; returns the stream or the error.
  std::pair<std::error_code, TcpStream> take() noexcept {
    TcpImpl* t = nullptr;
    try {
      t = make_tcp(core);
    } catch (const std::system_error& e) {
      return {e.code(), TcpStream()};
    } catch (...) {
      return {uv_error(UV_ENOMEM), TcpStream()};
    }
    if (int rc = uv_accept(reinterpret_cast<uv_stream_t*>(&tcp), reinterpret_cast<uv_stream_t*>(&t->tcp)); rc < 0) {
      t->close();
      return {uv_error(rc), TcpStream()};
    }
    return {std::error_code(), TcpStream(t)};
  }

  static void on_connection(uv_stream_t* server, int status) noexcept {
    auto* self = static_cast<ListenerImpl*>(server->data);
    if (!self->acceptor) {
      if (status < 0)
        self->last_error = status;
      else
        ++self->ready;
      return;
    }
    auto cb = std::move(self->acceptor);
    self->acceptor.reset();
    self->stop_accept.reset();
    if (status < 0) return self->core->invoke(cb, uv_error(status), TcpStream());
    auto [ec, stream] = self->take();
    self->core->invoke(cb, ec, std::move(stream));
  }
};

}  // namespace detail

// ---- TcpStream -----------------------------------------------------------------------------------------

TcpStream::TcpStream(detail::TcpImpl* impl) noexcept : impl_(impl) { impl_->owner = this; }

TcpStream::TcpStream(TcpStream&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {
  if (impl_) impl_->owner = this;
}

TcpStream& TcpStream::operator=(TcpStream&& other) noexcept {
  if (this != &other) {
    close();
    impl_ = std::exchange(other.impl_, nullptr);
    if (impl_) impl_->owner = this;
  }
  return *this;
}

TcpStream::~TcpStream() { close(); }

void TcpStream::close() noexcept {
  if (impl_) impl_->close();  // clears impl_
}

detail::LoopCore* TcpStream::core_if_open() const noexcept { return impl_ ? impl_->core : nullptr; }
uv_stream_t* TcpStream::stream_if_open() noexcept { return impl_ ? impl_->stream() : nullptr; }
uv_tcp_t* TcpStream::native() noexcept { return impl_ ? &impl_->tcp : nullptr; }

void TcpStream::read_once(std::span<char> buffer, detail::UniqueFunction<void(std::error_code, std::size_t)> cb,
                          std::stop_token token) {
  using Reading = detail::TcpImpl::Reading;
  if (!impl_) throw std::system_error(make_error_code(errc::not_connected), "duet::TcpStream::read on a closed stream");
  detail::LoopCore* core = impl_->core;
  auto fail = [&](std::error_code ec) { core->defer([cb = std::move(cb), ec]() mutable { cb(ec, 0); }); };
  if (impl_->reading != Reading::no) return fail(make_error_code(errc::already_reading));
  if (buffer.empty()) return fail(make_error_code(errc::invalid_argument));
  impl_->reading = Reading::once;
  impl_->once_buffer = buffer;
  impl_->once_cb = std::move(cb);
  if (int rc = uv_read_start(impl_->stream(), &detail::TcpImpl::on_alloc, &detail::TcpImpl::on_read); rc < 0) {
    impl_->reading = Reading::no;
    cb = std::move(impl_->once_cb);
    return fail(uv_error(rc));
  }
  impl_->stop_read.watch(core, std::move(token), detail::TcpImpl::StopRead{impl_});
}

void TcpStream::read_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>)> cb) {
  using Reading = detail::TcpImpl::Reading;
  if (!impl_)
    throw std::system_error(make_error_code(errc::not_connected), "duet::TcpStream::read_start on a closed stream");
  detail::LoopCore* core = impl_->core;
  auto fail = [&](std::error_code ec) {
    core->defer([cb = std::move(cb), ec]() mutable { cb(ec, std::span<const char>()); });
  };
  if (impl_->reading == Reading::once) return fail(make_error_code(errc::already_reading));
  impl_->stream_cb = std::move(cb);
  if (impl_->reading == Reading::stream) return;  // already reading: the new callback takes over
  impl_->reading = Reading::stream;
  if (int rc = uv_read_start(impl_->stream(), &detail::TcpImpl::on_alloc, &detail::TcpImpl::on_read); rc < 0) {
    impl_->reading = Reading::no;
    cb = std::move(impl_->stream_cb);
    return fail(uv_error(rc));
  }
}

void TcpStream::read_stop() noexcept {
  if (!impl_ || impl_->reading != detail::TcpImpl::Reading::stream) return;
  uv_read_stop(impl_->stream());
  impl_->reading = detail::TcpImpl::Reading::no;
}

namespace {
Endpoint endpoint_of(const uv_tcp_t* tcp, bool peer) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  int rc = peer ? uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len)
                : uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc < 0) throw std::system_error(uv_error(rc), peer ? "uv_tcp_getpeername" : "uv_tcp_getsockname");
  return Endpoint(reinterpret_cast<const sockaddr*>(&ss));
}
}  // namespace

Endpoint TcpStream::local_endpoint() const {
  if (!impl_) throw std::system_error(make_error_code(errc::not_connected), "duet::TcpStream::local_endpoint");
  return endpoint_of(&impl_->tcp, false);
}

Endpoint TcpStream::remote_endpoint() const {
  if (!impl_) throw std::system_error(make_error_code(errc::not_connected), "duet::TcpStream::remote_endpoint");
  return endpoint_of(&impl_->tcp, true);
}

void TcpStream::set_nodelay(bool enable) {
  if (!impl_) throw std::system_error(make_error_code(errc::not_connected), "duet::TcpStream::set_nodelay");
  if (int rc = uv_tcp_nodelay(&impl_->tcp, enable ? 1 : 0); rc < 0)
    throw std::system_error(uv_error(rc), "uv_tcp_nodelay");
}

// ---- TcpListener ---------------------------------------------------------------------------------------

TcpListener::TcpListener(Loop& loop, const Endpoint& at, int backlog)
    : impl_(loop.core().make<detail::ListenerImpl>(&loop.core())) {
  impl_->owner = this;
  int rc = uv_tcp_bind(&impl_->tcp, at.data(), 0);
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&impl_->tcp), backlog, &detail::ListenerImpl::on_connection);
  if (rc < 0) {
    impl_->close();
    throw std::system_error(uv_error(rc), "duet::TcpListener: cannot listen on " + at.to_string());
  }
}

TcpListener::TcpListener(TcpListener&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {
  if (impl_) impl_->owner = this;
}

TcpListener& TcpListener::operator=(TcpListener&& other) noexcept {
  if (this != &other) {
    close();
    impl_ = std::exchange(other.impl_, nullptr);
    if (impl_) impl_->owner = this;
  }
  return *this;
}

TcpListener::~TcpListener() { close(); }

void TcpListener::close() noexcept {
  if (impl_) impl_->close();
}

Endpoint TcpListener::local_endpoint() const {
  if (!impl_) throw std::system_error(make_error_code(errc::not_connected), "duet::TcpListener::local_endpoint");
  return endpoint_of(&impl_->tcp, false);
}

void TcpListener::accept_erased(detail::UniqueFunction<void(std::error_code, TcpStream)> cb, std::stop_token token) {
  if (!impl_)
    throw std::system_error(make_error_code(errc::not_connected), "duet::TcpListener::accept on a closed listener");
  detail::LoopCore* core = impl_->core;
  auto deliver_later = [&](std::error_code ec, TcpStream stream) {
    core->defer([cb = std::move(cb), ec, s = std::move(stream)]() mutable { cb(ec, std::move(s)); });
  };
  if (impl_->acceptor) return deliver_later(make_error_code(errc::already_reading), TcpStream());
  if (impl_->ready > 0) {
    --impl_->ready;
    auto [ec, stream] = impl_->take();
    return deliver_later(ec, std::move(stream));
  }
  if (impl_->last_error < 0) {
    return deliver_later(uv_error(std::exchange(impl_->last_error, 0)), TcpStream());
  }
  impl_->acceptor = std::move(cb);
  impl_->stop_accept.watch(core, std::move(token), detail::ListenerImpl::StopAccept{impl_});
}

}  // namespace duet
