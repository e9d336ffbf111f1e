// duet/detail/copyable_function.hpp — a copyable, type-erased callable, for options that are copied.
//
// What `std::function` does, without `<functional>`'s weight in every translation unit that includes
// duet (that header brings hash tables and the searching algorithms along; about a tenth of a second
// of every compile). Used where a setting holds a callback and the settings are copied: a
// `ServerGroup` copies its `ServerOptions` to each loop's server, and each copy gets its own copy of
// the callable, as with `std::function`.
//
// Cost: the callable lives on the heap (one allocation when it is stored, one per copy); a call is one
// indirect call. Not for hot paths that store callbacks per operation: that is `UniqueFunction`.
// Calling an empty CopyableFunction is undefined (check with `explicit operator bool`).
// A callable that is itself empty (a null function pointer, an empty `std::function`) makes
// an empty one.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "duet/detail/unique_function.hpp"  // is_empty_callable

namespace duet::detail {

template <class Signature>
class CopyableFunction;

template <class R, class... Args>
class CopyableFunction<R(Args...)> {
 public:
  CopyableFunction() noexcept = default;
  CopyableFunction(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor)

  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, CopyableFunction> && !std::is_member_pointer_v<std::decay_t<F>> &&
           std::is_copy_constructible_v<std::decay_t<F>> && std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
      CopyableFunction(F&& f) {  // NOLINT(google-explicit-constructor): a callable converts implicitly
    using Fn = std::decay_t<F>;  // a function's name is stored as a pointer to it
    if (is_empty_callable<Fn>(f)) return;
    target_ = new Fn(std::forward<F>(f));
    vtable_ = &vtable_for<Fn>;
  }

  CopyableFunction(const CopyableFunction& other)
      : target_(other.vtable_ ? other.vtable_->clone(other.target_) : nullptr), vtable_(other.vtable_) {}
  CopyableFunction(CopyableFunction&& other) noexcept
      : target_(std::exchange(other.target_, nullptr)), vtable_(std::exchange(other.vtable_, nullptr)) {}
  /// Copy and move assignment both (a copy is made first, so a throwing copy leaves *this as it was).
  CopyableFunction& operator=(CopyableFunction other) noexcept {
    std::swap(target_, other.target_);
    std::swap(vtable_, other.vtable_);
    return *this;
  }
  ~CopyableFunction() {
    if (vtable_) vtable_->destroy(target_);
  }

  explicit operator bool() const noexcept { return vtable_ != nullptr; }

  /// Calls the callable (as a non-const lvalue, as `std::function` does).
  R operator()(Args... args) const { return vtable_->call(target_, std::forward<Args>(args)...); }

 private:
  struct VTable {
    R (*call)(void*, Args&&...);
    void* (*clone)(const void*);
    void (*destroy)(void*) noexcept;
  };
  template <class Fn>
  static constexpr VTable vtable_for{
      [](void* p, Args&&... args) -> R { return static_cast<R>((*static_cast<Fn*>(p))(std::forward<Args>(args)...)); },
      [](const void* p) -> void* { return new Fn(*static_cast<const Fn*>(p)); },
      [](void* p) noexcept { delete static_cast<Fn*>(p); },
  };

  void* target_ = nullptr;
  const VTable* vtable_ = nullptr;
};

}  // namespace duet::detail
