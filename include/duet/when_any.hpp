// duet/when_any.hpp — run tasks concurrently; the first to finish wins (asyncio.wait FIRST_COMPLETED).
//
//     std::variant<std::string, int> first = co_await duet::when_any(fetch_page(loop), count(loop));
//     duet::Completed<std::string> f = co_await duet::when_any(std::move(mirrors));   // a range
//     // f.index: which task won; f.value: its result
//
// Every task starts at once (each runs until its first suspension, in argument order). The first task
// to finish — returning or throwing — wins: the others are cancelled (they resume with
// `duet::Cancelled` wherever they wait) and awaited, so `when_any` never returns while one of them
// still runs. Then the winner's value is returned (the tuple form: a `std::variant` whose `index()` is
// the winner's position; `std::monostate` stands for a `Task<void>`, `std::reference_wrapper` for a
// `Task<T&>`; the range form: `Completed<T>{index, value}`), or its exception rethrown.
//
// Two finishing in the same turn: the one whose completion ran first wins; the other's result is
// dropped (use `as_completed` to keep every result). A loser that ends with an exception other than
// `Cancelled` (it failed while being cancelled) is reported to the loop's error hook, not lost.
// Cancelling the awaiting coroutine cancels every task, and it sees `duet::Cancelled` (even if a task
// had won in the same turn: a cancelled task does not go on with a result). An empty range
// throws `std::invalid_argument` when `when_any` is called.
//
// Cost: one child coroutine frame per task (recycled); the range form also allocates its vectors.
#pragma once

#include <array>
#include <cstddef>
// std::reference_wrapper, for a Task<T&>'s place in the variant. libstdc++'s <functional> costs a
// tenth of a second to compile (hash tables, searchers); its own header for the wrapper does not.
#if __has_include(<bits/refwrap.h>)
#include <bits/refwrap.h>
#else
#include <functional>
#endif
#include <optional>
#include <span>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "duet/as_completed.hpp"
#include "duet/detail/child.hpp"
#include "duet/loop.hpp"

namespace duet {
namespace detail {

/// The part of when_any that does not depend on the tasks' types.
class WhenAnyBase : public JoinAll {
 public:
  std::coroutine_handle<> child_done(std::size_t index) noexcept override {
    if (winner_ == no_winner) {
      winner_ = index;
      stop_.request_stop();  // the others resume with Cancelled, on later turns
    }
    return arrive();
  }

 protected:
  template <class Promise>
  bool start(std::coroutine_handle<Promise> parent, std::span<Child> children) {
    return start_all(parent, children, stop_);
  }

  /// A loser's failure other than the cancellation it was sent goes to the loop's error hook.
  template <class T>
  void report_loser(std::size_t index, const Outcome<T>& o) const noexcept {
    if (index == winner_ || !o.failed() || is_cancelled_exception(o.error())) return;
    if (Loop* loop = parent_context().loop) loop->report(o.error());
  }

  /// The awaiting coroutine was cancelled: it sees Cancelled, whatever won.
  void throw_if_cancelled() const {
    if (parent_context().stop_token.stop_requested()) throw Cancelled();
  }

  /// The first child to finish (no_winner until then). A plain index: a std::optional here would
  /// cost every includer its instantiation.
  static constexpr std::size_t no_winner = static_cast<std::size_t>(-1);
  std::size_t winner_ = no_winner;

 private:
  std::stop_source stop_;
};

/// What a winner of type T is returned as in when_any's variant.
template <class T>
using AnyValue = std::conditional_t<std::is_void_v<T>, std::monostate,
                                    std::conditional_t<std::is_reference_v<T>,
                                                       std::reference_wrapper<std::remove_reference_t<T>>, T>>;

template <class... Ts>
class WhenAny final : public WhenAnyBase {
 public:
  explicit WhenAny(Task<Ts>... tasks) : tasks_(std::move(tasks)...) {}
  WhenAny(WhenAny&&) = default;

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> parent) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((children_[I] = make_child<Ts>(std::move(std::get<I>(tasks_)), std::get<I>(outcomes_))), ...);
    }
    (std::index_sequence_for<Ts...>());
    return start(parent, children_);
  }

  std::variant<AnyValue<Ts>...> await_resume() {
    std::optional<std::variant<AnyValue<Ts>...>> result;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (report_loser(I, std::get<I>(outcomes_)), ...);
      throw_if_cancelled();
      (take<I>(result), ...);
    }
    (std::index_sequence_for<Ts...>());
    return std::move(*result);
  }

 private:
  template <std::size_t I, class Result>
  void take(Result& result) {
    if (I != winner_) return;
    auto& o = std::get<I>(outcomes_);
    if (o.failed()) std::rethrow_exception(o.error());
    result.emplace(std::in_place_index<I>, o.take());
  }

  std::tuple<Task<Ts>...> tasks_;
  std::tuple<Outcome<Ts>...> outcomes_;
  std::array<Child, sizeof...(Ts)> children_;
};

template <class T>
class WhenAnyRange final : public WhenAnyBase {
 public:
  explicit WhenAnyRange(std::vector<Task<T>> tasks) : tasks_(std::move(tasks)) {
    if (tasks_.empty()) throw std::invalid_argument("duet::when_any: no tasks (the first of none never finishes)");
  }
  WhenAnyRange(WhenAnyRange&&) = default;

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> parent) {
    outcomes_.resize(tasks_.size());
    children_.reserve(tasks_.size());
    for (std::size_t i = 0; i < tasks_.size(); ++i) children_.push_back(make_child<T>(std::move(tasks_[i]), outcomes_[i]));
    return start(parent, children_);
  }

  Completed<T> await_resume() {
    for (std::size_t i = 0; i < outcomes_.size(); ++i) report_loser(i, outcomes_[i]);
    throw_if_cancelled();
    return completed(winner_, outcomes_[winner_]);
  }

 private:
  std::vector<Task<T>> tasks_;
  std::vector<Outcome<T>> outcomes_;
  std::vector<Child> children_;
};

}  // namespace detail

/// Awaits the first of `tasks` to finish; cancels and awaits the others (see the top of this header).
template <class... Ts>
requires(sizeof...(Ts) > 0)
[[nodiscard]] detail::WhenAny<Ts...> when_any(Task<Ts>... tasks) {
  return detail::WhenAny<Ts...>(std::move(tasks)...);
}

/// Awaits the first of `tasks` to finish; returns its index and value.
template <class T>
[[nodiscard]] detail::WhenAnyRange<T> when_any(std::vector<Task<T>> tasks) {
  return detail::WhenAnyRange<T>(std::move(tasks));
}

}  // namespace duet
