// TlsStream: a TlsEngine (tls_engine.cpp) driven over a duet stream. The session owns the transport
// and one timer, which times the handshake and, after it, schedules deliveries that must not happen
// inside the call that asked for them (a read when plaintext is already decrypted).
#include "duet/tls.hpp"

#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "duet/detail/tls_engine.hpp"
#include "tls_context.hpp"

namespace duet::detail {

namespace {

/// The transport, seen as a plain `Stream`: the TLS session reads and writes through its faces.
class Transport final : public Stream {
 public:
  Transport() noexcept = default;
  explicit Transport(HandlePtr<StreamImpl> impl) noexcept : Stream(std::move(impl)) {}
};

/// The peer's address on a TCP transport, so that sessions are resumed per name *and* server.
std::string peer_suffix(StreamImpl* transport) {
  if (transport->handle()->type != UV_TCP) return {};
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getpeername(reinterpret_cast<uv_tcp_t*>(transport->handle()), reinterpret_cast<sockaddr*>(&addr), &len) <
      0)
    return {};
  char ip[64] = {};
  int port = 0;
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    uv_ip4_name(in, ip, sizeof ip);
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
    uv_ip6_name(in6, ip, sizeof ip);
    port = ntohs(in6->sin6_port);
  }
  return "|" + std::string(ip) + ":" + std::to_string(port);
}

}  // namespace

class TlsSession final : public OwnedHandle {
 public:
  static constexpr std::size_t kPlainBuffer = 16 * 1024;   // one TLS record's worth
  static constexpr std::size_t kMaxOwnOutput = 64 * 1024;  // see flush()

  TlsSession(LoopCore* core, std::unique_ptr<TlsEngine> engine, HandlePtr<StreamImpl> transport)
      : OwnedHandle(core, &timer_), engine_(std::move(engine)), transport_(std::move(transport)) {
    uv_timer_init(core->uv(), &timer_);  // cannot fail for timers
    adopt(&timer_);
  }

  TlsEngine& engine() noexcept { return *engine_; }
  Transport& transport() noexcept { return transport_; }

  bool pending() const noexcept override { return static_cast<bool>(handshake_cb_) || OwnedHandle::pending(); }

  // ---- the handshake --------------------------------------------------------------------------------

  void start(std::uint64_t timeout_ms, UniqueFunction<void(std::error_code, TlsStream)> cb, std::stop_token token) {
    self_ = HandlePtr<TlsSession>(this);
    handshake_cb_ = std::move(cb);
    timeout_ms_ = timeout_ms;
    starting_ = true;
    if (timeout_ms > 0) {
      core()->update_time();
      uv_timer_start(&timer_, &on_timer, timeout_ms, 0);
    }
    stop_handshake_.watch(core(), std::move(token), StopHandshake{this});
    if (handshake_cb_) advance_handshake();
    starting_ = false;
  }

  // ---- reading --------------------------------------------------------------------------------------

  void read_once(std::span<char> buffer, UniqueFunction<void(std::error_code, std::size_t)> cb, std::stop_token token) {
    auto fail = [&](std::error_code ec) { core()->defer([cb = std::move(cb), ec]() mutable { cb(ec, 0); }); };
    if (reading_ != Reading::no) return fail(make_error_code(errc::already_reading));
    if (buffer.empty()) return fail(make_error_code(errc::invalid_argument));
    reading_ = Reading::once;
    once_buffer_ = buffer;
    once_cb_ = std::move(cb);
    stop_read_.watch(core(), std::move(token), StopRead{this});
    if (reading_ == Reading::once) start_reading();
  }

  void read_stream(UniqueFunction<void(std::error_code, std::span<const char>)> cb) {
    if (reading_ == Reading::once)
      return core()->defer(
          [cb = std::move(cb)]() mutable { cb(make_error_code(errc::already_reading), std::span<const char>()); });
    stream_cb_ = std::move(cb);
    if (reading_ == Reading::stream) return;
    reading_ = Reading::stream;
    start_reading();
  }

  void read_stop() noexcept {
    if (reading_ != Reading::stream) return;
    reading_ = Reading::no;
    update_transport_reading();
  }

  // ---- writing --------------------------------------------------------------------------------------

  /// A transport write or shutdown on behalf of the caller (or of the session itself: `library`):
  /// holds the session until it completes.
  struct Done {
    Done(TlsSession* s, UniqueFunction<void(std::error_code)> c, std::stop_token t, bool library) noexcept
        : session(s), cb(std::move(c)), token(std::move(t)), library(library) {
      session->hold();
    }
    Done(Done&& o) noexcept
        : session(std::exchange(o.session, nullptr)),
          cb(std::move(o.cb)),
          token(std::move(o.token)),
          library(o.library) {}
    Done& operator=(Done&&) = delete;
    ~Done() {
      if (session) session->release();
    }
    std::stop_token stop_token() const noexcept { return token; }
    bool from_library() const noexcept { return library; }
    void operator()(std::error_code ec) {
      if (cb) cb(ec);
    }
    TlsSession* session;
    UniqueFunction<void(std::error_code)> cb;
    std::stop_token token;
    bool library;
  };

