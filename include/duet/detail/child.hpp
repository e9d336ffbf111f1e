// duet/detail/child.hpp — running tasks as children of a waiting coroutine (when_all, with_timeout,
// as_completed).
//
// A `Child` is a lazy coroutine that awaits one task under a context the parent chooses (its loop, and a
// stop token the parent can trigger), stores the outcome in a slot the parent owns, and when done calls
// the parent's `Join::child_done`, which hands control back to the parent (through the trampoline)
// once every child has finished.
#pragma once

#include <coroutine>
#include <exception>
#include <stop_token>
#include <utility>
#include <variant>

#include "duet/task.hpp"

namespace duet::detail {

/// Where a child's value or exception goes.
template <class T>
struct Outcome {
  std::variant<std::monostate,
               std::conditional_t<std::is_void_v<T>, std::monostate,
                                  std::conditional_t<std::is_reference_v<T>, std::remove_reference_t<T>*, T>>,
               std::exception_ptr>
      v;
  bool failed() const noexcept { return v.index() == 2; }
  std::exception_ptr error() const { return std::get<2>(v); }
  /// The value as the awaiter receives it (void: nothing).
  decltype(auto) take() {
    if constexpr (std::is_void_v<T>)
      return std::monostate();
    else if constexpr (std::is_reference_v<T>)
      return static_cast<T>(*std::get<1>(v));
    else
      return std::move(std::get<1>(v));
  }
};

/// The parent side: told when each child is done; returns the coroutine to continue with.
class Join {
 public:
  virtual std::coroutine_handle<> child_done(std::size_t index) noexcept = 0;

 protected:
  ~Join() = default;
};

class Child {
 public:
  struct promise_type {
    static void* operator new(std::size_t n) { return allocate_frame(n); }
    static void operator delete(void* p, std::size_t n) noexcept { deallocate_frame(p, n); }
    Child get_return_object() noexcept { return Child(std::coroutine_handle<promise_type>::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct Final {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        promise_type& p = h.promise();
        std::coroutine_handle<> next = p.join->child_done(p.index);
        if (next != std::noop_coroutine()) resume(next);
      }
      void await_resume() const noexcept {}
    };
    Final final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }  // the body catches everything
    const TaskContext& context() const noexcept { return context_; }

    TaskContext context_;
    Join* join = nullptr;
    std::size_t index = 0;
  };

  Child() noexcept = default;
  explicit Child(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  Child(Child&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
  Child& operator=(Child&& o) noexcept {
    if (this != &o) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(o.handle_, {});
    }
    return *this;
  }
  ~Child() {
    if (handle_) handle_.destroy();
  }

  /// Starts the child: it runs (to its first suspension) as soon as the calling coroutine suspends.
  /// It reports to `join` as `index`.
  void start(Join& join, std::size_t index, TaskContext context) {
    auto& p = handle_.promise();
    p.join = &join;
    p.index = index;
    p.context_ = std::move(context);
    resume(handle_);  // runs once the starting coroutine has suspended
  }
  bool done() const noexcept { return !handle_ || handle_.done(); }

 private:
  std::coroutine_handle<promise_type> handle_;
};

/// Children that fail together: the first exception (in time) is kept and the others are cancelled.
struct FailureGroup {
  std::stop_source stop;
  std::exception_ptr first;
};

/// A child that awaits `awaitable` and stores its outcome in `out`; if it throws and `group` is given,
/// the group is cancelled.
template <class T, class Awaitable>
Child make_child(Awaitable awaitable, Outcome<T>& out, FailureGroup* group = nullptr) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(awaitable);
      out.v.template emplace<1>();
    } else if constexpr (std::is_reference_v<T>) {
      out.v.template emplace<1>(std::addressof(co_await std::move(awaitable)));
    } else {
      out.v.template emplace<1>(co_await std::move(awaitable));
    }
  } catch (...) {
    out.v.template emplace<2>(std::current_exception());
    if (group) {
      if (!group->first) group->first = std::current_exception();
      group->stop.request_stop();
    }
  }
}

/// True if `e` holds a `duet::Cancelled`.
inline bool is_cancelled_exception(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const Cancelled&) {
    return true;
  } catch (...) {
    return false;
  }
}

/// Forwards a parent's stop request to a child group's stop source.
struct StopForward {
  std::stop_source* target;
  void operator()() const noexcept { target->request_stop(); }
};

}  // namespace duet::detail
