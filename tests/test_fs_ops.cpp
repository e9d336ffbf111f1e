// The fs operations beyond test_fs.cpp's: each through both faces, with the errors a user meets,
// cancellation while queued and after running, and the Loop destroyed with each kind pending.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "duet/fs.hpp"
#include "duet/spawn.hpp"
#include "duet/task.hpp"
#include "support.hpp"

namespace fs = duet::fs;
namespace stdfs = std::filesystem;
using duet::Task;
using duet::test::TempDir;
using namespace std::chrono_literals;

namespace {

/// Starts an operation through its callback face (`start(cb)`), runs the loop and returns what the
/// callback got: the error, or the error and the result. Checks that it was not called inside `start`.
template <class R = void, class Start>
auto by_callback(duet::Loop& loop, Start start) {
  bool inside = true;
  if constexpr (std::is_void_v<R>) {
    std::optional<std::error_code> got;
    start([&](std::error_code ec) {
      CHECK_FALSE(inside);
      got = ec;
    });
    inside = false;
    loop.run();
    REQUIRE(got);
    return *got;
  } else {
    std::optional<std::pair<std::error_code, R>> got;
    start([&](std::error_code ec, R value) {
      CHECK_FALSE(inside);
      got.emplace(ec, std::move(value));
    });
    inside = false;
    loop.run();
    REQUIRE(got);
    return std::move(*got);
  }
}

/// Awaits `make()` (an operation's coroutine face) in a task run on `loop`; returns its result.
template <class Make>
auto by_coroutine(duet::Loop& loop, Make make) {
  using R = decltype(make().await_resume());
  auto task = [](Make& m) -> Task<R> { co_return co_await m(); };
  return duet::run(loop, task(make));
}

/// The error the coroutine face throws for `make()`.
template <class Make>
std::error_code coroutine_error(duet::Loop& loop, Make make) {
  try {
    by_coroutine(loop, std::move(make));
  } catch (const std::system_error& e) {
    return e.code();
  }
  FAIL("the coroutine face did not throw");
  return {};
}

/// The number of descriptors this process has open.
/// Descriptors open in this process. The first loop a process makes opens libuv's own process-wide
/// ones (its signal lock pipe), so a loop is made and destroyed first: run alone (as ctest runs each
/// test), the count would otherwise grow by those.
std::size_t open_descriptors() {
  { duet::Loop warm_up; }
  return duet::test::entries_in("/proc/self/fd");
}

/// Opens `path` directly (not through duet), as a File.
fs::File open_now(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  return fs::File(fd);
}

fs::Directory open_directory(duet::Loop& loop, const std::string& path) {
  auto [ec, dir] = by_callback<fs::Directory>(loop, [&](auto cb) { fs::opendir(loop, path, cb); });
  REQUIRE_FALSE(ec);
  REQUIRE(dir.is_open());
  return std::move(dir);
}

int permissions_of(const std::string& path) {
  struct ::stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<int>(st.st_mode & 07777);
}

/// True if a result is empty (what a callback gets on error).
template <class T>
bool is_empty(const T& value) {
  return value == T();
}
bool is_empty(const fs::TempFile& t) { return !t.file.is_open() && t.path.empty(); }
bool is_empty(const fs::Directory& d) { return !d.is_open(); }
bool is_empty(const fs::File& f) { return !f.is_open(); }
bool is_empty(const fs::Stat& st) { return st.st_mode == 0 && st.st_ino == 0 && st.st_size == 0; }
bool is_empty(const fs::StatFs& st) { return st.f_bsize == 0 && st.f_blocks == 0; }
template <class... Results>
bool all_empty(const Results&... results) {
  return (is_empty(results) && ...);
}

const std::error_code kRefused = make_error_code(duet::errc::invalid_argument);

std::set<std::string> names_in(const stdfs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : stdfs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

}  // namespace

// ---- folders --------------------------------------------------------------------------------------------

TEST_CASE("mkdtemp makes a new private folder from a template, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::string tpl = dir / "made-XXXXXX";
  auto [ec, path] = by_callback<std::string>(loop, [&](auto cb) { fs::mkdtemp(loop, tpl, cb); });
  REQUIRE_FALSE(ec);
  CHECK(path.size() == tpl.size());
  CHECK(path.rfind(dir / "made-", 0) == 0);
  CHECK(path != tpl);
  CHECK(stdfs::is_directory(path));
  CHECK(permissions_of(path) == 0700);

  const std::string second = by_coroutine(loop, [&] { return fs::mkdtemp(loop, tpl); });
  CHECK(stdfs::is_directory(second));
  CHECK(second != path);
  CHECK(duet::test::entries_in(dir.path()) == 2);
}

TEST_CASE("mkdtemp reports a template without XXXXXX as UV_EINVAL and a missing folder as UV_ENOENT", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  auto [ec, path] = by_callback<std::string>(loop, [&](auto cb) { fs::mkdtemp(loop, dir / "no-pattern", cb); });
  CHECK(ec.value() == UV_EINVAL);
  CHECK(path.empty());
  CHECK(coroutine_error(loop, [&] { return fs::mkdtemp(loop, dir / "no-pattern"); }).value() == UV_EINVAL);
  CHECK(by_callback<std::string>(loop, [&](auto cb) { fs::mkdtemp(loop, dir / "none/x-XXXXXX", cb); }).first.value() ==
        UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::mkdtemp(loop, dir / "none/x-XXXXXX"); }).value() == UV_ENOENT);
  CHECK(duet::test::entries_in(dir.path()) == 0);
}

