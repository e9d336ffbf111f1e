// duet/when_all.hpp — run tasks concurrently and wait for all of them (asyncio.gather), and
// `when_all_settled`, which waits for all and fails for none (gather(return_exceptions=True)).
//
//     auto [flag, meta] = co_await duet::when_all(get_flag(loop, cc), get_metadata(loop, cc));
//     std::vector<std::string> flags = co_await duet::when_all(std::move(tasks));   // a range
//     std::vector<duet::Settled<std::string>> all = co_await duet::when_all_settled(std::move(tasks));
//
// Every task starts at once (each runs until its first suspension, in argument order); the results
// come back in argument order, whatever order the tasks finish in. A `Task<void>` contributes a
// `std::monostate` to the tuple form; `when_all` of a range of `Task<void>` returns nothing.
//
// Failure: the first task to throw cancels the others (they resume with `duet::Cancelled` wherever
// they wait); once every task has stopped, that first exception is rethrown. Cancelling the awaiting
// coroutine cancels every task, and it then sees `duet::Cancelled` (or the first failure, if one came
// first; and `Cancelled` even if every task had finished in that turn). `when_all` never returns
// while a task is still running.
//
// `when_all_settled` runs the tasks the same way, but a failure cancels nobody: it returns every
// task's outcome, in argument order, as a `Settled<T>` (`ok()`, `value()` — which rethrows a failure —
// and `error()`). Only cancelling the awaiting coroutine cancels the tasks; it then sees `Cancelled`
// (even if every task had finished in that turn: a cancelled task does not go on with results).
//
// The combinators may be moved until they are awaited, so `with_timeout(d, when_all(...))` works.
//
// An empty (moved-from or default) task, or one already awaited, makes the `co_await` throw
// `std::logic_error`, before any task starts.
//
// Cost: nothing per task beyond the task's own frame (the tasks report to the combinator directly);
// the range form takes the vector it is given. The tasks' frames live until the combinator is
// destroyed (the end of the `co_await` expression), their results being moved out of them.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "duet/awaitable.hpp"
#include "duet/detail/child.hpp"

namespace duet {

/// One task's outcome from `when_all_settled`: its value or its exception.
template <class T>
class Settled {
 public:
  explicit Settled(detail::Outcome<T>&& o) noexcept : outcome_(std::move(o)) {}

  /// True if the task returned; false if it threw.
  bool ok() const noexcept { return !outcome_.failed(); }
  /// The exception the task threw (null if it returned).
  std::exception_ptr error() const noexcept { return ok() ? nullptr : outcome_.error(); }
  /// The task's value (moved out: take it once), or its exception rethrown.
  decltype(auto) value() {
    if (!ok()) std::rethrow_exception(outcome_.error());
    if constexpr (!std::is_void_v<T>) return outcome_.take();
  }

 private:
  detail::Outcome<T> outcome_;
};

namespace detail {

/// A finished task's outcome, moved out of its promise (for `Settled`).
template <class T>
Outcome<T> take_outcome(Task<T>& task) {
  Outcome<T> out;
  auto& p = task.handle().promise();
  if (p.exception()) {
    out.v.template emplace<2>(p.exception());
  } else if constexpr (std::is_void_v<T>) {
    out.v.template emplace<1>();
  } else if constexpr (std::is_reference_v<T>) {
    out.v.template emplace<1>(std::addressof(p.result()));
  } else {
    out.v.template emplace<1>(p.result());
  }
  return out;
}

/// A task's value as when_all returns it (`std::monostate` for void), moved out of its promise.
template <class T>
decltype(auto) take_value(Task<T>& task) {
  if constexpr (std::is_void_v<T>)
    return std::monostate();
  else
    return task.handle().promise().result();
}

/// The part of when_all that does not depend on the tasks' types. The tasks themselves report to it
/// (`TaskJoin`): no coroutine stands between the awaiting coroutine and its tasks, and every task runs
/// under the one context this object holds (the parent's loop, the group's stop token).
class WhenAllBase : public TaskJoin {
 public:
  WhenAllBase() = default;
  // Moved only before it is awaited, when nothing is linked or started yet.
  WhenAllBase(WhenAllBase&& o) noexcept : settle_(o.settle_) {}

  std::coroutine_handle<> task_done(PromiseBase& task, std::size_t) noexcept override {
    if (!settle_ && task.exception()) {
      if (!group_.first) group_.first = task.exception();
      group_.stop.request_stop();
    }
    return --remaining_ == 0 ? parent_ : std::noop_coroutine();
  }

 protected:
  explicit WhenAllBase(bool settle) noexcept : settle_(settle) {}

