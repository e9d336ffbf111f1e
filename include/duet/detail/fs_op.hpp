// duet/detail/fs_op.hpp — the request object behind every duet::fs operation, and how one starts.
//
// One pooled `FsOp` per operation holds its `uv_fs_t` (request_op.hpp gives the life cycle), the
// bytes it writes or the room it reads into, and `extract`, which turns a successful request into the
// callback's result. A result that arrives after a cancel (or while the loop closes) is built and
// dropped, so that an opened file closes itself.
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "duet/detail/request_op.hpp"
#include "duet/error.hpp"
#include "duet/loop.hpp"

namespace duet::fs::detail {
using duet::detail::LoopCore;
using duet::detail::RequestOp;

template <class Result, class Cb>
class FsOp final : public RequestOp<FsOp<Result, Cb>, uv_fs_t, Cb> {
  using Base = RequestOp<FsOp<Result, Cb>, uv_fs_t, Cb>;

 public:
  /// Turns a successful request into the callback's result (unused when Result is void).
  using Extract = Result (*)(uv_fs_t&, std::string&);

  FsOp(LoopCore* core, Cb&& cb, Extract extract, std::string buffer, bool cancellable)
      : Base(core, std::move(cb)), buffer(std::move(buffer)), extract_(extract), cancellable_(cancellable) {}

  // A close is never cancelled: the descriptor was handed over, so a close that did not run would leak it.
  void on_stop() noexcept {
    if (cancellable_) Base::on_stop();
  }
  void abandon() noexcept override {
    if (cancellable_) Base::abandon();
  }

  std::string buffer;  // bytes to write, or room to read into

  static void on_done(uv_fs_t* req) noexcept {
    auto* self = static_cast<FsOp*>(req->data);
    const int status = req->result < 0 ? static_cast<int>(req->result) : 0;
    const std::error_code ec = self->status_error(status);
    if constexpr (std::is_void_v<Result>) {
      uv_fs_req_cleanup(req);
      if (self->loop_closing()) return self->finish_silently();
      self->complete(ec);
    } else {
      // A result that arrives after a cancel (or while the loop closes) is built and dropped, so an
      // opened descriptor is closed.
      Result result{};
      if (status == 0) {
        try {
          result = self->extract_(*req, self->buffer);
        } catch (...) {
          uv_fs_req_cleanup(req);
          if (self->loop_closing()) return self->finish_silently();
          return self->complete(uv_error(UV_ENOMEM), Result{});
        }
        if (ec) result = Result{};
      }
      uv_fs_req_cleanup(req);
      if (self->loop_closing()) return self->finish_silently();
      self->complete(ec, std::move(result));
    }
  }

 private:
  Extract extract_;
  bool cancellable_;
};

/// Starts one fs request: `submit(uv_loop_t*, uv_fs_t*, std::string& buffer, uv_fs_cb)` calls uv_fs_*.
template <class Result, class Callback, class Submit>
void start(Loop& loop, Callback&& cb, typename FsOp<Result, std::decay_t<Callback>>::Extract extract,
           std::string buffer, Submit&& submit, bool cancellable = true) {
  using Op = FsOp<Result, std::decay_t<Callback>>;
  auto& core = loop.core();
  Op* op =
      core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)), extract, std::move(buffer), cancellable);
  if (int rc = submit(core.uv, &op->req, op->buffer, &Op::on_done); rc < 0)
    return op->template fail_submission<Result>(rc);
  if (cancellable) op->watch_stop();
}

}  // namespace duet::fs::detail
