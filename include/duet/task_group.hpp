// duet/task_group.hpp — structured concurrency (asyncio.TaskGroup, a nursery): children that cannot
// outlive their group.
//
//     duet::TaskGroup group;
//     for (auto& url : urls) group.spawn(fetch(loop, url));
//     co_await group;          // every child has finished; the first failure is rethrown
//
// - `spawn(task)` adds a child. Children start when the group is awaited (all at once, in the order
//   spawned); one spawned while the group is being awaited — by a child, say — starts at once. So a
//   child never runs unsupervised: a group destroyed without being awaited (its owner threw first)
//   runs none of its children and frees them.
// - `co_await group` returns once every child has finished. The first child to fail cancels the
//   others (they resume with `duet::Cancelled` wherever they wait), and once all have stopped, its
//   exception is rethrown. Every failure is kept, in order, in `exceptions()` — a child that fails
//   while being cancelled too; the `Cancelled` the group itself sent are not failures.
// - Cancelling the awaiting coroutine cancels every child; it then sees `duet::Cancelled` (or the
//   first failure, if one came first). `cancel()` cancels every child from anywhere on the loop.
// - A group is awaited once; `spawn` once the last child has finished throws `std::logic_error`. Children's
//   values are discarded: a child that produces something stores it (into a slot it was given).
//
// Cost: one child coroutine frame per task (recycled); finished children's frames are freed as new
// ones are spawned, so a long-lived group holds only what runs.
#pragma once

#include <cstddef>
#include <exception>
#include <stdexcept>
#include <stop_token>
#include <utility>
#include <vector>

#include "duet/detail/child.hpp"

namespace duet {

class TaskGroup final : detail::Join {
 public:
  TaskGroup() = default;
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  ~TaskGroup() = default;  // children never started (or finished) are freed with their frames

  /// Adds `task` as a child (see the top of this header).
  template <class T>
  void spawn(Task<T> task) {
    if (state_ == State::done) throw std::logic_error("duet::TaskGroup::spawn: the group has already been awaited");
    free_finished();
    children_.push_back(run_child<T>(std::move(task), this));
    ++unfinished_;
    if (state_ == State::waiting) start(children_.back());
  }

  /// Cancels every child, and those spawned later.
  void cancel() noexcept { stop_.request_stop(); }

  /// Every failure so far, in the order they happened.
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return failures_; }
  /// Children not finished (spawned but not started count too).
  std::size_t size() const noexcept { return unfinished_; }

  class Awaiter {
   public:
    explicit Awaiter(TaskGroup* g) noexcept : group_(g) {}
    bool await_ready() const {
      if (group_->state_ != State::idle) throw std::logic_error("duet::TaskGroup: awaited twice");
      return false;
    }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> parent) {
      return group_->begin(parent, detail::context_of(parent));
    }
    void await_resume() { group_->end(); }

   private:
    TaskGroup* group_;
  };
  Awaiter operator co_await() & noexcept { return Awaiter(this); }

 private:
  enum class State { idle, waiting, done };

  template <class T>
  static detail::Child run_child(Task<T> task, TaskGroup* group) {
    try {
      co_await std::move(task);
    } catch (...) {
      group->failed(std::current_exception());
    }
  }

  bool begin(std::coroutine_handle<> parent, const TaskContext& context) {
    state_ = State::waiting;
    parent_ = parent;
    context_ = &context;
    link_.link(context.stop_token, stop_);
    ++unfinished_;  // held until every child has started
    for (detail::Child& c : children_) start(c);
    return --unfinished_ != 0;
  }

  void start(detail::Child& child) { child.start(*this, 0, {context_->loop, stop_.get_token()}); }

  void end();

  void failed(std::exception_ptr e);

  std::coroutine_handle<> child_done(std::size_t) noexcept override {
    if (--unfinished_ != 0 || state_ != State::waiting) return std::noop_coroutine();
    state_ = State::done;  // the parent is on its way: a spawn from now on would have no one to wait for it
    return parent_;
  }

  void free_finished();

  State state_ = State::idle;
  std::size_t unfinished_ = 0;
  std::size_t kept_ = 16;  // children held after the last sweep
  std::vector<detail::Child> children_;
  std::vector<std::exception_ptr> failures_;
  std::stop_source stop_;
  detail::StopLink link_;
  const TaskContext* context_ = &detail::no_context;
  std::coroutine_handle<> parent_;
};

}  // namespace duet
