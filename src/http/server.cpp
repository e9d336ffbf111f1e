#include "duet/http/server.hpp"

#include <llhttp.h>

#include <deque>
#include <list>
#include <optional>

#include "duet/http/detail/head_collector.hpp"
#include "duet/spawn.hpp"
#include "duet/tcp.hpp"
#include "duet/timer.hpp"

namespace duet::http {
namespace detail {
namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 418:
      return "I'm a Teapot";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string serialize(const Response& res, bool head, bool close) {
  std::string out;
  out.reserve(128 + (head ? 0 : res.body.size()));
  out.append("HTTP/1.1 ").append(std::to_string(res.status)).append(" ");
  out.append(res.reason.empty() ? reason_phrase(res.status) : res.reason).append("\r\n");
  for (const auto& [name, value] : res.headers) {
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") || iequals(name, "Connection")) continue;
    out.append(name).append(": ").append(value).append("\r\n");
  }
  out.append("Content-Length: ").append(std::to_string(res.body.size())).append("\r\n");
  if (close) out.append("Connection: close\r\n");
  out.append("\r\n");
  if (!head) out.append(res.body);
  return out;
}

Response plain(int status, std::string text) {
  Response r;
  r.status = status;
  r.headers.add("Content-Type", "text/plain; charset=utf-8");
  r.body = std::move(text);
  return r;
}

}  // namespace

class ServerConnection;

class ServerCore : public std::enable_shared_from_this<ServerCore> {
 public:
  ServerCore(Loop& l, const Endpoint& at, Handler h, ServerOptions o)
      : loop(l), listener(l, at, o.listen_backlog), handler(std::move(h)), options(std::move(o)) {}

  void accept_next();
  void remove(ServerConnection* c);

  Loop& loop;
  TcpListener listener;
  Handler handler;
  ServerOptions options;
  std::list<std::shared_ptr<ServerConnection>> connections;
  bool closed = false;
};

/// One client connection: parses requests, dispatches them, and writes the responses back in order.
class ServerConnection : public std::enable_shared_from_this<ServerConnection> {
 public:
  ServerConnection(std::shared_ptr<ServerCore> core, TcpStream stream)
      : core_(std::move(core)), stream_(std::move(stream)) {
    llhttp_init(&parser_, HTTP_REQUEST, &llhttp_settings_for<ServerConnection, HTTP_REQUEST>());
    parser_.data = this;
  }

  void start() {
    try {
      peer_ = stream_.remote_endpoint();
    } catch (...) {
    }
    timer_.emplace(core_->loop);
    arm(core_->options.header_timeout);  // a new connection must start a request promptly
    auto self = shared_from_this();
    stream_.read_start([self](std::error_code ec, std::span<const char> chunk) { self->on_read(ec, chunk); });
  }

  void shut() noexcept {
    if (closed_) return;
    closed_ = true;
    if (timer_) timer_->stop();
    stream_.close();
    core_->remove(this);  // may free this: the caller holds a reference
  }

 private:
  struct Slot {
    std::optional<std::string> bytes;  // the serialized response, once the handler has replied
    bool close = false;
  };

  static ServerConnection& self_of(llhttp_t* p) { return *static_cast<ServerConnection*>(p->data); }

  // llhttp is C: nothing may be thrown through it. Out of memory while parsing becomes a 500.
  template <class Fn>
  int guarded(Fn&& fn) noexcept {
    try {
      return fn();
    } catch (...) {
      error_status_ = 500;
      llhttp_set_error_reason(&parser_, "out of memory");
      return HPE_USER;
    }
  }

  void arm(std::chrono::milliseconds d) {
    auto weak = weak_from_this();
    timer_->start(d, std::chrono::milliseconds(0), [weak] {
      if (auto self = weak.lock()) self->shut();
    });
  }

