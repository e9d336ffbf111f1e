// duet/as_completed.hpp — results in the order the tasks finish (asyncio.as_completed).
//
//     for (auto next : duet::as_completed(std::move(tasks))) {
//       auto [index, flag] = co_await next;       // index: the task's position in `tasks`
//       ...
//     }
//
// The loop runs once per task. The first `co_await` starts every task (each runs until its first
// suspension); each `co_await next` then returns the next result to arrive, as `Completed<T>{index,
// value}` (`Completed<void>` has only the index), or rethrows that task's exception — the other tasks
// carry on. Once awaited, `next.index()` says which task it was, exception or not:
//
//     for (auto next : duet::as_completed(std::move(tasks))) {
//       try {
//         use(co_await next);
//       } catch (const std::exception& e) {
//         report(names[next.index()], e);            // which one failed, without asking the exception
//       }
//     }
//
// Cancelling the awaiting coroutine cancels every task. The tasks run on the loop of the first
// `co_await`, and every later one must be made there: one made by a task away on another loop
// (`resume_on`) throws `std::logic_error`, whether a result is waiting or not.
//
// Leaving the loop early (break, or an exception) cancels the tasks still running; they finish in the
// background (on later turns of the loop) and are freed then, so they must not use the caller's
// locals. An exception from such an abandoned task other than `Cancelled` goes to the loop's error
// hook. If the loop itself is destroyed first, their frames are freed with it.
//
// Cost: one shared state (one allocation) and one child coroutine frame per task (recycled).
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <stdexcept>
#include <vector>

#include "duet/detail/child.hpp"
#include "duet/loop.hpp"

namespace duet {

template <class T>
struct Completed {
  std::size_t index;
  T value;
};
template <>
struct Completed<void> {
  std::size_t index;
};

namespace detail {

/// Task `index`'s outcome as a `Completed<T>`, or its exception rethrown.
template <class T>
Completed<T> completed(std::size_t index, Outcome<T>& o) {
  if (o.failed()) std::rethrow_exception(o.error());
  if constexpr (std::is_void_v<T>)
    return Completed<void>{index};
  else
    return Completed<T>{index, o.take()};
}

template <class T>
class AsCompletedState final : public Join, public SpawnedTask {
 public:
  explicit AsCompletedState(std::vector<Task<T>> tasks) : tasks_(std::move(tasks)), outcomes_(tasks_.size()) {}
  ~AsCompletedState() { link_.reset(); }

  std::size_t size() const noexcept { return outcomes_.size(); }

  // Join: a child finished; wake the waiting consumer, if any.
  std::coroutine_handle<> child_done(std::size_t index) noexcept override {
    ready_.push_back(index);
    --running_;
    if (orphaned_) {
      report_orphan(index);
      if (running_ == 0) {
        if (loop_) loop_->core().unlink_task(this);
        self_.reset();  // frees this state once the child returns
      }
      return std::noop_coroutine();
    }
    if (waiter_) return std::exchange(waiter_, {});
    return std::noop_coroutine();
  }

  bool has_ready() const noexcept { return !ready_.empty(); }

  template <class Promise>
  bool suspend(std::coroutine_handle<Promise> waiter) {
    if (!started_)
      start(context_of(waiter));
    else if (Loop* here = context_of(waiter).loop; here && loop_ && here != loop_)  // away (resume_on)
      throw std::logic_error("duet::as_completed: awaited from a task on another loop than the first co_await's");
    if (has_ready()) return false;
    waiter_ = waiter;
    return true;
  }

  /// Takes the next result; `index` is set first, so that it is known even when the result rethrows.
  Completed<T> next(std::size_t& index) {
    index = ready_.front();
    ready_.pop_front();
    return completed(index, outcomes_[index]);
  }

  /// The owner is gone: cancel what still runs and let the last child free the state.
  static void abandon(std::shared_ptr<AsCompletedState> self) {
    if (!self->started_) return;
    if (self->running_ == 0) {  // all done: only the results nobody took remain, and failures among them count
      for (std::size_t index : self->ready_) self->report_orphan(index);
      return;
    }
    self->orphaned_ = true;
    self->waiter_ = {};
    self->self_ = self;
    for (std::size_t index : self->ready_) self->report_orphan(index);
    if (self->loop_) self->loop_->core().link_task(self.get());
    self->stop_.request_stop();
  }

