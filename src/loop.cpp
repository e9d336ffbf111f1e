#include "duet/loop.hpp"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>

#include "duet/task.hpp"
#include "mailbox.hpp"

namespace duet {
namespace detail {
namespace {

constexpr std::size_t kKeepBatch = 1024;  // room for this many functions a loop keeps between turns

}  // namespace

// The default error hook. What reaches it is either an exception that user code (a callback, or a
// task nobody awaits) let escape, or duet's own report of work a destroyed Loop dropped (loop_closed).
void print_report(std::exception_ptr e) noexcept {
  try {
    std::rethrow_exception(std::move(e));
  } catch (const std::system_error& ex) {
    if (ex.code() == make_error_code(errc::loop_closed))
      std::fprintf(stderr, "duet: %s\n", ex.what());
    else
      std::fprintf(stderr, "duet: uncaught exception in a callback or task: %s\n", ex.what());
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "duet: uncaught exception in a callback or task: %s\n", ex.what());
  } catch (...) {
    std::fprintf(stderr, "duet: uncaught exception of unknown type in a callback or task\n");
  }
}

// A stop requested on another thread travels to the loop in a posted function that holds this cell;
// the link holds it too, until `reset`, which clears `target` so that a late delivery does nothing.
struct OnLoopStopBase::Cell {
  std::atomic<int> refs;
  OnLoopStopBase* target;
};

namespace {

void release(OnLoopStopBase::Cell* cell) noexcept;

// The posted function's reference to the cell.
struct CellRef {
  OnLoopStopBase::Cell* cell;
  explicit CellRef(OnLoopStopBase::Cell* c) noexcept : cell(c) {}
  CellRef(CellRef&& o) noexcept : cell(std::exchange(o.cell, nullptr)) {}
  CellRef& operator=(CellRef&&) = delete;
  ~CellRef() {
    if (cell) release(cell);
  }
};

}  // namespace

void OnLoopStopBase::link(LoopCore* core, std::stop_token token) {
  core_ = core;
  // Already stopped: run the function here rather than inside the stop_callback's constructor, after
  // which `watching_` would be written into an object the function may have destroyed.
  if (token.stop_requested()) return call_(this);
  ::new (static_cast<void*>(&stop_.callback)) std::stop_callback<Trampoline>(std::move(token), Trampoline{this});
  watching_ = true;
}

void OnLoopStopBase::unlink() noexcept {
  if (watching_) {
    stop_.callback.~stop_callback();  // waits for a callback running on another thread
    watching_ = false;
  }
  if (cell_) {
    cell_->target = nullptr;
    release(std::exchange(cell_, nullptr));
  }
}

void OnLoopStopBase::Trampoline::operator()() const noexcept { self->fire(); }

/// A stop requested on another thread, on its way to the loop's (posted). Named, so that a Loop
/// destroyed before it arrives can find it among the functions it drops, and deliver it.
struct RoutedStop {
  CellRef ref;
  void operator()() const noexcept {
    if (OnLoopStopBase* self = ref.cell->target) {
      // This stop is being delivered: nothing is left to clear.
      self->cell_ = nullptr;
      release(ref.cell);
      self->call_(self);
    }
  }
};

namespace {
/// Delivers the stops among `fns` (leaving them empty), as a Loop being destroyed does with those
/// that had not arrived; the other functions are left as they are.
void deliver_routed_stops(std::span<UniqueFunction<void()>> fns) noexcept {
  for (auto& fn : fns) {
    if (!fn.holds<RoutedStop>()) continue;
    UniqueFunction<void()> stop = std::move(fn);
    stop();
  }
}

/// How many of `fns` are the user's: all but the routed stops, which are duet's own.
std::size_t users_functions(std::span<const UniqueFunction<void()>> fns) noexcept {
  std::size_t n = 0;
  for (const auto& fn : fns) n += fn.holds<RoutedStop>() ? 0 : 1;
  return n;
}
}  // namespace

void OnLoopStopBase::fire() noexcept {
  if (!core_ || core_->on_loop_thread()) return call_(this);
  try {
    auto* cell = new Cell{{2}, this};  // one reference here, one in the posted function
    cell_ = cell;                      // read on the loop thread only after `stop_` is destroyed (see unlink)
    UniqueFunction<void()> stop(RoutedStop{CellRef(cell)});
    if (Mailbox& mailbox = *core_->mailbox(); !post_to(mailbox, stop)) {
      // The Loop is being destroyed: kept for it, which delivers it if it is a task's that it waits
      // for (request_task_stop); any other is dropped with the mailbox.
      std::lock_guard lock(mailbox.mutex);
      mailbox.late_stops.push_back(std::move(stop));
    }
  } catch (...) {
    std::fputs("duet: out of memory while routing a stop request to its loop; the stop is lost\n", stderr);
  }
}

namespace {

void release(OnLoopStopBase::Cell* cell) noexcept {
  if (cell->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete cell;
}

}  // namespace

bool post_to(Mailbox& mailbox, UniqueFunction<void()>& fn) {
  std::lock_guard lock(mailbox.mutex);
  if (mailbox.closed) return false;
  mailbox.queue.push_back(std::move(fn));
  uv_async_send(mailbox.async);  // under the lock: ~Loop closes `async` only after it has set `closed`
  return true;
}

void request_task_stop(const Mailbox& mailbox, std::stop_source& source, std::atomic<int>& in_flight) noexcept {
  if (mailbox.loop_thread.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
    source.request_stop();
    return;
  }
  // Counted before the stop is requested: a destruction that finds it requested finds it counted,
  // or already done.
  in_flight.fetch_add(1, std::memory_order_seq_cst);
  source.request_stop();
  in_flight.fetch_sub(1, std::memory_order_seq_cst);
  in_flight.notify_all();
}

void wait_for_cancels(std::atomic<int>& in_flight) noexcept {
  for (int n = in_flight.load(std::memory_order_seq_cst); n != 0; n = in_flight.load(std::memory_order_seq_cst))
    in_flight.wait(n, std::memory_order_seq_cst);
}

void LoopCore::set_loop_thread() noexcept {
  const std::thread::id me = std::this_thread::get_id();
  loop_thread_.store(me, std::memory_order_relaxed);
  mailbox_->loop_thread.store(me, std::memory_order_relaxed);
}

void LoopCore::deliver_queued_stops() noexcept {
  std::vector<UniqueFunction<void()>> stops;
  {
    std::lock_guard lock(mailbox_->mutex);
    stops.swap(mailbox_->late_stops);
    auto& queue = mailbox_->queue;
    for (auto& fn : queue)
      if (fn.holds<RoutedStop>()) stops.push_back(std::move(fn));
    std::erase_if(queue, [](const UniqueFunction<void()>& fn) { return !fn; });  // (posted ones are never empty)
  }
  deliver_routed_stops(stops);
}

LoopCore::LoopCore() : alive_(std::make_shared<bool>(true)), mailbox_(std::make_shared<Mailbox>()) {
  set_loop_thread();  // (the mailbox's copy)
}

LoopCore::~LoopCore() { delete[] read_buffer_; }

char* LoopCore::make_read_buffer() noexcept {
  read_buffer_ = new (std::nothrow) char[kReadBufferSize];
  return read_buffer_;
}

void LoopCore::wrong_thread() noexcept {
  std::fputs(
      "duet: a duet object or operation was used on a thread that does not run its loop (every duet object "
      "belongs to its loop's thread: reach it with Loop::post, submit or resume_on); aborting\n",
      stderr);
  std::abort();
}

void LoopCore::reentered() noexcept {
  std::fputs("duet: a duet::Loop was run from inside its own run (run(), run_once() or the host's uv_run); aborting\n",
             stderr);
  std::abort();
}

void LoopCore::loop_destroyed() noexcept {
  std::fputs("duet: new work was started on a duet::Loop that has been destroyed; aborting\n", stderr);
  std::abort();
}

void LoopCore::run_queue(uv_async_t* async) noexcept {
  auto* core = static_cast<LoopCore*>(async->data);
  core->set_loop_thread();  // a host may run its loop on a thread other than the Loop's creator
  // A posted function that runs the loop again (the host's uv_run, on a wrapped loop) would take over
  // the batch being run: its functions would run twice.
  if (core->running_queue_) reentered();
  core->running_queue_ = true;
  std::vector<UniqueFunction<void()>>& batch = core->running_batch_;
  Mailbox& mailbox = *core->mailbox_;
  {
    std::lock_guard lock(mailbox.mutex);
    batch.swap(mailbox.queue);  // the queue gets the spare (empty, with capacity): no allocation per post
  }
  // A function may destroy the Loop: the core lives on at least until this async handle's close
  // callback, which libuv runs after this callback has returned.
  for (std::size_t i = 0; i < batch.size() && !core->closing_; ++i) {
    core->batch_next_ = i + 1;  // (what is left, if this function destroys the Loop, is counted as pending)
    core->invoke(batch[i]);
  }
  core->batch_next_ = batch.size();  // every one has run: the destructors below may destroy the Loop
  batch.clear();
  core->batch_next_ = 0;
  core->running_queue_ = false;
  // After a burst (10,000 requests deferring their completions in one turn, say), the batch's room is
  // given back rather than kept with the loop for its lifetime: some 640 KiB per 10,000.
  if (batch.capacity() > kKeepBatch) std::vector<UniqueFunction<void()>>().swap(batch);
  if (core->closing_) return;  // (the handle's close callback frees a wrapped loop's core)
  std::lock_guard lock(mailbox.mutex);
  if (core->holds_ == 0 && mailbox.queue.empty()) uv_unref(reinterpret_cast<uv_handle_t*>(async));
}

void LoopCore::start_closing() noexcept {
  closing_ = true;
  // Through the cancelled list, so that each is asked once (a task may finish and unlink, or spawn
  // another, which is asked too); those still suspended go back.
  while (SpawnedTask* t = tasks_.front()) {
    tasks_.erase(t);
    cancelled_tasks_.push_front(t);
    t->cancel();
  }
  while (SpawnedTask* t = cancelled_tasks_.front()) {
    cancelled_tasks_.erase(t);
    tasks_.push_front(t);
  }
}

void LoopCore::cancel_and_destroy_tasks() noexcept {
  // Destroying frames can create new orphans (an as_completed abandoned by a destroyed frame): repeat
  // until no task is left.
  while (!tasks_.empty() || !cancelled_tasks_.empty()) {
    while (SpawnedTask* t = tasks_.front()) {
      tasks_.erase(t);
      cancelled_tasks_.push_front(t);
      t->cancel();  // may finish the task, which unlinks it; waits for a cancel() on another thread
    }
    // What such a cancel() routed here once the mailbox had closed: a task's waits leave their queues
    // before its frame goes.
    deliver_queued_stops();
    while (SpawnedTask* t = cancelled_tasks_.front()) t->destroy_frames();
  }
}

std::size_t LoopCore::count_pending() const noexcept {
  std::size_t n = 0;
  for (Resource* r = live_.front(); r; r = live_.next(r)) n += r->pending_count();
  // Posted and deferred functions that will not run (in the queue, or later in the batch running now),
  // but for duet's own: its deferred work, and stops routed from other threads (the Loop delivers
  // those as it goes). (Clamped: as the batch is cleared, its size is the standard library's business.)
  const std::span<const UniqueFunction<void()>> batch(running_batch_);
  const std::size_t left = batch.size() > batch_next_ ? users_functions(batch.subspan(batch_next_)) : 0;
  std::lock_guard lock(mailbox_->mutex);
  const std::size_t queued = users_functions(mailbox_->queue) + left;
  return n + (queued > own_deferred_ ? queued - own_deferred_ : 0);
}

void LoopCore::abandon_all() noexcept {
  std::size_t made_before = 0;
  do {
    made_before = made_;
    walk_next_ = live_.front();
    while (Resource* r = walk_next_) {
      walk_next_ = live_.next(r);
      r->abandon();  // may free `r`, and others (`destroy` moves `walk_next_` past them), or make some
    }
  } while (made_ != made_before);
}

void LoopCore::defer(UniqueFunction<void()> fn) noexcept {
  try {
    defer_or_throw(std::move(fn));
  } catch (...) {
    report(std::current_exception());  // out of memory: this completion is lost, and said so
  }
}

void LoopCore::defer_or_throw(UniqueFunction<void()> fn) {
  if (closing_) return;
  check_thread();  // (spawn, and every completion deferred to a later turn, come through here)
  {
    std::lock_guard lock(mailbox_->mutex);
    mailbox_->queue.push_back(std::move(fn));
  }
  uv_ref(reinterpret_cast<uv_handle_t*>(async_));
  uv_async_send(async_);
}

void LoopCore::post(UniqueFunction<void()> fn) {
  if (on_loop_thread()) return defer(std::move(fn));
  post_to(*mailbox_, fn);  // refused once the Loop is being destroyed: `fn` is then destroyed here, unlocked
}

void LoopCore::report(std::exception_ptr e) noexcept {
  // After a wrapped Loop's destruction (a callback that destroyed it, then threw) the hook is the gone
  // Loop's, and may use what went with it. It is kept, not destroyed: it may be the caller.
  if (!error_handler_ || (!loop_ && !owns_uv_)) {
    print_report(std::move(e));
    return;
  }
  try {
    error_handler_(std::move(e));
  } catch (...) {
    std::fprintf(stderr, "duet: the loop's error handler threw; the original error is lost\n");
  }
}

}  // namespace detail

namespace detail {

bool LoopCore::claim_polled_fd(int fd) {
  const auto at = std::lower_bound(polled_fds_.begin(), polled_fds_.end(), fd);
  if (at != polled_fds_.end() && *at == fd) return false;
  polled_fds_.insert(at, fd);
  return true;
}

void LoopCore::release_polled_fd(int fd) noexcept {
  const auto at = std::lower_bound(polled_fds_.begin(), polled_fds_.end(), fd);
  if (at != polled_fds_.end() && *at == fd) polled_fds_.erase(at);
}

// A write to a connection the peer has closed raises SIGPIPE, whose default action kills the process;
// libuv's stream writes do not suppress it. With the signal ignored the write fails with UV_EPIPE,
// which duet reports like any other error. A handler the host installed is left alone.
void ignore_sigpipe_if_default() noexcept {
  struct sigaction now {};
  if (sigaction(SIGPIPE, nullptr, &now) == 0 && now.sa_handler == SIG_DFL) {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, nullptr);
  }
}

}  // namespace detail

