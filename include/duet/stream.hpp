// duet/stream.hpp — a byte stream: the one implementation of reading and writing that TCP
// connections, pipes and terminals share (libuv's `uv_stream_t`).
//
//     stream.write("hello\n", [](std::error_code ec) { ... });
//     std::size_t n = co_await stream.read(buffer);   // the coroutine face, same names
//
// `Stream` is the base of `TcpStream` (tcp.hpp), `PipeStream` (pipe.hpp) and `Tty` (tty.hpp): code
// that only moves bytes takes a `Stream&` and works on all three.
//
// Reading, two ways (one at a time per stream; a second reader gets `duet::errc::already_reading`):
// - `read(buffer, cb)` reads once into the caller's buffer and calls `cb(std::error_code, std::size_t n)`;
//   n == 0 means the peer finished sending (end of stream). The buffer must stay valid until the
//   callback runs or the read is cancelled; nothing is written to it after either. Cancellable.
// - `read_start(cb)` calls `cb(std::error_code, std::span<const char> chunk)` for every chunk as it
//   arrives, until `read_stop()`, end of stream (an empty chunk) or an error. The chunk lives in a
//   buffer shared by the loop: it is valid only during the callback. `read_stop()` is backpressure:
//   the kernel buffers, then the peer's sends block, until `read_start` is called again.
//
// Writing: `write(bytes, cb)` takes the bytes by value (`std::string`) and owns them until the write
// completes, so the caller can never free what is being sent. Writes go out in order; the callback
// runs once the kernel has taken the bytes, which is the backpressure signal: a writer that waits for
// it (as `co_await stream.write(...)` does) never queues more than one write. `write_queue_size()`
// says how many bytes are queued in user space. `try_write(bytes, ec)` writes what the kernel takes
// now, without queueing (0 and no error when it would block). Closing the stream completes pending
// writes with UV_ECANCELED, later, from the loop (a Loop destroyed before then reports them as pending).
//
// Cancelling a write or a shutdown (its callback's stop token, see cancellation.hpp; or the task
// awaiting it) detaches the caller: the callback gets UV_ECANCELED on the next turn of the loop, and
// the awaiting coroutine throws `duet::Cancelled`, even if the peer never reads. The request itself
// cannot be recalled (part of the bytes may already be in the kernel): it stays queued on the stream,
// owning its bytes, and the stream goes on sending them. To drop them, close the stream.
//
// Ending: `shutdown(cb)` ends the sending side after pending writes (FIN on TCP); `close()` closes at
// once (a pending one-shot read gets UV_ECANCELED). The destructor closes. The libuv handle lives
// until its close callback.
//
// Errors: UV_ECONNRESET, UV_EPIPE, UV_ENOTCONN and friends, as libuv reports them. Starting an
// operation on a closed or default-constructed stream is a programming error: it throws
// `std::system_error` with `duet::errc::not_connected` (the callback is not called).
//
// Loop destruction: the stream is closed with its loop and becomes inert, as if `close()` had been
// called: it may be destroyed, moved or closed after its Loop; starting an operation on it throws
// `not_connected`.
//
// Cost: a stream is its libuv handle plus a few pointers (no per-stream read buffer: streaming reads
// share one 64 KiB buffer per loop); each write is one pooled request object.
#pragma once

#include <concepts>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/handle.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/loop.hpp"

namespace duet {

namespace detail {

/// The state every duet stream shares, whatever its libuv handle type: the read in progress.
class StreamImpl : public OwnedHandle {
 public:
  enum class Reading { no, once, stream };

  uv_stream_t* stream() const noexcept { return reinterpret_cast<uv_stream_t*>(handle()); }
  bool pending() const noexcept override;

  void read_once(std::span<char> buffer, UniqueFunction<void(std::error_code, std::size_t)> cb, std::stop_token token);
  void read_stream(UniqueFunction<void(std::error_code, std::span<const char>)> cb);
  void read_stop() noexcept;

 protected:
  StreamImpl(LoopCore* core, uv_handle_t* handle) noexcept : OwnedHandle(core, handle) {}
  ~StreamImpl() override;
  void before_close() noexcept override;

