// duet/spawn.hpp — running tasks on a loop: `spawn`, `run`, and the `JoinHandle` between the faces.
//
//     int main() {
//       duet::Loop loop;
//       int n = duet::run(loop, count_flags(loop));       // like asyncio.run: returns or rethrows
//     }
//
//     auto handle = duet::spawn(loop, download(loop, "BR"));   // starts on the loop's next turn
//     handle.on_done([&] { ... handle.result() ... });          // from callback code
//     auto bytes = co_await handle;                             // or from a coroutine
//     handle.cancel();                                          // like asyncio's Task.cancel()
//
// `spawn(loop, task)` starts `task` on the loop's next turn (never inside `spawn`) and returns a
// `JoinHandle<T>`: `done()`, `on_done(cb)` (cb() runs on the loop thread once the task has finished;
// at once — on the next turn — if it already has), `result()` (the value, or the task's exception
// rethrown; once), `co_await handle` (the same, from a coroutine), `cancel()`.
//
// Cancellation: `cancel()` requests stop on the task's stop token, which every awaited operation down
// the task's chain of `co_await`s watches: the operation is cancelled as cancellation.hpp describes
// and the coroutine resumes with `duet::Cancelled` thrown. RAII cleanup runs as the exception unwinds.
// A task may catch `Cancelled`; it cannot start new operations afterwards (they throw `Cancelled` at
// once). `cancel()` may be called on any thread, also while the task's Loop is being destroyed: the
// destruction waits for a cancel() running on another thread to return, and carries out what it
// asked of the loop before it frees the task. (A cancel() on the thread of a loop the task is away on,
// resume_on.hpp, runs the task's cleanup inside the call: that must not wait for the thread destroying
// the task's Loop.)
//
// Errors are never lost: a task that ends with an exception nobody observes (by `result()`, by
// `co_await`, or by an `on_done` callback) is reported to the loop's error hook when its handle is
// dropped (or when it finishes, if the handle was dropped first). Dropping a handle does not stop
// the task: it runs on, detached.
//
// Loop destruction: spawned tasks still running are cancelled; the frames of those that stay
// suspended are destroyed, and their handles report `duet::errc::loop_closed`. So a Loop with
// unfinished tasks is not destroyed from inside a coroutine, or an `on_done` callback run as its task
// ends (that aborts, saying so: see loop.hpp); the `on_done` callback of a Loop's last task may (a
// host's Loop; or an owned one whose task ended outside its run).
//
// `run(loop, task)` spawns `task`, runs the loop until it is done and returns its result (rethrowing
// its exception); `run(loop, operation)` does the same for one awaitable operation (a blocking call,
// as a thread that owns its loop makes it), and a `std::stop_token` given as a third argument cancels
// either from any thread. If the loop runs out of work first (the task waits for something that cannot
// happen) or is stopped, `run` throws `std::logic_error`. Not from a task or callback on the same
// loop: a loop is not run from inside its own run (that aborts, saying so: see loop.hpp).
//
// Cost: one shared state per spawn (one allocation) plus the driver coroutine's frame (recycled).
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <utility>
#include <variant>
#include <vector>

#include "duet/loop.hpp"
#include "duet/task.hpp"

namespace duet {

template <class T>
class JoinHandle;

namespace detail {

/// A coroutine that starts when resumed and frees itself when done; its promise carries a TaskContext
/// (its first parameter) for the tasks it awaits.
struct Detached {
  struct promise_type {
    template <class... Args>
    explicit promise_type(const TaskContext& c, Args&&...) noexcept : context_(c) {}
    static void* operator new(std::size_t n) { return allocate_frame(n); }
    static void operator delete(void* p, std::size_t n) noexcept { deallocate_frame(p, n); }
    Detached get_return_object() noexcept { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() noexcept { return {}; }  // started through the trampoline
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }  // drivers catch everything
    const TaskContext& context() const noexcept { return context_; }
    TaskContext context_;
  };
  std::coroutine_handle<promise_type> handle;
};

/// What a spawned task's value is stored as.
template <class T>
using Stored = std::conditional_t<std::is_void_v<T>, std::monostate,
                                  std::conditional_t<std::is_reference_v<T>, std::remove_reference_t<T>*, T>>;

template <class T>
class SpawnState final : public SpawnedTask, public std::enable_shared_from_this<SpawnState<T>> {
 public:
  SpawnState(Loop& loop, Task<T> task)
      : loop_(&loop), loop_alive_(loop.core().alive()), mailbox_(loop.core().mailbox()), task_(std::move(task)) {}

