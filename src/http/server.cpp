#include "duet/http/server.hpp"

#include <llhttp.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "duet/http/detail/framing_check.hpp"
#include "duet/http/detail/head_collector.hpp"
#include "duet/http/detail/request_writer.hpp"
#include "duet/spawn.hpp"
#include "duet/tcp.hpp"
#include "duet/timer.hpp"
#include "loop_gone_watch.hpp"
#include "owed_piece.hpp"
#include "spares.hpp"
#include "transport.hpp"

namespace duet::http {
namespace detail {
namespace {

/// The interim answer to `Expect: 100-continue`.
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

/// RFC 9110's reason phrases (and 418, RFC 2324; 428, 429, 431, 511, RFC 6585).
const char* reason_phrase(int status) {
  static constexpr std::pair<int, const char*> kReasons[] = {{100, "Continue"},
                                                             {101, "Switching Protocols"},
                                                             {200, "OK"},
                                                             {201, "Created"},
                                                             {202, "Accepted"},
                                                             {203, "Non-Authoritative Information"},
                                                             {204, "No Content"},
                                                             {205, "Reset Content"},
                                                             {206, "Partial Content"},
                                                             {300, "Multiple Choices"},
                                                             {301, "Moved Permanently"},
                                                             {302, "Found"},
                                                             {303, "See Other"},
                                                             {304, "Not Modified"},
                                                             {305, "Use Proxy"},
                                                             {307, "Temporary Redirect"},
                                                             {308, "Permanent Redirect"},
                                                             {400, "Bad Request"},
                                                             {401, "Unauthorized"},
                                                             {402, "Payment Required"},
                                                             {403, "Forbidden"},
                                                             {404, "Not Found"},
                                                             {405, "Method Not Allowed"},
                                                             {406, "Not Acceptable"},
                                                             {407, "Proxy Authentication Required"},
                                                             {408, "Request Timeout"},
                                                             {409, "Conflict"},
                                                             {410, "Gone"},
                                                             {411, "Length Required"},
                                                             {412, "Precondition Failed"},
                                                             {413, "Content Too Large"},
                                                             {414, "URI Too Long"},
                                                             {415, "Unsupported Media Type"},
                                                             {416, "Range Not Satisfiable"},
                                                             {417, "Expectation Failed"},
                                                             {418, "I'm a Teapot"},
                                                             {421, "Misdirected Request"},
                                                             {422, "Unprocessable Content"},
                                                             {426, "Upgrade Required"},
                                                             {428, "Precondition Required"},
                                                             {429, "Too Many Requests"},
                                                             {431, "Request Header Fields Too Large"},
                                                             {500, "Internal Server Error"},
                                                             {501, "Not Implemented"},
                                                             {502, "Bad Gateway"},
                                                             {503, "Service Unavailable"},
                                                             {504, "Gateway Timeout"},
                                                             {505, "HTTP Version Not Supported"},
                                                             {511, "Network Authentication Required"}};
  for (const auto& [code, reason] : kReasons)
    if (code == status) return reason;
  return "Unknown";
}

/// Splits `req.target` into `path` and `query`: 0, or the status that refuses the target. The
/// origin-form (`/a?b`) as it is; the absolute-form (`http://host/a?b`), which a server must accept
/// (RFC 9112 3.2.2), by the same parts, its authority replacing Host (the target names the host,
/// whatever Host says); the asterisk-form (`*`) for OPTIONS only.
int split_target(ServerRequest& req, bool options) {
  const std::string_view target = req.target;
  if (target == "*") {
    if (!options) return 400;
    req.path = "*";
    return 0;
  }
  std::string_view rest = target;
  if (!target.starts_with('/')) {
    std::error_code ec;
    const std::optional<Url> url = Url::parse(target, ec);  // http or https, a host, no credentials
    if (!url) return 400;
    const std::size_t end = target.find_first_of("/?", target.find("://") + 3);
    rest = end == std::string_view::npos ? std::string_view() : target.substr(end);
    req.headers.set("Host", url->authority());
  }
  const std::size_t q = rest.find('?');
  req.path = rest.substr(0, q);
  if (req.path.empty()) req.path = "/";
  if (q != std::string_view::npos) req.query = rest.substr(q + 1);
  return 0;
}

/// Why `res` cannot be sent as a final response, or null if it can.
const char* unsendable(const Response& res) noexcept {
  if (res.status < 200 || res.status > 599) return "the handler's status is not a final status (200-599)";
  if (!is_field_value(res.reason)) return "the handler's reason phrase holds a control character";
  for (const auto& [name, value] : res.headers) {
    if (!is_token(name)) return "the handler's header field name is not a token";
    if (!is_field_value(value)) return "the handler's header field value holds a CR, LF or other control character";
  }
  return nullptr;
}

/// The status line and the caller's fields of `res` (the framing fields are the server's).
void append_head(std::string& out, const Response& res) {
  out.append("HTTP/1.1 ").append(std::to_string(res.status)).append(" ");
  out.append(res.reason.empty() ? reason_phrase(res.status) : res.reason).append("\r\n");
  for (const auto& [name, value] : res.headers) {
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") || iequals(name, "Connection")) continue;
    out.append(name).append(": ").append(value).append("\r\n");
  }
}

/// The bytes of `res` (which `unsendable` accepted) on the wire.
std::string serialize(const Response& res, bool head, bool close) {
  // 204 and 304 have neither body nor length (RFC 9110 §8.6, §15.4.5).
  const bool bodiless = res.status == 204 || res.status == 304;
  std::string out;
  out.reserve(128 + (head || bodiless ? 0 : res.body.size()));
  append_head(out, res);
  if (!bodiless) out.append("Content-Length: ").append(std::to_string(res.body.size())).append("\r\n");
  if (close) out.append("Connection: close\r\n");
  out.append("\r\n");
  if (!head && !bodiless) out.append(res.body);
  return out;
}

/// The head of a streamed response: its declared length, or chunked, or (neither: HTTP/1.0) no
/// framing field, the body then ending with the connection.
std::string serialize_streamed_head(const Response& res, bool close, std::optional<std::uint64_t> length,
                                    bool chunked) {
  std::string out;
  append_head(out, res);
  if (res.status != 204 && res.status != 304) {
    if (length)
      out.append("Content-Length: ").append(std::to_string(*length)).append("\r\n");
    else if (chunked)
      out.append("Transfer-Encoding: chunked\r\n");
  }
  if (close) out.append("Connection: close\r\n");
  return out.append("\r\n");
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
class ServerCore;

/// The deadlines of a server's connections, on one timer: a connection with a deadline in force is in
/// a binary heap by its earliest one, and the timer runs for the heap's top. A connection costs three
/// words here instead of a timer handle of its own (bench/idle_connections.py); a change of deadline
/// is O(log connections), with no allocation once the heap's array has grown.
class DeadlineHeap {
 public:
  struct Node {
    explicit Node(ServerConnection* c) noexcept : owner(c) {}
    ServerConnection* owner;
    std::uint64_t due = 0;  // loop time (ms); 0: not in the heap
    std::size_t index = 0;  // its place in the heap, while in it
  };

  DeadlineHeap(ServerCore& core, duet::detail::LoopRef loop)
      : core_(core), loop_(loop), timer_(std::in_place, loop.loop()) {}
  DeadlineHeap(const DeadlineHeap&) = delete;
  DeadlineHeap& operator=(const DeadlineHeap&) = delete;

  /// `n` is due at `due` (loop time); 0 takes it out of the heap. Allocates nothing given `reserve`.
  void set(Node& n, std::uint64_t due);
  /// Takes `n` out of the heap, if it is in it.
  void remove(Node& n) noexcept;
  /// Room for `connections` nodes, so that `set` allocates nothing (and so cannot fail) afterwards.
  void reserve(std::size_t connections) {
    if (heap_.capacity() < connections) heap_.reserve(std::max(connections, 2 * heap_.capacity()));
  }
  /// The server is closed: its timer goes (a closed Server holds no libuv handle) and is not armed again.
  void close() noexcept {
    closed_ = true;
    timer_.reset();
  }

 private:
  void fire();  // after ServerConnection
  void arm();
  void place(std::size_t i, Node* n) noexcept {
    heap_[i] = n;
    n->index = i;
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;

  ServerCore& core_;
  duet::detail::LoopRef loop_;
  std::optional<Timer> timer_;  // until the server closes
  std::vector<Node*> heap_;
  std::uint64_t armed_ = 0;  // what the timer runs for; 0: stopped
  bool closed_ = false;
};

/// What parsing one request needs, from its first byte to its dispatch: taken from the server's
/// spares when a connection starts reading a request, given back when the connection goes idle.
struct RequestParse {
  explicit RequestParse(const ServerOptions& o) : head(o.max_header_bytes, o.max_header_fields) {}
  llhttp_t parser{};
  ServerRequest request;
  HeadCollector head;
  // RFC 9112 §5.2: a server may refuse obs-fold, and does; §3: a request line is checked to the letter.
  FramingCheck framing{FramingCheck::Folding::refused, FramingCheck::StartLine::request};
  std::size_t body_bytes = 0;
  int error_status = 0;
  const char* error_reason = nullptr;
};

class ServerCore : public std::enable_shared_from_this<ServerCore> {
 public:
  ServerCore(Loop& l, const Endpoint& at, Handler h, ServerOptions o)
      : loop(l),
        loop_alive(l.core().alive()),
        listener(l, at, o.listen_backlog, o.reuse_port),
        handler(std::move(h)),
        options(std::move(o)),
        deadlines(*this, l) {
    if (options.tls) tls = TlsContext::server(*options.tls);
    // When the Loop goes, a streamed body's reader still waiting is destroyed uncalled, and the stop
    // token it was watched with is no longer watched.
    LoopGoneWatch::make(l.core(), loop_gone_watch, this);
  }
  /// Once the connections are shut, no reader waits: the watch goes.
  ~ServerCore() { LoopGoneWatch::drop(loop_gone_watch); }
  ServerCore(const ServerCore&) = delete;
  ServerCore& operator=(const ServerCore&) = delete;

  void loop_gone() noexcept;

  /// A parse state for a connection that starts reading (a spare one if there is one).
  std::unique_ptr<RequestParse> take_parse() {
    if (auto p = spare_parses.take()) return p;
    return std::make_unique<RequestParse>(options);
  }
  /// An idle connection's parse state, kept for the next one that reads (up to a few).
  void give_back(std::unique_ptr<RequestParse> p) noexcept { spare_parses.give_back(std::move(p)); }

  void accept_next();
  void remove(ServerConnection* c);
  void serve(TcpStream stream);
  void serve(Transport transport, Endpoint peer);

  duet::detail::LoopRef loop;        // (the core: a handler may destroy a host's Loop)
  std::shared_ptr<bool> loop_alive;  // false from the start of ~Loop: nothing is parsed, timed or reported then
  TcpListener listener;
  Handler handler;
  ServerOptions options;
  std::vector<std::shared_ptr<ServerConnection>> connections;  // each knows its index (`core_index`)
  DeadlineHeap deadlines;
  Spares<RequestParse> spare_parses;
  std::optional<TlsContext> tls;     // https: each connection's handshake comes first
  std::size_t handshakes = 0;        // in progress; they count against max_connections
  std::stop_source stop_handshakes;  // the server closing ends them
  bool closed = false;
  LoopGoneWatch* loop_gone_watch = nullptr;  // until the Loop is destroyed
};

/// What stands between a streamed request body and its reader: at most one piece. The connection
/// stops parsing after each piece and goes on when the reader has taken it. Pieces go to readers in a
/// loop (`pump`), not by recursion: a reader that reads again from its callback adds no stack.
class RequestBodyQueue : public std::enable_shared_from_this<RequestBodyQueue> {
 public:
  using Reader = duet::detail::UniqueFunction<void(std::error_code, std::string)>;
  explicit RequestBodyQueue(duet::detail::LoopRef loop) : loop_(loop), loop_alive_(loop.core().alive()) {}

  std::weak_ptr<ServerConnection> conn;

  // From the connection.
  void add(const char* at, std::size_t n) { piece_.append(at, n); }
  void piece_ready() {
    has_piece_ = true;
    pump();
  }
  void end(std::error_code ec = {}) {
    if (ended_) return;
    ended_ = true;
    error_ = ec;
    pump();
  }
  bool ended() const noexcept { return ended_; }
  bool end_delivered() const noexcept { return end_delivered_; }

  /// The Loop is being destroyed: a reader still waiting is never called, nor its stop watched. It is
  /// destroyed, so that what it owns (often the RequestBody that holds this queue) is freed.
  void loop_gone() noexcept;

  // From the RequestBody.
  void read(Reader cb, std::stop_token token);
  void abandon() noexcept;

 private:
  struct StopFn {
    RequestBodyQueue* self;
    void operator()() const noexcept { self->cancel_read(); }
  };
  void pump();
  void cancel_read() noexcept;

  duet::detail::LoopRef loop_;        // (the core: a reader may destroy a host's Loop)
  std::shared_ptr<bool> loop_alive_;  // false once the Loop is destroyed: then nothing can be read
  std::string piece_;
  Reader reader_;
  std::error_code error_;
  duet::detail::OnLoopStop<StopFn> stop_;
  bool has_piece_ = false;
  bool ended_ = false;
  bool end_delivered_ = false;
  bool pumping_ = false;
  bool wanted_ = false;  // read at least once
};

/// One client connection: parses requests, dispatches them, and writes the responses back in order.
///
/// Each state has a deadline and a bound (see server.hpp): the connection keeps up to five deadlines
/// (the head's, the whole request's, the response being written's, the idle connection's, and the
/// lingering close's: `close_written`) and sits
/// in the server's DeadlineHeap at the earliest. Parsing stops after each request (llhttp is paused
/// in on_message_complete), so that the bytes of that request are checked by the FramingCheck before
/// it is dispatched, and so that a connection whose responses are backed up stops reading: the
/// unparsed rest of the last read (at most one read buffer) waits in `pending_input_`. An idle
/// connection holds its socket, a few words of state, and nothing else: its parse state and buffers
/// go back when it goes idle (897 bytes a connection in all, bench/idle_connections.py).
class ServerConnection : public std::enable_shared_from_this<ServerConnection> {
 public:
  ServerConnection(std::shared_ptr<ServerCore> core, Transport stream, Endpoint peer)
      : core_(std::move(core)), stream_(std::move(stream)), peer_(peer) {}
  ServerConnection(const ServerConnection&) = delete;
  ServerConnection& operator=(const ServerConnection&) = delete;
  ~ServerConnection() { core_->deadlines.remove(deadline_); }

  std::size_t core_index = 0;  // its place in `core_->connections`

  void start() {
    head_due_ = due_in(core_->options.header_timeout);  // a new connection must start a request promptly
    read();
    settle();
  }

  void shut() noexcept {
    if (closed_) return;
    closed_ = true;
    core_->deadlines.remove(deadline_);
    end_body_stream(uv_error(UV_ECONNABORTED));
    stream_.close();
    core_->remove(this);  // may free this: the caller holds a reference
  }

  /// A Reply's answer (or its 500, if dropped) for the request numbered `seq`.
  void answer(std::uint64_t seq, Response res) {
    Slot* awaiting = awaited(seq);
    if (!awaiting || awaiting->bytes) return;  // (replied twice: the first one stands)
    Slot& s = *awaiting;
    close_if_body_unread(seq, s);
    if (seq == streamed_seq_ && continue_owed_) answered_unread();
    if (const char* why = unsendable(res)) {
      report(std::make_exception_ptr(std::invalid_argument(std::string("http::Server: ") + why)));
      res = plain(500, "internal error\n");
    }
    s.bytes = serialize(res, s.head, s.close);
    flush();
  }

  /// `Reply::stream`: the head now, the body from `body` piece by piece once the response's turn comes.
  void answer_stream(std::uint64_t seq, Response res, BodySource body) {
    Slot* awaiting = awaited(seq);
    if (!awaiting || awaiting->bytes) return;
    Slot& s = *awaiting;
    close_if_body_unread(seq, s);
    std::optional<std::uint64_t> length;
    const char* why = unsendable(res);
    if (!why && res.headers.contains("Content-Length") && !(length = declared_length(res.headers)))
      why = "a streamed response's Content-Length is not one decimal number";
    if (seq == streamed_seq_ && continue_owed_) {
      if (why)
        answered_unread();
      else
        decide_continue_later();
    }
    if (why) {
      report(std::make_exception_ptr(std::invalid_argument(std::string("http::Server: ") + why)));
      s.bytes = serialize(plain(500, "internal error\n"), s.head, s.close);
      return flush();
    }
    const bool chunked = !length && s.minor >= 1;
    if (!length && !chunked) {  // HTTP/1.0: the body ends with the connection, the last thing on it
      s.close = true;
      close_after_body_ = true;
    }
    s.bytes = serialize_streamed_head(res, s.close, length, chunked);
    if (!s.head && res.status != 204 && res.status != 304) {
      s.source = std::make_shared<BodySource>(std::move(body));
      s.length = length;
      s.chunked = chunked;
    }
    flush();
  }

  /// A Reply for request `seq` was destroyed unanswered: a 500 and a report, unless nobody is waiting
  /// for the answer any more (the connection closed, or the Server or the Loop went away).
  void dropped(std::uint64_t seq) noexcept {
    if (!awaited(seq)) return;
    or_close([&] {
      report(std::make_exception_ptr(std::logic_error("http::Server: a handler dropped its Reply without answering")));
      answer(seq, plain(500, "internal error\n"));
    });
  }

  /// Runs a Reply's answer. If it throws (out of memory), the answer is lost and no deadline runs
  /// while a handler owes one: the connection closes, and the error is reported, rather than leave
  /// the client waiting for good. The caller holds a reference (`shut` may free this).
  template <class Fn>
  void or_close(Fn&& fn) noexcept {
    try {
      fn();
    } catch (...) {
      report(std::current_exception());
      shut();
    }
  }

  /// The handler's reader took the last piece: parse on.
  void resume_body() {
    if (!body_paused_ || closed_ || failed_ || !parse_ || !*core_->loop_alive) return;
    if (parsing_) return;  // (pieces are handed over only between parses)
    body_paused_ = false;
    llhttp_resume(&parse_->parser);
    if (core_->options.request_timeout.count() > 0) request_due_ = due_in(core_->options.request_timeout);
    std::string input = std::move(pending_input_);
    pending_input_.clear();
    const std::size_t used = parse(input.data(), input.size());
    if (!closed_ && !failed_ && !stop_parsing_) {
      if (used < input.size()) {
        pending_input_ = input.substr(used);
        if (!body_paused_) paused_ = true;  // backed up on responses
      } else if (!reading_done_ && !body_paused_ && !closed_after_write_) {
        read();
      }
    }
    if (body_paused_ && body_) body_->piece_ready();
    settle();
  }

  /// The handler dropped the body before its end: the rest is not read; the connection closes after
  /// the response.
  void body_abandoned() {
    if (!body_ || closed_ || !*core_->loop_alive) return;
    body_.reset();
    resolve_continue(false);
    close_after_body_ = true;
    stop_parsing_ = true;
    stream_.read_stop();
    // The client's part is over: no deadline of its runs against the handler, which has yet to answer.
    in_request_ = false;
    body_paused_ = false;
    head_due_ = request_due_ = 0;
    if (streamed_seq_ >= first_seq_ && streamed_seq_ - first_seq_ < slots_.size())
      slots_[streamed_seq_ - first_seq_].close = true;
    settle();
  }

  /// The handler reads the streamed body `queue` for the first time: if it is the one a `100
  /// Continue` is owed for, the 100 goes out now (after the responses before it).
  void body_wanted(const RequestBodyQueue* queue) {
    if (!continue_owed_ || closed_ || !*core_->loop_alive || queue != body_.get()) return;
    resolve_continue(true);
    flush();
  }

  void report(std::exception_ptr e) noexcept {
    if (*core_->loop_alive) core_->loop.report(std::move(e));
  }

  void loop_gone() noexcept {
    if (body_) body_->loop_gone();
  }

 private:
  struct Slot {                          // (every member has its default: a slot is made naming only what it sets)
    std::optional<std::string> bytes{};  // the serialized response (a streamed one's head), once replied
    bool close = false;
    bool head = false;
    int minor = 1;  // the request's HTTP/1.x
    // A streamed response: its body's producer, and its framing.
    std::shared_ptr<BodySource> source{};  // shared: a producer runs on while its last piece ends `streaming_`
    std::optional<std::uint64_t> length{};
    bool chunked = false;
    bool interim = false;         // a `100 Continue`: resolved when `bytes` is set (empty)...
    bool sends_continue = false;  // ...to send it, or not
    /// Allocates nothing: resolving runs where nothing may throw.
    void resolve_interim(bool send) noexcept {
      bytes.emplace();
      sends_continue = send;
    }
  };
  /// The streamed response being written: later responses wait for its end.
  struct Streaming {
    std::shared_ptr<BodySource> source;
    std::optional<std::uint64_t> length;
    bool chunked = false;
    bool close = false;
    std::uint64_t sent = 0;
    bool asked = false;  // a piece is owed by the producer
  };

  static ServerConnection& self_of(llhttp_t* p) { return *static_cast<ServerConnection*>(p->data); }

  /// The slot of request `seq`, if its answer is still awaited: not once the connection is closed or
  /// lingering, or the Loop is gone (nobody would read it), nor for a number it does not hold.
  Slot* awaited(std::uint64_t seq) noexcept {
    if (closed_ || lingering_ || !*core_->loop_alive || seq < first_seq_ || seq - first_seq_ >= slots_.size())
      return nullptr;
    return &slots_[seq - first_seq_];
  }

  /// An answer to a request whose streamed body has not been read to its end: nothing after it can be
  /// parsed, so the connection closes once it is written.
  void close_if_body_unread(std::uint64_t seq, Slot& s) {
    if (!streaming_request_ || seq != streamed_seq_) return;
    s.close = true;
    close_after_body_ = true;
  }

  // A streamed body's `Expect: 100-continue` is answered when its handler first reads the body, not
  // when the head is in: a handler that answers without reading it (a 401, say) sends no 100, and a
  // client that waits for one sends no body for nothing. Its slot, just before the request's own
  // (`streamed_seq_`), holds back the responses after it until it is resolved: with the 100, or
  // with nothing (the handler answered, or dropped the body, or the body ended or failed first).
  // Until the 100 is written or given up, the client may be waiting on the server, and its deadlines
  // wait too (`continue_wait_`).
  void resolve_continue(bool send) noexcept {
    if (!continue_owed_) return;
    continue_owed_ = false;
    const std::uint64_t seq = streamed_seq_ - 1;
    if (seq >= first_seq_ && seq - first_seq_ < slots_.size()) slots_[seq - first_seq_].resolve_interim(send);
  }

  /// An answer came before the first read, and the connection closes after it: the client is not to
  /// send the body now, so its part of the request is over (no deadline of its runs against the
  /// answer, which may be long in the writing).
  void answered_unread() noexcept {
    resolve_continue(false);
    in_request_ = false;
    head_due_ = request_due_ = 0;
  }

  /// A streamed answer came before the first read: the handler may still read the body while the
  /// answer streams (an echo), or may be about to drop it. Decided on the next turn, when a handler
  /// that refused has let go of its request: a body still held gets its 100, else none. Out of memory
  /// throws (the caller's `or_close` ends the connection) rather than leave the client waiting with
  /// its deadlines paused.
  void decide_continue_later() {
    core_->loop.core().defer_own_or_throw([weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self || self->closed_) return;
      self->resolve_continue(self->body_ != nullptr);
      self->flush();
    });
  }

  /// The streamed body ends, with `ec` if it failed.
  void end_body_stream(std::error_code ec) noexcept {
    resolve_continue(false);
    streaming_request_ = false;
    body_handed_over_ = false;
    if (auto body = std::move(body_)) body->end(ec);
  }

  // llhttp is C: nothing may be thrown through it. Out of memory while parsing becomes a 500.
  template <class Fn>
  int guarded(Fn&& fn) noexcept {
    try {
      return fn();
    } catch (...) {
      return reject(500, "out of memory");
    }
  }

  /// Fails the request being parsed: answered with `status` and `why`, then the connection closes.
  int reject(int status, const char* why) noexcept {
    parse_->error_status = status;
    parse_->error_reason = why;
    return HPE_USER;
  }

  // ---- deadlines ----------------------------------------------------------------------------------

  std::uint64_t now() const noexcept { return core_->loop.core().now(); }
  std::uint64_t due_in(std::chrono::milliseconds d) const noexcept {
    return d.count() > 0 ? now() + static_cast<std::uint64_t>(d.count()) : 0;
  }

  // An idle keep-alive connection keeps no buffers and no parse state: what the last request used is
  // given back, so that thousands of idle connections cost little more than their sockets
  // (bench/idle_connections.py). Not while `parse` runs (it is using them), nor while a few bytes of
  // the next request's leading CRLFs are in the framing check.
  void release_buffers() noexcept {
    if (parsing_ || !pending_input_.empty()) return;
    std::vector<Slot>().swap(slots_);
    pending_input_.shrink_to_fit();
    if (parse_ && parse_->framing.at_rest()) core_->give_back(std::move(parse_));
  }

  /// The parse state, taken when reading a request begins.
  void begin_parse() {
    parse_ = core_->take_parse();
    llhttp_init(&parse_->parser, HTTP_REQUEST, &llhttp_settings_for<ServerConnection, HTTP_REQUEST>());
    parse_->parser.data = this;
    parse_->framing.reset();
    parse_->error_status = 0;
    parse_->error_reason = nullptr;
  }

  // Puts the connection in the server's deadline heap after each change in what it is doing, due at
  // the earliest of the deadlines in force. Once the client has finished sending and every response
  // is written, the connection closes — not before: closing cancels what is still being written.
  void settle() {
    if (closed_) return;
    if (reading_done_ && slots_.empty() && writes_pending_ == 0 && !streaming_) return shut();
    const bool idle = !in_request_ && slots_.empty() && writes_pending_ == 0 && !closed_after_write_ && !streaming_;
    if (!idle) {
      idle_due_ = 0;
    } else {
      if (idle_due_ == 0) idle_due_ = due_in(core_->options.idle_timeout);
      release_buffers();
    }
    const std::uint64_t due = earliest_due();
    if (due != deadline_.due) core_->deadlines.set(deadline_, due);
  }

  /// The earliest deadline in force (0: none). While reading is paused because the server's own
  /// responses are backed up, the request being read cannot progress: its deadlines wait too (they
  /// start again when reading resumes), and the write deadline is the one that holds.
  std::uint64_t earliest_due() const noexcept {
    std::uint64_t due = 0;
    const bool waiting = paused_ || body_paused_ || continue_wait_ != 0;  // on the server's side, not the client's
    for (std::uint64_t d : {waiting ? 0 : head_due_, waiting ? 0 : request_due_, write_due_, idle_due_, linger_due_})
      if (d != 0 && (due == 0 || d < due)) due = d;
    return due;
  }

  friend class DeadlineHeap;
  /// From the deadline heap, which has taken the connection out: its earliest deadline has come.
  void on_timer() {
    if (const std::uint64_t due = earliest_due(); due != 0 && due <= now()) return shut();
    settle();
  }

  std::size_t write_queue_bytes() const noexcept { return stream_.write_queue_size(); }

  // ---- reading and parsing ------------------------------------------------------------------------

  void read() {
    auto self = shared_from_this();
    stream_.read_start([self](std::error_code ec, std::span<const char> chunk) { self->on_read(ec, chunk); });
  }

  void on_read(std::error_code ec, std::span<const char> chunk) {
    if (closed_) return;
    if (lingering_) {  // what the client still sends is dropped; its end (or an error) closes
      if (ec || chunk.empty()) shut();
      return;
    }
    if (failed_) return;
    auto keep = shared_from_this();
    if (ec || chunk.empty()) {  // the client is gone or finished sending: finish what is queued, then close
      reading_done_ = true;
      stream_.read_stop();
      if (ec) return shut();                                                 // nobody to write to
      if (in_request_ || body_) end_body_stream(uv_error(UV_ECONNABORTED));  // (answered early: still read)
      in_request_ = false;  // a request cut off here can never complete
      head_due_ = request_due_ = 0;
      return settle();
    }
    if (stop_parsing_) return;
    const std::size_t used = parse(chunk.data(), chunk.size());
    if (body_paused_ && !closed_ && !failed_) {  // a piece of a streamed body waits for its reader
      pending_input_.assign(chunk.data() + used, chunk.size() - used);
      stream_.read_stop();
      if (body_) body_->piece_ready();
    } else if (used < chunk.size() && !stop_parsing_ && !failed_ && !closed_) {  // backed up: keep the rest
      pending_input_.assign(chunk.data() + used, chunk.size() - used);
      pause_reading();
    }
    settle();
  }

  void pause_reading() {
    paused_ = true;
    stream_.read_stop();
  }

  /// Reading resumes: a request that was waiting on the server gets its deadlines afresh.
  void unpause() {
    paused_ = false;
    if (!in_request_) return;
    if (head_due_) head_due_ = due_in(core_->options.header_timeout);
    if (request_due_) request_due_ = due_in(core_->options.request_timeout);
  }

  /// Too many responses waiting, or too many bytes of them: read nothing more until they go out.
  bool backed_up() noexcept {
    static constexpr std::size_t kWriteHighWater = 256 * 1024;
    return slots_.size() + writes_pending_ + (streaming_ ? 1 : 0) >= core_->options.max_pipelined ||
           (writes_pending_ > 0 && write_queue_bytes() > kWriteHighWater);
  }

  /// Reading was paused and the responses have gone out: parse what was kept, then read again.
  void resume_if_drained() {
    if (!paused_ || body_paused_ || parsing_ || closed_ || failed_ || stop_parsing_ || backed_up()) return;
    if (!*core_->loop_alive) return;  // a producer, asked for a piece, destroyed a host's Loop
    unpause();
    std::string input = std::move(pending_input_);
    pending_input_.clear();
    const std::size_t used = parse(input.data(), input.size());
    if (closed_ || failed_ || stop_parsing_) return;
    if (used < input.size()) {
      pending_input_ = input.substr(used);
      if (body_paused_) {
        if (body_) body_->piece_ready();
      } else {
        paused_ = true;
      }
      return;
    }
    if (body_paused_) {
      if (body_) body_->piece_ready();
      return;
    }
    if (!reading_done_ && !closed_after_write_) read();
  }

  /// Parses requests from `data` until it is used up or the connection backs up; returns the bytes used.
  std::size_t parse(const char* data, std::size_t n) {
    // Out of memory (a handler's own exceptions are caught where it is called): the bytes cannot be
    // parsed, and a later read must not start afresh, so the connection closes (`or_close`).
    std::size_t used = 0;
    or_close([&] {
      if (!parse_) begin_parse();
      parsing_ = true;
      used = parse_requests(data, n);
    });
    parsing_ = false;
    if (lingering_ && !closed_) drain();  // (`close_written` ran inside this parse)
    return used;
  }

  /// `parse`'s loop: one request (or one streamed body's piece) at a time.
  std::size_t parse_requests(const char* data, std::size_t n) {
    std::size_t used = 0;
    // No bytes still make one pass: a streamed body's last piece, once taken, lets llhttp end the
    // request (a Content-Length body ends without another byte).
    bool once = n == 0;
    // A handler (or the stream_body predicate) may destroy a host's Loop: nothing more is parsed then.
    while ((used < n || std::exchange(once, false)) && !closed_ && !failed_ && !stop_parsing_ && !body_paused_ &&
           (streaming_request_ || !backed_up()) && *core_->loop_alive) {
      const char* at = data + used;
      if (!parse_->framing.check_head(at, n - used)) {  // before llhttp acts on a head that fails
        refuse(400, parse_->framing.why());
        break;
      }
      const llhttp_errno_t rc = llhttp_execute(&parse_->parser, at, n - used);
      if (!*core_->loop_alive) break;
      std::size_t took = n - used;
      if (rc == HPE_PAUSED || rc == HPE_PAUSED_UPGRADE) {
        took = static_cast<std::size_t>(llhttp_get_error_pos(&parse_->parser) - at);
      } else if (rc != HPE_OK) {
        if (body_handed_over_) {  // its handler has it: the reader gets the error
          fail_streamed_body(parse_->error_status == 413 ? make_error_code(errc::body_too_large)
                                                         : make_error_code(errc::malformed_response));
          break;
        }
        refuse(parse_->error_status ? parse_->error_status : 400,
               parse_->error_reason ? parse_->error_reason : llhttp_get_error_reason(&parse_->parser));
        break;
      }
      // llhttp 8.1.0 lets a bare CR end the head and skips the two bytes after chunk data unchecked.
      if (!parse_->framing.feed(at, took)) {
        if (body_handed_over_) {
          fail_streamed_body(make_error_code(errc::malformed_response));
          break;
        }
        refuse(400, parse_->framing.why());
        break;
      }
      used += took;
      if (rc == HPE_PAUSED_UPGRADE) {  // an Upgrade the handler did not take: carry on as HTTP/1.1
        llhttp_resume_after_upgrade(&parse_->parser);
      } else if (rc == HPE_PAUSED && dispatch_at_head_) {  // a streamed body's head: the handler now
        dispatch_at_head_ = false;
        llhttp_resume(&parse_->parser);
        if (close_after_body_) {  // behind an answer that closes the connection: not served (nor its 100 sent)
          resolve_continue(false);
          streaming_request_ = false;
          in_request_ = false;  // nor read: no deadline of its runs against the answer before it
          head_due_ = request_due_ = continue_wait_ = 0;
          stream_.read_stop();
          stop_parsing_ = true;
        } else {
          dispatch(true);
        }
      } else if (rc == HPE_PAUSED && body_paused_) {  // a piece of a streamed body: for its reader
        // (parsing goes on when it has been taken; `body_paused_` ends this loop)
      } else if (rc == HPE_PAUSED) {  // a request is complete
        llhttp_resume(&parse_->parser);
        parse_->framing.reset();
        if (streaming_request_) {
          end_body_stream({});
          if (close_after_ || close_after_body_) {  // nothing after this request is read, or answered
            stream_.read_stop();
            stop_parsing_ = true;
          }
        } else if (close_after_body_) {  // behind an answer that closes the connection: not served
          stream_.read_stop();
          stop_parsing_ = true;
        } else {
          dispatch(false);
        }
      }
    }
    return used;
  }

  /// A streamed body that cannot go on (malformed, or past its limit): its reader gets `ec`, and the
  /// handler's answer is the connection's last (it answers: the request is its own).
  void fail_streamed_body(std::error_code ec) {
    failed_ = true;
    in_request_ = false;
    head_due_ = request_due_ = 0;
    stream_.read_stop();
    if (streamed_seq_ >= first_seq_ && streamed_seq_ - first_seq_ < slots_.size())
      slots_[streamed_seq_ - first_seq_].close = true;
    end_body_stream(ec);
    flush();
  }

  // A request that cannot be served: answer it (after those before it), then close.
  void refuse(int status, const char* why) {
    resolve_continue(false);
    if (!body_handed_over_) streaming_request_ = false;  // nobody reads a body that was never handed over
    failed_ = true;
    in_request_ = false;
    head_due_ = request_due_ = 0;
    stream_.read_stop();
    slots_.push_back(
        Slot{.bytes = serialize(plain(status, std::string(why ? why : "") + "\n"), false, true), .close = true});
    flush();
  }

  friend const llhttp_settings_t& duet::http::detail::llhttp_settings_for<ServerConnection, HTTP_REQUEST>() noexcept;

  static int on_message_begin(llhttp_t* p) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      c.parse_->request = ServerRequest();
      c.parse_->head.reset();
      c.parse_->body_bytes = 0;
      c.streaming_request_ = false;
      c.body_handed_over_ = false;
      c.continue_wait_ = 0;
      c.in_request_ = true;
      if (c.head_due_ == 0)  // the first request's head keeps the deadline its connection started with
        c.head_due_ = c.due_in(c.core_->options.header_timeout);
      c.request_due_ = c.due_in(c.core_->options.request_timeout);
      c.idle_due_ = 0;
      return 0;
    });
  }
  static int on_url(llhttp_t* p, const char* at, std::size_t n) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      if (!c.parse_->head.start_line(c.parse_->request.target, at, n)) return c.too_large();
      return 0;
    });
  }
  static int on_header_field(llhttp_t* p, const char* at, std::size_t n) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      if (!c.parse_->head.field(c.parse_->request.headers, at, n)) return c.too_large();
      return 0;
    });
  }
  static int on_header_value(llhttp_t* p, const char* at, std::size_t n) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      if (!c.parse_->head.value(c.parse_->request.headers, at, n)) return c.too_large();
      return 0;
    });
  }
  static int on_header_value_complete(llhttp_t* p) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      switch (c.parse_->head.field_done(c.parse_->request.headers)) {
        case FieldVerdict::ok:
          return 0;
        case FieldVerdict::too_large:
          return c.too_large();
        case FieldVerdict::bad_name:
          break;
        case FieldVerdict::framing_trailer:
          return c.reject(400, "a trailer field that only the head may carry (Connection, Content-Length, ...)");
      }
      return c.reject(400, "an empty or invalid header field name");
    });
  }
  int too_large() noexcept { return reject(431, "request header fields too large"); }

  static int on_headers_complete(llhttp_t* p) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int { return c.headers_complete(p); });
  }

  int headers_complete(llhttp_t* p) {
    parse_->head.end_head();
    head_due_ = 0;
    if (llhttp_get_http_major(p) != 1) return reject(505, "only HTTP/1.x is supported");
    const int minor = llhttp_get_http_minor(p);
    if (llhttp_get_method(p) == HTTP_CONNECT) return reject(501, "CONNECT is not supported");
    // The target's bytes (no control or non-ASCII byte, no fragment) were checked with the request line.
    Headers& headers = parse_->request.headers;
    const std::vector<std::string_view> hosts = headers.get_all("Host");
    if (hosts.size() > 1 || (minor >= 1 && hosts.empty()))
      return reject(400, "an HTTP/1.1 request needs exactly one Host");
    // RFC 9112 3.2: a Host that is not host[:port] is a 400 (`Host: a, b` names two).
    if (hosts.size() == 1 && !valid_authority(hosts[0])) return reject(400, "an invalid Host");
    // RFC 9112 6.1 and 6.3: Transfer-Encoding in HTTP/1.0 is faulty framing, an empty one is malformed,
    // and a coding besides chunked is one this server cannot decode (llhttp refuses the rest).
    if (parse_->head.has_transfer_encoding()) {
      if (minor == 0) return reject(400, "Transfer-Encoding in an HTTP/1.0 request");
      switch (transfer_coding(headers, (p->flags & F_CHUNKED) != 0)) {
        case TransferCoding::chunked:
          break;
        case TransferCoding::misread:  // (llhttp refuses most such values itself, in the field)
          return reject(400, kChunkedNotLast);
        case TransferCoding::empty:
          return reject(400, "an empty Transfer-Encoding");
        case TransferCoding::other:
          return reject(501, "a transfer coding other than chunked");
      }
    }
    parse_->request.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(p)));
    parse_->request.version_minor = minor;
    if (const int status = split_target(parse_->request, llhttp_get_method(p) == HTTP_OPTIONS); status != 0)
      return reject(status, "an invalid request target");
    // A body to stream: the handler is called now (once `parse` has paused), not at the body's end.
    const bool has_body = (p->flags & F_CHUNKED) != 0 || ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
    parse_->request.peer = peer_;
    // (Set once the head can no longer be refused: a refused request has no body streamed to anyone.)
    const bool stream = has_body && core_->options.stream_body && core_->options.stream_body(parse_->request);
    if (!*core_->loop_alive) return HPE_PAUSED;  // the predicate destroyed a host's Loop: `parse` stops
    const std::size_t body_limit = stream ? core_->options.max_streamed_body_bytes : core_->options.max_body_bytes;
    const bool expects_continue = minor >= 1 && parse_->request.headers.contains("Expect");
    if (expects_continue)
      for (const auto& [name, value] : parse_->request.headers)  // every Expect line, not the first alone
        if (iequals(name, "Expect") && !iequals(value, "100-continue"))
          return reject(417, "only Expect: 100-continue is supported");
    // A declared length past the limit is refused at once, its body not waited for (0 is no limit for a
    // streamed body, and no body at all for a buffered one, as `on_body` reads it).
    if ((p->flags & F_CONTENT_LENGTH) != 0 && (body_limit != 0 || !stream) && p->content_length > body_limit)
      return reject(413, "request body too large");
    // With no body to ask for (no length, or 0), no 100: RFC 9110 10.1.1 lets the server leave it out
    // when the framing says there is no content, and the answer itself is what the client waits for.
    if (expects_continue && has_body) {
      // The client may wait for it: its deadlines wait too, until it is written or a body byte comes.
      if (stream) {  // said when the handler first reads the body (`body_wanted`), if it does
        slots_.push_back(Slot{.interim = true});
        streamed_seq_ = first_seq_ + slots_.size();  // (as `dispatch` will say): the 100's is the one before
        continue_wait_ = streamed_seq_;
        continue_owed_ = true;
      } else {  // the server reads the body itself
        slots_.push_back(Slot{.bytes = std::string(), .interim = true, .sends_continue = true});
        continue_wait_ = first_seq_ + slots_.size();
        flush();
      }
    }
    streaming_request_ = stream;
    if (p->flags & F_CHUNKED) parse_->framing.expect_chunked_body();
    if (streaming_request_) {
      close_after_ = !parse_->head.persistent(p);
      dispatch_at_head_ = true;
      return HPE_PAUSED;  // `parse` calls the handler, then goes on with the body
    }
    return 0;
  }
  static int on_body(llhttp_t* p, const char* at, std::size_t n) noexcept {
    auto& c = self_of(p);
    return c.guarded([&]() -> int {
      c.parse_->body_bytes += n;
      if (c.continue_wait_ != 0 && n > 0) {  // the body comes without waiting for the 100: deadlines again
        c.continue_wait_ = 0;
        c.request_due_ = c.due_in(c.core_->options.request_timeout);
      }
      if (!c.streaming_request_) {
        if (c.parse_->body_bytes > c.core_->options.max_body_bytes) return c.reject(413, "request body too large");
        c.parse_->request.body.append(at, n);
        return 0;
      }
      const std::size_t limit = c.core_->options.max_streamed_body_bytes;
      if (limit != 0 && c.parse_->body_bytes > limit) return c.reject(413, "request body too large");
      if (!c.body_ || n == 0) return 0;  // the handler dropped it: what is left is not read
      c.body_->add(at, n);
      if (c.core_->options.request_timeout.count() > 0) c.request_due_ = c.due_in(c.core_->options.request_timeout);
      c.body_paused_ = true;
      return HPE_PAUSED;  // until the handler has taken it
    });
  }
  static int on_message_complete(llhttp_t* p) noexcept {
    auto& c = self_of(p);
    c.in_request_ = false;
    c.request_due_ = 0;
    c.continue_wait_ = 0;
    c.close_after_ = !c.parse_->head.persistent(p);
    return HPE_PAUSED;  // `parse` checks the request's framing, then dispatches it
  }

  void dispatch(bool streamed) {
    const bool close_after = close_after_;
    parse_->request.peer = peer_;
    if (streamed) {
      body_ = std::make_shared<RequestBodyQueue>(core_->loop);
      body_->conn = weak_from_this();
      parse_->request.body_stream = RequestBody(body_);
      streamed_seq_ = first_seq_ + slots_.size();
      body_handed_over_ = true;
    }
    slots_.push_back(
        Slot{.close = close_after, .head = parse_->request.method == "HEAD", .minor = parse_->request.version_minor});
    const std::uint64_t seq = first_seq_ + slots_.size() - 1;
    if (close_after && !streamed) {  // nothing after this request is read, or answered
      stream_.read_stop();
      stop_parsing_ = true;
    }
    try {
      core_->handler(std::move(parse_->request), Reply(weak_from_this(), seq));
    } catch (...) {  // a handler's Reply, if it was not called, answers 500 as it goes
      core_->loop.report(std::current_exception());
    }
  }

  /// Writes every response that is ready. If that throws (out of memory), a response has been lost,
  /// and with it the deadline that would have ended the connection: it closes now, and the error is
  /// reported. Every caller holds a reference (`shut` may free this).
  void flush() noexcept {
    or_close([this] { write_ready(); });
  }

  // In request order; a streamed response holds back those after it.
  void write_ready() {
    while (!slots_.empty() && slots_.front().bytes && !closed_ && !streaming_ && !closed_after_write_) {
      // A streamed response's state is made before its slot leaves the queue: if that fails, no
      // response loses its place (the next flush tries again).
      auto streaming = slots_.front().source ? std::make_unique<Streaming>() : nullptr;
      Slot slot = std::move(slots_.front());
      slots_.erase(slots_.begin());  // few: at most max_pipelined
      ++first_seq_;
      if (slot.interim) {
        if (continue_wait_ == first_seq_) {  // the request being read has its 100 (or none is coming)
          continue_wait_ = 0;
          if (in_request_ && request_due_ != 0) request_due_ = due_in(core_->options.request_timeout);
        }
        if (!slot.sends_continue) continue;
        *slot.bytes = kContinue;
      }
      if (streaming) {  // the head, then the body piece by piece
        *streaming = Streaming{std::move(slot.source), slot.length, slot.chunked, slot.close, 0, false};
        streaming_ = std::move(streaming);
        send(std::move(*slot.bytes), false, true);
        break;
      }
      send(std::move(*slot.bytes), slot.close, false);
      if (slot.close) break;
    }
    resume_if_drained();
    settle();
  }

  /// Hands `bytes` to the stream, each write within the write timeout of its turn. Then: close the
  /// connection (`close`), ask for the streamed body's next piece (`more`), or go on.
  void send(std::string bytes, bool close, bool more) {
    if (writes_pending_++ == 0) write_due_ = due_in(core_->options.write_timeout);
    stream_.write(std::move(bytes), [self = shared_from_this(), close, more](std::error_code ec) {
      if (--self->writes_pending_ == 0)
        self->write_due_ = 0;
      else
        self->write_due_ = self->due_in(self->core_->options.write_timeout);  // the next one's turn
      if (ec) return self->shut();
      if (close || (self->shut_when_written_ && self->writes_pending_ == 0)) return self->close_written();
      if (more) self->ask_for_piece();
      self->resume_if_drained();
      self->settle();
    });
    if (close) {
      closed_after_write_ = true;
      stream_.read_stop();
    }
  }

  /// The last response is written and the connection is to close. Closing a socket with bytes from
  /// the client still unread makes the kernel reset the connection, and a reset can destroy the
  /// response on its way: a client still sending a body the server refused gets EPIPE or ECONNRESET
  /// and never reads the 413. Unless the client has said it sends nothing more (its last request was
  /// read whole and said close), the server half-closes instead (FIN, or close_notify over TLS), drops
  /// whatever the client still sends, and closes when the client ends its side, or after
  /// `linger_timeout` (a client that sends forever, or never closes, is cut off then).
  void close_written() {
    const bool client_done =
        close_after_ && !in_request_ && !streaming_request_ && !body_ && !failed_ && pending_input_.empty();
    if (closed_ || reading_done_ || client_done || core_->options.linger_timeout.count() <= 0) return shut();
    lingering_ = true;     // (first: nobody waits for an answer now, whatever the reader below does)
    stop_parsing_ = true;  // nothing more is parsed, nor answered
    end_body_stream(uv_error(UV_ECONNABORTED));  // as closing would: a handler still reading hears of it
    if (closed_) return;                         // (its reader may have closed the server)
    head_due_ = request_due_ = write_due_ = idle_due_ = 0;
    linger_due_ = due_in(core_->options.linger_timeout);
    paused_ = body_paused_ = false;
    continue_wait_ = 0;
    try {
      stream_.shutdown([self = shared_from_this()](std::error_code ec) {
        if (ec) self->shut();
      });
    } catch (...) {  // out of memory: close at once, as before
      return shut();
    }
    // Called back from inside `parse` (a streamed body's end reached its reader, whose producer ended
    // the answer), the draining starts when `parse` returns: what `parse` still does may stop reading.
    if (!parsing_) drain();
    settle();
  }

  /// Lingering: the request's state and unparsed bytes go; what the client still sends is read and
  /// dropped (`on_read`).
  void drain() noexcept {
    pending_input_ = std::string();
    parse_.reset();
    stream_.read_stop();
    try {
      read();
    } catch (...) {  // out of memory: close at once
      shut();
    }
  }

  /// The producer's answer to one request for a piece (`ask_for_piece`).
  struct PieceAnswer {
    std::weak_ptr<ServerConnection> weak;
    void operator()(std::error_code ec, std::string piece) {
      if (auto self = weak.lock()) self->streamed_piece(ec, std::move(piece));
    }
    void dropped() noexcept {
      if (auto self = weak.lock()) self->piece_dropped();
    }
  };

  void ask_for_piece() {
    if (!streaming_ || closed_ || streaming_->asked) return;
    streaming_->asked = true;
    const auto keep = shared_from_this();
    const std::shared_ptr<BodySource> source = streaming_->source;  // a last piece given at once ends `streaming_`
    const Asked asked = ask_producer(*source, PieceAnswer{weak_from_this()}, producing_);
    if (asked.threw) report(asked.threw);  // (a producer that threw after giving its piece has only this)
    if (!asked.dropped) return;
    // Nothing will come, and only a body cut short tells the client. (What it threw says why.)
    if (!asked.threw) return piece_dropped();
    if (*core_->loop_alive) shut();  // (a producer that destroyed a host's Loop: everything is closed)
  }

  /// A producer's piece was destroyed unanswered: as if it had answered with an error.
  void piece_dropped() noexcept {
    if (!streaming_ || closed_ || !streaming_->asked || producing_.note_drop()) return;
    try {
      streamed_piece(make_error_code(errc::body_producer_failed), std::string());
    } catch (...) {  // (out of memory for the report: the response is cut short all the same)
      shut();
    }
  }

  void streamed_piece(std::error_code ec, std::string piece) {
    // The connection went, a second answer, or the Loop is gone (the piece sends and reports nothing).
    if (!streaming_ || closed_ || !streaming_->asked || !*core_->loop_alive) return;
    Streaming& st = *streaming_;
    st.asked = false;
    if (ec) {  // nothing can tell the client but a body cut short
      report(std::make_exception_ptr(
          std::system_error(ec, "http::Server: a streamed response's producer failed; the response is cut short")));
      return shut();
    }
    const bool last = piece.empty();
    st.sent += piece.size();
    if (st.length && (st.sent > *st.length || (last && st.sent != *st.length))) {
      report(std::make_exception_ptr(std::logic_error(
          "http::Server: a streamed response's body broke its Content-Length; the response is cut short")));
      return shut();
    }
    if (!last) {
      std::string bytes;
      if (st.chunked) {
        bytes = chunk(piece);
      } else {
        bytes = std::move(piece);
      }
      return send(std::move(bytes), false, true);
    }
    const bool close = st.close;
    const bool chunked = st.chunked;
    streaming_.reset();
    if (chunked) {
      send("0\r\n\r\n", close, false);
    } else if (close) {  // the body ends with the connection: once what is queued is written
      closed_after_write_ = true;
      stream_.read_stop();
      if (writes_pending_ == 0) return close_written();
      shut_when_written_ = true;
    }
    if (!close) flush();  // the responses after it
    settle();
  }

  std::shared_ptr<ServerCore> core_;
  Transport stream_;
  Endpoint peer_;
  std::unique_ptr<RequestParse> parse_;  // while a request is being read (`begin_parse`)
  Producing producing_;                  // a streamed response's producer is asked for a piece
  std::vector<Slot> slots_;              // a vector, not a deque: an empty deque holds 576 bytes, an empty vector none
  std::uint64_t first_seq_ = 0;
  std::size_t writes_pending_ = 0;     // responses handed to the stream, not yet written
  std::string pending_input_;          // read but not parsed: reading is paused until the responses go out
  DeadlineHeap::Node deadline_{this};  // due at the earliest deadline in force
  // Deadlines in loop time (ms), 0 when not in force.
  std::uint64_t head_due_ = 0;     // the head of the request being read
  std::uint64_t request_due_ = 0;  // the whole request being read, body included
  std::uint64_t write_due_ = 0;    // the response being written must be taken whole by then
  std::uint64_t idle_due_ = 0;     // a connection with nothing to do
  std::uint64_t linger_due_ = 0;   // closing: what the client still sends is drained until then
  bool in_request_ = false;        // a request has begun and not ended
  bool close_after_ = false;       // the request just parsed is the connection's last
  bool closed_ = false;
  bool failed_ = false;
  bool reading_done_ = false;
  bool closed_after_write_ = false;
  bool stop_parsing_ = false;
  bool shut_when_written_ = false;  // a close-delimited streamed body has ended
  bool lingering_ = false;          // half-closed after the last response (`close_written`)
  // A request whose body is streamed to its handler.
  std::shared_ptr<RequestBodyQueue> body_;  // its reader's side, while the handler holds it
  std::uint64_t streamed_seq_ = 0;          // its response's number
  bool streaming_request_ = false;          // the request being parsed streams its body
  bool dispatch_at_head_ = false;           // its head is in: call the handler
  bool body_handed_over_ = false;           // the handler has been called with it
  bool body_paused_ = false;                // a piece waits for the handler: parse no further
  bool continue_owed_ = false;              // its `100 Continue` waits for the handler's first read
  // 1 + the number of a `100 Continue` not yet written, while the request being read is the one that
  // asked for it and has sent none of its body: its deadlines wait (0: none).
  std::uint64_t continue_wait_ = 0;
  bool close_after_body_ = false;         // an answer will close the connection: parse no request after this one
  std::unique_ptr<Streaming> streaming_;  // allocated for each streamed response: idle connections hold none
  bool paused_ = false;                   // reading paused while responses are backed up
  bool parsing_ = false;                  // inside `parse`: a reply now must not start parsing again
};

