// duet/detail/loop_core.hpp — what every duet request and handle shares with its loop.
//
// `LoopCore` is the heap-allocated state behind a `duet::Loop`: the libuv loop pointer, a recycling
// allocator for request and handle objects, the list of live duet resources (so closing the loop can
// cancel or close them), the cross-thread post queue and the error hook. Operations see a narrow
// interface (make/destroy, defer/post, invoke/report, the shared read buffer); the rest is the Loop's. A host's
// (wrapped) loop's core outlives the `Loop` object: it is deleted by the last of duet's resources still closing on the
// loop, or by the close callback of its async handle, whichever comes last, when the host's loop runs them.
//
// Loop-thread only, except `post()` (and the stop callbacks of `OnLoopStop`, which route themselves).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "duet/cancellation.hpp"
#include "duet/detail/free_list.hpp"
#include "duet/detail/intrusive_list.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/error.hpp"

namespace duet {
class Loop;
}

namespace duet::detail {

/// A duet request or handle that is alive on a loop. `abandon()` is called when the loop is being
/// destroyed: cancel the request or close the handle so that it finishes soon, without calling user code.
/// (A callback it drops is destroyed uncalled; that destructor is user code, and may free other
/// resources: the loop's walk allows for it, see `LoopCore::abandon_all`.)
/// Made by `LoopCore::make` and freed by `LoopCore::destroy`, whatever its most derived type.
class Resource : public ListHook {
 public:
  virtual void abandon() noexcept = 0;
  /// True if user code is still waiting on this resource (counted in the "pending work" report).
  virtual bool pending() const noexcept { return true; }
  /// How many user callbacks wait on it: one while `pending()`, unless it stands for many (an HTTP
  /// client's requests queued for a connection or paused, which nothing else on the loop stands for).
  virtual std::size_t pending_count() const noexcept { return pending() ? 1 : 0; }

 protected:
  Resource() = default;
  virtual ~Resource() = default;

 private:
  friend class LoopCore;
  std::size_t block_size_ = 0;  // what `make` allocated, for `destroy`
};

/// A spawned task's root, registered on its loop while it runs, so that destroying the loop can cancel
/// it and then free the frames of whatever did not finish.
class SpawnedTask : public ListHook {
 public:
  /// Requests stop (loop destruction, step 1). May resume the task, which may finish and unlink.
  virtual void cancel() noexcept = 0;
  /// Destroys the suspended coroutine frames (loop destruction, step 2). Unlinks.
  virtual void destroy_frames() noexcept = 0;

 protected:
  SpawnedTask() = default;
  ~SpawnedTask() = default;
};

struct LoopRunning;

/// A loop's queue of posted functions, shared (by `std::shared_ptr`) between the loop and anyone on
/// another thread who may post to it after the loop is gone: a `submit` on its way back, a stop routed
/// from another thread. Defined in the library (src/mailbox.hpp): its mutex and queue are no
/// includer's business.
struct Mailbox;
/// Thread-safe: queues `fn` in `mailbox` and wakes its loop. False (and `fn` untouched) once the Loop
/// is being destroyed: the mailbox is closed, and the caller destroys `fn` on its own thread.
bool post_to(Mailbox& mailbox, UniqueFunction<void()>& fn);
/// Thread-safe: a task's cancellation from user code (`JoinHandle::cancel`): requests stop on `source`
/// here, on whichever thread this is. On a thread other than the loop's, `in_flight` counts the
/// request while it runs: the Loop's destruction waits for it (`wait_for_cancels`) before it frees the
/// task's frame, and delivers the stops it routed to the Loop's mailbox once that had closed.
void request_task_stop(const Mailbox& mailbox, std::stop_source& source, std::atomic<int>& in_flight) noexcept;
/// Loop-thread side of the above: returns once no `request_task_stop` counted by `in_flight` runs.
void wait_for_cancels(std::atomic<int>& in_flight) noexcept;

/// Prints a report on stderr, as the default error hook does: also where no hook is left (after the
/// Loop's destruction).
void print_report(std::exception_ptr e) noexcept;

class LoopCore {
 public:
  // One buffer for every streaming read on this loop: libuv reads into it and the chunk is handed to
  // the reader's callback at once, so no stream needs a buffer of its own while it waits for data.
  static constexpr std::size_t kReadBufferSize = 64 * 1024;
  /// Request and handle objects of 64 .. 512 bytes are recycled; at most this many per size class.
  static constexpr std::size_t kKeepPerClass = 1024;

