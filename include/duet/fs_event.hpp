// duet/fs_event.hpp — `FsEvent`: being told when a file, or an entry of a folder, changes.
//
//     duet::FsEvent watcher(loop);
//     watcher.start("/etc/app", [](std::error_code ec, const duet::FileEvent& e) {
//       // e.name: the entry that changed; e.renamed / e.changed
//     });
//
//     watcher.start("/etc/app");                                     // or queue the events ...
//     duet::FileEvent e = co_await watcher.next();                   // ... and take them one by one
//
// libuv's `uv_fs_event_t`, on Linux inotify. Watching a folder reports its entries (not those of its
// subfolders): `name` is the entry's name. Watching a file reports the file itself: `name` is its
// own name. An event is `renamed` when a name appeared or went (created, deleted, renamed from or to)
// and `changed` when contents or attributes changed; the system may merge or repeat events (a write
// often gives several `changed`), so treat them as "look again", not as an exact log.
//
// Two ways to take events (one at a time):
// - `start(path, cb)` calls `cb(std::error_code, const FileEvent&)` for each event until `stop()`;
// - `start(path)` queues the events; `next(cb)` calls `cb(std::error_code, FileEvent)` with the first
//   one (on a later turn if it is already queued, else when it comes), and so does `co_await
//   watcher.next()`. The queue holds at most `queue_limit` events (constructor, default 1024): past
//   that, events are dropped and the next `next` after the queued ones gets UV_ENOBUFS once — rescan.
//   `queued()` says how many wait. One `next` at a time (a second gets `errc::already_reading`, as
//   does a `next` while started with a callback); cancellable through its callback's stop token.
//
// `stop()` stops watching at once: a pending `next` gets UV_ECANCELED, the queue is kept, and the loop
// may return. `start` on a started watcher watches the new path instead (the queue is kept).
//
// Errors: `start` throws `std::system_error` with libuv's error (UV_ENOENT for a path that does not
// exist, UV_ENOSPC when the system's inotify watch limit is reached). A watched file that is deleted
// gives a `renamed` event, after which the watch sees nothing more (start again on the new file). A
// `next` with nothing queued on a watcher that is not watching would wait forever: it throws
// `std::system_error` with `errc::not_connected`, as starting anything on a closed or
// default-constructed watcher does.
//
// Loop destruction: the watcher is closed with its loop and becomes inert: `is_open()` and `active()`
// are false, `start`/`next` throw `not_connected`; `stop()`, `close()`, moving and destroying are safe.
//
// Cost: one `uv_fs_event_t` (and an inotify watch, shared by every watcher of the same path on the
// loop); each event is one small string; the queue grows up to its limit only while nobody takes.
#pragma once

#include <cstddef>
#include <stop_token>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/handle.hpp"
#include "duet/loop.hpp"

namespace duet {

/// One change, as `FsEvent` reports it.
struct FileEvent {
  std::string name;      ///< the entry of the watched folder, or the watched file's own name
  bool renamed = false;  ///< a name appeared or went: created, deleted, renamed (libuv's UV_RENAME)
  bool changed = false;  ///< contents or attributes changed (libuv's UV_CHANGE)
};

namespace detail {
class FsEventImpl;
}  // namespace detail

/// Watches one file or folder. Loop-thread only. Move-only; the destructor stops watching.
class FsEvent {
 public:
  static constexpr std::size_t kDefaultQueueLimit = 1024;

  FsEvent() noexcept = default;
  explicit FsEvent(Loop& loop, std::size_t queue_limit = kDefaultQueueLimit);

  /// Watches `path`, queueing its events for `next`. Throws `std::system_error` on failure.
  void start(const std::string& path);
  /// Watches `path`, calling `cb(std::error_code, const FileEvent&)` for each event until `stop()`.
  template <class Callback>
  void start(const std::string& path, Callback&& cb) {
    start_erased(path, detail::UniqueFunction<void(std::error_code, const FileEvent&)>(std::forward<Callback>(cb)));
  }
  /// Stops watching (see the top of this header). Safe when not started.
  void stop() noexcept;

  /// Calls `cb(std::error_code, FileEvent)` with the next event. Cancellable.
  template <class Callback>
  void next(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    next_erased(detail::UniqueFunction<void(std::error_code, FileEvent)>(std::forward<Callback>(cb)), std::move(token));
  }
  /// Coroutine face: `duet::FileEvent e = co_await watcher.next();`
  template <class = void>
  [[nodiscard]] auto next() {
    return awaitable<FileEvent>([this](auto cb) { next(std::move(cb)); });
  }

  /// The path being watched ("" when not watching).
  std::string path() const;
  /// Events queued for `next`.
  std::size_t queued() const noexcept;
  /// True while watching.
  bool active() const noexcept;
  /// True until `close()` (or until the loop is destroyed).
  bool is_open() const noexcept { return static_cast<bool>(impl_); }
  /// Stops watching for good. Idempotent.
  void close() noexcept { impl_.reset(); }
  /// Whether this watcher keeps `Loop::run()` from returning while active (it does by default).
  void keep_loop_alive(bool keep) noexcept;

 private:
  void start_erased(const std::string& path, detail::UniqueFunction<void(std::error_code, const FileEvent&)> cb);
  void next_erased(detail::UniqueFunction<void(std::error_code, FileEvent)> cb, std::stop_token token);
  detail::HandlePtr<detail::FsEventImpl> impl_;
};

}  // namespace duet
