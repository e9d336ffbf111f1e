#include "duet/resume_on.hpp"

#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include "mailbox.hpp"

namespace duet::detail {

struct Away {
  TaskContext context;                    // where the task is now (its stop token, unchanged)
  const TaskContext* home;                // the context it came with, from its own loop
  std::shared_ptr<Mailbox> home_mailbox;  // where its end is sent, should it finish away
  Loop::Hold hold;                        // its own loop keeps running while it is away
};

void delete_away(Away* away) noexcept { delete away; }

void finish_away(PromiseBase& task) noexcept {
  try {
    UniqueFunction<void()> back([&task] {
      std::coroutine_handle<> next = task.next_after_done();
      if (next && next != std::noop_coroutine()) resume(next);
    });
    // Refused if the task's loop is being destroyed: that destruction frees the task's frames.
    post_to(*task.away()->home_mailbox, back);
  } catch (...) {
    std::fputs("duet: out of memory while sending a finished task back to its loop; its awaiter will wait\n", stderr);
  }
}

namespace {

enum Stage : int {
  kQueued,     // posted to the target loop
  kReturning,  // the target loop dropped it: on its way back to where it left
  kRunning,    // taken: the task runs again
  kGone,       // the task's frame was destroyed first: nothing may resume it
};

}  // namespace

struct HopState {
  std::atomic<int> stage{kQueued};
  std::coroutine_handle<> h;
  PromiseBase* task;
  Loop* from;
  Loop* to;
  Loop* home;  // the task's own loop
  std::shared_ptr<Mailbox> from_mailbox, home_mailbox;
  bool failed = false;

  bool take(int expected) noexcept { return stage.compare_exchange_strong(expected, kRunning); }
};

namespace {

// The task is on `at`'s thread now: its context says so; home again, its record of being away goes.
void arrive(PromiseBase& task, Loop& at) noexcept {
  Away* away = task.away();
  if (!away) return;
  if (away->home->loop == &at) {
    task.set_context(*away->home);
    task.set_away(nullptr);
    delete away;  // releases the hold on this loop, on its own thread
  } else {
    away->context.loop = &at;
  }
}

// Posted to the target loop. Destroyed without being run (that loop is being destroyed), it sends the
// task back to where it came from (or to its own loop), to throw there.
class Hop {
 public:
  explicit Hop(std::shared_ptr<HopState> s) noexcept : s_(std::move(s)) {}
  Hop(Hop&&) noexcept = default;
  Hop& operator=(Hop&&) = delete;
  ~Hop() {
    if (s_) go_back(std::move(s_));
  }

  void operator()() {
    std::shared_ptr<HopState> s = std::move(s_);
    if (!s->take(kQueued)) return;
    arrive(*s->task, *s->to);
    resume(s->h);
  }

 private:
  static void go_back(std::shared_ptr<HopState> s) noexcept {
    int queued = kQueued;
    if (!s->stage.compare_exchange_strong(queued, kReturning)) return;
    // Back where it left; if that loop is being destroyed too, to its own loop, which holds it (and
    // if that one is being destroyed, its destruction frees the task's frames).
    if (send_back(s, s->from, s->from_mailbox)) return;
    if (s->home != s->from) send_back(s, s->home, s->home_mailbox);
  }

  static bool send_back(const std::shared_ptr<HopState>& s, Loop* at,
                        const std::shared_ptr<Mailbox>& mailbox) noexcept {
    try {
      UniqueFunction<void()> back([s, at] {
        if (!s->take(kReturning)) return;
        s->failed = true;
        arrive(*s->task, *at);
        resume(s->h);
      });
      return post_to(*mailbox, back);
    } catch (...) {
      std::fputs("duet: out of memory while sending a task back from a destroyed loop; it will wait\n", stderr);
      return true;
    }
  }

  std::shared_ptr<HopState> s_;
};

}  // namespace

bool start_hop(PromiseBase& task, std::coroutine_handle<> h, Loop& there, std::shared_ptr<HopState>& hop) {
  const TaskContext& now = task.context();
  if (!now.loop)
    throw std::logic_error("duet::resume_on: awaited outside a task running on a Loop (spawn or run the task)");
  if (now.loop == &there) return false;
  if (now.stop_token.stop_requested()) throw Cancelled();

  auto s = std::make_shared<HopState>();
  s->h = h;
  s->task = &task;
  s->from = now.loop;
  s->to = &there;
  s->from_mailbox = now.loop->core().mailbox();
  if (!task.away()) {  // leaving its own loop (this thread is that loop's)
    auto* away = new Away{now, &now, now.loop->core().mailbox(), now.loop->hold()};
    task.set_away(away);
    task.set_context(away->context);
  }
  s->home = task.away()->home->loop;
  s->home_mailbox = task.away()->home_mailbox;
  hop = s;
  try {
    there.post(Hop(s));
  } catch (...) {
    s->stage.store(kGone);  // the co_await throws here; the hop (if it was made) resumes nothing
    hop.reset();
    arrive(task, *s->from);
    throw;
  }
  return true;  // the task may already run on `there`'s thread: touch nothing of it from here on
}

void check_hop(const HopState& hop) {
  if (hop.failed)
    throw std::system_error(make_error_code(errc::loop_closed),
                            "duet::resume_on: the loop was destroyed before the task reached it");
}

void leave_hop(HopState& hop) noexcept {
  int stage = hop.stage.load();
  while ((stage == kQueued || stage == kReturning) && !hop.stage.compare_exchange_weak(stage, kGone)) {
  }
}

}  // namespace duet::detail
