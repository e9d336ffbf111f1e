// duet/fs_directory.hpp — folders on libuv's thread pool: make, remove, list, or read batch by batch.
//
//     duet::fs::scandir(loop, "in", [](std::error_code ec, std::vector<duet::fs::DirEntry> entries) { ... });
//
//     duet::fs::Directory dir = co_await duet::fs::opendir(loop, "huge");   // the coroutine face
//     for (auto batch = co_await duet::fs::read(loop, dir); !batch.empty(); batch = co_await duet::fs::read(loop, dir))
//       for (const duet::fs::DirEntry& e : batch) use(e.name, e.type);
//     co_await duet::fs::closedir(loop, std::move(dir));
//
// Each operation is one `uv_fs_*` request on libuv's thread pool; the callback runs on the loop thread
// with `std::error_code` first and an empty result on error, and a queued request is cancelled like
// any fs request (see fs.hpp, which includes this header). `scandir` lists a whole folder at once,
// sorted by name; a `Directory` from `opendir` is read up to `Directory::batch` (64) entries at a
// time, in the order the system gives, for folders too large to hold at once. Neither lists "." or "..".
//
// A `Directory` owns libuv's `uv_dir_t`. `closedir` closes it on the thread pool (never cancelled: the
// directory would stay open); dropped instead, it closes synchronously — also when dropped while a
// `read` of it is in flight (that read keeps it until it finishes) or after its Loop is gone. One read
// at a time: a second one while the first is in flight gets UV_EBUSY; a closed (default or moved-from)
// Directory gets UV_EBADF, as a closed File does.
//
// Failures, as the system reports them: UV_ENOENT (missing), UV_EEXIST (mkdir of an existing name),
// UV_ENOTDIR (a file where a folder is expected), UV_ENOTEMPTY (rmdir of a folder with entries),
// UV_EACCES, UV_EINVAL (a mkdtemp template that does not end in "XXXXXX"), UV_ECANCELED; a path holding
// a NUL byte is refused with `errc::invalid_argument`. A mkdtemp cancelled while it runs removes the
// folder it made (nobody learnt its name).
//
// Cost: one pooled request object per operation; an open Directory adds one heap block (its share of
// the state, with room for a batch of entries) to libuv's own uv_dir_t; each entry's name is a string.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "duet/awaitable.hpp"
#include "duet/detail/fs_op.hpp"
#include "duet/loop.hpp"

namespace duet::fs {

/// What a folder entry is (libuv's uv_dirent_type_t). `unknown` when the file system does not say.
enum class EntryType : int {
  unknown = UV_DIRENT_UNKNOWN,
  file = UV_DIRENT_FILE,
  directory = UV_DIRENT_DIR,
  symlink = UV_DIRENT_LINK,
  fifo = UV_DIRENT_FIFO,
  socket = UV_DIRENT_SOCKET,
  character_device = UV_DIRENT_CHAR,
  block_device = UV_DIRENT_BLOCK,
};

/// One entry of a folder: its name (not a path) and its type.
struct DirEntry {
  std::string name;
  EntryType type = EntryType::unknown;
  friend bool operator==(const DirEntry&, const DirEntry&) = default;
};

namespace detail {

/// An open directory: libuv's uv_dir_t and the room it reads a batch of entries into. Shared by the
/// Directory and the read in flight, so whichever lets go last closes it.
struct DirState {
  static constexpr std::size_t kBatch = 64;
  explicit DirState(uv_dir_t* d) noexcept;
  DirState(const DirState&) = delete;
  DirState& operator=(const DirState&) = delete;
  ~DirState();  // closes `dir`, synchronously, unless a closedir took it

  uv_dir_t* dir;         // null once handed to uv_fs_closedir (which frees it)
  bool reading = false;  // a read is in flight
  uv_dirent_t entries[kBatch];
};

/// The State of a read in flight: keeps the directory open and marks it busy until the request ends.
struct DirRead {
  std::shared_ptr<DirState> dir;
  explicit DirRead(std::shared_ptr<DirState> d) noexcept : dir(std::move(d)) { dir->reading = true; }
  DirRead(DirRead&&) noexcept = default;
  DirRead& operator=(DirRead&&) = delete;
  ~DirRead() {
    if (dir) dir->reading = false;
  }
};

struct DirAccess;

}  // namespace detail

/// An open directory (from `opendir`), read with `read(loop, dir, cb)`. Move-only; closes itself
/// (synchronously) when dropped, unless `closedir` took it.
class Directory {
 public:
  /// Entries that one `read` returns at most.
  static constexpr std::size_t batch = detail::DirState::kBatch;

  Directory() noexcept = default;
  Directory(Directory&&) noexcept = default;
  Directory& operator=(Directory&&) noexcept = default;
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  bool is_open() const noexcept { return state_ != nullptr; }
  /// Closes the directory now, on this thread (or, if a read of it is in flight, when that read ends).
  void reset() noexcept { state_.reset(); }

 private:
  friend struct detail::DirAccess;
  std::shared_ptr<detail::DirState> state_;
};

namespace detail {

struct DirAccess {
  static const std::shared_ptr<DirState>& state(const Directory& d) noexcept { return d.state_; }
  static std::shared_ptr<DirState> take(Directory& d) noexcept { return std::move(d.state_); }
  static Directory make(std::shared_ptr<DirState> s) noexcept {
    Directory d;
    d.state_ = std::move(s);
    return d;
  }
};

std::string extract_temp_dir(uv_fs_t& req, std::string&);
void discard_temp_dir(uv_fs_t& req) noexcept;
std::vector<DirEntry> extract_scandir(uv_fs_t& req, std::string&);
Directory extract_directory(uv_fs_t& req, std::string&);
std::vector<DirEntry> extract_entries(uv_fs_t& req, DirRead& read);

}  // namespace detail

// ---- making and removing folders --------------------------------------------------------------------

/// Creates one folder (mode 0777 less the umask); calls `cb(std::error_code)` (UV_EEXIST if it exists).
template <class Callback>
void mkdir(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(path),
                      [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_mkdir(uv, req, p.c_str(), 0777, done);
                      });
}

