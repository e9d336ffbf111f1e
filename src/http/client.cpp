#include "duet/http/client.hpp"

#include <deque>
#include <list>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "duet/dns.hpp"
#include "duet/fs.hpp"
#include "duet/http/detail/request_writer.hpp"
#include "duet/http/detail/response_parser.hpp"
#include "duet/tcp.hpp"
#include "duet/timer.hpp"
#include "duet/tls.hpp"
#include "loop_gone_watch.hpp"
#include "owed_piece.hpp"
#include "spares.hpp"
#include "transport.hpp"

namespace duet::http {
namespace detail {

class Exchange;
class ClientCore;
struct Origin;

struct Connection;

/// The connections (or, for the connect timeout, the exchanges) waiting out one duration (the connect,
/// header, read or idle timeout), in the order
/// they started waiting, which is the order they expire in, since the duration is the same for all.
/// One timer serves the whole list, so a connection costs no timer handle of its own, and joining or
/// leaving the list is a few pointer moves: no work in libuv's timer heap, which would otherwise cost
/// an insertion and a removal per request. The timer runs for the head; when the head leaves, the
/// timer is left alone: it fires, finds the new head not yet due, and waits the rest. It does not
/// keep the loop running (an idle connection is not work to wait for; one in use has its stream).
class TimeoutList {
 public:
  struct Node {
    void* owner = nullptr;        // what the list's `Expire` is called with: a Connection, or an Exchange
    TimeoutList* list = nullptr;  // the list it is in, if any
    Node* prev = nullptr;
    Node* next = nullptr;
    std::uint64_t due = 0;  // loop time (LoopCore::now), milliseconds
  };
  using Expire = void (*)(ClientCore&, void* owner);

  TimeoutList(ClientCore& core, duet::detail::LoopRef loop, std::chrono::milliseconds duration, Expire expire)
      : core_(core),
        loop_(loop),
        loop_alive_(loop.core().alive()),
        duration_(static_cast<std::uint64_t>(duration.count())),
        expire_(expire),
        timer_(loop.loop()) {
    timer_.keep_loop_alive(false);
  }
  TimeoutList(const TimeoutList&) = delete;
  TimeoutList& operator=(const TimeoutList&) = delete;

  /// Puts `n` at the end of this list (taking it out of any list it is in), due one duration from now.
  void add(Node& n) {
    leave(n);
    if (!*loop_alive_) return;  // the Loop is gone: nothing is timed any more
    n.due = loop_.core().now() + duration_;
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
    if (!*loop_alive_) return;  // the Loop is gone (its core may be too): its timer is closed
    const std::uint64_t now = loop_.core().now();
    timer_.start(std::chrono::milliseconds(due > now ? due - now : 0), std::chrono::milliseconds(0),
                 [this] { fire(); });
  }
  void fire();  // after ClientCore

  ClientCore& core_;
  duet::detail::LoopRef loop_;
  std::shared_ptr<bool> loop_alive_;
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
        connect_timeouts(*this, l, options.connect_timeout, &on_connect_timeout),
        header_timeouts(*this, l, options.header_timeout, &on_header_timeout),
        read_timeouts(*this, l, options.read_timeout, &on_read_timeout),
        idle_timeouts(*this, l, options.idle_timeout, &on_idle_timeout) {
    LoopGoneWatch::make(l.core(), loop_gone_watch, this);
  }
  ~ClientCore() { LoopGoneWatch::drop(loop_gone_watch); }
  ClientCore(const ClientCore&) = delete;
  ClientCore& operator=(const ClientCore&) = delete;
  /// The Loop is being destroyed: no request watches its stop token any more.
  void loop_gone() noexcept;
  /// For the Loop's "pending" report: requests whose caller waits and which nothing else on the loop
  /// stands for (see Exchange::unseen_by_loop).
  std::size_t unseen_requests() const noexcept;

  duet::detail::LoopRef loop;        // (the core: a callback may destroy a host's Loop)
  std::shared_ptr<bool> loop_alive;  // false from the start of ~Loop: nothing is started, pooled, timed or posted then
  ClientOptions options;
  bool closed = false;
  // Declared before the origins, so that they outlive every connection.
  TimeoutList connect_timeouts;  // exchanges connecting (each address in turn)
  TimeoutList header_timeouts;   // connections whose request waits for its response headers
  TimeoutList read_timeouts;     // connections whose request waits for more of its response body
  TimeoutList idle_timeouts;     // idle connections
  static void on_connect_timeout(ClientCore& core, void* exchange);
  static void on_header_timeout(ClientCore& core, void* connection);
  static void on_read_timeout(ClientCore& core, void* connection);
  static void on_idle_timeout(ClientCore& core, void* connection);
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
  std::optional<TlsContext> tls;         // made at the first https request (loading the trust store takes a while)
  std::string tls_error;                 // why it could not be made, if it could not
  Exchange* active = nullptr;            // requests not yet delivered, linked through themselves (for ~Client)
  Spares<ResponseParser> spare_parsers;  // reset, for the next responses
  std::string head_buffer;               // the request being written, for the bytes the kernel takes at once
  static constexpr std::size_t kKeptHeadBuffer = 4096;
  Origin* last_origin = nullptr;  // the origin found last: most requests go where the one before went