Loop::Loop() : core_(new detail::LoopCore) {
  core_->loop_ = this;
  core_->owns_uv_ = true;
  core_->uv_ = new uv_loop_t;
  if (int rc = uv_loop_init(core_->uv_); rc < 0) {
    delete core_->uv_;
    delete core_;
    throw std::system_error(uv_error(rc), "uv_loop_init");
  }
  init_async();
}

Loop::Loop(uv_loop_t* host) : core_(new detail::LoopCore) {
  if (!host) {
    delete core_;
    throw std::invalid_argument("duet::Loop: the host loop is null");
  }
  core_->uv_ = host;
  core_->loop_ = this;
  init_async();
}

void Loop::init_async() {
  detail::ignore_sigpipe_if_default();
  auto* async = new uv_async_t;
  if (int rc = uv_async_init(core_->uv_, async, &detail::LoopCore::run_queue); rc < 0) {
    delete async;
    if (core_->owns_uv_) {
      uv_loop_close(core_->uv_);
      delete core_->uv_;
    }
    delete core_;
    throw std::system_error(uv_error(rc), "uv_async_init");
  }
  async->data = core_;
  uv_unref(reinterpret_cast<uv_handle_t*>(async));
  core_->async_ = async;
  core_->mailbox_->async = async;
}

