// duet/submit.hpp — run a function on another loop's thread and get its result back on yours.
//
//     duet::LoopGroup workers(2);
//     duet::submit(loop, workers[0], [] { return count_words(); },          // runs on workers[0]
//                  [](std::error_code ec, std::size_t n) { ... });           // back on `loop`
//     std::size_t n = co_await duet::submit(workers[0], [] { return count_words(); });
//
// `submit(here, there, fn, cb)` posts `fn` to `there`'s thread; `fn()` runs there, inside that loop (so it
// may start operations on `there`, but not wait for them: use `resume_on` for a task that does), and
// its result is delivered to `cb(std::error_code, T)` on `here`'s thread (`cb(std::error_code)` when
// `fn` returns void; a third `std::exception_ptr` parameter receives what `fn` threw). The coroutine
// face, `co_await submit(there, fn)`, delivers to the awaiting task's loop and rethrows what `fn` threw.
// `here` and `there` may be the same loop. While a submit is pending, `here` keeps running.
//
// Errors: `fn` threw — `duet::errc::offload_threw` (the coroutine face rethrows the exception itself);
// `there` was destroyed before `fn` ran — `duet::errc::loop_closed`. If `here` is destroyed first,
// `cb` is never called (as for every operation of a destroyed loop).
//
// Cancellation crosses the hop: cancelling (cancellation.hpp) before `fn` starts means it never runs;
// a `fn` that takes a `std::stop_token` sees the stop while it runs. Either way `cb` gets UV_ECANCELED
// once `fn` has returned or been skipped — never while `fn` may still use what it captured.
//
// Threads: `fn` runs on `there`'s thread and must not touch `here`'s objects. `fn` is destroyed there
// once it has run (if it never runs, wherever its submit ends); its result is moved to `here`. Cost:
// two shared allocations (function and result; the stop source's state), one pooled request object
// on `here`, and two posts.
#pragma once

#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <variant>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/loop.hpp"

namespace duet {
namespace detail {

template <class Fn>
constexpr bool kTakesStopToken = std::is_invocable_v<Fn&, std::stop_token>;

template <class Fn>
using SubmitResult = typename std::conditional_t<kTakesStopToken<Fn>, std::invoke_result<Fn&, std::stop_token>,
                                                 std::invoke_result<Fn&>>::type;

/// The caller's side of a submit, told (on its loop's thread) that the function's outcome is back.
class SubmitWaiter {
 public:
  virtual void replied() noexcept = 0;

 protected:
  ~SubmitWaiter() = default;
};

/// What the two loops share: the function, its outcome, and the stop that crosses over.
template <class Fn>
struct SubmitWork {
  using Result = SubmitResult<Fn>;
  static constexpr bool kVoid = std::is_void_v<Result>;

  explicit SubmitWork(Fn&& f) : fn(std::in_place, std::move(f)) {}

  void run() noexcept {  // on the target loop's thread
    try {
      if constexpr (kVoid) {
        call();
        result.emplace();
      } else {
        result.emplace(call());
      }
    } catch (...) {
      error = std::current_exception();
    }
    fn.reset();  // what it captured goes here, on the thread it ran on
  }
  decltype(auto) call() {
    if constexpr (kTakesStopToken<Fn>)
      return (*fn)(stop.get_token());
    else
      return (*fn)();
  }

  std::optional<Fn> fn;
  std::stop_source stop;
  std::optional<std::conditional_t<kVoid, std::monostate, Result>> result;
  std::exception_ptr error;
  bool never_ran = false;          // the target loop was destroyed first
  SubmitWaiter* waiter = nullptr;  // the caller's side; its loop's thread only (null once it is gone)
};

/// Posted to the target loop: runs the function (unless stopped first) and sends the outcome back.
/// Destroyed without running (the target loop is being destroyed), it sends back "never ran".
template <class Fn>
class Errand {
 public:
  Errand(std::shared_ptr<SubmitWork<Fn>> work, std::shared_ptr<Mailbox> home) noexcept
      : work_(std::move(work)), home_(std::move(home)) {}
  Errand(Errand&&) noexcept = default;
  Errand& operator=(Errand&&) = delete;
  ~Errand() {
    if (!work_) return;
    work_->never_ran = true;
    reply();
  }

  void operator()() {
    if (!work_->stop.stop_requested()) work_->run();
    reply();
  }

 private:
  void reply() noexcept {
    std::shared_ptr<Mailbox> home = std::move(home_);
    try {
      UniqueFunction<void()> back([work = std::move(work_)] {
        if (work->waiter) work->waiter->replied();
      });
      post_to(*home, back);  // refused if the caller's loop is being destroyed: nobody waits any more
    } catch (...) {
      std::fputs("duet: out of memory while sending a submit's result back; its callback will not run\n", stderr);
    }
  }

