// duet/detail/wait_list.hpp — the one waiter queue behind Semaphore, Lock, Event and Queue.
//
// A `WaitList` holds callbacks waiting for something an owner hands out (a permit, a value, room in a
// queue), in arrival order. Each waiter may carry a payload (a value waiting to be pushed). The owner
// takes waiters from the front and calls them; the list itself does the rest:
//
// - Cancellation: a waiter whose callback has a stop token leaves the list when stop is requested and
//   is called with UV_ECANCELED (and value-initialised results) inside `request_stop()`. A stop
//   requested on another thread is posted to the callback's loop when it knows one (a coroutine's
//   Completion does); a plain callback knows no loop, so its stop must be requested on the owner's
//   thread. A callback whose token is already stopped is called at once, inside `push` (what it
//   throws reaches push's caller), and never waits. One cancelled later, or failed by `fail_all`,
//   must not throw: there is no caller to take it, so it is written to stderr.
// - Destruction: `fail_all` calls every waiter, in order, with the owner's error.
//
// `Serving` is the other half: the owner's "hand out to the waiters" loop. A call made from inside a
// waiter's callback (which would recurse) returns at once and leaves the work to the loop already
// running, so 100,000 chained hand-overs use a flat stack; the loop stops if a callback destroys the
// owner; an exception from one callback does not stop the others being served and is rethrown after.
//
// Cost: one allocation per waiter (the node, with the callback inline when it is small), and one stop
// registration per run of consecutive waiters that watch the same stop token on the same loop (the
// tasks of one `when_all` queueing at a semaphore share one), not one per waiter. A callback whose
// token lives outside it, so that moving the callback leaves the token where it was (a coroutine's
// Completion), says `static constexpr bool stop_token_outside = true;` and its token is not copied
// before the move. Not thread-safe: the owner's thread only.
#pragma once

#include <uv.h>

#include <concepts>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <stop_token>
#include <system_error>
#include <utility>
#include <variant>

#include "duet/cancellation.hpp"
#include "duet/detail/loop_core.hpp"
#include "duet/detail/unique_function.hpp"
#include "duet/error.hpp"
#include "duet/loop.hpp"

namespace duet::detail {

/// The loop a callback knows (an awaiting task's `Completion`), if any.
template <class Callback>
LoopCore* loop_core_of(const Callback& cb) noexcept {
  if constexpr (requires {
                  { cb.loop() } -> std::convertible_to<Loop*>;
                }) {
    Loop* loop = cb.loop();
    return loop ? &loop->core() : nullptr;
  } else {
    return nullptr;
  }
}

template <class Signature, class Payload = std::monostate>
class WaitList;

template <class... R, class Payload>
class WaitList<void(std::error_code, R...), Payload> {
 public:
  using Callback = UniqueFunction<void(std::error_code, R...)>;

  /// A waiter taken off the list: call `cb` (the payload is the owner's to use first).
  struct Taken {
    Callback cb;
    Payload payload;
  };

  WaitList() = default;
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;
  /// The owner must `fail_all` first if its waiters are to hear of its end.
  ~WaitList() { fail_all(uv_error(UV_ECANCELED)); }

  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }
  Payload& front_payload() noexcept { return head_->payload; }

  /// Queues `cb` at the back (with `payload`), or calls it with UV_ECANCELED at once if its stop
  /// token is already stopped.
  template <class Cb>
  void push(Cb&& cb, Payload payload = Payload()) {
    if constexpr (requires { cb.stop_token(); }) {
      if (cb.stop_token().stop_requested()) return cb(uv_error(UV_ECANCELED), R()...);  // the caller's call: may throw
    }
    push_unstopped(std::forward<Cb>(cb), std::move(payload));
  }

  /// `push` for a caller that has just seen `cb`'s stop token not stopped (with no code run since):
  /// queues `cb` without looking again.
  template <class Cb>
  void push_unstopped(Cb&& cb, Payload payload = Payload()) {
    if constexpr (requires { cb.stop_token(); }) {
      // A reference (or a temporary kept alive here), read before `cb` is moved into the node.
      const std::stop_token& token = cb.stop_token();
      LoopCore* core = loop_core_of(cb);
      if (!token.stop_possible()) {
        queue(std::forward<Cb>(cb), std::move(payload));
      } else if constexpr (requires { requires std::remove_cvref_t<Cb>::stop_token_outside; }) {
        // The token lives in the awaiting task, not in the callback (a pointer, moved without running
        // code): `token` holds through the moves. A payload's move may still stop it; the
        // registration then finds it stopped.
        watch(queue(std::forward<Cb>(cb), std::move(payload)), token, core);
      } else {
        // The node is made (and linked) before a group is chosen: moving the callback and the payload
        // runs their code, which may serve or cancel waiters, even stop the token (then the
        // registration finds it stopped and cancels this waiter). The token is copied first: `cb`
        // may hold it.
        std::stop_token own = token;
        watch(queue(std::forward<Cb>(cb), std::move(payload)), std::move(own), core);
      }
    } else {
      queue(std::forward<Cb>(cb), std::move(payload));
    }
  }

  /// Unlinks the longest waiter; the caller calls its callback. The list must not be empty.
  Taken take_front() noexcept {
    Waiter* w = head_;
    unlink(w);
    Taken taken{std::move(w->cb), std::move(w->payload)};
    leave_group(w);
    return taken;
  }

  /// Calls every waiter with `ec`, in order (waiters added meanwhile too). Their callbacks must not throw.
  void fail_all(std::error_code ec) noexcept {
    while (!empty()) {
      Taken t = take_front();
      call(t.cb, ec);
    }
  }

