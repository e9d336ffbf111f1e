#include "duet/event.hpp"

#include <system_error>

namespace duet {

Event::~Event() {
  serving_.end();  // a set() further up the stack must stop touching *this
  waiters_.fail_all(uv_error(UV_ECANCELED));
}

void Event::set() {
  set_ = true;
  wake_before_ = next_ticket_;  // everyone queued now, whatever their callbacks do meanwhile
  serving_.run([this] {
    if (waiters_.empty() || waiters_.front_payload() >= wake_before_) return false;
    waiters_.take_front().cb(std::error_code());
    return true;
  });
}

}  // namespace duet
