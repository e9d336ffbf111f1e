#include "duet/stream.hpp"

#include <string>

namespace duet {
namespace detail {

void throw_closed(const char* what) {
  throw std::system_error(make_error_code(errc::not_connected), std::string("duet: ") + what + " on a closed stream");
}

void StreamImpl::ReadCallback::reset() noexcept {
  if (kind_ == Kind::once) once_.~OnceCallback();
  if (kind_ == Kind::stream) stream_.~StreamCallback();
  kind_ = Kind::none;
}

void StreamImpl::ReadCallback::set(OnceCallback&& cb) noexcept {
  reset();
  ::new (static_cast<void*>(&once_)) OnceCallback(std::move(cb));
  kind_ = Kind::once;
}

void StreamImpl::ReadCallback::set(StreamCallback&& cb) noexcept {
  if (kind_ == Kind::stream) {
    stream_ = std::move(cb);
    return;
  }
  reset();
  ::new (static_cast<void*>(&stream_)) StreamCallback(std::move(cb));
  kind_ = Kind::stream;
}

StreamImpl::OnceCallback StreamImpl::ReadCallback::take_once() noexcept {
  return kind_ == Kind::once ? std::move(once_) : OnceCallback();
}

StreamImpl::StreamCallback StreamImpl::ReadCallback::take_stream() noexcept {
  return kind_ == Kind::stream ? std::move(stream_) : StreamCallback();
}

StreamImpl::StreamCallback* StreamImpl::ReadCallback::stream() noexcept {
  return kind_ == Kind::stream ? &stream_ : nullptr;
}

StreamImpl::~StreamImpl() { delete stop_read_; }

bool StreamImpl::pending() const noexcept {
  // Waiting for data is pending work, unless the stream does not keep the loop alive (an idle pooled one).
  return reading_ != Reading::no && uv_has_ref(handle()) != 0;
}

void StreamImpl::before_close() noexcept {
  if (reading_ == Reading::once) cancel_read();
  reading_ = Reading::no;
  read_cb_.reset();
}

// A one-shot read is abandoned: stop reading, and report UV_ECANCELED from the loop.
void StreamImpl::cancel_read() noexcept {
  if (reading_ != Reading::once) return;
  uv_read_stop(stream());
  reading_ = Reading::no;
  once_buffer_ = {};
  core()->defer([cb = read_cb_.take_once()]() mutable { cb(uv_error(UV_ECANCELED), 0); });
}

void StreamImpl::read_once(std::span<char> buffer, UniqueFunction<void(std::error_code, std::size_t)> cb,
                           std::stop_token token) {
  auto fail = [&](std::error_code ec) { core()->defer([cb = std::move(cb), ec]() mutable { cb(ec, 0); }); };
  if (reading_ != Reading::no) return fail(make_error_code(errc::already_reading));
  if (buffer.empty()) return fail(make_error_code(errc::invalid_argument));
  if (token.stop_possible() && !stop_read_) stop_read_ = new OnLoopStop<StopRead>();
  // A streaming read's callback kept since read_stop goes, but only once this read is set up: its
  // captures may own the stream.
  StreamCallback previous = read_cb_.take_stream();
  reading_ = Reading::once;
  once_buffer_ = buffer;
  read_cb_.set(std::move(cb));
  if (int rc = uv_read_start(stream(), &on_alloc, &on_read); rc < 0) {
    reading_ = Reading::no;
    cb = read_cb_.take_once();
    return fail(uv_error(rc));
  }
  if (stop_read_) stop_read_->watch(core(), std::move(token), StopRead{this});
}

void StreamImpl::read_stream(UniqueFunction<void(std::error_code, std::span<const char>)> cb) {
  auto fail = [&](std::error_code ec) {
    core()->defer([cb = std::move(cb), ec]() mutable { cb(ec, std::span<const char>()); });
  };
  if (reading_ == Reading::once) return fail(make_error_code(errc::already_reading));
  read_cb_.set(std::move(cb));
  if (reading_ == Reading::stream) return;  // already reading: the new callback takes over
  reading_ = Reading::stream;
  if (int rc = uv_read_start(stream(), &on_alloc, &on_read); rc < 0) {
    reading_ = Reading::no;
    cb = read_cb_.take_stream();
    return fail(uv_error(rc));
  }
}

void StreamImpl::read_stop() noexcept {
  if (reading_ != Reading::stream) return;
  uv_read_stop(stream());
  reading_ = Reading::no;
}

void StreamImpl::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
  auto* self = of<StreamImpl>(h);
  if (self->reading_ == Reading::once) {
    *buf = buffer(self->once_buffer_.data(), self->once_buffer_.size());
    return;
  }
  char* shared = self->core()->read_buffer();
  *buf = shared ? buffer(shared, LoopCore::kReadBufferSize) : uv_buf_init(nullptr, 0);  // null: UV_ENOBUFS
}

void StreamImpl::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* self = of<StreamImpl>(s);
  if (nread == 0) return;  // nothing this time (EAGAIN)
  const std::error_code ec = (nread < 0 && nread != UV_EOF) ? uv_error(static_cast<int>(nread)) : std::error_code();
  const std::size_t n = nread > 0 ? static_cast<std::size_t>(nread) : 0;
  LoopCore* core = self->core();

