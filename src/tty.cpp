#include "duet/tty.hpp"

#include <termios.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

namespace duet {
namespace detail {

namespace {

// The terminals Ttys have taken out of normal mode, with the mode each had before, for the exit
// handler. (Not libuv's uv_tty_reset_mode: libuv 1.44 remembers only the first terminal ever put in
// raw mode, by a descriptor number that is stale once that Tty has closed.)
struct OutOfNormal {
  const void* owner;
  int fd;
  termios original;
};
struct Registry {
  std::mutex mutex;
  std::vector<OutOfNormal> ttys;
};
// Never destroyed: the exit handler may run after static destructors.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

void restore_at_exit() noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  // Newest first: a second Tty on a terminal found it in the mode the first one set, and the first
  // one's own mode before that is the one to end with.
  for (auto t = r.ttys.rbegin(); t != r.ttys.rend(); ++t) ::tcsetattr(t->fd, TCSANOW, &t->original);
  r.ttys.clear();
}

// Remembers `fd`'s mode before it leaves normal mode; registers the exit handler once.
int remember(const void* owner, int fd) noexcept {
  OutOfNormal entry{owner, fd, {}};
  if (::tcgetattr(fd, &entry.original) != 0) return uv_translate_sys_error(errno);
  try {
    static const bool registered = (std::atexit(&restore_at_exit), true);
    (void)registered;
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.ttys.push_back(entry);
  } catch (...) {
    return UV_ENOMEM;
  }
  return 0;
}

void forget(const void* owner) noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::erase_if(r.ttys, [owner](const OutOfNormal& t) { return t.owner == owner; });
}

}  // namespace

/// A terminal: a stream whose mode is put back before it closes.
class TtyImpl final : public StreamHandle<uv_tty_t> {
 public:
  TtyImpl(LoopCore* core, uv_file fd)
      : StreamHandle<uv_tty_t>(core, [fd](uv_loop_t* loop, uv_tty_t* tty) { return uv_tty_init(loop, tty, fd, 0); }) {}

  int set_mode(Tty::Mode to) noexcept {
    if (to == mode) return 0;
    if (mode == Tty::Mode::normal) {
      uv_os_fd_t fd = -1;
      if (int rc = uv_fileno(handle(), &fd); rc < 0) return rc;
      if (int rc = remember(this, fd); rc < 0) return rc;
    }
    if (int rc = uv_tty_set_mode(&native, static_cast<uv_tty_mode_t>(to)); rc < 0) {
      if (mode == Tty::Mode::normal) forget(this);
      return rc;
    }
    if (to == Tty::Mode::normal) forget(this);
    mode = to;
    return 0;
  }

  Tty::Mode mode = Tty::Mode::normal;

 private:
  void before_close() noexcept override {
    if (mode != Tty::Mode::normal && set_mode(Tty::Mode::normal) < 0) {
      forget(this);  // the terminal is gone (or refuses): nothing is left to restore
      mode = Tty::Mode::normal;
    }
    StreamHandle<uv_tty_t>::before_close();
  }
};

}  // namespace detail

namespace {
detail::TtyImpl* tty_of(detail::StreamImpl* impl) noexcept { return static_cast<detail::TtyImpl*>(impl); }
}  // namespace

Tty::Tty(Loop& loop, uv_file fd) {
  try {
    impl_ = detail::HandlePtr<detail::StreamImpl>(loop.core().make<detail::TtyImpl>(&loop.core(), fd));
  } catch (const std::system_error& e) {
    throw std::system_error(e.code(), "duet::Tty: cannot open descriptor " + std::to_string(fd) + " as a terminal");
  }
}

void Tty::set_mode(Mode mode) {
  if (int rc = tty_of(open_impl("set_mode"))->set_mode(mode); rc < 0)
    throw std::system_error(uv_error(rc), "duet::Tty::set_mode");
}

Tty::Mode Tty::mode() const noexcept { return impl_ ? tty_of(impl_.get())->mode : Mode::normal; }

Tty::WindowSize Tty::window_size() const {
  WindowSize size;
  if (int rc = uv_tty_get_winsize(&tty_of(open_impl("window_size"))->native, &size.width, &size.height); rc < 0)
    throw std::system_error(uv_error(rc), "duet::Tty::window_size");
  return size;
}

uv_tty_t* Tty::native() const noexcept { return impl_ ? &tty_of(impl_.get())->native : nullptr; }

}  // namespace duet