  void on_read(std::error_code ec, std::span<const char> chunk) {
    if (closed_ || failed_) return;
    if (ec || chunk.empty()) {  // the client is gone or finished sending: finish what is queued, then close
      reading_done_ = true;
      stream_.read_stop();
      if (ec) return shut();        // nobody to write to
      in_head_ = in_body_ = false;  // a request cut off here can never complete
      return settle();
    }
    auto keep = shared_from_this();
    if (stop_parsing_) return;
    const llhttp_errno_t rc = llhttp_execute(&parser_, chunk.data(), chunk.size());
    if (rc != HPE_OK && !stop_parsing_ && !closed_)
      refuse(error_status_ ? error_status_ : 400, llhttp_get_error_reason(&parser_));
  }

  // A request that cannot be served: answer it (after those before it), then close.
  void refuse(int status, const char* why) {
    failed_ = true;
    stream_.read_stop();
    slots_.push_back(Slot{serialize(plain(status, std::string(why ? why : "") + "\n"), false, true), true});
    flush();
  }

  int too_large() noexcept {
    error_status_ = 431;
    llhttp_set_error_reason(&parser_, "request header fields too large");
    return HPE_USER;
  }

  friend const llhttp_settings_t& duet::http::detail::llhttp_settings_for<ServerConnection, HTTP_REQUEST>() noexcept;

  static int on_message_begin(llhttp_t* p) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      c.request_ = ServerRequest();
      c.head_.reset();
      c.body_bytes_ = 0;
      c.in_head_ = true;
      c.arm(c.core_->options.header_timeout);
      return 0;
    });
  }
  static int on_url(llhttp_t* p, const char* at, std::size_t n) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      if (!c.head_.start_line(c.request_.target, at, n)) return c.too_large();
      return 0;
    });
  }
  static int on_header_field(llhttp_t* p, const char* at, std::size_t n) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      if (!c.head_.field(at, n)) return c.too_large();
      return 0;
    });
  }
  static int on_header_value(llhttp_t* p, const char* at, std::size_t n) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      if (!c.head_.value(at, n)) return c.too_large();
      return 0;
    });
  }
  static int on_header_value_complete(llhttp_t* p) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      c.head_.field_done(c.request_.headers);
      return 0;
    });
  }
  static int on_headers_complete(llhttp_t* p) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      c.in_head_ = false;
      c.in_body_ = true;
      c.settle();  // the body and the handler may take as long as they take
      c.request_.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(p)));
      c.request_.version_minor = llhttp_get_http_minor(p);
      const auto q = c.request_.target.find('?');
      c.request_.path = c.request_.target.substr(0, q);
      if (q != std::string::npos) c.request_.query = c.request_.target.substr(q + 1);
      return 0;
    });
  }
  static int on_body(llhttp_t* p, const char* at, std::size_t n) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      c.body_bytes_ += n;
      if (c.body_bytes_ > c.core_->options.max_body_bytes) {
        c.error_status_ = 413;
        llhttp_set_error_reason(p, "request body too large");
        return HPE_USER;
      }
      c.request_.body.append(at, n);
      return 0;
    });
  }
  static int on_message_complete(llhttp_t* p) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      c.in_body_ = false;
      c.dispatch(llhttp_should_keep_alive(p) == 0);
      return c.closed_ ? HPE_USER : 0;
    });
  }

  void dispatch(bool close_after) {
    const bool head = request_.method == "HEAD";
    request_.peer = peer_;
    slots_.push_back(Slot{std::nullopt, close_after});
    const std::uint64_t seq = first_seq_ + slots_.size() - 1;
    std::weak_ptr<ServerConnection> weak = weak_from_this();
    Reply reply = [weak, seq, head, close_after](Response res) {
      if (auto self = weak.lock()) self->answer(seq, serialize(res, head, close_after));
    };
    if (close_after) {  // nothing after this request is read, or answered
      stream_.read_stop();
      stop_parsing_ = true;  // llhttp 8 ignores the rest of the chunk; later versions call it an error
    }
    try {
      core_->handler(std::move(request_), std::move(reply));
    } catch (...) {
      core_->loop.report(std::current_exception());
      answer(seq, serialize(plain(500, "internal error\n"), head, close_after));
    }
  }

  void answer(std::uint64_t seq, std::string bytes) {
    if (closed_ || seq < first_seq_ || seq - first_seq_ >= slots_.size()) return;
    Slot& s = slots_[seq - first_seq_];
    if (s.bytes) return;  // replied twice: the first one stands
    s.bytes = std::move(bytes);
    flush();
  }

  // Writes every response that is ready, in request order.
  void flush() {
    auto self = shared_from_this();
    while (!slots_.empty() && slots_.front().bytes && !closed_) {
      Slot slot = std::move(slots_.front());
      slots_.pop_front();
      ++first_seq_;
      const bool close = slot.close;
      ++writes_pending_;
      stream_.write(std::move(*slot.bytes), [self, close](std::error_code ec) {
        --self->writes_pending_;
        if (ec || close) return self->shut();
        self->settle();
      });
      if (close) {
        closed_after_write_ = true;
        stream_.read_stop();
        break;
      }
    }
    settle();
  }

  // Sets the connection's one timer after each change in what it is doing. A request whose headers are
  // arriving keeps their deadline; a response being written must be taken by the client within the
  // idle timeout (counted again as each write completes); a body arriving or a handler at work has no
  // deadline; an idle keep-alive connection has the idle timeout. Once the client has finished sending
  // and every response is written, the connection closes — not before: closing cancels what is still
  // being written.
  void settle() {
    if (closed_) return;
    if (reading_done_ && slots_.empty() && writes_pending_ == 0) return shut();
    if (in_head_) return;
    if (writes_pending_ > 0) return arm(core_->options.idle_timeout);
    if (closed_after_write_) return;
    if (!slots_.empty() || in_body_) return timer_->stop();
    arm(core_->options.idle_timeout);
  }

  std::shared_ptr<ServerCore> core_;
  TcpStream stream_;
  Endpoint peer_;
  llhttp_t parser_{};
  ServerRequest request_;
  HeadCollector head_{core_->options.max_header_bytes};
  std::size_t body_bytes_ = 0;
  int error_status_ = 0;
  std::deque<Slot> slots_;
  std::uint64_t first_seq_ = 0;
  std::size_t writes_pending_ = 0;  // responses handed to the stream, not yet written
  bool in_head_ = false;            // a request's header block has begun and not ended
  bool in_body_ = false;            // a request's headers have ended and its body has not
  std::optional<Timer> timer_;
  bool closed_ = false;
  bool failed_ = false;
  bool reading_done_ = false;
  bool closed_after_write_ = false;
  bool stop_parsing_ = false;
};

