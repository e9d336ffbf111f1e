// duet/detail/loop_core.hpp — what every duet request and handle shares with its loop.
//
// `LoopCore` is the heap-allocated state behind a `duet::Loop`: the libuv loop pointer, a recycling
// allocator for request objects, the list of live duet resources (so closing the loop can cancel or
// close them), the cross-thread post queue and the error hook. It outlives the `Loop` object when the
// loop is a host's (wrapped) loop and duet resources are still closing on it: the last one to finish
// deletes it.
//
// Loop-thread only, except `post()` (and the stop callbacks of `OnLoopStop`, which route themselves).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "duet/cancellation.hpp"
#include "duet/detail/poison.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/error.hpp"

namespace duet::detail {

/// Size-class free lists for request objects: a request that completes gives its block to the next
/// one of the same size class, so a steady stream of operations allocates nothing. Each list keeps at
/// most `kKeepPerClass` blocks: after a burst (10,000 connects at once) the rest go back to the
/// allocator, where other sizes can use them, instead of staying with the loop for its lifetime.
/// Loop-thread only.
class Pool {
 public:
  static constexpr std::size_t kGranule = 64;
  static constexpr std::size_t kClasses = 8;          // blocks of 64 .. 512 bytes are recycled
  static constexpr std::size_t kKeepPerClass = 1024;  // at most 512 KiB kept in one class

  Pool() = default;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() {
    for (Block*& head : free_) {
      while (head) {
        unpoison(head, sizeof(Block));
        ::operator delete(std::exchange(head, head->next));
      }
    }
  }

  void* allocate(std::size_t n) {
    const std::size_t c = size_class(n);
    if (c >= kClasses) return ::operator new(n);
    if (Block* b = free_[c]) {
      unpoison(b, sizeof(Block));
      free_[c] = b->next;
      --count_[c];
      unpoison(b, (c + 1) * kGranule);
      return b;
    }
    return ::operator new((c + 1) * kGranule);
  }

  /// Blocks kept on the free lists, in all classes (for tests and diagnostics).
  std::size_t kept() const noexcept {
    std::size_t n = 0;
    for (std::size_t k : count_) n += k;
    return n;
  }

  void deallocate(void* p, std::size_t n) noexcept {
    const std::size_t c = size_class(n);
    if (c >= kClasses || count_[c] >= kKeepPerClass) {
      ::operator delete(p);
      return;
    }
    auto* b = static_cast<Block*>(p);
    b->next = free_[c];
    free_[c] = b;
    ++count_[c];
    poison(b, (c + 1) * kGranule);  // a use after free of a recycled request is still caught by ASan
  }

 private:
  struct Block {
    Block* next;
  };
  static constexpr std::size_t size_class(std::size_t n) noexcept { return (n + kGranule - 1) / kGranule - 1; }
  Block* free_[kClasses] = {};
  std::size_t count_[kClasses] = {};
};

/// A duet request or handle that is alive on a loop. `abandon()` is called when the loop is being
/// destroyed: cancel the request or close the handle so that it finishes soon, without calling user code.
class Resource {
 public:
  virtual void abandon() noexcept = 0;
  /// True if user code is still waiting on this resource (counted in the "pending work" report).
  virtual bool pending() const noexcept { return true; }

 protected:
  Resource() = default;
  ~Resource() = default;

 private:
  friend struct LoopCore;
  Resource* prev_ = nullptr;
  Resource* next_ = nullptr;
};

/// A spawned task's root, registered on its loop while it runs, so that destroying the loop can cancel
/// it and then free the frames of whatever did not finish.
class SpawnedTask {
 public:
  /// Requests stop (loop destruction, step 1). May resume the task, which may finish and unlink.
  virtual void cancel() noexcept = 0;
  /// Destroys the suspended coroutine frames (loop destruction, step 2). Unlinks.
  virtual void destroy_frames() noexcept = 0;

 protected:
  SpawnedTask() = default;
  ~SpawnedTask() = default;

