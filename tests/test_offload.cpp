#include <catch2/catch.hpp>
#include <optional>
#include <stdexcept>
#include <thread>

#include "duet/offload.hpp"
#include "support.hpp"

TEST_CASE("offload runs the function on a pool thread and calls back on the loop thread", "[offload]") {
  duet::Loop loop;
  const auto loop_thread = std::this_thread::get_id();
  std::thread::id worker;
  std::optional<int> answer;
  duet::offload(
      loop,
      [&] {
        worker = std::this_thread::get_id();
        return 6 * 7;
      },
      [&](std::error_code ec, int value) {
        REQUIRE_FALSE(ec);
        CHECK(std::this_thread::get_id() == loop_thread);
        answer = value;
      });
  CHECK_FALSE(answer);
  loop.run();
  REQUIRE(answer);
  CHECK(*answer == 42);
  CHECK(worker != loop_thread);
}

TEST_CASE("offload of a void function and of a move-only result", "[offload]") {
  duet::Loop loop;
  bool ran = false, called = false;
  std::unique_ptr<std::string> moved;
  duet::offload(
      loop, [&] { ran = true; }, [&](std::error_code ec) { called = !ec; });
  duet::offload(
      loop, [] { return std::make_unique<std::string>("owned"); },
      [&](std::error_code ec, std::unique_ptr<std::string> p) {
        REQUIRE_FALSE(ec);
        moved = std::move(p);
      });
  loop.run();
  CHECK(ran);
  CHECK(called);
  REQUIRE(moved);
  CHECK(*moved == "owned");
}

TEST_CASE("an exception thrown by the offloaded function becomes an error", "[offload]") {
  duet::Loop loop;
  std::optional<std::error_code> plain;
  std::optional<std::string> message;
  auto fails = []() -> int { throw std::runtime_error("no answer"); };
  duet::offload(loop, fails, [&](std::error_code ec, int value) {
    plain = ec;
    CHECK(value == 0);
  });
  // A callback that also takes the exception gets it.
  duet::offload(loop, fails, [&](std::error_code ec, int, std::exception_ptr e) {
    CHECK(ec == duet::errc::offload_threw);
    REQUIRE(e);
    try {
      std::rethrow_exception(e);
    } catch (const std::runtime_error& ex) {
      message = ex.what();
    }
  });
  loop.run();
  REQUIRE(plain);
  CHECK(*plain == duet::errc::offload_threw);
  REQUIRE(message);
  CHECK(*message == "no answer");
}

TEST_CASE("queued work is cancelled and never runs", "[offload][cancel]") {
  duet::Loop loop;
  duet::test::PoolBlocker busy(loop);
  std::stop_source stop;
  std::atomic<bool> ran{false};
  std::optional<std::error_code> result;
  duet::offload(
      loop,
      [&] {
        ran = true;
        return 1;
      },
      duet::with_cancellation(stop.get_token(), [&](std::error_code ec, int) { result = ec; }));
  stop.request_stop();
  busy.release();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK_FALSE(ran);
}

TEST_CASE("work cancelled while running finishes, but reports UV_ECANCELED", "[offload][cancel]") {
  duet::Loop loop;
  std::stop_source stop;
  std::mutex m;
  std::condition_variable cv;
  bool started = false, go = false;
  std::optional<std::error_code> result;
  duet::offload(
      loop,
      [&] {
        std::unique_lock lock(m);
        started = true;
        cv.notify_all();
        cv.wait(lock, [&] { return go; });
        return 7;
      },
      duet::with_cancellation(stop.get_token(), [&](std::error_code ec, int value) {
        result = ec;
        CHECK(value == 0);  // the result is dropped
      }));
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return started; });
  }
  stop.request_stop();  // too late for uv_cancel: the work is running
  {
    std::lock_guard lock(m);
    go = true;
  }
  cv.notify_all();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
}

TEST_CASE("an exception thrown by an offload callback goes to the error hook", "[offload]") {
  duet::Loop loop;
  duet::test::ErrorLog log;
  loop.set_error_handler(log.handler());
  duet::offload(
      loop, [] { return 1; }, [](std::error_code, int) { throw std::logic_error("callback failed"); });
  loop.run();
  CHECK(log.messages == std::vector<std::string>{"callback failed"});
}
