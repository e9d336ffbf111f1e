// duet/fs.hpp — files on libuv's thread pool: every libuv file operation, and three conveniences.
//
//     duet::fs::read_file(loop, "in.txt", [](std::error_code ec, std::string data) { ... });
//     duet::fs::write_file_atomic(loop, "out/BR.gif", std::move(bytes), [](std::error_code ec) { ... });
//     std::string data = co_await duet::read_file(loop, "in.txt");   // the coroutine face, same names
//
// Each operation is one (or, for the conveniences, a chain of) `uv_fs_*` requests run on libuv's
// thread pool; the callback runs on the loop thread with `std::error_code` first and, on error, an
// empty result: UV_ENOENT for a missing file, UV_EACCES or UV_EPERM for permission denied, UV_EEXIST
// for a name already taken, UV_ENOTDIR for a file where a folder is expected, UV_EXDEV for a link
// across file systems, UV_ENOSPC for a full disk, UV_ECANCELED if cancelled (see cancellation.hpp:
// queued requests are `uv_cancel`ed; a running one finishes, its result is dropped — an opened file
// is closed, a temporary file made by `mkstemp` removed — and the callback still gets UV_ECANCELED).
// duet refuses some arguments before libuv sees them, with `errc::invalid_argument` on a later turn:
// a path holding a NUL byte (libuv would silently cut it short), a negative `sendfile` offset, `chmod`
// mode bits outside 07777. Folders (mkdir, mkdtemp, rmdir, scandir, opendir and `Directory`) are in
// fs_directory.hpp, which this header includes.
//
// Buffer ownership is in the types: `read` returns a `std::string` it owns; `write` takes its bytes
// by value and keeps them until the request completes, so nothing the caller frees can be written.
// `File` is an open descriptor that closes itself (synchronously) if dropped; `close(loop, file, cb)`
// closes it on the thread pool. Keep a `File` alive until the operations using it have called back.
//
// `write_file_atomic(path, data)`: writes `data` to a new temporary file in the same folder
// (`.NAME.PID.N.tmp`, mode 0666 less the umask), fsyncs it, closes it and renames it over `path`.
// A failure or a cancel at any step closes and unlinks the temporary file: `path` is either the
// complete old file or the complete new one, and no temporary file is left (not even when the loop is
// destroyed mid-way: the chain then removes it synchronously as it is dropped). `read_file` reads a
// whole file into one string, each read going straight into the string's room (a file too large for
// memory is UV_ENOMEM); `create_directories` is `mkdir -p`.
//
// Cost: one pooled request object per primitive; the conveniences add one heap object for the chain.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/chrono.hpp"
#include "duet/detail/fs_op.hpp"
#include "duet/fs_directory.hpp"
#include "duet/loop.hpp"

