// duet/loop_thread.hpp — loops on threads of their own: `LoopThread`, and a `LoopGroup` of them.
//
//     duet::LoopGroup loops(4);                       // four threads, each running its own Loop
//     loops[0].post([] { ... });                      // runs on loops[0]'s thread
//     duet::submit(home, loops.next(), fn, cb);        // fn there, cb back on `home` (submit.hpp)
//     co_await duet::resume_on(loops[2]);             // this task goes on on loops[2] (resume_on.hpp)
//
// A `LoopThread` starts a thread that makes a `duet::Loop` and runs it; the constructor returns once
// the loop is made (it throws what making it threw). The loop keeps running, even with nothing to do,
// until `join()` or the destructor: other threads reach it with `post`, `submit` and `resume_on`, and
// every duet object made for it must be made and used on its thread (inside a posted function, a
// submitted function, or a task that runs there).
//
// Shutting down: `join()` stops the loop after the turn it is in (work in flight is not waited for)
// and waits for the thread to end; the loop then still exists, not running. The destructor joins, then
// destroys the Loop on the destroying thread, with the usual effect (loop.hpp; so not from inside a
// coroutine while the loop has unfinished tasks: that aborts, saying so): what was pending on
// it is cancelled, spawned tasks are cancelled and freed, and functions posted to it since are
// dropped (a `submit` waiting on it reports `duet::errc::loop_closed`). `LoopGroup` joins all its
// threads, then cancels every loop's tasks, then destroys the loops: no loop runs while another is
// torn down, and a task away on another loop of the group (resume_on) hears of its cancellation
// there, while both loops are whole (what it waits on, a Semaphore say, lets it go); no user
// callback runs from the cancellation on (an `on_done`, as in a Loop's destruction), and a task that
// stays suspended is freed, never resumed on a dying loop. For loops that pass work to each other, use one
// group. (By hand: join every LoopThread, then destroy a task's own loop before any loop it is away
// on.) Calling `join()` from the
// loop's own thread is a programming error (it would wait for itself): it aborts with a message.
//
// Cost: a thread (its stack: 8 MiB of address space by default, a few pages of memory in use) and a
// libuv loop per LoopThread. `post` from another thread: a mutex and a `uv_async_send`.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include "duet/loop.hpp"

namespace duet {

class LoopThread {
 public:
  /// Starts the thread and its loop. Throws `std::system_error` if either cannot be made.
  LoopThread();
  /// Joins, then destroys the loop (see above).
  ~LoopThread();
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  /// The loop. Thread-safe to call; the loop itself is its thread's (except `post`).
  Loop& loop() noexcept { return *loop_; }
  /// The thread that runs the loop.
  std::thread::id thread_id() const noexcept { return id_; }
  /// Stops the loop after its current turn and waits for the thread to end. Idempotent. Not from the
  /// loop's own thread. The joining thread is the loop's from then on (nothing else runs it).
  void join() noexcept;
  /// True once `join()` has returned: the loop will not run again, and what is posted to it waits
  /// until its destruction drops it.
  bool joined() const noexcept { return joined_.load(std::memory_order_acquire); }

 private:
  // Owned (plain pointers rather than optionals: cheaper for every file that includes this header).
  Loop* loop_ = nullptr;        // made and run on the thread; deleted by ~LoopThread
  Loop::Hold* hold_ = nullptr;  // keeps it running with nothing to do; deleted by ~LoopThread, first
  std::atomic<bool> stopping_{false};
  std::atomic<bool> joined_{false};
  std::thread thread_;
  std::thread::id id_;
};

class LoopGroup {
 public:
  /// Starts `n` LoopThreads (at least one: `std::invalid_argument` otherwise).
  explicit LoopGroup(std::size_t n);
  /// Joins every thread, cancels every loop's tasks, then destroys the loops (see above).
  ~LoopGroup();
  LoopGroup(const LoopGroup&) = delete;
  LoopGroup& operator=(const LoopGroup&) = delete;

  std::size_t size() const noexcept;
  Loop& operator[](std::size_t i) noexcept;
  LoopThread& thread(std::size_t i) noexcept;
  /// The loops in turn (round robin), for spreading work. Thread-safe.
  Loop& next() noexcept;
  /// Joins every thread (their loops stop after their current turn). Idempotent.
  void join() noexcept;

 private:
  std::vector<std::unique_ptr<LoopThread>> threads_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace duet
