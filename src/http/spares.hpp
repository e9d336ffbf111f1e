// Spares: a short list of objects given back after use, for the next user to take instead of
// allocating one. The server keeps its request parse states this way, the client its response
// parsers: an idle connection or a request waiting for its response holds none, and a busy one
// reuses them. At most `Max` are kept; the rest are freed.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace duet::http::detail {

template <class T, std::size_t Max = 64>
class Spares {
 public:
  /// A spare, or null if none is kept.
  std::unique_ptr<T> take() noexcept {
    if (kept_.empty()) return nullptr;
    auto p = std::move(kept_.back());
    kept_.pop_back();
    return p;
  }
  /// Keeps `p` for the next `take`, unless `Max` are kept already.
  void give_back(std::unique_ptr<T> p) noexcept {
    if (!p || kept_.size() >= Max) return;
    try {
      kept_.push_back(std::move(p));
    } catch (...) {  // out of memory: it is freed instead
    }
  }

 private:
  std::vector<std::unique_ptr<T>> kept_;
};

}  // namespace duet::http::detail
