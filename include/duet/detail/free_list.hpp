// duet/detail/free_list.hpp — the one recycling allocator: free lists by size class.
//
// Blocks of 64, 128, ... `Classes` × 64 bytes are kept on a list per size class when freed and handed
// out again to the next allocation of the same class, so a steady stream of objects of the same
// sizes allocates nothing. Each list keeps at most `KeepPerClass` blocks: after a burst the rest are
// given back, where other sizes can use them. Larger sizes go straight to `operator new`. Not
// thread-safe: a loop's request objects use one per loop (`LoopCore`), coroutine frames one per
// thread (task.cpp).
//
// Where new blocks come from:
// - Plain (`Chunked` false, the loop's requests): `operator new`, one block at a time, and given
//   back with `operator delete`.
// - Chunked (coroutine frames): carved in turn from 32 KiB chunks, which costs a pointer bump instead
//   of a trip through malloc — what a burst of tasks created up front (the flag programs, a
//   `when_all` over thousands) pays for each frame. A chunk is freed once every block carved from it
//   has been given back; until then one live block keeps its whole chunk. Blocks may be given back
//   on any thread (a frame destroyed on another loop's thread goes to that thread's lists): a
//   chunk's count of blocks out is atomic, touched only when a block is given back for good, not
//   when it is recycled.
//
// A block on a list (and a chunk's part not yet carved) is poisoned for AddressSanitizer, so a use
// after free of a recycled object is reported as it would be without the lists. Only the layout is
// here: the functions are compiled into the library (src/free_list_impl.hpp, instantiated for the
// two instances duet uses in src/free_list.cpp), so whether blocks are poisoned is decided by how the
// library was built, never by the application including this header. An application built with ASan
// against a library built without it (or the other way round) sees consistent pools: poisoned and
// unpoisoned by the same code.
#pragma once

#include <cstddef>

namespace duet::detail {

struct Chunk;

template <std::size_t Classes, std::size_t KeepPerClass, bool Chunked = false>
class SizeClassFreeList {
 public:
  static constexpr std::size_t kGranule = 64;

  SizeClassFreeList() = default;
  SizeClassFreeList(const SizeClassFreeList&) = delete;
  SizeClassFreeList& operator=(const SizeClassFreeList&) = delete;
  ~SizeClassFreeList();

  void* allocate(std::size_t n);
  /// Frees `p` (allocated here, on any thread, with size `n`): kept for reuse unless `keep` is false
  /// or its list is full.
  void deallocate(void* p, std::size_t n, bool keep = true) noexcept;
  /// Blocks kept on the lists, in all classes (for tests and diagnostics).
  std::size_t kept() const noexcept;

 private:
  struct Block {
    Block* next;
  };
  static constexpr std::size_t size_class(std::size_t n) noexcept { return (n + kGranule - 1) / kGranule - 1; }
  /// A new block of `bytes` (a class's whole size).
  void* fresh(std::size_t bytes);
  /// Gives a block of `bytes` back for good.
  static void give_back(void* p, std::size_t bytes) noexcept;
  /// Chunked: stops carving from the current chunk (freed now if nothing carved from it is out).
  void retire_chunk() noexcept;

  Block* free_[Classes] = {};
  std::size_t count_[Classes] = {};
  // Chunked only: the chunk blocks are carved from, where the next block starts, and how many blocks
  // were carved from it.
  Chunk* chunk_ = nullptr;
  char* bump_ = nullptr;
  char* end_ = nullptr;
  std::size_t carved_ = 0;
  bool ended_ = false;  // destroyed (a thread_local's lifetime is over, and others may still use it)
};

// The two instances, compiled in src/free_list.cpp: SizeClassFreeList<8, 1024> for a loop's request
// objects (LoopCore), SizeClassFreeList<32, 4096, true> for coroutine frames, per thread (task.cpp,
// which sees the definitions and inlines the lists' fast path). Code that includes this header sees
// only the declarations, and calls the library's.

}  // namespace duet::detail