  void write(std::string bytes, UniqueFunction<void(std::error_code)> cb, std::stop_token token, bool library) {
    auto fail = [&](std::error_code ec, std::string why) {
      reason_ = std::move(why);
      core()->defer([cb = std::move(cb), ec]() mutable { cb(ec); });
    };
    // After close_notify nothing more may be sent; reading goes on.
    if (shut_down_) return fail(uv_error(UV_EPIPE), "write after shutdown");
    if (engine_->write(bytes) == TlsEngine::Status::failed) return fail(engine_->error(), engine_->reason());
    transport_.write(engine_->take_output(), Done(this, std::move(cb), std::move(token), library));
  }

  void shutdown(UniqueFunction<void(std::error_code)> cb, std::stop_token token, bool library) {
    shut_down_ = true;
    engine_->close_notify();
    flush();
    transport_.shutdown(Done(this, std::move(cb), std::move(token), library));
  }

  /// Sends close_notify if the kernel takes it at once (it never waits, and never queues).
  void close_notify_now() noexcept {
    if (shut_down_ || ended_ || handshake_cb_ || !transport_.is_open()) return;
    shut_down_ = true;
    engine_->close_notify();
    const std::string out = engine_->take_output();
    std::error_code ignored;
    transport_.try_write(out, ignored);
  }

  void keep_loop_alive(bool keep) noexcept {
    transport_.keep_loop_alive(keep);
    keep ? uv_ref(handle()) : uv_unref(handle());
  }

  const std::string& reason() const noexcept { return reason_; }

 protected:
  void before_close() noexcept override {
    uv_timer_stop(&timer_);
    stop_read_.reset();
    stop_handshake_.reset();
    handshake_cb_.reset();  // only the loop's destruction closes a session mid-handshake: nobody to tell
    if (reading_ == Reading::once) {
      reading_ = Reading::no;
      core()->defer([cb = std::move(once_cb_)]() mutable { cb(uv_error(UV_ECANCELED), 0); });
    }
    reading_ = Reading::no;
    stream_cb_.reset();
    transport_.close();
  }

 private:
  enum class Reading { no, once, stream };

  struct StopHandshake {
    TlsSession* self;
    void operator()() const noexcept {  // inside request_stop(): the callback comes on a later turn
      self->finish_handshake(uv_error(UV_ECANCELED), "the TLS handshake was cancelled", Deliver::later);
    }
  };
  struct StopRead {
    TlsSession* self;
    void operator()() const noexcept { self->cancel_read(); }
  };

  void advance_handshake() noexcept {
    const TlsEngine::Status status = engine_->handshake();
    flush();
    if (status == TlsEngine::Status::ok) return finish_handshake({}, {});
    if (status == TlsEngine::Status::failed) return finish_handshake(engine_->error(), engine_->reason());
    update_transport_reading();
  }

  enum class Deliver { now, later };

  void finish_handshake(std::error_code ec, std::string reason, Deliver when = Deliver::now) noexcept {
    if (!handshake_cb_) return;
    uv_timer_stop(&timer_);
    stop_handshake_.reset();
    auto cb = std::move(handshake_cb_);
    handshake_cb_.reset();
    HandlePtr<TlsSession> me = std::move(self_);
    if (ec) {
      me.reset();  // closes the session and its transport
      return deliver(std::move(cb), ec, TlsStream(std::move(reason)), when);
    }
    update_transport_reading();
    deliver(std::move(cb), ec, TlsStream(std::move(me)), when);
  }

  void deliver(UniqueFunction<void(std::error_code, TlsStream)> cb, std::error_code ec, TlsStream s,
               Deliver when) noexcept {
    if (starting_ || when == Deliver::later)  // never inside the call that started the handshake
      return core()->defer([cb = std::move(cb), ec, s = std::move(s)]() mutable { cb(ec, std::move(s)); });
    core()->invoke(cb, ec, std::move(s));
  }

  static void on_timer(uv_timer_t* t) noexcept {
    auto* self = of<TlsSession>(t);
    if (self->handshake_cb_)
      return self->finish_handshake(uv_error(UV_ETIMEDOUT), "the TLS handshake did not finish within " +
                                                                std::to_string(self->timeout_ms_) + " ms");
    self->pump();
  }

  // ---- the transport --------------------------------------------------------------------------------

