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
// reported as it would be without the lists. Only the layout is here: the functions are compiled
// into the library (src/free_list.cpp, for the two instances duet uses), so whether blocks are
// poisoned is decided by how the library was built, never by the application including this header.
// An application built with ASan against a library built without it (or the other way round) sees
// consistent pools: poisoned and unpoisoned by the same code.
#pragma once

#include <cstddef>

namespace duet::detail {

template <std::size_t Classes, std::size_t KeepPerClass>
class SizeClassFreeList {
 public:
  static constexpr std::size_t kGranule = 64;

  SizeClassFreeList() = default;
  SizeClassFreeList(const SizeClassFreeList&) = delete;
  SizeClassFreeList& operator=(const SizeClassFreeList&) = delete;
  ~SizeClassFreeList();

  void* allocate(std::size_t n);
  /// Frees `p` (allocated here with size `n`): kept for reuse unless `keep` is false or its list is full.
  void deallocate(void* p, std::size_t n, bool keep = true) noexcept;
  /// Blocks kept on the lists, in all classes (for tests and diagnostics).
  std::size_t kept() const noexcept;

 private:
  struct Block {
    Block* next;
  };
  static constexpr std::size_t size_class(std::size_t n) noexcept { return (n + kGranule - 1) / kGranule - 1; }
  Block* free_[Classes] = {};
  std::size_t count_[Classes] = {};
};

// The two instances, compiled in src/free_list.cpp.
extern template class SizeClassFreeList<8, 1024>;   // a loop's request objects (LoopCore)
extern template class SizeClassFreeList<32, 4096>;  // coroutine frames, per thread (task.cpp)

}  // namespace duet::detail
