// examples/common/thread_pool.hpp — the threads style's executor: the book's ThreadPoolExecutor.
//
// `ThreadPool(job, n)` starts `n` threads. Each makes a `Worker` — a duet::Loop of its own and an
// HTTP client on it, with the job's options — and takes the submitted functions in order, one at a
// time: `submit(fn, done)` queues `fn(Worker&)`, which runs on a pool thread and may block it (that is
// the style: a download is a plain blocking call, `duet::run(worker.loop, ...)`). Its outcome comes
// back to the job's loop, on the main thread, as `done(std::future<R>)`: `get()` gives the value or
// rethrows what `fn` threw (the book's `future.result()`), in the order the functions finish.
//
// After Ctrl-C (`job.stop`), a blocking call in progress is cancelled by the token the functions pass
// to `duet::run`, the functions not started yet are dropped, and so are outcomes that come back late.
// The destructor waits for the threads to finish what they have been given (or to drop it), joins
// them, and lets the job's loop take (and drop) what they sent after it stopped.
//
// Cost: a thread per worker, with its stack (8 MiB of address space, touched as used), a libuv loop,
// and that thread's own connections: nothing is shared between the workers.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "duet/http/client.hpp"
#include "duet/loop.hpp"
#include "flags.hpp"

namespace flags {

/// What each pool thread owns: its loop, and an HTTP client on it.
struct Worker {
  explicit Worker(const Job& job) : client(loop, job.client_options()) {}
  duet::Loop loop;
  duet::http::Client client;
};

class ThreadPool {
 public:
  ThreadPool(Job& job, std::size_t n);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Queues `fn(Worker&)`; `done(std::future<R>)` is called on the job's loop once it has run.
  template <class Fn, class Done>
  void submit(Fn fn, Done done) {
    using R = std::invoke_result_t<Fn&, Worker&>;
    auto call = std::make_shared<std::pair<Fn, Done>>(std::move(fn), std::move(done));
    push([this, call](Worker& worker) {
      std::promise<R> outcome;
      try {
        if constexpr (std::is_void_v<R>) {
          call->first(worker);
          outcome.set_value();
        } else {
          outcome.set_value(call->first(worker));
        }
      } catch (...) {
        outcome.set_exception(std::current_exception());
      }
      job_.loop.post([this, call, result = outcome.get_future()]() mutable {
        if (!job_.stop.stop_requested()) call->second(std::move(result));  // after Ctrl-C: the report is out
      });
    });
  }

 private:
  void push(std::function<void(Worker&)> work);
  void run_worker();

  Job& job_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void(Worker&)>> queue_;
  bool closed_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace flags
