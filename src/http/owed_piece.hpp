// owed_piece.hpp — asking a streamed body's producer for a piece, so that no answer can be lost.
//
// The client's upload and the server's streamed response each ask a producer (`BodySource`) for the
// next piece and wait for its answer. No deadline runs while a producer works, so a producer that
// threw, or dropped its `BodyPiece` without calling it, would leave that wait with nothing to end it.
// `ask_producer` calls the producer with a piece that answers even when it is dropped (`OwedPiece`:
// its destructor calls `dropped()`) and catches what the producer throws; both sides then fail with
// `errc::body_producer_failed`. A second call of a piece is ignored (a piece is called once).
#pragma once

#include <exception>
#include <string>
#include <system_error>
#include <utility>

#include "duet/http/message.hpp"

namespace duet::http::detail {

/// Whether a producer is running (inside `ask_producer`), and whether it dropped its piece meanwhile:
/// a piece dropped inside the call is acted on once the call is over (it may yet throw, which says
/// more); one dropped later, at once.
struct Producing {
  bool now = false;
  bool dropped = false;
  /// A piece was dropped: true if that was inside the producer's call (noted here, to be acted on
  /// once the call is over), false if the caller acts now.
  bool note_drop() noexcept {
    if (now) dropped = true;
    return now;
  }
};

/// What came of asking: what the producer threw, if it did, and whether its piece was dropped inside
/// the call (as it threw, or unanswered) — then nothing will come.
struct Asked {
  std::exception_ptr threw;
  bool dropped = false;
};

/// `Answer` has `void operator()(std::error_code, std::string)` and `void dropped() noexcept`, both
/// called on the loop thread; `dropped()` may run in the producer's own unwinding.
template <class Answer>
class OwedPiece {
 public:
  explicit OwedPiece(Answer answer) noexcept : answer_(std::move(answer)) {}
  OwedPiece(OwedPiece&& other) noexcept : answer_(std::move(other.answer_)), owed_(std::exchange(other.owed_, false)) {}
  OwedPiece& operator=(OwedPiece&&) = delete;
  ~OwedPiece() {
    if (owed_) answer_.dropped();
  }

  void operator()(std::error_code ec, std::string piece) {
    if (std::exchange(owed_, false)) answer_(ec, std::move(piece));
  }

 private:
  Answer answer_;
  bool owed_ = true;
};

/// Calls `source` with a piece made of `answer` (nothing it throws escapes: the producer is the
/// caller's, the failure goes to the request or response it was producing for).
template <class Answer>
Asked ask_producer(BodySource& source, Answer answer, Producing& producing) noexcept {
  producing = Producing{true, false};
  Asked asked;
  try {
    source(BodyPiece(OwedPiece<Answer>(std::move(answer))));
  } catch (...) {
    asked.threw = std::current_exception();
  }
  producing.now = false;
  asked.dropped = std::exchange(producing.dropped, false);
  return asked;
}

/// How a producer's failure reads: "threw: <what>", or "dropped its piece unanswered". (Out of line,
/// in message.cpp: its string literals in the client's file changed how the compiler builds the
/// request's "GET" on every request, 118 instructions more.)
std::string producer_failure(const std::exception_ptr& threw);

}  // namespace duet::http::detail
