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
// coroutine cancels every task, and it then sees `duet::Cancelled`. `when_all` never returns while a
// task is still running.
//
// `when_all_settled` runs the tasks the same way, but a failure cancels nobody: it returns every
// task's outcome, in argument order, as a `Settled<T>` (`ok()`, `value()` — which rethrows a failure —
// and `error()`). Only cancelling the awaiting coroutine cancels the tasks; it then sees `Cancelled`
// (even if every task had finished in that turn: a cancelled task does not go on with results).
//
// The combinators may be moved until they are awaited, so `with_timeout(d, when_all(...))` works.
//
// Cost: one child coroutine frame per task (recycled); the range form also allocates its vectors.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
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

/// The part of when_all that does not depend on the tasks' types.
class WhenAllBase : public JoinAll {
 public:
  std::coroutine_handle<> child_done(std::size_t) noexcept override { return arrive(); }

 protected:
  template <class Promise>
  bool start(std::coroutine_handle<Promise> parent, std::span<Child> children) {
    return start_all(parent, children, group_.stop);
  }

  void rethrow_failure() {
    if (group_.first) std::rethrow_exception(group_.first);
  }
  /// when_all_settled: the awaiting coroutine was cancelled (its tasks were, with it).
  void throw_if_cancelled() const {
    if (parent_context().stop_token.stop_requested()) throw Cancelled();
  }
  /// when_all: the first failure cancels the rest; when_all_settled: nobody is cancelled for it.
  FailureGroup* failure_group(bool settle) noexcept { return settle ? nullptr : &group_; }

  FailureGroup group_;
};

template <bool Settle, class... Ts>
class WhenAll final : public WhenAllBase {
 public:
  explicit WhenAll(Task<Ts>... tasks) : tasks_(std::move(tasks)...) {}
  WhenAll(WhenAll&&) = default;

  bool await_ready() const noexcept { return sizeof...(Ts) == 0; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> parent) {
    // The children point at this object's outcomes, so they are made now that it no longer moves.
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((children_[I] = make_child<Ts>(std::move(std::get<I>(tasks_)), std::get<I>(outcomes_), failure_group(Settle))),
       ...);
    }
    (std::index_sequence_for<Ts...>());
    return start(parent, children_);
  }

  auto await_resume() {
    if constexpr (Settle) {
      throw_if_cancelled();
      return std::apply([](auto&... o) { return std::tuple(Settled<Ts>(std::move(o))...); }, outcomes_);
    } else {
      rethrow_failure();
      return std::apply([](auto&... o) { return std::tuple(o.take()...); }, outcomes_);
    }
  }

 private:
  std::tuple<Task<Ts>...> tasks_;
  std::tuple<Outcome<Ts>...> outcomes_;
  std::array<Child, sizeof...(Ts)> children_;
};

template <bool Settle, class T>
class WhenAllRange final : public WhenAllBase {
 public:
  explicit WhenAllRange(std::vector<Task<T>> tasks) : tasks_(std::move(tasks)) {}
  WhenAllRange(WhenAllRange&&) = default;

  bool await_ready() const noexcept { return tasks_.empty(); }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> parent) {
    outcomes_.resize(tasks_.size());
    children_.reserve(tasks_.size());
    for (std::size_t i = 0; i < tasks_.size(); ++i)
      children_.push_back(make_child<T>(std::move(tasks_[i]), outcomes_[i], failure_group(Settle)));
    return start(parent, children_);
  }

  auto await_resume() {
    if constexpr (Settle) {
      throw_if_cancelled();
      std::vector<Settled<T>> all;
      all.reserve(outcomes_.size());
      for (auto& o : outcomes_) all.emplace_back(std::move(o));
      return all;
    } else {
      return values();
    }
  }

 private:
  auto values() {
    rethrow_failure();
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      std::vector<std::remove_cvref_t<decltype(std::declval<Outcome<T>&>().take())>> values;
      values.reserve(outcomes_.size());
      for (auto& o : outcomes_) values.push_back(o.take());
      return values;
    }
  }

  std::vector<Task<T>> tasks_;
  std::vector<Outcome<T>> outcomes_;
  std::vector<Child> children_;
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
