// docs/your-own-operation.md: its example (extracted from the page at configure time) gets both faces,
// cancellation and a clean Loop shutdown from duet/operation.hpp alone.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <optional>
#include <stop_token>
#include <string>

#include "duet/spawn.hpp"
#include "duet/task.hpp"
#include "support.hpp"
#include "your_own_operation.hpp"  // the page's code block

using duet::test::TempDir;

namespace {

// A second operation of the same shape with a result: readlink, giving the link's target.
template <class Callback>
void read_link(duet::Loop& loop, std::string path, Callback&& cb) {
  duet::start_request<std::string, uv_fs_t>(
      loop, std::forward<Callback>(cb),
      [&path](uv_loop_t* uv, uv_fs_t* req, auto done) { return uv_fs_readlink(uv, req, path.c_str(), done); },
      [](uv_fs_t* req) {
        duet::Completion<std::string> c{static_cast<int>(req->result)};
        if (req->result >= 0) c.value = static_cast<const char*>(req->ptr);
        uv_fs_req_cleanup(req);
        return c;
      });
}

struct stat lstat_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

}  // namespace

TEST_CASE("the page's operation sets a symlink's own times through the callback face", "[own_operation]") {
  duet::Loop loop;
  TempDir dir;
  const std::string link = dir / "link";
  REQUIRE(::symlink("nowhere", link.c_str()) == 0);  // a dangling link: only lutime can touch it
  std::optional<std::error_code> result;
  my::lutime(loop, link, 1000000000.0, 1200000000.0, [&](std::error_code ec) { result = ec; });
  CHECK_FALSE(result);  // never inside the call
  loop.run();
  REQUIRE(result);
  CHECK_FALSE(*result);
  CHECK(lstat_of(link).st_mtime == 1200000000);
  CHECK(lstat_of(link).st_atime == 1000000000);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("the page's operation throws the callback's error through the coroutine face", "[own_operation]") {
  duet::Loop loop;
  TempDir dir;
  const std::string link = dir / "link";
  REQUIRE(::symlink("nowhere", link.c_str()) == 0);
  auto body = [&]() -> duet::Task<int> {
    co_await my::lutime(loop, link, 5.0, 7.0);
    try {
      co_await my::lutime(loop, dir / "missing", 5.0, 7.0);
    } catch (const std::system_error& e) {
      co_return e.code().value();
    }
    co_return 0;
  };
  CHECK(duet::run(loop, body()) == UV_ENOENT);
  CHECK(lstat_of(link).st_mtime == 7);
}

TEST_CASE("an operation of your own gives its result, and cancels while queued", "[own_operation]") {
  duet::Loop loop;
  TempDir dir;
  const std::string link = dir / "link";
  REQUIRE(::symlink("the/target", link.c_str()) == 0);
  std::optional<std::string> target;
  read_link(loop, link, [&](std::error_code ec, std::string t) {
    REQUIRE_FALSE(ec);
    target = std::move(t);
  });
  loop.run();
  CHECK(target == "the/target");

  std::optional<std::error_code> cancelled;
  std::optional<std::string> value;
  {
    duet::test::PoolBlocker blocker(loop);  // every pool thread busy: the request stays queued
    std::stop_source stop;
    read_link(loop, link, duet::with_cancellation(stop.get_token(), [&](std::error_code ec, std::string t) {
                cancelled = ec;
                value = std::move(t);
              }));
    stop.request_stop();
    blocker.release();
    loop.run();
  }
  REQUIRE(cancelled);
  CHECK(*cancelled == std::error_code(UV_ECANCELED, duet::uv_category()));
  CHECK(value == "");  // a cancelled operation's result is empty
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("an operation of your own pending when its Loop is destroyed is not called back", "[own_operation][lifetime]") {
  duet::test::ErrorLog log;
  bool called = false;
  TempDir dir;
  const std::string link = dir / "link";
  REQUIRE(::symlink("t", link.c_str()) == 0);
  {
    std::optional<duet::Loop> loop(std::in_place);
    loop->set_error_handler(log.handler());
    duet::test::PoolBlocker blocker(*loop);
    my::lutime(*loop, link, 1.0, 2.0, [&](std::error_code) { called = true; });
    blocker.release();
    loop.reset();  // ASan: the request object is freed once libuv is done with it
  }
  CHECK_FALSE(called);
  REQUIRE(log.messages.size() == 1);
  CHECK(log.messages[0].find("operation(s) pending") != std::string::npos);
}
