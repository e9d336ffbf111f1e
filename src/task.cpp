#include "duet/task.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <new>

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
// The coroutines to resume once the one running now suspends: a flat queue, so that a chain of
// completions that resume one another never nests on the stack.
struct Trampoline {
  std::unique_ptr<std::coroutine_handle<>[]> items;
  std::size_t size = 0;
  std::size_t capacity = 0;
  std::size_t next = 0;  // the next to resume

  void reserve(std::size_t want) {
    if (want <= capacity) return;
    const std::size_t n = std::max({want, 2 * capacity, std::size_t{16}});
    auto grown = std::make_unique_for_overwrite<std::coroutine_handle<>[]>(n);
    std::copy(items.get(), items.get() + size, grown.get());
    items = std::move(grown);
    capacity = n;
  }
};
thread_local Trampoline t;  // the thread's queue
// `&t` while this thread is draining it, else null. Constant-initialised and trivially destructible,
// so reading it takes no thread-local initialisation check: `resume`'s common case, queueing behind
// the coroutine running now, is a handful of instructions with no registers to save.
thread_local Trampoline* draining = nullptr;
thread_local int set_aside_count = 0;  // trampolines nested runs have set aside on this thread

[[gnu::noinline]] void drain(std::coroutine_handle<> h) {
  Trampoline& tr = t;
  draining = &tr;
  h.resume();
  while (tr.next < tr.size) tr.items[tr.next++].resume();
  tr.size = tr.next = 0;
  draining = nullptr;
}

[[gnu::noinline]] void queue_growing(Trampoline& tr, std::coroutine_handle<> h) {
  tr.reserve(tr.size + 1);
  tr.items[tr.size++] = h;
}
}  // namespace

NestedRun::NestedRun() {
  if (!draining) return;  // not inside a coroutine: nothing to set aside
  saved_ = new Trampoline(std::move(t));
  t = Trampoline();
  draining = nullptr;  // the nested run drains a queue of its own
  ++set_aside_count;
}

NestedRun::~NestedRun() {
  if (!saved_) return;
  t = std::move(*static_cast<Trampoline*>(saved_));
  delete static_cast<Trampoline*>(saved_);
  draining = &t;
  --set_aside_count;
}

bool resumes_at_once() noexcept { return !draining; }

bool inside_coroutine() noexcept { return draining || set_aside_count > 0; }

constinit const TaskContext no_context{};

void reserve_resumes(std::size_t n) {
  if (draining) draining->reserve(draining->size + n);
}

void resume(std::coroutine_handle<> h) {
  Trampoline* tr = draining;
  if (!tr) return drain(h);
  if (tr->size == tr->capacity) return queue_growing(*tr, h);
  tr->items[tr->size++] = h;
}

void set_frame_recycling(bool on) noexcept { recycling.store(on, std::memory_order_relaxed); }

}  // namespace duet::detail
