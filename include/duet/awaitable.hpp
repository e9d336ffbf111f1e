// duet/awaitable.hpp — the one adapter that turns any callback-form operation into an awaitable.
//
// Every duet operation exists once, in callback form: `op(args..., cb)` with `cb(std::error_code[, R])`.
// Its coroutine face is the same name without the callback, returning `duet::Awaitable<R, Init>`, where
// `Init` is a small lambda that starts the operation with a given callback:
//
//     template <class Rep, class Period>
//     auto sleep(Loop& loop, std::chrono::duration<Rep, Period> d) {
//       return awaitable<void>([&loop, d](auto cb) { sleep(loop, d, std::move(cb)); });
//     }
//
// A face that is not a template already is written as one, `template <class = void>`, with nothing
// to deduce: a translation unit then builds the awaitables of the faces it calls and no others. Built
// eagerly, the seventy-odd faces of `<duet/duet.hpp>` cost every includer about 7% of its compile
// time (bench/compile_time.sh).
//
// `co_await` starts the operation with a callback that stores the result and resumes the coroutine.
// The result is returned; an error is thrown as `std::system_error` carrying exactly the error_code the
// callback would have received — `duet::Cancelled` (a `std::system_error` with UV_ECANCELED) when the
// operation was cancelled. A callback that also receives an `std::exception_ptr` (offload, the HTTP
// client) rethrows that exception itself — except after a cancellation, which always throws
// `duet::Cancelled` (an offloaded function's own exception is then dropped: its task was cancelled).
//
// Cancellation: the callback exposes the awaiting task's stop token (see task.hpp), so cancelling the
// task cancels the operation exactly as the callback face does (cancellation.hpp). A task already
// cancelled does not start new operations: `co_await` throws `duet::Cancelled` at once.
//
// Cost: the awaitable lives in the coroutine frame and the callback is one pointer, so the request
// object (from the loop's pool) is all an awaited operation allocates. An operation that completes
// inside its initiating call (a free semaphore permit) resumes without suspending. A result the
// callback receives as an rvalue of the result type (an HTTP response) is moved once, straight into
// the coroutine, when the coroutine can run inside the callback (the usual case: a libuv callback);
// otherwise it is kept in the awaitable until the coroutine runs.
//
// An Awaitable must be awaited once, by the coroutine that created it, and is not copyable.
#pragma once

#include <uv.h>

#include <coroutine>
#include <exception>
#include <new>
#include <optional>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

#include "duet/error.hpp"

namespace duet {

class Loop;

/// Thrown into a coroutine whose awaited operation was cancelled: a `std::system_error` with UV_ECANCELED.
class Cancelled : public std::system_error {
 public:
  Cancelled() : std::system_error(uv_error(UV_ECANCELED)) {}
};

/// Thrown when a timeout ran out first: a `std::system_error` with UV_ETIMEDOUT (`with_timeout`, and
/// the awaited face of operations with a timeout of their own, such as `connect`). `what()` is "timed
/// out", whichever deadline it was (libuv's text for the code, `code().message()`, says "connection
/// timed out" for every ETIMEDOUT).
class TimedOut : public std::system_error {
 public:
  TimedOut() : std::system_error(uv_error(UV_ETIMEDOUT)) {}
  const char* what() const noexcept override { return "timed out"; }
};

/// What a duet coroutine knows about where it runs: passed from each awaiting task to the task (or
/// operation) it awaits.
struct TaskContext {
  Loop* loop = nullptr;
  std::stop_token stop_token;
};

namespace detail {

/// The context of a coroutine whose promise has none: no loop, a stop token that never stops.
/// Defined in the library (constant-initialized): as an inline variable, with the stop token's
/// destructor, it made every translation unit that includes duet compile and emit its initialization
/// and destruction.
extern const TaskContext no_context;

/// The context of the coroutine behind `h`, if its promise has one (duet's tasks do). A reference
/// into the promise, valid while that coroutine is suspended: awaiting copies no stop token.
template <class Promise>
const TaskContext& context_of(std::coroutine_handle<Promise> h) noexcept {
  if constexpr (requires {
                  { h.promise().context() } -> std::same_as<const TaskContext&>;
                }) {
    return h.promise().context();
  } else {
    return no_context;
  }
}

/// Resumes a coroutine through the thread's trampoline (task.hpp).
void resume(std::coroutine_handle<> h);

/// Throws the exception that stands for `ec`.
[[noreturn]] void throw_error(std::error_code ec);

/// True if `resume(h)`, called now, would run `h` at once (no trampoline is draining on this thread)
/// rather than queue it.
bool resumes_at_once() noexcept;

/// Where a result waits for `await_resume`: the value the callback passed, or, while the coroutine
/// runs inside the callback, a pointer to the callback's own argument (see Completion). A union and a
/// state byte, 8 bytes less than an optional beside a pointer: the slot lives in every frame that
/// awaits a result, and 8 bytes can move a frame into a smaller block.
template <class Result>
class ResultSlot {
 public:
  ResultSlot() noexcept {}
  ResultSlot(ResultSlot&& o) noexcept(std::is_nothrow_move_constructible_v<Result>) {
    if (o.state_ == State::value) ::new (static_cast<void*>(&value_)) Result(std::move(o.value_));
    if (o.state_ == State::borrowed) borrowed_ = o.borrowed_;
    state_ = o.state_;
  }
  ResultSlot& operator=(ResultSlot&&) = delete;
  ~ResultSlot() { clear(); }

