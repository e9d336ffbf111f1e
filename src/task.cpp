#include "duet/task.hpp"

#include <atomic>
#include <new>
#include <vector>

#include "free_list_impl.hpp"

namespace duet::detail {
namespace {

std::atomic<bool> recycling{true};

// Frames up to 2 KiB are carved from 32 KiB chunks and recycled; at most 4096 per size class are
// kept, to bound what an idle thread holds on to (free_list.hpp).
thread_local SizeClassFreeList<32, 4096, true> frames;

}  // namespace

void* allocate_frame(std::size_t n) { return frames.allocate(n); }

void deallocate_frame(void* p, std::size_t n) noexcept {
  frames.deallocate(p, n, recycling.load(std::memory_order_relaxed));
}

namespace {
struct Trampoline {
  std::vector<std::coroutine_handle<>> queue;
  std::size_t next = 0;
  bool draining = false;
};
thread_local Trampoline t;
}  // namespace

NestedRun::NestedRun() {
  if (!t.draining) return;  // not inside a coroutine: nothing to set aside
  saved_ = new Trampoline(std::move(t));
  t = Trampoline();
}

NestedRun::~NestedRun() {
  if (!saved_) return;
  t = std::move(*static_cast<Trampoline*>(saved_));
  delete static_cast<Trampoline*>(saved_);
}

bool resumes_at_once() noexcept { return !t.draining; }

void reserve_resumes(std::size_t n) {
  if (t.draining) t.queue.reserve(t.queue.size() + n);
}

void resume(std::coroutine_handle<> h) {
  if (t.draining) {
    t.queue.push_back(h);
    return;
  }
  t.draining = true;
  h.resume();
  while (t.next < t.queue.size()) t.queue[t.next++].resume();
  t.queue.clear();
  t.next = 0;
  t.draining = false;
}

void set_frame_recycling(bool on) noexcept { recycling.store(on, std::memory_order_relaxed); }

}  // namespace duet::detail
