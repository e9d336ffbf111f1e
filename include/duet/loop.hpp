// duet/loop.hpp — the event loop every duet operation runs on.
//
// A `duet::Loop` either owns a fresh `uv_loop_t`, or wraps one that the host application already runs
// (embedding): `duet::Loop loop(uv_default_loop());`. Wrapping never closes the host's loop; the host
// may keep driving it with `uv_run` and duet's callbacks run from there.
//
// Threads: a loop belongs to the thread that runs it (the one that created the `Loop`, until another
// calls `run()`/`run_once()`; the one that destroys it, from then on). Every duet call on a loop, and
// every callback duet makes, happens on that thread — except `post()` and cancellation (`request_stop()`
// on a stop source an operation watches, `JoinHandle::cancel()`), which any thread may call: a stop
// requested elsewhere is posted to the loop thread (cancellation.hpp).
//
// Errors in user code: an exception thrown by a callback is caught where libuv called duet (it never
// unwinds through libuv) and handed to the error hook, `set_error_handler`; by default it is printed on
// stderr. The loop carries on.
//
// Destruction: destroying a loop cancels every request duet started on it and closes every handle duet
// opened on it; callbacks of work still pending are not called, and that work is reported through the
// error hook (`duet::errc::loop_closed`, with the count; the default hook prints "duet: duet::Loop
// destroyed with N operation(s) pending; ..."). Which duet objects may outlive their Loop, and what
// they do then: docs/loop-and-operations.md, "What may outlive its Loop". An owned loop is then run until libuv has
// released everything and closed; a wrapped loop is left to its host, and duet's last closing handle
// frees duet's state whenever the host next runs it.
//
// Where it may be destroyed: not from inside its own `run()`/`run_once()` (that aborts, saying so), so
// an owned loop only from outside its callbacks (or from the `on_done` callback of its last task, if
// that task ended outside its run). A wrapped loop also from inside any callback duet makes on it
// while the host runs it (a handler, a body reader, a completion, a posted function, the error hook,
// but not while the hook reports this Loop's own destruction): duet's code that the callback returns
// into holds only state that outlives the Loop object, and calls nothing more (other callbacks due in
// the same turn are dropped); an exception the callback throws afterwards is printed on stderr, the
// hook being the gone Loop's.
// Any Loop with unfinished spawned tasks aborts, saying so, if destroyed while a coroutine runs on the
// thread: in a coroutine, in a `JoinHandle::on_done` callback run as its task ends, in the error hook
// reporting a task's failure, under a loop run from inside a coroutine. Destroying those tasks' frames
// would pull the coroutine running, or one queued to resume, from under it: post the destruction from
// there. So the `on_done` callback of a Loop's last task may destroy it (the callbacks after it are
// not called). An `as_completed` left early leaves its children running, as tasks of their own.
//
// SIGPIPE: creating a Loop sets SIGPIPE to "ignored" if it is still at its default action (which kills
// the process on a write to a connection the peer has closed); such a write then fails with UV_EPIPE.
// A handler the host installed is kept. The setting is the process's, so it also holds for writes to
// stdout (a program piped into `head` sees EPIPE instead of dying: check `fflush`/`ferror`), and it is
// inherited by children started with `system` or `posix_spawn` (libuv's `uv_spawn` resets it).
//
// Cost: `post()` takes a mutex and calls `uv_async_send`; running a posted function allocates nothing
// for callables up to 48 bytes.
#pragma once

#include <uv.h>

#include <exception>
#include <memory>
#include <utility>

#include "duet/detail/loop_core.hpp"