  template <class V>
  void set(V&& v) {
    clear();
    ::new (static_cast<void*>(&value_)) Result(std::forward<V>(v));
    state_ = State::value;
  }
  void borrow(Result* r) noexcept {
    clear();
    borrowed_ = r;
    state_ = State::borrowed;
  }
  [[gnu::flatten]] Result take() { return state_ == State::borrowed ? std::move(*borrowed_) : std::move(value_); }

 private:
  void clear() noexcept {
    if (state_ == State::value) value_.~Result();
    state_ = State::empty;
  }
  enum class State : unsigned char { empty, value, borrowed };
  union {
    Result value_;
    Result* borrowed_;
  };
  State state_ = State::empty;
};
template <>
struct ResultSlot<void> {
  void take() {}
};

/// An operation's error code, kept as its two parts until it is thrown: an empty one is two zero
/// words, where a default `std::error_code` calls `std::system_category()` (out of line in libstdc++)
/// in every awaitable a coroutine builds.
class ErrorSlot {
 public:
  ErrorSlot& operator=(const std::error_code& ec) noexcept {
    value_ = ec.value();
    category_ = &ec.category();
    return *this;
  }
  explicit operator bool() const noexcept { return value_ != 0; }
  /// The code; only when set.
  std::error_code get() const noexcept { return {value_, *category_}; }

 private:
  int value_ = 0;
  const std::error_category* category_ = nullptr;
};

/// What an `Awaitable` holds whatever operation it starts: the awaiting coroutine, the outcome, and
/// the callback that fills them in. Every awaitable with the same `Result` shares it, so a coroutine
/// face costs the compiler only the small class that adds its initiating function, and operations
/// handed the same `Completion` type share their instantiations.
template <class Result>
class AwaitState {
 public:
  /// The callback handed to the operation: one pointer.
  class Completion {
   public:
    explicit Completion(AwaitState* self) noexcept : self_(self) {}
    /// The awaiting task's token, which lives in the task, not in this callback.
    const std::stop_token& stop_token() const noexcept { return self_->context_->stop_token; }
    /// Says so to a queue (WaitList) that would otherwise copy the token before moving this callback
    /// in; moving a Completion copies one pointer and runs no other code.
    static constexpr bool stop_token_outside = true;
    /// The awaiting task's loop (null outside a duet task): where a loop-free operation (a semaphore
    /// wait) routes a stop requested on another thread.
    Loop* loop() const noexcept { return self_->context_->loop; }

