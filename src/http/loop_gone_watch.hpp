// loop_gone_watch.hpp — tells an HTTP client or server that its Loop is being destroyed.
#pragma once

#include <cstddef>
#include <utility>

#include "duet/detail/loop_core.hpp"

namespace duet::http::detail {

/// Tells its owner (a client's or a server's core) that the Loop is being destroyed. The owner then
/// stops watching the stop tokens its requests were given, so that a stop requested afterwards never
/// reaches the freed loop (and a server destroys its body readers still waiting, uncalled). A duet
/// resource, one per owner, made and freed on the loop as duet's requests are. It stands, in the
/// Loop's "pending" report, for the owner's requests that nothing else on the loop stands for (a
/// client's requests queued for a connection, or paused): `owner->unseen_requests()`, if it has it.
class LoopGoneWatch final : public duet::detail::Resource {
 public:
  using Gone = void (*)(void* owner) noexcept;
  using Waiting = std::size_t (*)(const void* owner) noexcept;

  /// Makes the watch on `loop` and stores it in `slot`, which the Loop's end clears before calling
  /// `owner->loop_gone()` (noexcept; the owner may go there).
  template <class Owner>
  static void make(duet::detail::LoopCore& loop, LoopGoneWatch*& slot, Owner* owner) {
    Waiting waiting = nullptr;
    if constexpr (requires(const Owner& o) { o.unseen_requests(); })
      waiting = [](const void* self) noexcept { return static_cast<const Owner*>(self)->unseen_requests(); };
    slot = loop.make<LoopGoneWatch>(
        &loop, &slot, owner, [](void* self) noexcept { static_cast<Owner*>(self)->loop_gone(); }, waiting);
  }
  /// The owner goes first (or no longer needs to hear): frees the watch in `slot`, if the Loop's end
  /// has not taken it.
  static void drop(LoopGoneWatch*& slot) noexcept {
    if (slot) slot->loop_->destroy(std::exchange(slot, nullptr));
  }

  LoopGoneWatch(duet::detail::LoopCore* loop, LoopGoneWatch** slot, void* owner, Gone gone, Waiting waiting) noexcept
      : loop_(loop), slot_(slot), owner_(owner), gone_(gone), waiting_(waiting) {}
  bool pending() const noexcept override { return pending_count() > 0; }
  std::size_t pending_count() const noexcept override { return waiting_ ? waiting_(owner_) : 0; }
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
  Waiting waiting_;
};

}  // namespace duet::http::detail
