// duet/http/server_group.hpp — one HTTP server on every loop of a LoopGroup, all on one port.
//
//     duet::LoopGroup loops(4);
//     duet::http::ServerGroup servers(loops, duet::Endpoint::parse("0.0.0.0", 8000), [](duet::Loop& loop) {
//       return [&loop](duet::http::ServerRequest req) -> duet::Task<duet::http::Response> { ... };
//     });
//
// Each loop gets its own `Server` (server.hpp), made on that loop's thread with the handler that
// `make_handler(loop)` returns there (any handler form a Server takes), and the same options, with
// `reuse_port` set: each server has its own listening socket on the one port, and the kernel spreads
// new connections over them (Linux's SO_REUSEPORT). A connection then lives on one loop from accept to
// close; its handler runs there. Limits (`max_connections` and the rest) hold per server, so per loop:
// the kernel spreads connections by a hash of their addresses, not by load, so one loop may reach its
// `max_connections` while another has room.
// With port 0 the first server picks a free port and the others take the same.
//
// The constructor and `close()` wait for each loop to do its part, so they must not be called from one
// of the group's own threads (std::logic_error); the constructor rethrows the failure of the server
// that could not be made (after closing those it made). `close()` (and the destructor) closes every server on its own
// thread: close it (or destroy it) before the LoopGroup is joined or destroyed.
//
// Cost: a listening socket and a Server per loop; nothing is shared between the loops at run time.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <utility>
#include <vector>

#include "duet/detail/unique_function.hpp"
#include "duet/endpoint.hpp"
#include "duet/http/server.hpp"
#include "duet/loop_thread.hpp"

namespace duet::http {

class ServerGroup {
 public:
  template <class MakeHandler>
  ServerGroup(LoopGroup& loops, const Endpoint& at, MakeHandler make_handler, ServerOptions options = {})
      : ServerGroup(
            [&make_handler](Loop& loop, const Endpoint& where, const ServerOptions& o) {
              return std::make_unique<Server>(loop, where, make_handler(loop), o);
            },
            loops, at, std::move(options)) {}
  /// Closes the servers (see `close`). Called on one of the group's threads, or after the LoopGroup has
  /// stopped, it cannot: it says so on stderr and leaves them to the loops' destruction.
  ~ServerGroup();
  ServerGroup(const ServerGroup&) = delete;
  ServerGroup& operator=(const ServerGroup&) = delete;

  /// Where the servers listen (the port chosen, if `at` asked for port 0).
  const Endpoint& local_endpoint() const noexcept { return at_; }
  std::size_t size() const noexcept;
  /// Connections open now, over every loop (asks each loop in turn).
  std::size_t connections();
  /// Closes every server, each on its own loop's thread, and waits for it. Idempotent. Throws
  /// `std::logic_error` on one of the group's threads, or if a loop has stopped (joined) first.
  void close();

 private:
  /// Makes one loop's server, on that loop's thread.
  using MakeServer = duet::detail::UniqueFunction<std::unique_ptr<Server>(Loop&, const Endpoint&, const ServerOptions&)>;
  ServerGroup(MakeServer make_server, LoopGroup& loops, const Endpoint& at, ServerOptions options);
  /// Throws std::logic_error on one of the group's threads (the caller would wait for itself).
  void check_thread() const;
  /// Runs `fn` on loop `i`'s thread and waits for it; rethrows what it threw. A loop that will not run
  /// it (stopped, or destroyed) drops it, and the wait ends with `std::logic_error`.
  void on_loop(std::size_t i, duet::detail::UniqueFunction<void()> fn);

  LoopGroup* loops_;
  std::vector<std::unique_ptr<Server>> servers_;
  Endpoint at_;
};

}  // namespace duet::http