TEST_CASE("rmdir removes an empty folder and reports UV_ENOTEMPTY, UV_ENOENT and UV_ENOTDIR, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  REQUIRE(stdfs::create_directory(dir / "empty"));
  REQUIRE(stdfs::create_directory(dir / "empty2"));
  duet::test::write_file(dir / "full/x", "x");
  duet::test::write_file(dir / "file", "x");

  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::rmdir(loop, dir / "empty", cb); }));
  CHECK_FALSE(stdfs::exists(dir / "empty"));
  by_coroutine(loop, [&] { return fs::rmdir(loop, dir / "empty2"); });
  CHECK_FALSE(stdfs::exists(dir / "empty2"));

  CHECK(by_callback(loop, [&](auto cb) { fs::rmdir(loop, dir / "full", cb); }).value() == UV_ENOTEMPTY);
  CHECK(coroutine_error(loop, [&] { return fs::rmdir(loop, dir / "full"); }).value() == UV_ENOTEMPTY);
  CHECK(by_callback(loop, [&](auto cb) { fs::rmdir(loop, dir / "missing", cb); }).value() == UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::rmdir(loop, dir / "missing"); }).value() == UV_ENOENT);
  CHECK(by_callback(loop, [&](auto cb) { fs::rmdir(loop, dir / "file", cb); }).value() == UV_ENOTDIR);
  CHECK(coroutine_error(loop, [&] { return fs::rmdir(loop, dir / "file"); }).value() == UV_ENOTDIR);
  CHECK(stdfs::exists(dir / "full/x"));
}

TEST_CASE("scandir lists a folder sorted by name, with each entry's type, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  REQUIRE(stdfs::create_directory(dir / "listed"));
  REQUIRE(stdfs::create_directory(dir / "listed/a_dir"));
  duet::test::write_file(dir / "listed/b.txt", "b");
  stdfs::create_symlink("b.txt", dir / "listed/c_link");
  REQUIRE(::mkfifo((dir / "listed/d_fifo").c_str(), 0600) == 0);
  const std::vector<fs::DirEntry> expected{{"a_dir", fs::EntryType::directory},
                                           {"b.txt", fs::EntryType::file},
                                           {"c_link", fs::EntryType::symlink},
                                           {"d_fifo", fs::EntryType::fifo}};

  auto [ec, entries] =
      by_callback<std::vector<fs::DirEntry>>(loop, [&](auto cb) { fs::scandir(loop, dir / "listed", cb); });
  REQUIRE_FALSE(ec);
  CHECK(entries == expected);
  CHECK(by_coroutine(loop, [&] { return fs::scandir(loop, dir / "listed"); }) == expected);
  CHECK(by_coroutine(loop, [&] { return fs::scandir(loop, dir / "listed/a_dir"); }).empty());
}

TEST_CASE("scandir reports a missing folder as UV_ENOENT and a file as UV_ENOTDIR, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "file", "x");
  auto [ec, entries] =
      by_callback<std::vector<fs::DirEntry>>(loop, [&](auto cb) { fs::scandir(loop, dir / "no", cb); });
  CHECK(ec.value() == UV_ENOENT);
  CHECK(entries.empty());
  CHECK(coroutine_error(loop, [&] { return fs::scandir(loop, dir / "no"); }).value() == UV_ENOENT);
  CHECK(by_callback<std::vector<fs::DirEntry>>(loop, [&](auto cb) {
          fs::scandir(loop, dir / "file", cb);
        }).first.value() == UV_ENOTDIR);
  CHECK(coroutine_error(loop, [&] { return fs::scandir(loop, dir / "file"); }).value() == UV_ENOTDIR);
}

namespace {

/// A folder of `n` files named f000, f001, ...
std::set<std::string> make_files(const std::string& folder, int n) {
  std::set<std::string> names;
  for (int i = 0; i < n; ++i) {
    std::string name = "f" + std::to_string(1000 + i).substr(1);
    duet::test::write_file(folder + "/" + name, "");
    names.insert(name);
  }
  return names;
}

}  // namespace

TEST_CASE("a Directory is read batch by batch until an empty batch, then closed, callback face", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::set<std::string> expected = make_files(dir / "many", 150);
  fs::Directory d = open_directory(loop, dir / "many");

  std::set<std::string> seen;
  std::vector<std::size_t> batches;
  std::optional<std::error_code> closed;
  std::function<void()> next = [&] {
    fs::read(loop, d, [&](std::error_code ec, std::vector<fs::DirEntry> batch) {
      REQUIRE_FALSE(ec);
      batches.push_back(batch.size());
      for (auto& e : batch) {
        CHECK(e.type == fs::EntryType::file);
        CHECK(seen.insert(e.name).second);  // never twice
      }
      if (!batch.empty()) return next();
      fs::closedir(loop, std::move(d), [&](std::error_code cec) { closed = cec; });
    });
  };
  next();
  loop.run();
  CHECK(seen == expected);
  REQUIRE(batches.size() >= 4);  // 150 entries at most 64 at a time, then the empty batch
  CHECK(batches.back() == 0);
  for (std::size_t n : batches) CHECK(n <= fs::Directory::batch);
  REQUIRE(closed);
  CHECK_FALSE(*closed);
  CHECK_FALSE(d.is_open());
}

TEST_CASE("a Directory is read batch by batch until an empty batch, then closed, coroutine face", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::set<std::string> expected = make_files(dir / "many", 150);
  auto list = [](duet::Loop& l, std::string path) -> Task<std::pair<std::set<std::string>, std::size_t>> {
    fs::Directory d = co_await fs::opendir(l, path);
    std::set<std::string> names;
    std::size_t batches = 0;
    for (auto batch = co_await fs::read(l, d); !batch.empty(); batch = co_await fs::read(l, d)) {
      ++batches;
      CHECK(batch.size() <= fs::Directory::batch);
      for (auto& e : batch) names.insert(e.name);
    }
    co_await fs::closedir(l, std::move(d));
    CHECK_FALSE(d.is_open());
    co_return std::pair(std::move(names), batches);
  };
  auto [names, batches] = duet::run(loop, list(loop, dir / "many"));
  CHECK(names == expected);
  CHECK(batches >= 3);
}