  LoopCore(const LoopCore&) = delete;
  LoopCore& operator=(const LoopCore&) = delete;

  uv_loop_t* uv() const noexcept { return uv_; }
  /// Call before arming a deadline (libuv counts a timer from its cached time, `uv_now`). Inside an
  /// owned loop's `Loop::run` or `run_once` libuv updates that time at each turn, and this does nothing.
  /// Outside it (before the first run, between runs, on a host's loop, whose runs duet does not see,
  /// even through `Loop::run`) the cached time is as old as the last turn, and work done since
  /// (blocking set-up, a pause between runs) would make the deadline fire early: it is brought up to
  /// date (one clock read).
  void update_time() noexcept {
    if (owned_runs_ == 0) uv_update_time(uv_);
  }
  /// The loop's time in milliseconds, as `update_time` leaves it: what a deadline is counted from.
  std::uint64_t now() noexcept {
    update_time();
    return uv_now(uv_);
  }
  /// True once the Loop is being destroyed: completions no longer reach user code.
  bool closing() const noexcept { return closing_; }
  /// False once the Loop object is destroyed: for objects that may outlive it (a JoinHandle).
  const std::shared_ptr<bool>& alive() const noexcept { return alive_; }
  /// The descriptors that have a duet poll handle (poll.hpp). libuv notices a second handle on a
  /// descriptor only while the first is started, so duet keeps its own list: `claim_polled_fd` is
  /// false when `fd` is taken (and throws std::bad_alloc when the list cannot grow).
  bool claim_polled_fd(int fd);
  void release_polled_fd(int fd) noexcept;
  /// The Loop object, to start new work on: only while it is alive (`*alive()`). Once a wrapped Loop's
  /// destructor has run, aborts with a message (an owned loop's core goes with its Loop).
  Loop& loop() const noexcept {
    if (!loop_) loop_destroyed();
    return *loop_;
  }
  bool on_loop_thread() const noexcept {
    return loop_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }

  /// The loop's shared read buffer (kReadBufferSize bytes), allocated on first use; null if memory ran out.
  char* read_buffer() noexcept { return read_buffer_ ? read_buffer_ : make_read_buffer(); }

  /// Debug builds (without NDEBUG): aborts, saying why, when a duet object or operation is made for
  /// this loop on a thread that does not run it — every duet object is bound to its loop's thread.
  /// Loops duet owns only: a host may run its own loop on any thread. Release builds check nothing.
  void check_thread() const noexcept {
#ifndef NDEBUG
    if (owns_uv_ && !closing_ && !on_loop_thread()) wrong_thread();
#endif
  }
  [[noreturn]] static void wrong_thread() noexcept;
  [[noreturn]] static void loop_destroyed() noexcept;
  /// The loop was run from inside its own run (libuv's loop is not reentrant): aborts with a message.
  [[noreturn]] static void reentered() noexcept;
  /// Makes the calling thread the loop's (a LoopThread joined: nothing runs the loop any more).
  void adopt_thread() noexcept { set_loop_thread(); }
  /// The first step of destroying loops together (`~LoopGroup`, on the thread that will destroy
  /// them, which must be every loop's): from now on no user callback runs, as in `~Loop`, and every
  /// spawned task is asked to stop, so that what it waits on, on any of the loops, lets it go.
  void start_closing() noexcept;

  /// Allocates (from the loop's free lists) and links a resource of type T.
  template <class T, class... A>
  T* make(A&&... args) {
    check_thread();
    static_assert(std::is_base_of_v<Resource, T>);
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    void* p = pool_.allocate(sizeof(T));
    T* r;
    try {
      r = ::new (p) T(std::forward<A>(args)...);
    } catch (...) {
      pool_.deallocate(p, sizeof(T));
      throw;
    }
    r->block_size_ = sizeof(T);
    live_.push_front(r);
    ++made_;
    return r;
  }

