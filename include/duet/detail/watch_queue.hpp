// duet/detail/watch_queue.hpp — the events of a watcher handle (FsEvent, FsPoll), for whoever takes them.
//
// A watcher's libuv callback hands each event to `push`, which gives it
//  - to the listener, if one is set (the callback face `start(..., cb)`: every event, as it comes);
//  - else to the waiter, if a `next` is pending (it is called at once, from libuv's callback);
//  - else to the queue, for a later `next`, which then gets it on the next turn of the loop.
// The queue is bounded: once `limit` events wait, further ones are dropped until the queue has been
// drained, and the `next` that finds it empty after a loss gets UV_ENOBUFS ("events were lost") once,
// so the consumer knows to look at the file system again. A pending `next` is cancellable (its stop
// token, routed to the loop thread) and `cancel()` ends it with UV_ECANCELED.
//
// Loop-thread only. Lives inside its handle's owner (it must not move).
#pragma once

#include <vector>

#include <string>

#include <cstddef>
#include <deque>
#include <stop_token>
#include <system_error>
#include <utility>

#include "duet/detail/loop_core.hpp"

namespace duet::detail {

template <class Event>
class WatchQueue {
 public:
  using Waiter = UniqueFunction<void(std::error_code, Event)>;
  using Listener = UniqueFunction<void(std::error_code, const Event&)>;

  WatchQueue(LoopCore* core, std::size_t limit) noexcept : core_(core), limit_(limit > 0 ? limit : 1) {}
  WatchQueue(const WatchQueue&) = delete;
  WatchQueue& operator=(const WatchQueue&) = delete;

  /// Events waiting for `next` (not counting the loss marker).
  std::size_t size() const noexcept { return queue_.size(); }
  bool listening() const noexcept { return static_cast<bool>(listener_); }
  /// True if `next` has something to deliver at once.
  bool ready() const noexcept { return !queue_.empty() || lost_; }

  /// Every event goes to `cb` from now on (the queue is kept for a later `next`).
  void listen(Listener cb) noexcept {
    ++epoch_;
    listener_ = std::move(cb);
  }
  void stop_listening() noexcept {
    ++epoch_;
    listener_.reset();
  }

  /// An event from libuv.
  void push(std::error_code ec, Event&& event) noexcept {
    if (listener_) {
      // The listener may stop, replace itself or close the watcher: run it from a local.
      auto cb = std::move(listener_);
      listener_.reset();
      const unsigned epoch = ++epoch_;
      core_->invoke(cb, ec, static_cast<const Event&>(event));
      if (epoch_ == epoch && !listener_) listener_ = std::move(cb);
      return;
    }
    if (waiter_) {
      stop_.reset();
      auto cb = std::move(waiter_);
      waiter_.reset();
      return core_->invoke(cb, ec, std::move(event));
    }
    if (lost_) return;  // dropping until the consumer has heard of the loss
    if (queue_.size() >= limit_) {
      lost_ = true;
      return;
    }
    try {
      queue_.emplace_back(ec, std::move(event));
    } catch (...) {
      lost_ = true;  // out of memory: reported as a loss like any other
    }
  }

  /// Delivers the first queued event (or the loss) on a later turn, or waits for the next one.
  /// One waiter at a time: a second gets `errc::already_reading`.
  void next(Waiter cb, std::stop_token token) {
    if (listener_ || waiter_) return deliver_later(std::move(cb), make_error_code(errc::already_reading), Event{});
    if (token.stop_requested()) return deliver_later(std::move(cb), uv_error(UV_ECANCELED), Event{});
    if (!queue_.empty()) {
      auto [ec, event] = std::move(queue_.front());
      queue_.pop_front();
      return deliver_later(std::move(cb), ec, std::move(event));
    }
    if (lost_) {
      lost_ = false;
      return deliver_later(std::move(cb), uv_error(UV_ENOBUFS), Event{});
    }
    waiter_ = std::move(cb);
    stop_.watch(core_, std::move(token), StopWaiter{this});
  }

  /// A pending `next` gets UV_ECANCELED on a later turn.
  void cancel() noexcept {
    if (!waiter_) return;
    stop_.reset();
    auto cb = std::move(waiter_);
    waiter_.reset();
    deliver_later(std::move(cb), uv_error(UV_ECANCELED), Event{});
  }

  /// Drops the listener and everything queued; cancels a pending `next`.
  void clear() noexcept {
    ++epoch_;
    cancel();
    listener_.reset();
    queue_.clear();
    lost_ = false;
  }

 private:
  struct StopWaiter {
    WatchQueue* self;
    void operator()() const noexcept { self->cancel(); }
  };

  void deliver_later(Waiter cb, std::error_code ec, Event event) noexcept {
    core_->defer([cb = std::move(cb), ec, event = std::move(event)]() mutable { cb(ec, std::move(event)); });
  }

  LoopCore* core_;
  std::size_t limit_;
  std::deque<std::pair<std::error_code, Event>> queue_;
  bool lost_ = false;
  unsigned epoch_ = 0;  // changes when the listener is set or dropped: did a listener do either?
  Listener listener_;
  Waiter waiter_;
  OnLoopStop<StopWaiter> stop_;
};

/// The path a watcher watches, through libuv's getpath call for its handle type
/// (`uv_fs_event_getpath`, `uv_fs_poll_getpath`): empty if libuv has none.
template <class H>
std::string watched_path(H* handle, int (*getpath)(H*, char*, std::size_t*)) {
  std::vector<char> buffer(256);
  while (true) {
    std::size_t size = buffer.size();
    const int rc = getpath(handle, buffer.data(), &size);
    if (rc == 0) return std::string(buffer.data(), size);
    if (rc != UV_ENOBUFS) return {};
    buffer.resize(size + 1);  // libuv says how much it needs
  }
}

}  // namespace duet::detail
