// duet/detail/handle.hpp — the one way duet owns a libuv handle.
//
// libuv's rule: a handle is closed with `uv_close`, and its memory may be reused only once the close
// callback has run. Every duet object that owns handles derives from `HandleOwner`, which keeps that
// rule once for all of them:
//  - `adopt(h)` after `uv_*_init`: the handle's `data` points at its owner, and it counts as open;
//  - `close_handle(h)` closes it (idempotent); the owner is freed (back to its loop's free lists)
//    when its last handle has closed and nothing else holds it (`hold()`/`release()`, for a request in
//    flight beside the handles), after `finished()` — the place for a one-shot operation to call back;
//  - the owner is on its loop's live list (it is made by `LoopCore::make`), so destroying the Loop
//    reaches it through `abandon()`.
//
// `OwnedHandle` is the long-lived case: one handle, held by a public object (a `Timer`, a
// `TcpStream`, a `UdpSocket`, ...) through a `HandlePtr`. Closing it — from the public object, or from
// the Loop's destruction — detaches the public object first, which then sees itself closed
// (`HandlePtr` is null) and never touches freed memory. Subclasses put what must happen before the
// handle closes (cancel a pending read, call back a waiter) in `before_close()`.
//
// Loop-thread only.
#pragma once

#include <uv.h>

#include <utility>

#include "duet/detail/loop_core.hpp"

namespace duet::detail {

class HandleOwner : public Resource {
 public:
  LoopCore* core() const noexcept { return core_; }

  /// The owner of a handle adopted by an object of type T.
  template <class T, class H>
  static T* of(H* h) noexcept {
    return static_cast<T*>(static_cast<HandleOwner*>(reinterpret_cast<uv_handle_t*>(h)->data));
  }

 protected:
  explicit HandleOwner(LoopCore* core) noexcept : core_(core) {}

  /// `h` (initialised on this loop) now belongs to this object, which lives until it has closed.
  template <class H>
  void adopt(H* h) noexcept {
    reinterpret_cast<uv_handle_t*>(h)->data = static_cast<HandleOwner*>(this);
    ++open_;
  }

  /// Closes `h`, an adopted handle, unless it is already closing.
  template <class H>
  void close_handle(H* h) noexcept {
    auto* handle = reinterpret_cast<uv_handle_t*>(h);
    if (!uv_is_closing(handle)) uv_close(handle, &on_closed);
  }

  /// Keeps this object alive, beside its handles, until the matching `release()`.
  void hold() noexcept { ++holds_; }
  void release() noexcept {
    if (--holds_ == 0 && open_ == 0) finished();
  }

  /// Every handle is closed and nothing holds this object: frees it. A one-shot operation overrides
  /// this to call back (take the callback out, `core()->destroy(this)`, then invoke it).
  virtual void finished() noexcept { core_->destroy(this); }

 protected:
  /// The close callback of every adopted handle.
  static void on_closed(uv_handle_t* h) noexcept {
    auto* self = static_cast<HandleOwner*>(h->data);
    if (--self->open_ == 0 && self->holds_ == 0) self->finished();
  }

 private:
  LoopCore* core_;
  int open_ = 0;
  int holds_ = 0;
};

template <class Impl>
class HandlePtr;

/// One long-lived handle, owned by a public object through a `HandlePtr`.
class OwnedHandle : public HandleOwner {
 public:
  uv_handle_t* handle() const noexcept { return handle_; }
  bool closing() const noexcept { return uv_is_closing(handle_) != 0; }

  /// Detaches the public owner, runs `before_close()`, closes the handle; freed in its close callback.
  /// Idempotent.
  void close() noexcept {
    if (owner_) *std::exchange(owner_, nullptr) = nullptr;
    if (closing()) return;
    before_close();
    close_handle(handle_);
  }
  /// `close()` through another libuv call that closes the handle, `fn(uv_handle_t*, uv_close_cb)`
  /// (uv_tcp_close_reset); if it fails, the handle is closed plainly.
  template <class Fn>
  void close_with(Fn fn) noexcept {
    if (owner_) *std::exchange(owner_, nullptr) = nullptr;
    if (closing()) return;
    before_close();
    if (fn(handle_, &on_closed) < 0) close_handle(handle_);
  }
  void abandon() noexcept override { close(); }
  /// An active, referenced handle is work the loop waits for (an idle pooled connection is not).
  bool pending() const noexcept override { return uv_is_active(handle_) != 0 && uv_has_ref(handle_) != 0; }

 protected:
  /// `handle` is a member of the derived object, initialised and adopted by its constructor.
  OwnedHandle(LoopCore* core, uv_handle_t* handle) noexcept : HandleOwner(core), handle_(handle) {}
  template <class H>
  OwnedHandle(LoopCore* core, H* handle) noexcept : OwnedHandle(core, reinterpret_cast<uv_handle_t*>(handle)) {}

  /// Called once, before the handle is closed: fail or cancel what is waiting on it.
  virtual void before_close() noexcept {}

 private:
  template <class Impl>
  friend class HandlePtr;
  uv_handle_t* handle_;
  OwnedHandle** owner_ = nullptr;  // the public object's pointer to this, cleared on close
};

/// What a public object holds: the `OwnedHandle` behind it, or null once closed. Move-only; moving
/// re-points the handle's back-pointer; destroying (or `reset()`) closes the handle.
template <class Impl>
class HandlePtr {
 public:
  HandlePtr() noexcept = default;
  explicit HandlePtr(Impl* impl) noexcept : p_(impl) { attach(); }
  HandlePtr(HandlePtr&& other) noexcept : p_(std::exchange(other.p_, nullptr)) { attach(); }
  HandlePtr& operator=(HandlePtr&& other) noexcept {
    if (this != &other) {
      reset();
      p_ = std::exchange(other.p_, nullptr);
      attach();
    }
    return *this;
  }
  HandlePtr(const HandlePtr&) = delete;
  HandlePtr& operator=(const HandlePtr&) = delete;
  ~HandlePtr() { reset(); }

  Impl* get() const noexcept { return static_cast<Impl*>(p_); }
  Impl* operator->() const noexcept { return get(); }
  explicit operator bool() const noexcept { return p_ != nullptr; }

  /// Closes the handle (which clears this pointer).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
  // g++ 12 at -O2 takes the pointer of a disengaged std::optional<Timer> for uninitialised here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
  void reset() noexcept {
    if (p_) p_->close();
  }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
  /// Gives the handle up without closing it: the caller takes over.
  Impl* release() noexcept {
    if (!p_) return nullptr;
    p_->owner_ = nullptr;
    return static_cast<Impl*>(std::exchange(p_, nullptr));
  }

 private:
  void attach() noexcept {
    if (p_) p_->owner_ = &p_;
  }
  OwnedHandle* p_ = nullptr;
};

}  // namespace duet::detail