namespace duet::fs {

/// An open file descriptor. Move-only; closes the descriptor when dropped.
class File {
 public:
  File() noexcept = default;
  explicit File(uv_file fd) noexcept : fd_(fd) {}
  File(File&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  File& operator=(File&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~File() { reset(); }

  uv_file fd() const noexcept { return fd_; }
  bool is_open() const noexcept { return fd_ >= 0; }
  /// Gives up ownership of the descriptor.
  uv_file release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the descriptor now, on this thread.
  void reset() noexcept;

 private:
  uv_file fd_ = -1;
};

/// What `mkstemp` makes: the new file, open for reading and writing, and its path.
struct TempFile {
  File file;
  std::string path;
};

/// What `stat`, `lstat` and `fstat` report (libuv's `uv_stat_t`: st_size, st_mode, st_mtim, ...).
using Stat = uv_stat_t;
/// What `statfs` reports (libuv's `uv_statfs_t`: f_bsize, f_blocks, f_bavail, ...).
using StatFs = uv_statfs_t;

/// What `access` checks; combine with `|`. `exists` alone checks only that the path exists.
enum class AccessMode : int { exists = 0, execute = 1, write = 2, read = 4 };
constexpr AccessMode operator|(AccessMode a, AccessMode b) noexcept {
  return static_cast<AccessMode>(static_cast<int>(a) | static_cast<int>(b));
}

/// How `copyfile` copies; combine with `|`. `excl`: fail with UV_EEXIST if the target exists;
/// `ficlone`: share the blocks (copy-on-write) where the file system can, else copy them;
/// `ficlone_force`: share them or fail.
enum class CopyFlags : int {
  none = 0,
  excl = UV_FS_COPYFILE_EXCL,
  ficlone = UV_FS_COPYFILE_FICLONE,
  ficlone_force = UV_FS_COPYFILE_FICLONE_FORCE,
};
constexpr CopyFlags operator|(CopyFlags a, CopyFlags b) noexcept {
  return static_cast<CopyFlags>(static_cast<int>(a) | static_cast<int>(b));
}

namespace detail {

inline File extract_file(uv_fs_t& req, std::string&) { return File(static_cast<uv_file>(req.result)); }
inline std::string extract_read(uv_fs_t& req, std::string& buffer) {
  buffer.resize(static_cast<std::size_t>(req.result));
  return std::move(buffer);
}
inline std::size_t extract_count(uv_fs_t& req, std::string&) { return static_cast<std::size_t>(req.result); }
inline Stat extract_stat(uv_fs_t& req, std::string&) { return req.statbuf; }
inline StatFs extract_statfs(uv_fs_t& req, std::string&) { return *static_cast<const uv_statfs_t*>(req.ptr); }
inline std::string extract_text(uv_fs_t& req, std::string&) { return static_cast<const char*>(req.ptr); }
TempFile extract_temp_file(uv_fs_t& req, std::string&);
void discard_temp_file(uv_fs_t& req) noexcept;

/// The folder part of `path` ("" for a bare name) and the name part.
std::pair<std::string, std::string> split_path(const std::string& path);
/// A fresh temporary-file name next to `path`.
std::string temporary_name_for(const std::string& path);
/// True if `st` describes a folder.
bool is_directory(const Stat& st) noexcept;
/// Removes the file `path` now, on this thread, ignoring failure.
void unlink_now(const std::string& path) noexcept;

}  // namespace detail

// ---- opening, reading and writing files ---------------------------------------------------------------

/// Opens `path` (`flags` as for open(2): UV_FS_O_RDONLY, UV_FS_O_WRONLY | UV_FS_O_CREAT, ...);
/// calls `cb(std::error_code, File)`.
template <class Callback>
void open(Loop& loop, std::string path, int flags, int mode, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<File>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<File>(loop, std::forward<Callback>(cb), &detail::extract_file, std::move(path),
                      [flags, mode](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_open(uv, req, p.c_str(), flags, mode, done);
                      });
}

/// Creates a new file, mode 0600, named after `tpl` with its last six characters ("XXXXXX") made
/// unique, and opens it for reading and writing; calls `cb(std::error_code, TempFile)` with the open
/// file and its path. UV_EINVAL if `tpl` does not end in "XXXXXX".
template <class Callback>
void mkstemp(Loop& loop, std::string tpl, Callback&& cb) {
  if (detail::bad_path(tpl))
    return detail::fail<TempFile>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<TempFile>(
      loop, std::forward<Callback>(cb), &detail::extract_temp_file, std::move(tpl),
      [](uv_loop_t* uv, uv_fs_t* req, std::string& t, uv_fs_cb done) {
        return uv_fs_mkstemp(uv, req, t.c_str(), done);
      },
      true, &detail::discard_temp_file);
}

/// Reads up to `max_bytes` at `offset` (-1: the file's current position); calls
/// `cb(std::error_code, std::string)`. An empty string means end of file.
template <class Callback>
void read(Loop& loop, const File& file, std::size_t max_bytes, std::int64_t offset, Callback&& cb) {
  detail::start<std::string>(loop, std::forward<Callback>(cb), &detail::extract_read, std::string(max_bytes, '\0'),
                             [fd = file.fd(), offset](uv_loop_t* uv, uv_fs_t* req, std::string& buf, uv_fs_cb done) {
                               uv_buf_t b = duet::detail::buffer(buf.data(), buf.size());
                               return uv_fs_read(uv, req, fd, &b, 1, offset, done);
                             });
}

/// Writes `data` at `offset` (-1: the current position); calls `cb(std::error_code, std::size_t written)`.
/// The request owns `data` until it completes. A short write is possible (e.g. a full disk): compare.
template <class Callback>
void write(Loop& loop, const File& file, std::string data, std::int64_t offset, Callback&& cb) {
  detail::start<std::size_t>(loop, std::forward<Callback>(cb), &detail::extract_count, std::move(data),
                             [fd = file.fd(), offset](uv_loop_t* uv, uv_fs_t* req, std::string& buf, uv_fs_cb done) {
                               uv_buf_t b = duet::detail::buffer(buf.data(), buf.size());
                               return uv_fs_write(uv, req, fd, &b, 1, offset, done);
                             });
}

/// Copies up to `length` bytes from `in`, starting at `offset` (`in`'s position is not used nor
/// moved), to `out` at its current position, inside the kernel where it can; calls
/// `cb(std::error_code, std::size_t sent)`. Fewer bytes than asked is possible (end of `in`): compare.
template <class Callback>
void sendfile(Loop& loop, const File& out, const File& in, std::int64_t offset, std::size_t length, Callback&& cb) {
  if (offset < 0)
    return detail::fail<std::size_t>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<std::size_t>(
      loop, std::forward<Callback>(cb), &detail::extract_count, {},
      [out = out.fd(), in = in.fd(), offset, length](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
        return uv_fs_sendfile(uv, req, out, in, offset, length, done);
      });
}

/// Closes `file` on the thread pool; calls `cb(std::error_code)`. Not cancellable (the descriptor
/// would leak): it always runs, even when the loop is being destroyed.
template <class Callback>
void close(Loop& loop, File file, Callback&& cb) {
  detail::start<void>(
      loop, std::forward<Callback>(cb), nullptr, {},
      [fd = file.release()](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
        return uv_fs_close(uv, req, fd, done);
      },
      false);
}

/// Flushes `file`'s data and metadata to stable storage; calls `cb(std::error_code)`.
template <class Callback>
void fsync(Loop& loop, const File& file, Callback&& cb) {
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, {},
                      [fd = file.fd()](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                        return uv_fs_fsync(uv, req, fd, done);
                      });
}

/// Flushes `file`'s data (and only the metadata needed to read it back) to stable storage; calls
/// `cb(std::error_code)`.
template <class Callback>
void fdatasync(Loop& loop, const File& file, Callback&& cb) {
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, {},
                      [fd = file.fd()](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                        return uv_fs_fdatasync(uv, req, fd, done);
                      });
}

/// Cuts or extends `file` to `length` bytes (zeros are added); calls `cb(std::error_code)`.
template <class Callback>
void ftruncate(Loop& loop, const File& file, std::int64_t length, Callback&& cb) {
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, {},
                      [fd = file.fd(), length](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                        return uv_fs_ftruncate(uv, req, fd, length, done);
                      });
}

