#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "duet/fs.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using duet::test::random_bytes;
using duet::test::TempDir;

namespace {

std::error_code write_atomic(duet::Loop& loop, const std::string& path, std::string data) {
  std::optional<std::error_code> result;
  duet::fs::write_file_atomic(loop, path, std::move(data), [&](std::error_code ec) { result = ec; });
  loop.run();
  REQUIRE(result);
  return *result;
}

}  // namespace

TEST_CASE("write_file_atomic then read_file round-trips binary data", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::string data = random_bytes(1024 * 1024 + 7, 42);  // several read chunks, NULs included
  REQUIRE_FALSE(write_atomic(loop, dir / "blob.bin", data));
  CHECK(duet::test::read_file(dir / "blob.bin") == data);
  CHECK(duet::test::entries_in(dir.path()) == 1);  // no temporary file left

  std::optional<std::string> read_back;
  duet::read_file(loop, dir / "blob.bin", [&](std::error_code ec, std::string bytes) {
    REQUIRE_FALSE(ec);
    read_back = std::move(bytes);
  });
  loop.run();
  REQUIRE(read_back);
  CHECK(*read_back == data);
  CHECK(loop.live_resources() == 0);
}

TEST_CASE("write_file_atomic replaces an existing file and writes empty files", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f.txt", "old contents");
  REQUIRE_FALSE(write_atomic(loop, dir / "f.txt", "new"));
  CHECK(duet::test::read_file(dir / "f.txt") == "new");
  REQUIRE_FALSE(write_atomic(loop, dir / "empty", ""));
  CHECK(fs::file_size(dir / "empty") == 0);
  CHECK(duet::test::entries_in(dir.path()) == 2);
}

TEST_CASE("read_file and open report a missing file as UV_ENOENT", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  std::optional<std::error_code> read_result, open_result;
  duet::read_file(loop, dir / "missing", [&](std::error_code ec, std::string bytes) {
    read_result = ec;
    CHECK(bytes.empty());
  });
  duet::fs::open(loop, dir / "missing", UV_FS_O_RDONLY, 0, [&](std::error_code ec, duet::fs::File f) {
    open_result = ec;
    CHECK_FALSE(f.is_open());
  });
  loop.run();
  REQUIRE(read_result);
  CHECK(read_result->value() == UV_ENOENT);
  REQUIRE(open_result);
  CHECK(*open_result == std::errc::no_such_file_or_directory);
}

TEST_CASE("read_file of a folder reports UV_EISDIR", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  std::optional<std::error_code> result;
  duet::read_file(loop, dir.path().string(), [&](std::error_code ec, std::string) { result = ec; });
  loop.run();
  REQUIRE(result);
  CHECK(result->value() == UV_EISDIR);
}

TEST_CASE("permission denied is reported as UV_EACCES", "[fs]") {
  TempDir dir;
  const std::string secret = dir / "secret";
  duet::test::write_file(secret, "x");
  REQUIRE(::chmod(secret.c_str(), 0600) == 0);
  const std::string locked = dir / "locked";
  REQUIRE(::mkdir(locked.c_str(), 0500) == 0);

  // root bypasses permission checks, so when run as root the checks run in a child that drops to
  // 'nobody'. The child reports each error number through its exit code.
  auto attempt = [&](bool as_root) {
    duet::Loop loop;
    std::optional<std::error_code> read_result, write_result;
    duet::read_file(loop, secret, [&](std::error_code ec, std::string) { read_result = ec; });
    duet::fs::write_file_atomic(loop, locked + "/new", "data", [&](std::error_code ec) { write_result = ec; });
    loop.run();
    if (!as_root) return std::pair(read_result->value(), write_result->value());
    std::_Exit((read_result->value() == UV_EACCES ? 1 : 0) | (write_result->value() == UV_EACCES ? 2 : 0));
  };

  if (::geteuid() != 0) {
    auto [r, w] = attempt(false);
    CHECK(r == UV_EACCES);
    CHECK(w == UV_EACCES);
  } else {
    passwd* nobody = ::getpwnam("nobody");
    REQUIRE(nobody != nullptr);
    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      if (::setgid(nobody->pw_gid) != 0 || ::setuid(nobody->pw_uid) != 0) std::_Exit(100);
      attempt(true);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 3);  // both reads failed with UV_EACCES
  }
  CHECK(duet::test::entries_in(locked) == 0);  // the failed write left no temporary file
}

TEST_CASE("create_directories makes every missing parent and accepts existing folders", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::string deep = dir / "a/b/c/d";
  std::vector<std::error_code> results;
  duet::fs::create_directories(loop, deep, [&](std::error_code ec) {
    results.push_back(ec);
    duet::fs::create_directories(loop, deep, [&](std::error_code ec2) { results.push_back(ec2); });  // again: fine
  });
  loop.run();
  REQUIRE(results.size() == 2);
  CHECK_FALSE(results[0]);
  CHECK_FALSE(results[1]);
  CHECK(fs::is_directory(deep));

  duet::test::write_file(dir / "file", "x");
  std::optional<std::error_code> blocked;
  duet::fs::create_directories(loop, dir / "file/sub", [&](std::error_code ec) { blocked = ec; });
  loop.run();
  REQUIRE(blocked);
  CHECK((blocked->value() == UV_ENOTDIR || blocked->value() == UV_EEXIST));
}