  std::shared_ptr<SubmitWork<Fn>> work_;
  std::shared_ptr<Mailbox> home_;
};

template <class Fn, class Cb>
class SubmitOp final : public Resource, public StopWatch<SubmitOp<Fn, Cb>>, public SubmitWaiter {
 public:
  using Work = SubmitWork<Fn>;
  using Result = typename Work::Result;

  SubmitOp(LoopCore* core, std::shared_ptr<Work> work, Cb&& cb) noexcept
      : core_(core), work_(std::move(work)), cb_(std::move(cb)) {
    work_->waiter = this;
    core_->acquire_hold();
  }
  ~SubmitOp() override {
    work_->waiter = nullptr;
    core_->release_hold();
  }

  void watch_stop() { this->watch(core_, stop_token_of(cb_)); }
  void on_stop() noexcept { work_->stop.request_stop(); }
  void abandon() noexcept override { core_->destroy(this); }  // the loop is going: no callback

  void replied() noexcept override {
    if (core_->closing()) return core_->destroy(this);
    std::error_code ec;
    std::exception_ptr error;
    if (work_->never_ran)
      ec = make_error_code(errc::loop_closed);
    else if (this->stop_requested())
      ec = uv_error(UV_ECANCELED);
    else if (work_->error) {
      ec = make_error_code(errc::offload_threw);
      error = std::move(work_->error);
    }
    this->unwatch();
    Cb cb = std::move(cb_);
    std::shared_ptr<Work> work = work_;  // the outcome outlives this object
    LoopCore* core = core_;
    core->destroy(this);
    if (ec) return fail(core, cb, ec, std::move(error));
    if constexpr (Work::kVoid) {
      deliver(core, cb, ec, nullptr);
    } else {
      deliver(core, cb, ec, nullptr, std::move(*work->result));
    }
  }

 private:
  template <class... Value>
  static void deliver(LoopCore* core, Cb& cb, std::error_code ec, std::exception_ptr error, Value&&... value) noexcept {
    if constexpr (std::is_invocable_v<Cb&, std::error_code, Value..., std::exception_ptr>)
      core->invoke(cb, ec, std::forward<Value>(value)..., std::move(error));
    else
      core->invoke(cb, ec, std::forward<Value>(value)...);
  }
  static void fail(LoopCore* core, Cb& cb, std::error_code ec, std::exception_ptr error) noexcept {
    if constexpr (Work::kVoid) {
      deliver(core, cb, ec, std::move(error));
    } else {
      try {
        deliver(core, cb, ec, std::move(error), Result{});
      } catch (...) {  // Result's default constructor threw
        core->report(std::current_exception());
      }
    }
  }

  LoopCore* core_;
  std::shared_ptr<Work> work_;
  Cb cb_;
};

}  // namespace detail

/// Runs `fn()` on `there`'s thread and calls `cb(std::error_code[, result])` on `here`'s thread.
template <class Fn, class Callback>
void submit(Loop& here, Loop& there, Fn&& fn, Callback&& cb) {
  using F = std::decay_t<Fn>;
  using Op = detail::SubmitOp<F, std::decay_t<Callback>>;
  using Result = typename Op::Result;
  static_assert(std::is_void_v<Result> || std::is_default_constructible_v<Result>,
                "submit: the function's result must be default-constructible (it is empty on error)");
  auto& core = here.core();
  auto work = std::make_shared<detail::SubmitWork<F>>(F(std::forward<Fn>(fn)));
  Op* op = core.make<Op>(&core, work, std::decay_t<Callback>(std::forward<Callback>(cb)));
  try {
    op->watch_stop();  // first: a token already stopped stops the work before it can start
    there.post(detail::Errand<F>(work, core.mailbox()));
  } catch (...) {  // out of memory: nothing was sent, and the callback will not be called
    core.destroy(op);
    throw;
  }
}

/// Coroutine face: `auto value = co_await duet::submit(there, fn);` — back on the awaiting task's loop;
/// rethrows what `fn` threw.
template <class Fn>
[[nodiscard]] auto submit(Loop& there, Fn&& fn) {
  using Result = detail::SubmitResult<std::decay_t<Fn>>;
  return awaitable<Result>([&there, fn = std::decay_t<Fn>(std::forward<Fn>(fn))](auto cb) mutable {
    Loop* here = cb.loop();
    if (!here) throw std::logic_error("duet::submit: awaited outside a task running on a Loop; use the callback face");
    duet::submit(*here, there, std::move(fn), std::move(cb));
  });
}

}  // namespace duet