// ---- metadata -----------------------------------------------------------------------------------------

/// Calls `cb(std::error_code, Stat)` with `path`'s metadata (following symlinks).
template <class Callback>
void stat(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<Stat>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<Stat>(
      loop, std::forward<Callback>(cb), &detail::extract_stat, std::move(path),
      [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) { return uv_fs_stat(uv, req, p.c_str(), done); });
}

/// Calls `cb(std::error_code, Stat)` with `path`'s own metadata: a symlink's, not its target's.
template <class Callback>
void lstat(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<Stat>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<Stat>(
      loop, std::forward<Callback>(cb), &detail::extract_stat, std::move(path),
      [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) { return uv_fs_lstat(uv, req, p.c_str(), done); });
}

/// Calls `cb(std::error_code, Stat)` with the metadata of the open `file`.
template <class Callback>
void fstat(Loop& loop, const File& file, Callback&& cb) {
  detail::start<Stat>(loop, std::forward<Callback>(cb), &detail::extract_stat, {},
                      [fd = file.fd()](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                        return uv_fs_fstat(uv, req, fd, done);
                      });
}

/// Calls `cb(std::error_code, StatFs)` with the size and free space of the file system holding `path`.
template <class Callback>
void statfs(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<StatFs>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<StatFs>(loop, std::forward<Callback>(cb), &detail::extract_statfs, std::move(path),
                        [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                          return uv_fs_statfs(uv, req, p.c_str(), done);
                        });
}