namespace duet {

class Loop {
 public:
  /// Creates and owns a new libuv loop.
  Loop();
  /// Wraps `host`, which the caller keeps running and eventually closes. `host` must outlive this Loop
  /// and any duet handle still closing on it.
  explicit Loop(uv_loop_t* host);
  ~Loop();

  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /// Runs until there is no more work (no active, referenced handle or request) or `stop()` is called.
  /// Not from inside this Loop's own run (libuv's loop is not reentrant): that aborts, saying so,
  /// wherever duet sees it (inside `run()` or `run_once()`, or in a function posted on a wrapped loop
  /// that its host runs). Another loop may be run there.
  void run();
  /// Runs one iteration, waiting for I/O if there is nothing ready. Returns true if work remains.
  /// Not from inside this Loop's own run, as `run()`.
  bool run_once();
  /// Makes the current `run()` return after this iteration. Loop-thread only.
  void stop() noexcept;

  /// Queues `fn` to run on the loop thread, on a later turn (never inside `post`). Safe from any thread;
  /// functions run in the order they were posted (so in order per posting thread). A post from the loop
  /// thread keeps `run()` going until it has run. A running loop wakes up for a post from another thread,
  /// but a loop with nothing else to do does not wait for such posts unless a `Hold` keeps it running.
  template <class Fn>
  void post(Fn&& fn) {
    core_->post(detail::UniqueFunction<void()>(std::forward<Fn>(fn)));
  }

  /// Keeps `run()` from returning for lack of work while it lives — e.g. while other threads may post.
  /// Create and destroy it on the loop thread. It may outlive the Loop (it then holds nothing).
  class Hold {
   public:
    Hold(Hold&& other) noexcept : core_(std::exchange(other.core_, nullptr)), alive_(std::move(other.alive_)) {}
    Hold& operator=(Hold&&) = delete;
    ~Hold() { release(); }
    void release() noexcept;

   private:
    friend class Loop;
    explicit Hold(detail::LoopCore* core) noexcept;
    detail::LoopCore* core_;
    std::shared_ptr<bool> alive_;  // the loop's `alive` flag: false once the Loop is destroyed
  };
  [[nodiscard]] Hold hold() noexcept { return Hold(core_); }

  /// Replaces the hook that receives exceptions thrown by user callbacks (and the report of work still
  /// pending when the loop is destroyed): any callable taking a `std::exception_ptr`; `nullptr` restores
  /// the default, printing on stderr. The hook itself must not throw.
  void set_error_handler(detail::UniqueFunction<void(std::exception_ptr)> handler);
  /// Hands `e` to the error hook.
  void report(std::exception_ptr e) noexcept { core_->report(std::move(e)); }

  /// The libuv loop, for mixing duet with raw libuv code.
  uv_loop_t* native() const noexcept { return core_->uv(); }
  /// True if this Loop created its libuv loop (and will close it).
  bool owns_native() const noexcept { return core_->owns_uv_; }

  /// Number of duet requests and handles alive on this loop (for tests and diagnostics).
  std::size_t live_resources() const noexcept { return core_->live_count(); }

  detail::LoopCore& core() noexcept { return *core_; }

 private:
  void init_async();
  detail::LoopCore* core_;
};

namespace detail {
/// How duet's own objects that run on after user code hold their loop. A callback may destroy a host's
/// (wrapped) Loop; the code it returns into must then not touch the Loop object, only its core, which
/// lives until duet's last handle on the loop has closed (and so through the callback that is running).
/// `loop()` gives the Loop, to start new work, which is done only while the Loop is alive.
class LoopRef {
 public:
  LoopRef(Loop& loop) noexcept : core_(&loop.core()) {}  // NOLINT(google-explicit-constructor)
  LoopCore& core() const noexcept { return *core_; }
  template <class Fn>
  void post(Fn&& fn) const {
    core_->post(UniqueFunction<void()>(std::forward<Fn>(fn)));
  }
  void report(std::exception_ptr e) const noexcept { core_->report(std::move(e)); }
  /// The Loop, to start new work on; aborts with a message once a host's Loop is gone (an owned loop's
  /// core goes with it: see LoopCore::loop).
  Loop& loop() const noexcept { return core_->loop(); }

 private:
  LoopCore* core_;
};
}  // namespace detail

}  // namespace duet
