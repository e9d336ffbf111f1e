// duet/detail/intrusive_list.hpp — the one intrusive list: what is alive on a loop.
//
// A doubly linked list threaded through its elements (which derive from `ListHook`), so linking and
// unlinking allocate nothing and cost a few pointer writes. The list does not own its elements.
// An element is on at most one list at a time. Not thread-safe.
#pragma once

#include <cstddef>

namespace duet::detail {

class ListHook {
 public:
  bool linked() const noexcept { return owner_ != nullptr; }

 protected:
  ListHook() = default;
  ListHook(const ListHook&) = delete;
  ListHook& operator=(const ListHook&) = delete;
  ~ListHook() = default;

 private:
  template <class T>
  friend class IntrusiveList;
  ListHook* prev_ = nullptr;
  ListHook* next_ = nullptr;
  const void* owner_ = nullptr;  // the list this element is on
};

template <class T>
class IntrusiveList {
 public:
  IntrusiveList() = default;
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }
  T* front() const noexcept { return static_cast<T*>(head_); }
  bool contains(const T* t) const noexcept { return static_cast<const ListHook*>(t)->owner_ == this; }

  void push_front(T* t) noexcept {
    ListHook* h = t;
    h->owner_ = this;
    h->prev_ = nullptr;
    h->next_ = head_;
    if (head_) head_->prev_ = h;
    head_ = h;
    ++size_;
  }

  /// Unlinks `t`, which must be on this list.
  void erase(T* t) noexcept {
    ListHook* h = t;
    if (h->prev_)
      h->prev_->next_ = h->next_;
    else
      head_ = h->next_;
    if (h->next_) h->next_->prev_ = h->prev_;
    h->prev_ = h->next_ = nullptr;
    h->owner_ = nullptr;
    --size_;
  }

  /// The element after `t` (null after the last); `t` must be on this list.
  T* next(const T* t) const noexcept { return static_cast<T*>(static_cast<const ListHook*>(t)->next_); }

 private:
  ListHook* head_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace duet::detail
