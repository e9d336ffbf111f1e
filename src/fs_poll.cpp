#include "duet/fs_poll.hpp"

#include <algorithm>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include "duet/detail/watch_queue.hpp"

namespace duet {
namespace detail {

class FsPollImpl final : public OwnedHandle {
 public:
  FsPollImpl(LoopCore* core, std::size_t queue_limit)
      : OwnedHandle(core, &native), changes(core, queue_limit), limit(queue_limit) {
    if (int rc = uv_fs_poll_init(core->uv(), &native); rc < 0) throw std::system_error(uv_error(rc), "uv_fs_poll_init");
    adopt(&native);
  }

  uv_fs_poll_t native{};
  WatchQueue<StatChange> changes;
  std::size_t limit;
  bool used = false;  // started once: libuv cannot start this handle again safely (see start_erased)

  void start(const std::string& path, std::uint64_t interval_ms) {
    used = true;
    core()->update_time();  // the first check counts from now, not from the loop's last turn
    const auto interval =
        static_cast<unsigned>(std::clamp<std::uint64_t>(interval_ms, 1, std::numeric_limits<unsigned>::max()));
    if (int rc = uv_fs_poll_start(&native, &on_change, path.c_str(), interval); rc < 0) {
      changes.cancel();  // nothing to wait for any more
      throw std::system_error(uv_error(rc), "duet::FsPoll::start: cannot poll '" + path + "'");
    }
  }
  void stop() noexcept {
    uv_fs_poll_stop(&native);
    changes.cancel();
    changes.stop_listening();
  }

 private:
  void before_close() noexcept override { changes.clear(); }

  static void on_change(uv_fs_poll_t* h, int status, const uv_stat_t* previous, const uv_stat_t* current) noexcept {
    auto* self = of<FsPollImpl>(h);
    StatChange change;
    if (previous) change.previous = *previous;
    if (current) change.current = *current;
    change.error = uv_error(status);
    self->changes.push(std::error_code(), std::move(change));
  }
};

namespace {
[[noreturn]] void throw_closed_poll(const char* what) {
  throw std::system_error(make_error_code(errc::not_connected), std::string("duet::FsPoll::") + what);
}
}  // namespace

}  // namespace detail

FsPoll::FsPoll(Loop& loop, std::size_t queue_limit)
    : impl_(loop.core().make<detail::FsPollImpl>(&loop.core(), queue_limit)) {}

void FsPoll::start_erased(const std::string& path, std::uint64_t interval_ms,
                          detail::UniqueFunction<void(std::error_code, const StatChange&)> cb) {
  if (!impl_) detail::throw_closed_poll("start on a closed FsPoll");
  if (impl_->used) {
    // libuv's uv_fs_poll_start after a stop, while the stop's last stat is still on the thread pool,
    // would revive that stat's stale context: a poll started again gets a fresh handle instead.
    detail::LoopCore* core = impl_->core();
    const bool keep = uv_has_ref(impl_->handle()) != 0;  // keep_loop_alive's setting goes over to it
    impl_ = detail::HandlePtr<detail::FsPollImpl>(core->make<detail::FsPollImpl>(core, impl_->limit));
    if (!keep) uv_unref(impl_->handle());
  }
  impl_->start(path, interval_ms);
  if (cb) {
    impl_->changes.cancel();  // the changes go to the callback now
    impl_->changes.listen(std::move(cb));
  } else {
    impl_->changes.stop_listening();
  }
}

void FsPoll::stop() noexcept {
  if (impl_) impl_->stop();
}

void FsPoll::next_erased(detail::UniqueFunction<void(std::error_code, StatChange)> cb, std::stop_token token) {
  if (!impl_) detail::throw_closed_poll("next on a closed FsPoll");
  if (!impl_->changes.ready() && !active()) detail::throw_closed_poll("next on an FsPoll that is not started");
  impl_->changes.next(std::move(cb), std::move(token));
}

std::string FsPoll::path() const {
  if (!impl_ || !active()) return {};
  return detail::watched_path(&impl_->native, &uv_fs_poll_getpath);
}

std::size_t FsPoll::queued() const noexcept { return impl_ ? impl_->changes.size() : 0; }

bool FsPoll::active() const noexcept { return impl_ && uv_is_active(impl_->handle()) != 0; }

void FsPoll::keep_loop_alive(bool keep) noexcept {
  if (impl_) keep ? uv_ref(impl_->handle()) : uv_unref(impl_->handle());
}

}  // namespace duet
