// duet/fs.hpp — files on libuv's thread pool: the primitives and two conveniences.
//
//     duet::fs::read_file(loop, "in.txt", [](std::error_code ec, std::string data) { ... });
//     duet::fs::write_file_atomic(loop, "out/BR.gif", std::move(bytes), [](std::error_code ec) { ... });
//     std::string data = co_await duet::read_file(loop, "in.txt");   // the coroutine face, same names
//
// Each operation is one (or, for the conveniences, a chain of) `uv_fs_*` requests run on libuv's
// thread pool; the callback runs on the loop thread with `std::error_code` first: UV_ENOENT for a
// missing file, UV_EACCES for permission denied, UV_ENOSPC for a full disk, UV_ECANCELED if cancelled
// (see cancellation.hpp: queued requests are `uv_cancel`ed; a running one finishes, its result is
// dropped — an opened file is closed — and the callback still gets UV_ECANCELED).
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
// destroyed mid-way: the chain then removes it synchronously as it is dropped).
//
// Cost: one pooled request object per primitive; the conveniences add one heap object for the chain.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/fs_op.hpp"
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

/// What `stat` reports (libuv's `uv_stat_t`: st_size, st_mode, st_mtim, ...).
using Stat = uv_stat_t;

namespace detail {

inline File extract_file(uv_fs_t& req, std::string&) { return File(static_cast<uv_file>(req.result)); }
inline std::string extract_read(uv_fs_t& req, std::string& buffer) {
  buffer.resize(static_cast<std::size_t>(req.result));
  return std::move(buffer);
}
inline std::size_t extract_count(uv_fs_t& req, std::string&) { return static_cast<std::size_t>(req.result); }
inline Stat extract_stat(uv_fs_t& req, std::string&) { return req.statbuf; }

/// The folder part of `path` ("" for a bare name) and the name part.
std::pair<std::string, std::string> split_path(const std::string& path);
/// A fresh temporary-file name next to `path`.
std::string temporary_name_for(const std::string& path);
/// True if `st` describes a folder.
bool is_directory(const Stat& st) noexcept;
/// Removes the file `path` now, on this thread, ignoring failure.
void unlink_now(const std::string& path) noexcept;

}  // namespace detail

// ---- primitives -------------------------------------------------------------------------------------

/// Opens `path` (`flags` as for open(2): UV_FS_O_RDONLY, UV_FS_O_WRONLY | UV_FS_O_CREAT, ...);
/// calls `cb(std::error_code, File)`.
template <class Callback>
void open(Loop& loop, std::string path, int flags, int mode, Callback&& cb) {
  detail::start<File>(loop, std::forward<Callback>(cb), &detail::extract_file, std::move(path),
                      [flags, mode](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_open(uv, req, p.c_str(), flags, mode, done);
                      });
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

/// Flushes `file` to stable storage; calls `cb(std::error_code)`.
template <class Callback>
void fsync(Loop& loop, const File& file, Callback&& cb) {
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, {},
                      [fd = file.fd()](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                        return uv_fs_fsync(uv, req, fd, done);
                      });
}

/// Creates one folder (mode 0777 less the umask); calls `cb(std::error_code)` (UV_EEXIST if it exists).
template <class Callback>
void mkdir(Loop& loop, std::string path, Callback&& cb) {
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(path),
                      [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_mkdir(uv, req, p.c_str(), 0777, done);
                      });
}

/// Renames `from` to `to`, replacing `to` atomically; calls `cb(std::error_code)`.
template <class Callback>
void rename(Loop& loop, std::string from, std::string to, Callback&& cb) {
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(from),
                      [to = std::move(to)](uv_loop_t* uv, uv_fs_t* req, std::string& f, uv_fs_cb done) {
                        return uv_fs_rename(uv, req, f.c_str(), to.c_str(), done);
                      });
}

/// Calls `cb(std::error_code, Stat)` with `path`'s metadata (following symlinks).
template <class Callback>
void stat(Loop& loop, std::string path, Callback&& cb) {
  detail::start<Stat>(
      loop, std::forward<Callback>(cb), &detail::extract_stat, std::move(path),
      [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) { return uv_fs_stat(uv, req, p.c_str(), done); });
}

/// Removes the file `path`; calls `cb(std::error_code)`.
template <class Callback>
void unlink(Loop& loop, std::string path, Callback&& cb) {
  detail::start<void>(loop, std::forward<Callback>(cb), nullptr, std::move(path),
                      [](uv_loop_t* uv, uv_fs_t* req, std::string& p, uv_fs_cb done) {
                        return uv_fs_unlink(uv, req, p.c_str(), done);
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

[[nodiscard]] inline auto open(Loop& loop, std::string path, int flags, int mode) {
  return awaitable<File>([&loop, path = std::move(path), flags, mode](auto cb) mutable {
    fs::open(loop, std::move(path), flags, mode, std::move(cb));
  });
}
[[nodiscard]] inline auto read(Loop& loop, const File& file, std::size_t max_bytes, std::int64_t offset) {
  return awaitable<std::string>(
      [&loop, &file, max_bytes, offset](auto cb) { fs::read(loop, file, max_bytes, offset, std::move(cb)); });
}
[[nodiscard]] inline auto write(Loop& loop, const File& file, std::string data, std::int64_t offset) {
  return awaitable<std::size_t>([&loop, &file, data = std::move(data), offset](auto cb) mutable {
    fs::write(loop, file, std::move(data), offset, std::move(cb));
  });
}
[[nodiscard]] inline auto close(Loop& loop, File file) {
  return awaitable<void>(
      [&loop, file = std::move(file)](auto cb) mutable { fs::close(loop, std::move(file), std::move(cb)); });
}
[[nodiscard]] inline auto fsync(Loop& loop, const File& file) {
  return awaitable<void>([&loop, &file](auto cb) { fs::fsync(loop, file, std::move(cb)); });
}
[[nodiscard]] inline auto mkdir(Loop& loop, std::string path) {
  return awaitable<void>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::mkdir(loop, std::move(path), std::move(cb)); });
}
[[nodiscard]] inline auto create_directories(Loop& loop, std::string path) {
  return awaitable<void>([&loop, path = std::move(path)](auto cb) mutable {
    fs::create_directories(loop, std::move(path), std::move(cb));
  });
}
[[nodiscard]] inline auto rename(Loop& loop, std::string from, std::string to) {
  return awaitable<void>([&loop, from = std::move(from), to = std::move(to)](auto cb) mutable {
    fs::rename(loop, std::move(from), std::move(to), std::move(cb));
  });
}
[[nodiscard]] inline auto stat(Loop& loop, std::string path) {
  return awaitable<Stat>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::stat(loop, std::move(path), std::move(cb)); });
}
[[nodiscard]] inline auto unlink(Loop& loop, std::string path) {
  return awaitable<void>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::unlink(loop, std::move(path), std::move(cb)); });
}
[[nodiscard]] inline auto read_file(Loop& loop, std::string path) {
  return awaitable<std::string>(
      [&loop, path = std::move(path)](auto cb) mutable { fs::read_file(loop, std::move(path), std::move(cb)); });
}
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
