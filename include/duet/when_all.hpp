// duet/when_all.hpp — run tasks concurrently and wait for all of them (asyncio.gather).
//
//     auto [flag, meta] = co_await duet::when_all(get_flag(loop, cc), get_metadata(loop, cc));
//     std::vector<std::string> flags = co_await duet::when_all(std::move(tasks));   // a range
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
// Cost: one child coroutine frame per task (recycled); the range form also allocates its vectors.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <tuple>
#include <vector>

#include "duet/detail/child.hpp"

namespace duet {
namespace detail {

/// The part of when_all that does not depend on the tasks' types.
class WhenAllBase : public Join {
 public:
  std::coroutine_handle<> child_done(std::size_t) noexcept override {
    return --remaining_ == 0 ? parent_ : std::noop_coroutine();
  }

 protected:
  /// Starts `children` under the parent's loop and this group's stop token (linked to the parent's);
  /// returns true if the parent must suspend.
  template <class Promise>
  bool start(std::coroutine_handle<Promise> parent, std::span<Child> children) {
    const TaskContext& context = context_of(parent);
    parent_ = parent;
    if (context.stop_token.stop_possible()) link_.emplace(context.stop_token, StopForward{&group_.stop});
    remaining_ = children.size() + 1;  // the extra count is held until every child has started
    for (std::size_t i = 0; i < children.size(); ++i)
      children[i].start(*this, i, {context.loop, group_.stop.get_token()});
    return --remaining_ != 0;
  }

  void rethrow_failure() {
    if (group_.first) std::rethrow_exception(group_.first);
  }

  FailureGroup group_;

 private:
  std::coroutine_handle<> parent_;
  std::size_t remaining_ = 0;
  std::optional<std::stop_callback<StopForward>> link_;
};

template <class... Ts>
class WhenAll final : public WhenAllBase {
 public:
  explicit WhenAll(Task<Ts>... tasks) : tasks_(std::move(tasks)...) {}
  WhenAll(WhenAll&&) = default;

  bool await_ready() const noexcept { return sizeof...(Ts) == 0; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> parent) {
    // The children point at this object's outcomes, so they are made now that it no longer moves.
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((children_[I] = make_child<Ts>(std::move(std::get<I>(tasks_)), std::get<I>(outcomes_), &group_)), ...);
    }
    (std::index_sequence_for<Ts...>());
    return start(parent, children_);
  }

  auto await_resume() {
    rethrow_failure();
    return std::apply([](auto&... o) { return std::tuple(o.take()...); }, outcomes_);
  }

 private:
  std::tuple<Task<Ts>...> tasks_;
  std::tuple<Outcome<Ts>...> outcomes_;
  std::array<Child, sizeof...(Ts)> children_;
};

template <class T>
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
      children_.push_back(make_child<T>(std::move(tasks_[i]), outcomes_[i], &group_));
    return start(parent, children_);
  }

  auto await_resume() {
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

 private:
  std::vector<Task<T>> tasks_;
  std::vector<Outcome<T>> outcomes_;
  std::vector<Child> children_;
};

}  // namespace detail

/// Awaits every task; returns a tuple of their results (see the top of this header).
template <class... Ts>
[[nodiscard]] detail::WhenAll<Ts...> when_all(Task<Ts>... tasks) {
  return detail::WhenAll<Ts...>(std::move(tasks)...);
}

/// Awaits every task in `tasks`; returns their results in order.
template <class T>
[[nodiscard]] detail::WhenAllRange<T> when_all(std::vector<Task<T>> tasks) {
  return detail::WhenAllRange<T>(std::move(tasks));
}

}  // namespace duet