TEST_CASE("opendir reports a missing folder as UV_ENOENT and a file as UV_ENOTDIR, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "file", "x");
  auto [ec, d] = by_callback<fs::Directory>(loop, [&](auto cb) { fs::opendir(loop, dir / "no", cb); });
  CHECK(ec.value() == UV_ENOENT);
  CHECK_FALSE(d.is_open());
  CHECK(coroutine_error(loop, [&] { return fs::opendir(loop, dir / "no"); }).value() == UV_ENOENT);
  CHECK(by_callback<fs::Directory>(loop, [&](auto cb) { fs::opendir(loop, dir / "file", cb); }).first.value() ==
        UV_ENOTDIR);
  CHECK(coroutine_error(loop, [&] { return fs::opendir(loop, dir / "file"); }).value() == UV_ENOTDIR);
}

TEST_CASE("a closed Directory gives UV_EBADF and a second read in flight UV_EBUSY", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  make_files(dir / "some", 3);
  fs::Directory closed;
  auto [ec, batch] = by_callback<std::vector<fs::DirEntry>>(loop, [&](auto cb) { fs::read(loop, closed, cb); });
  CHECK(ec.value() == UV_EBADF);
  CHECK(batch.empty());
  CHECK(coroutine_error(loop, [&] { return fs::read(loop, closed); }).value() == UV_EBADF);
  CHECK(by_callback(loop, [&](auto cb) { fs::closedir(loop, fs::Directory(), cb); }).value() == UV_EBADF);
  CHECK(coroutine_error(loop, [&] { return fs::closedir(loop, fs::Directory()); }).value() == UV_EBADF);

  fs::Directory d = open_directory(loop, dir / "some");
  std::optional<std::error_code> first, second;
  std::size_t first_count = 0;
  fs::read(loop, d, [&](std::error_code e, std::vector<fs::DirEntry> b) {
    first = e;
    first_count = b.size();
  });
  fs::read(loop, d, [&](std::error_code e, std::vector<fs::DirEntry> b) {
    second = e;
    CHECK(b.empty());
  });
  loop.run();
  REQUIRE(first);
  CHECK_FALSE(*first);
  CHECK(first_count == 3);
  REQUIRE(second);
  CHECK(second->value() == UV_EBUSY);

  // Closed by closedir, the Directory it was moved from reads as closed too.
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::closedir(loop, std::move(d), cb); }));
  CHECK(by_callback<std::vector<fs::DirEntry>>(loop, [&](auto cb) { fs::read(loop, d, cb); }).first.value() ==
        UV_EBADF);
}

TEST_CASE("closedir with a read in flight gets UV_EBUSY and the directory closes when the read ends", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  make_files(dir / "some", 2);
  const std::size_t before = open_descriptors();
  fs::Directory d = open_directory(loop, dir / "some");
  CHECK(open_descriptors() == before + 1);
  std::optional<std::error_code> read_result, close_result;
  std::size_t count = 0;
  fs::read(loop, d, [&](std::error_code ec, std::vector<fs::DirEntry> batch) {
    read_result = ec;
    count = batch.size();
  });
  fs::closedir(loop, std::move(d), [&](std::error_code ec) { close_result = ec; });
  loop.run();
  REQUIRE(close_result);
  CHECK(close_result->value() == UV_EBUSY);
  REQUIRE(read_result);
  CHECK_FALSE(*read_result);
  CHECK(count == 2);
  CHECK(open_descriptors() == before);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("a Directory dropped without closedir closes itself, also while a read is in flight", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  make_files(dir / "some", 2);
  const std::size_t before = open_descriptors();
  {
    fs::Directory d = open_directory(loop, dir / "some");
    CHECK(open_descriptors() == before + 1);
  }
  CHECK(open_descriptors() == before);

  fs::Directory d = open_directory(loop, dir / "some");
  std::optional<std::error_code> result;
  std::size_t count = 0;
  fs::read(loop, d, [&](std::error_code ec, std::vector<fs::DirEntry> batch) {
    result = ec;
    count = batch.size();
  });
  d.reset();
  CHECK_FALSE(d.is_open());
  CHECK(open_descriptors() == before + 1);  // the read in flight keeps it open
  loop.run();
  REQUIRE(result);
  CHECK_FALSE(*result);
  CHECK(count == 2);
  CHECK(open_descriptors() == before);
}

// ---- files --------------------------------------------------------------------------------------------

TEST_CASE("mkstemp makes and opens a new private file from a template, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::string tpl = dir / "tmp-XXXXXX";
  auto [ec, made] = by_callback<fs::TempFile>(loop, [&](auto cb) { fs::mkstemp(loop, tpl, cb); });
  REQUIRE_FALSE(ec);
  REQUIRE(made.file.is_open());
  CHECK(made.path.size() == tpl.size());
  CHECK(made.path.rfind(dir / "tmp-", 0) == 0);
  CHECK(stdfs::is_regular_file(made.path));
  CHECK(permissions_of(made.path) == 0600);
  auto [wec, n] = by_callback<std::size_t>(loop, [&](auto cb) { fs::write(loop, made.file, "abc", 0, cb); });
  REQUIRE_FALSE(wec);
  CHECK(n == 3);
  CHECK(duet::test::read_file(made.path) == "abc");  // the file written is the file named

  fs::TempFile other = by_coroutine(loop, [&] { return fs::mkstemp(loop, tpl); });
  CHECK(other.file.is_open());
  CHECK(other.path != made.path);
  CHECK(duet::test::entries_in(dir.path()) == 2);
}

TEST_CASE("mkstemp reports a template without XXXXXX as UV_EINVAL and a missing folder as UV_ENOENT", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  auto [ec, made] = by_callback<fs::TempFile>(loop, [&](auto cb) { fs::mkstemp(loop, dir / "plain", cb); });
  CHECK(ec.value() == UV_EINVAL);
  CHECK_FALSE(made.file.is_open());
  CHECK(made.path.empty());
  CHECK(coroutine_error(loop, [&] { return fs::mkstemp(loop, dir / "plain"); }).value() == UV_EINVAL);
  CHECK(coroutine_error(loop, [&] { return fs::mkstemp(loop, dir / "no/t-XXXXXX"); }).value() == UV_ENOENT);
  CHECK(duet::test::entries_in(dir.path()) == 0);
}

TEST_CASE("lstat sees a symlink itself, stat its target, fstat an open file, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "target", "12345");
  stdfs::create_symlink("target", dir / "link");

  auto [lec, l] = by_callback<fs::Stat>(loop, [&](auto cb) { fs::lstat(loop, dir / "link", cb); });
  REQUIRE_FALSE(lec);
  CHECK(S_ISLNK(l.st_mode));
  CHECK(S_ISLNK(by_coroutine(loop, [&] { return fs::lstat(loop, dir / "link"); }).st_mode));
  const fs::Stat followed = by_coroutine(loop, [&] { return fs::stat(loop, dir / "link"); });
  CHECK(S_ISREG(followed.st_mode));

  fs::File file = open_now(dir / "target", O_RDONLY);
  auto [fec, f] = by_callback<fs::Stat>(loop, [&](auto cb) { fs::fstat(loop, file, cb); });
  REQUIRE_FALSE(fec);
  CHECK(f.st_size == 5);
  CHECK(f.st_ino == followed.st_ino);
  CHECK(by_coroutine(loop, [&] { return fs::fstat(loop, file); }).st_size == 5);

  CHECK(by_callback<fs::Stat>(loop, [&](auto cb) { fs::lstat(loop, dir / "none", cb); }).first.value() == UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::lstat(loop, dir / "none"); }).value() == UV_ENOENT);
  const fs::File closed;
  CHECK(by_callback<fs::Stat>(loop, [&](auto cb) { fs::fstat(loop, closed, cb); }).first.value() == UV_EBADF);
  CHECK(coroutine_error(loop, [&] { return fs::fstat(loop, closed); }).value() == UV_EBADF);
}

