// duet/tty.hpp — a terminal as a stream, with its mode (line-by-line, raw) and its window size.
//
//     duet::Tty in(loop, 0);                       // the terminal on stdin
//     in.set_mode(duet::Tty::Mode::raw);           // keys arrive one by one, unechoed
//     in.read_start([](std::error_code ec, std::span<const char> keys) { ... });
//     auto [width, height] = in.window_size();
//
// A `Tty` is a `Stream` (stream.hpp: read, write, shutdown, close, their failure modes) on a libuv
// `uv_tty_t`. `set_mode` switches the terminal between `normal` (the line discipline: input by
// line, echoed, Ctrl-C a signal), `raw` (every byte as typed, no echo, no signals) and `io` (raw and
// binary-safe, for a terminal used as a data channel). The mode belongs to the terminal, not to the
// Tty: every process using that terminal sees it.
//
// Restoring: the mode the terminal had before the Tty took it out of normal mode is put back when
// the Tty is closed — by `close()`, by its destructor, or by the Loop's destruction — and, if the
// program exits while a Tty is still out of normal mode (`std::exit` without destroying the Loop), by
// an `atexit` handler (registered the first time a Tty leaves normal mode). That handler keeps its
// own list of terminals rather than calling libuv's `uv_tty_reset_mode`, which in libuv 1.44 knows
// only the first terminal ever put in raw mode, by a descriptor that is stale once its Tty has
// closed; it restores the newest first. Each Tty puts back the mode it found, so two Ttys on one
// terminal are closed in the reverse of the order they left normal mode (the later one found the
// earlier one's mode). A program killed by a signal it does not catch keeps the terminal as it was:
// catch SIGINT and SIGTERM (`wait_for_signal`) and close the Tty.
//
// The descriptor: `Tty(loop, fd)` fails with `std::system_error` (UV_EINVAL) when `fd` is a regular
// file or not open (libuv also takes a pipe or a socket, as a plain stream). libuv reopens a
// pseudo-terminal's slave end (any terminal a program normally runs in) so that its non-blocking mode
// does not leak to other processes; the Tty then closes only its own descriptor. Otherwise it uses
// `fd` itself and closes it when it closes, unless it is 0, 1 or 2. Treat `fd` as given to the Tty
// either way.
//
// Closed objects: `set_mode`, `window_size` and every stream operation on a closed Tty throw
// `std::system_error` with `duet::errc::not_connected`; `mode()` is `normal`. Loop destruction closes
// the Tty, restoring the terminal's mode, and it becomes inert (docs/loop-and-operations.md, "What
// may outlive its Loop").
//
// Cost: one `uv_tty_t` plus a few pointers; `set_mode` is a `tcgetattr` and a `tcsetattr` (and a
// mutex, for the exit handler's list), `window_size` one `ioctl`. Writes to a terminal libuv could
// not reopen are blocking (libuv's choice for terminals shared with other processes).
#pragma once

#include <uv.h>

#include "duet/loop.hpp"
#include "duet/stream.hpp"

namespace duet {

class Tty : public Stream {
 public:
  enum class Mode { normal = UV_TTY_MODE_NORMAL, raw = UV_TTY_MODE_RAW, io = UV_TTY_MODE_IO };
  struct WindowSize {
    int width = 0;   ///< columns
    int height = 0;  ///< rows
  };

  Tty() noexcept = default;
  /// Opens the terminal on `fd` (see above about who closes `fd`). Throws `std::system_error`.
  Tty(Loop& loop, uv_file fd);
  Tty(Tty&&) noexcept = default;
  Tty& operator=(Tty&&) noexcept = default;

  /// Switches the terminal's mode. Throws `std::system_error` (`not_connected` if closed, or what
  /// `tcsetattr` reported).
  void set_mode(Mode mode);
  /// The mode this Tty last set (`normal` when closed).
  Mode mode() const noexcept;
  /// The terminal's size in characters. Throws `std::system_error` (`not_connected` if closed).
  WindowSize window_size() const;

  /// The libuv handle, or null when closed.
  uv_tty_t* native() const noexcept;
};

}  // namespace duet
