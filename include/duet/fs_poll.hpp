// duet/fs_poll.hpp — `FsPoll`: noticing that a file changed by looking at it at an interval.
//
//     duet::FsPoll poll(loop);
//     poll.start("/var/log/app.log", 1s, [](std::error_code ec, const duet::StatChange& c) {
//       // c.previous / c.current: the file's metadata before and after; c.error: UV_ENOENT when it went
//     });
//
//     poll.start(path, 1s);                                     // or queue the changes ...
//     duet::StatChange c = co_await poll.next();                // ... and take them one by one
//
// libuv's `uv_fs_poll_t`: the file is `stat`ed on the thread pool every `interval`, and a change of
// its size, times, mode, owner or inode is reported. It works where FsEvent does not (network file
// systems, a file that does not exist yet) at the price of latency (up to one interval) and one stat
// per interval. The first stat sets the baseline and reports nothing, unless it fails.
//
// What a change carries (`StatChange`): `previous` and `current` metadata; when the stat fails,
// `error` says why (UV_ENOENT: the file is gone or not there yet) and `current` is all zeros. A stat
// failing again with the same error is not reported again; the file coming back is (with `previous`
// the metadata from before it went, or zeros if it never existed). Stat failures are changes, not
// operation errors: the operation's `std::error_code` is for cancellation and queue loss only.
//
// Two ways to take changes, as FsEvent has (fs_event.hpp): `start(path, interval, cb)` calls
// `cb(std::error_code, const StatChange&)` for each until `stop()`; `start(path, interval)` queues them
// (at most `queue_limit`, then UV_ENOBUFS once) for `next(cb)` / `co_await poll.next()`, one `next` at
// a time, cancellable. `stop()` is at once (a pending `next` gets UV_ECANCELED; a stat already on the
// thread pool finishes and is ignored). `start` again (after `stop`, or to poll another path) starts
// afresh on a new handle: the first stat is a new baseline, changes still queued are dropped and a
// pending `next` gets UV_ECANCELED.
//
// Errors: `start` throws `std::system_error` only for an invalid argument; a missing file is reported
// as a change. A `next` with nothing queued on a poll that is not started throws `errc::not_connected`,
// as starting anything on a closed or default-constructed FsPoll does.
//
// Loop destruction: the FsPoll is closed with its loop and becomes inert: `is_open()` and `active()`
// are false, `start`/`next` throw `not_connected`; `stop()`, `close()`, moving and destroying are safe.
//
// Cost: one `uv_fs_poll_t` (with its timer) and one thread-pool stat per interval while started.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/chrono.hpp"
#include "duet/detail/handle.hpp"
#include "duet/fs.hpp"
#include "duet/loop.hpp"
#include "duet/timer.hpp"

namespace duet {

/// One change, as `FsPoll` reports it.
struct StatChange {
  fs::Stat previous{};   ///< the metadata before (zeros if the file did not exist)
  fs::Stat current{};    ///< the metadata now (zeros if the stat failed)
  std::error_code error;  ///< why the stat failed (UV_ENOENT: no such file); clear when it succeeded
};

namespace detail {
class FsPollImpl;
}  // namespace detail

/// Polls one path. Loop-thread only. Move-only; the destructor stops polling.
class FsPoll {
 public:
  static constexpr std::size_t kDefaultQueueLimit = 1024;

  FsPoll() noexcept = default;
  explicit FsPoll(Loop& loop, std::size_t queue_limit = kDefaultQueueLimit);

  /// Polls `path` every `interval` (at least 1 ms), queueing changes for `next`.
  template <class Rep, class Period>
  void start(const std::string& path, std::chrono::duration<Rep, Period> interval) {
    start_erased(path, detail::to_uv_millis(interval), nullptr);
  }
  /// Polls `path` every `interval`, calling `cb(std::error_code, const StatChange&)` for each change.
  template <class Rep, class Period, class Callback>
  void start(const std::string& path, std::chrono::duration<Rep, Period> interval, Callback&& cb) {
    start_erased(path, detail::to_uv_millis(interval),
                 detail::UniqueFunction<void(std::error_code, const StatChange&)>(std::forward<Callback>(cb)));
  }
  /// Stops polling (see the top of this header). Safe when not started.
  void stop() noexcept;

  /// Calls `cb(std::error_code, StatChange)` with the next change. Cancellable.
  template <class Callback>
  void next(Callback&& cb) {
    std::stop_token token = stop_token_of(cb);
    next_erased(detail::UniqueFunction<void(std::error_code, StatChange)>(std::forward<Callback>(cb)), std::move(token));
  }
  /// Coroutine face: `duet::StatChange c = co_await poll.next();`
  template <class = void>
  [[nodiscard]] auto next() {
    return awaitable<StatChange>([this](auto cb) { next(std::move(cb)); });
  }

  /// The path being polled ("" when not started).
  std::string path() const;
  /// Changes queued for `next`.
  std::size_t queued() const noexcept;
  /// True while started.
  bool active() const noexcept;
  /// True until `close()` (or until the loop is destroyed).
  bool is_open() const noexcept { return static_cast<bool>(impl_); }
  /// Stops polling for good. Idempotent.
  void close() noexcept { impl_.reset(); }
  /// Whether this poll keeps `Loop::run()` from returning while started (it does by default).
  void keep_loop_alive(bool keep) noexcept;

 private:
  void start_erased(const std::string& path, std::uint64_t interval_ms,
                    detail::UniqueFunction<void(std::error_code, const StatChange&)> cb);
  void next_erased(detail::UniqueFunction<void(std::error_code, StatChange)> cb, std::stop_token token);
  detail::HandlePtr<detail::FsPollImpl> impl_;
};

}  // namespace duet