  /// Unlinks, destroys and frees a resource made by `make`. When the loop was wrapped and its `Loop`
  /// is gone, the last resource to go may delete the core: callers must not touch `this` afterwards
  /// unless they know the loop is not closing.
  void destroy(Resource* r) noexcept {
    if (r == walk_next_) walk_next_ = live_.next(r);  // (freed while the Loop's destruction walks the list)
    live_.erase(r);
    const std::size_t size = r->block_size_;
    r->~Resource();
    pool_.deallocate(r, size);
    finish_if_orphaned();
  }

  /// Resources alive on this loop, and blocks kept for reuse (for tests and diagnostics).
  std::size_t live_count() const noexcept { return live_.size(); }
  std::size_t kept_blocks() const noexcept { return pool_.kept(); }

  void link_task(SpawnedTask* t) noexcept { tasks_.push_front(t); }
  void unlink_task(SpawnedTask* t) noexcept {
    if (tasks_.contains(t))
      tasks_.erase(t);
    else if (cancelled_tasks_.contains(t))
      cancelled_tasks_.erase(t);
  }

  /// Calls `fn` with `args`, routing anything it throws to the error hook.
  template <class Fn, class... Args>
  void invoke(Fn& fn, Args&&... args) noexcept {
    try {
      fn(std::forward<Args>(args)...);
    } catch (...) {
      report(std::current_exception());
    }
  }

  /// Runs `fn` on the loop thread on a later turn of the loop (used to complete an operation that must
  /// not call back inside its initiating call). Keeps the loop alive until it has run. Loop-thread only.
  /// Never throws: if memory runs out, the loss is reported to the error hook.
  void defer(UniqueFunction<void()> fn) noexcept;
  /// `defer` for work whose silent loss would leave a peer waiting with no deadline: if memory runs
  /// out, throws (std::bad_alloc) and `fn` is not queued, so that the caller can give up cleanly.
  void defer_or_throw(UniqueFunction<void()> fn);
  /// `defer_or_throw` for duet's own work, which no user callback waits for: a Loop destroyed before
  /// it runs does not count it as pending.
  template <class F>
  void defer_own_or_throw(F fn) {
    if (closing_) return;
    defer_or_throw([this, fn = std::move(fn)]() mutable {
      --own_deferred_;
      fn();
    });
    ++own_deferred_;
  }

  /// Thread-safe: queues `fn` and wakes the loop. Once the Loop is being destroyed, `fn` is dropped
  /// (destroyed without being called).
  void post(UniqueFunction<void()> fn);

  /// Hands `e` to the error hook; once the Loop is gone (its destruction is over), prints it on stderr.
  void report(std::exception_ptr e) noexcept;

  /// Keeps `uv_run` from returning for lack of work until `release_hold`: for work that waits on another
  /// thread (a `submit`, a task away on another loop). Loop-thread only.
  void acquire_hold() noexcept {
    if (holds_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(async_));
  }
  void release_hold() noexcept;

  /// The loop's mailbox, for posting from code that may outlive the Loop.
  const std::shared_ptr<Mailbox>& mailbox() const noexcept { return mailbox_; }

  /// Delivers, here and now, the stops routed to this loop from other threads that are still queued
  /// (or were refused, late, by its closed mailbox), leaving the other posted functions where they
  /// are. The caller is the loop's thread.
  void deliver_queued_stops() noexcept;

 private:
  friend class duet::Loop;
  friend struct LoopRunning;
  LoopCore();
  ~LoopCore();
  char* make_read_buffer() noexcept;

