#include "duet/timer.hpp"

#include <system_error>

namespace duet {
namespace detail {

struct TimerImpl final : Resource {
  uv_timer_t handle{};
  LoopCore* core;
  Timer* owner;
  UniqueFunction<void()> cb;

  TimerImpl(LoopCore* c, Timer* o) : core(c), owner(o) {
    uv_timer_init(core->uv, &handle);
    handle.data = this;
  }

  void close() noexcept {
    if (owner) owner->impl_ = nullptr;
    owner = nullptr;
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&handle))) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&handle), [](uv_handle_t* h) noexcept {
      auto* self = static_cast<TimerImpl*>(h->data);
      self->core->destroy(self);
    });
  }

  void abandon() noexcept override { close(); }
  bool pending() const noexcept override {  // a timer that does not keep the loop alive is not "pending work"
    auto* h = reinterpret_cast<const uv_handle_t*>(&handle);
    return uv_is_active(h) != 0 && uv_has_ref(h) != 0;
  }

  static void on_fire(uv_timer_t* t) noexcept {
    // The callback may restart the timer with a new callback: run it from a local so replacing
    // `cb` never destroys the function that is running.
    auto* self = static_cast<TimerImpl*>(t->data);
    UniqueFunction<void()> running = std::move(self->cb);
    self->core->invoke(running);
    if (!self->cb) self->cb = std::move(running);
  }
};

}  // namespace detail

Timer::Timer(Loop& loop) : impl_(loop.core().make<detail::TimerImpl>(&loop.core(), this)) {}

Timer::Timer(Timer&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {
  if (impl_) impl_->owner = this;
}

Timer& Timer::operator=(Timer&& other) noexcept {
  if (this != &other) {
    if (impl_) impl_->close();
    impl_ = std::exchange(other.impl_, nullptr);
    if (impl_) impl_->owner = this;
  }
  return *this;
}

Timer::~Timer() {
  if (impl_) impl_->close();
}

void Timer::start_erased(std::uint64_t timeout, std::uint64_t repeat, detail::UniqueFunction<void()> cb) {
  if (!impl_) throw std::system_error(make_error_code(errc::loop_closed), "duet::Timer::start");
  impl_->cb = std::move(cb);
  uv_timer_start(&impl_->handle, &detail::TimerImpl::on_fire, timeout, repeat);
}

void Timer::stop() noexcept {
  if (impl_) uv_timer_stop(&impl_->handle);
}

void Timer::again() {
  if (!impl_) throw std::system_error(make_error_code(errc::loop_closed), "duet::Timer::again");
  if (int rc = uv_timer_again(&impl_->handle); rc < 0) throw std::system_error(uv_error(rc), "duet::Timer::again");
}

void Timer::keep_loop_alive(bool keep) noexcept {
  if (!impl_) return;
  auto* h = reinterpret_cast<uv_handle_t*>(&impl_->handle);
  keep ? uv_ref(h) : uv_unref(h);
}

bool Timer::active() const noexcept {
  return impl_ && uv_is_active(reinterpret_cast<const uv_handle_t*>(&impl_->handle)) != 0;
}

}  // namespace duet