TEST_CASE("statfs reports the file system's sizes, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  struct ::statfs expected {};
  REQUIRE(::statfs(dir.path().c_str(), &expected) == 0);
  auto [ec, s] = by_callback<fs::StatFs>(loop, [&](auto cb) { fs::statfs(loop, dir.path().string(), cb); });
  REQUIRE_FALSE(ec);
  CHECK(s.f_type == static_cast<std::uint64_t>(expected.f_type));
  CHECK(s.f_bsize == static_cast<std::uint64_t>(expected.f_bsize));
  CHECK(s.f_blocks == static_cast<std::uint64_t>(expected.f_blocks));
  CHECK(s.f_blocks >= s.f_bavail);
  CHECK(by_coroutine(loop, [&] { return fs::statfs(loop, dir.path().string()); }).f_blocks == s.f_blocks);
  CHECK(by_callback<fs::StatFs>(loop, [&](auto cb) { fs::statfs(loop, dir / "none", cb); }).first.value() == UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::statfs(loop, dir / "none"); }).value() == UV_ENOENT);
}

TEST_CASE("ftruncate cuts and extends a file and fdatasync flushes it, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "hello world");
  fs::File file = open_now(dir / "f", O_RDWR);
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::ftruncate(loop, file, 5, cb); }));
  CHECK(duet::test::read_file(dir / "f") == "hello");
  by_coroutine(loop, [&] { return fs::ftruncate(loop, file, 8); });
  CHECK(duet::test::read_file(dir / "f") == std::string("hello\0\0\0", 8));
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::fdatasync(loop, file, cb); }));
  by_coroutine(loop, [&] { return fs::fdatasync(loop, file); });

  fs::File read_only = open_now(dir / "f", O_RDONLY);
  const std::error_code not_writable = by_callback(loop, [&](auto cb) { fs::ftruncate(loop, read_only, 0, cb); });
  CHECK((not_writable.value() == UV_EINVAL || not_writable.value() == UV_EBADF));
  CHECK(coroutine_error(loop, [&] { return fs::ftruncate(loop, read_only, 0); }) == not_writable);
  CHECK(duet::test::read_file(dir / "f").size() == 8);
  const fs::File closed;
  CHECK(by_callback(loop, [&](auto cb) { fs::fdatasync(loop, closed, cb); }).value() == UV_EBADF);
  CHECK(coroutine_error(loop, [&] { return fs::fdatasync(loop, closed); }).value() == UV_EBADF);
}

TEST_CASE("copyfile copies and replaces, excl refuses an existing target, ficlone copies anyway, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "src", "first");
  CHECK_FALSE(
      by_callback(loop, [&](auto cb) { fs::copyfile(loop, dir / "src", dir / "dst", fs::CopyFlags::none, cb); }));
  CHECK(duet::test::read_file(dir / "dst") == "first");
  duet::test::write_file(dir / "src", "second");
  by_coroutine(loop, [&] { return fs::copyfile(loop, dir / "src", dir / "dst", fs::CopyFlags::none); });
  CHECK(duet::test::read_file(dir / "dst") == "second");

  duet::test::write_file(dir / "src", "third");
  CHECK(by_callback(loop, [&](auto cb) {
          fs::copyfile(loop, dir / "src", dir / "dst", fs::CopyFlags::excl, cb);
        }).value() == UV_EEXIST);
  CHECK(coroutine_error(loop, [&] {
          return fs::copyfile(loop, dir / "src", dir / "dst", fs::CopyFlags::excl);
        }).value() == UV_EEXIST);
  CHECK(duet::test::read_file(dir / "dst") == "second");

  // ficlone shares the blocks where the file system can, and copies them where it cannot.
  by_coroutine(loop, [&] {
    return fs::copyfile(loop, dir / "src", dir / "clone", fs::CopyFlags::ficlone | fs::CopyFlags::excl);
  });
  CHECK(duet::test::read_file(dir / "clone") == "third");

  CHECK(by_callback(loop, [&](auto cb) {
          fs::copyfile(loop, dir / "none", dir / "x", fs::CopyFlags::none, cb);
        }).value() == UV_ENOENT);
  CHECK(coroutine_error(loop, [&] {
          return fs::copyfile(loop, dir / "none", dir / "x", fs::CopyFlags::none);
        }).value() == UV_ENOENT);
  CHECK_FALSE(stdfs::exists(dir / "x"));
}

