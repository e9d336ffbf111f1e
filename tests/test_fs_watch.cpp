#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "deadline.hpp"
#include "duet/fs_event.hpp"
#include "duet/fs_poll.hpp"
#include "duet/spawn.hpp"
#include "duet/with_timeout.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using duet::FileEvent;
using duet::FsEvent;
using duet::FsPoll;
using duet::StatChange;
using duet::Task;
using duet::test::Deadline;
namespace stdfs = std::filesystem;

namespace {

/// Appends `bytes` to `path` in one write (so that a poll sees the file before or after, never between).
void append(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
  const bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("short write to " + path);
}

/// Makes `path` appear at once with `bytes` in it (written beside it, then renamed into place).
void create_whole(const std::string& path, const std::string& bytes) {
  std::ofstream(path + ".tmp", std::ios::binary) << bytes;
  stdfs::rename(path + ".tmp", path);
}

/// Takes events until one for `name` with the given flags (others, and the system's repeats, are
/// skipped); returns every event taken. Throws `duet::TimedOut` if none comes within 5 s.
Task<std::vector<FileEvent>> until(FsEvent& watcher, std::string name, bool renamed, bool changed) {
  std::vector<FileEvent> taken;
  while (true) {
    taken.push_back(co_await duet::with_timeout(5s, watcher.next()));
    const FileEvent& e = taken.back();
    if (e.name == name && (!renamed || e.renamed) && (!changed || e.changed)) co_return taken;
  }
}

/// Takes changes until `done(change)`; throws `duet::TimedOut` if it takes more than 5 s.
template <class Pred>
Task<StatChange> until(FsPoll& poll, Pred done) {
  while (true) {
    StatChange c = co_await duet::with_timeout(5s, poll.next());
    if (done(c)) co_return c;
  }
}

auto uv_code(int code) {
  return Catch::Predicate<std::system_error>([code](const std::system_error& e) { return e.code().value() == code; });
}
auto closed() {
  return Catch::Predicate<std::system_error>(
      [](const std::system_error& e) { return e.code() == duet::errc::not_connected; });
}

}  // namespace

// ---- FsEvent ----------------------------------------------------------------------------------------

TEST_CASE("a folder watch reports an entry created, modified, renamed and deleted", "[fs_event]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  duet::test::TempDir dir;
  auto story = [](duet::Loop& l, duet::test::TempDir& d) -> Task<std::vector<FileEvent>> {
    FsEvent watcher(l);
    watcher.start(d.path().string());
    CHECK(watcher.active());
    CHECK(watcher.path() == d.path().string());
    std::vector<FileEvent> all;
    auto take = [&all](std::vector<FileEvent> some) { all.insert(all.end(), some.begin(), some.end()); };
    std::ofstream(d / "a").close();  // created, empty
    take(co_await until(watcher, "a", true, false));
    append(d / "a", "some bytes");
    take(co_await until(watcher, "a", false, true));
    stdfs::rename(d / "a", d / "b");
    take(co_await until(watcher, "a", true, false));  // the old name went ...
    take(co_await until(watcher, "b", true, false));  // ... and the new one appeared
    stdfs::remove(d / "b");
    take(co_await until(watcher, "b", true, false));
    watcher.stop();
    co_return all;
  };
  const std::vector<FileEvent> all = duet::run(loop, story(loop, dir));
  CHECK(all.size() >= 5);
  for (const FileEvent& e : all) {
    CHECK((e.name == "a" || e.name == "b"));
    CHECK((e.renamed || e.changed));
  }
  CHECK(loop.live_resources() == 0);
  CHECK(log.messages.empty());
}

TEST_CASE("a file watch reports a change under the file's own name, callback face", "[fs_event]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  duet::test::TempDir dir;
  const std::string file = dir / "watched.txt";
  duet::test::write_file(file, "before");
  FsEvent watcher(loop);
  std::optional<FileEvent> seen;
  watcher.start(file, [&](std::error_code ec, const FileEvent& e) {
    REQUIRE_FALSE(ec);
    seen = e;
    watcher.stop();  // from inside its own callback
  });
  append(file, ", after");
  CHECK_FALSE(seen);  // delivered from the loop
  loop.run();
  CHECK_FALSE(deadline.expired);
  REQUIRE(seen);
  CHECK(seen->name == "watched.txt");
  CHECK(seen->changed);
  CHECK_FALSE(watcher.active());
  CHECK(log.messages.empty());
}