  void on_transport(std::error_code ec, std::span<const char> chunk) noexcept {
    if (ec || chunk.empty()) {
      transport_reading_ = false;  // the transport's streaming read ends here
      if (handshake_cb_) {
        if (ec) return finish_handshake(ec, "connection error during the TLS handshake: " + ec.message());
        return finish_handshake(make_error_code(errc::tls_handshake_failed),
                                "TLS handshake failed: the peer closed the connection during the handshake");
      }
      ended_ = true;
      if (ec) {
        end_ = ec;
        reason_ = "connection error: " + ec.message();
      }
      return pump();
    }
    engine_->feed(chunk.data(), chunk.size());
    if (handshake_cb_) return advance_handshake();
    pump();
  }

  void update_transport_reading() noexcept {
    const bool want = !closing() && transport_.is_open() && !ended_ && own_output_ <= kMaxOwnOutput &&
                      (handshake_cb_ || reading_ != Reading::no);
    if (want == transport_reading_) return;
    transport_reading_ = want;
    if (!want) return transport_.read_stop();
    try {
      transport_.read_start([this](std::error_code ec, std::span<const char> chunk) { on_transport(ec, chunk); });
    } catch (...) {  // a closed transport: nothing to read
      transport_reading_ = false;
    }
  }

  /// Sends what OpenSSL has queued of its own (handshake messages, alerts, key updates). While more
  /// than kMaxOwnOutput of it waits for the peer to read, the transport is not read: a peer that
  /// provokes answers and never reads them fills its own buffers, not this process's memory.
  void flush() noexcept {
    if (!engine_->has_output() || !transport_.is_open()) return;
    try {
      std::string out = engine_->take_output();
      const std::size_t n = out.size();
      own_output_ += n;
      auto sent = [this, n](std::error_code) {
        own_output_ -= n;
        update_transport_reading();
      };
      transport_.write(std::move(out), Done(this, std::move(sent), std::stop_token(), true));
    } catch (...) {  // out of memory: the peer will see the connection stall and time out
    }
  }

  /// A read begins: with bytes already inside the engine (or the end already seen), delivery runs on the
  /// next turn of the loop (never inside the call); otherwise the transport is read.
  void start_reading() noexcept {
    if (ended_ || engine_->has_buffered())
      uv_timer_start(&timer_, &on_timer, 0, 0);
    else
      update_transport_reading();
  }

  // ---- delivering plaintext -------------------------------------------------------------------------

  void pump() noexcept {
    while (reading_ != Reading::no && !closing()) {
      std::size_t got = 0;
      TlsEngine::Status status;
      if (reading_ == Reading::once) {
        status = engine_->read(once_buffer_.data(), once_buffer_.size(), got);
      } else {
        if (!plain_) plain_.reset(new (std::nothrow) char[kPlainBuffer]);
        if (!plain_) return end_reading(uv_error(UV_ENOBUFS));
        status = engine_->read(plain_.get(), kPlainBuffer, got);
      }
      flush();
      if (status == TlsEngine::Status::ok && got > 0) {
        if (reading_ == Reading::once) return deliver_once({}, got);
        auto cb = std::move(stream_cb_);
        core()->invoke(cb, std::error_code(), std::span<const char>(plain_.get(), got));
        if (closing()) return;
        if (reading_ == Reading::stream && !stream_cb_) stream_cb_ = std::move(cb);
        continue;
      }
      if (status == TlsEngine::Status::closed) return end_reading({});
      if (status == TlsEngine::Status::failed) {
        reason_ = engine_->reason();
        return end_reading(engine_->error());
      }
      if (ended_) {  // the transport ended: cleanly only after close_notify
        if (!end_ && !engine_->received_close_notify()) {
          end_ = make_error_code(errc::tls_truncated);
          reason_ = "the peer closed the connection without close_notify: the data may be truncated";
        }
        return end_reading(end_);
      }
      break;  // more ciphertext needed
    }
    update_transport_reading();
  }

  /// End of stream (no error) or a failure, told to the reader.
  void end_reading(std::error_code ec) noexcept {
    ended_ = true;
    if (reading_ == Reading::once) return deliver_once(ec, 0);
    reading_ = Reading::no;
    update_transport_reading();
    auto cb = std::move(stream_cb_);
    stream_cb_.reset();
    if (cb) core()->invoke(cb, ec, std::span<const char>());
  }

  void deliver_once(std::error_code ec, std::size_t n) noexcept {
    reading_ = Reading::no;
    once_buffer_ = {};
    stop_read_.reset();
    update_transport_reading();
    auto cb = std::move(once_cb_);
    once_cb_.reset();
    core()->invoke(cb, ec, n);
  }