TEST_CASE("sendfile copies a range from one file to another, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "in", "0123456789");
  fs::File in = open_now(dir / "in", O_RDONLY);
  fs::File out = open_now(dir / "out", O_WRONLY | O_CREAT | O_TRUNC);
  auto [ec, sent] = by_callback<std::size_t>(loop, [&](auto cb) { fs::sendfile(loop, out, in, 2, 5, cb); });
  REQUIRE_FALSE(ec);
  CHECK(sent == 5);
  CHECK(duet::test::read_file(dir / "out") == "23456");
  // Past the end of `in`: fewer bytes than asked. `out` goes on from its position.
  CHECK(by_coroutine(loop, [&] { return fs::sendfile(loop, out, in, 8, 100); }) == 2);
  CHECK(duet::test::read_file(dir / "out") == "2345689");

  auto [nec, none] = by_callback<std::size_t>(loop, [&](auto cb) { fs::sendfile(loop, out, in, -1, 5, cb); });
  CHECK(nec == kRefused);
  CHECK(none == 0);
  CHECK(coroutine_error(loop, [&] { return fs::sendfile(loop, out, in, -1, 5); }) == kRefused);
  const fs::File closed;
  CHECK(by_callback<std::size_t>(loop, [&](auto cb) { fs::sendfile(loop, out, closed, 0, 5, cb); }).first.value() ==
        UV_EBADF);
  CHECK(coroutine_error(loop, [&] { return fs::sendfile(loop, out, closed, 0, 5); }).value() == UV_EBADF);
  CHECK(duet::test::read_file(dir / "out") == "2345689");
}

// ---- permissions, owners, times ------------------------------------------------------------------------

TEST_CASE("access checks existence and permissions, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  REQUIRE(::chmod((dir / "f").c_str(), 0644) == 0);
  using fs::AccessMode;
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::access(loop, dir / "f", AccessMode::exists, cb); }));
  by_coroutine(loop, [&] { return fs::access(loop, dir / "f", AccessMode::read | AccessMode::write); });
  // No execute bit for anyone: refused even to root.
  CHECK(by_callback(loop, [&](auto cb) { fs::access(loop, dir / "f", AccessMode::execute, cb); }).value() == UV_EACCES);
  CHECK(coroutine_error(loop, [&] {
          return fs::access(loop, dir / "f", AccessMode::read | AccessMode::execute);
        }).value() == UV_EACCES);
  CHECK(by_callback(loop, [&](auto cb) { fs::access(loop, dir / "none", AccessMode::exists, cb); }).value() ==
        UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::access(loop, dir / "none", AccessMode::exists); }).value() == UV_ENOENT);
}

TEST_CASE("chmod and fchmod set permission bits, and bits outside 07777 are refused, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::chmod(loop, dir / "f", 0640, cb); }));
  CHECK(permissions_of(dir / "f") == 0640);
  by_coroutine(loop, [&] { return fs::chmod(loop, dir / "f", 0604); });
  CHECK(permissions_of(dir / "f") == 0604);
  fs::File file = open_now(dir / "f", O_RDONLY);
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::fchmod(loop, file, 0600, cb); }));
  CHECK(permissions_of(dir / "f") == 0600);
  by_coroutine(loop, [&] { return fs::fchmod(loop, file, 01755); });
  CHECK(permissions_of(dir / "f") == 01755);

  CHECK(by_callback(loop, [&](auto cb) { fs::chmod(loop, dir / "f", 0100644, cb); }) == kRefused);
  CHECK(coroutine_error(loop, [&] { return fs::chmod(loop, dir / "f", -1); }) == kRefused);
  CHECK(by_callback(loop, [&](auto cb) { fs::fchmod(loop, file, 010000, cb); }) == kRefused);
  CHECK(coroutine_error(loop, [&] { return fs::fchmod(loop, file, 0100600); }) == kRefused);
  CHECK(permissions_of(dir / "f") == 01755);
  CHECK(by_callback(loop, [&](auto cb) { fs::chmod(loop, dir / "none", 0600, cb); }).value() == UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::chmod(loop, dir / "none", 0600); }).value() == UV_ENOENT);
}

TEST_CASE("chown and fchown set the owner and group, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  // root may give a file away; anyone else may only "change" it to themselves.
  const bool root = ::geteuid() == 0;
  const uv_uid_t uid = root ? 65534 : ::geteuid();
  const uv_gid_t gid = root ? 65534 : ::getegid();
  const auto keep_uid = static_cast<uv_uid_t>(-1);
  const auto keep_gid = static_cast<uv_gid_t>(-1);
  auto owner = [&] {
    struct ::stat st {};
    REQUIRE(::stat((dir / "f").c_str(), &st) == 0);
    return std::pair<uv_uid_t, uv_gid_t>(st.st_uid, st.st_gid);
  };

  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::chown(loop, dir / "f", uid, keep_gid, cb); }));
  CHECK(owner().first == uid);
  by_coroutine(loop, [&] { return fs::chown(loop, dir / "f", keep_uid, gid); });
  CHECK(owner() == std::pair(uid, gid));
  fs::File file = open_now(dir / "f", O_RDONLY);
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::fchown(loop, file, keep_uid, keep_gid, cb); }));
  by_coroutine(loop, [&] { return fs::fchown(loop, file, uid, gid); });
  CHECK(owner() == std::pair(uid, gid));

  CHECK(by_callback(loop, [&](auto cb) { fs::chown(loop, dir / "none", uid, gid, cb); }).value() == UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::chown(loop, dir / "none", uid, gid); }).value() == UV_ENOENT);
  const fs::File closed;
  CHECK(coroutine_error(loop, [&] { return fs::fchown(loop, closed, uid, gid); }).value() == UV_EBADF);
  if (!root) {
    CHECK(by_callback(loop, [&](auto cb) { fs::chown(loop, dir / "f", 0, 0, cb); }).value() == UV_EPERM);
    CHECK(coroutine_error(loop, [&] { return fs::fchown(loop, file, 0, 0); }).value() == UV_EPERM);
  }
}

