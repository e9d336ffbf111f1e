// duet/detail/request_op.hpp — the one implementation of "a libuv request that calls back once".
//
// fs, DNS and thread-pool requests (`uv_fs_t`, `uv_getaddrinfo_t`, `uv_work_t`) share their life cycle:
//  1. `start`: the request object (request + callback + result storage) comes from the loop's pool
//     and is linked on the loop; the caller submits the libuv request. If submission fails, the
//     callback still runs later from the loop (never inside the initiating call), with the error.
//  2. The callback's stop token, if any, is watched: stop → `uv_cancel`. A request already running on
//     the thread pool cannot be cancelled; it finishes, its result is dropped, the callback gets
//     UV_ECANCELED all the same.
//  3. On completion the callback and result are moved out, the request object is destroyed (its pool
//     block is free for the next request), then the callback is invoked; whatever it throws goes to
//     the loop's error hook.
//  4. If the loop is being destroyed, the request was cancelled by `abandon()` and completes silently.
#pragma once

#include <exception>
#include <type_traits>
#include <utility>

#include "duet/detail/loop_core.hpp"

namespace duet::detail {

/// A uv_buf_t for `len` bytes (uv_buf_init takes an unsigned length, which would cut 4 GiB and more).
inline uv_buf_t buffer(char* base, std::size_t len) noexcept {
  uv_buf_t b;
  b.base = base;
  b.len = len;
  return b;
}

/// Calls `cb` with `ec` and, unless Result is void, a default Result.
template <class Result, class Cb>
void call_with_error(Cb& cb, std::error_code ec) {
  if constexpr (std::is_void_v<Result>) {
    if constexpr (std::is_invocable_v<Cb&, std::error_code, std::exception_ptr>)
      cb(ec, std::exception_ptr());
    else
      cb(ec);
  } else {
    if constexpr (std::is_invocable_v<Cb&, std::error_code, Result, std::exception_ptr>)
      cb(ec, Result{}, std::exception_ptr());
    else
      cb(ec, Result{});
  }
}

/// Runs `cb(ec[, Result{}])` on a later turn of the loop.
template <class Result, class Cb>
void fail_later(LoopCore& core, Cb&& cb, std::error_code ec) {
  core.defer([cb = std::forward<Cb>(cb), ec]() mutable { call_with_error<Result>(cb, ec); });
}

/// Base of the request objects. `Derived` holds the libuv request in `req` and calls `complete`.
template <class Derived, class Req, class Cb>
class RequestOp : public Resource, public StopWatch<Derived> {
 public:
  Req req{};

  RequestOp(LoopCore* core, Cb&& cb) : core_(core), cb_(std::move(cb)) { req.data = this; }

  void on_stop() noexcept { uv_cancel(reinterpret_cast<uv_req_t*>(&req)); }
  void abandon() noexcept override { uv_cancel(reinterpret_cast<uv_req_t*>(&req)); }

  /// Starts watching the callback's stop token; call once the request is submitted.
  void watch_stop() { this->watch(core_, stop_token_of(cb_)); }

  /// Submission failed: frees this object and reports `status` later.
  template <class Result>
  void fail_submission(int status) {
    Cb cb = std::move(cb_);
    LoopCore* core = core_;
    core->destroy(static_cast<Derived*>(this));
    fail_later<Result>(*core, std::move(cb), uv_error(status));
  }

 protected:
  /// True if the loop is closing: the caller must release the result and call `finish_silently`.
  bool loop_closing() const noexcept { return core_->closing(); }
  void finish_silently() noexcept { core_->destroy(static_cast<Derived*>(this)); }
  /// Hands `e` to the loop's error hook.
  void report(std::exception_ptr e) noexcept { core_->report(std::move(e)); }
  /// The callback cannot be called (its arguments could not be built): say why, and free the request.
  void finish_silently_with_report(std::exception_ptr e) noexcept {
    LoopCore* core = core_;
    core->report(std::move(e));
    core->destroy(static_cast<Derived*>(this));
  }

  /// The error the callback gets for libuv status `status`.
  std::error_code status_error(int status) const noexcept {
    return this->stop_requested() ? uv_error(UV_ECANCELED) : uv_error(status);
  }

  /// Destroys this object, then calls back with `args`.
  template <class... Args>
  void complete(Args&&... args) noexcept {
    this->unwatch();
    Cb cb = std::move(cb_);
    LoopCore* core = core_;
    core->destroy(static_cast<Derived*>(this));
    core->invoke(cb, std::forward<Args>(args)...);
  }

 private:
  LoopCore* core_;
  Cb cb_;
};

}  // namespace duet::detail
