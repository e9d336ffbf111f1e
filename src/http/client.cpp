#include "duet/http/client.hpp"

#include <deque>
#include <list>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "duet/dns.hpp"
#include "duet/http/detail/request_writer.hpp"
#include "duet/http/detail/response_parser.hpp"
#include "duet/tcp.hpp"
#include "duet/timer.hpp"
#include "duet/tls.hpp"
#include "transport.hpp"

namespace duet::http {
namespace detail {

class Exchange;
class ClientCore;
struct Origin;

struct Connection;

/// The connections waiting out one duration (the header timeout, or the idle timeout), in the order
/// they started waiting, which is the order they expire in, since the duration is the same for all.
/// One timer serves the whole list, so a connection costs no timer handle of its own, and joining or
/// leaving the list is a few pointer moves: no work in libuv's timer heap, which would otherwise cost
/// an insertion and a removal per request. The timer runs for the head; when the head leaves, the
/// timer is left alone: it fires, finds the new head not yet due, and waits the rest. It does not
/// keep the loop running (an idle connection is not work to wait for; one in use has its stream).
class TimeoutList {
 public:
  struct Node {
    Connection* owner = nullptr;
    TimeoutList* list = nullptr;  // the list it is in, if any
    Node* prev = nullptr;
    Node* next = nullptr;
    std::uint64_t due = 0;  // loop time (uv_now), milliseconds
  };
  using Expire = void (*)(ClientCore&, Connection&);

  TimeoutList(ClientCore& core, Loop& loop, std::chrono::milliseconds duration, Expire expire)
      : core_(core),
        loop_(loop),
        duration_(static_cast<std::uint64_t>(duration.count())),
        expire_(expire),
        timer_(loop) {
    timer_.keep_loop_alive(false);
  }
  TimeoutList(const TimeoutList&) = delete;
  TimeoutList& operator=(const TimeoutList&) = delete;

  /// Puts `n` at the end of this list (taking it out of any list it is in), due one duration from now.
  void add(Node& n) {
    leave(n);
    n.due = uv_now(loop_.native()) + duration_;
    n.list = this;
    n.prev = tail_;
    (tail_ ? tail_->next : head_) = &n;
    tail_ = &n;
    if (!timer_.active()) start(n.due);
  }
  /// Takes `n` out of whichever list it is in (none: nothing to do).
  static void leave(Node& n) noexcept {
    if (n.list) n.list->remove(n);
  }

 private:
  void remove(Node& n) noexcept {
    (n.prev ? n.prev->next : head_) = n.next;
    (n.next ? n.next->prev : tail_) = n.prev;
    n.prev = n.next = nullptr;
    n.list = nullptr;
  }
  void start(std::uint64_t due) {
    const std::uint64_t now = uv_now(loop_.native());
    timer_.start(std::chrono::milliseconds(due > now ? due - now : 0), std::chrono::milliseconds(0),
                 [this] { fire(); });
  }
  void fire();  // after ClientCore

  ClientCore& core_;
  Loop& loop_;
  std::uint64_t duration_;
  Expire expire_;
  Timer timer_;
  Node* head_ = nullptr;
  Node* tail_ = nullptr;
};

/// A keep-alive connection, owned by its origin's list. While idle it waits out the idle timeout;
/// while a request that has not had its response headers yet uses it, the header timeout.
struct Connection {
  Connection(Transport s, Origin* o) : stream(std::move(s)), origin(o) { timeout.owner = this; }
  ~Connection() { TimeoutList::leave(timeout); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Transport stream;
  Origin* origin;
  Exchange* user = nullptr;  // the request using it, if any
  TimeoutList::Node timeout;
  bool reused = false;
};

struct Origin {
  std::string host;
  std::uint16_t port = 80;
  bool secure = false;                                 // https: connections start with a TLS handshake
  std::size_t users = 0;                               // exchanges pointing at this origin
  std::list<std::unique_ptr<Connection>> connections;  // every open connection of this origin
  std::vector<Connection*> idle;                       // most recently used last
  std::size_t slots = 0;                               // connections open or being opened
  std::deque<std::shared_ptr<Exchange>> waiting;       // exchanges waiting for a slot
};

class ClientCore : public std::enable_shared_from_this<ClientCore> {
 public:
  ClientCore(Loop& l, ClientOptions o)
      : loop(l),
        loop_alive(l.core().alive()),
        options(std::move(o)),
        header_timeouts(*this, l, options.header_timeout, &on_header_timeout),
        read_timeouts(*this, l, options.read_timeout, &on_read_timeout),
        idle_timeouts(*this, l, options.idle_timeout, &on_idle_timeout) {}