/// Checks that this process may use `path` as `mode` says (with its real user and group ids, as
/// access(2) does); calls `cb(std::error_code)`: success, UV_EACCES, UV_ENOENT, ...
template <class Callback>
void access(Loop& loop, std::string path, AccessMode mode, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(path),
                      [mode](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_access(uv, req, p.c_str(), static_cast<int>(mode), done);
                      });
}

// ---- permissions, owners and times ----------------------------------------------------------------------

/// Sets `path`'s permission bits to `mode` (e.g. 0644; bits outside 07777 are refused); calls
/// `cb(std::error_code)`.
template <class Callback>
void chmod(Loop& loop, std::string path, int mode, Callback&& cb) {
  if ((mode & ~07777) != 0)
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  if (detail::bad_path(path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(path),
                      [mode](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_chmod(uv, req, p.c_str(), mode, done);
                      });
}

/// Sets the open `file`'s permission bits to `mode` (bits outside 07777 are refused); calls
/// `cb(std::error_code)`.
template <class Callback>
void fchmod(Loop& loop, const File& file, int mode, Callback&& cb) {
  if ((mode & ~07777) != 0)
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, {},
                      [fd = file.fd(), mode](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                        return uv_fs_fchmod(uv, req, fd, mode, done);
                      });
}

/// Sets `path`'s owner and group (`static_cast<uv_uid_t>(-1)` / `static_cast<uv_gid_t>(-1)` keeps
/// one as it is); calls `cb(std::error_code)`: UV_EPERM unless the process may.
template <class Callback>
void chown(Loop& loop, std::string path, uv_uid_t uid, uv_gid_t gid, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(path),
                      [uid, gid](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_chown(uv, req, p.c_str(), uid, gid, done);
                      });
}

/// Sets the open `file`'s owner and group, as `chown` does; calls `cb(std::error_code)`.
template <class Callback>
void fchown(Loop& loop, const File& file, uv_uid_t uid, uv_gid_t gid, Callback&& cb) {
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, {},
                      [fd = file.fd(), uid, gid](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                        return uv_fs_fchown(uv, req, fd, uid, gid, done);
                      });
}

/// Sets `path`'s access and modification times (libuv keeps microseconds); calls `cb(std::error_code)`.
template <class Callback>
void utime(Loop& loop, std::string path, std::chrono::system_clock::time_point atime,
           std::chrono::system_clock::time_point mtime, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(path),
                      [a = detail::seconds_since_epoch(atime), m = detail::seconds_since_epoch(mtime)](
                          uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_utime(uv, req, p.c_str(), a, m, done);
                      });
}

/// Sets the open `file`'s access and modification times, as `utime` does; calls `cb(std::error_code)`.
template <class Callback>
void futime(Loop& loop, const File& file, std::chrono::system_clock::time_point atime,
            std::chrono::system_clock::time_point mtime, Callback&& cb) {
  detail::start<void>(
      loop, std::forward<Callback>(cb), nullptr, {},
      [fd = file.fd(), a = detail::seconds_since_epoch(atime), m = detail::seconds_since_epoch(mtime)](
          uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) { return uv_fs_futime(uv, req, fd, a, m, done); });
}

// ---- names: removing, renaming, copying, linking ---------------------------------------------------------

/// Removes the file `path`; calls `cb(std::error_code)`.
template <class Callback>
void unlink(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(path),
                      [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_unlink(uv, req, p.c_str(), done);
                      });
}