Loop::~Loop() {
  detail::LoopCore* core = core_;
  // Whoever destroys the Loop is its thread now: the cancellations below run here, not posted.
  core->set_loop_thread();
  if (core->in_run_ > 0) {
    // libuv cannot close a loop from inside its own uv_run, and `run()` would return into a freed
    // Loop: a programming error, not a recoverable one.
    std::fputs("duet: a duet::Loop was destroyed inside its own run() or run_once(); aborting\n", stderr);
    std::abort();
  }
  if (detail::inside_coroutine() && !core->tasks_.empty()) {
    // A coroutine is running on this thread (maybe beneath a nested run). If it is one of this Loop's
    // tasks, or one of them is queued to resume behind it, destroying their frames below would pull
    // them from under it; and their cancellation would queue resumptions behind the one running.
    std::fputs(
        "duet: a duet::Loop with unfinished spawned tasks was destroyed while a coroutine runs on this "
        "thread (in the coroutine, or in an on_done callback, error hook or loop run it called): post "
        "the destruction from there instead; aborting\n",
        stderr);
    std::abort();
  }

  // What user code still waits on is reported; then everything duet started is cancelled or closed.
  const std::size_t pending = core->count_pending();
  if (pending > 0 || core->tasks_.size() > 0) {
    std::string what = "duet::Loop destroyed with " + std::to_string(pending) +
                       " operation(s) pending; their callbacks will not be called";
    if (core->tasks_.size() > 0) what += "; " + std::to_string(core->tasks_.size()) + " spawned task(s) unfinished";
    core->report(std::make_exception_ptr(std::system_error(make_error_code(errc::loop_closed), what)));
  }
  core->closing_ = true;
  *core->alive_ = false;
  std::vector<detail::UniqueFunction<void()>> dropped;
  {
    std::lock_guard lock(core->mailbox_->mutex);
    dropped.swap(core->mailbox_->queue);
    core->mailbox_->closed = true;  // later posts (a stop requested on another thread) are refused
  }
  // Outside the lock: what they own may close handles as it goes. A stop routed here from another
  // thread is kept, and delivered below as if it had been requested now: its task is cancelled
  // like every other (a waiter at a Semaphore outliving the Loop leaves its queue before the frame
  // goes), where dropping it would leave the stop requested and never carried out.
  for (auto& fn : dropped)
    if (!fn.holds<detail::RoutedStop>()) fn.reset();
  core->abandon_all();
  detail::deliver_routed_stops(dropped);
  dropped.clear();
  // So are those in the batch being run that it had not reached (a host's Loop, destroyed by a posted
  // function): the batch's end is not run once the Loop is closing.
  if (core->batch_next_ < core->running_batch_.size())
    detail::deliver_routed_stops(std::span(core->running_batch_).subspan(core->batch_next_));
  // Spawned tasks: cancelled first (a task waiting on a semaphore unwinds with Cancelled), then the
  // frames of those still suspended on abandoned operations are destroyed.
  core->cancel_and_destroy_tasks();
  core->abandon_all();  // anything that teardown started (abandon is idempotent)
  uv_close(reinterpret_cast<uv_handle_t*>(core->async_), [](uv_handle_t* h) noexcept {
    auto* closed = static_cast<detail::LoopCore*>(h->data);
    delete reinterpret_cast<uv_async_t*>(h);
    closed->async_open_ = false;
    closed->finish_if_orphaned();  // (an owned loop's core is freed by ~Loop itself)
  });

  if (!core->owns_uv_) {
    // The host runs its loop: duet's resources finish there, and the last of them, or the async
    // handle's close callback, frees the core, when the host's loop next runs its close callbacks
    // (after the callback running now, if one destroyed this Loop, has returned). Code running on
    // after this destructor (the callback that destroyed the Loop returns into duet) holds the core.
    core->loop_ = nullptr;
    return;
  }

  // duet owns this loop: handles that code outside duet opened on it are closed as well, then the loop
  // runs until every cancelled request has called back and every handle is closed.
  uv_loop_t* uv = core->uv_;
  std::size_t foreign = 0;
  uv_walk(
      uv,
      [](uv_handle_t* h, void* count) noexcept {
        if (!uv_is_closing(h)) {
          ++*static_cast<std::size_t*>(count);
          uv_close(h, nullptr);
        }
      },
      &foreign);
  if (foreign > 0) {
    core->report(std::make_exception_ptr(std::system_error(
        make_error_code(errc::loop_closed),
        "duet::Loop destroyed with " + std::to_string(foreign) + " handle(s) not opened by duet; closed them")));
  }
  // Run until libuv lets the loop close: each pass lets cancelled requests call back and closed
  // handles finish (a single pass is not enough if a stop was requested outside uv_run).
  while (uv_loop_close(uv) == UV_EBUSY) {
    uv_run(uv, UV_RUN_DEFAULT);
    core->abandon_all();  // what a callback destroyed in that run made (its destructor is user code)
  }
  delete uv;
  delete core;
}