TEST_CASE("mkdir makes one folder and reports an existing one as UV_EEXIST", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  std::vector<std::error_code> results;
  duet::fs::mkdir(loop, dir / "one", [&](std::error_code ec) {
    results.push_back(ec);
    duet::fs::mkdir(loop, dir / "one", [&](std::error_code ec2) { results.push_back(ec2); });
  });
  loop.run();
  REQUIRE(results.size() == 2);
  CHECK_FALSE(results[0]);
  CHECK(results[1].value() == UV_EEXIST);
}

TEST_CASE("open, write, read, stat, rename, close and unlink", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::string a = dir / "a.txt", b = dir / "b.txt";
  std::string read_back;
  std::int64_t size = -1;
  bool unlinked = false;
  std::optional<std::error_code> second_unlink;

  duet::fs::open(
      loop, a, UV_FS_O_RDWR | UV_FS_O_CREAT | UV_FS_O_TRUNC, 0644, [&](std::error_code ec, duet::fs::File f) {
        REQUIRE_FALSE(ec);
        auto file = std::make_shared<duet::fs::File>(std::move(f));
        duet::fs::write(loop, *file, "hello world", 0, [&, file](std::error_code wec, std::size_t n) {
          REQUIRE_FALSE(wec);
          CHECK(n == 11);
          duet::fs::read(loop, *file, 5, 6, [&, file](std::error_code rec, std::string bytes) {  // at offset 6
            REQUIRE_FALSE(rec);
            read_back = bytes;
            duet::fs::close(loop, std::move(*file), [&](std::error_code cec) {
              REQUIRE_FALSE(cec);
              duet::fs::rename(loop, a, b, [&](std::error_code mec) {
                REQUIRE_FALSE(mec);
                duet::fs::stat(loop, b, [&](std::error_code sec, duet::fs::Stat st) {
                  REQUIRE_FALSE(sec);
                  size = static_cast<std::int64_t>(st.st_size);
                  duet::fs::unlink(loop, b, [&](std::error_code uec) {
                    unlinked = !uec;
                    duet::fs::unlink(loop, b, [&](std::error_code uec2) { second_unlink = uec2; });
                  });
                });
              });
            });
          });
        });
      });
  loop.run();
  CHECK(read_back == "world");
  CHECK(size == 11);
  CHECK(unlinked);
  REQUIRE(second_unlink);
  CHECK(second_unlink->value() == UV_ENOENT);
  CHECK(duet::test::entries_in(dir.path()) == 0);
}

TEST_CASE("write_file_atomic into a missing folder fails and leaves no trace", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  CHECK(write_atomic(loop, dir / "no/such/folder/f", "x").value() == UV_ENOENT);
  CHECK(duet::test::entries_in(dir.path()) == 0);
}

TEST_CASE("write_file_atomic whose rename fails leaves the target and no temporary file", "[fs]") {
  duet::Loop loop;
  TempDir dir;
  const std::string target = dir / "target";
  REQUIRE(fs::create_directory(target));
  duet::test::write_file(target + "/inside", "keep me");  // a non-empty folder cannot be replaced by a file
  const std::error_code ec = write_atomic(loop, target, "data");
  CHECK(ec);
  CHECK((ec.value() == UV_EISDIR || ec.value() == UV_ENOTEMPTY || ec.value() == UV_EEXIST));
  CHECK(fs::is_directory(target));
  CHECK(duet::test::read_file(target + "/inside") == "keep me");
  CHECK(duet::test::entries_in(dir.path()) == 1);  // just the folder
}

TEST_CASE("write_file_atomic whose write fails (file too large) leaves no partial file", "[fs]") {
  TempDir dir;
  duet::test::write_file(dir / "f", "the old version");
  // RLIMIT_FSIZE makes writes past 64 KiB fail (EFBIG), as a full disk would: in a child process,
  // since the limit applies to the whole process.
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{64 * 1024, 64 * 1024};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) std::_Exit(100);
    duet::Loop loop;
    std::optional<std::error_code> result;
    duet::fs::write_file_atomic(loop, dir / "f", std::string(1024 * 1024, 'z'),
                                [&](std::error_code ec) { result = ec; });
    loop.run();
    std::_Exit(result && result->value() == UV_EFBIG ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(duet::test::read_file(dir / "f") == "the old version");
  CHECK(duet::test::entries_in(dir.path()) == 1);
}

