#include "duet/hooks.hpp"

#include <string>
#include <system_error>

namespace duet {
namespace detail {

/// The handle behind a hook: the `start` callback, a pending `next`, and its libuv type's three calls.
class HookImpl : public OwnedHandle {
 public:
  bool active() const noexcept { return static_cast<bool>(cb_) || static_cast<bool>(waiter_); }
  bool pending() const noexcept override { return active() && uv_has_ref(handle()) != 0; }

  void start(UniqueFunction<void()> cb) {
    ++epoch_;
    cb_ = std::move(cb);
    start_uv();
  }

  void next(UniqueFunction<void(std::error_code)> cb, std::stop_token token) {
    if (waiter_) {
      core()->defer([cb = std::move(cb)]() mutable { cb(make_error_code(errc::already_reading)); });
      return;
    }
    waiter_ = std::move(cb);
    start_uv();
    stop_waiter_.watch(core(), std::move(token), StopWaiter{this});
  }

  void stop() noexcept {
    ++epoch_;
    cancel_waiter();
    cb_.reset();
    stop_uv();
  }

 protected:
  HookImpl(LoopCore* core, uv_handle_t* handle) noexcept : OwnedHandle(core, handle) {}
  virtual void start_uv() noexcept = 0;
  virtual void stop_uv() noexcept = 0;

  /// One turn: the waiter is called, then the `start` callback.
  void run() noexcept {
    LoopCore* core = this->core();
    if (waiter_) {
      stop_waiter_.reset();
      auto waiter = std::move(waiter_);
      waiter_.reset();
      if (!cb_) stop_uv();
      core->invoke(waiter, std::error_code());
      if (closing()) return;
    }
    if (!cb_) return;
    // The callback may stop, restart with another callback, or close: run it from a local, and put it
    // back only if it did none of these.
    const unsigned epoch = epoch_;
    auto cb = std::move(cb_);
    cb_.reset();
    core->invoke(cb);
    if (epoch_ == epoch && !closing()) cb_ = std::move(cb);
  }

 private:
  struct StopWaiter {
    HookImpl* self;
    void operator()() const noexcept { self->cancel_waiter(); }
  };

  void before_close() noexcept override { stop(); }

  void cancel_waiter() noexcept {
    if (!waiter_) return;
    stop_waiter_.reset();
    core()->defer([cb = std::move(waiter_)]() mutable { cb(uv_error(UV_ECANCELED)); });
    waiter_.reset();
    if (!cb_) stop_uv();
  }

  UniqueFunction<void()> cb_;
  unsigned epoch_ = 0;  // counts start() and stop() calls: did the callback call either?
  UniqueFunction<void(std::error_code)> waiter_;
  OnLoopStop<StopWaiter> stop_waiter_;
};

/// A hook of libuv type `Uv` with its init, start and stop functions (none fails on an initialised handle).
template <class Uv, int (*Init)(uv_loop_t*, Uv*), int (*Start)(Uv*, void (*)(Uv*)), int (*Stop)(Uv*)>
class HookHandle final : public HookImpl {
 public:
  explicit HookHandle(LoopCore* core) : HookImpl(core, reinterpret_cast<uv_handle_t*>(&native_)) {
    if (int rc = Init(core->uv(), &native_); rc < 0) throw std::system_error(uv_error(rc), "duet: cannot make a loop hook");
    adopt(&native_);
  }

 private:
  void start_uv() noexcept override { Start(&native_, &on_turn); }
  void stop_uv() noexcept override { Stop(&native_); }
  static void on_turn(Uv* h) noexcept { of<HookHandle>(h)->run(); }
  Uv native_{};
};

using IdleHandle = HookHandle<uv_idle_t, &uv_idle_init, &uv_idle_start, &uv_idle_stop>;
using PrepareHandle = HookHandle<uv_prepare_t, &uv_prepare_init, &uv_prepare_start, &uv_prepare_stop>;
using CheckHandle = HookHandle<uv_check_t, &uv_check_init, &uv_check_start, &uv_check_stop>;

namespace {

HookImpl* make_hook(LoopCore& core, int kind) {
  switch (kind) {
    case 0:
      return core.make<IdleHandle>(&core);
    case 1:
      return core.make<PrepareHandle>(&core);
    default:
      return core.make<CheckHandle>(&core);
  }
}

[[noreturn]] void throw_closed_hook(const char* what) {
  throw std::system_error(make_error_code(errc::not_connected), std::string("duet: ") + what + " on a closed loop hook");
}

}  // namespace

LoopHook::LoopHook(Loop& loop, Kind kind) : impl_(make_hook(loop.core(), static_cast<int>(kind))) {}

void LoopHook::start_erased(UniqueFunction<void()> cb) {
  if (!impl_) throw_closed_hook("start");
  impl_->start(std::move(cb));
}

void LoopHook::next_erased(UniqueFunction<void(std::error_code)> cb, std::stop_token token) {
  if (!impl_) throw_closed_hook("next");
  impl_->next(std::move(cb), std::move(token));
}

void LoopHook::stop() noexcept {
  if (impl_) impl_->stop();
}

bool LoopHook::active() const noexcept { return impl_ && impl_->active(); }

void LoopHook::keep_loop_alive(bool keep) noexcept {
  if (impl_) keep ? uv_ref(impl_->handle()) : uv_unref(impl_->handle());
}

}  // namespace detail
}  // namespace duet
