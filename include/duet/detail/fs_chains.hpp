// duet/detail/fs_chains.hpp — the machinery of fs.hpp's conveniences: chains of fs primitives.
//
// `read_file`, `write_file_atomic` and `create_directories` are each a chain of requests, one at a
// time: the chain's state (the user's callback, its stop token, what the steps share) travels from
// step to step inside each step's callback, so whichever request is pending owns it, and a loop
// destroyed mid-chain frees it with that request. Cancellation reaches the step in progress.
//
// Included by fs.hpp after the primitives it chains (open, read, write, close, fsync, stat, rename,
// unlink, mkdir); not meant to be included on its own.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

#include "duet/cancellation.hpp"
#include "duet/detail/fs_op.hpp"

namespace duet::fs::detail {

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

/// create_directories: makes each component of `path` from `pos` on in turn (UV_EEXIST on an existing
/// one is fine), then checks that the last one is a folder.
template <class Cb>
void create_directories_from(Loop& loop, std::string path, std::size_t pos, Cb cb) {
  while (pos < path.size() && path[pos] == '/') ++pos;
  if (pos >= path.size()) {
    // Every component exists: check the last one really is a folder.
    std::stop_token token = stop_token_of(cb);
    fs::stat(loop, std::move(path),
             duet::with_cancellation(token, [cb = std::move(cb)](std::error_code ec, Stat st) mutable {
               if (!ec && !is_directory(st)) ec = uv_error(UV_ENOTDIR);
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

/// Reads into `into` at the current position without owning it: for a chain whose state (which owns
/// the buffer) travels inside `cb`, and so outlives the request.
template <class Callback>
void read_borrowed(Loop& loop, uv_file fd, std::span<char> into, Callback&& cb) {
  start<std::size_t>(loop, std::forward<Callback>(cb), &extract_count, {},
                     [fd, into](uv_loop_t* uv, uv_fs_t* req, std::string&, uv_fs_cb done) {
                       uv_buf_t b = duet::detail::buffer(into.data(), into.size());
                       return uv_fs_read(uv, req, fd, &b, 1, -1, done);
                     });
}

struct ReadFileData {
  File file;
  std::string content;  // read so far: `filled` bytes, then the room the next read fills
  std::size_t filled = 0;
};

/// The next read of read_file goes straight into the content's room, which grows as a string does
/// (at least 64 KiB at a time): the file's bytes are held once. A file too large for memory is
/// UV_ENOMEM, reported like any other error (the descriptor closes with the chain).
template <class Chain>
void read_file_next(Loop& loop, std::unique_ptr<Chain> self) {
  std::string& content = self->data.content;
  const std::size_t filled = self->data.filled;
  if (content.size() == filled) {  // no room left (a short read leaves some: the next read uses it)
    try {
      const std::size_t at_least = filled + 64 * 1024;
      content.resize(content.capacity() > at_least ? content.capacity() : at_least);
    } catch (const std::bad_alloc&) {
      return self->cb(uv_error(UV_ENOMEM), std::string());
    }
  }
  const std::span<char> room(content.data() + filled, content.size() - filled);
  const uv_file fd = self->data.file.fd();
  read_borrowed(
      loop, fd, room,
      Chain::step(std::move(self), true, [&loop](std::unique_ptr<Chain> s, std::error_code ec, std::size_t n) {
        if (ec) return s->cb(ec, std::string());
        if (n > 0) {
          s->data.filled += n;
          return read_file_next(loop, std::move(s));
        }
        s->data.content.resize(s->data.filled);  // end of file: close, then deliver
        File f = std::move(s->data.file);
        fs::close(loop, std::move(f),
                  Chain::step(std::move(s), false, [](std::unique_ptr<Chain> s2, std::error_code cec) {
                    if (cec) return s2->cb(cec, std::string());
                    s2->cb(std::error_code(), std::move(s2->data.content));
                  }));
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
    if (temp_may_exist) unlink_now(temp);
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

}  // namespace duet::fs::detail