  Loop& loop;
  std::shared_ptr<bool> loop_alive;  // false once the Loop is destroyed: then nothing is posted to it
  ClientOptions options;
  bool closed = false;
  // Declared before the origins, so that they outlive every connection.
  TimeoutList header_timeouts;  // connections whose request waits for its response headers
  TimeoutList read_timeouts;    // connections whose request waits for more of its response body
  TimeoutList idle_timeouts;    // idle connections
  static void on_header_timeout(ClientCore& core, Connection& c);
  static void on_read_timeout(ClientCore& core, Connection& c);
  static void on_idle_timeout(ClientCore& core, Connection& c);
  /// Origins by (scheme, host, port). The comparator is transparent, so a request finds its origin by
  /// looking at its URL's host in place: no key string is built per request.
  struct OriginOrder {
    using is_transparent = void;
    using Key = std::tuple<bool, std::string_view, std::uint16_t>;
    using Stored = std::tuple<bool, std::string, std::uint16_t>;
    static Key key(const Stored& k) noexcept { return {std::get<0>(k), std::get<1>(k), std::get<2>(k)}; }
    static Key key(const Key& k) noexcept { return k; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return key(a) < key(b);
    }
  };
  std::map<OriginOrder::Stored, Origin, OriginOrder> origins;
  std::optional<TlsContext> tls;  // made at the first https request (loading the trust store takes a while)
  std::string tls_error;          // why it could not be made, if it could not
  Exchange* active = nullptr;     // requests not yet delivered, linked through themselves (for ~Client)

  /// The origin of `url`, made if new; the caller becomes one of its users (see `release`).
  Origin& use_origin(const Url& url) {
    auto it = origins.find(OriginOrder::Key(url.secure(), url.host, url.port));
    if (it == origins.end()) {
      it = origins.emplace(OriginOrder::Stored(url.secure(), url.host, url.port), Origin()).first;
      it->second.host = url.host;
      it->second.port = url.port;
      it->second.secure = url.secure();
    }
    ++it->second.users;
    return it->second;
  }
  /// An exchange no longer points at `o`: forget it if nothing else does.
  void release(Origin& o) noexcept {
    --o.users;
    forget_if_unused(o);
  }
  /// Origins without connections, requests or waiters are dropped, so that a client that visits many
  /// hosts holds only those it is using.
  void forget_if_unused(Origin& o) noexcept {
    if (o.users == 0 && o.slots == 0 && o.connections.empty() && o.waiting.empty() && !closed)
      origins.erase(origins.find(OriginOrder::Key(o.secure, o.host, o.port)));
  }

  /// The client's TLS context, made on first use; null (with `tls_error` saying why) if it cannot be.
  const TlsContext* tls_context() {
    if (!tls && tls_error.empty()) {
      try {
        TlsClientOptions o = options.tls;
        if (o.alpn.empty()) o.alpn = {"http/1.1"};
        tls = TlsContext::client(o);
      } catch (const std::exception& e) {
        tls_error = e.what();
      }
    }
    return tls ? &*tls : nullptr;
  }

