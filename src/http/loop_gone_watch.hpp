// loop_gone_watch.hpp — tells an HTTP client or server that its Loop is being destroyed.
#pragma once

#include <utility>

#include "duet/detail/loop_core.hpp"

namespace duet::http::detail {

/// Tells its owner (a client's or a server's core) that the Loop is being destroyed. The owner then
/// stops watching the stop tokens its requests were given, so that a stop requested afterwards never
/// reaches the freed loop (and a server destroys its body readers still waiting, uncalled). A duet
/// resource (nothing a user waits for): one per owner, made and freed on the loop as duet's requests are.
class LoopGoneWatch final : public duet::detail::Resource {
 public:
  using Gone = void (*)(void* owner) noexcept;

  /// Makes the watch on `loop` and stores it in `slot`, which the Loop's end clears before calling
  /// `owner->loop_gone()` (noexcept; the owner may go there).
  template <class Owner>
  static void make(duet::detail::LoopCore& loop, LoopGoneWatch*& slot, Owner* owner) {
    slot = loop.make<LoopGoneWatch>(&loop, &slot, owner,
                                    [](void* self) noexcept { static_cast<Owner*>(self)->loop_gone(); });
  }
  /// The owner goes first (or no longer needs to hear): frees the watch in `slot`, if the Loop's end
  /// has not taken it.
  static void drop(LoopGoneWatch*& slot) noexcept {
    if (slot) slot->loop_->destroy(std::exchange(slot, nullptr));
  }

  LoopGoneWatch(duet::detail::LoopCore* loop, LoopGoneWatch** slot, void* owner, Gone gone) noexcept
      : loop_(loop), slot_(slot), owner_(owner), gone_(gone) {}
  bool pending() const noexcept override { return false; }
  void abandon() noexcept override {
    *slot_ = nullptr;
    gone_(owner_);
    loop_->destroy(this);
  }

 private:
  duet::detail::LoopCore* loop_;
  LoopGoneWatch** slot_;
  void* owner_;
  Gone gone_;
};

}  // namespace duet::http::detail