TEST_CASE("utime and futime set the access and modification times, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  const std::chrono::system_clock::time_point t1(1'000'000'000s), t2(1'500'000'000s), t3(1'600'000'000s);
  auto times = [&] {
    struct ::stat st {};
    REQUIRE(::stat((dir / "f").c_str(), &st) == 0);
    return std::pair<long, long>(st.st_atim.tv_sec, st.st_mtim.tv_sec);
  };

  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::utime(loop, dir / "f", t1, t2, cb); }));
  CHECK(times() == std::pair<long, long>(1'000'000'000, 1'500'000'000));
  by_coroutine(loop, [&] { return fs::utime(loop, dir / "f", t2, t1); });
  CHECK(times() == std::pair<long, long>(1'500'000'000, 1'000'000'000));
  fs::File file = open_now(dir / "f", O_RDONLY);
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::futime(loop, file, t3, t3, cb); }));
  CHECK(times() == std::pair<long, long>(1'600'000'000, 1'600'000'000));
  by_coroutine(loop, [&] { return fs::futime(loop, file, t1, t3); });
  CHECK(times() == std::pair<long, long>(1'000'000'000, 1'600'000'000));

  CHECK(by_callback(loop, [&](auto cb) { fs::utime(loop, dir / "none", t1, t1, cb); }).value() == UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::utime(loop, dir / "none", t1, t1); }).value() == UV_ENOENT);
  const fs::File closed;
  CHECK(by_callback(loop, [&](auto cb) { fs::futime(loop, closed, t1, t1, cb); }).value() == UV_EBADF);
}

// ---- links and names -------------------------------------------------------------------------------------

TEST_CASE("link makes a second name for a file and reports UV_EEXIST and UV_ENOENT, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "shared");
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::link(loop, dir / "f", dir / "g", cb); }));
  by_coroutine(loop, [&] { return fs::link(loop, dir / "g", dir / "h"); });
  CHECK(stdfs::hard_link_count(dir / "f") == 3);
  CHECK(stdfs::equivalent(dir / "f", dir / "h"));

  CHECK(by_callback(loop, [&](auto cb) { fs::link(loop, dir / "f", dir / "g", cb); }).value() == UV_EEXIST);
  CHECK(coroutine_error(loop, [&] { return fs::link(loop, dir / "f", dir / "h"); }).value() == UV_EEXIST);
  CHECK(by_callback(loop, [&](auto cb) { fs::link(loop, dir / "none", dir / "x", cb); }).value() == UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::link(loop, dir / "none", dir / "x"); }).value() == UV_ENOENT);
}

TEST_CASE("symlink makes a link that readlink reads back, and both report their errors, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  CHECK_FALSE(by_callback(loop, [&](auto cb) { fs::symlink(loop, "f", dir / "s", cb); }));
  CHECK(duet::test::read_file(dir / "s") == "x");  // relative to the link's folder
  by_coroutine(loop, [&] { return fs::symlink(loop, "nowhere", dir / "dangling"); });
  CHECK(stdfs::is_symlink(dir / "dangling"));

  auto [ec, target] = by_callback<std::string>(loop, [&](auto cb) { fs::readlink(loop, dir / "s", cb); });
  REQUIRE_FALSE(ec);
  CHECK(target == "f");
  CHECK(by_coroutine(loop, [&] { return fs::readlink(loop, dir / "dangling"); }) == "nowhere");

  CHECK(by_callback(loop, [&](auto cb) { fs::symlink(loop, "f", dir / "s", cb); }).value() == UV_EEXIST);
  CHECK(coroutine_error(loop, [&] { return fs::symlink(loop, "g", dir / "f"); }).value() == UV_EEXIST);
  auto [nec, none] = by_callback<std::string>(loop, [&](auto cb) { fs::readlink(loop, dir / "f", cb); });
  CHECK(nec.value() == UV_EINVAL);  // not a symlink
  CHECK(none.empty());
  CHECK(coroutine_error(loop, [&] { return fs::readlink(loop, dir / "none"); }).value() == UV_ENOENT);
}

TEST_CASE("realpath resolves symlinks, dot and dot-dot, and reports a missing part, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "sub/f", "x");
  stdfs::create_symlink("sub", dir / "l");
  const std::string expected = (stdfs::canonical(dir.path()) / "sub/f").string();
  auto [ec, real] = by_callback<std::string>(loop, [&](auto cb) { fs::realpath(loop, dir / "l/../sub/./f", cb); });
  REQUIRE_FALSE(ec);
  CHECK(real == expected);
  CHECK(by_coroutine(loop, [&] { return fs::realpath(loop, dir / "l/f"); }) == expected);
  CHECK(by_callback<std::string>(loop, [&](auto cb) { fs::realpath(loop, dir / "l/none", cb); }).first.value() ==
        UV_ENOENT);
  CHECK(coroutine_error(loop, [&] { return fs::realpath(loop, dir / "none/f"); }).value() == UV_ENOENT);
}

