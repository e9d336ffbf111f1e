#include "duet/task_group.hpp"

#include <exception>
#include <utility>
#include <vector>

namespace duet {

void TaskGroup::failed(std::exception_ptr e) {
  // A Cancelled the group sent (for a failure, or its parent's cancellation) is no failure.
  if (stop_.stop_requested() && detail::is_cancelled_exception(e)) return;
  failures_.push_back(std::move(e));
  stop_.request_stop();
}

void TaskGroup::end() {
  state_ = State::done;
  link_.reset();
  children_.clear();
  if (!failures_.empty()) std::rethrow_exception(failures_.front());
  if (context_->stop_token.stop_requested()) throw Cancelled();
}

void TaskGroup::free_finished() {
  if (children_.size() < 2 * kept_) return;
  std::erase_if(children_, [](const detail::Child& c) { return c.done(); });
  kept_ = children_.size() < 16 ? 16 : children_.size();
}

}  // namespace duet
