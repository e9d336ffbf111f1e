// duet/task.hpp — `Task<T>`: a lazy coroutine that produces a T (or throws).
//
//     duet::Task<std::string> fetch(duet::Loop& loop) {
//       co_await duet::sleep(loop, 100ms);
//       co_return "done";
//     }
//     std::string s = co_await fetch(loop);   // inside another coroutine
//     std::string s = duet::run(loop, fetch(loop));   // from main (spawn.hpp)
//
// Semantics:
// - Lazy: calling a coroutine that returns a Task runs nothing; the body starts when the Task is
//   awaited (or given to `spawn`/`run`). Move-only; destroying a Task that never started frees it.
// - Awaiting a Task runs it to completion and returns its value (`T`, `T&`, or nothing for
//   `Task<void>`); an exception escaping the body is rethrown in the awaiter.
// - Flat stack: starting a Task and returning from it hand control over through a per-thread
//   trampoline (`detail::resume`) rather than nested calls, so a chain of a million nested
//   `co_await`s does not grow the stack — in debug and sanitizer builds too, where compilers do not
//   turn symmetric transfer into tail calls.
// - Context: an awaited Task inherits its awaiter's `TaskContext` — the loop and the stop token — so
//   cancelling a spawned task (`JoinHandle::cancel`) reaches the operation at the bottom of the chain,
//   and `with_timeout` knows its loop.
// - Threads: a Task runs on the thread that resumes it — for duet, the loop thread.
//
// Cost: one coroutine frame per Task. Frames come from a per-thread recycling allocator (size classes
// of 64 bytes up to 2 KiB), so a steady stream of tasks reuses the same memory, and a burst of new
// ones is carved from 32 KiB chunks rather than allocated one by one (a chunk is freed once all its
// frames are: one long-lived frame keeps its chunk); see `bench/micro.cpp` for the figures with and
// without recycling.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "duet/awaitable.hpp"

namespace duet {

template <class T = void>
class Task;

namespace detail {

/// Resumes `h` through this thread's trampoline: called while a trampoline is draining, it queues `h`
/// (which runs as soon as the coroutine now running suspends); otherwise it becomes the trampoline
/// and runs `h`, then whatever that queued, in order. Every hand-over between duet coroutines goes
/// through here, so the stack stays flat however long a chain of co_awaits is, whatever the optimiser
/// does with tail calls.
void resume(std::coroutine_handle<> h);

/// Makes room for `n` more `resume` calls to queue without allocating (throws std::bad_alloc if it
/// cannot): for a caller that starts several coroutines and must not fail halfway.
void reserve_resumes(std::size_t n);

/// A loop run from inside a coroutine (another loop's `run`, say) gets a trampoline of its own, so
/// that its coroutines run now rather than wait for the outer coroutine to suspend. Loop::run and
/// run_once hold one of these.
class NestedRun {
 public:
  NestedRun();
  ~NestedRun();
  NestedRun(const NestedRun&) = delete;
  NestedRun& operator=(const NestedRun&) = delete;

 private:
  void* saved_ = nullptr;
};

/// True while a coroutine runs on this thread: a trampoline is draining, or a nested run set one
/// aside (the coroutine that started the run is on the stack beneath it).
bool inside_coroutine() noexcept;

/// Recycles coroutine frames: per-thread free lists by size class. `set_frame_recycling(false)`
/// (for benchmarks) frees blocks at once instead of keeping them.
void* allocate_frame(std::size_t n);
void deallocate_frame(void* p, std::size_t n) noexcept;
void set_frame_recycling(bool on) noexcept;

class PromiseBase;

/// Where a task is while `resume_on` has taken it to another loop than its own (resume_on.hpp):
/// library-private, made and freed in src/resume_on.cpp.
struct Away;
void delete_away(Away* away) noexcept;
/// The end of a task that is away from its loop: its awaiting coroutine is resumed back there.
void finish_away(PromiseBase& task) noexcept;

/// Told when a task it started directly has finished: `when_all` starts its tasks this way, without
/// a coroutine of its own between it and each task. Returns the coroutine to continue with
/// (`std::noop_coroutine()` for none).
class TaskJoin {
 public:
  virtual std::coroutine_handle<> task_done(PromiseBase& task, std::size_t index) noexcept = 0;

 protected:
  ~TaskJoin() = default;
};

class PromiseBase {
 public:
  static void* operator new(std::size_t n) { return allocate_frame(n); }
  static void operator delete(void* p, std::size_t n) noexcept { deallocate_frame(p, n); }