 private:
  void cancel_read() noexcept;
  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;

  struct StopRead {
    StreamImpl* self;
    void operator()() const noexcept { self->cancel_read(); }
  };

  using OnceCallback = UniqueFunction<void(std::error_code, std::size_t)>;
  using StreamCallback = UniqueFunction<void(std::error_code, std::span<const char>)>;
  /// The callback of a one-shot read (`reading_ == once`), or the callback kept for a streaming read
  /// (kept, too, after `read_stop`, until another read or the close): one slot, never both. A tagged
  /// union rather than a `std::variant`, which would cost every file that includes this header
  /// compile time; its members are defined in src/stream.cpp, the only user.
  class ReadCallback {
   public:
    ReadCallback() noexcept {}
    ReadCallback(const ReadCallback&) = delete;
    ReadCallback& operator=(const ReadCallback&) = delete;
    ~ReadCallback() { reset(); }
    void reset() noexcept;
    void set(OnceCallback&& cb) noexcept;
    void set(StreamCallback&& cb) noexcept;
    /// Moves the one-shot read's callback out (an empty one if there is none).
    OnceCallback take_once() noexcept;
    /// Moves the streaming read's callback out (an empty one if there is none).
    StreamCallback take_stream() noexcept;
    /// The streaming read's slot, or null if the slot holds none.
    StreamCallback* stream() noexcept;

   private:
    enum class Kind : unsigned char { none, once, stream };
    union {
      OnceCallback once_;
      StreamCallback stream_;
    };
    Kind kind_ = Kind::none;
  };
  ReadCallback read_cb_;

  Reading reading_ = Reading::no;
  std::span<char> once_buffer_;
  // A cancellable one-shot read's stop token, routed to the loop thread: made at the first such read
  // and kept for the next (a stream that is only read with `read_start`, as the HTTP client's are,
  // does without its 96 bytes).
  OnLoopStop<StopRead>* stop_read_ = nullptr;  // owned; freed by ~StreamImpl
};

/// A stream of libuv type `Uv` (uv_tcp_t, uv_pipe_t, uv_tty_t). `init(uv_loop_t*, Uv*)` is the
/// type's uv_*_init call; a failure throws `std::system_error`. A handle type with something to undo
/// before closing (a terminal's mode) derives from it and overrides `before_close`, calling this one's.
template <class Uv>
class StreamHandle : public StreamImpl {
 public:
  template <class Init>
  StreamHandle(LoopCore* core, Init&& init) : StreamImpl(core, reinterpret_cast<uv_handle_t*>(&native)) {
    if (int rc = init(core->uv(), &native); rc < 0) throw std::system_error(uv_error(rc), "duet: cannot open a stream");
    adopt(&native);
  }
  Uv native{};
};

/// A write or shutdown callback that belongs to duet itself (the HTTP layer's, or a TLS stream's own
/// records): once the stream under it is closed, nobody waits for its completion, so a Loop destroyed
/// before that completion arrives does not count it as pending. A user's write on a closed stream is
/// counted: its callback (UV_ECANCELED) will not be called. It carries no stop token.
template <class F>
struct LibraryCompletion {
  F f;
  bool from_library() const noexcept { return true; }
  void operator()(std::error_code ec) { f(ec); }
};

/// Whether a write's or shutdown's callback is duet's own (see LibraryCompletion).
template <class Cb>
bool from_library(const Cb& cb) noexcept {
  if constexpr (requires {
                  { cb.from_library() } -> std::convertible_to<bool>;
                })
    return cb.from_library();
  else
    return false;
}

/// A write (`uv_write_t`, owning the bytes it sends) or a shutdown (`uv_shutdown_t`) on a stream: a
/// request that completes once with a status. libuv cannot recall either: closing the stream completes
/// them with UV_ECANCELED, which is also how the loop's destruction ends them. A stop request detaches
/// the callback instead (UV_ECANCELED on the next turn); the request completes later, silently.
template <class Req, class Cb>
class StreamOp final : public Resource, public StopWatch<StreamOp<Req, Cb>> {
 public:
  Req req{};
  std::string bytes;  // a write's bytes, owned until it completes