void ServerCore::loop_gone() noexcept {
  // A reader destroyed there runs user code, which may end connections or destroy the Server. From the
  // back: a connection removed meanwhile is replaced by one already seen, never one not yet seen.
  const auto keep = shared_from_this();
  for (std::size_t i = connections.size(); i-- > 0;) {
    if (i >= connections.size()) continue;
    const auto c = connections[i];
    c->loop_gone();
  }
}

void ServerCore::accept_next() {
  if (closed) return;
  std::weak_ptr<ServerCore> weak = weak_from_this();
  listener.accept([weak](std::error_code ec, TcpStream stream) {
    auto self = weak.lock();
    if (!self || self->closed) return;
    if (!ec) self->serve(std::move(stream));
    self->accept_next();
  });
}

void ServerCore::serve(TcpStream stream) {
  if (connections.size() + handshakes >= options.max_connections) return stream.close();  // refused at once
  Endpoint peer;
  try {
    peer = stream.remote_endpoint();
  } catch (...) {  // the peer is already gone: its address stays empty, and its reads will say so
  }
  if (!tls) return serve(Transport(std::move(stream)), peer);
  ++handshakes;
  std::weak_ptr<ServerCore> weak = weak_from_this();
  tls_accept(std::move(stream), *tls, options.tls_handshake_timeout,
             with_cancellation(stop_handshakes.get_token(), [weak, peer](std::error_code ec, TlsStream tls) {
               auto self = weak.lock();
               if (!self) return;
               --self->handshakes;
               // A failed handshake is the client's problem (an untrusting or broken client): nothing to serve.
               if (!ec && !self->closed) self->serve(Transport(std::move(tls)), peer);
             }));
}