  /// Prepares to start `count` tasks under the parent's loop and the group's stop source (linked to
  /// the parent's stop token).
  template <class Promise>
  void begin(std::coroutine_handle<Promise> parent, std::size_t count) {
    reserve_resumes(count);  // may throw, before any task has started; starting them then cannot
    const TaskContext& context = context_of(parent);
    parent_ = parent;
    parent_context_ = &context;
    link_.link(context.stop_token, group_.stop);
    child_context_ = TaskContext{context.loop, group_.stop.get_token()};
    remaining_ = count + 1;  // the extra count is held until every task has started
  }
  /// Starts one task (after `begin`); it reports as `index`.
  template <class T>
  void start_one(Task<T>& task, std::size_t index) {
    auto& p = task.handle().promise();
    p.set_join(*this, index);
    p.set_context(child_context_);
    resume(task.handle());  // runs once the parent has suspended
  }
  /// After every task has started: true if the parent must suspend.
  bool started_all() noexcept { return --remaining_ != 0; }

  template <class T>
  static void check(const Task<T>& task) {
    if (!task.valid()) throw std::logic_error("duet::when_all: an empty (moved-from or default) task");
    if (task.done()) throw std::logic_error("duet::when_all: a task that was already awaited");
  }

  void rethrow_failure() {
    if (group_.first) std::rethrow_exception(group_.first);
  }
  /// The awaiting coroutine was cancelled (its tasks were, with it): it sees Cancelled, whatever they did.
  void throw_if_cancelled() const {
    if (parent_context_->stop_token.stop_requested()) throw Cancelled();
  }

 private:
  bool settle_ = false;  // when_all_settled: a failure cancels nobody
  FailureGroup group_;
  StopLink link_;
  TaskContext child_context_;
  const TaskContext* parent_context_ = &no_context;
  std::coroutine_handle<> parent_;
  std::size_t remaining_ = 0;
};

template <bool Settle, class... Ts>
class WhenAll final : public WhenAllBase {
 public:
  explicit WhenAll(Task<Ts>... tasks) : WhenAllBase(Settle), tasks_(std::move(tasks)...) {}
  WhenAll(WhenAll&&) = default;

  bool await_ready() const noexcept { return sizeof...(Ts) == 0; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> parent) {
    std::apply([](auto&... t) { (check(t), ...); }, tasks_);
    begin(parent, sizeof...(Ts));
    [&]<std::size_t... I>(std::index_sequence<I...>) { (start_one(std::get<I>(tasks_), I), ...); }
    (std::index_sequence_for<Ts...>());
    return started_all();
  }

  auto await_resume() {
    if constexpr (Settle) {
      throw_if_cancelled();
      return std::apply([](auto&... t) { return std::tuple(Settled(take_outcome(t))...); }, tasks_);
    } else {
      rethrow_failure();
      throw_if_cancelled();  // (every task finished, but the awaiting coroutine was cancelled)
      return std::apply([](auto&... t) { return std::tuple(take_value(t)...); }, tasks_);
    }
  }

 private:
  std::tuple<Task<Ts>...> tasks_;
};

template <bool Settle, class T>
class WhenAllRange final : public WhenAllBase {
 public:
  explicit WhenAllRange(std::vector<Task<T>> tasks) : WhenAllBase(Settle), tasks_(std::move(tasks)) {}
  WhenAllRange(WhenAllRange&&) = default;

  bool await_ready() const noexcept { return tasks_.empty(); }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> parent) {
    for (auto& t : tasks_) check(t);
    begin(parent, tasks_.size());
    for (std::size_t i = 0; i < tasks_.size(); ++i) start_one(tasks_[i], i);
    return started_all();
  }

  auto await_resume() {
    if constexpr (Settle) {
      throw_if_cancelled();
      std::vector<Settled<T>> all;
      all.reserve(tasks_.size());
      for (auto& t : tasks_) all.emplace_back(take_outcome(t));
      return all;
    } else {
      rethrow_failure();
      throw_if_cancelled();
      if constexpr (std::is_void_v<T>) {
        return;
      } else {
        std::vector<std::remove_cvref_t<T>> values;
        values.reserve(tasks_.size());
        for (auto& t : tasks_) values.push_back(take_value(t));
        return values;
      }
    }
  }

 private:
  std::vector<Task<T>> tasks_;
};

}  // namespace detail

/// Awaits every task; returns a tuple of their results (see the top of this header).
template <class... Ts>
[[nodiscard]] detail::WhenAll<false, Ts...> when_all(Task<Ts>... tasks) {
  return detail::WhenAll<false, Ts...>(std::move(tasks)...);
}

/// Awaits every task in `tasks`; returns their results in order.
template <class T>
[[nodiscard]] detail::WhenAllRange<false, T> when_all(std::vector<Task<T>> tasks) {
  return detail::WhenAllRange<false, T>(std::move(tasks));
}

/// Awaits every task; returns a tuple of their `Settled` outcomes. A failure cancels nobody.
template <class... Ts>
[[nodiscard]] detail::WhenAll<true, Ts...> when_all_settled(Task<Ts>... tasks) {
  return detail::WhenAll<true, Ts...>(std::move(tasks)...);
}

/// Awaits every task in `tasks`; returns their `Settled` outcomes in order.
template <class T>
[[nodiscard]] detail::WhenAllRange<true, T> when_all_settled(std::vector<Task<T>> tasks) {
  return detail::WhenAllRange<true, T>(std::move(tasks));
}

}  // namespace duet