  StreamOp(LoopCore* core, Cb&& cb, std::string b = {}) : bytes(std::move(b)), core_(core), cb_(std::move(cb)) {
    req.data = this;
  }
  void abandon() noexcept override {}
  bool pending() const noexcept override {
    if (detached_) return false;
    // The stream's owner closed it: completion with UV_ECANCELED is on its way; duet's own callback
    // has nobody behind it (see LibraryCompletion).
    return !from_library(cb_) || !uv_is_closing(reinterpret_cast<const uv_handle_t*>(req.handle));
  }

  /// Call once libuv has taken the request.
  void watch_stop() { this->watch(core_, stop_token_of(cb_)); }

  // Stop requested: the caller hears UV_ECANCELED from the loop; the request goes on without it.
  void on_stop() noexcept {
    detached_ = true;
    fail_later<void>(*core_, std::move(cb_), uv_error(UV_ECANCELED));
  }

  static void on_done(Req* req, int status) noexcept {
    auto* self = static_cast<StreamOp*>(req->data);
    LoopCore* core = self->core_;
    self->unwatch();
    if (core->closing() || self->detached_) return core->destroy(self);
    Cb cb = std::move(self->cb_);
    core->destroy(self);
    core->invoke(cb, uv_error(status));
  }

  /// libuv refused the request: report it from the loop, as a completion.
  void fail(int status) noexcept {
    Cb cb = std::move(cb_);
    LoopCore* core = core_;
    core->destroy(this);
    fail_later<void>(*core, std::move(cb), status < 0 ? uv_error(status) : make_error_code(errc::not_connected));
  }

 private:
  LoopCore* core_;
  Cb cb_;
  bool detached_ = false;
};

/// A listening stream (TCP or Unix-domain socket): one accept at a time; connections that arrive
/// with nobody waiting are left with libuv (the kernel's backlog) until the next accept.
class ListenerImpl : public OwnedHandle {
 public:
  using Accepted = UniqueFunction<void(std::error_code, HandlePtr<StreamImpl>)>;

  /// uv_listen; returns libuv's status.
  int listen(int backlog) noexcept;
  /// Calls `cb` with the next connection; never inside this call.
  void accept(Accepted cb, std::stop_token token);
  bool pending() const noexcept override { return static_cast<bool>(acceptor_); }
  /// Drops the waiting accept's callback without calling it: for an owner about to close the listener
  /// that needs no word of its own cancellation (the HTTP server), so that nothing is left for the
  /// loop to deliver (a Loop destroyed next would count it as pending).
  void forget_accept() noexcept;

 protected:
  ListenerImpl(LoopCore* core, uv_handle_t* handle) noexcept : OwnedHandle(core, handle) {}
  /// A new, unconnected stream of the listener's kind, for uv_accept. Throws on failure.
  virtual HandlePtr<StreamImpl> make_peer() = 0;
  void before_close() noexcept override { cancel_accept(); }

 private:
  struct StopAccept {
    ListenerImpl* self;
    void operator()() const noexcept { self->cancel_accept(); }
  };
  void cancel_accept() noexcept;
  std::pair<std::error_code, HandlePtr<StreamImpl>> take() noexcept;
  static void on_connection(uv_stream_t* server, int status) noexcept;

  Accepted acceptor_;
  int ready_ = 0;       // connections libuv is holding for us
  int last_error_ = 0;  // a listen error with nobody waiting
  OnLoopStop<StopAccept> stop_accept_;
};

[[noreturn]] void throw_closed(const char* what);
struct StreamAccess;  // tls.hpp: a TLS stream takes over its transport's handle

}  // namespace detail

class Stream {
 public:
  /// True until `close()` (or until the loop is destroyed).
  bool is_open() const noexcept { return static_cast<bool>(impl_); }

  /// Reads once into `buffer`; calls `cb(std::error_code, std::size_t)` (0 bytes: end of stream).
  template <class Callback>
  void read(std::span<char> buffer, Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    open_impl("read")->read_once(buffer,
                                 detail::UniqueFunction<void(std::error_code, std::size_t)>(std::forward<Callback>(cb)),
                                 std::move(token));
  }
  /// Coroutine face: `std::size_t n = co_await stream.read(buffer);` (0: end of stream).
  template <class = void>
  [[nodiscard]] auto read(std::span<char> buffer) {
    return awaitable<std::size_t>([this, buffer](auto cb) { read(buffer, std::move(cb)); });
  }

