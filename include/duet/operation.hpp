// duet/operation.hpp — your own operation: wrap a libuv request duet does not cover, and get what
// duet's own operations have — both faces, cancellation, and a clean Loop shutdown.
//
//     duet::start_request<Result, uv_xxx_t>(loop, cb,
//         [&](uv_loop_t* uv, uv_xxx_t* req, auto done) { return uv_xxx(uv, req, ..., done); },   // submit
//         [](uv_xxx_t* req, ...) { return duet::Completion<Result>{status, value}; });            // complete
//
// `start_request` takes a request object from the loop's pool (the `Req`, your two functions and the
// callback, in one block), links it on the loop and calls `submit(uv_loop_t*, Req*, done)`, which
// starts the libuv request with `done` as its C callback (`done` converts to whatever callback type
// the libuv function takes: `uv_fs_cb`, `uv_work_cb`'s after-callback, `uv_getnameinfo_cb`, ...)
// and returns libuv's status. When libuv calls back, `complete(req, the callback's other
// arguments...)` turns the request into a `Completion<Result>`: libuv's status (0 or a negative UV_E*
// code) and, unless `Result` is void, the value. `complete` always runs exactly once — also after a
// cancel and while the Loop is being destroyed — so it is the place to free what libuv allocated
// (`uv_fs_req_cleanup`, `uv_freeaddrinfo`).
//
// Then, as for every duet operation: `cb(std::error_code[, Result])` runs once, on the loop thread,
// never inside `start_request` (a submission that fails calls back on the next turn); on error the
// result is default-constructed. The callback's stop token cancels: `uv_cancel` (a request already
// running on the thread pool finishes, and the callback gets UV_ECANCELED). Destroying the Loop
// cancels the request and calls nothing back. Anything `cb` throws goes to the loop's error hook.
// If `complete` throws, the exception goes to the error hook and the callback gets UV_ENOMEM.
//
// The coroutine face is one line: `duet::awaitable<Result>([=, &loop](auto cb) { my_op(loop, ..., std::move(cb)); })`.
// The operation starts only when the awaitable is awaited, so the lambda captures the arguments by
// value (a `[&]` capture of a function's parameters dangles once the awaitable is returned from it).
// docs/your-own-operation.md has a whole example.
//
// Cost: one pooled allocation per operation, recycled (none once the pool is warm).
#pragma once

#include <uv.h>

#include <exception>
#include <new>
#include <type_traits>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/loop.hpp"

namespace duet {

/// What `complete` returns: libuv's status, and the operation's value unless `Result` is void.
template <class Result>
struct Completion {
  int status = 0;
  Result value{};
};
template <>
struct Completion<void> {
  int status = 0;
};

namespace detail {

template <class Result, class Req, class Cb, class Complete>
class CustomRequestOp final : public RequestOp<CustomRequestOp<Result, Req, Cb, Complete>, Req, Cb> {
  using Base = RequestOp<CustomRequestOp, Req, Cb>;

 public:
  CustomRequestOp(LoopCore* core, Cb&& cb, Complete&& complete)
      : Base(core, std::move(cb)), complete_(std::move(complete)) {}

  template <class... A>
  static void on_done(Req* req, A... args) noexcept {
    auto* self = static_cast<CustomRequestOp*>(req->data);
    Completion<Result> c;
    try {
      c = self->complete_(req, args...);
    } catch (...) {
      if (!self->loop_closing()) self->report(std::current_exception());
      c = Completion<Result>{UV_ENOMEM};
    }
    if (self->loop_closing()) return self->finish_silently();
    const std::error_code ec = self->status_error(c.status < 0 ? c.status : 0);
    if constexpr (std::is_void_v<Result>) {
      self->complete(ec);
    } else {
      if (ec) c.value = Result{};
      self->complete(ec, std::move(c.value));
    }
  }

  /// Converts to the libuv callback type the submit function needs: `void (*)(Req*, A...)`.
  struct Done {
    template <class... A>
    using Fn = void (*)(Req*, A...);
    template <class... A>
    operator Fn<A...>() const noexcept {  // NOLINT: implicit, to pass as libuv's callback
      return &CustomRequestOp::on_done<A...>;
    }
  };

 private:
  Complete complete_;
};

}  // namespace detail

/// Starts your own libuv request (see the top of this header); calls `cb(std::error_code[, Result])`.
template <class Result, class Req, class Callback, class Submit, class Complete>
void start_request(Loop& loop, Callback&& cb, Submit&& submit, Complete&& complete) {
  using Op = detail::CustomRequestOp<Result, Req, std::decay_t<Callback>, std::decay_t<Complete>>;
  auto& core = loop.core();
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)),
                         std::decay_t<Complete>(std::forward<Complete>(complete)));
  if (int rc = submit(core.uv(), &op->req, typename Op::Done{}); rc < 0) return op->template fail_submission<Result>(rc);
  op->watch_stop();
}

}  // namespace duet