TEST_CASE("read_file of a file too large for memory reports UV_ENOMEM through its callback", "[fs]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  WARN("a sanitizer's allocator aborts at an address-space limit instead of throwing: not run");
#else
  TempDir dir;
  const std::string big = dir / "big";
  constexpr off_t kSize = 768LL * 1024 * 1024;  // sparse: no disk used
  {
    std::ofstream(big).flush();
    REQUIRE(::truncate(big.c_str(), kSize) == 0);
  }
  // In a child, since the limit is the whole process's. 512 MiB cannot hold the file: the read that
  // cannot get room must reach the callback. 1.75 GiB can (the string's last growth holds 512 MiB and
  // 1 GiB at once): the control that the limit, not something else, made the first one fail.
  const auto outcome = [&](rlim_t limit) {
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      rlimit as{limit, limit};
      if (::setrlimit(RLIMIT_AS, &as) != 0) std::_Exit(100);
      duet::Loop loop;
      std::optional<std::error_code> result;
      std::size_t size = 0;
      duet::read_file(loop, big, [&](std::error_code ec, std::string data) {
        result = ec;
        size = data.size();
      });
      loop.run();
      if (!result) std::_Exit(3);  // the callback was never called
      if (!*result) std::_Exit(size == static_cast<std::size_t>(kSize) ? 0 : 4);
      std::_Exit(result->value() == UV_ENOMEM ? 1 : 2);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
  };
  CHECK(outcome(rlim_t{512} * 1024 * 1024) == 1);   // too large: UV_ENOMEM, through the callback
  CHECK(outcome(rlim_t{1792} * 1024 * 1024) == 0);  // read whole
#endif
}

TEST_CASE("queued fs requests are cancelled with UV_ECANCELED", "[fs][cancel]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "data");
  duet::test::PoolBlocker busy(loop);
  std::stop_source stop;
  std::optional<std::error_code> open_result, stat_result;
  duet::fs::open(loop, dir / "f", UV_FS_O_RDONLY, 0,
                 duet::with_cancellation(stop.get_token(), [&](std::error_code ec, duet::fs::File f) {
                   open_result = ec;
                   CHECK_FALSE(f.is_open());
                 }));
  duet::fs::stat(loop, dir / "f", duet::with_cancellation(stop.get_token(), [&](std::error_code ec, duet::fs::Stat) {
                   stat_result = ec;
                 }));
  stop.request_stop();
  busy.release();
  loop.run();
  REQUIRE(open_result);
  CHECK(duet::is_cancelled(*open_result));
  REQUIRE(stat_result);
  CHECK(duet::is_cancelled(*stat_result));
}

TEST_CASE("a cancelled write_file_atomic keeps the old file and leaves no temporary file", "[fs][cancel]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "old");
  std::optional<duet::test::PoolBlocker> busy(std::in_place, loop);
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::fs::write_file_atomic(loop, dir / "f", "new",
                              duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { result = ec; }));
  stop.request_stop();
  busy->release();
  loop.run();
  REQUIRE(result);
  CHECK(duet::is_cancelled(*result));
  CHECK(duet::test::read_file(dir / "f") == "old");
  CHECK(duet::test::entries_in(dir.path()) == 1);
}

TEST_CASE("a File closes its descriptor when dropped", "[fs]") {
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  int fd = ::open((dir / "f").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  {
    duet::fs::File file(fd);
    CHECK(file.is_open());
    CHECK(::fcntl(fd, F_GETFD) != -1);
  }
  CHECK(::fcntl(fd, F_GETFD) == -1);  // closed
}

TEST_CASE("close is not cancellable: the descriptor is always closed", "[fs][cancel]") {
  duet::Loop loop;
  TempDir dir;
  duet::test::write_file(dir / "f", "x");
  const int fd = ::open((dir / "f").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  duet::test::PoolBlocker busy(loop);  // the close is queued when the stop comes
  std::stop_source stop;
  std::optional<std::error_code> result;
  duet::fs::close(loop, duet::fs::File(fd),
                  duet::with_cancellation(stop.get_token(), [&](std::error_code ec) { result = ec; }));
  stop.request_stop();
  busy.release();
  loop.run();
  REQUIRE(result);
  CHECK_FALSE(*result);
  CHECK(::fcntl(fd, F_GETFD) == -1);
}

TEST_CASE("destroying the loop in the middle of write_file_atomic leaves no temporary file", "[fs][loop]") {
  TempDir dir;
  duet::test::write_file(dir / "target", "old");
  {
    duet::Loop loop;
    loop.set_error_handler([](std::exception_ptr) {});
    duet::fs::write_file_atomic(loop, dir / "target", std::string(64 * 1024 * 1024, 'n'),
                                [](std::error_code) { FAIL("the callback of work pending at loop destruction ran"); });
    while (duet::test::entries_in(dir.path()) < 2) loop.run_once();  // the temporary file exists
  }
  CHECK(duet::test::entries_in(dir.path()) == 1);
  CHECK(duet::test::read_file(dir / "target") == "old");
}