  // SpawnedTask (only while orphaned): the loop is being destroyed.
  void cancel() noexcept override { stop_.request_stop(); }
  void destroy_frames() noexcept override {
    loop_->core().unlink_task(this);
    auto keep = std::move(self_);
    children_.clear();
  }

 private:
  void start(const TaskContext& context) {
    started_ = true;
    loop_ = context.loop;
    link_.link(context.stop_token, stop_);
    children_.reserve(tasks_.size());
    for (std::size_t i = 0; i < tasks_.size(); ++i)
      children_.push_back(make_child<T>(std::move(tasks_[i]), outcomes_[i]));
    tasks_.clear();
    running_ = children_.size();
    for (std::size_t i = 0; i < children_.size(); ++i) children_[i].start(*this, i, {context.loop, stop_.get_token()});
  }

  void report_orphan(std::size_t index) noexcept {
    Outcome<T>& o = outcomes_[index];
    if (o.failed() && !is_cancelled_exception(o.error()) && loop_) loop_->core().report(o.error());
  }

  std::vector<Task<T>> tasks_;
  std::vector<Outcome<T>> outcomes_;
  std::vector<Child> children_;
  std::deque<std::size_t> ready_;
  std::size_t running_ = 0;
  std::coroutine_handle<> waiter_;
  std::stop_source stop_;
  StopLink link_;
  Loop* loop_ = nullptr;
  bool started_ = false;
  bool orphaned_ = false;
  std::shared_ptr<AsCompletedState> self_;  // set while orphaned: the children keep the state alive
};

}  // namespace detail

/// The range `as_completed` returns: iterate it, `co_await` each element.
template <class T>
class AsCompleted {
  using State = detail::AsCompletedState<T>;

 public:
  explicit AsCompleted(std::vector<Task<T>> tasks) : state_(std::make_shared<State>(std::move(tasks))) {}
  AsCompleted(AsCompleted&&) noexcept = default;
  AsCompleted& operator=(AsCompleted&&) = delete;
  ~AsCompleted() {
    if (state_) State::abandon(std::move(state_));
  }

  /// One result: `co_await` it once.
  class Next {
   public:
    explicit Next(State* s) noexcept : state_(s) {}
    // Not ready until the waiter's loop is checked: the results belong to the first co_await's loop.
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> waiter) {
      return state_->suspend(waiter);
    }
    Completed<T> await_resume() { return state_->next(index_); }

    /// After `co_await next` (returned or threw): the position in `tasks` of the task it took.
    /// Throws `std::logic_error` before that.
    std::size_t index() const {
      if (index_ == kNotYet) throw std::logic_error("duet::as_completed: index() of a result not awaited yet");
      return index_;
    }

   private:
    static constexpr std::size_t kNotYet = static_cast<std::size_t>(-1);
    State* state_;
    std::size_t index_ = kNotYet;
  };

  class iterator {
   public:
    using difference_type = std::ptrdiff_t;
    using value_type = Next;
    iterator() = default;
    iterator(State* s, std::size_t i) : state_(s), i_(i) {}
    Next operator*() const { return Next(state_); }
    iterator& operator++() {
      ++i_;
      return *this;
    }
    void operator++(int) { ++i_; }
    bool operator==(const iterator& o) const noexcept { return i_ == o.i_; }

   private:
    State* state_ = nullptr;
    std::size_t i_ = 0;
  };

  iterator begin() { return iterator(state_.get(), 0); }
  iterator end() { return iterator(state_.get(), state_->size()); }
  std::size_t size() const noexcept { return state_->size(); }

 private:
  std::shared_ptr<State> state_;
};

/// The results of `tasks` in completion order (see the top of this header).
template <class T>
[[nodiscard]] AsCompleted<T> as_completed(std::vector<Task<T>> tasks) {
  return AsCompleted<T>(std::move(tasks));
}

}  // namespace duet