namespace detail {
// Marks a loop as inside its own run, so that destroying or running it again there is caught.
struct LoopRunning {
  detail::NestedRun trampoline;  // a run inside a coroutine drives its own coroutines
  detail::LoopCore* core;
  explicit LoopRunning(detail::LoopCore* c) : core(c) {
    if (core->in_run_ > 0) core->reentered();  // libuv's uv_run is not reentrant
    core->owned_runs_ += core->owns_uv_ ? 1 : 0;
    ++core->in_run_;
  }
  ~LoopRunning() {
    core->owned_runs_ -= core->owns_uv_ ? 1 : 0;
    --core->in_run_;
  }
};
}  // namespace detail

void Loop::run() {
  core_->set_loop_thread();
  detail::LoopRunning r(core_);
  uv_run(core_->uv_, UV_RUN_DEFAULT);
}

bool Loop::run_once() {
  core_->set_loop_thread();
  detail::LoopRunning r(core_);
  // From libuv 1.45, a UV_RUN_ONCE turn reads the clock only after polling: the callbacks before the
  // poll (writes done, hooks) would arm their deadlines from the last turn's time. Read it here, as a
  // full run does when it starts.
  uv_update_time(core_->uv_);
  // Before 1.45, a UV_RUN_ONCE turn runs the timers due before it polls, and then polls with a timeout
  // that leaves them out: a turn that ran a 0 ms timer (a zero sleep, a TLS read served from bytes
  // already decrypted) would go on to wait for I/O. With something ready now (a timer due, a pending
  // callback, a closing handle), the turn does not wait; nor when a timer is due within the clock's
  // millisecond, as it may come due between this read of the clock and libuv's (such a turn may end
  // having run nothing, up to a millisecond early).
  const int timeout = uv_backend_timeout(core_->uv_);
  const uv_run_mode mode = timeout >= 0 && timeout <= 1 ? UV_RUN_NOWAIT : UV_RUN_ONCE;
  return uv_run(core_->uv_, mode) != 0;
}

void Loop::stop() noexcept { uv_stop(core_->uv_); }

void Loop::set_error_handler(detail::UniqueFunction<void(std::exception_ptr)> handler) {
  core_->error_handler_ = std::move(handler);
}

Loop::Hold::Hold(detail::LoopCore* core) noexcept : core_(core), alive_(core->alive_) { core_->acquire_hold(); }

void Loop::Hold::release() noexcept {
  if (!core_) return;
  if (*alive_) core_->release_hold();  // else the Loop is gone, and its core with it (or soon)
  core_ = nullptr;
}

namespace detail {
void LoopCore::release_hold() noexcept {
  if (--holds_ > 0) return;
  bool idle;
  {
    std::lock_guard lock(mailbox_->mutex);
    idle = mailbox_->queue.empty();
  }
  if (idle) uv_unref(reinterpret_cast<uv_handle_t*>(async_));
}
}  // namespace detail

}  // namespace duet