 private:
  friend struct LoopCore;
  SpawnedTask* prev_ = nullptr;
  SpawnedTask* next_ = nullptr;
  SpawnedTask** list_ = nullptr;  // the list this task is on
};

struct LoopCore {
  uv_loop_t* uv = nullptr;
  bool owns_uv = false;
  bool closing = false;  // set by ~Loop: completions no longer reach user code
  // False once the Loop object is destroyed: for objects that may outlive it (a JoinHandle).
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  bool dispatching = false;  // the post queue is being run: the core must outlive that
  int running = 0;           // nesting of Loop::run / run_once on an owned loop
  Pool pool;
  std::function<void(std::exception_ptr)> error_handler;

  // One buffer for every streaming read on this loop: libuv reads into it and the chunk is handed to
  // the reader's callback at once, so no stream needs a buffer of its own while it waits for data.
  static constexpr std::size_t kReadBufferSize = 64 * 1024;
  std::unique_ptr<char[]> read_buffer;

  // Resources alive on this loop.
  Resource* live = nullptr;
  std::size_t live_count = 0;

  // Posted and deferred functions, run in order by `async`'s callback.
  std::mutex queue_mutex;
  std::vector<UniqueFunction<void()>> queue;
  std::vector<UniqueFunction<void()>> running_batch;  // swapped with `queue`: both keep their capacity
  uv_async_t* async = nullptr;
  bool posts_closed = false;  // (under queue_mutex) the Loop is being destroyed: `async` may be gone
  int holds = 0;
  // The thread that runs the loop: the one that created the Loop until `run`/`run_once` (or a posted
  // function, on a host's loop) runs it from another. Read by any thread (post, stop callbacks).
  std::atomic<std::thread::id> loop_thread{std::this_thread::get_id()};