void ServerCore::accept_next() {
  if (closed) return;
  std::weak_ptr<ServerCore> weak = weak_from_this();
  listener.accept([weak](std::error_code ec, TcpStream stream) {
    auto self = weak.lock();
    if (!self || self->closed) return;
    if (!ec) {
      if (self->connections.size() >= self->options.max_connections) {
        stream.close();  // over the limit: refused at once
      } else {
        auto c = std::make_shared<ServerConnection>(self, std::move(stream));
        self->connections.push_back(c);
        c->start();
      }
    }
    self->accept_next();
  });
}

void ServerCore::remove(ServerConnection* c) {
  connections.remove_if([c](const std::shared_ptr<ServerConnection>& p) { return p.get() == c; });
}

}  // namespace detail

Server::Server(Loop& loop, const Endpoint& at, detail::Handler handler, ServerOptions options)
    : core_(std::make_shared<detail::ServerCore>(loop, at, std::move(handler), std::move(options))) {
  core_->accept_next();
}

Server::~Server() { close(); }

void Server::close() noexcept {
  if (core_->closed) return;
  core_->closed = true;
  core_->listener.close();
  auto connections = core_->connections;  // shut() removes from the list
  for (auto& c : connections) c->shut();
}

Endpoint Server::local_endpoint() const { return core_->listener.local_endpoint(); }

std::size_t Server::connections() const noexcept { return core_->connections.size(); }

void Server::serve_task(Loop& loop, Task<Response> task, Reply reply) {
  auto handle = std::make_shared<JoinHandle<Response>>(spawn(loop, std::move(task)));
  handle->on_done([handle, reply = std::move(reply)]() mutable {
    Response res;
    try {
      res = handle->result();
    } catch (const std::exception& e) {
      res = detail::plain(500, std::string("internal error: ") + e.what() + "\n");
    }
    reply(std::move(res));
  });
}

}  // namespace duet::http