    void operator()(std::error_code ec) requires std::is_void_v<Result> {
      self_->ec_ = ec;
      finish();
    }
    void operator()(std::error_code ec, std::exception_ptr e) requires std::is_void_v<Result> {
      self_->ec_ = ec;
      self_->exception_ = std::move(e);
      finish();
    }
    template <class R>
    requires(!std::is_void_v<Result> && std::is_constructible_v<Result, R&&>) void operator()(std::error_code ec,
                                                                                              R&& r) {
      AwaitState* self = self_;
      self->ec_ = ec;
      if constexpr (std::is_same_v<R&&, Result&&>) {
        // The coroutine runs before this call returns: it moves the result straight out of `r`,
        // which lives until then (one move of the result, not two).
        if (!ec && !self->starting_ && resumes_at_once()) {
          self->slot_.borrow(&r);
          resume(self->waiter_);
          return;
        }
      }
      if (!ec) self->slot_.set(std::forward<R>(r));
      finish();
    }
    template <class R>
    requires(!std::is_void_v<Result> && std::is_constructible_v<Result, R&&>) void operator()(std::error_code ec, R&& r,
                                                                                              std::exception_ptr e) {
      self_->exception_ = std::move(e);
      (*this)(ec, std::forward<R>(r));
    }

   private:
    void finish() noexcept {
      AwaitState* self = self_;
      if (self->starting_) {
        self->completed_inline_ = true;  // await_suspend will not suspend
        return;
      }
      resume(self->waiter_);
    }
    AwaitState* self_;
  };

  bool await_ready() const noexcept { return false; }

  /// Inlined into the awaiting coroutine (GCC would otherwise call it): the success path is two tests.
  [[gnu::always_inline]] void await_resume() requires std::is_void_v<Result> {
    if (ec_ || exception_) [[unlikely]]
      rethrow();
  }
  /// The success path: two tests and the result's move, inlined or not as the compiler sees fit.
  Result await_resume() requires(!std::is_void_v<Result>) {
    if (ec_ || exception_) [[unlikely]]
      rethrow();
    return slot_.take();
  }

 private:
  /// Throws what the operation failed with: a cancelled operation always throws duet::Cancelled, even
  /// one that attached an exception of its own.
  [[noreturn, gnu::noinline]] void rethrow() {
    const std::error_code ec = ec_ ? ec_.get() : std::error_code();
    if (!is_cancelled(ec) && exception_) std::rethrow_exception(std::move(exception_));
    throw_error(ec);
  }

 protected:
  AwaitState() noexcept = default;
  AwaitState(AwaitState&&) = default;
  AwaitState(const AwaitState&) = delete;
  AwaitState& operator=(const AwaitState&) = delete;
  AwaitState& operator=(AwaitState&&) = delete;
  ~AwaitState() = default;

  const TaskContext* context_ = &no_context;
  std::coroutine_handle<> waiter_;
  ErrorSlot ec_;
  std::exception_ptr exception_;
  ResultSlot<Result> slot_;
  bool starting_ = false;
  bool completed_inline_ = false;
};

}  // namespace detail

template <class Result, class Init>
class Awaitable : public detail::AwaitState<Result> {
 public:
  /// Moves the initiating function in (once).
  explicit Awaitable(Init&& init) : init_(static_cast<Init&&>(init)) {}
  /// Builds the initiating function (an aggregate) in place from `args`: nothing of it is moved.
  template <class... A>
  explicit Awaitable(std::in_place_t, A&&... args) : init_{std::forward<A>(args)...} {}
  // Moved (as a coroutine face returns it), never copied or assigned: AwaitState says so for both.

  /// The callback handed to the operation: one pointer.
  using Completion = typename detail::AwaitState<Result>::Completion;

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> waiter) {
    this->context_ = &detail::context_of(waiter);
    if (this->context_->stop_token.stop_requested()) {
      this->ec_ = uv_error(UV_ECANCELED);
      return false;
    }
    this->waiter_ = waiter;
    this->starting_ = true;
    init_(Completion(this));
    this->starting_ = false;
    return !this->completed_inline_;
  }

 private:
  Init init_;
};

/// Makes an awaitable for an operation whose callback receives `Result` (void: only the error).
/// `init` is taken by value: the lambda a coroutine face writes here is built in place as the
/// parameter and moved once, into the awaitable. (No `std::decay_t`, `std::forward` or constrained
/// constructor: each face that a translation unit calls instantiates this once.)
template <class Result, class Init>
Awaitable<Result, Init> awaitable(Init init) {
  return Awaitable<Result, Init>(static_cast<Init&&>(init));
}

}  // namespace duet