/// Renames `from` to `to`, replacing `to` atomically; calls `cb(std::error_code)`.
template <class Callback>
void rename(Loop& loop, std::string from, std::string to, Callback&& cb) {
  if (detail::bad_path(from) || detail::bad_path(to))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(from),
                      [to = std::move(to)](uv_loop_t* uv, uv_fs_t* req, std::string& f, uv_fs_cb done) {
                        return uv_fs_rename(uv, req, f.c_str(), to.c_str(), done);
                      });
}

/// Copies the file `from` to `to` (replacing it unless `flags` has `excl`); calls `cb(std::error_code)`.
/// A copy that fails part-way removes `to` (an old `to` is gone too): no partial copy is left.
template <class Callback>
void copyfile(Loop& loop, std::string from, std::string to, CopyFlags flags, Callback&& cb) {
  if (detail::bad_path(from) || detail::bad_path(to))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(from),
                      [to = std::move(to), flags](uv_loop_t* uv, uv_fs_t* req, std::string& f, uv_fs_cb done) {
                        return uv_fs_copyfile(uv, req, f.c_str(), to.c_str(), static_cast<int>(flags), done);
                      });
}

/// Makes `new_path` a second name (a hard link) for the file `existing`; calls `cb(std::error_code)`.
template <class Callback>
void link(Loop& loop, std::string existing, std::string new_path, Callback&& cb) {
  if (detail::bad_path(existing) || detail::bad_path(new_path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(existing),
                      [to = std::move(new_path)](uv_loop_t* uv, uv_fs_t* req, std::string& f, uv_fs_cb done) {
                        return uv_fs_link(uv, req, f.c_str(), to.c_str(), done);
                      });
}

/// Makes `link_path` a symbolic link whose content is `target` (which need not exist; a relative
/// target is read from the link's folder); calls `cb(std::error_code)`.
template <class Callback>
void symlink(Loop& loop, std::string target, std::string link_path, Callback&& cb) {
  if (detail::bad_path(target) || detail::bad_path(link_path))
    return detail::fail<void>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(target),
                      [to = std::move(link_path)](uv_loop_t* uv, uv_fs_t* req, std::string& t, uv_fs_cb done) {
                        return uv_fs_symlink(uv, req, t.c_str(), to.c_str(), 0, done);
                      });
}

/// Calls `cb(std::error_code, std::string)` with the content of the symbolic link `path` (UV_EINVAL if
/// `path` is not a symlink).
template <class Callback>
void readlink(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<std::string>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<std::string>(loop, std::forward<Callback>(cb), &detail::extract_text, std::move(path),
                             [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                               return uv_fs_readlink(uv, req, p.c_str(), done);
                             });
}

/// Calls `cb(std::error_code, std::string)` with the absolute path of `path`, every symlink, "." and
/// ".." resolved (UV_ENOENT if any part of it is missing).
template <class Callback>
void realpath(Loop& loop, std::string path, Callback&& cb) {
  if (detail::bad_path(path))
    return detail::fail<std::string>(loop, std::forward<Callback>(cb), make_error_code(errc::invalid_argument));
  detail::start<std::string>(loop, std::forward<Callback>(cb), &detail::extract_text, std::move(path),
                             [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                               return uv_fs_realpath(uv, req, p.c_str(), done);
                             });
}

// ---- conveniences (chains of the primitives above) ---------------------------------------------------

}  // namespace duet::fs

#include "duet/detail/fs_chains.hpp"