/// Creates a new folder, mode 0700, named after `tpl` with its last six characters ("XXXXXX") made
/// unique; calls `cb(std::error_code, std::string path)` with the folder's path.
template <class Callback>
void mkdtemp(Loop& loop, std::string tpl, Callback&& cb) {
  if (detail::bad_path(tpl))
    return detail::fail<std::string>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<std::string>(
      loop, std::forward<Callback>(cb), &detail::extract_temp_dir, std::move(tpl),
      [](uv_loop_t* uv, uv_fs_t* req, std::string& t, uv_fs_cb done) {
        return uv_fs_mkdtemp(uv, req, t.c_str(), done);
      },
      true, &detail::discard_temp_dir);
}

/// Removes the empty folder `path`; calls `cb(std::error_code)` (UV_ENOTEMPTY if it has entries).
template <class Callback>
void rmdir(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(
      loop, std::forward<Callback>(cb), nullptr, std::move(path),
      [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) { return uv_fs_rmdir(uv, req, p.c_str(), done); });
}

// ---- listing folders --------------------------------------------------------------------------------

/// Lists the folder `path`, sorted by name; calls `cb(std::error_code, std::vector<DirEntry>)`.
template <class Callback>
void scandir(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<std::vector<DirEntry>>(loop, std::forward<Callback>(cb),
                                               make_error_code(errc::invalid_argument));
  detail::start<std::vector<DirEntry>>(loop, std::forward<Callback>(cb), &detail::extract_scandir, std::move(path),
                                       [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                                         return uv_fs_scandir(uv, req, p.c_str(), 0, done);
                                       });
}

/// Opens the folder `path` for reading; calls `cb(std::error_code, Directory)`.
template <class Callback>
void opendir(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<Directory>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<Directory>(loop, std::forward<Callback>(cb), &detail::extract_directory, std::move(path),
                           [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                             return uv_fs_opendir(uv, req, p.c_str(), done);
                           });
}

/// Reads the next entries of `dir` (at most `Directory::batch`); calls
/// `cb(std::error_code, std::vector<DirEntry>)`. An empty vector means the end of the folder.
/// UV_EBUSY if a read of `dir` is already in flight; UV_EBADF if `dir` is not open.
template <class Callback>
void read(Loop& loop, const Directory& dir, Callback&& cb) {
  using Result = std::vector<DirEntry>;
  const std::shared_ptr<detail::DirState>& state = detail::DirAccess::state(dir);
  if (!state) return detail::fail<Result>(loop, std::forward<Callback>(cb), uv_error(UV_EBADF));
  if (state->reading) return detail::fail<Result>(loop, std::forward<Callback>(cb), uv_error(UV_EBUSY));
  detail::start<Result>(loop, std::forward<Callback>(cb), &detail::extract_entries, detail::DirRead(state),
                        [](uv_loop_t* uv, uv_fs_t* req, detail::DirRead& r, uv_fs_cb done) {
                          return uv_fs_readdir(uv, req, r.dir->dir, done);
                        });
}

/// Closes `dir` on the thread pool; calls `cb(std::error_code)`. Not cancellable (the directory would
/// stay open): it always runs, even when the loop is being destroyed. UV_EBADF if `dir` is not open;
/// UV_EBUSY if a read of it is in flight — the directory then closes when that read ends.
template <class Callback>
void closedir(Loop& loop, Directory dir, Callback&& cb) {
  std::shared_ptr<detail::DirState> state = detail::DirAccess::take(dir);
  if (!state) return detail::fail<void>(loop, std::forward<Callback>(cb), uv_error(UV_EBADF));
  if (state->reading) return detail::fail<void>(loop, std::forward<Callback>(cb), uv_error(UV_EBUSY));
  detail::start<void>(
      loop, std::forward<Callback>(cb), nullptr, std::move(state),
      [](uv_loop_t* uv, uv_fs_t* req, std::shared_ptr<detail::DirState>& s, uv_fs_cb done) {
        const int rc = uv_fs_closedir(uv, req, s->dir, done);
        if (rc == 0) s->dir = nullptr;  // libuv closes and frees it: the state must not
        return rc;
      },
      false);
}

// ---- the coroutine face: the same names without the callback -------------------------------------

template <class = void>
[[nodiscard]] inline auto mkdir(Loop& loop, std::string path) {
  return awaitable<void>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::mkdir(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto mkdtemp(Loop& loop, std::string tpl) {
  return awaitable<std::string>(
      [&loop, tpl = std::move(tpl)](auto cb) mutable { fs::mkdtemp(loop, std::move(tpl), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto rmdir(Loop& loop, std::string path) {
  return awaitable<void>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::rmdir(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto scandir(Loop& loop, std::string path) {
  return awaitable<std::vector<DirEntry>>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::scandir(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto opendir(Loop& loop, std::string path) {
  return awaitable<Directory>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::opendir(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto read(Loop& loop, const Directory& dir) {
  return awaitable<std::vector<DirEntry>>([&loop, &dir](auto cb) { fs::read(loop, dir, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto closedir(Loop& loop, Directory dir) {
  return awaitable<void>(
      [&loop, dir = std::move(dir)](auto cb) mutable { fs::closedir(loop, std::move(dir), std::move(cb)); });
}

}  // namespace duet::fs
