// The recycling allocator's functions (include/duet/detail/free_list.hpp), compiled into the library
// only, with the poisoning decided by the library's own build.
#include "duet/detail/free_list.hpp"

#include <new>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace duet::detail {
namespace {

void poison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_POISON_MEMORY_REGION(p, n);
#endif
}

void unpoison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
}

}  // namespace

template <std::size_t Classes, std::size_t KeepPerClass>
SizeClassFreeList<Classes, KeepPerClass>::~SizeClassFreeList() {
  for (Block*& head : free_) {
    while (head) {
      unpoison(head, sizeof(Block));
      ::operator delete(std::exchange(head, head->next));
    }
  }
}

template <std::size_t Classes, std::size_t KeepPerClass>
void* SizeClassFreeList<Classes, KeepPerClass>::allocate(std::size_t n) {
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

template <std::size_t Classes, std::size_t KeepPerClass>
void SizeClassFreeList<Classes, KeepPerClass>::deallocate(void* p, std::size_t n, bool keep) noexcept {
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

template <std::size_t Classes, std::size_t KeepPerClass>
std::size_t SizeClassFreeList<Classes, KeepPerClass>::kept() const noexcept {
  std::size_t n = 0;
  for (std::size_t k : count_) n += k;
  return n;
}

template class SizeClassFreeList<8, 1024>;
template class SizeClassFreeList<32, 4096>;

}  // namespace duet::detail
