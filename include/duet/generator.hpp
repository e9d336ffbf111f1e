// duet/generator.hpp — an async generator: a coroutine that yields values and may await between them.
//
//     duet::Generator<std::string> lines(duet::Loop& loop, duet::PipeStream& in) {
//       ...
//       co_await in.read(buffer);     // may wait for I/O between values
//       co_yield line;                // hands one value to the consumer, and waits to be asked again
//     }
//
//     auto gen = lines(loop, in);
//     while (std::optional<std::string> line = co_await gen.next()) use(*line);
//     co_await duet::for_each(gen, [](std::string line) { ... });   // the same loop, written once
//
// - Lazy and pulled: nothing runs until the first `next()`; each `next()` runs the body to its next
//   `co_yield` (returning the value) or to its end (returning an empty optional, as does every
//   `next()` after it). An exception escaping the body is rethrown by the `next()` that ran it; the
//   generator is then finished.
// - The body runs in the consumer's context: an operation it awaits is cancelled when the consuming
//   task is, and `Cancelled` comes out of `next()`. Destroying the generator between values destroys
//   its frame (its locals are cleaned up; nothing more runs).
// - One `next()` at a time: a second while one is pending throws `std::logic_error`. `co_yield` takes
//   a value (moved or copied into the generator); T is a value type.
//
// Cost: one coroutine frame (recycled, as Task's); a `next()` is a resumption each way, no allocation.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "duet/task.hpp"

namespace duet {

template <class T>
class [[nodiscard]] Generator {
  static_assert(!std::is_reference_v<T> && !std::is_void_v<T>, "duet::Generator<T>: T is a value type");

 public:
  class promise_type {
   public:
    static void* operator new(std::size_t n) { return detail::allocate_frame(n); }
    static void operator delete(void* p, std::size_t n) noexcept { detail::deallocate_frame(p, n); }

    Generator get_return_object() noexcept {
      return Generator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }

    /// Suspends the body and hands control back to the consumer.
    struct Yield {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) noexcept { detail::resume(h.promise().consumer_); }
      void await_resume() const noexcept {}
    };
    Yield final_suspend() noexcept { return {}; }

    template <class U = T>
    requires std::constructible_from<T, U&&>
    Yield yield_value(U&& value) {
      value_.emplace(std::forward<U>(value));
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    /// The consumer's context, for the operations the body awaits.
    const TaskContext& context() const noexcept { return *context_; }

   private:
    friend class Generator;
    std::coroutine_handle<> consumer_;
    const TaskContext* context_ = &detail::no_context;
    std::optional<T> value_;
    std::exception_ptr exception_;
  };

  Generator() noexcept = default;
  Generator(Generator&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
  Generator& operator=(Generator&& o) noexcept {
    if (this != &o) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(o.handle_, {});
    }
    return *this;
  }
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;
  ~Generator() {
    if (handle_) handle_.destroy();
  }

  /// True once the body has ended (returned or thrown); `next()` then returns an empty optional.
  bool done() const noexcept { return !handle_ || handle_.done(); }

  /// `co_await gen.next()`: the next value, or an empty optional at the end.
  class Next {
   public:
    explicit Next(Generator* g) noexcept : gen_(g) {}
    bool await_ready() const {
      if (gen_->pending_) throw std::logic_error("duet::Generator: next() while another next() is pending");
      return gen_->done();
    }
    template <class Promise>
    void await_suspend(std::coroutine_handle<Promise> consumer) {
      promise_type& p = gen_->handle_.promise();
      p.consumer_ = consumer;
      p.context_ = &detail::context_of(consumer);
      p.value_.reset();
      gen_->pending_ = true;
      detail::resume(gen_->handle_);  // runs once the consumer has suspended
    }
    std::optional<T> await_resume() {
      gen_->pending_ = false;
      if (!gen_->handle_) return std::nullopt;
      promise_type& p = gen_->handle_.promise();
      if (p.exception_) std::rethrow_exception(std::exchange(p.exception_, nullptr));
      return std::exchange(p.value_, std::nullopt);
    }

   private:
    Generator* gen_;
  };
  Next next() noexcept { return Next(this); }

 private:
  explicit Generator(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
  bool pending_ = false;
};

/// Calls `fn(value)` for every value `gen` yields; `fn` may return a Task, which is awaited before
/// the next value is asked for. Exceptions from the generator or from `fn` propagate.
template <class T, class Fn>
Task<> for_each(Generator<T>& gen, Fn fn) {
  while (std::optional<T> value = co_await gen.next()) {
    if constexpr (requires { typename std::invoke_result_t<Fn&, T&&>::promise_type; })
      co_await fn(std::move(*value));
    else
      fn(std::move(*value));
  }
}

}  // namespace duet
