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

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "duet/awaitable.hpp"
#include "duet/detail/request_op.hpp"
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
using duet::detail::LoopCore;
using duet::detail::RequestOp;

template <class Result, class Cb>
class FsOp final : public RequestOp<FsOp<Result, Cb>, uv_fs_t, Cb> {
  using Base = RequestOp<FsOp<Result, Cb>, uv_fs_t, Cb>;

 public:
  /// Turns a successful request into the callback's result (unused when Result is void).
  using Extract = Result (*)(uv_fs_t&, std::string&);

  FsOp(LoopCore* core, Cb&& cb, Extract extract, std::string buffer, bool cancellable)
      : Base(core, std::move(cb)), buffer(std::move(buffer)), extract_(extract), cancellable_(cancellable) {}

  // A close is never cancelled: the descriptor was handed over, so a close that did not run would leak it.
  void on_stop() noexcept {
    if (cancellable_) Base::on_stop();
  }
  void abandon() noexcept override {
    if (cancellable_) Base::abandon();
  }

  std::string buffer;  // bytes to write, or room to read into

  static void on_done(uv_fs_t* req) noexcept {
    auto* self = static_cast<FsOp*>(req->data);
    const int status = req->result < 0 ? static_cast<int>(req->result) : 0;
    const std::error_code ec = self->status_error(status);
    if constexpr (std::is_void_v<Result>) {
      uv_fs_req_cleanup(req);
      if (self->loop_closing()) return self->finish_silently();
      self->complete(ec);
    } else {
      // A result that arrives after a cancel (or while the loop closes) is built and dropped, so an
      // opened descriptor is closed.
      Result result{};
      if (status == 0) {
        try {
          result = self->extract_(*req, self->buffer);
        } catch (...) {
          uv_fs_req_cleanup(req);
          if (self->loop_closing()) return self->finish_silently();
          return self->complete(uv_error(UV_ENOMEM), Result{});
        }
        if (ec) result = Result{};
      }
      uv_fs_req_cleanup(req);
      if (self->loop_closing()) return self->finish_silently();
      self->complete(ec, std::move(result));
    }
  }

 private:
  Extract extract_;
  bool cancellable_;
};

/// Starts one fs request: `submit(uv_loop_t*, uv_fs_t*, std::string& buffer, uv_fs_cb)` calls uv_fs_*.
template <class Result, class Callback, class Submit>
void start(Loop& loop, Callback&& cb, typename FsOp<Result, std::decay_t<Callback>>::Extract extract,
           std::string buffer, Submit&& submit, bool cancellable = true) {
  using Op = FsOp<Result, std::decay_t<Callback>>;
  auto& core = loop.core();
  Op* op =
      core.make<Op>(&core, std::decay_t<Callback>(std::forward<Callback>(cb)), extract, std::move(buffer), cancellable);
  if (int rc = submit(core.uv(), &op->req, op->buffer, &Op::on_done); rc < 0)
    return op->template fail_submission<Result>(rc);
  if (cancellable) op->watch_stop();
}

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

namespace detail {

/// Writes `bytes` at the current position without taking ownership: for chains whose state (which
/// owns the bytes) travels inside `cb`, and so outlives the request.
template <class Callback>
void write_borrowed(Loop& loop, uv_file fd, std::string_view bytes, Callback&& cb) {
  start<std::size_t>(loop, std::forward<Callback>(cb), &extract_count, {},
                     [fd, bytes](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                       uv_buf_t b = duet::detail::buffer(const_cast<char*>(bytes.data()), bytes.size());
                       return uv_fs_write(uv, req, fd, &b, 1, -1, done);
                     });
}

/// The state of a chained operation: the user's callback and what the steps share. It travels from
/// step to step inside each step's callback (a unique_ptr), so if the loop is destroyed mid-chain the
/// abandoned request frees it.
template <class Cb, class Data>
struct Chain {
  template <class C, class... DataArgs>
  Chain(C&& c, std::stop_token t, DataArgs&&... args)
      : cb(std::forward<C>(c)), token(std::move(t)), data(std::forward<DataArgs>(args)...) {}

  Cb cb;
  std::stop_token token;
  Data data;

  /// A callback for the next step: bound to the chain's stop token when `cancellable`.
  template <class Step>
  static auto step(std::unique_ptr<Chain> self, bool cancellable, Step&& next) {
    std::stop_token token = cancellable ? self->token : std::stop_token();
    return duet::with_cancellation(
        std::move(token), [
          self = std::move(self), next = std::forward<Step>(next)
        ]<class... Args>(Args && ... args) mutable requires std::invocable<Step&, std::unique_ptr<Chain>, Args...> {
          next(std::move(self), std::forward<Args>(args)...);
        });
  }
};

template <class Cb>
void create_directories_from(Loop& loop, std::string path, std::size_t pos, Cb cb);

}  // namespace detail

/// Creates `path` and any missing parents (like `mkdir -p`); succeeds if it already exists as a
/// folder. Calls `cb(std::error_code)`.
template <class Callback>
void create_directories(Loop& loop, std::string path, Callback&& cb) {
  // Each component is created in turn; UV_EEXIST on an existing folder is fine.
  detail::create_directories_from(loop, std::move(path), 0, std::decay_t<Callback>(std::forward<Callback>(cb)));
}

