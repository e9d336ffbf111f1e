// duet/detail/free_list.hpp — the one recycling allocator: free lists by size class.
//
// Blocks of 64, 128, ... `Classes` × 64 bytes are kept on a list per size class when freed and handed
// out again to the next allocation of the same class, so a steady stream of objects of the same
// sizes allocates nothing. Each list keeps at most `KeepPerClass` blocks: after a burst the rest go
// back to the global allocator, where other sizes can use them. Larger sizes go straight to
// `operator new`. Not thread-safe: a loop's request objects use one per loop (`LoopCore`), coroutine
// frames one per thread (task.cpp).
//
// A block on a list is poisoned for AddressSanitizer, so a use after free of a recycled object is
// reported as it would be without the lists.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

#include "duet/detail/poison.hpp"

namespace duet::detail {

template <std::size_t Classes, std::size_t KeepPerClass>
class SizeClassFreeList {
 public:
  static constexpr std::size_t kGranule = 64;

  SizeClassFreeList() = default;
  SizeClassFreeList(const SizeClassFreeList&) = delete;
  SizeClassFreeList& operator=(const SizeClassFreeList&) = delete;
  ~SizeClassFreeList() {
    for (Block*& head : free_) {
      while (head) {
        unpoison(head, sizeof(Block));
        ::operator delete(std::exchange(head, head->next));
      }
    }
  }

  void* allocate(std::size_t n) {
    const std::size_t c = size_class(n);
    if (c >= Classes) return ::operator new(n);
    if (Block* b = free_[c]) {
      unpoison(b, sizeof(Block));
      free_[c] = b->next;
      --count_[c];
      unpoison(b, (c + 1) * kGranule);
      return b;
    }
    // Always the whole size class, so any block of a class can serve any object of that class.
    return ::operator new((c + 1) * kGranule);
  }

  /// Frees `p` (allocated here with size `n`): kept for reuse unless `keep` is false or its list is full.
  void deallocate(void* p, std::size_t n, bool keep = true) noexcept {
    const std::size_t c = size_class(n);
    if (c >= Classes || !keep || count_[c] >= KeepPerClass) {
      ::operator delete(p);
      return;
    }
    auto* b = static_cast<Block*>(p);
    b->next = free_[c];
    free_[c] = b;
    ++count_[c];
    poison(b, (c + 1) * kGranule);
  }

  /// Blocks kept on the lists, in all classes (for tests and diagnostics).
  std::size_t kept() const noexcept {
    std::size_t n = 0;
    for (std::size_t k : count_) n += k;
    return n;
  }

 private:
  struct Block {
    Block* next;
  };
  static constexpr std::size_t size_class(std::size_t n) noexcept { return (n + kGranule - 1) / kGranule - 1; }
  Block* free_[Classes] = {};
  std::size_t count_[Classes] = {};
};

}  // namespace duet::detail