TEST_CASE("a path holding a NUL byte is refused before libuv could cut it short, both faces", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "kept");
  const std::string bad = dir / "f" + std::string("\0/x", 3);  // libuv would see just ".../f"
  const std::string bad_dir = dir.path().string() + std::string("\0", 1);
  CHECK(by_callback(loop, [&](auto cb) { fs::chmod(loop, bad, 0600, cb); }) == kRefused);
  CHECK(coroutine_error(loop, [&] { return fs::chmod(loop, bad, 0600); }) == kRefused);
  CHECK(by_callback(loop, [&](auto cb) { fs::link(loop, dir / "f", bad, cb); }) == kRefused);
  CHECK(by_callback(loop, [&](auto cb) { fs::copyfile(loop, bad, dir / "copy", fs::CopyFlags::none, cb); }) ==
        kRefused);
  CHECK(by_callback<fs::Stat>(loop, [&](auto cb) { fs::lstat(loop, bad, cb); }).first == kRefused);
  CHECK(coroutine_error(loop, [&] { return fs::rmdir(loop, bad_dir); }) == kRefused);
  CHECK(coroutine_error(loop, [&] { return fs::scandir(loop, bad_dir); }) == kRefused);
  CHECK(by_callback(loop, [&](auto cb) { fs::unlink(loop, bad, cb); }) == kRefused);
  CHECK(coroutine_error(loop, [&] { return fs::unlink(loop, bad); }) == kRefused);
  CHECK(by_callback(loop, [&](auto cb) { fs::rename(loop, dir / "f", bad, cb); }) == kRefused);
  CHECK(by_callback<fs::Stat>(loop, [&](auto cb) { fs::stat(loop, bad, cb); }).first == kRefused);
  CHECK(by_callback<fs::File>(loop, [&](auto cb) { fs::open(loop, bad, UV_FS_O_RDONLY, 0, cb); }).first == kRefused);
  CHECK(coroutine_error(loop, [&] { return fs::mkdir(loop, bad); }) == kRefused);
  CHECK(duet::test::read_file(dir / "f") == "kept");
  CHECK(permissions_of(dir / "f") != 0600);
  CHECK(names_in(dir.path()) == std::set<std::string>{"f"});
}

// ---- cancellation ---------------------------------------------------------------------------------------

TEST_CASE("queued requests of every fs kind are cancelled with UV_ECANCELED and change nothing", "[fs][cancel]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "data");
  REQUIRE(::chmod((dir / "f").c_str(), 0644) == 0);
  REQUIRE(stdfs::create_directory(dir / "empty"));
  stdfs::create_symlink("f", dir / "s");
  fs::File file = open_now(dir / "f", O_RDWR);
  fs::File out = open_now(dir / "out", O_WRONLY | O_CREAT);
  fs::Directory listing = open_directory(loop, dir.path().string());
  const auto names_before = names_in(dir.path());
  struct ::stat before {};
  REQUIRE(::stat((dir / "f").c_str(), &before) == 0);

  duet::test::PoolBlocker busy(loop);
  std::stop_source stop;
  std::vector<std::pair<std::string, std::error_code>> results;
  // A callback for every kind: records its error (and checks the result is empty).
  auto record = [&](std::string what) {
    return duet::with_cancellation(stop.get_token(), [&results, what](std::error_code ec, auto&&... result) {
      results.emplace_back(what, ec);
      CHECK(all_empty(result...));
    });
  };
  const std::chrono::system_clock::time_point epoch;
  fs::mkdtemp(loop, dir / "t-XXXXXX", record("mkdtemp"));
  fs::mkstemp(loop, dir / "s-XXXXXX", record("mkstemp"));
  fs::rmdir(loop, dir / "empty", record("rmdir"));
  fs::scandir(loop, dir.path().string(), record("scandir"));
  fs::opendir(loop, dir.path().string(), record("opendir"));
  fs::read(loop, listing, record("read"));
  fs::lstat(loop, dir / "s", record("lstat"));
  fs::fstat(loop, file, record("fstat"));
  fs::statfs(loop, dir.path().string(), record("statfs"));
  fs::fdatasync(loop, file, record("fdatasync"));
  fs::ftruncate(loop, file, 0, record("ftruncate"));
  fs::copyfile(loop, dir / "f", dir / "copy", fs::CopyFlags::none, record("copyfile"));
  fs::sendfile(loop, out, file, 0, 4, record("sendfile"));
  fs::access(loop, dir / "f", fs::AccessMode::read, record("access"));
  fs::chmod(loop, dir / "f", 0600, record("chmod"));
  fs::fchmod(loop, file, 0600, record("fchmod"));
  fs::chown(loop, dir / "f", 65534, 65534, record("chown"));
  fs::fchown(loop, file, 65534, 65534, record("fchown"));
  fs::utime(loop, dir / "f", epoch, epoch, record("utime"));
  fs::futime(loop, file, epoch, epoch, record("futime"));
  fs::link(loop, dir / "f", dir / "hard", record("link"));
  fs::symlink(loop, "f", dir / "soft", record("symlink"));
  fs::readlink(loop, dir / "s", record("readlink"));
  fs::realpath(loop, dir / "s", record("realpath"));
  stop.request_stop();
  busy.release();
  loop.run();

  CHECK(results.size() == 24);
  for (auto& [what, ec] : results) {
    INFO(what);
    CHECK(duet::is_cancelled(ec));
  }
  CHECK(names_in(dir.path()) == names_before);  // no folder made or removed, no file, no link
  CHECK(duet::test::read_file(dir / "f") == "data");
  CHECK(duet::test::read_file(dir / "out").empty());
  struct ::stat after {};
  REQUIRE(::stat((dir / "f").c_str(), &after) == 0);
  CHECK(after.st_mode == before.st_mode);
  CHECK(after.st_uid == before.st_uid);
  CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  // The cancelled read left the Directory readable.
  auto [ec, entries] = by_callback<std::vector<fs::DirEntry>>(loop, [&](auto cb) { fs::read(loop, listing, cb); });
  CHECK_FALSE(ec);
  CHECK(entries.size() == names_before.size());
}

TEST_CASE("closedir is not cancellable: the directory is always closed", "[fs][cancel]") {
  duet::Loop loop;
  TempDir dir;
  const std::size_t before = open_descriptors();
  fs::Directory d = open_directory(loop, dir.path().string());
  duet::test::PoolBlocker busy(loop);  // the closedir is queued when the stop comes
  std::stop_source stop;
  std::optional<std::error_code> result;
  fs::closedir(loop, std::move(d), duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { result = ec; }));
  stop.request_stop();
  busy.release();
  loop.run();
  REQUIRE(result);
  CHECK_FALSE(*result);
  CHECK(open_descriptors() == before);
}

