// A loopback server that answers each connection with a script, for the HTTP edge cases real servers
// will not produce on demand: truncated bodies, resets, garbage, silence, one byte at a time, a close
// of an idle keep-alive connection.
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "duet/tcp.hpp"
#include "duet/timer.hpp"

namespace duet::test {

class ScriptedServer {
 public:
  /// What to do with one request on a connection (`n` counts requests on that connection, from 0).
  struct Step {
    std::string reply;         // bytes to send once the request's header block has arrived
    bool close_after = false;  // then close (FIN)
    bool reset_after = false;  // then close with RST
    bool byte_at_a_time = false;
    bool close_instead = false;  // close without replying (an idle keep-alive close racing the request)
    // Pause before closing or resetting. Linux reports an RST that arrives while received data is still
    // unread as a plain end of stream; pausing lets the client read first, so it sees the reset.
    std::chrono::milliseconds pause_before_close{0};
    std::chrono::milliseconds reply_after{0};  // hold the reply this long (a slow server)
  };
  using Script = std::function<Step(std::size_t connection, std::size_t request, const std::string& head)>;

  ScriptedServer(Loop& loop, Script script)
      : loop_(loop), listener_(loop, Endpoint::loopback(0)), script_(std::move(script)) {
    accept_next();
  }

  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(listener_.local_endpoint().port()) + path;
  }
  std::size_t connections() const { return accepted_; }
  const std::vector<std::string>& requests() const { return heads_; }
  /// Stops keeping the request heads (a long run would pile them up).
  void forget_requests() {
    heads_.clear();
    heads_.shrink_to_fit();
    record_ = false;
  }
  std::size_t max_concurrent() const { return max_open_; }
  /// The most requests seen at once between their arrival and their reply's write (any thread may ask).
  std::size_t max_in_flight() const { return max_in_flight_; }
  void reset_max_in_flight() { max_in_flight_ = in_flight_.load(); }
  void close() {
    listener_.close();
    for (auto& c : std::vector(conns_)) finish(c);  // the read callbacks hold the connections: close them for real
  }

 private:
  struct Conn {
    TcpStream stream;
    std::string buffer;
    std::size_t index = 0;
    std::size_t requests = 0;
    bool open = true;
  };

  void accept_next() {
    listener_.accept([this](std::error_code ec, TcpStream s) {
      if (ec) return;
      auto c = std::make_shared<Conn>();
      c->stream = std::move(s);
      c->index = accepted_++;
      conns_.push_back(c);
      ++open_;
      max_open_ = std::max(max_open_, open_);
      read(c);
      accept_next();
    });
  }

  void read(std::shared_ptr<Conn> c) {
    c->stream.read_start([this, c](std::error_code ec, std::span<const char> chunk) {
      if (ec || chunk.empty()) return finish(c);
      c->buffer.append(chunk.begin(), chunk.end());
      for (;;) {
        const auto end = c->buffer.find("\r\n\r\n");
        if (end == std::string::npos) return;
        std::string head = c->buffer.substr(0, end + 4);
        c->buffer.erase(0, end + 4);
        if (record_) heads_.push_back(head);
        Step step = script_(c->index, c->requests++, head);
        if (step.close_instead) return finish(c);
        const std::size_t now = ++in_flight_;
        if (now > max_in_flight_) max_in_flight_ = now;
        if (step.reply_after.count() > 0) {
          const auto wait = step.reply_after;
          duet::sleep(loop_, wait, [this, c, step = std::move(step)](std::error_code ec) mutable {
            if (ec || !c->open) return void(--in_flight_);
            send(c, std::move(step));
          });
          continue;
        }
        send(c, std::move(step));
        if (!c->open) return;
      }
    });
  }

  void send(std::shared_ptr<Conn> c, Step step) {
    if (step.byte_at_a_time && step.reply.size() > 1) {
      std::string first(1, step.reply[0]);
      step.reply.erase(0, 1);
      c->stream.write(std::move(first), [this, c, step = std::move(step)](std::error_code ec) mutable {
        if (!ec) send(c, std::move(step));
      });
      return;
    }
    const bool reset = step.reset_after, close = step.close_after;
    const auto pause = step.pause_before_close;
    c->stream.write(std::move(step.reply), [this, c, reset, close, pause](std::error_code) {
      --in_flight_;
      if ((reset || close) && pause.count() > 0) {
        duet::sleep(loop_, pause, [this, c, reset, close](std::error_code) { end(c, reset, close); });
        return;
      }
      end(c, reset, close);
    });
  }

  void end(const std::shared_ptr<Conn>& c, bool reset, bool close) {
    {
      if (reset) {
        uv_os_fd_t fd;
        if (c->stream.is_open() && uv_fileno(reinterpret_cast<uv_handle_t*>(c->stream.native()), &fd) == 0) {
          linger hard{1, 0};
          ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
        }
        finish(c);
      } else if (close) {
        finish(c);
      }
    }
  }

  void finish(std::shared_ptr<Conn> c) {
    if (!c->open) return;
    c->open = false;
    --open_;
    c->stream.close();
    std::erase(conns_, c);
  }

  Loop& loop_;
  TcpListener listener_;
  Script script_;
  std::vector<std::shared_ptr<Conn>> conns_;
  std::vector<std::string> heads_;
  std::size_t accepted_ = 0;
  std::size_t open_ = 0;
  std::size_t max_open_ = 0;
  std::atomic<std::size_t> in_flight_{0}, max_in_flight_{0};
  bool record_ = true;
};

/// A complete response with a Content-Length body.
inline std::string ok(const std::string& body, const std::string& extra_headers = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

}  // namespace duet::test