  bool on_loop_thread() const noexcept {
    return loop_thread.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  void set_loop_thread() noexcept { loop_thread.store(std::this_thread::get_id(), std::memory_order_relaxed); }

  // Spawned tasks still running, and (while the loop is being destroyed) those already cancelled.
  SpawnedTask* tasks = nullptr;
  SpawnedTask* cancelled_tasks = nullptr;
  std::size_t task_count = 0;

  void link_task(SpawnedTask* t, SpawnedTask** list) noexcept {
    t->list_ = list;
    t->prev_ = nullptr;
    t->next_ = *list;
    if (*list) (*list)->prev_ = t;
    *list = t;
  }
  void link_task(SpawnedTask* t) noexcept {
    link_task(t, &tasks);
    ++task_count;
  }
  void unlink_task_from_list(SpawnedTask* t) noexcept {
    if (!t->list_) return;
    if (t->prev_)
      t->prev_->next_ = t->next_;
    else
      *t->list_ = t->next_;
    if (t->next_) t->next_->prev_ = t->prev_;
    t->prev_ = t->next_ = nullptr;
    t->list_ = nullptr;
  }
  void unlink_task(SpawnedTask* t) noexcept {
    if (!t->list_) return;
    unlink_task_from_list(t);
    --task_count;
  }

  /// Loop destruction: cancels every spawned task, then destroys the frames of those still suspended.
  /// Destroying frames can create new orphans (an as_completed abandoned by a destroyed frame): repeat
  /// until no task is left.
  void cancel_and_destroy_tasks() noexcept {
    while (tasks || cancelled_tasks) {
      while (SpawnedTask* t = tasks) {
        unlink_task_from_list(t);
        link_task(t, &cancelled_tasks);
        t->cancel();  // may finish the task, which unlinks it
      }
      while (SpawnedTask* t = cancelled_tasks) t->destroy_frames();
    }
  }

  void link(Resource* r) noexcept {
    r->prev_ = nullptr;
    r->next_ = live;
    if (live) live->prev_ = r;
    live = r;
    ++live_count;
  }

  void unlink(Resource* r) noexcept {
    if (r->prev_)
      r->prev_->next_ = r->next_;
    else
      live = r->next_;
    if (r->next_) r->next_->prev_ = r->prev_;
    r->prev_ = r->next_ = nullptr;
    --live_count;
  }

  std::vector<Resource*> snapshot() const {
    std::vector<Resource*> all;
    all.reserve(live_count);
    for (Resource* r = live; r; r = r->next_) all.push_back(r);
    return all;
  }

  /// Allocates and links a resource of type T.
  template <class T, class... A>
  T* make(A&&... args) {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    void* p = pool.allocate(sizeof(T));
    T* r;
    try {
      r = ::new (p) T(std::forward<A>(args)...);
    } catch (...) {
      pool.deallocate(p, sizeof(T));
      throw;
    }
    link(r);
    return r;
  }

  /// Unlinks, destroys and frees a resource made by `make`. When the loop was wrapped and its `Loop`
  /// is gone, the last resource to go deletes the core: callers must not touch `this` afterwards
  /// unless they know the loop is not closing.
  template <class T>
  void destroy(T* r) noexcept {
    unlink(r);
    r->~T();
    pool.deallocate(r, sizeof(T));
    finish_if_orphaned();
  }

  /// Frees the core of a wrapped loop whose Loop is gone, once nothing of duet's is left on it and no
  /// posted function is running. Callers must not touch the core afterwards.
  void finish_if_orphaned() noexcept {
    if (closing && !owns_uv && live_count == 0 && !dispatching) delete this;
  }

  /// Calls `fn` with `args`, routing anything it throws to the error hook.
  template <class Fn, class... Args>
  void invoke(Fn& fn, Args&&... args) noexcept {
    try {
      std::invoke(fn, std::forward<Args>(args)...);
    } catch (...) {
      report(std::current_exception());
    }
  }

  /// Runs `fn` on the loop thread on a later turn of the loop (used to complete an operation that must
  /// not call back inside its initiating call). Keeps the loop alive until it has run. Loop-thread only.
  /// Never throws: if memory runs out, the loss is reported to the error hook.
  void defer(UniqueFunction<void()> fn) noexcept;

  /// Thread-safe: queues `fn` and wakes the loop. Once the Loop is being destroyed, `fn` is dropped
  /// (destroyed without being called).
  void post(UniqueFunction<void()> fn);

  void report(std::exception_ptr e) noexcept;
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
class OnLoopStop {
 public:
  OnLoopStop() noexcept = default;
  OnLoopStop(const OnLoopStop&) = delete;
  OnLoopStop& operator=(const OnLoopStop&) = delete;
  ~OnLoopStop() { reset(); }

  /// Starts watching `token` (replacing any previous watch). If it is already stopped, `fn()` runs now.
  /// Call on the loop thread.
  void watch(LoopCore* core, std::stop_token token, Fn fn) {
    reset();
    if (!token.stop_possible()) return;
    core_ = core;
    fn_.emplace(std::move(fn));  // set before registering: the callback may run at once
    stop_.emplace(std::move(token), Trampoline{this});
  }

  /// Stops watching; a stop already posted from another thread will do nothing. Loop thread only.
  void reset() noexcept {
    stop_.reset();  // waits for a callback running on another thread
    if (cell_) {
      cell_->target = nullptr;
      cell_.reset();
    }
  }

 private:
  struct Cell {
    OnLoopStop* target;
  };
  struct Trampoline {
    OnLoopStop* self;
    void operator()() const noexcept { self->fire(); }
  };

  void fire() noexcept {
    if (!core_ || core_->on_loop_thread()) return (*fn_)();
    try {
      auto cell = std::make_shared<Cell>(Cell{this});
      cell_ = cell;  // read on the loop thread only after `stop_` is destroyed (see reset)
      core_->post([cell = std::move(cell)] {
        if (OnLoopStop* self = cell->target) {
          self->cell_.reset();  // this stop is being delivered: nothing is left to clear
          (*self->fn_)();
        }
      });
    } catch (...) {
      std::fputs("duet: out of memory while routing a stop request to its loop; the stop is lost\n", stderr);
    }
  }

  LoopCore* core_ = nullptr;
  std::optional<Fn> fn_;
  std::shared_ptr<Cell> cell_;
  std::optional<std::stop_callback<Trampoline>> stop_;  // last: destroyed first
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
