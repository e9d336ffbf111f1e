#include "duet/fs_event.hpp"

#include <string>
#include <system_error>
#include <vector>

#include "duet/detail/watch_queue.hpp"

namespace duet {
namespace detail {

class FsEventImpl final : public OwnedHandle {
 public:
  FsEventImpl(LoopCore* core, std::size_t limit) : OwnedHandle(core, &native), events(core, limit) {
    if (int rc = uv_fs_event_init(core->uv(), &native); rc < 0) throw std::system_error(uv_error(rc), "uv_fs_event_init");
    adopt(&native);
  }

  uv_fs_event_t native{};
  WatchQueue<FileEvent> events;

  void start(const std::string& path) {
    uv_fs_event_stop(&native);  // a started watcher watches the new path instead
    if (int rc = uv_fs_event_start(&native, &on_event, path.c_str(), 0); rc < 0) {
      events.cancel();  // nothing to wait for any more
      throw std::system_error(uv_error(rc), "duet::FsEvent::start: cannot watch '" + path + "'");
    }
  }
  void stop() noexcept {
    uv_fs_event_stop(&native);
    events.cancel();
    events.stop_listening();
  }

 private:
  void before_close() noexcept override { events.clear(); }

  static void on_event(uv_fs_event_t* h, const char* name, int what, int status) noexcept {
    auto* self = of<FsEventImpl>(h);
    FileEvent event;
    try {
      if (name) event.name = name;
    } catch (...) {  // out of memory: the event goes without its name
    }
    event.renamed = (what & UV_RENAME) != 0;
    event.changed = (what & UV_CHANGE) != 0;
    self->events.push(uv_error(status), std::move(event));
  }
};

namespace {
[[noreturn]] void throw_closed_watcher(const char* what) {
  throw std::system_error(make_error_code(errc::not_connected), std::string("duet::FsEvent::") + what);
}
}  // namespace

}  // namespace detail

FsEvent::FsEvent(Loop& loop, std::size_t queue_limit)
    : impl_(loop.core().make<detail::FsEventImpl>(&loop.core(), queue_limit)) {}

void FsEvent::start(const std::string& path) {
  if (!impl_) detail::throw_closed_watcher("start on a closed watcher");
  impl_->start(path);
  impl_->events.stop_listening();
}

void FsEvent::start_erased(const std::string& path, detail::UniqueFunction<void(std::error_code, const FileEvent&)> cb) {
  if (!impl_) detail::throw_closed_watcher("start on a closed watcher");
  impl_->start(path);
  impl_->events.cancel();  // the events go to the callback now
  impl_->events.listen(std::move(cb));
}

void FsEvent::stop() noexcept {
  if (impl_) impl_->stop();
}

void FsEvent::next_erased(detail::UniqueFunction<void(std::error_code, FileEvent)> cb, std::stop_token token) {
  if (!impl_) detail::throw_closed_watcher("next on a closed watcher");
  if (!impl_->events.ready() && !active()) detail::throw_closed_watcher("next on a watcher that is not watching");
  impl_->events.next(std::move(cb), std::move(token));
}

std::string FsEvent::path() const {
  if (!impl_ || !active()) return {};
  return detail::watched_path(&impl_->native, &uv_fs_event_getpath);
}

std::size_t FsEvent::queued() const noexcept { return impl_ ? impl_->events.size() : 0; }

bool FsEvent::active() const noexcept { return impl_ && uv_is_active(impl_->handle()) != 0; }

void FsEvent::keep_loop_alive(bool keep) noexcept {
  if (impl_) keep ? uv_ref(impl_->handle()) : uv_unref(impl_->handle());
}

}  // namespace duet