void ServerCore::serve(Transport transport, Endpoint peer) {
  deadlines.reserve(connections.size() + 1);
  auto c = std::make_shared<ServerConnection>(shared_from_this(), std::move(transport), peer);
  c->core_index = connections.size();
  connections.push_back(c);
  c->start();
}

void ServerCore::remove(ServerConnection* c) {
  const std::size_t i = c->core_index;
  if (i >= connections.size() || connections[i].get() != c) return;  // already removed
  auto gone = std::move(connections[i]);                             // freed last: it may be the last reference to `c`
  if (i + 1 != connections.size()) {
    connections[i] = std::move(connections.back());
    connections[i]->core_index = i;
  }
  connections.pop_back();
}

void DeadlineHeap::set(Node& n, std::uint64_t due) {
  if (due == 0) return remove(n);
  if (n.due == 0) {
    heap_.push_back(&n);
    n.index = heap_.size() - 1;
    n.due = due;
    sift_up(n.index);
  } else {
    const bool earlier = due < n.due;
    n.due = due;
    if (earlier)
      sift_up(n.index);
    else
      sift_down(n.index);
  }
  arm();
}

void DeadlineHeap::remove(Node& n) noexcept {
  if (n.due == 0) return;
  const std::size_t i = n.index;
  Node* last = heap_.back();
  heap_.pop_back();
  n.due = 0;
  if (last == &n) return;
  place(i, last);
  sift_down(i);
  sift_up(last->index);
  // The timer may now run early for a deadline that left: `fire` finds nothing due and runs it again.
}

