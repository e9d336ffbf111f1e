// The two recycling allocators duet uses (include/duet/detail/free_list.hpp), compiled into the
// library only, with the poisoning decided by the library's own build.
#include "free_list_impl.hpp"

namespace duet::detail {

template class SizeClassFreeList<8, 1024>;
template class SizeClassFreeList<32, 4096, true>;

}  // namespace duet::detail
