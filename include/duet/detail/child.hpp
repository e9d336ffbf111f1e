// duet/detail/child.hpp — running tasks as children of a waiting coroutine (when_all, when_any,
// with_timeout, as_completed, TaskGroup).
//
// A `Child` is a lazy coroutine that awaits one task under a context the parent chooses (its loop, and a
// stop token the parent can trigger), stores the outcome in a slot the parent owns, and when done calls
// the parent's `Join::child_done`, which hands control back to the parent (through the trampoline)
// once every child has finished.
#pragma once

#include <coroutine>
#include <exception>
#include <new>
#include <span>
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
/// the group is cancelled. `Awaitable` may be an lvalue reference: the child then awaits the caller's
/// object (which must outlive it) rather than a copy.
template <class T, class Awaitable>
Child make_child(Awaitable awaitable, Outcome<T>& out, FailureGroup* group = nullptr) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await static_cast<Awaitable&&>(awaitable);
      out.v.template emplace<1>();
    } else if constexpr (std::is_reference_v<T>) {
      out.v.template emplace<1>(std::addressof(co_await static_cast<Awaitable&&>(awaitable)));
    } else {
      out.v.template emplace<1>(co_await static_cast<Awaitable&&>(awaitable));
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

/// A parent's stop token forwarded to its children's stop source while this lives. Moving one makes
/// an empty one: combinators are moved only before they are awaited, when nothing is linked yet. That
/// is what lets `with_timeout(d, when_all(...))` take a combinator by value.
class StopLink {
 public:
  StopLink() noexcept {}
  StopLink(StopLink&&) noexcept {}
  StopLink& operator=(StopLink&&) = delete;
  ~StopLink() { reset(); }

  void link(const std::stop_token& from, std::stop_source& to) {
    reset();
    if (!from.stop_possible()) return;
    ::new (static_cast<void*>(&forward_)) std::stop_callback<StopForward>(from, StopForward{&to});
    linked_ = true;
  }
  void reset() noexcept {
    if (!linked_) return;
    forward_.~stop_callback();
    linked_ = false;
  }

 private:
  // A union and a flag rather than a std::optional, whose machinery every includer would build for
  // this one type (as OnLoopStop, loop_core.hpp).
  union {
    std::stop_callback<StopForward> forward_;
  };
  bool linked_ = false;
};

/// The parent side of a combinator whose children start together under one stop source and which
/// resumes its parent once every child has finished (when_all, when_all_settled, when_any).
class JoinAll : public Join {
 protected:
  /// Starts `children` under the parent's loop and `stop` (linked to the parent's stop token);
  /// returns true if the parent must suspend.
  template <class Promise>
  bool start_all(std::coroutine_handle<Promise> parent, std::span<Child> children, std::stop_source& stop) {
    const TaskContext& context = context_of(parent);
    parent_ = parent;
    context_ = &context;
    link_.link(context.stop_token, stop);
    remaining_ = children.size() + 1;  // the extra count is held until every child has started
    for (std::size_t i = 0; i < children.size(); ++i) children[i].start(*this, i, {context.loop, stop.get_token()});
    return --remaining_ != 0;
  }
  /// One child has finished: the parent, once it was the last.
  std::coroutine_handle<> arrive() noexcept { return --remaining_ == 0 ? parent_ : std::noop_coroutine(); }
  /// The parent's context (valid while it awaits, and in its await_resume).
  const TaskContext& parent_context() const noexcept { return *context_; }

 private:
  const TaskContext* context_ = &no_context;
  std::coroutine_handle<> parent_;
  std::size_t remaining_ = 0;
  StopLink link_;
};

/// `co_await current_context()` inside a duet coroutine: its TaskContext (loop and stop token), at once.
struct CurrentContext {
  const TaskContext* context = &no_context;
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
    context = &context_of(h);
    return false;
  }
  const TaskContext& await_resume() const noexcept { return *context; }
};
inline CurrentContext current_context() noexcept { return {}; }

}  // namespace duet::detail