  void cancel_read() noexcept {
    if (reading_ != Reading::once) return;
    reading_ = Reading::no;
    once_buffer_ = {};
    core()->defer([cb = std::move(once_cb_)]() mutable { cb(uv_error(UV_ECANCELED), 0); });
    once_cb_.reset();
    update_transport_reading();
  }

  uv_timer_t timer_{};
  std::unique_ptr<TlsEngine> engine_;
  Transport transport_;
  bool transport_reading_ = false;
  std::size_t own_output_ = 0;  // bytes of OpenSSL's own (flush) handed to the transport, not yet sent
  bool shut_down_ = false;      // close_notify sent: no more writes

  // The handshake.
  HandlePtr<TlsSession> self_;  // the session is its own owner until the handshake hands it over
  UniqueFunction<void(std::error_code, TlsStream)> handshake_cb_;
  OnLoopStop<StopHandshake> stop_handshake_;
  std::uint64_t timeout_ms_ = 0;
  bool starting_ = false;

  // Reading.
  Reading reading_ = Reading::no;
  std::span<char> once_buffer_;
  UniqueFunction<void(std::error_code, std::size_t)> once_cb_;
  UniqueFunction<void(std::error_code, std::span<const char>)> stream_cb_;
  OnLoopStop<StopRead> stop_read_;
  std::unique_ptr<char[]> plain_;
  bool ended_ = false;   // the transport ended (or failed): no more ciphertext will come
  std::error_code end_;  // how reading ended, once it has
  std::string reason_;
};

void start_tls(HandlePtr<StreamImpl> transport, const std::shared_ptr<TlsContextImpl>& ctx, bool server,
               std::string server_name, std::uint64_t timeout_ms, UniqueFunction<void(std::error_code, TlsStream)> cb,
               std::stop_token token) {
  if (!transport) throw_closed(server ? "tls_accept" : "tls_connect");
  LoopCore* core = transport->core();
  std::string key;
  if (!server && ctx && ctx->resume && !server_name.empty()) key = server_name + peer_suffix(transport.get());
  std::unique_ptr<TlsEngine> engine;
  try {
    engine = std::make_unique<TlsEngine>(ctx, server, server_name, std::move(key));
  } catch (const TlsError& e) {
    transport.reset();
    std::error_code ec = e.code();
    return core->defer([cb = std::move(cb), ec, why = std::string(e.what())]() mutable { cb(ec, TlsStream(why)); });
  }
  TlsSession* session = core->make<TlsSession>(core, std::move(engine), std::move(transport));
  session->start(timeout_ms, std::move(cb), std::move(token));
}

}  // namespace duet::detail

namespace duet {

TlsStream::TlsStream(detail::HandlePtr<detail::TlsSession> impl) noexcept : impl_(std::move(impl)) {}

detail::TlsSession* TlsStream::open_impl(const char* what) const {
  if (!impl_) detail::throw_closed(what);
  return impl_.get();
}

void TlsStream::read_once(std::span<char> buffer, detail::UniqueFunction<void(std::error_code, std::size_t)> cb,
                          std::stop_token token) {
  open_impl("read")->read_once(buffer, std::move(cb), std::move(token));
}

void TlsStream::read_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>)> cb) {
  open_impl("read_start")->read_stream(std::move(cb));
}

void TlsStream::read_stop() noexcept {
  if (impl_) impl_->read_stop();
}

void TlsStream::write_erased(std::string bytes, detail::UniqueFunction<void(std::error_code)> cb, std::stop_token token,
                             bool from_library) {
  open_impl("write")->write(std::move(bytes), std::move(cb), std::move(token), from_library);
}

void TlsStream::shutdown_erased(detail::UniqueFunction<void(std::error_code)> cb, std::stop_token token,
                                bool from_library) {
  open_impl("shutdown")->shutdown(std::move(cb), std::move(token), from_library);
}

void TlsStream::close() noexcept {
  if (impl_) impl_->close_notify_now();
  impl_.reset();
}

void TlsStream::abort() noexcept { impl_.reset(); }

void TlsStream::keep_loop_alive(bool keep) noexcept {
  if (impl_) impl_->keep_loop_alive(keep);
}

std::size_t TlsStream::write_queue_size() const noexcept { return impl_ ? impl_->transport().write_queue_size() : 0; }

std::string TlsStream::alpn_protocol() const { return impl_ ? impl_->engine().alpn_protocol() : std::string(); }

std::string TlsStream::version() const { return impl_ ? impl_->engine().version() : std::string(); }

const std::string& TlsStream::error_reason() const noexcept { return impl_ ? impl_->reason() : reason_; }

bool TlsStream::session_reused() const noexcept { return impl_ && impl_->engine().session_reused(); }

}  // namespace duet
