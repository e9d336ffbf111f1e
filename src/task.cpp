#include "duet/task.hpp"

#include <atomic>
#include <new>
#include <vector>

#include "duet/detail/poison.hpp"

namespace duet::detail {
namespace {

constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 32;         // frames up to 2 KiB are recycled
constexpr std::size_t kKeepPerClass = 4096;  // bound what an idle thread holds on to

std::atomic<bool> recycling{true};

struct FreeLists {
  struct Block {
    Block* next;
  };
  Block* head[kClasses] = {};
  std::size_t count[kClasses] = {};
  ~FreeLists() {
    for (Block*& h : head) {
      while (h) {
        unpoison(h, sizeof(Block));
        ::operator delete(std::exchange(h, h->next));
      }
    }
  }
};

thread_local FreeLists lists;

constexpr std::size_t size_class(std::size_t n) noexcept { return (n + kGranule - 1) / kGranule - 1; }

}  // namespace

void* allocate_frame(std::size_t n) {
  const std::size_t c = size_class(n);
  if (c >= kClasses) return ::operator new(n);
  if (FreeLists::Block* b = lists.head[c]) {
    unpoison(b, sizeof(FreeLists::Block));
    lists.head[c] = b->next;
    --lists.count[c];
    unpoison(b, (c + 1) * kGranule);
    return b;
  }
  // Always the whole size class, so any block of a class can serve any frame of that class.
  return ::operator new((c + 1) * kGranule);
}

void deallocate_frame(void* p, std::size_t n) noexcept {
  const std::size_t c = size_class(n);
  if (c >= kClasses || !recycling.load(std::memory_order_relaxed) || lists.count[c] >= kKeepPerClass) {
    ::operator delete(p);
    return;
  }
  auto* b = static_cast<FreeLists::Block*>(p);
  b->next = lists.head[c];
  lists.head[c] = b;
  ++lists.count[c];
  poison(b, (c + 1) * kGranule);  // a resumed dead frame is still caught by ASan
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