  void set_loop_thread() noexcept;  // this thread runs the loop from now on (the mailbox is told too)
  static void run_queue(uv_async_t* async) noexcept;
  /// Loop destruction: cancels every spawned task, then destroys the frames of those still suspended.
  void cancel_and_destroy_tasks() noexcept;
  /// Loop destruction: what user code waits on (the "pending" report: at least the callbacks that will
  /// not be called): live resources, and posted or deferred functions that will not run, duet's own aside.
  std::size_t count_pending() const noexcept;
  /// Loop destruction: abandons every live resource, newest first. An abandon may destroy a user
  /// callback whose destructor frees other resources, even ones not yet reached: `destroy` moves the
  /// walk past a resource it frees, so none is touched once freed. That destructor may also make new
  /// resources: the walk goes again until a pass makes none (abandoning twice does nothing more).
  void abandon_all() noexcept;
  /// Frees the core of a wrapped loop whose Loop is gone, once nothing of duet's is left on it.
  /// Callers must not touch the core afterwards.
  /// The mailbox's async handle is closed last, by `~Loop`, and libuv calls its close callback only
  /// when the host's loop next runs its close callbacks, after the callback running now has returned:
  /// so a core is never freed inside a callback that destroyed its Loop, and the duet code that
  /// callback returns into may still use it.
  void finish_if_orphaned() noexcept {
    if (closing_ && !owns_uv_ && live_.empty() && !async_open_) delete this;
  }

  uv_loop_t* uv_ = nullptr;
  Loop* loop_ = nullptr;  // the Loop object; null once a wrapped Loop's destructor has run
  bool owns_uv_ = false;
  bool closing_ = false;
  std::shared_ptr<bool> alive_;
  std::vector<int> polled_fds_;  // sorted
  int owned_runs_ = 0;           // 1 inside Loop::run / run_once of an owned loop (0 on a host's loop)
  int in_run_ = 0;               // 1 inside Loop::run / run_once, owned loop or not (never nested: that aborts)
  bool async_open_ = true;       // until the async handle's close callback: the core outlives it
  SizeClassFreeList<8, kKeepPerClass> pool_;
  UniqueFunction<void(std::exception_ptr)> error_handler_;
  char* read_buffer_ = nullptr;  // kReadBufferSize bytes, made at the first streaming read; freed by ~LoopCore
  IntrusiveList<Resource> live_;
  Resource* walk_next_ = nullptr;  // the next resource `abandon_all` reaches (null when not walking)
  std::size_t made_ = 0;           // resources made so far: `abandon_all` sees whether a pass made any

  // Posted and deferred functions, run in order by the mailbox's async handle.
  std::shared_ptr<Mailbox> mailbox_;
  std::vector<UniqueFunction<void()>> running_batch_;  // swapped with the queue: both keep their capacity
  std::size_t batch_next_ = 0;                         // the next function of `running_batch_` to run
  bool running_queue_ = false;                         // inside `run_queue`
  std::size_t own_deferred_ = 0;                       // functions queued by `defer_own_or_throw`, not yet run
  uv_async_t* async_ = nullptr;                        // the mailbox's, for the loop thread (ref/unref)
  int holds_ = 0;
  // The thread that runs the loop: the one that created the Loop until `run`/`run_once` (or a posted
  // function, on a host's loop) runs it from another. Read by any thread (post, stop callbacks).
  std::atomic<std::thread::id> loop_thread_{std::this_thread::get_id()};

  // Spawned tasks still running, and (while the loop is being destroyed) those already cancelled.
  IntrusiveList<SpawnedTask> tasks_;
  IntrusiveList<SpawnedTask> cancelled_tasks_;
};

struct RoutedStop;  // src/loop.cpp: a stop on its way to the loop thread

/// The part of `OnLoopStop` that does not depend on `Fn`, compiled once in the library: the
/// registration, the routing to the loop thread, and the cell a posted stop carries.
class OnLoopStopBase {
 public:
  OnLoopStopBase(const OnLoopStopBase&) = delete;
  OnLoopStopBase& operator=(const OnLoopStopBase&) = delete;

  /// Stops watching; a stop already posted from another thread will do nothing. Loop thread only.
  void reset() noexcept {
    if (watching_ || cell_) unlink();
  }
  /// The loop given to the last watch (null: none).
  LoopCore* core() const noexcept { return core_; }

  struct Cell;  // src/loop.cpp: what a posted stop carries; `reset` clears it

