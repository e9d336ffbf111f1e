// The recycling allocator's functions (include/duet/detail/free_list.hpp). A header of the library's
// own, never installed: the poisoning is decided by the library's build. free_list.cpp instantiates
// the two allocators duet uses; task.cpp includes this too, so that a coroutine frame's allocation
// and release (the lists' fast path) are inlined there.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <new>
#include <utility>

#include "duet/detail/free_list.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace duet::detail {
namespace free_list {

inline void poison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_POISON_MEMORY_REGION(p, n);
#endif
}

inline void unpoison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
}

// Chunks are aligned to their size, so a block finds its chunk by masking its address. 32 KiB keeps
// the aligned allocation on malloc's heap (glibc serves requests of 128 KiB and more, which an
// aligned 64 KiB would become, with mmap).
inline constexpr std::size_t kChunkBytes = 32 * 1024;
// The count a chunk starts with while blocks are still carved from it; replaced by the number carved
// when it is retired. Far above any number of blocks a chunk can hold, so blocks given back before
// then never bring the count to zero.
inline constexpr std::ptrdiff_t kCarvingBias = std::numeric_limits<std::ptrdiff_t>::max() / 2;

}  // namespace free_list

/// The header at the start of each chunk: how many of its blocks are out (plus the carving bias).
struct alignas(64) Chunk {
  std::atomic<std::ptrdiff_t> out{free_list::kCarvingBias};
};

namespace free_list {

inline Chunk* chunk_of(void* block) noexcept {
  return reinterpret_cast<Chunk*>(reinterpret_cast<std::uintptr_t>(block) & ~std::uintptr_t(kChunkBytes - 1));
}

inline void free_chunk(Chunk* c) noexcept {
  unpoison(c, kChunkBytes);
  c->~Chunk();
  ::operator delete(static_cast<void*>(c), std::align_val_t(kChunkBytes));
}

/// Takes `n` from the chunk's count; frees it if that was the last of it.
inline void drop(Chunk* c, std::ptrdiff_t n) noexcept {
  if (c->out.fetch_sub(n, std::memory_order_acq_rel) == n) free_chunk(c);
}

}  // namespace free_list

using free_list::poison;
using free_list::unpoison;

template <std::size_t Classes, std::size_t KeepPerClass, bool Chunked>
SizeClassFreeList<Classes, KeepPerClass, Chunked>::~SizeClassFreeList() {
  for (std::size_t c = 0; c < Classes; ++c) {
    while (Block* b = free_[c]) {
      unpoison(b, sizeof(Block));
      free_[c] = b->next;
      give_back(b, (c + 1) * kGranule);
    }
    // A thread_local destroyed after this one may still free (or make) frames: from now on every
    // block is given back at once, and no chunk stays current.
    count_[c] = KeepPerClass;
  }
  retire_chunk();
  ended_ = true;
}

template <std::size_t Classes, std::size_t KeepPerClass, bool Chunked>
void* SizeClassFreeList<Classes, KeepPerClass, Chunked>::allocate(std::size_t n) {
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
  return fresh((c + 1) * kGranule);
}

template <std::size_t Classes, std::size_t KeepPerClass, bool Chunked>
void SizeClassFreeList<Classes, KeepPerClass, Chunked>::deallocate(void* p, std::size_t n, bool keep) noexcept {
  const std::size_t c = size_class(n);
  if (c >= Classes) {
    ::operator delete(p);
    return;
  }
  if (!keep || count_[c] >= KeepPerClass) {
    poison(p, (c + 1) * kGranule);
    give_back(p, (c + 1) * kGranule);
    return;
  }
  auto* b = static_cast<Block*>(p);
  b->next = free_[c];
  free_[c] = b;
  ++count_[c];
  poison(b, (c + 1) * kGranule);
}

template <std::size_t Classes, std::size_t KeepPerClass, bool Chunked>
void* SizeClassFreeList<Classes, KeepPerClass, Chunked>::fresh(std::size_t bytes) {
  if constexpr (!Chunked) {
    return ::operator new(bytes);
  } else {
    static_assert(Classes * kGranule <= free_list::kChunkBytes / 8, "a chunk holds at least 8 of its largest blocks");
    if (!chunk_ || bytes > static_cast<std::size_t>(end_ - bump_)) {
      using free_list::kChunkBytes;
      void* memory = ::operator new(kChunkBytes, std::align_val_t(kChunkBytes));
      retire_chunk();
      chunk_ = new (memory) Chunk;
      bump_ = static_cast<char*>(memory) + sizeof(Chunk);
      end_ = static_cast<char*>(memory) + kChunkBytes;
      carved_ = 0;
      poison(bump_, kChunkBytes - sizeof(Chunk));
    }
    void* p = bump_;
    bump_ += bytes;
    ++carved_;
    unpoison(p, bytes);
    if (ended_) retire_chunk();  // see the destructor: the chunk goes when this block comes back
    return p;
  }
}

template <std::size_t Classes, std::size_t KeepPerClass, bool Chunked>
void SizeClassFreeList<Classes, KeepPerClass, Chunked>::give_back(void* p,
                                                                  [[maybe_unused]] std::size_t bytes) noexcept {
  if constexpr (!Chunked) {
    unpoison(p, bytes);
    ::operator delete(p);
  } else {
    free_list::drop(free_list::chunk_of(p), 1);
  }
}

template <std::size_t Classes, std::size_t KeepPerClass, bool Chunked>
void SizeClassFreeList<Classes, KeepPerClass, Chunked>::retire_chunk() noexcept {
  if constexpr (Chunked) {
    if (!chunk_) return;
    // The bias becomes the number of blocks carved: the count is then exactly the blocks still out.
    free_list::drop(std::exchange(chunk_, nullptr), free_list::kCarvingBias - static_cast<std::ptrdiff_t>(carved_));
    bump_ = end_ = nullptr;
    carved_ = 0;
  }
}

template <std::size_t Classes, std::size_t KeepPerClass, bool Chunked>
std::size_t SizeClassFreeList<Classes, KeepPerClass, Chunked>::kept() const noexcept {
  std::size_t n = 0;
  for (std::size_t k : count_) n += k;
  return n;
}

}  // namespace duet::detail