  /// The origin of `url`, made if new; the caller becomes one of its users (see `release`).
  Origin& use_origin(const Url& url) {
    const bool secure = url.secure();
    Origin* o = last_origin;
    if (!o || o->port != url.port || o->secure != secure || o->host != url.host) {
      auto it = origins.find(OriginOrder::Key(secure, url.host, url.port));
      if (it == origins.end()) {
        it = origins.emplace(OriginOrder::Stored(secure, url.host, url.port), Origin()).first;
        it->second.host = url.host;
        it->second.port = url.port;
        it->second.secure = secure;
      }
      o = last_origin = &it->second;
    }
    ++o->users;
    return *o;
  }
  /// An exchange no longer points at `o`: forget it if nothing else does.
  void release(Origin& o) noexcept {
    --o.users;
    forget_if_unused(o);
  }
  /// Origins without connections, requests or waiters are dropped, so that a client that visits many
  /// hosts holds only those it is using.
  void forget_if_unused(Origin& o) noexcept {
    if (o.users == 0 && o.slots == 0 && o.connections.empty() && o.waiting.empty() && !closed) {
      if (last_origin == &o) last_origin = nullptr;
      origins.erase(origins.find(OriginOrder::Key(o.secure, o.host, o.port)));
    }
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

  LoopGoneWatch* loop_gone_watch = nullptr;  // until the Loop is destroyed

  void close_connection(Connection* c);
  /// Closes `c` but keeps its slot for the caller.
  void discard(Connection* c);
  void make_idle(Connection* c);
  void slot_freed(Origin& o);
};

void TimeoutList::fire() {
  // What expires may deliver a response whose callback destroys the Client, and with it this list.
  const auto keep = core_.shared_from_this();
  const std::uint64_t now = loop_.core().now();
  // A callback may also destroy a host's Loop, freeing the exchanges the nodes left point to.
  while (head_ && head_->due <= now && *loop_alive_) {
    Node& n = *head_;
    remove(n);
    expire_(core_, n.owner);  // may close connections, and add to or leave this list
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
        done_(std::move(done)) {
    connecting_.owner = this;
  }

  ~Exchange() {
    TimeoutList::leave(connecting_);
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
  /// True if the caller's callback waits for this request and nothing on the loop stands for it in the
  /// Loop's "pending" report: it is `queued` for a connection, or its body's sink paused it (its
  /// connection reads no more) and it was not opened with `open` (whose opener has had its head). Its
  /// deadline, a timer the report counts, stands for it if armed.
  bool unseen_by_loop(bool queued) const noexcept {
    if (finished_ || (timer_ && timer_->active())) return false;  // (finished: its completion is posted)
    return queued || (paused_ && !(streamed_ && streamed_->on_head && head_announced_));
  }
  Request& request() noexcept { return req_; }
  void set_completion(Completion done) noexcept { done_ = std::move(done); }
  /// Called once with the final response's head, before any of its body reaches the sink (`open`).
  using HeadHook = duet::detail::UniqueFunction<void(const Response&)>;
  void set_head_hook(HeadHook hook) { streamed().on_head = std::move(hook); }
  /// `upload`: the body comes from `source`, piece by piece.
  void set_source(BodySource source) {
    Streamed& st = streamed();
    st.source = std::make_unique<BodySource>(std::move(source));
    st.upload_length = declared_length(req_.headers);
  }

  // ---- pausing a streamed body (BodyFlow, Resume) ---------------------------------------------------

  Resume pause_body() {
    if (paused_ || finished_) return Resume();
    paused_ = true;
    parser_->pause_body(true);  // the parser stops after this piece
    // Nothing else holds a paused exchange: its connection stops reading, which lets go of the read
    // callback. It holds itself until it is resumed or ends.
    streamed().paused_self = shared_from_this();
    return Resume(weak_from_this());
  }

  void resume_body() noexcept {
    const auto keep = take_paused_self();
    if (!std::exchange(paused_, false) || finished_) return;
    if (in_feed_) return parser_->pause_body(false);  // resumed from the sink itself: the parser goes on
    if (!*core_->loop_alive || !conn_) return;
    try {
      parser_->resume_body();
      std::string rest;
      if (streamed_) rest = std::exchange(streamed_->stash, std::string());
      process(rest, false);
    } catch (...) {  // out of memory in the caller's sink or in following a redirect
      core_->loop.report(std::current_exception());
      cancel();
    }
  }

  std::uint64_t body_received() const noexcept { return parser_ ? parser_->body_bytes() : 0; }
  /// The Loop is gone: a paused exchange lets go of itself (nothing can resume it any more).
  void release_pause() noexcept { take_paused_self(); }

  void begin(std::stop_token token) {
    if (const char* why = unsendable(req_, core_->options.user_agent, has_source())) {
      return fail_later(make_error_code(errc::invalid_argument), std::string("invalid request: ") + why);
    }
    const auto timeout = req_.timeout.count() > 0 ? req_.timeout : core_->options.request_timeout;
    if (timeout.count() > 0) {  // the whole request, queueing and redirects included
      timer_.emplace(core_->loop.loop());
      timer_->start(timeout, std::chrono::milliseconds(0),
                    [self = shared_from_this()] { self->time_out("the request timed out"); });
    }
    cancel_link_.watch(&core_->loop.core(), std::move(token), CancelFn{this});  // carried out on the loop thread
    if (finished_) return;                                                      // cancelled already
    acquire();
  }

  /// The Client is going away, or the caller cancelled: stop everything, report UV_ECANCELED.
  void cancel() noexcept { fail_later(uv_error(UV_ECANCELED), "cancelled"); }
  /// The Loop is being destroyed: a stop requested from now on must not reach it.
  void stop_watching() noexcept { cancel_link_.reset(); }

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
    // A numeric host is its own address: straight to connecting (whose callback never runs inside
    // `connect`), without a resolve deferred to the next turn. 10,000 requests opening connections in
    // one turn would otherwise queue 10,000 deferred completions (1.8 MB) first.
    if (auto numeric = Endpoint::try_parse(origin_->host, origin_->port)) return connect({*numeric}, 0);
    auto self = shared_from_this();
    duet::resolve(core_->loop.loop(), origin_->host, origin_->port,
                  with_cancellation(stop_.get_token(), [self](std::error_code ec, std::vector<Endpoint> eps) {
                    if (self->finished_) return self->core_->slot_freed(*self->origin_);
                    if (ec) {
                      self->core_->slot_freed(*self->origin_);
                      return self->fail(ec, "cannot resolve " + self->origin_->host + ": " + ec.message());
                    }
                    self->connect(std::move(eps), 0);
                  }));
  }

  // Each address in turn, each within the connect timeout: a deadline on the client's list (a timer
  // per connect would cost 128 bytes and a heap insertion), which cancels the connect through `stop_`.
  void connect(std::vector<Endpoint> eps, std::size_t i) {
    auto self = shared_from_this();
    const Endpoint to = eps[i];
    if (core_->options.connect_timeout.count() > 0) core_->connect_timeouts.add(connecting_);
    duet::connect(
        core_->loop.loop(), to,
        with_cancellation(stop_.get_token(), [self, eps = std::move(eps), i](std::error_code ec, TcpStream s) mutable {
          TimeoutList::leave(self->connecting_);
          if (self->finished_) return self->core_->slot_freed(*self->origin_);
          if (std::exchange(self->connect_timed_out_, false)) {
            if (ec.value() == UV_ECANCELED) ec = uv_error(UV_ETIMEDOUT);  // not an error it had already
            self->stop_ = std::stop_source();  // that one is spent: the next address needs its own
          }
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

  /// The parser for this attempt's response, taken (a spare one if the client has one) and set up
  /// at its first byte: a request waiting for its response holds none (10,000 in flight: 4.3 MB less).
  ResponseParser& parser() {
    if (parser_) return *parser_;
    const ClientOptions& o = core_->options;
    parser_ = core_->spare_parsers.take();
    if (!parser_)
      parser_ = std::make_unique<ResponseParser>(
          ParserLimits{.max_header_bytes = o.max_header_bytes, .max_header_fields = o.max_header_fields});
    parser_->limit_body(req_.max_body_bytes.value_or(o.max_body_bytes), req_.max_body_bytes.value_or(0));
    parser_->expect_head(req_.method == "HEAD");  // a new parser, or a spare, is reset already
    parser_->decode_content(req_.decompress);
    if (sink_) parser_->stream_body_to(&streamed_->filtered_sink);
    return *parser_;
  }
  /// Reset first, so that a spare holds no body, decoder or head of the response it parsed.
  void give_back_parser() noexcept {
    if (!parser_) return;
    parser_->reset();
    core_->spare_parsers.give_back(std::move(parser_));
  }
  bool started() const noexcept { return parser_ && parser_->started(); }
  bool headers_complete() const noexcept { return parser_ && parser_->headers_complete(); }

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
    give_back_parser();  // an earlier attempt's: the response is parsed from its first byte on
    paused_ = false;
    if (streamed_) streamed_->stash.clear();
    if (sink_) {
      // Only the final response's body reaches the caller's sink: a redirect that is followed is not it.
      Streamed& st = streamed();
      if (!st.filtered_sink)
        st.filtered_sink = [this](std::string_view piece) {
          if (will_follow(parser_->response())) return;
          announce_head();
          // Cancelled from a callback, or the Loop destroyed there: stop parsing.
          if (finished_ || !*core_->loop_alive) return parser_->pause_body(true);
          BodyFlow flow(*this);
          (*sink_)(piece, flow);
        };
    }
    // Kept between requests: over TCP most heads go to the kernel at once (try_write) and the buffer is
    // reused without an allocation; over TLS (no try_write) the head always moves into the write.
    std::string& head = core_->head_buffer;
    head.clear();
    write_request(head, req_, core_->options.user_agent, has_source());
    conn_->stream.write_now(head);
    if (!head.empty()) {  // the rest is queued: it moves into the write (the next head allocates again)
      conn_->stream.write(std::move(head), [self = shared_from_this(), attempt](std::error_code ec) {
        // A write on a connection an earlier attempt dropped completes late, with UV_ECANCELED:
        // ignore it.
        if (ec && !self->finished_ && attempt == self->attempt_) self->io_error(ec);
      });
    }
    if (head.capacity() > ClientCore::kKeptHeadBuffer) std::string().swap(head);  // a body was sent with it
    read_on();
    if (has_source()) start_body();
  }

  // ---- a streamed request body (upload) -----------------------------------------------------------

  void start_body() {
    Streamed& st = *streamed_;
    st.uploaded = 0;
    // Until the body is sent, each write of it is timed (read_timeout) instead of the response's head.
    TimeoutList::leave(conn_->timeout);
    const auto expect = req_.headers.get("Expect");
    if (!expect || !iequals(*expect, "100-continue")) {
      upload_ = Upload::sending;
      return pull();
    }
    upload_ = Upload::waiting_continue;
    st.continue_timer.emplace(core_->loop.loop());
    st.continue_timer->start(core_->options.expect_continue_timeout, std::chrono::milliseconds(0),
                             [self = shared_from_this()] { self->go_on_with_body(); });
  }

  /// A 100 Continue came, or the wait for it ran out: send the body.
  void go_on_with_body() {
    if (finished_ || upload_ != Upload::waiting_continue || !conn_) return;
    stop_continue_timer();
    upload_ = Upload::sending;
    pull();
  }

  /// The producer's answer to one request for a piece (`pull`).
  struct UploadAnswer {
    std::shared_ptr<Exchange> self;
    unsigned attempt;
    void operator()(std::error_code ec, std::string piece) { self->send_piece(attempt, ec, std::move(piece)); }
    void dropped() noexcept { self->piece_dropped(attempt); }
  };

  // A failure below ends the request on a later turn (`fail_later`): the producer may be answering
  // inside `upload` itself (a pooled connection starts the body at once), or inside its own destructor.
  void pull() {
    pulled_ = true;  // from now on the request cannot be sent again
    const auto keep = shared_from_this();
    const unsigned attempt = attempt_;
    const Asked asked = ask_producer(*streamed_->source, UploadAnswer{keep, attempt}, streamed_->producing);
    // What it throws after giving its piece is only reported, as the server does.
    if (asked.dropped) return producer_failed(asked.threw);
    if (asked.threw && *core_->loop_alive) core_->loop.report(asked.threw);
  }

  bool sending(unsigned attempt) const noexcept {
    return !finished_ && attempt == attempt_ && upload_ == Upload::sending && conn_ && *core_->loop_alive;
  }

  void piece_dropped(unsigned attempt) noexcept {
    if (!sending(attempt) || streamed_->producing.note_drop()) return;
    producer_failed(nullptr);
  }

  void producer_failed(const std::exception_ptr& threw) noexcept {
    try {
      fail_later(make_error_code(errc::body_producer_failed), "the request body's producer " + producer_failure(threw));
    } catch (...) {  // out of memory for the reason: fail without it
      fail_later(make_error_code(errc::body_producer_failed), std::string());
    }
  }

  void send_piece(unsigned attempt, std::error_code ec, std::string piece) {
    if (!sending(attempt)) return;
    const bool last = piece.empty();
    if (ec) return fail_later(ec, "the request body's producer failed: " + ec.message());
    Streamed& st = *streamed_;
    st.uploaded += piece.size();
    if (st.upload_length && (st.uploaded > *st.upload_length || (last && st.uploaded != *st.upload_length))) {
      return fail_later(make_error_code(errc::invalid_argument),
                        "the request body's producer gave " + std::string(last ? "" : "at least ") +
                            std::to_string(st.uploaded) + " bytes against a Content-Length of " +
                            std::to_string(*st.upload_length));
    }
    std::string bytes;
    if (st.upload_length) {
      if (last) return body_sent();
      bytes = std::move(piece);
    } else if (last) {
      bytes = "0\r\n\r\n";
    } else {
      bytes = chunk(piece);
    }
    if (!headers_complete()) arm_upload_deadline();  // the server must take each piece in time
    conn_->stream.write(std::move(bytes), [self = shared_from_this(), attempt, last](std::error_code ec) {
      if (self->finished_ || attempt != self->attempt_ || !self->conn_) return;
      if (ec) return self->io_error(ec);
      if (last) return self->body_sent();
      if (!self->headers_complete()) TimeoutList::leave(self->conn_->timeout);  // back to the producer
      self->pull();
    });
  }

  /// Each piece of an upload must be taken within the read timeout, or, without one, the header timeout.
  void arm_upload_deadline() {
    if (core_->options.read_timeout.count() > 0)
      core_->read_timeouts.add(conn_->timeout);
    else if (core_->options.header_timeout.count() > 0)
      core_->header_timeouts.add(conn_->timeout);
  }

  /// The whole body is with the kernel: now the response's head is awaited.
  void body_sent() {
    upload_ = Upload::done;
    if (!headers_complete() && core_->options.header_timeout.count() > 0) core_->header_timeouts.add(conn_->timeout);
  }

  void read_on() {
    conn_->stream.read_start(
        [self = shared_from_this()](std::error_code ec, std::span<const char> chunk) { self->on_data(ec, chunk); });
  }

  /// The final response's head is in: hand it to the `open` caller, once.
  void announce_head() {
    if (!streamed_ || !streamed_->on_head || head_announced_ || !headers_complete() || will_follow(parser_->response()))
      return;
    head_announced_ = true;
    core_->loop.core().invoke(streamed_->on_head, std::as_const(parser_->response()));
  }

  void on_data(std::error_code ec, std::span<const char> chunk) {
    // This runs inside the connection's read callback, whose closure holds this exchange: closing the
    // connection below destroys that closure, so hold on to the exchange until this returns.
    const auto keep = shared_from_this();
    if (finished_) return;
    if (ec) return io_error(ec);
    if (paused_) {  // a read that crossed the pause
      streamed().stash.append(chunk.data(), chunk.size());
      return;
    }
    if (chunk.empty()) {
      if (!started()) return io_error(uv_error(UV_EOF));
      return after_feed(parser_->finish(), {}, 0, true);
    }
    process(std::string_view(chunk.data(), chunk.size()), true);
  }

  /// Parses `data` (a read, or what a pause left over) and acts on where the response stands.
  void process(std::string_view data, bool reading) {
    std::size_t consumed = data.size();
    in_feed_ = true;
    const ResponseParser::State state = parser().feed(data, consumed);
    in_feed_ = false;
    // The sink cancelled the request, or destroyed the client, or the Loop (then nothing goes on).
    if (finished_ || !conn_ || !*core_->loop_alive) return;
    if (state == ResponseParser::State::incomplete && !reading) read_on();  // the pause is over
    after_feed(state, data, consumed, false);
  }

  void after_feed(ResponseParser::State state, std::string_view data, std::size_t consumed, bool eof) {
    // A streamed body's sink cancelled the request (or destroyed the client, or the Loop).
    if (finished_ || !*core_->loop_alive) return;
    if (state != ResponseParser::State::failed) {
      announce_head();  // the head before whatever follows it (for a body-less response, its end)
      if (finished_ || !*core_->loop_alive) return;
    }
    if (upload_ == Upload::waiting_continue && state != ResponseParser::State::failed) {  // failed: not sent
      if (headers_complete()) {  // a final answer instead of 100 Continue: the body is not sent
        upload_ = Upload::skipped;
        stop_continue_timer();
      } else if (parser_->continued()) {
        go_on_with_body();
        if (finished_) return;
      }
    }
    switch (state) {
      case ResponseParser::State::paused:  // the sink paused the body: keep the rest, read no more
        streamed().stash.assign(data.substr(consumed));
        conn_->stream.read_stop();
        TimeoutList::leave(conn_->timeout);  // a slow consumer is not a stalled server
        return;
      case ResponseParser::State::incomplete:
        if (headers_complete()) {  // the body must keep coming: each piece within the read timeout
          if (core_->options.read_timeout.count() > 0)
            core_->read_timeouts.add(conn_->timeout);
          else
            TimeoutList::leave(conn_->timeout);
        }
        return;
      case ResponseParser::State::failed:
        drop_connection();
        return fail(parser_->error(), parser_->error_reason());
      case ResponseParser::State::complete:
        break;
    }
    // Complete. The connection goes back to the pool unless it cannot carry another response.
    // An upload cut short by an early response leaves the server expecting the rest: close.
    const bool reusable = parser_->keep_alive() && consumed == data.size() && !eof &&
                          (upload_ == Upload::none || upload_ == Upload::done);
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
    const bool stale = conn_ && conn_->reused && !started();
    drop_connection();
    if (stale && !retried_ && idempotent(req_.method) && !pulled_) {
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

  int max_redirects() const noexcept { return req_.max_redirects.value_or(core_->options.max_redirects); }

  /// True if `res` is a redirect this exchange follows (or fails on, past the limit).
  bool will_follow(const Response& res) const noexcept {
    return !has_source() && is_redirect(res.status) && max_redirects() > 0 && res.headers.contains("Location");
  }

  void respond() {
    Response& res = parser_->response();
    if (will_follow(res)) {
      auto location = res.headers.get("Location");
      {
        if (redirects_ >= max_redirects())
          return fail(make_error_code(errc::too_many_redirects),
                      "more than " + std::to_string(max_redirects()) + " redirects");
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
        // RFC 9110 15.4: a 303 is answered by a GET (a HEAD stays a HEAD: its caller wants no body), and
        // a 301 or 302 after a POST is too, as every user agent does.
        if ((res.status == 303 && req_.method != "HEAD") ||
            ((res.status == 301 || res.status == 302) && req_.method == "POST")) {
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
    give_back_parser();  // this exchange is held by whoever fed the parser (on_data, resume_body)
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
  static void connect_timeout(Exchange& x) {
    x.connect_timed_out_ = true;
    x.stop_.request_stop();  // the connect ends with UV_ECANCELED, reported as UV_ETIMEDOUT
  }
  static void header_timeout(Connection& c) {
    if (!c.user) return;
    const auto keep = c.user->shared_from_this();  // closing the connection drops its callbacks' references
    keep->time_out(keep->upload_ == Upload::sending && !keep->headers_complete()
                       ? "the server stopped taking the request body: a piece was not taken within the timeout"
                       : "no response headers within the header timeout");
  }
  static void read_timeout(Connection& c) {
    if (!c.user) return;
    const auto keep = c.user->shared_from_this();
    keep->time_out(keep->upload_ == Upload::sending && !keep->headers_complete()
                       ? "the server stopped taking the request body: a piece was not taken within the timeout"
                       : "the response body stalled: nothing arrived within the read timeout");
  }

 private:
  // ---- ending ------------------------------------------------------------------------------------

  void fail(std::error_code ec, std::string why) {
    if (!in_feed_) give_back_parser();
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
    take_paused_self();
    stop_.request_stop();
    drop_connection();
    remove_from_queue();
    if (timer_) timer_->stop();
    stop_continue_timer();
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
    const auto keep = take_paused_self();
    drop_connection();
    remove_from_queue();
    if (timer_) timer_->stop();
    stop_continue_timer();
    deliver(ec, std::move(res), std::move(e));
  }

  void deliver(std::error_code ec, Response&& res, std::exception_ptr e) {
    cancel_link_.reset();
    timer_.reset();
    if (streamed_) streamed_->continue_timer.reset();
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

  /// What only a streamed body, an upload or `open` uses, allocated for those exchanges alone: a
  /// plain request's exchange stays under 1 KB (malloc's per-thread cache serves it, and 10,000 in
  /// flight hold 2.2 MB less).
  struct Streamed {
    duet::detail::UniqueFunction<void(std::string_view)> filtered_sink;  // `sink_`, for the final response only
    HeadHook on_head;                                                    // `open`: the head goes to the opener
    std::string stash;                           // what a paused body left unparsed (at most one read)
    std::shared_ptr<Exchange> paused_self;       // while paused
    std::unique_ptr<BodySource> source;          // `upload`: the body's producer
    std::optional<std::uint64_t> upload_length;  // the length the request declares (else chunked)
    std::uint64_t uploaded = 0;                  // what is sent
    std::optional<Timer> continue_timer;         // the wait for 100 Continue
    Producing producing;                         // the producer is asked for a piece (`pull`)
  };
  Streamed& streamed() {
    if (!streamed_) streamed_ = std::make_unique<Streamed>();
    return *streamed_;
  }
  bool has_source() const noexcept { return streamed_ && streamed_->source; }
  std::shared_ptr<Exchange> take_paused_self() noexcept {
    return streamed_ ? std::move(streamed_->paused_self) : std::shared_ptr<Exchange>();
  }
  void stop_continue_timer() noexcept {
    if (streamed_ && streamed_->continue_timer) streamed_->continue_timer->stop();
  }

  std::shared_ptr<ClientCore> core_;
  Request req_;
  std::unique_ptr<Streamed> streamed_;
  std::unique_ptr<BodySink> sink_;  // only for a streamed body
  Completion done_;
  // `upload`: the body's producer, the length the request declares (else chunked), what is sent.
  enum class Upload { none, waiting_continue, sending, done, skipped };
  Upload upload_ = Upload::none;
  bool pulled_ = false;                     // the producer has been asked: the request cannot be sent again
  std::unique_ptr<ResponseParser> parser_;  // from the first byte of a response to its delivery
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
  bool paused_ = false;   // the sink paused the body
  bool in_feed_ = false;  // inside the parser (so inside the sink)
  bool head_announced_ = false;
  bool connect_timed_out_ = false;
  TimeoutList::Node connecting_;  // in the client's connect_timeouts while connecting
  Exchange* prev_active_ = nullptr;
  Exchange* next_active_ = nullptr;
};

/// What stands between an `open`ed response's body and its reader: at most one piece, taken from the
/// sink, which pauses the body until the piece is read. Shared by the sink (inside the exchange), the
/// exchange's completion and the ResponseStream.
class BodyQueue : public std::enable_shared_from_this<BodyQueue> {
 public:
  using Opened = duet::detail::UniqueFunction<void(std::error_code, ResponseStream, std::exception_ptr)>;
  BodyQueue(duet::detail::LoopRef loop, Opened opened)
      : loop_(loop), loop_alive_(loop.core().alive()), opened_(std::move(opened)) {}

  std::weak_ptr<Exchange> exchange;

  /// The sink: keep the piece, pause the body, and hand the piece to a waiting reader.
  void on_piece(std::string_view piece, BodyFlow& flow) {
    piece_.assign(piece.data(), piece.size());
    has_piece_ = true;
    resume_ = flow.pause();
    if (reader_) hand_over();
  }

  /// The exchange has the head: the stream goes to whoever opened it.
  void on_head(const Response& head) {
    ResponseStream s;
    s.queue_ = shared_from_this();
    s.head_ = head;
    s.head_.body.clear();
    auto opened = std::move(opened_);
    loop_.core().invoke(opened, std::error_code(), std::move(s), nullptr);
  }

  /// The exchange ended: the body is complete, or failed (maybe before any head came).
  void on_end(std::error_code ec, Response&& res, std::exception_ptr e) {
    ended_ = true;
    error_ = ec;
    failure_ = std::move(e);
    if (opened_) {  // no head was announced: the open itself failed
      ResponseStream s;
      s.head_ = std::move(res);
      auto opened = std::move(opened_);
      return loop_.core().invoke(opened, ec, std::move(s), failure_);
    }
    if (reader_ && !has_piece_) end_reader();
  }

  void read(ResponseStream::PieceDone done, std::stop_token token) {
    if (!*loop_alive_) throw std::system_error(make_error_code(errc::loop_closed), "read from a ResponseStream");
    if (reader_) {
      const auto ec = make_error_code(errc::invalid_argument);
      return done(ec, std::string(), std::make_exception_ptr(std::system_error(ec, "one read at a time")));
    }
    reader_ = std::move(done);
    if (token.stop_requested()) return cancel_read();  // as a stop while waiting, piece at hand or not
    if (has_piece_) return hand_over();
    if (ended_) return end_reader();
    stop_.watch(&loop_.core(), std::move(token), StopFn{this});
  }

  /// The exchange went without ending: its Loop was destroyed. A reader still waiting is never called;
  /// it is destroyed here, with what it owns (often the stream, and so this queue).
  void exchange_gone() noexcept {
    if (ended_ || *loop_alive_) return;  // (with the Loop alive, an exchange always ends first)
    ended_ = true;
    error_ = make_error_code(errc::loop_closed);
    const auto keep = shared_from_this();
    stop_.reset();
    auto reader = std::move(reader_);  // destroyed here, uncalled: its destructor may come back
  }

  /// The stream is dropped (or its read cancelled) before the end: cancel the request.
  void abandon() noexcept {
    if (ended_) return;
    if (auto ex = exchange.lock()) ex->cancel();
  }

  bool end_delivered() const noexcept { return end_delivered_; }

 private:
  struct StopFn {
    BodyQueue* self;
    void operator()() const noexcept { self->cancel_read(); }
  };

  void hand_over() {
    stop_.reset();
    auto reader = std::move(reader_);
    std::string piece = std::move(piece_);
    has_piece_ = false;
    Resume resume = std::move(resume_);
    loop_.core().invoke(reader, std::error_code(), std::move(piece), nullptr);  // may read again, or drop the stream
    resume();  // the body goes on: the next piece waits here for the next read
  }

  void end_reader() {
    stop_.reset();
    end_delivered_ = true;
    auto reader = std::move(reader_);
    loop_.core().invoke(reader, error_, std::string(), error_ ? failure_ : nullptr);
  }

  // From a stop callback: never call back inside it.
  void cancel_read() noexcept {
    abandon();
    auto reader = std::move(reader_);
    if (!reader || !*loop_alive_) return;
    try {
      loop_.post([reader = std::move(reader)]() mutable {
        reader(uv_error(UV_ECANCELED), std::string(), std::make_exception_ptr(Cancelled()));
      });
    } catch (...) {
      loop_.report(std::current_exception());
    }
  }

  duet::detail::LoopRef loop_;  // (the core: a reader may destroy a host's Loop)
  std::shared_ptr<bool> loop_alive_;
  Opened opened_;
  ResponseStream::PieceDone reader_;
  std::string piece_;
  Resume resume_;
  std::error_code error_;
  std::exception_ptr failure_;
  duet::detail::OnLoopStop<StopFn> stop_;
  bool has_piece_ = false;
  bool ended_ = false;
  bool end_delivered_ = false;
};

/// The sentence a failed step carries (a RequestError's `what()`), or the code's message.
std::string reason_of(std::error_code ec, const std::exception_ptr& e) {
  if (e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      return x.what();
    } catch (...) {
    }
  }
  return ec.message();
}

Response failure(std::string why) {
  Response res;
  res.reason = std::move(why);
  return res;
}

/// `Client::download_to_file`: the response body, read from a ResponseStream, written in order to a
/// temporary file beside the target through the thread pool (one write in flight; the pieces read
/// meanwhile are gathered into the next write, up to 256 KiB, then reading waits), then fsynced,
/// closed and renamed over it. Any
/// failure stops the request, waits for the write in flight, and removes the temporary file.
class Download : public std::enable_shared_from_this<Download> {
 public:
  Download(std::shared_ptr<ClientCore> core, std::string path, std::size_t error_body_limit, Completion done,
           std::stop_token token)
      : core_(std::move(core)),
        path_(std::move(path)),
        error_body_limit_(error_body_limit),
        done_(std::move(done)),
        token_(std::move(token)) {}
  ~Download() {
    if (created_) fs::detail::unlink_now(temp_);  // the loop went away mid-way: leave no temporary file behind
  }

  void opened(std::error_code ec, ResponseStream s, std::exception_ptr e) {
    if (ec) return deliver(ec, std::move(s.response()), std::move(e));
    stream_ = std::move(s);
    head_ = stream_.response();
    if (head_.status < 200 || head_.status > 299) return collect();  // not the file: keep its body, save nothing
    temp_ = fs::detail::temporary_name_for(path_);
    created_ = true;  // from now on it may exist: an open cancelled while it runs still makes the file
    fs::open(core_->loop.loop(), temp_, UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL, 0666,
             with_cancellation(token_, [self = shared_from_this()](std::error_code ec, fs::File f) {
               if (ec) return self->fail(ec, "cannot create a file beside " + self->path_ + ": " + ec.message());
               self->file_ = std::move(f);
               self->read_next();
             }));
  }

 private:
  // ---- a 2xx body: to the file ---------------------------------------------------------------------

  void read_next() {
    reading_ = true;
    stream_.read(with_cancellation(
        token_, [self = shared_from_this()](std::error_code ec, std::string piece, std::exception_ptr e) {
          self->on_piece(ec, std::move(piece), e);
        }));
  }

  void on_piece(std::error_code ec, std::string piece, const std::exception_ptr& e) {
    reading_ = false;
    if (failed_) return;
    if (ec) return fail(ec, reason_of(ec, e));
    if (piece.empty()) {
      ended_ = true;
      if (!writing_) finish();
      return;
    }
    if (writing_) {  // the disk is behind: gather the pieces into the next write, up to a batch
      pending_ += piece;
      if (pending_.size() < kBatch) read_next();
      return;
    }
    write(std::move(piece));
    read_next();
  }

  void write(std::string bytes) {
    writing_ = true;
    const std::size_t n = bytes.size();
    fs::write(core_->loop.loop(), file_, std::move(bytes), static_cast<std::int64_t>(offset_),
              with_cancellation(token_, [self = shared_from_this(), n](std::error_code ec, std::size_t written) {
                self->written(ec, n, written);
              }));
  }

  void written(std::error_code ec, std::size_t n, std::size_t written) {
    writing_ = false;
    if (failed_) return cleanup();
    if (!ec && written != n) ec = uv_error(UV_ENOSPC);  // a regular file is written short only when it cannot grow
    if (ec) return fail(ec, "cannot write " + path_ + ": " + ec.message());
    offset_ += n;
    if (!pending_.empty()) {
      write(std::exchange(pending_, std::string()));
      if (!reading_ && !ended_) read_next();
      return;
    }
    if (ended_) finish();
  }

  void finish() {
    auto self = shared_from_this();
    fs::fsync(core_->loop.loop(), file_, with_cancellation(token_, [self](std::error_code ec) {
                if (ec) return self->fail(ec, "cannot write " + self->path_ + ": " + ec.message());
                fs::close(self->core_->loop.loop(), std::move(self->file_),
                          with_cancellation(self->token_, [self](std::error_code ec) {
                            if (ec) return self->fail(ec, "cannot write " + self->path_ + ": " + ec.message());
                            fs::rename(self->core_->loop.loop(), self->temp_, self->path_,
                                       with_cancellation(self->token_, [self](std::error_code ec) {
                                         if (ec)
                                           return self->fail(ec, "cannot rename the download to " + self->path_ + ": " +
                                                                     ec.message());
                                         self->created_ = false;
                                         self->deliver(std::error_code(), std::move(self->head_), nullptr);
                                       }));
                          }));
              }));
  }

  // ---- any other status: its body, buffered ----------------------------------------------------------

  void collect() {
    stream_.read(with_cancellation(
        token_, [self = shared_from_this()](std::error_code ec, std::string piece, std::exception_ptr e) {
          if (ec) return self->deliver(ec, failure(reason_of(ec, e)), e);
          if (piece.empty()) return self->deliver(std::error_code(), std::move(self->head_), nullptr);
          if (self->head_.body.size() + piece.size() > self->error_body_limit_) {
            self->stream_ = ResponseStream();
            return self->fail(make_error_code(errc::body_too_large), "body larger than the limit");
          }
          self->head_.body += piece;
          self->collect();
        }));
  }

  // ---- ending ----------------------------------------------------------------------------------------

  void fail(std::error_code ec, std::string why) {
    if (failed_) return;
    failed_ = true;
    error_ = ec;
    why_ = ec.value() == UV_ECANCELED ? std::string("cancelled") : std::move(why);
    stream_ = ResponseStream();  // stops the request (a read in flight ends with UV_ECANCELED, ignored)
    if (!writing_) cleanup();    // else once the write in flight is done with the file
  }

  void cleanup() {
    file_ = fs::File();  // closed here: nothing uses it any more
    if (!created_) return deliver(error_, failure(why_), nullptr);
    fs::unlink(core_->loop.loop(), temp_, [self = shared_from_this()](std::error_code) {
      self->created_ = false;
      self->deliver(self->error_, failure(self->why_), nullptr);
    });
  }

  void deliver(std::error_code ec, Response&& res, std::exception_ptr e) {
    if (!done_ || !*core_->loop_alive) return;
    if (ec && !e) e = std::make_exception_ptr(RequestError(ec, res.reason));
    if (ec.value() == UV_ECANCELED) e = std::make_exception_ptr(Cancelled());
    auto done = std::move(done_);
    core_->loop.core().invoke(done, ec, std::move(res), std::move(e));
  }

  std::shared_ptr<ClientCore> core_;
  std::string path_;
  std::size_t error_body_limit_;
  Completion done_;
  std::stop_token token_;
  ResponseStream stream_;
  Response head_;
  std::string temp_;
  fs::File file_;
  std::uint64_t offset_ = 0;
  std::string pending_;  // pieces read while the previous write is in flight (at most a batch)
  static constexpr std::size_t kBatch = 256 * 1024;
  std::error_code error_;
  std::string why_;
  bool created_ = false;  // the temporary file may exist
  bool reading_ = false;
  bool writing_ = false;
  bool ended_ = false;
  bool failed_ = false;
};

void ClientCore::on_connect_timeout(ClientCore&, void* exchange) {
  Exchange::connect_timeout(*static_cast<Exchange*>(exchange));
}

void ClientCore::on_header_timeout(ClientCore&, void* connection) {
  Exchange::header_timeout(*static_cast<Connection*>(connection));
}

void ClientCore::on_read_timeout(ClientCore&, void* connection) {
  Exchange::read_timeout(*static_cast<Connection*>(connection));
}

void ClientCore::on_idle_timeout(ClientCore& core, void* connection) {
  core.close_connection(static_cast<Connection*>(connection));
}

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
  if (!o.waiting.empty() && !closed && *loop_alive) {  // (no new work once the Loop is gone)
    auto next = std::move(o.waiting.front());
    o.waiting.pop_front();
    ++o.slots;
    next->granted(nullptr);
  }
}

std::size_t ClientCore::unseen_requests() const noexcept {
  std::size_t n = 0;
  for (const auto& [key, origin] : origins)
    for (const auto& ex : origin.waiting) n += ex->unseen_by_loop(true) ? 1 : 0;
  for (const Exchange* ex = active; ex; ex = ex->next_active()) n += ex->unseen_by_loop(false) ? 1 : 0;
  return n;
}

void ClientCore::loop_gone() noexcept {
  for (Exchange* ex = active; ex; ex = ex->next_active()) ex->stop_watching();
}

void ClientCore::make_idle(Connection* c) {
  if (!*loop_alive) return close_connection(c);  // a callback destroyed the Loop: nothing is pooled
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
    std::vector<std::shared_ptr<detail::Exchange>> paused;
    for (detail::Exchange* ex = core_->active; ex; ex = ex->next_active())
      if (auto alive = ex->weak_from_this().lock()) paused.push_back(std::move(alive));
    for (auto& ex : paused) ex->release_pause();
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

namespace {
/// An opened exchange's completion: hands the end to the queue. Destroyed uncalled (the Loop went
/// first), it tells the queue, so that a reader still waiting is not kept alive by its own stream.
struct OpenedEnd {
  std::shared_ptr<detail::BodyQueue> queue;
  explicit OpenedEnd(std::shared_ptr<detail::BodyQueue> q) noexcept : queue(std::move(q)) {}
  OpenedEnd(OpenedEnd&&) noexcept = default;
  OpenedEnd& operator=(OpenedEnd&&) = delete;
  ~OpenedEnd() {
    if (queue) queue->exchange_gone();
  }
  void operator()(std::error_code ec, Response&& res, std::exception_ptr e) {
    const auto q = std::move(queue);
    q->on_end(ec, std::move(res), std::move(e));
  }
};
}  // namespace

void Client::start_open(Request req, Opened done, std::stop_token token) {
  auto queue = std::make_shared<detail::BodyQueue>(core_->loop, std::move(done));
  auto ex = std::make_shared<detail::Exchange>(
      core_, std::move(req), [queue](std::string_view piece, BodyFlow& flow) { queue->on_piece(piece, flow); },
      OpenedEnd(queue));
  ex->set_head_hook([q = queue.get()](const Response& head) { q->on_head(head); });
  queue->exchange = ex;
  ex->register_active();
  ex->begin(std::move(token));
}

void Client::start_upload(Request req, BodySource body, detail::Completion done, std::stop_token token) {
  auto ex = std::make_shared<detail::Exchange>(core_, std::move(req), nullptr, std::move(done));
  ex->set_source(std::move(body));
  ex->register_active();
  ex->begin(std::move(token));
}

void Client::start_download(Request req, std::string path, detail::Completion done, std::stop_token token) {
  const std::size_t limit = req.max_body_bytes.value_or(core_->options.max_body_bytes);
  auto d = std::make_shared<detail::Download>(core_, std::move(path), limit, std::move(done), token);
  start_open(
      std::move(req),
      [d](std::error_code ec, ResponseStream s, std::exception_ptr e) { d->opened(ec, std::move(s), std::move(e)); },
      std::move(token));
}

// ---- Resume, BodyFlow, ResponseStream -----------------------------------------------------------------

Resume& Resume::operator=(Resume&& other) noexcept {
  if (this != &other) {
    (*this)();
    exchange_ = std::move(other.exchange_);
  }
  return *this;
}

void Resume::operator()() noexcept {
  if (auto ex = std::exchange(exchange_, {}).lock()) ex->resume_body();
}

Resume BodyFlow::pause() { return exchange_.pause_body(); }

std::uint64_t BodyFlow::received() const noexcept { return exchange_.body_received(); }

ResponseStream& ResponseStream::operator=(ResponseStream&& other) noexcept {
  if (this != &other) {
    if (queue_) queue_->abandon();
    queue_ = std::move(other.queue_);
    head_ = std::move(other.head_);
  }
  return *this;
}

ResponseStream::~ResponseStream() {
  if (queue_) queue_->abandon();
}

bool ResponseStream::ended() const noexcept { return !queue_ || queue_->end_delivered(); }

void ResponseStream::read_piece(PieceDone done, std::stop_token token) {
  if (!queue_) {
    const auto ec = make_error_code(errc::invalid_argument);
    return done(ec, std::string(), std::make_exception_ptr(std::system_error(ec, "read from an empty ResponseStream")));
  }
  queue_->read(std::move(done), std::move(token));
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
