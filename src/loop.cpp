#include "duet/loop.hpp"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>

#include "duet/task.hpp"

namespace duet {
namespace detail {
namespace {

// The default error hook. What reaches it is either an exception that user code (a callback, or a
// task nobody awaits) let escape, or duet's own report of work a destroyed Loop dropped (loop_closed).
void print_to_stderr(std::exception_ptr e) noexcept {
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

void run_queue(uv_async_t* async) noexcept {
  auto* core = static_cast<LoopCore*>(async->data);
  core->set_loop_thread();  // a host may run its loop on a thread other than the Loop's creator
  std::vector<UniqueFunction<void()>>& batch = core->running_batch;
  {
    std::lock_guard lock(core->queue_mutex);
    batch.swap(core->queue);  // `queue` gets the spare (empty, with capacity): no allocation per post
  }
  // A function may destroy the Loop: `dispatching` keeps the core alive until this returns.
  core->dispatching = true;
  for (auto& fn : batch) {
    if (core->closing) break;
    core->invoke(fn);
  }
  batch.clear();
  core->dispatching = false;
  if (core->closing) return core->finish_if_orphaned();
  std::lock_guard lock(core->queue_mutex);
  if (core->holds == 0 && core->queue.empty()) uv_unref(reinterpret_cast<uv_handle_t*>(async));
}

}  // namespace

void LoopCore::defer(UniqueFunction<void()> fn) noexcept {
  if (closing) return;
  try {
    std::lock_guard lock(queue_mutex);
    queue.push_back(std::move(fn));
  } catch (...) {
    report(std::current_exception());  // out of memory: this completion is lost, and said so
    return;
  }
  uv_ref(reinterpret_cast<uv_handle_t*>(async));
  uv_async_send(async);
}

void LoopCore::post(UniqueFunction<void()> fn) {
  if (on_loop_thread()) return defer(std::move(fn));
  std::unique_lock lock(queue_mutex);
  if (posts_closed) {
    lock.unlock();
    return;  // `fn` is destroyed here, outside the lock
  }
  queue.push_back(std::move(fn));
  uv_async_send(async);  // under the lock: ~Loop closes `async` only after it has set posts_closed
}

void LoopCore::report(std::exception_ptr e) noexcept {
  if (!error_handler) {
    print_to_stderr(std::move(e));
    return;
  }
  try {
    error_handler(std::move(e));
  } catch (...) {
    std::fprintf(stderr, "duet: the loop's error handler threw; the original error is lost\n");
  }
}

}  // namespace detail

namespace {

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

}  // namespace

Loop::Loop() : core_(new detail::LoopCore) {
  core_->owns_uv = true;
  core_->uv = new uv_loop_t;
  if (int rc = uv_loop_init(core_->uv); rc < 0) {
    delete core_->uv;
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
  core_->uv = host;
  init_async();
}

void Loop::init_async() {
  ignore_sigpipe_if_default();
  auto* async = new uv_async_t;
  if (int rc = uv_async_init(core_->uv, async, &detail::run_queue); rc < 0) {
    delete async;
    if (core_->owns_uv) {
      uv_loop_close(core_->uv);
      delete core_->uv;
    }
    delete core_;
    throw std::system_error(uv_error(rc), "uv_async_init");
  }
  async->data = core_;
  uv_unref(reinterpret_cast<uv_handle_t*>(async));
  core_->async = async;
}

Loop::~Loop() {
  detail::LoopCore* core = core_;
  // Whoever destroys the Loop is its thread now: the cancellations below run here, not posted.
  core->set_loop_thread();
  if (core->running > 0) {
    // libuv cannot close a loop from inside its own uv_run: a programming error, not a recoverable one.
    std::fputs("duet: a duet::Loop that owns its libuv loop was destroyed inside its own run(); aborting\n", stderr);
    std::abort();
  }

  // What user code still waits on is reported; then everything duet started is cancelled or closed.
  std::vector<detail::Resource*> resources = core->snapshot();
  std::size_t pending = 0;
  for (auto* r : resources) pending += r->pending() ? 1 : 0;
  {
    std::lock_guard lock(core->queue_mutex);
    pending += core->queue.size();  // posted or deferred functions that will not run
  }
  if (pending > 0 || core->task_count > 0) {
    std::string what = "duet::Loop destroyed with " + std::to_string(pending) +
                       " operation(s) pending; their callbacks will not be called";
    if (core->task_count > 0) what += "; " + std::to_string(core->task_count) + " spawned task(s) unfinished";
    core->report(std::make_exception_ptr(std::system_error(make_error_code(errc::loop_closed), what)));
  }
  core->closing = true;
  *core->alive = false;
  std::vector<detail::UniqueFunction<void()>> dropped;
  {
    std::lock_guard lock(core->queue_mutex);
    dropped.swap(core->queue);
    core->posts_closed = true;  // later posts (a stop requested on another thread) are dropped
  }
  dropped.clear();  // outside the lock: what they own may close handles as it goes
  for (auto* r : resources) r->abandon();
  // Spawned tasks: cancelled first (a task waiting on a semaphore unwinds with Cancelled), then the
  // frames of those still suspended on abandoned operations are destroyed.
  core->cancel_and_destroy_tasks();
  for (auto* r : core->snapshot()) r->abandon();  // anything that teardown started (abandon is idempotent)
  uv_close(reinterpret_cast<uv_handle_t*>(core->async),
           [](uv_handle_t* h) noexcept { delete reinterpret_cast<uv_async_t*>(h); });

  if (!core->owns_uv) {
    // The host runs its loop: duet's resources finish there, and the last one frees the core (or the
    // posted function running now, if this Loop is destroyed from one).
    core->finish_if_orphaned();
    return;
  }

  // duet owns this loop: handles that code outside duet opened on it are closed as well, then the loop
  // runs until every cancelled request has called back and every handle is closed.
  uv_loop_t* uv = core->uv;
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
  while (uv_loop_close(uv) == UV_EBUSY) uv_run(uv, UV_RUN_DEFAULT);
  delete uv;
  delete core;
}

namespace {
// Counts how deep an owned loop is inside its own uv_run, so that destroying it there is caught.
struct Running {
  detail::NestedRun trampoline;  // a run inside a coroutine drives its own coroutines
  detail::LoopCore* core;
  explicit Running(detail::LoopCore* c) : core(c) { core->running += core->owns_uv ? 1 : 0; }
  ~Running() { core->running -= core->owns_uv ? 1 : 0; }
};
}  // namespace

void Loop::run() {
  core_->set_loop_thread();
  Running r(core_);
  uv_run(core_->uv, UV_RUN_DEFAULT);
}

bool Loop::run_once() {
  core_->set_loop_thread();
  Running r(core_);
  return uv_run(core_->uv, UV_RUN_ONCE) != 0;
}

void Loop::stop() noexcept { uv_stop(core_->uv); }

void Loop::set_error_handler(std::function<void(std::exception_ptr)> handler) {
  core_->error_handler = std::move(handler);
}

Loop::Hold::Hold(detail::LoopCore* core) noexcept : core_(core), alive_(core->alive) {
  if (core_->holds++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(core_->async));
}

void Loop::Hold::release() noexcept {
  if (!core_) return;
  if (!*alive_) {  // the Loop is gone, and its core with it (or soon): nothing is held any more
    core_ = nullptr;
    return;
  }
  if (--core_->holds == 0) {
    bool idle;
    {
      std::lock_guard lock(core_->queue_mutex);
      idle = core_->queue.empty();
    }
    if (idle) uv_unref(reinterpret_cast<uv_handle_t*>(core_->async));
  }
  core_ = nullptr;
}

}  // namespace duet