  void close_connection(Connection* c);
  /// Closes `c` but keeps its slot for the caller.
  void discard(Connection* c);
  void make_idle(Connection* c);
  void slot_freed(Origin& o);
};

void TimeoutList::fire() {
  // What expires may deliver a response whose callback destroys the Client, and with it this list.
  const auto keep = core_.shared_from_this();
  const std::uint64_t now = uv_now(loop_.native());
  while (head_ && head_->due <= now) {
    Node& n = *head_;
    remove(n);
    expire_(core_, *n.owner);  // may close connections, and add to or leave this list
  }
  if (head_) start(head_->due);
}

bool idempotent(std::string_view method) {
  for (std::string_view m : {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
    if (method == m) return true;
  return false;
}

bool is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/// One request from start to delivered response, redirects and the stale-connection retry included.
/// Shared: every pending callback holds a reference, so a late one never finds it gone.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<ClientCore> core, Request&& req, BodySink sink, Completion done)
      : core_(std::move(core)),
        req_(std::move(req)),
        sink_(sink ? std::make_unique<BodySink>(std::move(sink)) : nullptr),
        done_(std::move(done)),
        parser_(ParserLimits{.max_header_bytes = core_->options.max_header_bytes,
                             .max_header_fields = core_->options.max_header_fields,
                             .max_body_bytes = core_->options.max_body_bytes}) {}

  ~Exchange() {
    unregister();
    leave_origin();
  }

  /// Links this exchange into the client's list of requests in flight (unlinked when delivered).
  void register_active() noexcept {
    next_active_ = std::exchange(core_->active, this);
    if (next_active_) next_active_->prev_active_ = this;
    registered_ = true;
  }
  Exchange* next_active() const noexcept { return next_active_; }
  Request& request() noexcept { return req_; }
  void set_completion(Completion done) noexcept { done_ = std::move(done); }

  void begin(std::stop_token token) {
    if (const char* why = unsendable(req_, core_->options.user_agent)) {
      return fail_later(make_error_code(errc::invalid_argument), std::string("invalid request: ") + why);
    }
    const auto timeout = req_.timeout.count() > 0 ? req_.timeout : core_->options.request_timeout;
    if (timeout.count() > 0) {  // the whole request, queueing and redirects included
      timer_.emplace(core_->loop);
      timer_->start(timeout, std::chrono::milliseconds(0),
                    [self = shared_from_this()] { self->time_out("the request timed out"); });
    }
    cancel_link_.watch(&core_->loop.core(), std::move(token), CancelFn{this});  // carried out on the loop thread
    if (finished_) return;                                                      // cancelled already
    acquire();
  }

  /// The Client is going away, or the caller cancelled: stop everything, report UV_ECANCELED.
  void cancel() noexcept { fail_later(uv_error(UV_ECANCELED), "cancelled"); }

 private:
  struct CancelFn {
    Exchange* self;
    void operator()() const noexcept { self->cancel(); }
  };

  // ---- getting a connection ---------------------------------------------------------------------

  void acquire() {
    Origin& o = core_->use_origin(req_.url);
    leave_origin();
    origin_ = &o;
    if (!origin_->idle.empty() && !fresh_only_) {
      Connection* c = origin_->idle.back();
      origin_->idle.pop_back();
      return use(c, true);
    }
    if (origin_->slots < core_->options.max_connections_per_origin) {
      ++origin_->slots;
      return open();
    }
    origin_->waiting.push_back(shared_from_this());
  }

 public:
  /// Called by the pool: an idle connection (or, if `c` is null, a free slot) is this exchange's now.
  void granted(Connection* c) {
    if (finished_) {  // cancelled while waiting: pass it on
      if (c)
        core_->make_idle(c);
      else
        core_->slot_freed(*origin_);
      return;
    }
    if (c && fresh_only_) {  // a retry must not reuse a connection: keep the slot, open a new one
      core_->discard(c);
      c = nullptr;
    }
    if (c) return use(c, true);
    open();
  }

 private:
  void open() {
    if (!stop_.stop_possible()) stop_ = std::stop_source();  // only opening a connection needs one
    auto self = shared_from_this();
    duet::resolve(core_->loop, origin_->host, origin_->port,
                  with_cancellation(stop_.get_token(), [self](std::error_code ec, std::vector<Endpoint> eps) {
                    if (self->finished_) return self->core_->slot_freed(*self->origin_);
                    if (ec) {
                      self->core_->slot_freed(*self->origin_);
                      return self->fail(ec, "cannot resolve " + self->origin_->host + ": " + ec.message());
                    }
                    self->connect(std::move(eps), 0);
                  }));
  }

  void connect(std::vector<Endpoint> eps, std::size_t i) {
    auto self = shared_from_this();
    const Endpoint to = eps[i];
    duet::connect(
        core_->loop, to, core_->options.connect_timeout,
        with_cancellation(stop_.get_token(), [self, eps = std::move(eps), i](std::error_code ec, TcpStream s) mutable {
          if (self->finished_) return self->core_->slot_freed(*self->origin_);
          if (ec) {
            if (i + 1 < eps.size()) return self->connect(std::move(eps), i + 1);
            self->core_->slot_freed(*self->origin_);
            std::string what = ec.value() == UV_ETIMEDOUT ? "connect timed out" : "cannot connect";
            return self->fail(ec, what + " to " + eps[i].to_string() + ": " + ec.message());
          }
          if (self->origin_->secure) return self->handshake(std::move(s));
          self->connected(Transport(std::move(s)));
        }));
  }

  // https: the TLS handshake on the new connection, verifying the certificate against the URL's host.
  void handshake(TcpStream s) {
    auto self = shared_from_this();
    const TlsContext* ctx = core_->tls_context();
    if (!ctx) {
      core_->slot_freed(*origin_);
      return fail(make_error_code(errc::invalid_argument), core_->tls_error);
    }
    tls_connect(std::move(s), *ctx, origin_->host, core_->options.tls_handshake_timeout,
                with_cancellation(stop_.get_token(), [self](std::error_code ec, TlsStream tls) {
                  if (self->finished_) return self->core_->slot_freed(*self->origin_);
                  if (ec) {
                    self->core_->slot_freed(*self->origin_);
                    std::string why = tls.error_reason().empty() ? ec.message() : tls.error_reason();
                    return self->fail(
                        ec, "TLS with " + self->origin_->host + ":" + std::to_string(self->origin_->port) + ": " + why);
                  }
                  self->connected(Transport(std::move(tls)));
                }));
  }

  void connected(Transport stream) {
    auto c = std::make_unique<Connection>(std::move(stream), origin_);
    Connection* raw = c.get();
    origin_->connections.push_back(std::move(c));
    use(raw, false);
  }

  // ---- one request/response on a connection --------------------------------------------------------

  void leave_origin() noexcept {
    if (Origin* o = std::exchange(origin_, nullptr)) core_->release(*o);
  }

  void use(Connection* c, bool reused) {
    const unsigned attempt = ++attempt_;
    conn_ = c;
    conn_->reused = reused;
    conn_->user = this;
    if (core_->options.header_timeout.count() > 0)
      core_->header_timeouts.add(conn_->timeout);  // until the response headers are in
    else
      TimeoutList::leave(conn_->timeout);
    conn_->stream.keep_loop_alive(true);  // in use: it keeps the loop running again
    conn_->stream.read_stop();
    parser_.reset(req_.method == "HEAD");
    if (sink_) {
      // Only the final response's body reaches the caller's sink: a redirect that is followed is not it.
      if (!filtered_sink_)
        filtered_sink_ = [this](std::string_view piece) {
          if (!will_follow(parser_.response())) (*sink_)(piece);
        };
      parser_.stream_body_to(&filtered_sink_);
    }
    auto self = shared_from_this();
    conn_->stream.write(write_request(req_, core_->options.user_agent), [self, attempt](std::error_code ec) {
      // A write on a connection an earlier attempt dropped completes late, with UV_ECANCELED: ignore it.
      if (ec && !self->finished_ && attempt == self->attempt_) self->io_error(ec);
    });
    conn_->stream.read_start([self](std::error_code ec, std::span<const char> chunk) { self->on_data(ec, chunk); });
  }

  void on_data(std::error_code ec, std::span<const char> chunk) {
    // This runs inside the connection's read callback, whose closure holds this exchange: closing the
    // connection below destroys that closure, so hold on to the exchange until this returns.
    const auto keep = shared_from_this();
    if (finished_) return;
    if (ec) return io_error(ec);
    ResponseParser::State state;
    std::size_t consumed = chunk.size();
    if (chunk.empty()) {
      if (!parser_.started()) return io_error(uv_error(UV_EOF));
      state = parser_.finish();
    } else {
      state = parser_.feed(std::string_view(chunk.data(), chunk.size()), consumed);
    }
    if (finished_) return;  // a streamed body's sink cancelled the request (or destroyed the client)
    if (state == ResponseParser::State::incomplete) {
      if (parser_.headers_complete()) {  // the body must keep coming: each piece within the read timeout
        if (core_->options.read_timeout.count() > 0)
          core_->read_timeouts.add(conn_->timeout);
        else
          TimeoutList::leave(conn_->timeout);
      }
      return;
    }
    if (state == ResponseParser::State::failed) {
      drop_connection();
      return fail(parser_.error(), parser_.error_reason());
    }
    // Complete. The connection goes back to the pool unless it cannot carry another response.
    const bool reusable = parser_.keep_alive() && consumed == chunk.size() && !chunk.empty();
    Connection* c = std::exchange(conn_, nullptr);
    c->user = nullptr;
    TimeoutList::leave(c->timeout);
    c->stream.read_stop();
    if (reusable && !core_->closed)
      core_->make_idle(c);
    else
      core_->close_connection(c);
    respond();
  }

  // The connection failed under this request.
  void io_error(std::error_code ec) {
    const bool stale = conn_ && conn_->reused && !parser_.started();
    drop_connection();
    if (stale && !retried_ && idempotent(req_.method)) {
      retried_ = true;  // the server closed the idle connection as we reused it: once more, fresh
      fresh_only_ = true;
      return acquire();
    }
    if (ec.value() == UV_EOF)
      return fail(make_error_code(errc::malformed_response), "the connection closed before a response arrived");
    fail(ec, "connection error: " + ec.message());
  }

  void drop_connection() {
    if (!conn_) return;
    Connection* c = std::exchange(conn_, nullptr);
    c->user = nullptr;
    core_->close_connection(c);
  }

  /// True if `res` is a redirect this exchange follows (or fails on, past the limit).
  bool will_follow(const Response& res) const noexcept {
    return is_redirect(res.status) && core_->options.max_redirects > 0 && res.headers.contains("Location");
  }

  void respond() {
    Response& res = parser_.response();
    if (will_follow(res)) {
      auto location = res.headers.get("Location");
      {
        if (redirects_ >= core_->options.max_redirects)
          return fail(make_error_code(errc::too_many_redirects),
                      "more than " + std::to_string(core_->options.max_redirects) + " redirects");
        Url next;
        try {
          next = req_.url.resolve(*location);
        } catch (const std::system_error& e) {
          return fail(e.code(), std::string("redirect to an unusable location: ") + e.what());
        }
        if (const char* why = unsendable_url(next))
          return fail(make_error_code(errc::invalid_argument), std::string("redirect to an unusable location: ") + why);
        if (req_.url.secure() && !next.secure() && !core_->options.allow_https_to_http_redirects)
          return fail(make_error_code(errc::insecure_redirect),
                      "refused a redirect from https to http (" + next.to_string() + ")");
        if (next.scheme != req_.url.scheme || next.host != req_.url.host || next.port != req_.url.port) {
          // Another origin: what authenticated the caller to this one stays here (as curl and browsers do).
          for (std::string_view name : {"Authorization", "Proxy-Authorization", "Cookie", "Host"})
            req_.headers.remove(name);
        }
        req_.url = std::move(next);
        ++redirects_;
        if (res.status == 303 || ((res.status == 301 || res.status == 302) && req_.method == "POST")) {
          req_.method = "GET";
          req_.body.clear();
          req_.headers.remove("Content-Length");
          req_.headers.remove("Content-Type");
        }
        retried_ = false;
        fresh_only_ = false;
        return acquire();
      }
    }
    finish(std::error_code(), std::move(res), nullptr);
  }

  // ---- timing ------------------------------------------------------------------------------------

  /// The header timeout (the connection's) or the request deadline (this exchange's timer) ran out.
  void time_out(const char* why) {
    if (finished_) return;
    drop_connection();
    stop_.request_stop();
    fail(uv_error(UV_ETIMEDOUT), why);
  }

 public:
  static void header_timeout(Connection& c) {
    if (!c.user) return;
    const auto keep = c.user->shared_from_this();  // closing the connection drops its callbacks' references
    keep->time_out("no response headers within the header timeout");
  }
  static void read_timeout(Connection& c) {
    if (!c.user) return;
    const auto keep = c.user->shared_from_this();
    keep->time_out("the response body stalled: nothing arrived within the read timeout");
  }

 private:
  // ---- ending ------------------------------------------------------------------------------------

  void fail(std::error_code ec, std::string why) {
    Response res;
    res.reason = why;
    finish(ec, std::move(res), std::make_exception_ptr(RequestError(ec, why)));
  }

  // From a stop callback or ~Client: never call back inside them.
  void fail_later(std::error_code ec, std::string why) noexcept {
    // The queue or a connection may hold the only other references, and both are let go below.
    auto self = weak_from_this().lock();
    if (finished_ || !self) return;
    finished_ = true;
    stop_.request_stop();
    drop_connection();
    remove_from_queue();
    if (timer_) timer_->stop();
    if (!*core_->loop_alive) return;  // the Loop is gone (a Client outliving it): nobody to call back
    try {
      core_->loop.post([self, ec, why = std::move(why)]() mutable {
        Response res;
        res.reason = why;
        self->deliver(ec, std::move(res), std::make_exception_ptr(RequestError(ec, why)));
      });
    } catch (...) {  // out of memory: the completion is lost, and the loop's error hook says so
      core_->loop.report(std::current_exception());
    }
  }

  void finish(std::error_code ec, Response&& res, std::exception_ptr e) {
    if (finished_) return;
    finished_ = true;
    drop_connection();
    remove_from_queue();
    if (timer_) timer_->stop();
    deliver(ec, std::move(res), std::move(e));
  }

  void deliver(std::error_code ec, Response&& res, std::exception_ptr e) {
    cancel_link_.reset();
    timer_.reset();
    unregister();
    if (!*core_->loop_alive) return;
    auto done = std::move(done_);
    if (done) core_->loop.core().invoke(done, ec, std::move(res), std::move(e));
  }

  void unregister() noexcept {
    if (!std::exchange(registered_, false)) return;
    (prev_active_ ? prev_active_->next_active_ : core_->active) = next_active_;
    if (next_active_) next_active_->prev_active_ = prev_active_;
    prev_active_ = next_active_ = nullptr;
  }

  void remove_from_queue() {
    if (!origin_) return;
    auto& q = origin_->waiting;
    for (auto it = q.begin(); it != q.end(); ++it) {
      if (it->get() == this) {
        q.erase(it);
        return;
      }
    }
  }

  std::shared_ptr<ClientCore> core_;
  Request req_;
  std::unique_ptr<BodySink> sink_;  // only for a streamed body
  BodySink filtered_sink_;          // what the parser streams to: `sink_`, for the final response only
  Completion done_;
  ResponseParser parser_;
  Origin* origin_ = nullptr;
  Connection* conn_ = nullptr;
  std::optional<Timer> timer_;               // the whole request's deadline, when there is one
  std::stop_source stop_{std::nostopstate};  // cancels resolving and connecting; made when first needed
  duet::detail::OnLoopStop<CancelFn> cancel_link_;
  int redirects_ = 0;
  unsigned attempt_ = 0;
  bool retried_ = false;
  bool fresh_only_ = false;
  bool finished_ = false;
  bool registered_ = false;
  Exchange* prev_active_ = nullptr;
  Exchange* next_active_ = nullptr;
};

void ClientCore::on_header_timeout(ClientCore&, Connection& c) { Exchange::header_timeout(c); }

void ClientCore::on_read_timeout(ClientCore&, Connection& c) { Exchange::read_timeout(c); }

void ClientCore::on_idle_timeout(ClientCore& core, Connection& c) { core.close_connection(&c); }

void ClientCore::close_connection(Connection* c) {
  Origin& o = *c->origin;
  std::erase(o.idle, c);
  o.connections.remove_if([c](const std::unique_ptr<Connection>& p) { return p.get() == c; });  // closes the stream
  slot_freed(o);
  forget_if_unused(o);
}

void ClientCore::discard(Connection* c) {
  Origin& o = *c->origin;
  std::erase(o.idle, c);
  o.connections.remove_if([c](const std::unique_ptr<Connection>& p) { return p.get() == c; });
}

void ClientCore::slot_freed(Origin& o) {
  --o.slots;
  if (!o.waiting.empty() && !closed) {
    auto next = std::move(o.waiting.front());
    o.waiting.pop_front();
    ++o.slots;
    next->granted(nullptr);
  }
}

void ClientCore::make_idle(Connection* c) {
  Origin& o = *c->origin;
  if (!o.waiting.empty()) {  // someone is waiting: the connection goes straight to them
    auto next = std::move(o.waiting.front());
    o.waiting.pop_front();
    return next->granted(c);
  }
  o.idle.push_back(c);
  // While idle, any byte or close from the server ends the connection; so does the idle timeout.
  // Neither keeps Loop::run() from returning: an idle pooled connection is not work to wait for.
  c->stream.read_start([this, c](std::error_code, std::span<const char>) { close_connection(c); });
  c->stream.keep_loop_alive(false);
  idle_timeouts.add(c->timeout);
}

}  // namespace detail

Client::Client(Loop& loop, ClientOptions options)
    : core_(std::make_shared<detail::ClientCore>(loop, std::move(options))) {}

Client::~Client() {
  core_->closed = true;
  if (!*core_->loop_alive) {  // the Loop went first and closed every stream and timer: nobody to call back
    for (auto& [key, origin] : core_->origins) {
      origin.waiting.clear();
      origin.idle.clear();
      origin.connections.clear();
    }
    return;
  }
  std::vector<std::shared_ptr<detail::Exchange>> in_flight;
  for (detail::Exchange* ex = core_->active; ex; ex = ex->next_active())
    if (auto alive = ex->weak_from_this().lock()) in_flight.push_back(std::move(alive));
  for (auto& ex : in_flight) ex->cancel();
  for (auto& [key, origin] : core_->origins) {
    origin.waiting.clear();
    origin.idle.clear();
    origin.connections.clear();
  }
}

void Client::start_get(std::string_view url, detail::Completion done, std::stop_token token) {
  // The URL is parsed straight into the request the exchange sends: no Url is moved per request.
  auto ex = std::make_shared<detail::Exchange>(core_, Request(), nullptr, nullptr);
  std::error_code ec;
  std::string why;
  if (!http::detail::parse_url_into(url, ex->request().url, ec, &why)) {
    if (!*core_->loop_alive) return;
    core_->loop.post([done = std::move(done), ec, why = "bad URL '" + std::string(url) + "': " + why]() mutable {
      Response res;
      res.reason = why;
      done(ec, std::move(res), std::make_exception_ptr(RequestError(ec, why)));
    });
    return;
  }
  ex->set_completion(std::move(done));
  ex->register_active();
  ex->begin(std::move(token));
}

void Client::start(Request req, BodySink sink, detail::Completion done, std::stop_token token) {
  auto ex = std::make_shared<detail::Exchange>(core_, std::move(req), std::move(sink), std::move(done));
  ex->register_active();
  ex->begin(std::move(token));
}

std::size_t Client::open_connections() const noexcept {
  std::size_t n = 0;
  for (auto& [key, o] : core_->origins) n += o.connections.size();
  return n;
}

std::size_t Client::known_origins() const noexcept { return core_->origins.size(); }

std::size_t Client::idle_connections() const noexcept {
  std::size_t n = 0;
  for (auto& [key, o] : core_->origins) n += o.idle.size();
  return n;
}

}  // namespace duet::http