void DeadlineHeap::sift_up(std::size_t i) noexcept {
  Node* n = heap_[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (heap_[parent]->due <= n->due) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, n);
}

void DeadlineHeap::sift_down(std::size_t i) noexcept {
  Node* n = heap_[i];
  const std::size_t size = heap_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= size) break;
    if (child + 1 < size && heap_[child + 1]->due < heap_[child]->due) ++child;
    if (n->due <= heap_[child]->due) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, n);
}

// Runs the timer for the heap's top, unless it already runs for that time or sooner.
void DeadlineHeap::arm() {
  if (closed_ || !*core_.loop_alive) return;  // (a callback may have destroyed a host's Loop)
  if (heap_.empty()) {
    if (armed_ != 0) timer_->stop();
    armed_ = 0;
    return;
  }
  const std::uint64_t due = heap_.front()->due;
  if (armed_ != 0 && armed_ <= due) return;
  const std::uint64_t now = loop_.core().now();
  timer_->start(std::chrono::milliseconds(due > now ? due - now : 0), std::chrono::milliseconds(0), [this] {
    auto keep = core_.shared_from_this();  // the last connection to go may hold the last reference
    fire();
  });
  armed_ = due;
}

void DeadlineHeap::fire() {
  armed_ = 0;
  const std::uint64_t now = loop_.core().now();
  while (!heap_.empty() && heap_.front()->due <= now && *core_.loop_alive) {
    ServerConnection& c = *heap_.front()->owner;
    remove(*heap_.front());
    auto keep = c.shared_from_this();
    try {
      c.on_timer();
    } catch (...) {  // out of memory setting a deadline: the connection ends
      c.report(std::current_exception());
      c.shut();
    }
  }
  arm();
}

