#include "duet/loop_thread.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <stdexcept>

namespace duet {

LoopThread::LoopThread() {
  std::promise<void> made;
  std::future<void> ready = made.get_future();
  thread_ = std::thread([this, &made] {
    try {
      loop_ = new Loop();  // made here: this thread is its loop thread from the start
      hold_ = new Loop::Hold(loop_->hold());
    } catch (...) {
      delete loop_;  // nothing else has seen it
      loop_ = nullptr;
      made.set_exception(std::current_exception());
      return;
    }
    made.set_value();
    // run() returns only when stopped (the hold keeps it going): by join(), or by code that called
    // loop().stop(), which is not taken as the end of the thread.
    while (!stopping_.load(std::memory_order_acquire)) loop_->run();
  });
  id_ = thread_.get_id();
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

void LoopThread::join() noexcept {
  if (!thread_.joinable()) return;
  if (std::this_thread::get_id() == id_) {
    std::fputs("duet: LoopThread::join() called from the loop's own thread, which would wait forever; aborting\n",
               stderr);
    std::abort();
  }
  stopping_.store(true, std::memory_order_release);
  try {
    loop_->post([loop = loop_] { loop->stop(); });
  } catch (...) {
    std::fputs("duet: out of memory while stopping a LoopThread; aborting\n", stderr);
    std::abort();
  }
  thread_.join();
  loop_->core().adopt_thread();  // the thread that ran it is gone (and its id may be reused)
  joined_.store(true, std::memory_order_release);
}

LoopThread::~LoopThread() {
  join();
  delete hold_;
  delete loop_;  // on this thread, which now owns the loop (nothing else runs it)
}

LoopGroup::LoopGroup(std::size_t n) {
  if (n == 0) throw std::invalid_argument("duet::LoopGroup: at least one loop");
  threads_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) threads_.push_back(std::make_unique<LoopThread>());
}

std::size_t LoopGroup::size() const noexcept { return threads_.size(); }

Loop& LoopGroup::operator[](std::size_t i) noexcept { return threads_[i]->loop(); }

LoopThread& LoopGroup::thread(std::size_t i) noexcept { return *threads_[i]; }

Loop& LoopGroup::next() noexcept { return (*this)[next_.fetch_add(1, std::memory_order_relaxed) % threads_.size()]; }

void LoopGroup::join() noexcept {
  for (auto& t : threads_) t->join();
}

LoopGroup::~LoopGroup() {
  join();
  // A task may be away on another loop of the group (resume_on), waiting on something of that loop's.
  // So every loop's tasks are cancelled before any loop is destroyed: here, where every loop is now
  // run (nothing else runs them), each stop reaches what it waits on at once, while both loops are
  // whole. (Destroying the away loop first left its stop registrations to a freed loop.) This thread
  // is made every loop's first (`join` makes the joining thread the loop's, and that may have been
  // another), so that each stop is carried out here and now; and no user callback runs from here on
  // (an `on_done` of a task that ends), as in a Loop's destruction. A stop requested on another
  // thread (a cancel(), or one loop's thread cancelling a task away on another loop) may still wait
  // in any loop's mailbox, where cancelling the task here does nothing more (its stop is already
  // requested; `start_closing` waits for a cancel() still running): those are delivered too, before
  // any task's frame can go.
  for (auto& t : threads_) t->loop().core().adopt_thread();
  for (auto& t : threads_) t->loop().core().start_closing();
  for (auto& t : threads_) t->loop().core().deliver_queued_stops();
  while (!threads_.empty()) threads_.pop_back();  // each destroys its (stopped) loop, here
}

}  // namespace duet