TEST_CASE("events queue while nobody waits, up to the limit, then UV_ENOBUFS once", "[fs_event]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  duet::test::TempDir dir;
  FsEvent watcher(loop, 2);
  watcher.start(dir.path().string());
  for (const char* name : {"1", "2", "3", "4", "5"}) std::ofstream(dir / name).close();
  while (watcher.queued() < 2 && !deadline.expired) loop.run_once();
  CHECK(watcher.queued() == 2);
  std::vector<std::pair<std::error_code, std::string>> taken;
  auto take = [&](std::error_code ec, FileEvent e) { taken.emplace_back(ec, e.name); };
  watcher.next(take);
  watcher.next(take);
  watcher.next(take);  // the loss
  loop.run_once();
  std::ofstream(dir / "6").close();  // after the loss: queued again
  watcher.next([&](std::error_code ec, FileEvent e) {
    take(ec, std::move(e));
    watcher.stop();
  });
  loop.run();
  CHECK_FALSE(deadline.expired);
  REQUIRE(taken.size() == 4);
  CHECK_FALSE(taken[0].first);
  CHECK(taken[0].second == "1");
  CHECK_FALSE(taken[1].first);
  CHECK(taken[1].second == "2");
  CHECK(taken[2].first.value() == UV_ENOBUFS);
  CHECK_FALSE(taken[3].first);
  CHECK(taken[3].second == "6");
  CHECK(log.messages.empty());
}

TEST_CASE("a next whose token is already stopped is cancelled and leaves the queued event", "[fs_event][cancel]") {
  duet::Loop loop;
  Deadline deadline(loop, 10s);
  duet::test::TempDir dir;
  FsEvent watcher(loop);
  watcher.start(dir.path().string());
  std::ofstream(dir / "1").close();
  while (watcher.queued() == 0 && !deadline.expired) loop.run_once();
  REQUIRE(watcher.queued() > 0);
  std::stop_source stop;
  stop.request_stop();
  std::optional<std::error_code> stopped;
  watcher.next(duet::with_cancellation(stop.get_token(), [&](std::error_code ec, FileEvent) { stopped = ec; }));
  CHECK(watcher.queued() > 0);
  loop.run_once();
  REQUIRE(stopped);
  CHECK(duet::is_cancelled(*stopped));
  std::optional<std::string> name;
  watcher.next([&](std::error_code ec, FileEvent e) {
    CHECK_FALSE(ec);
    name = e.name;
    watcher.stop();
  });
  loop.run();
  CHECK(name == std::optional<std::string>("1"));
}

TEST_CASE("FsEvent::stop is prompt: the loop returns and a pending next gets UV_ECANCELED", "[fs_event][cancel]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  duet::test::TempDir dir;
  FsEvent watcher(loop);
  watcher.start(dir.path().string());
  std::optional<std::error_code> result;
  watcher.next([&](std::error_code ec, FileEvent) { result = ec; });
  duet::sleep(loop, 10ms, [&](std::error_code) {
    watcher.stop();
    CHECK_FALSE(result);
  });
  const auto start = std::chrono::steady_clock::now();
  loop.run();
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK_FALSE(deadline.expired);
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK_FALSE(watcher.active());
  CHECK(watcher.path().empty());
  // Not watching, nothing queued: a next would wait forever, and says so.
  CHECK_THROWS_MATCHES(watcher.next([](std::error_code, FileEvent) {}), std::system_error, closed());

  std::stop_source stop;
  std::optional<std::error_code> by_token;
  watcher.start(dir.path().string());
  watcher.next(duet::with_cancellation(stop.get_token(), [&](std::error_code ec, FileEvent) { by_token = ec; }));
  stop.request_stop();
  watcher.close();
  loop.run();
  REQUIRE(by_token);
  CHECK(duet::is_cancelled(*by_token));
  CHECK(log.messages.empty());
}

TEST_CASE("FsEvent refuses a missing path and a second consumer", "[fs_event]") {
  duet::Loop loop;
  duet::test::TempDir dir;
  FsEvent watcher(loop);
  CHECK_THROWS_MATCHES(watcher.start(dir / "missing"), std::system_error, uv_code(UV_ENOENT));
  CHECK_FALSE(watcher.active());
  std::optional<std::error_code> refused;
  watcher.start(dir.path().string(), [](std::error_code, const FileEvent&) {});
  watcher.next([&](std::error_code ec, FileEvent) {
    refused = ec;
    watcher.close();
  });
  loop.run();
  REQUIRE(refused);
  CHECK(*refused == duet::errc::already_reading);
  CHECK_THROWS_MATCHES(watcher.start(dir.path().string()), std::system_error, closed());
  FsEvent never_opened;
  CHECK_THROWS_MATCHES(never_opened.next([](std::error_code, FileEvent) {}), std::system_error, closed());
  CHECK(never_opened.queued() == 0);
  never_opened.stop();
  never_opened.close();
}