namespace detail {

template <class Cb>
void create_directories_from(Loop& loop, std::string path, std::size_t pos, Cb cb) {
  while (pos < path.size() && path[pos] == '/') ++pos;
  if (pos >= path.size()) {
    // Every component exists: check the last one really is a folder.
    std::stop_token token = stop_token_of(cb);
    fs::stat(loop, std::move(path),
             duet::with_cancellation(token, [cb = std::move(cb)](std::error_code ec, Stat st) mutable {
               if (!ec && (st.st_mode & S_IFMT) != S_IFDIR) ec = uv_error(UV_ENOTDIR);
               cb(ec);
             }));
    return;
  }
  std::size_t end = path.find('/', pos);
  if (end == std::string::npos) end = path.size();
  std::string prefix = path.substr(0, end);
  std::stop_token token = stop_token_of(cb);
  fs::mkdir(loop, std::move(prefix),
            duet::with_cancellation(
                token, [&loop, path = std::move(path), end, cb = std::move(cb)](std::error_code ec) mutable {
                  if (ec && ec.value() != UV_EEXIST) return cb(ec);
                  create_directories_from(loop, std::move(path), end, std::move(cb));
                }));
}

struct ReadFileData {
  File file;
  std::string content;
};

template <class Chain>
void read_file_next(Loop& loop, std::unique_ptr<Chain> self) {
  const std::size_t chunk = std::max<std::size_t>(self->data.content.capacity() - self->data.content.size(), 64 * 1024);
  const File& file = self->data.file;
  fs::read(loop, file, chunk, -1,
           Chain::step(std::move(self), true, [&loop](std::unique_ptr<Chain> s, std::error_code ec, std::string bytes) {
             if (ec) return s->cb(ec, std::string());
             if (bytes.empty()) {  // end of file: close, then deliver
               File f = std::move(s->data.file);
               return fs::close(loop, std::move(f),
                                Chain::step(std::move(s), false, [](std::unique_ptr<Chain> s2, std::error_code cec) {
                                  if (cec) return s2->cb(cec, std::string());
                                  s2->cb(std::error_code(), std::move(s2->data.content));
                                }));
             }
             if (s->data.content.empty() && bytes.size() >= s->data.content.capacity())
               s->data.content = std::move(bytes);
             else
               s->data.content += bytes;
             read_file_next(loop, std::move(s));
           }));
}

struct WriteFileData {
  std::string path;
  std::string temp;
  std::string bytes;
  std::size_t written = 0;
  File file;
  bool temp_may_exist = false;  // from the open's submission until the rename or the abort's unlink

  WriteFileData(std::string p, std::string t, std::string b)
      : path(std::move(p)), temp(std::move(t)), bytes(std::move(b)) {}
  WriteFileData(WriteFileData&&) = delete;
  // The chain ends here without finishing only when the loop is destroyed mid-way: the temporary file
  // is removed now, synchronously, so none is ever left behind.
  ~WriteFileData() {
    file.reset();
    if (temp_may_exist) ::unlink(temp.c_str());
  }
};

/// Failure after the temporary file exists: close and unlink it (never cancelled), then report `ec`.
template <class Chain>
void write_file_abort(Loop& loop, std::unique_ptr<Chain> self, std::error_code ec) {
  self->data.file.reset();
  std::string temp = self->data.temp;
  fs::unlink(loop, std::move(temp),
             Chain::step(std::move(self), false, [ec](std::unique_ptr<Chain> s, std::error_code) {
               s->data.temp_may_exist = false;
               s->cb(ec);
             }));
}

template <class Chain>
void write_file_finish(Loop& loop, std::unique_ptr<Chain> self) {
  const File& file = self->data.file;
  fs::fsync(loop, file, Chain::step(std::move(self), true, [&loop](std::unique_ptr<Chain> s, std::error_code ec) {
              if (ec) return write_file_abort(loop, std::move(s), ec);
              File f = std::move(s->data.file);
              fs::close(loop, std::move(f),
                        Chain::step(std::move(s), false, [&loop](std::unique_ptr<Chain> s2, std::error_code cec) {
                          if (!cec && s2->token.stop_requested()) cec = uv_error(UV_ECANCELED);
                          if (cec) return write_file_abort(loop, std::move(s2), cec);
                          std::string temp = s2->data.temp, path = s2->data.path;
                          fs::rename(loop, std::move(temp), std::move(path),
                                     Chain::step(std::move(s2), false,
                                                 [&loop](std::unique_ptr<Chain> s3, std::error_code rec) {
                                                   if (rec) return write_file_abort(loop, std::move(s3), rec);
                                                   s3->data.temp_may_exist = false;
                                                   s3->cb(std::error_code());
                                                 }));
                        }));
            }));
}

template <class Chain>
void write_file_next(Loop& loop, std::unique_ptr<Chain> self) {
  WriteFileData& d = self->data;
  if (d.written == d.bytes.size()) return write_file_finish(loop, std::move(self));
  const std::string_view rest = std::string_view(d.bytes).substr(d.written);
  const uv_file fd = d.file.fd();
  write_borrowed(
      loop, fd, rest,
      Chain::step(std::move(self), true, [&loop](std::unique_ptr<Chain> s, std::error_code ec, std::size_t n) {
        if (!ec && n == 0) ec = uv_error(UV_EIO);
        if (ec) return write_file_abort(loop, std::move(s), ec);
        s->data.written += n;  // a short write (e.g. a nearly full disk) continues where it stopped
        write_file_next(loop, std::move(s));
      }));
}

}  // namespace detail

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