  std::suspend_always initial_suspend() noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    void await_suspend(std::coroutine_handle<Promise> done) noexcept {
      PromiseBase& p = done.promise();
      if (p.away_) [[unlikely]]
        return finish_away(p);  // whoever awaits it is on its own loop: resumed there
      std::coroutine_handle<> next = p.next_after_done();
      if (next && next != std::noop_coroutine()) detail::resume(next);
    }
    void await_resume() const noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  /// The context inherited from the awaiting coroutine, whose promise holds it while it waits.
  const TaskContext& context() const noexcept { return *context_; }
  void set_context(const TaskContext& c) noexcept { context_ = &c; }
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }
  /// Reports the end of this task to `join` (as `index`) instead of resuming a continuation.
  void set_join(TaskJoin& join, std::size_t index) noexcept {
    join_ = &join;
    index_ = index;
  }
  /// The exception that escaped the body (null if it returned).
  const std::exception_ptr& exception() const noexcept { return exception_; }

  /// The coroutine to continue with now that this task has finished (reports to its join, if any).
  std::coroutine_handle<> next_after_done() noexcept { return join_ ? join_->task_done(*this, index_) : continuation_; }
  /// Set while `resume_on` has taken this task away from the loop it was started on.
  Away* away() const noexcept { return away_; }
  void set_away(Away* a) noexcept { away_ = a; }

  PromiseBase() = default;
  PromiseBase(const PromiseBase&) = delete;
  PromiseBase& operator=(const PromiseBase&) = delete;
  ~PromiseBase() {
    if (away_) delete_away(away_);
  }

 protected:
  void rethrow_if_failed() const {
    if (exception_) std::rethrow_exception(exception_);
  }

 private:
  std::coroutine_handle<> continuation_;
  const TaskContext* context_ = &no_context;
  TaskJoin* join_ = nullptr;
  std::size_t index_ = 0;
  std::exception_ptr exception_;
  Away* away_ = nullptr;
};

template <class T>
class Promise final : public PromiseBase {
 public:
  Task<T> get_return_object() noexcept;

  template <class V>
  requires std::is_convertible_v<V&&, T>
  void return_value(V&& v) { value_.emplace(std::forward<V>(v)); }

  T result() {
    rethrow_if_failed();
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <class T>
class Promise<T&> final : public PromiseBase {
 public:
  Task<T&> get_return_object() noexcept;
  void return_value(T& v) noexcept { value_ = std::addressof(v); }

  T& result() {
    rethrow_if_failed();
    return *value_;
  }

 private:
  T* value_ = nullptr;
};

template <>
class Promise<void> final : public PromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}

  void result() { rethrow_if_failed(); }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using value_type = T;

  Task() noexcept = default;
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (handle_) handle_.destroy();
  }

  /// True if this Task holds a coroutine (not default-constructed or moved from).
  bool valid() const noexcept { return static_cast<bool>(handle_); }
  /// True once the coroutine has finished (returned or thrown).
  bool done() const noexcept { return handle_ && handle_.done(); }

  class Awaiter {
   public:
    explicit Awaiter(std::coroutine_handle<promise_type> h) noexcept : task_(h) {}
    bool await_ready() const noexcept { return !task_ || task_.done(); }  // an empty Task: see await_resume
    template <class P>
    void await_suspend(std::coroutine_handle<P> awaiting) {
      task_.promise().set_continuation(awaiting);
      task_.promise().set_context(detail::context_of(awaiting));
      detail::resume(task_);  // starts once the awaiting coroutine has returned to the trampoline
    }
    T await_resume() {
      if (!task_) throw std::logic_error("duet::Task: awaiting an empty (moved-from or default) task");
      return task_.promise().result();
    }

   private:
    std::coroutine_handle<promise_type> task_;
  };

  Awaiter operator co_await() & noexcept { return Awaiter(handle_); }
  Awaiter operator co_await() && noexcept { return Awaiter(handle_); }

  /// The coroutine, for duet's own drivers (spawn, when_all).
  std::coroutine_handle<promise_type> handle() const noexcept { return handle_; }

 private:
  std::coroutine_handle<promise_type> handle_;
};

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<Promise>::from_promise(*this));
}
template <class T>
Task<T&> Promise<T&>::get_return_object() noexcept {
  return Task<T&>(std::coroutine_handle<Promise>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<Promise>::from_promise(*this));
}

/// The value type a `co_await` on `A` produces.
template <class A>
using await_result_t = decltype(std::declval<A>().await_resume());

}  // namespace detail

}  // namespace duet
