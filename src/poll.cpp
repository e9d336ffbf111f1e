#include "duet/poll.hpp"

#include <string>
#include <system_error>

namespace duet {
namespace detail {

/// The handle behind a `Poller`: started with a callback that runs every time, or waiting once.
class PollerImpl final : public OwnedHandle {
 public:
  enum class Mode { no, once, repeat };

  PollerImpl(LoopCore* core, int fd) : OwnedHandle(core, &poll), fd_(fd) {
    if (!core->claim_polled_fd(fd)) throw_cannot_poll(UV_EEXIST);
    if (int rc = uv_poll_init(core->uv(), &poll, fd); rc < 0) {
      core->release_polled_fd(fd);
      throw_cannot_poll(rc);
    }
    adopt(&poll);
  }

  uv_poll_t poll{};

  bool pending() const noexcept override { return mode_ != Mode::no && uv_has_ref(handle()) != 0; }
  bool active() const noexcept { return mode_ != Mode::no; }

  void start(PollEvents events, UniqueFunction<void(std::error_code, PollEvents)> cb) {
    cancel_wait();
    if (int rc = uv_poll_start(&poll, static_cast<int>(events), &on_poll); rc < 0) {
      stop();
      core()->defer([cb = std::move(cb), rc]() mutable { cb(uv_error(rc), PollEvents::none); });
      return;
    }
    mode_ = Mode::repeat;
    cb_ = std::move(cb);
  }

  void wait(PollEvents events, UniqueFunction<void(std::error_code, PollEvents)> cb, std::stop_token token) {
    auto fail = [&](std::error_code ec) {
      core()->defer([cb = std::move(cb), ec]() mutable { cb(ec, PollEvents::none); });
    };
    if (mode_ != Mode::no) return fail(make_error_code(errc::already_reading));
    if (int rc = uv_poll_start(&poll, static_cast<int>(events), &on_poll); rc < 0) return fail(uv_error(rc));
    mode_ = Mode::once;
    cb_ = std::move(cb);
    stop_wait_.watch(core(), std::move(token), StopWait{this});
  }

  void stop() noexcept {
    cancel_wait();
    uv_poll_stop(&poll);
    mode_ = Mode::no;
    cb_.reset();
  }

 private:
  struct StopWait {  // the wait ends, as any wait does: the handle closes (and the ECANCELED is deferred)
    PollerImpl* self;
    void operator()() const noexcept { self->close(); }
  };

  // libuv forgets the descriptor now, while it is still the one polled: the owner may close it next.
  void before_close() noexcept override {
    stop();
    core()->release_polled_fd(fd_);
  }

  [[noreturn]] void throw_cannot_poll(int rc) const {
    throw std::system_error(uv_error(rc), "duet::Poller: cannot poll descriptor " + std::to_string(fd_));
  }

  // A pending wait is abandoned: stop polling, and report UV_ECANCELED from the loop.
  void cancel_wait() noexcept {
    if (mode_ != Mode::once) return;
    uv_poll_stop(&poll);
    mode_ = Mode::no;
    stop_wait_.reset();
    core()->defer([cb = std::move(cb_)]() mutable { cb(uv_error(UV_ECANCELED), PollEvents::none); });
    cb_.reset();
  }

  static void on_poll(uv_poll_t* h, int status, int events) noexcept {
    auto* self = of<PollerImpl>(h);
    const std::error_code ec = uv_error(status);
    const PollEvents ready = status < 0 ? PollEvents::none : static_cast<PollEvents>(events);
    LoopCore* core = self->core();
    if (self->mode_ == Mode::once || status < 0) {
      // Done waiting: the handle closes before the callback, which may close the descriptor. The
      // Poller is stopped (it sets up a new handle if started again).
      self->mode_ = Mode::no;
      self->stop_wait_.reset();
      auto cb = std::move(self->cb_);
      self->cb_.reset();
      self->close();
      return core->invoke(cb, ec, ready);
    }
    if (self->mode_ != Mode::repeat) return;
    // The callback may stop, restart with another callback, or close: run it from a local.
    auto cb = std::move(self->cb_);
    core->invoke(cb, ec, ready);
    if (self->mode_ == Mode::repeat && !self->cb_) self->cb_ = std::move(cb);
  }

  int fd_;
  Mode mode_ = Mode::no;
  UniqueFunction<void(std::error_code, PollEvents)> cb_;
  OnLoopStop<StopWait> stop_wait_;  // a pending wait's stop token, routed to the loop thread
};

namespace {
[[noreturn]] void throw_closed_poller(const char* what) {
  throw std::system_error(make_error_code(errc::not_connected), std::string("duet::Poller::") + what + " on a closed poller");
}
}  // namespace

}  // namespace detail

Poller::Poller(Loop& loop, int fd)
    : impl_(loop.core().make<detail::PollerImpl>(&loop.core(), fd)),
      core_(&loop.core()),
      alive_(loop.core().alive()),
      fd_(fd) {}

// A Poller that stopped sets up a new handle on its descriptor; if it cannot, `cb` hears why.
bool Poller::set_up(detail::UniqueFunction<void(std::error_code, PollEvents)>& cb) {
  if (impl_) return true;
  try {
    impl_ = detail::HandlePtr<detail::PollerImpl>(core_->make<detail::PollerImpl>(core_, fd_));
  } catch (const std::system_error& e) {
    core_->defer([cb = std::move(cb), ec = e.code()]() mutable { cb(ec, PollEvents::none); });
    return false;
  }
  if (!keep_loop_alive_) uv_unref(impl_->handle());
  return true;
}

void Poller::start_erased(PollEvents events, detail::UniqueFunction<void(std::error_code, PollEvents)> cb) {
  if (!is_open()) detail::throw_closed_poller("start");
  if (set_up(cb)) impl_->start(events, std::move(cb));
}

void Poller::wait_erased(PollEvents events, detail::UniqueFunction<void(std::error_code, PollEvents)> cb,
                         std::stop_token token) {
  if (!is_open()) detail::throw_closed_poller("wait");
  if (set_up(cb)) impl_->wait(events, std::move(cb), std::move(token));
}

void Poller::stop() noexcept { impl_.reset(); }

bool Poller::active() const noexcept { return impl_ && impl_->active(); }

void Poller::close() noexcept {
  impl_.reset();
  alive_.reset();
}

void Poller::keep_loop_alive(bool keep) noexcept {
  keep_loop_alive_ = keep;
  if (impl_) keep ? uv_ref(impl_->handle()) : uv_unref(impl_->handle());
}

}  // namespace duet