// ---- FsPoll -----------------------------------------------------------------------------------------

TEST_CASE("FsPoll reports a file appearing, growing and going, with previous and current stat", "[fs_poll]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  duet::test::TempDir dir;
  auto story = [](duet::Loop& l, std::string path) -> Task<> {
    FsPoll poll(l);
    poll.start(path, 10ms);
    CHECK(poll.path() == path);
    StatChange c = co_await duet::with_timeout(5s, poll.next());  // the first stat fails
    CHECK(c.error.value() == UV_ENOENT);
    create_whole(path, "abc");
    c = co_await until(poll, [](const StatChange& s) { return !s.error; });
    CHECK(c.previous.st_ino == 0);  // it did not exist
    CHECK(c.current.st_size == 3);
    append(path, "def");
    c = co_await until(poll, [](const StatChange& s) { return s.current.st_size != 3; });
    CHECK_FALSE(c.error);
    CHECK(c.previous.st_size == 3);
    CHECK(c.current.st_size == 6);
    stdfs::remove(path);
    c = co_await until(poll, [](const StatChange&) { return true; });
    CHECK(c.error.value() == UV_ENOENT);
    CHECK(c.previous.st_size == 6);
    CHECK(c.current.st_ino == 0);
  };
  duet::run(loop, story(loop, dir / "appears"));
  loop.run();  // run() stopped the loop with the task: the FsPoll it destroyed finishes closing
  CHECK(loop.live_resources() == 0);
  CHECK(log.messages.empty());
}

TEST_CASE("FsPoll::stop is prompt, from its own callback or while a stat is on the thread pool", "[fs_poll]") {
  duet::test::ErrorLog log;
  duet::Loop loop;
  loop.set_error_handler(log.handler());
  Deadline deadline(loop, 10s);
  duet::test::TempDir dir;
  FsPoll poll(loop);
  std::optional<std::error_code> error;
  poll.start(dir / "missing", 10s, [&](std::error_code ec, const StatChange& c) {
    REQUIRE_FALSE(ec);
    error = c.error;
    poll.stop();
  });
  const auto start = std::chrono::steady_clock::now();
  loop.run();  // the first stat reports the missing file at once; the 10 s interval is never waited
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK_FALSE(deadline.expired);
  REQUIRE(error);
  CHECK(error->value() == UV_ENOENT);
  CHECK_FALSE(poll.active());

  // Started again right away (the stop's stat may still be running) on a fresh handle, then stopped
  // while its first stat is in flight: a pending next is cancelled, and the loop returns.
  duet::test::write_file(dir / "present", "x");
  poll.start(dir / "present", 10s);
  CHECK(poll.path() == dir / "present");
  std::optional<std::error_code> pending;
  poll.next([&](std::error_code ec, StatChange) { pending = ec; });
  poll.stop();
  loop.run();
  CHECK_FALSE(deadline.expired);
  REQUIRE(pending);
  CHECK(duet::is_cancelled(*pending));
  CHECK(loop.live_resources() == 2);  // the FsPoll itself and the deadline's timer
  CHECK_THROWS_MATCHES(poll.next([](std::error_code, StatChange) {}), std::system_error, closed());
  CHECK(log.messages.empty());
}

TEST_CASE("FsPoll::keep_loop_alive(false) holds across a stop and a start", "[fs_poll]") {
  duet::Loop loop;
  Deadline deadline(loop, 10s);
  duet::test::TempDir dir;
  FsPoll poll(loop);
  poll.keep_loop_alive(false);
  for (int round = 0; round < 2; ++round) {  // the second start makes a fresh handle (see FsPoll::stop)
    CAPTURE(round);
    poll.start(dir.path(), 1s);
    CHECK(poll.active());
    loop.run();  // only the poll is left, and it does not keep the loop running
    CHECK_FALSE(deadline.expired);
    poll.stop();
  }
}

TEST_CASE("operations on a closed FsPoll throw not_connected", "[fs_poll]") {
  duet::Loop loop;
  FsPoll poll(loop);
  poll.close();
  CHECK_FALSE(poll.is_open());
  CHECK_FALSE(poll.active());
  CHECK_THROWS_MATCHES(poll.start("/", 1s), std::system_error, closed());
  CHECK_THROWS_MATCHES(poll.next([](std::error_code, StatChange) {}), std::system_error, closed());
  CHECK(poll.path().empty());
  CHECK(poll.queued() == 0);
  poll.stop();
  poll.keep_loop_alive(false);
  poll.close();
  loop.run();
  CHECK(loop.live_resources() == 0);
}