namespace duet::fs {

/// Creates `path` and any missing parents (like `mkdir -p`); succeeds if it already exists as a
/// folder. Calls `cb(std::error_code)`.
template <class Callback>
void create_directories(Loop& loop, std::string path, Callback&& cb) {
  // Each component is created in turn; UV_EEXIST on an existing folder is fine.
  detail::create_directories_from(loop, std::move(path), 0, std::decay_t<Callback>(std::forward<Callback>(cb)));
}

/// Reads the whole of `path`; calls `cb(std::error_code, std::string)`.
template <class Callback>
void read_file(Loop& loop, std::string path, Callback&& cb) {
  using Cb = std::decay_t<Callback>;
  using Chain = detail::Chain<Cb, detail::ReadFileData>;
  std::stop_token token = stop_token_of(cb);
  auto chain = std::make_unique<Chain>(std::forward<Callback>(cb), token);
  fs::open(loop, std::move(path), UV_FS_O_RDONLY, 0,
           Chain::step(std::move(chain), true, [&loop](std::unique_ptr<Chain> s, std::error_code ec, File f) {
             if (ec) return s->cb(ec, std::string());
             s->data.file = std::move(f);
             read_file_next(loop, std::move(s));
           }));
}

/// Replaces `path` with `data` atomically (see the top of this header); calls `cb(std::error_code)`.
template <class Callback>
void write_file_atomic(Loop& loop, std::string path, std::string data, Callback&& cb) {
  using Cb = std::decay_t<Callback>;
  using Chain = detail::Chain<Cb, detail::WriteFileData>;
  std::stop_token token = stop_token_of(cb);
  std::string temp = detail::temporary_name_for(path);
  auto chain = std::make_unique<Chain>(std::forward<Callback>(cb), token, std::move(path), temp, std::move(data));
  chain->data.temp_may_exist = true;
  // Cancellable: if a cancelled open did create the file, the chain's end removes it (~WriteFileData).
  fs::open(loop, std::move(temp), UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL, 0666,
           Chain::step(std::move(chain), true, [&loop](std::unique_ptr<Chain> s, std::error_code ec, File f) {
             if (ec) {
               // A failed exclusive open created nothing of ours; a cancelled one may have.
               if (!is_cancelled(ec)) s->data.temp_may_exist = false;
               return s->cb(ec);
             }
             s->data.file = std::move(f);
             if (s->token.stop_requested()) return write_file_abort(loop, std::move(s), uv_error(UV_ECANCELED));
             write_file_next(loop, std::move(s));
           }));
}

// ---- the coroutine face: the same names without the callback -------------------------------------

template <class = void>
[[nodiscard]] inline auto open(Loop& loop, std::string path, int flags, int mode) {
  return awaitable<File>([&loop, path = std::move(path), flags, mode](auto cb) mutable {
    fs::open(loop, std::move(path), flags, mode, std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto mkstemp(Loop& loop, std::string tpl) {
  return awaitable<TempFile>(
      [&loop, tpl = std::move(tpl)](auto cb) mutable { fs::mkstemp(loop, std::move(tpl), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto read(Loop& loop, const File& file, std::size_t max_bytes, std::int64_t offset) {
  return awaitable<std::string>(
      [&loop, &file, max_bytes, offset](auto cb) { fs::read(loop, file, max_bytes, offset, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto write(Loop& loop, const File& file, std::string data, std::int64_t offset) {
  return awaitable<std::size_t>([&loop, &file, data = std::move(data), offset](auto cb) mutable {
    fs::write(loop, file, std::move(data), offset, std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto sendfile(Loop& loop, const File& out, const File& in, std::int64_t offset,
                                   std::size_t length) {
  return awaitable<std::size_t>(
      [&loop, &out, &in, offset, length](auto cb) { fs::sendfile(loop, out, in, offset, length, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto close(Loop& loop, File file) {
  return awaitable<void>(
      [&loop, file = std::move(file)](auto cb) mutable { fs::close(loop, std::move(file), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto fsync(Loop& loop, const File& file) {
  return awaitable<void>([&loop, &file](auto cb) { fs::fsync(loop, file, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto fdatasync(Loop& loop, const File& file) {
  return awaitable<void>([&loop, &file](auto cb) { fs::fdatasync(loop, file, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto ftruncate(Loop& loop, const File& file, std::int64_t length) {
  return awaitable<void>([&loop, &file, length](auto cb) { fs::ftruncate(loop, file, length, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto stat(Loop& loop, std::string path) {
  return awaitable<Stat>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::stat(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto lstat(Loop& loop, std::string path) {
  return awaitable<Stat>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::lstat(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto fstat(Loop& loop, const File& file) {
  return awaitable<Stat>([&loop, &file](auto cb) { fs::fstat(loop, file, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto statfs(Loop& loop, std::string path) {
  return awaitable<StatFs>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::statfs(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto access(Loop& loop, std::string path, AccessMode mode) {
  return awaitable<void>([&loop, path = std::move(path), mode](auto cb) mutable {
    fs::access(loop, std::move(path), mode, std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto chmod(Loop& loop, std::string path, int mode) {
  return awaitable<void>([&loop, path = std::move(path), mode](auto cb) mutable {
    fs::chmod(loop, std::move(path), mode, std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto fchmod(Loop& loop, const File& file, int mode) {
  return awaitable<void>([&loop, &file, mode](auto cb) { fs::fchmod(loop, file, mode, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto chown(Loop& loop, std::string path, uv_uid_t uid, uv_gid_t gid) {
  return awaitable<void>([&loop, path = std::move(path), uid, gid](auto cb) mutable {
    fs::chown(loop, std::move(path), uid, gid, std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto fchown(Loop& loop, const File& file, uv_uid_t uid, uv_gid_t gid) {
  return awaitable<void>([&loop, &file, uid, gid](auto cb) { fs::fchown(loop, file, uid, gid, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto utime(Loop& loop, std::string path, std::chrono::system_clock::time_point atime,
                                std::chrono::system_clock::time_point mtime) {
  return awaitable<void>([&loop, path = std::move(path), atime, mtime](auto cb) mutable {
    fs::utime(loop, std::move(path), atime, mtime, std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto futime(Loop& loop, const File& file, std::chrono::system_clock::time_point atime,
                                 std::chrono::system_clock::time_point mtime) {
  return awaitable<void>(
      [&loop, &file, atime, mtime](auto cb) { fs::futime(loop, file, atime, mtime, std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto unlink(Loop& loop, std::string path) {
  return awaitable<void>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::unlink(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto rename(Loop& loop, std::string from, std::string to) {
  return awaitable<void>([&loop, from = std::move(from), to = std::move(to)](auto cb) mutable {
    fs::rename(loop, std::move(from), std::move(to), std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto copyfile(Loop& loop, std::string from, std::string to, CopyFlags flags) {
  return awaitable<void>([&loop, from = std::move(from), to = std::move(to), flags](auto cb) mutable {
    fs::copyfile(loop, std::move(from), std::move(to), flags, std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto link(Loop& loop, std::string existing, std::string new_path) {
  return awaitable<void>([&loop, existing = std::move(existing), new_path = std::move(new_path)](auto cb) mutable {
    fs::link(loop, std::move(existing), std::move(new_path), std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto symlink(Loop& loop, std::string target, std::string link_path) {
  return awaitable<void>([&loop, target = std::move(target), link_path = std::move(link_path)](auto cb) mutable {
    fs::symlink(loop, std::move(target), std::move(link_path), std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto readlink(Loop& loop, std::string path) {
  return awaitable<std::string>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::readlink(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto realpath(Loop& loop, std::string path) {
  return awaitable<std::string>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::realpath(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto create_directories(Loop& loop, std::string path) {
  return awaitable<void>([&loop, path = std::move(path)](auto cb) mutable {
    fs::create_directories(loop, std::move(path), std::move(cb));
  });
}
template <class = void>
[[nodiscard]] inline auto read_file(Loop& loop, std::string path) {
  return awaitable<std::string>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::read_file(loop, std::move(path), std::move(cb)); });
}
template <class = void>
[[nodiscard]] inline auto write_file_atomic(Loop& loop, std::string path, std::string data) {
  return awaitable<void>([&loop, path = std::move(path), data = std::move(data)](auto cb) mutable {
    fs::write_file_atomic(loop, std::move(path), std::move(data), std::move(cb));
  });
}

}  // namespace duet::fs

namespace duet {
using fs::read_file;
using fs::write_file_atomic;
}  // namespace duet