 protected:
  using Call = void (*)(OnLoopStopBase*) noexcept;
  explicit OnLoopStopBase(Call call) noexcept : call_(call) {}
  ~OnLoopStopBase() = default;  // ~OnLoopStop resets, before its function is destroyed
  /// Registers on `token` (which can be stopped); `call_` is ready to run from now on. If `token`
  /// is already stopped, `call_` runs now instead, and nothing here touches this object afterwards.
  void link(LoopCore* core, std::stop_token token);

 private:
  struct Trampoline {
    OnLoopStopBase* self;
    void operator()() const noexcept;
  };
  friend struct RoutedStop;
  void unlink() noexcept;
  void fire() noexcept;

  LoopCore* core_ = nullptr;
  Call call_;
  Cell* cell_ = nullptr;  // one reference, counted in the cell
  // The registration, alive while `watching_`; `reset` ends it before the function it calls is
  // destroyed. A union rather than a std::optional: std::optional's machinery is a measurable part
  // of every compile that includes duet.
  union Stop {
    Stop() noexcept {}
    ~Stop() {}
    std::stop_callback<Trampoline> callback;
  } stop_;
  bool watching_ = false;
};

/// A `std::stop_callback` for something that lives on a loop: `fn()` always runs on the loop thread.
///
/// `std::stop_callback` runs its callback on whichever thread calls `request_stop()`, but libuv and
/// duet's operations are loop-thread only. Here, a stop requested on the loop thread calls `fn()` at
/// once, inside `request_stop()`, allocating nothing. A stop requested on another thread is posted to
/// the loop with a small shared cell that points back here; `reset()` (or the destructor), on the loop
/// thread, clears the cell, so a posted stop that arrives after the operation has finished does
/// nothing. `reset()` first destroys the `std::stop_callback`, which waits for a callback running on
/// another thread to return: that is what makes the cell that callback wrote visible here. Once the
/// Loop is being destroyed, posted stops are dropped (the destruction cancels everything anyway).
///
/// With a null core (a `Semaphore` waiter whose callback knows no loop), `fn()` runs on the thread
/// that requests stop, as `std::stop_callback` does: that thread must then be the owner's.
///
/// `fn()` may destroy this object (and its owner); nothing here touches `this` after calling it.
template <class Fn>
class OnLoopStop : public OnLoopStopBase {
 public:
  OnLoopStop() noexcept : OnLoopStopBase(&call) {}
  /// Unregisters (waiting for a callback running on another thread) before `fn` is destroyed.
  ~OnLoopStop() { this->reset(); }

  /// Starts watching `token` (replacing any previous watch). If it is already stopped, `fn()` runs now.
  /// Call on the loop thread.
  void watch(LoopCore* core, std::stop_token token, Fn fn) {
    this->reset();
    if (!token.stop_possible()) return;
    fn_ = std::move(fn);  // set before registering: the callback may run at once
    this->link(core, std::move(token));
  }

 private:
  static void call(OnLoopStopBase* self) noexcept { static_cast<OnLoopStop*>(self)->fn_(); }
  Fn fn_{};
};

/// Mixin for an operation that can be cancelled through its callback's stop token. `Derived` provides
/// `void on_stop() noexcept`, called on the loop thread at most once, whichever thread requests stop
/// (see `OnLoopStop`).
template <class Derived>
class StopWatch {
 public:
  bool stop_requested() const noexcept { return stopped_; }

 protected:
  /// Call after the libuv request is started. If `token` is already stopped, `on_stop` runs now.
  void watch(LoopCore* core, std::stop_token token) {
    stop_.watch(core, std::move(token), Fn{static_cast<Derived*>(this)});
  }
  void unwatch() noexcept { stop_.reset(); }

 private:
  struct Fn {
    Derived* self;
    void operator()() const noexcept {
      self->stopped_ = true;
      self->on_stop();
    }
  };
  friend struct Fn;
  OnLoopStop<Fn> stop_;
  bool stopped_ = false;
};

/// Recovers the object that owns a libuv request or handle from its `data` field.
template <class T, class U>
T* owner_of(U* uvobj) noexcept {
  return static_cast<T*>(uvobj->data);
}

}  // namespace duet::detail
