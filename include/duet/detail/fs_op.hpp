// duet/detail/fs_op.hpp — the request object behind every duet::fs operation, and how one starts.
//
// One pooled `FsOp` per operation holds its `uv_fs_t` (request_op.hpp gives the life cycle) and what
// the request needs until it completes — its `State`: the bytes to write, the room to read into, the
// path, or the open directory being read. On completion:
//  - `extract` turns a successful request into the callback's result (unused when Result is void);
//  - a success whose result will not be delivered (the operation was cancelled while it ran, or the
//    loop is closing) is undone: by `discard` if the operation has one (a temporary file or folder
//    nobody learnt the name of is removed), otherwise by building the result and dropping it (an
//    opened file or directory closes itself).
// Arguments duet refuses before libuv sees them are reported with `fail`: on a later turn, like
// every other failure.
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "duet/detail/chrono.hpp"
#include "duet/detail/request_op.hpp"
#include "duet/error.hpp"
#include "duet/loop.hpp"

namespace duet::fs::detail {
using duet::detail::LoopCore;
using duet::detail::RequestOp;

template <class Result, class Cb, class State = std::string>
class FsOp final : public RequestOp<FsOp<Result, Cb, State>, uv_fs_t, Cb> {
  using Base = RequestOp<FsOp<Result, Cb, State>, uv_fs_t, Cb>;

 public:
  /// Turns a successful request into the callback's result (unused when Result is void).
  using Extract = Result (*)(uv_fs_t&, State&);
  /// Undoes a successful request whose result is dropped (null: building and dropping it is enough).
  using Discard = void (*)(uv_fs_t&) noexcept;

  FsOp(LoopCore* core, Cb&& cb, Extract extract, State state, bool cancellable, Discard discard)
      : Base(core, std::move(cb)),
        state(std::move(state)),
        extract_(extract),
        discard_(discard),
        cancellable_(cancellable) {}

  // A close is never cancelled: the descriptor was handed over, so a close that did not run would leak it.
  void on_stop() noexcept {
    if (cancellable_) Base::on_stop();
  }
  void abandon() noexcept override {
    if (cancellable_) Base::abandon();
  }

  State state;  // what the request uses until it completes

  static void on_done(uv_fs_t* req) noexcept {
    auto* self = static_cast<FsOp*>(req->data);
    const int status = req->result < 0 ? static_cast<int>(req->result) : 0;
    const std::error_code ec = self->status_error(status);
    const bool undelivered = ec || self->loop_closing();
    if (status == 0 && undelivered && self->discard_) self->discard_(*req);
    if constexpr (std::is_void_v<Result>) {
      uv_fs_req_cleanup(req);
      if (self->loop_closing()) return self->finish_silently();
      self->complete(ec);
    } else {
      // A result that arrives after a cancel (or while the loop closes) is built and dropped, so an
      // opened descriptor is closed — unless `discard` has undone it already.
      Result result{};
      if (status == 0 && !(undelivered && self->discard_)) {
        try {
          result = self->extract_(*req, self->state);
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
  Discard discard_;
  bool cancellable_;
};

/// Starts one fs request: `submit(uv_loop_t*, uv_fs_t*, State&, uv_fs_cb)` calls uv_fs_*.
template <class Result, class State = std::string, class Callback, class Submit>
void start(Loop& loop, Callback&& cb, typename FsOp<Result, std::decay_t<Callback>, State>::Extract extract,
           State state, Submit&& submit, bool cancellable = true,
           typename FsOp<Result, std::decay_t<Callback>, State>::Discard discard = nullptr) {
  using Op = FsOp<Result, std::decay_t<Callback>, State>;
  auto& core = loop.core();
  Op* op = core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)), extract, std::move(state),
                         cancellable, discard);
  if (int rc = submit(core.uv(), &op->req, op->state, &Op::on_done); rc < 0)
    return op->template fail_submission<Result>(rc);
  if (cancellable) op->watch_stop();
}

/// Reports `ec` to `cb` on a later turn of the loop, without starting a request.
template <class Result, class Callback>
void fail(Loop& loop, Callback&& cb, std::error_code ec) {
  duet::detail::fail_later<Result>(loop.core(), std::decay_t<Callback>(std::forward<Callback>(cb)), ec);
}

/// A path libuv would silently cut short: one holding a NUL byte (everything after it would be ignored).
/// (Measured with the C string's length: GCC 12 warns falsely about `find('\0')` on a moved-into string.)
inline bool bad_path(const std::string& path) noexcept {
  return std::char_traits<char>::length(path.c_str()) != path.size();
}

/// The seconds since the epoch that libuv's utime calls take.
inline double seconds_since_epoch(std::chrono::system_clock::time_point t) noexcept {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

}  // namespace duet::fs::detail
