// Micro-benchmarks: what duet's coroutine face costs over its callback face, and what its primitives
// cost. Run: build/release/bench/duet_micro  (add --benchmark_filter=REGEX to pick)
//
// Every benchmark runs batches of kBatch operations one after the other on one loop, so the loop's own
// start-up is amortised; items_per_second counts operations.
#include <benchmark/benchmark.h>

#include <duet/duet.hpp>
#include <functional>
#include <thread>

namespace {

constexpr int kBatch = 1000;

// ---- a no-op operation in duet's shape, in two flavours -------------------------------------------
// `ready_now` completes inside its initiating call (the cost of the adapter alone); `ready_later`
// completes on the loop's next turn through the loop's deferred queue (a real round trip through
// libuv, as every I/O completion is).

template <class Callback>
[[gnu::noinline]] void ready_now(int value, Callback&& cb) {  // opaque, as a real operation is
  cb(std::error_code(), value);
}
auto ready_now(int value) {
  return duet::awaitable<int>([value](auto cb) { ready_now(value, std::move(cb)); });
}

template <class Callback>
void ready_later(duet::Loop& loop, int value, Callback&& cb) {
  loop.core().defer([cb = std::forward<Callback>(cb), value]() mutable { cb(std::error_code(), value); });
}
auto ready_later(duet::Loop& loop, int value) {
  return duet::awaitable<int>([&loop, value](auto cb) { ready_later(loop, value, std::move(cb)); });
}

// ---- callback face: kBatch operations, each started by the previous one's callback -----------------

struct CallbackChain {
  duet::Loop& loop;
  int left;
  long sum = 0;
  void next() {
    if (left-- == 0) return;
    ready_later(loop, 1, [this](std::error_code, int v) {
      sum += v;
      next();
    });
  }
};

void BM_op_through_loop_callback(benchmark::State& state) {
  duet::Loop loop;
  for (auto _ : state) {
    CallbackChain chain{loop, kBatch};
    chain.next();
    loop.run();
    benchmark::DoNotOptimize(chain.sum);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_op_through_loop_callback);

duet::Task<long> await_later(duet::Loop& loop) {
  long sum = 0;
  for (int i = 0; i < kBatch; ++i) sum += co_await ready_later(loop, 1);
  co_return sum;
}

void BM_op_through_loop_coroutine(benchmark::State& state) {
  duet::Loop loop;
  for (auto _ : state) benchmark::DoNotOptimize(duet::run(loop, await_later(loop)));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_op_through_loop_coroutine);

void BM_op_inline_callback(benchmark::State& state) {
  for (auto _ : state) {
    long sum = 0;
    for (int i = 0; i < kBatch; ++i)
      ready_now(1, [&](std::error_code, int v) {
        sum += v;
        benchmark::ClobberMemory();
      });
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_op_inline_callback);

duet::Task<long> await_now() {
  long sum = 0;
  for (int i = 0; i < kBatch; ++i) sum += co_await ready_now(1);
  co_return sum;
}

void BM_op_inline_coroutine(benchmark::State& state) {
  duet::Loop loop;
  for (auto _ : state) benchmark::DoNotOptimize(duet::run(loop, await_now()));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_op_inline_coroutine);

// ---- tasks: create and await a child task, frames recycled or given back at once (to their chunk) ----

duet::Task<int> child(int x) { co_return x; }

duet::Task<long> await_children() {
  long sum = 0;
  for (int i = 0; i < kBatch; ++i) sum += co_await child(i);
  co_return sum;
}

void BM_task_create_and_await(benchmark::State& state) {
  const bool recycle = state.range(0) != 0;
  duet::detail::set_frame_recycling(recycle);
  duet::Loop loop;
  for (auto _ : state) benchmark::DoNotOptimize(duet::run(loop, await_children()));
  duet::detail::set_frame_recycling(true);
  state.SetLabel(recycle ? "frames recycled" : "frames given back at once");
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_task_create_and_await)->Arg(1)->Arg(0);

// ---- primitives ---------------------------------------------------------------------------------------

void BM_semaphore_uncontended(benchmark::State& state) {
  duet::Semaphore sem(1);
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      sem.acquire([](std::error_code) {});
      sem.release();
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_semaphore_uncontended);

void BM_semaphore_contended(benchmark::State& state) {
  duet::Semaphore sem(1);
  long served = 0;
  for (auto _ : state) {
    if (!sem.try_acquire()) state.SkipWithError("semaphore busy");
    for (int i = 0; i < kBatch; ++i) sem.acquire([&](std::error_code) { ++served; });  // all wait
    for (int i = 0; i < kBatch; ++i) sem.release();  // each release hands the permit to the next waiter
    sem.release();
  }
  benchmark::DoNotOptimize(served);
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_semaphore_contended);

// The same, through the coroutine face: each permit is an RAII object released at the end of its scope.
duet::Task<long> acquire_and_release(duet::Semaphore& sem) {
  long held = 0;
  for (int i = 0; i < kBatch; ++i) {
    auto permit = co_await sem.acquire();
    held += static_cast<long>(sem.available() == 0);
  }
  co_return held;
}

void BM_semaphore_uncontended_awaited(benchmark::State& state) {
  duet::Loop loop;
  duet::Semaphore sem(1);
  for (auto _ : state) benchmark::DoNotOptimize(duet::run(loop, acquire_and_release(sem)));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_semaphore_uncontended_awaited);

void BM_post_same_thread(benchmark::State& state) {
  duet::Loop loop;
  long ran = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) loop.post([&] { ++ran; });
    loop.run();
  }
  benchmark::DoNotOptimize(ran);
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_post_same_thread);

// post() from another thread, as a worker hands results to the loop: the loop thread runs until it
// has run every posted function (a thread-crossing wake-up through uv_async_t per batch, at best). A
// Hold keeps the loop waiting for the posts, as an application with worker threads would.
void BM_post_from_another_thread(benchmark::State& state) {
  duet::Loop loop;
  for (auto _ : state) {
    int ran = 0;
    auto hold = loop.hold();
    std::thread poster([&] {
      for (int i = 0; i < kBatch; ++i) loop.post([&] { ++ran; });
    });
    while (ran < kBatch) loop.run_once();
    hold.release();
    poster.join();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_post_from_another_thread)->UseRealTime();

void BM_sleep_zero(benchmark::State& state) {
  duet::Loop loop;
  for (auto _ : state) {
    int left = kBatch;
    std::function<void()> next = [&] {
      if (left-- == 0) return;
      duet::sleep(loop, std::chrono::milliseconds(0), [&](std::error_code) { next(); });
    };
    next();
    loop.run();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_sleep_zero);

}  // namespace

BENCHMARK_MAIN();
