#include "duet/timer.hpp"

#include <system_error>

namespace duet {
namespace detail {

class TimerImpl final : public OwnedHandle {
 public:
  explicit TimerImpl(LoopCore* core) : OwnedHandle(core, &timer) {
    uv_timer_init(core->uv(), &timer);  // cannot fail for timers
    adopt(&timer);
  }

  uv_timer_t timer{};
  UniqueFunction<void()> cb;

  static void on_fire(uv_timer_t* t) noexcept {
    // The callback may restart the timer with a new callback: run it from a local so replacing
    // `cb` never destroys the function that is running.
    auto* self = of<TimerImpl>(t);
    UniqueFunction<void()> running = std::move(self->cb);
    self->core()->invoke(running);
    if (!self->cb) self->cb = std::move(running);
  }
};

}  // namespace detail

Timer::Timer(Loop& loop) : impl_(loop.core().make<detail::TimerImpl>(&loop.core())) {}

void Timer::start_erased(std::uint64_t timeout, std::uint64_t repeat, detail::UniqueFunction<void()> cb) {
  if (!impl_) throw std::system_error(make_error_code(errc::loop_closed), "duet::Timer::start");
  impl_->cb = std::move(cb);
  impl_->core()->update_time();
  uv_timer_start(&impl_->timer, &detail::TimerImpl::on_fire, timeout, repeat);
}

void Timer::stop() noexcept {
  if (impl_) uv_timer_stop(&impl_->timer);
}

void Timer::again() {
  if (!impl_) throw std::system_error(make_error_code(errc::loop_closed), "duet::Timer::again");
  impl_->core()->update_time();
  if (int rc = uv_timer_again(&impl_->timer); rc < 0) throw std::system_error(uv_error(rc), "duet::Timer::again");
}

void Timer::keep_loop_alive(bool keep) noexcept {
  if (!impl_) return;
  keep ? uv_ref(impl_->handle()) : uv_unref(impl_->handle());
}

bool Timer::active() const noexcept { return impl_ && uv_is_active(impl_->handle()) != 0; }

}  // namespace duet
