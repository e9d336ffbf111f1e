// duet/detail/unique_function.hpp — a move-only, type-erased callable with a small inline buffer.
//
// Used where a callback must be stored in a non-template object (a stream's read callback, a posted
// task, a semaphore waiter). Callables up to `kInline` bytes that are nothrow-movable live inside the
// object: storing a typical lambda allocates nothing. Larger ones go to the heap. Calling an empty
// UniqueFunction is undefined (check with `explicit operator bool`). A callable
// that is itself empty (a null function pointer, an empty `std::function`) makes an empty one.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace duet::detail {

/// True if `f` stands for no function: a null function pointer, or a wrapper that tests false (an
/// empty `std::function`). A lambda or other plain callable is never empty (and costs no test).
template <class Fn>
constexpr bool is_empty_callable(const Fn& f) noexcept {
  if constexpr (std::is_pointer_v<Fn>) {
    return f == nullptr;
  } else if constexpr (std::is_class_v<Fn> && requires { static_cast<bool>(f); }) {
    return !static_cast<bool>(f);
  } else {
    return false;
  }
}

template <class Signature>
class UniqueFunction;

template <class R, class... Args>
class UniqueFunction<R(Args...)> {
 public:
  static constexpr std::size_t kInline = 48;

  UniqueFunction() noexcept = default;
  UniqueFunction(std::nullptr_t) noexcept {}

  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, UniqueFunction> && !std::is_member_pointer_v<std::decay_t<F>> &&
           std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
      UniqueFunction(F&& f) {    // NOLINT(google-explicit-constructor): a callable converts implicitly
    using Fn = std::decay_t<F>;  // a function's name is stored as a pointer to it
    if (is_empty_callable<Fn>(f)) return;
    if constexpr (fits_inline<Fn>) {
      ::new (static_cast<void*>(storage_)) Fn(std::forward<F>(f));
      vtable_ = &inline_vtable<Fn>;
    } else {
      *reinterpret_cast<Fn**>(storage_) = new Fn(std::forward<F>(f));
      vtable_ = &heap_vtable<Fn>;
    }
  }

  UniqueFunction(UniqueFunction&& other) noexcept : vtable_(other.vtable_) {
    if (vtable_) {
      vtable_->move(storage_, other.storage_);
      other.vtable_ = nullptr;
    }
  }

  UniqueFunction& operator=(UniqueFunction&& other) noexcept {
    if (this != &other) {
      reset();
      if (other.vtable_) {
        other.vtable_->move(storage_, other.storage_);
        vtable_ = std::exchange(other.vtable_, nullptr);
      }
    }
    return *this;
  }

  UniqueFunction(const UniqueFunction&) = delete;
  UniqueFunction& operator=(const UniqueFunction&) = delete;
  ~UniqueFunction() { reset(); }

  void reset() noexcept {
    if (vtable_) std::exchange(vtable_, nullptr)->destroy(storage_);
  }

  explicit operator bool() const noexcept { return vtable_ != nullptr; }
  /// Whether the callable held is an `Fn` (a type the caller names: a lambda's cannot be).
  template <class Fn>
  bool holds() const noexcept {
    return vtable_ == &inline_vtable<Fn> || vtable_ == &heap_vtable<Fn>;
  }

  R operator()(Args... args) { return vtable_->call(storage_, std::forward<Args>(args)...); }

 private:
  struct VTable {
    R (*call)(void*, Args&&...);
    void (*move)(void* to, void* from) noexcept;  // move-constructs into `to`, destroys `from`
    void (*destroy)(void*) noexcept;
  };

  template <class Fn>
  static constexpr bool fits_inline =
      sizeof(Fn) <= kInline && alignof(Fn) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<Fn>;

  template <class Fn>
  static constexpr VTable inline_vtable{
      [](void* s, Args&&... a) -> R { return (*std::launder(static_cast<Fn*>(s)))(std::forward<Args>(a)...); },
      [](void* to, void* from) noexcept {
        Fn* src = std::launder(static_cast<Fn*>(from));
        ::new (to) Fn(std::move(*src));
        src->~Fn();
      },
      [](void* s) noexcept { std::launder(static_cast<Fn*>(s))->~Fn(); }};

  template <class Fn>
  static constexpr VTable heap_vtable{
      [](void* s, Args&&... a) -> R { return (**static_cast<Fn**>(s))(std::forward<Args>(a)...); },
      [](void* to, void* from) noexcept { *static_cast<Fn**>(to) = *static_cast<Fn**>(from); },
      [](void* s) noexcept { delete *static_cast<Fn**>(s); }};

  alignas(std::max_align_t) unsigned char storage_[kInline];
  const VTable* vtable_ = nullptr;
};

}  // namespace duet::detail