  void start() {
    loop_->core().link_task(this);
    driver_ = drive(TaskContext{loop_, stop_.get_token()}, this->shared_from_this()).handle;
    resume(driver_);  // runs to its first suspension (or to the end, freeing itself)
  }

  bool done() const noexcept { return outcome_.index() != 0; }
  /// The loop's cancel (its destruction): once it returns, no cancel() from another thread is still
  /// routing this task's stop.
  void cancel() noexcept override {
    auto keep_alive = this->shared_from_this();  // the task may end inside request_stop
    stop_.request_stop();
    wait_for_cancels(foreign_cancels_);
  }
  /// The user's cancel (`JoinHandle::cancel`), from any thread.
  void cancel_from_user() noexcept { request_task_stop(*mailbox_, stop_, foreign_cancels_); }

  void destroy_frames() noexcept override {
    LoopCore& core = loop_->core();
    core.unlink_task(this);
    auto keep_alive = this->shared_from_this();  // the driver's frame holds a reference
    task_ = Task<T>();                           // the task's chain of frames
    if (driver_) std::exchange(driver_, {}).destroy();
    outcome_.template emplace<2>(std::make_exception_ptr(
        std::system_error(make_error_code(errc::loop_closed), "the loop was destroyed before the task finished")));
    // No on_done callbacks and no awaiter: the loop is gone.
    callbacks_.clear();
    awaiter_ = {};
    observed_ = true;
  }

  void on_done(UniqueFunction<void()> cb) {
    observed_ = true;
    if (!*loop_alive_) throw std::logic_error("duet::JoinHandle::on_done: the loop was destroyed");
    loop_->core().check_thread();  // on both paths, not only when the task has finished (defer checks)
    if (done()) return loop_->core().defer(std::move(cb));
    callbacks_.push_back(std::move(cb));
  }

  /// While a coroutine awaits, the outcome is its to see; if it stops waiting (cancelled), nobody's.
  void await(std::coroutine_handle<> waiter) {
    if (awaiter_) throw std::logic_error("duet::JoinHandle: awaited by two coroutines at once");
    awaiter_ = waiter;
  }

  /// The waiting coroutine was cancelled: forget it, and resume it (on the loop's next turn, never
  /// inside request_stop) so that it throws Cancelled. False if the task finished first.
  bool drop_awaiter(std::coroutine_handle<> waiter) noexcept {
    if (awaiter_ != waiter) return false;
    awaiter_ = {};
    loop_->core().defer([waiter] { resume(waiter); });
    return true;
  }

  /// The deferred start never ran (the loop was destroyed first): the handle reports loop_closed. The
  /// task's frame and the on_done callbacks are destroyed, as a finished task's are: one that holds
  /// its own handle would otherwise keep the frame, and what it owns, alive for good.
  void never_started() noexcept {
    if (outcome_.index() != 0) return;
    outcome_.template emplace<2>(std::make_exception_ptr(
        std::system_error(make_error_code(errc::loop_closed), "the loop was destroyed before the task started")));
    observed_ = true;
    auto task = std::move(task_);  // destroyed last, here: their destructors may come back to this state
    auto callbacks = std::move(callbacks_);
  }

  T result() {
    if (!done()) throw std::logic_error("duet::JoinHandle::result(): the task has not finished");
    observed_ = true;
    if (taken_) throw std::logic_error("duet::JoinHandle::result(): the result was already taken");
    taken_ = true;
    if (outcome_.index() == 2) std::rethrow_exception(std::get<2>(outcome_));
    if constexpr (std::is_void_v<T>)
      return;
    else if constexpr (std::is_reference_v<T>)
      return *std::get<1>(outcome_);
    else
      return std::move(std::get<1>(outcome_));
  }

  /// The handle is gone: an exception nobody will ever see goes to the error hook.
  void release_handle() noexcept {
    handle_alive_ = false;
    report_if_unobserved();
  }