  /// Calls `cb(std::error_code, std::span<const char>)` for each chunk until stopped (see above).
  template <class Callback>
  void read_start(Callback&& cb) {
    open_impl("read_start")
        ->read_stream(detail::UniqueFunction<void(std::error_code, std::span<const char>)>(std::forward<Callback>(cb)));
  }
  /// Pauses `read_start` delivery (backpressure). Safe to call when not reading.
  void read_stop() noexcept {
    if (impl_) impl_->read_stop();
  }

  /// Sends `bytes`; calls `cb(std::error_code)` once they are handed to the kernel.
  template <class Callback>
  void write(std::string bytes, Callback&& cb) {
    using Op = detail::StreamOp<uv_write_t, std::decay_t<Callback>>;
    detail::StreamImpl* impl = open_impl("write");
    detail::LoopCore* core = impl->core();
    Op* op = core->make<Op>(core, std::decay_t<Callback>(std::forward<Callback>(cb)), std::move(bytes));
    uv_buf_t buf = detail::buffer(op->bytes.data(), op->bytes.size());
    if (int rc = uv_write(&op->req, impl->stream(), &buf, 1, &Op::on_done); rc < 0) return op->fail(rc);
    op->watch_stop();
  }
  /// Coroutine face: `co_await stream.write(std::move(bytes));`
  template <class = void>
  [[nodiscard]] auto write(std::string bytes) {
    return awaitable<void>(
        [this, bytes = std::move(bytes)](auto cb) mutable { write(std::move(bytes), std::move(cb)); });
  }

  /// Writes what the kernel takes now, queueing nothing: returns the bytes written (0 with `ec` clear
  /// when it would block, or while earlier writes are still queued); `ec` is set on an error.
  std::size_t try_write(std::string_view bytes, std::error_code& ec) noexcept;

  /// Bytes queued by `write` and not yet handed to the kernel.
  std::size_t write_queue_size() const noexcept { return impl_ ? uv_stream_get_write_queue_size(impl_->stream()) : 0; }

  /// Ends the sending side after pending writes; calls `cb(std::error_code)`.
  template <class Callback>
  void shutdown(Callback&& cb) {
    using Op = detail::StreamOp<uv_shutdown_t, std::decay_t<Callback>>;
    detail::StreamImpl* impl = open_impl("shutdown");
    detail::LoopCore* core = impl->core();
    Op* op = core->make<Op>(core, std::decay_t<Callback>(std::forward<Callback>(cb)));
    if (int rc = uv_shutdown(&op->req, impl->stream(), &Op::on_done); rc < 0) return op->fail(rc);
    op->watch_stop();
  }
  /// Coroutine face: `co_await stream.shutdown();`
  template <class = void>
  [[nodiscard]] auto shutdown() {
    return awaitable<void>([this](auto cb) { shutdown(std::move(cb)); });
  }

  /// Closes the stream now. Idempotent.
  void close() noexcept { impl_.reset(); }

  /// Whether this stream keeps `Loop::run()` from returning while it has work (it does by default;
  /// libuv's uv_ref/uv_unref). A stream kept idle for later (a pooled connection) says false.
  void keep_loop_alive(bool keep) noexcept {
    if (impl_) keep ? uv_ref(impl_->handle()) : uv_unref(impl_->handle());
  }

 protected:
  friend struct detail::StreamAccess;
  Stream() noexcept = default;
  explicit Stream(detail::HandlePtr<detail::StreamImpl> impl) noexcept : impl_(std::move(impl)) {}
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&&) noexcept = default;
  ~Stream() = default;

  /// The implementation, or throws `not_connected` naming `what` if the stream is closed.
  detail::StreamImpl* open_impl(const char* what) const {
    if (!impl_) detail::throw_closed(what);
    return impl_.get();
  }

  detail::HandlePtr<detail::StreamImpl> impl_;
};

}  // namespace duet
