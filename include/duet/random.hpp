// duet/random.hpp — cryptographically strong random bytes from the system, on libuv's thread pool.
//
//     duet::random_bytes(loop, 32, [](std::error_code ec, std::string key) { ... });   // 32 bytes
//     std::string nonce = co_await duet::random_bytes(loop, 12);                      // the coroutine face
//
// `uv_random` reads the system's generator (getrandom(2), or /dev/urandom where there is none) on a
// pool thread, since it may block until the system has gathered enough entropy (early at boot);
// the bytes come back in a `std::string` of exactly `n` bytes, on the loop thread. `n == 0` gives
// an empty string (still on a later turn, like any result).
//
// Failures: UV_E2BIG when `n` is more than libuv takes in one request (2^31 - 1 bytes; refused
// before anything is allocated); the system's error if its generator fails (UV_ENOSYS, UV_EIO, ...);
// UV_ECANCELED when cancelled (a request still queued is `uv_cancel`ed; one already running finishes
// and its bytes are dropped). The result is empty on error.
//
// Cost: one pooled request object, plus the `n`-byte string it fills and hands over.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/error.hpp"
#include "duet/loop.hpp"

namespace duet {
namespace detail {

template <class Cb>
class RandomOp final : public RequestOp<RandomOp<Cb>, uv_random_t, Cb> {
  using Base = RequestOp<RandomOp<Cb>, uv_random_t, Cb>;

 public:
  RandomOp(LoopCore* core, Cb&& cb, std::size_t n) : Base(core, std::move(cb)), bytes(n, '\0') {}

  std::string bytes;  // filled on the pool thread

  static void on_done(uv_random_t* req, int status, void*, std::size_t) noexcept {
    auto* self = static_cast<RandomOp*>(req->data);
    if (self->loop_closing()) return self->finish_silently();
    const std::error_code ec = self->status_error(status);
    std::string result;
    if (!ec) result = std::move(self->bytes);
    self->complete(ec, std::move(result));
  }
};

/// The most bytes one uv_random request takes.
inline constexpr std::size_t kMaxRandomBytes = 0x7FFFFFFF;

}  // namespace detail

/// Fills `n` bytes from the system's secure random generator on the thread pool; calls
/// `cb(std::error_code, std::string)` with exactly `n` bytes.
template <class Callback>
requires std::invocable<Callback&, std::error_code, std::string>
void random_bytes(Loop& loop, std::size_t n, Callback&& cb) {
  using Op = detail::RandomOp<std::decay_t<Callback>>;
  auto& core = loop.core();
  if (n > detail::kMaxRandomBytes)  // libuv would refuse it too, but only after the buffer was allocated
    return detail::fail_later<std::string>(core, std::decay_t<Callback>(std::forward<Callback>(cb)),
                                           uv_error(UV_E2BIG));
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)), n);
  if (int rc = uv_random(core.uv(), &op->req, op->bytes.data(), op->bytes.size(), 0, &Op::on_done); rc < 0)
    return op->template fail_submission<std::string>(rc);
  op->watch_stop();
}

/// Coroutine face: `std::string bytes = co_await duet::random_bytes(loop, n);`
template <class = void>
[[nodiscard]] inline auto random_bytes(Loop& loop, std::size_t n) {
  return awaitable<std::string>([&loop, n](auto cb) { duet::random_bytes(loop, n, std::move(cb)); });
}

}  // namespace duet