 private:
  struct Waiter;
  struct StopFn {
    Waiter* w;
    void operator()() const noexcept {
      if (w->registering)
        w->stopped_while_registering = true;
      else
        w->list->cancel(w);
    }
  };
  // Cancellation costs one registration per run of waiters that watch the same stop token (the tasks
  // of one `when_all` queueing at a semaphore), not one per waiter: the first of the run, the host,
  // registers; each next waiter whose token and loop are the host's joins its group instead. Waiters
  // leave a group in arrival order, as they leave the list (from the front), so a group is a singly
  // linked chain. A host served while others of its group still wait stays allocated, out of the
  // list, until the last of them leaves: its registration covers them.
  struct Waiter {
    Waiter(WaitList* l, Callback c, Payload p) : list(l), cb(std::move(c)), payload(std::move(p)) {}
    WaitList* list;
    Callback cb;
    Payload payload;
    Waiter* prev = nullptr;  // the list, in arrival order
    Waiter* next = nullptr;
    Waiter* host = nullptr;        // whose registration covers this waiter (itself, if it registered); null: none
    Waiter* group_next = nullptr;  // the next waiter of the same group
    // A host's own: its group (while waiting, itself first), and the registration.
    Waiter* group_first = nullptr;
    Waiter* group_last = nullptr;
    std::stop_token token;  // what the group watches: a next waiter's is compared with it
    OnLoopStop<StopFn> stop;
    bool registering = false;
    bool stopped_while_registering = false;
  };

  /// `w`, just queued, watches `token` (on `core`'s loop): it joins the group of the waiter before it
  /// if that one watches the same token on the same loop, or registers for a group of its own.
  template <class Token>
  void watch(Waiter* w, Token&& token, LoopCore* core) {
    if (Waiter* host = w->prev ? w->prev->host : nullptr; host && host->stop.core() == core && host->token == token) {
      w->host = host;
      host->group_last->group_next = w;
      host->group_last = w;
      return;
    }
    w->host = w;
    w->group_first = w->group_last = w;
    w->token = token;
    // A stop requested from now on reaches `cancel`, on this thread (or posted to it). One requested
    // since the caller's check runs inside `watch`, where `w` must not be freed: it is served after.
    w->registering = true;
    w->stop.watch(core, std::stop_token(std::forward<Token>(token)), StopFn{w});
    w->registering = false;
    if (w->stopped_while_registering) cancel(w);
  }

  template <class Cb>
  Waiter* queue(Cb&& cb, Payload payload) {
    auto* w = new Waiter(this, Callback(std::forward<Cb>(cb)), std::move(payload));
    link(w);
    return w;
  }

  /// `w`, taken off the list (and called, or about to be), leaves its group; it is freed unless it
  /// hosts waiters still in the list, in which case the last of them frees it.
  void leave_group(Waiter* w) noexcept {
    Waiter* host = w->host;
    if (!host) {
      delete w;
      return;
    }
    host->group_first = w->group_next;  // w was its group's first: groups leave in arrival order
    if (host->group_first) {
      if (host != w) delete w;  // else w stays, out of the list, for the others
      return;
    }
    if (host != w) delete host;  // the last of the group: the host's registration ends
    delete w;
  }

  /// A stop for `host`'s group: every waiter of it leaves the list, the registration ends (inside its
  /// own callback, which is allowed on its thread), then each is called with UV_ECANCELED, in arrival
  /// order. The waiters are this call's alone by then: a callback may destroy the list, or queue more.
  void cancel(Waiter* host) noexcept {
    Waiter* chain = host->group_first;
    for (Waiter* m = chain; m; m = m->group_next) unlink(m);
    const bool waiting = chain == host;  // else the host was served and waits here for its group
    host->stop.reset();
    if (!waiting) delete host;
    while (chain) {
      Waiter* m = chain;
      chain = m->group_next;
      Callback cb = std::move(m->cb);
      delete m;
      call(cb, uv_error(UV_ECANCELED));
    }
  }

  template <class Cb>
  static void call(Cb& cb, std::error_code ec) noexcept {
    try {
      cb(ec, R()...);
    } catch (...) {
      // The owner has no loop whose error hook could take this; say so rather than lose it.
      std::fputs("duet: a waiter's callback threw while being cancelled or failed\n", stderr);
    }
  }

  void link(Waiter* w) noexcept {
    w->prev = tail_;
    if (tail_)
      tail_->next = w;
    else
      head_ = w;
    tail_ = w;
    ++size_;
  }

  void unlink(Waiter* w) noexcept {
    if (w->prev)
      w->prev->next = w->next;
    else
      head_ = w->next;
    if (w->next)
      w->next->prev = w->prev;
    else
      tail_ = w->prev;
    --size_;
  }

  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
  std::size_t size_ = 0;
};

/// The owner's serving loop (see the top of this header).
class Serving {
 public:
  Serving() = default;
  Serving(const Serving&) = delete;
  Serving& operator=(const Serving&) = delete;

  /// The owner is being destroyed: a loop running further up the stack stops, and no new one starts.
  void end() noexcept {
    if (running_) *running_ = true;
    ended_ = true;
  }

  /// Calls `step()` until it returns false. `step` serves one waiter, calling its callback last.
  template <class Step>
  void run(Step step) {
    if (running_ || ended_) return;  // a loop further up the stack serves
    bool destroyed = false;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"  // cleared below before returning, unless *this is gone
#endif
    running_ = &destroyed;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    std::exception_ptr failure;
    for (bool more = true; more && !destroyed;) {
      try {
        more = step();
      } catch (...) {
        if (!failure) failure = std::current_exception();
      }
    }
    if (!destroyed) running_ = nullptr;
    if (failure) std::rethrow_exception(failure);
  }

 private:
  bool* running_ = nullptr;  // set while run() serves: where end() says the owner is gone
  bool ended_ = false;
};

}  // namespace duet::detail
