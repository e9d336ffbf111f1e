// duet/offload.hpp — run a CPU-bound or blocking function on libuv's thread pool.
//
//     duet::offload(loop, [] { return slow_computation(); },
//                   [](std::error_code ec, int answer) { ... });   // back on the loop thread
//
// `fn()` runs on one of libuv's pool threads (`uv_queue_work`; UV_THREADPOOL_SIZE of them, 4 by
// default, shared with fs and DNS requests). Its result is delivered to `cb(std::error_code, T)` on the
// loop thread (`cb(std::error_code)` when `fn` returns void). If `fn` throws, `cb` gets
// `duet::errc::offload_threw`; a callback taking a third `std::exception_ptr` parameter receives the
// exception itself. Cancelling (see cancellation.hpp) removes work that is still queued; work already
// running finishes, its result is dropped and the callback gets UV_ECANCELED.
//
// `fn` must not touch the loop or duet objects (other than `Loop::post`): it runs on another thread.
// Cost: one pooled request object holding `fn`, its result and `cb`.
#pragma once

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "duet/awaitable.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/loop.hpp"

namespace duet {
namespace detail {

template <class Fn, class Cb>
class WorkOp final : public RequestOp<WorkOp<Fn, Cb>, uv_work_t, Cb> {
  using Base = RequestOp<WorkOp<Fn, Cb>, uv_work_t, Cb>;

 public:
  using Result = std::invoke_result_t<Fn&>;
  static constexpr bool kVoid = std::is_void_v<Result>;

  WorkOp(LoopCore* core, Fn&& fn, Cb&& cb) : Base(core, std::move(cb)), fn_(std::move(fn)) {}

  static void run(uv_work_t* req) noexcept {  // on a pool thread
    auto* self = static_cast<WorkOp*>(req->data);
    try {
      if constexpr (kVoid) {
        self->fn_();
        self->result_.emplace();
      } else {
        self->result_.emplace(self->fn_());
      }
    } catch (...) {
      self->error_ = std::current_exception();
    }
  }

  static void on_done(uv_work_t* req, int status) noexcept {  // on the loop thread
    auto* self = static_cast<WorkOp*>(req->data);
    if (self->loop_closing()) return self->finish_silently();
    std::error_code ec = self->status_error(status);
    std::exception_ptr error = ec ? nullptr : std::move(self->error_);
    if (!ec && error) ec = make_error_code(errc::offload_threw);
    if constexpr (kVoid) {
      self->finish(ec, error);
    } else {
      std::optional<Result> value;
      try {
        if (!ec && self->result_)
          value.emplace(std::move(*self->result_));
        else
          value.emplace();
      } catch (...) {  // the result's move (or default) constructor threw: report that instead
        error = std::current_exception();
        ec = make_error_code(errc::offload_threw);
        if (!value) return self->fail_after_throw(ec, error);
      }
      self->finish(ec, error, std::move(*value));
    }
  }

 private:
  template <class... Value>
  void finish(std::error_code ec, std::exception_ptr error, Value&&... value) noexcept {
    if constexpr (std::is_invocable_v<Cb&, std::error_code, Value..., std::exception_ptr>)
      this->complete(ec, std::forward<Value>(value)..., std::move(error));
    else
      this->complete(ec, std::forward<Value>(value)...);
  }

  // No Result could be built to pass along: only an error-only callback can be told.
  void fail_after_throw(std::error_code ec, std::exception_ptr error) noexcept {
    if constexpr (std::is_invocable_v<Cb&, std::error_code>) {
      this->complete(ec);
    } else {
      this->finish_silently_with_report(std::move(error));
    }
  }

  Fn fn_;
  std::optional<std::conditional_t<kVoid, std::monostate, Result>> result_;
  std::exception_ptr error_;
};

}  // namespace detail

/// Runs `fn()` on the thread pool and calls `cb(std::error_code, result)` on the loop thread.
template <class Fn, class Callback>
void offload(Loop& loop, Fn&& fn, Callback&& cb) {
  using Op = detail::WorkOp<std::decay_t<Fn>, std::decay_t<Callback>>;
  static_assert(Op::kVoid || std::is_default_constructible_v<typename Op::Result>,
                "offload: the function's result must be default-constructible (it is empty on error)");
  auto& core = loop.core();
  Op* op =
      core.make<Op>(&core, std::decay_t<Fn>(std::forward<Fn>(fn)), std::decay_t<Callback>(std::forward<Callback>(cb)));
  if (int rc = uv_queue_work(core.uv(), &op->req, &Op::run, &Op::on_done); rc < 0)
    return op->template fail_submission<typename Op::Result>(rc);
  op->watch_stop();
}

/// Coroutine face: `auto value = co_await duet::offload(loop, fn);` — rethrows what `fn` threw.
template <class Fn>
[[nodiscard]] auto offload(Loop& loop, Fn&& fn) {
  using Result = std::invoke_result_t<std::decay_t<Fn>&>;
  return awaitable<Result>([&loop, fn = std::decay_t<Fn>(std::forward<Fn>(fn))](auto cb) mutable {
    duet::offload(loop, std::move(fn), std::move(cb));
  });
}

}  // namespace duet