void RequestBodyQueue::read(Reader cb, std::stop_token token) {
  if (!*loop_alive_) throw std::system_error(make_error_code(errc::loop_closed), "http::RequestBody::read");
  if (reader_) {
    const auto ec = make_error_code(errc::invalid_argument);
    return cb(ec, std::string());  // one read at a time
  }
  reader_ = std::move(cb);
  stop_.watch(&loop_.core(), std::move(token), StopFn{this});
  if (!std::exchange(wanted_, true)) {
    if (auto c = conn.lock()) c->body_wanted(this);  // the client may be waiting for a 100 Continue
  }
  pump();
}

void RequestBodyQueue::loop_gone() noexcept {
  const auto keep = shared_from_this();  // the reader may own the last other reference
  stop_.reset();
  auto reader = std::move(reader_);  // destroyed here, uncalled: its destructor may come back to this queue
}

void RequestBodyQueue::pump() {
  if (!*loop_alive_) return loop_gone();  // a reader still waiting is never called, only destroyed
  if (pumping_) return;
  const auto keep = shared_from_this();  // a reader may let go of the last other reference
  pumping_ = true;
  while (reader_ && (has_piece_ || ended_)) {
    stop_.reset();
    auto reader = std::move(reader_);
    if (has_piece_) {
      std::string piece = std::move(piece_);
      piece_.clear();
      has_piece_ = false;
      loop_.core().invoke(reader, std::error_code(), std::move(piece));
      if (auto c = conn.lock()) c->resume_body();  // parses the next piece into this queue, or the end
    } else {
      end_delivered_ = true;
      loop_.core().invoke(reader, error_, std::string());
    }
  }
  pumping_ = false;
}