  if (self->reading_ == Reading::once) {
    uv_read_stop(s);
    self->reading_ = Reading::no;
    self->once_buffer_ = {};
    if (self->stop_read_) self->stop_read_->reset();
    auto cb = self->read_cb_.take_once();
    return core->invoke(cb, ec, n);
  }
  if (self->reading_ != Reading::stream) return;
  if (nread < 0) {  // end of stream or error ends a streaming read
    uv_read_stop(s);
    self->reading_ = Reading::no;
    auto cb = self->read_cb_.take_stream();
    return core->invoke(cb, ec, std::span<const char>());
  }
  // The callback may stop, restart with another callback, or close: run it from a local.
  auto cb = self->read_cb_.take_stream();
  core->invoke(cb, std::error_code(), std::span<const char>(buf->base, n));
  if (self->reading_ != Reading::stream) return;
  if (StreamCallback* kept = self->read_cb_.stream()) {
    if (!*kept) *kept = std::move(cb);  // (unless a new read_stream replaced it)
  } else {
    self->read_cb_.set(std::move(cb));
  }
}

}  // namespace detail

std::size_t Stream::try_write(std::string_view bytes, std::error_code& ec) noexcept {
  ec.clear();
  if (!impl_) {
    ec = make_error_code(errc::not_connected);
    return 0;
  }
  if (bytes.empty()) return 0;
  uv_buf_t buf = detail::buffer(const_cast<char*>(bytes.data()), bytes.size());
  const int rc = uv_try_write(impl_->stream(), &buf, 1);
  if (rc == UV_EAGAIN) return 0;
  if (rc < 0) {
    ec = uv_error(rc);
    return 0;
  }
  return static_cast<std::size_t>(rc);
}

}  // namespace duet

namespace duet::detail {

int ListenerImpl::listen(int backlog) noexcept {
  return uv_listen(reinterpret_cast<uv_stream_t*>(handle()), backlog, &on_connection);
}

void ListenerImpl::cancel_accept() noexcept {
  if (!acceptor_) return;
  Accepted cb = std::move(acceptor_);
  forget_accept();
  core()->defer([cb = std::move(cb)]() mutable { cb(uv_error(UV_ECANCELED), HandlePtr<StreamImpl>()); });
}

void ListenerImpl::forget_accept() noexcept {
  stop_accept_.reset();
  acceptor_.reset();
}

// Accepts the connection libuv holds; returns the stream or the error.
std::pair<std::error_code, HandlePtr<StreamImpl>> ListenerImpl::take() noexcept {
  HandlePtr<StreamImpl> peer;
  try {
    peer = make_peer();
  } catch (const std::system_error& e) {
    return {e.code(), HandlePtr<StreamImpl>()};
  } catch (...) {
    return {uv_error(UV_ENOMEM), HandlePtr<StreamImpl>()};
  }
  if (int rc = uv_accept(reinterpret_cast<uv_stream_t*>(handle()), peer->stream()); rc < 0)
    return {uv_error(rc), HandlePtr<StreamImpl>()};  // `peer` closes as it goes
  return {std::error_code(), std::move(peer)};
}

void ListenerImpl::on_connection(uv_stream_t* server, int status) noexcept {
  auto* self = of<ListenerImpl>(server);
  if (!self->acceptor_) {
    if (status < 0)
      self->last_error_ = status;
    else
      ++self->ready_;
    return;
  }
  auto cb = std::move(self->acceptor_);
  self->acceptor_.reset();
  self->stop_accept_.reset();
  if (status < 0) return self->core()->invoke(cb, uv_error(status), HandlePtr<StreamImpl>());
  auto [ec, stream] = self->take();
  self->core()->invoke(cb, ec, std::move(stream));
}

void ListenerImpl::accept(Accepted cb, std::stop_token token) {
  auto deliver_later = [&](std::error_code ec, HandlePtr<StreamImpl> stream) {
    core()->defer([cb = std::move(cb), ec, s = std::move(stream)]() mutable { cb(ec, std::move(s)); });
  };
  if (acceptor_) return deliver_later(make_error_code(errc::already_reading), HandlePtr<StreamImpl>());
  if (token.stop_requested()) return deliver_later(uv_error(UV_ECANCELED), HandlePtr<StreamImpl>());
  if (ready_ > 0) {
    --ready_;
    auto [ec, stream] = take();
    return deliver_later(ec, std::move(stream));
  }
  if (last_error_ < 0) return deliver_later(uv_error(std::exchange(last_error_, 0)), HandlePtr<StreamImpl>());
  acceptor_ = std::move(cb);
  stop_accept_.watch(core(), std::move(token), StopAccept{this});
}

}  // namespace duet::detail