 private:
  static Detached drive(TaskContext, std::shared_ptr<SpawnState> self) {
    try {
      if constexpr (std::is_void_v<T>) {
        co_await std::move(self->task_);
        self->outcome_.template emplace<1>();
      } else if constexpr (std::is_reference_v<T>) {
        self->outcome_.template emplace<1>(std::addressof(co_await std::move(self->task_)));
      } else {
        self->outcome_.template emplace<1>(co_await std::move(self->task_));
      }
    } catch (...) {
      self->outcome_.template emplace<2>(std::current_exception());
    }
    self->finish();
  }

  void finish() noexcept {
    driver_ = {};  // the driver frees itself when this returns
    task_ = Task<T>();
    LoopCore& core = loop_->core();
    core.unlink_task(this);
    if (core.closing()) {  // finished while the loop is being destroyed: no user code runs any more
      callbacks_.clear();
      awaiter_ = {};
      observed_ = true;  // its end (most often the Cancelled the destruction threw in) is the loop's report
      return;
    }
    auto callbacks = std::move(callbacks_);
    for (auto& cb : callbacks) {
      try {
        cb();
      } catch (...) {  // (reported through the core only if the callback did not destroy the Loop)
        if (*loop_alive_)
          core.report(std::current_exception());
        else
          print_report(std::current_exception());
      }
      if (!*loop_alive_) {  // the callback destroyed the Loop (an owned loop's core with it)
        awaiter_ = {};
        return;
      }
    }
    report_if_unobserved();
    if (auto waiter = std::exchange(awaiter_, {})) resume(waiter);
  }

  void report_if_unobserved() noexcept {
    if (!done() || observed_ || awaiter_ || handle_alive_ || outcome_.index() != 2) return;
    observed_ = true;
    if (*loop_alive_) return loop_->core().report(std::get<2>(outcome_));
    // The loop is gone, and its error hook with it: say it where it cannot be missed.
    try {
      std::rethrow_exception(std::get<2>(outcome_));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "duet: a detached task failed after its loop was destroyed: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "duet: a detached task failed after its loop was destroyed\n");
    }
  }

  Loop* loop_;
  std::shared_ptr<bool> loop_alive_;
  std::shared_ptr<Mailbox> mailbox_;  // the loop's, which outlives it: for cancel() from another thread
  Task<T> task_;
  std::stop_source stop_;
  std::atomic<int> foreign_cancels_{0};  // cancel() calls running on other threads
  std::coroutine_handle<> driver_;
  std::variant<std::monostate, Stored<T>, std::exception_ptr> outcome_;
  std::vector<UniqueFunction<void()>> callbacks_;
  std::coroutine_handle<> awaiter_;
  bool observed_ = false;
  bool handle_alive_ = true;
  bool taken_ = false;
  template <class U>
  friend class duet::JoinHandle;
};

}  // namespace detail

/// The handle to a spawned task. Move-only; dropping it detaches the task (see the top of this header).
template <class T>
class JoinHandle {
 public:
  JoinHandle() noexcept = default;
  explicit JoinHandle(std::shared_ptr<detail::SpawnState<T>> state) noexcept : state_(std::move(state)) {}
  JoinHandle(JoinHandle&&) noexcept = default;
  JoinHandle& operator=(JoinHandle&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~JoinHandle() { release(); }

  /// True once the task has finished (returned, thrown, or been destroyed with its loop).
  bool done() const noexcept { return state_ && state_->done(); }

  /// Calls `cb()` on the loop thread when the task has finished (on the next turn if it already has).
  template <class Callback>
  void on_done(Callback&& cb) {
    state().on_done(detail::UniqueFunction<void()>(std::forward<Callback>(cb)));
  }

  /// The task's value, or its exception rethrown. Only once, and only when `done()`.
  T result() { return state().result(); }

  /// Requests cancellation: the operation the task waits on is cancelled and `Cancelled` thrown into it.
  /// From any thread (see the top of this header for one racing the Loop's destruction).
  void cancel() noexcept {
    if (state_) state_->cancel_from_user();
  }

  /// Gives up the handle; the task runs on.
  void detach() noexcept { release(); }

  /// Waits for the task. Owns a reference to the task's state, so the handle itself may be dropped
  /// meanwhile. A waiting coroutine that is cancelled stops waiting (the task runs on) and throws
  /// `Cancelled`.
  class Awaiter {
   public:
    explicit Awaiter(std::shared_ptr<detail::SpawnState<T>> s) noexcept : state_(std::move(s)) {}
    // Not ready until the waiter is checked: the task's state belongs to its loop's thread, so a task
    // away on another loop gets the logic error, and a cancelled one `Cancelled`, even when the
    // spawned task has finished.
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> waiter) {
      const TaskContext& context = detail::context_of(waiter);
      // A task on another loop (away with resume_on, say); a destroyed loop's handle has its outcome.
      if (*state_->loop_alive_ && context.loop && context.loop != state_->loop_)
        throw std::logic_error("duet::JoinHandle: awaited from a task on another loop than the spawned task's");
      if (context.stop_token.stop_requested()) {  // even if the task has finished: it is not taken
        cancelled_ = true;
        return false;
      }
      if (state_->done()) return false;
      state_->await(waiter);
      waiter_ = waiter;
      stop_.watch(&state_->loop_->core(), context.stop_token, StopFn{this});
      return true;
    }
    T await_resume() {
      stop_.reset();
      if (cancelled_) throw Cancelled();
      return state_->result();
    }

   private:
    struct StopFn {
      Awaiter* self;
      void operator()() const noexcept {
        if (self->state_->drop_awaiter(self->waiter_)) self->cancelled_ = true;
      }
    };
    std::shared_ptr<detail::SpawnState<T>> state_;
    std::coroutine_handle<> waiter_;
    detail::OnLoopStop<StopFn> stop_;  // runs StopFn on the loop thread, whichever thread cancels
    bool cancelled_ = false;
  };
  /// Waits for the task and returns its result (or rethrows its exception).
  Awaiter operator co_await() {
    state();  // throws on an empty handle
    return Awaiter(state_);
  }