void RequestBodyQueue::abandon() noexcept {
  if (ended_) return;
  ended_ = true;
  error_ = uv_error(UV_ECANCELED);
  if (auto c = conn.lock()) {
    try {
      c->body_abandoned();
    } catch (...) {
      loop_.report(std::current_exception());
    }
  }
}

// From a stop callback: never call back inside it.
void RequestBodyQueue::cancel_read() noexcept {
  auto reader = std::move(reader_);
  abandon();
  if (!reader) return;
  try {
    loop_.post([reader = std::move(reader)]() mutable { reader(uv_error(UV_ECANCELED), std::string()); });
  } catch (...) {
    loop_.report(std::current_exception());
  }
}

}  // namespace detail

Reply::Reply(Reply&& other) noexcept
    : conn_(std::move(other.conn_)), seq_(other.seq_), owed_(std::exchange(other.owed_, false)) {}

Reply& Reply::operator=(Reply&& other) noexcept {
  if (this != &other) {
    drop();
    conn_ = std::move(other.conn_);
    seq_ = other.seq_;
    owed_ = std::exchange(other.owed_, false);
  }
  return *this;
}

Reply::~Reply() { drop(); }

void Reply::operator()(Response res) {
  if (!std::exchange(owed_, false)) return;
  if (auto c = conn_.lock()) c->or_close([&] { c->answer(seq_, std::move(res)); });
}

