// duet/detail/poison.hpp — lets AddressSanitizer see into duet's recycling pools.
//
// A block on a free list is poisoned, so touching a recycled request object or coroutine frame after
// it was freed is reported as a use after free, as it would be without the pools. No-ops otherwise.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace duet::detail {

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

}  // namespace duet::detail