 private:
  detail::SpawnState<T>& state() const {
    if (!state_) throw std::logic_error("duet::JoinHandle: empty handle");
    return *state_;
  }
  void release() noexcept {
    if (state_) std::exchange(state_, nullptr)->release_handle();
  }
  std::shared_ptr<detail::SpawnState<T>> state_;
};

/// Starts `task` on `loop`'s next turn; returns its handle.
template <class T>
JoinHandle<T> spawn(Loop& loop, Task<T> task) {
  auto state = std::make_shared<detail::SpawnState<T>>(loop, std::move(task));
  // If the loop is destroyed before the start runs, the handle still learns the task's fate.
  struct Start {
    std::shared_ptr<detail::SpawnState<T>> state;
    Start(std::shared_ptr<detail::SpawnState<T>> s) noexcept : state(std::move(s)) {}
    Start(Start&&) noexcept = default;
    ~Start() {
      if (state) state->never_started();
    }
    void operator()() { std::exchange(state, nullptr)->start(); }
  };
  loop.core().defer(Start(state));
  return JoinHandle<T>(std::move(state));
}

/// Runs the loop until `task` is done; returns its result or rethrows its exception. A stop requested
/// on `stop` (from any thread: the threads style's Ctrl-C) cancels the task, which then throws
/// `duet::Cancelled` out of `run` unless it handles it.
template <class T>
T run(Loop& loop, Task<T> task, std::stop_token stop = {}) {
  // This thread runs the loop from here on, as `loop.run()` below would make it: the task is spawned
  // here too (a Loop made on another thread, run on this one).
  loop.core().adopt_thread();
  JoinHandle<T> handle = spawn(loop, std::move(task));
  // Stops the loop when the task is done, but only while this run() is running it: a task that
  // finishes later (after being cancelled below) must not leave libuv's stop flag set.
  auto inside = std::make_shared<bool>(true);
  handle.on_done([&loop, inside] {
    if (*inside) loop.stop();
  });
  {
    std::stop_callback cancel(std::move(stop), [&handle]() noexcept { handle.cancel(); });
    loop.run();
  }  // a cancel running on another thread has returned
  *inside = false;
  if (!handle.done()) {
    handle.cancel();
    throw std::logic_error("duet::run: the loop ran out of work (or was stopped) before the task finished");
  }
  return handle.result();
}

namespace detail {
template <class A>
Task<await_result_t<A>> await_one(A op) {
  co_return co_await std::move(op);
}
}  // namespace detail

/// `run` for one awaitable operation, a plain blocking call: `auto res = duet::run(loop, client.get(url));`
template <class A>
requires requires(A& a) { a.await_ready(); }
auto run(Loop& loop, A op, std::stop_token stop = {}) {
  return run(loop, detail::await_one(std::move(op)), std::move(stop));
}

}  // namespace duet