RequestBody& RequestBody::operator=(RequestBody&& other) noexcept {
  if (this != &other) {
    if (queue_) queue_->abandon();
    queue_ = std::move(other.queue_);
  }
  return *this;
}

RequestBody::~RequestBody() {
  if (queue_ && !queue_->end_delivered()) queue_->abandon();
}

bool RequestBody::ended() const noexcept { return !queue_ || queue_->end_delivered(); }

void RequestBody::read_piece(duet::detail::UniqueFunction<void(std::error_code, std::string)> cb,
                             std::stop_token token) {
  if (!queue_) return cb(std::error_code(), std::string());  // not streamed: nothing to read here
  queue_->read(std::move(cb), std::move(token));
}

void Reply::stream(Response head, BodySource body) {
  if (!std::exchange(owed_, false)) return;
  if (auto c = conn_.lock()) c->or_close([&] { c->answer_stream(seq_, std::move(head), std::move(body)); });
}

void Reply::drop() noexcept {
  if (!std::exchange(owed_, false)) return;
  if (auto c = conn_.lock()) c->dropped(seq_);
}

Server::Server(Loop& loop, const Endpoint& at, detail::Handler handler, ServerOptions options)
    : core_(std::make_shared<detail::ServerCore>(loop, at, std::move(handler), std::move(options))) {
  core_->accept_next();
}

