#include "thread_pool.hpp"

namespace flags {

ThreadPool::ThreadPool(Job& job, std::size_t n) : job_(job) {
  threads_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this] { run_worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  ready_.notify_all();
  for (auto& t : threads_) t.join();
  // Outcomes sent after the run ended (Ctrl-C) wait in the job's loop: run it until it has taken (and
  // dropped) them all, which it does before this last function.
  auto hold = job_.loop.hold();
  job_.loop.post([&hold] { hold.release(); });
  job_.loop.run();
}

void ThreadPool::push(std::function<void(Worker&)> work) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(work));
  }
  ready_.notify_one();
}

void ThreadPool::run_worker() {
  Worker worker(job_);
  for (;;) {
    std::function<void(Worker&)> work;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return closed_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closed, and nothing left
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    if (job_.stop.stop_requested()) continue;  // Ctrl-C: what has not started is dropped
    work(worker);
  }
}

}  // namespace flags