TEST_CASE("a task cancelled while its fs request is queued throws Cancelled and nothing is made", "[fs][cancel]") {
  duet::Loop loop;
  TempDir dir;
  make_files(dir / "some", 2);
  fs::Directory listing = open_directory(loop, dir / "some");
  duet::test::PoolBlocker busy(loop);
  int waiting = 0;
  auto make = [](duet::Loop& l, std::string tpl, int& w) -> Task<fs::TempFile> {
    ++w;
    co_return co_await fs::mkstemp(l, tpl);
  };
  auto list = [](duet::Loop& l, const fs::Directory& d, int& w) -> Task<std::vector<fs::DirEntry>> {
    ++w;
    co_return co_await fs::read(l, d);
  };
  auto made = duet::spawn(loop, make(loop, dir / "t-XXXXXX", waiting));
  auto listed = duet::spawn(loop, list(loop, listing, waiting));
  while (waiting < 2) loop.run_once();  // both requests are queued behind the blocker
  made.cancel();
  listed.cancel();
  busy.release();
  loop.run();
  CHECK_THROWS_AS(made.result(), duet::Cancelled);
  CHECK_THROWS_AS(listed.result(), duet::Cancelled);
  CHECK(names_in(dir.path()) == std::set<std::string>{"some"});
  // The cancelled read left the Directory readable.
  CHECK(by_coroutine(loop, [&] { return fs::read(loop, listing); }).size() == 2);
}

TEST_CASE("requests cancelled after they ran drop their results: made files and folders removed, opened closed",
          "[fs][cancel]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  REQUIRE(stdfs::create_directory(dir / "sub"));
  const auto names_before = names_in(dir.path());
  const std::size_t before = open_descriptors();
  std::stop_source stop;
  std::vector<std::error_code> results;
  auto record = duet::with_cancellation(stop.get_token(), [&](std::error_code ec, auto&& result) {
    results.push_back(ec);
    CHECK(all_empty(result));
  });
  fs::mkstemp(loop, dir / "s-XXXXXX", record);
  fs::mkdtemp(loop, dir / "t-XXXXXX", record);
  fs::opendir(loop, dir / "sub", record);
  fs::open(loop, dir / "f", UV_FS_O_RDONLY, 0, record);
  fs::scandir(loop, dir.path().string(), record);
  fs::realpath(loop, dir / "f", record);
  // Returns once every pool thread runs a blocker: the requests queued before them have all run.
  duet::test::PoolBlocker busy(loop);
  CHECK(duet::test::entries_in(dir.path()) == names_before.size() + 2);  // the temporary file and folder
  stop.request_stop();
  busy.release();
  loop.run();
  REQUIRE(results.size() == 6);
  for (auto& ec : results) CHECK(duet::is_cancelled(ec));
  CHECK(names_in(dir.path()) == names_before);
  CHECK(open_descriptors() == before);
}

// ---- the Loop destroyed with requests pending -------------------------------------------------------------

namespace {

/// Starts one request of each kind that makes or opens something, with callbacks that must not run.
void start_each_kind(duet::Loop& loop, const TempDir& dir, const fs::Directory& listing, bool& called) {
  auto never = [&called](std::error_code, auto&&...) { called = true; };
  fs::read(loop, listing, never);
  fs::mkstemp(loop, dir / "s-XXXXXX", never);
  fs::mkdtemp(loop, dir / "t-XXXXXX", never);
  fs::opendir(loop, dir / "sub", never);
  fs::open(loop, dir / "f", UV_FS_O_RDONLY, 0, never);
  fs::scandir(loop, dir / "sub", never);
  fs::statfs(loop, dir / "f", never);
  fs::readlink(loop, dir / "s", never);
  fs::realpath(loop, dir / "s", never);
  fs::lstat(loop, dir / "s", never);
}

}  // namespace

TEST_CASE("destroying the loop with fs requests queued cancels them, calls nothing back and leaks nothing",
          "[fs][loop]") {
  duet::test::ErrorLog log;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  duet::test::write_file(dir / "sub/g", "y");
  stdfs::create_symlink("f", dir / "s");
  const auto names_before = names_in(dir.path());
  const std::size_t before = open_descriptors();
  bool called = false;
  std::optional<duet::test::PoolBlocker> busy;  // outlives the loop: released inside its destruction
  fs::Directory kept;                           // open when the loop goes
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    kept = open_directory(loop, dir / "sub");
    fs::Directory listing = open_directory(loop, dir / "sub");
    fs::Directory closing = open_directory(loop, dir / "sub");
    busy.emplace(loop);
    duet::test::release_during_destruction(loop, *busy);
    start_each_kind(loop, dir, listing, called);
    listing.reset();                                                                  // the pending read holds it now
    fs::closedir(loop, std::move(closing), [&](std::error_code) { called = true; });  // runs, not cancellable
  }
  CHECK_FALSE(called);
  REQUIRE_FALSE(log.messages.empty());
  CHECK(log.messages[0].find("operation(s) pending") != std::string::npos);
  CHECK(names_in(dir.path()) == names_before);
  CHECK(kept.is_open());
  CHECK(open_descriptors() == before + 1);  // only `kept`
  kept.reset();                             // closed without its loop
  CHECK(open_descriptors() == before);
}

TEST_CASE("destroying the loop after fs requests ran but before they called back drops what they made", "[fs][loop]") {
  duet::test::ErrorLog log;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  duet::test::write_file(dir / "sub/g", "y");
  stdfs::create_symlink("f", dir / "s");
  const auto names_before = names_in(dir.path());
  const std::size_t before = open_descriptors();
  bool called = false;
  {
    duet::Loop loop;
    loop.set_error_handler(log.handler());
    fs::Directory listing = open_directory(loop, dir / "sub");
    start_each_kind(loop, dir, listing, called);
    listing.reset();
    duet::test::PoolBlocker busy(loop);  // returns once the requests above have all run on the pool
    CHECK(duet::test::entries_in(dir.path()) == names_before.size() + 2);  // mkstemp's file, mkdtemp's folder
  }
  CHECK_FALSE(called);
  REQUIRE_FALSE(log.messages.empty());
  CHECK(log.messages[0].find("operation(s) pending") != std::string::npos);
  CHECK(names_in(dir.path()) == names_before);  // nobody learnt their names: removed
  CHECK(open_descriptors() == before);          // the opened file and directories closed
}