Server::~Server() { close(); }

void Server::close() noexcept {
  // A connection's shut ends a streamed body's read, which runs the reader: it may destroy this Server.
  const std::shared_ptr<detail::ServerCore> core = core_;
  if (core->closed) return;
  core->closed = true;
  duet::detail::ListenerAccess::close_quietly(core->listener);  // its accept callback would do nothing now
  core->stop_handshakes.request_stop();
  auto connections = core->connections;  // shut() removes from the vector
  for (auto& c : connections) c->shut();
  core->deadlines.close();
  detail::LoopGoneWatch::drop(core->loop_gone_watch);
}

Endpoint Server::local_endpoint() const { return core_->listener.local_endpoint(); }

std::size_t Server::connections() const noexcept { return core_->connections.size(); }

void Server::serve_task(Loop& loop, Task<void> task) {
  auto handle = std::make_shared<JoinHandle<void>>(spawn(loop, std::move(task)));
  handle->on_done([&loop, handle] {
    try {
      handle->result();
    } catch (...) {
      loop.report(std::current_exception());
    }
  });
}

void Server::serve_task(Loop& loop, Task<Response> task, Reply reply) {
  auto handle = std::make_shared<JoinHandle<Response>>(spawn(loop, std::move(task)));
  handle->on_done([&loop, handle, reply = std::move(reply)]() mutable {
    Response res;
    try {
      res = handle->result();
    } catch (...) {  // whatever it is, its text stays on the server: the client gets a plain 500
      loop.report(std::current_exception());
      res = detail::plain(500, "internal error\n");
    }
    reply(std::move(res));
  });
}

}  // namespace duet::http
