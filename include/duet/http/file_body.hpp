// duet/http/file_body.hpp — a streamed body read from a file, for an upload or a streamed response.
//
//     client.upload(req, duet::http::file_body(loop, "big.iso"), cb);          // a request body
//     reply.stream(head, duet::http::file_body(loop, "public/big.iso"));       // a response body
//
// What it does: a `BodySource` that opens `path` when first asked, then reads it piece by piece
// (`piece` bytes at a time, 64 KiB by default) on libuv's thread pool, each read only when the
// connection asks for the next piece: a peer that reads slowly holds one piece in memory, whatever
// the file's size. It ends at the end of the file.
//
// Failure: the file cannot be opened or read (UV_ENOENT, UV_EACCES, UV_EISDIR, ...): the transfer
// fails with that code (an upload's callback gets it; a streamed response is cut short). Declare
// the file's size as Content-Length only if it will not change meanwhile: a body that breaks its
// length is an error too.
//
// Cost: one small shared state and, per piece, one pool read into a fresh string (then written to
// the socket). Not `sendfile(2)`: the bytes pass through user space. A TLS connection needs that
// anyway; a plain one cannot do better through libuv, whose TCP sockets are non-blocking (a
// `uv_fs_sendfile` on the pool stops with UV_EAGAIN as soon as the socket's buffer is full) and which
// offers no way to wait for such a socket to become writable but its own writes (a second poll
// handle on its descriptor is not allowed). A pool thread blocking in sendfile until a slow client
// has read would let a few slow clients hold the whole pool. The file is closed when the source is
// dropped (at the end of the transfer).
#pragma once

#include <cstddef>
#include <string>

#include "duet/http/message.hpp"
#include "duet/loop.hpp"

namespace duet::http {

/// A body source reading the file `path` on the thread pool, `piece` bytes at a time.
BodySource file_body(Loop& loop, std::string path, std::size_t piece = 64 * 1024);

}  // namespace duet::http
