/* bare_client — the floor under duet's HTTP client: the same flag downloads as bench/http_load, written
 * on libuv and llhttp directly, with no library in between.
 *
 *   bare_client --url BASE --requests N --concurrency C [--codes every|all]
 *
 * What it is: C connections, one plain struct each, opened at start. Each connection sends one GET at a
 * time for the next code, {BASE}/{cc}/{cc}.gif (cycling over the codes: `all` is ISO 3166's assigned
 * codes, the default; `every` is AA..ZZ), keeps the body in a buffer it reuses for every response, and
 * sends the next request when the response is complete. One read buffer serves every connection (the
 * loop is single-threaded and each read is consumed before the next). A connection that fails, or that
 * the server closes, counts its request as an error and is opened again while requests remain.
 *
 * What it leaves out, and duet's client does not: redirects, timeouts, retries of stale connections,
 * cancellation, DNS on the thread pool (the host is resolved once, blocking, before the clock starts),
 * limits on header and body sizes, a pool shared by requests in any order, a result delivered to a
 * callback or a coroutine. That is what the difference between the two costs.
 *
 * Prints the same line as http_load, and the client's own CPU time per request:
 *
 *   face=bare-c requests=… ok=… notfound=… errors=… seconds=… req_per_s=… peak_rss_mb=… cpu_us_per_req=…
 *
 * Exit status: 0 when no request failed (404s are not failures), 1 otherwise, 2 on a usage error. */
#include <ctype.h>
#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <uv.h>

#define ISO_CODES "/usr/share/iso-codes/json/iso_3166-1.json"

typedef struct Conn {
  uv_tcp_t tcp; /* first: a uv_handle_t* to it is a Conn* */
  uv_connect_t connect;
  uv_write_t write;
  llhttp_t parser;
  char request[512];
  char* body; /* the response body, kept in memory; the buffer is reused */
  size_t body_len, body_cap;
  long in_flight; /* the index of the request on the wire, or -1 */
  int complete;   /* set by on_message_complete, with: */
  int status, keep_alive;
} Conn;

static struct {
  char host[256], authority[300], prefix[1024];
  struct sockaddr_storage addr;
  char (*codes)[3];
  size_t ncodes;
  long requests, next, ok, not_found, errors;
  uv_loop_t* loop;
  llhttp_settings_t settings;
} load;

static void usage(const char* why) {
  fprintf(stderr,
          "*** Usage error: %s\nusage: bare_client --url BASE --requests N --concurrency C [--codes every|all]\n", why);
  exit(2);
}

static void die(const char* what, const char* why) {
  fprintf(stderr, "bare_client: %s: %s\n", what, why);
  exit(1);
}

static long number(const char* text, const char* option) {
  char* end = NULL;
  long n = strtol(text, &end, 10);
  if (!*text || *end || n < 1) {
    char why[128];
    snprintf(why, sizeof why, "%s takes a whole number of at least 1", option);
    usage(why);
  }
  return n;
}

static int by_code(const void* a, const void* b) { return memcmp(a, b, 2); }

/* The codes to cycle over, lower case: AA..ZZ, or every "alpha_2" in iso-codes' table. */
static void load_codes(const char* kind) {
  static char every[26 * 26][3];
  if (strcmp(kind, "every") == 0) {
    for (int i = 0; i < 26 * 26; ++i) {
      every[i][0] = (char)('a' + i / 26);
      every[i][1] = (char)('a' + i % 26);
    }
    load.codes = every;
    load.ncodes = 26 * 26;
    return;
  }
  FILE* f = fopen(ISO_CODES, "r");
  if (!f) die(ISO_CODES, strerror(errno));
  static char text[1 << 20];
  size_t len = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[len] = '\0';
  static char all[26 * 26][3];
  size_t n = 0;
  for (const char* p = text; (p = strstr(p, "\"alpha_2\": \"")) != NULL && n < 26 * 26; p += 12) {
    all[n][0] = (char)tolower((unsigned char)p[12]);
    all[n][1] = (char)tolower((unsigned char)p[13]);
    ++n;
  }
  if (n == 0) die(ISO_CODES, "no alpha_2 codes in it");
  qsort(all, n, sizeof all[0], by_code);
  load.codes = all;
  load.ncodes = n;
}

/* http://HOST[:PORT][/PREFIX] → host, authority, prefix and one resolved address. */
static void parse_url(const char* url) {
  if (strncmp(url, "http://", 7) != 0) usage("--url must start with http://");
  const char *host = url + 7, *slash = strchr(host, '/');
  size_t authority_len = slash ? (size_t)(slash - host) : strlen(host);
  if (authority_len == 0 || authority_len >= sizeof load.host) usage("--url has no usable host");
  memcpy(load.authority, host, authority_len);
  load.authority[authority_len] = '\0';
  snprintf(load.prefix, sizeof load.prefix, "%s", slash ? slash : "");
  size_t plen = strlen(load.prefix);
  while (plen > 0 && load.prefix[plen - 1] == '/') load.prefix[--plen] = '\0';
  const char* port = "80";
  strcpy(load.host, load.authority);
  char* colon = strrchr(load.host, ':');
  if (colon && !strchr(colon, ']')) {
    *colon = '\0';
    port = colon + 1;
  }
  if (load.host[0] == '[') { /* [::1] */
    memmove(load.host, load.host + 1, strlen(load.host));
    load.host[strlen(load.host) - 1] = '\0';
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found = NULL;
  int rc = getaddrinfo(load.host, port, &hints, &found);
  if (rc != 0) die(load.host, gai_strerror(rc));
  memcpy(&load.addr, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
}

static void count(int status) {
  if (status == 200)
    ++load.ok;
  else if (status == 404)
    ++load.not_found;
  else
    ++load.errors;
}

/* ---- one connection: open, send, parse, send the next; on failure, close and open again ---------- */

static void open_conn(Conn* c);
static void send_next(Conn* c);

static void on_closed(uv_handle_t* h) {
  Conn* c = (Conn*)h;
  if (load.next < load.requests) open_conn(c);
}

static void fail(Conn* c) {
  if (uv_is_closing((uv_handle_t*)&c->tcp)) return;
  if (c->in_flight >= 0) count(0);
  c->in_flight = -1;
  uv_close((uv_handle_t*)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char shared[64 * 1024];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(shared, sizeof shared);
}

static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  Conn* c = (Conn*)s;
  if (nread == 0) return;
  if (nread < 0 || llhttp_execute(&c->parser, buf->base, (size_t)nread) != HPE_OK || c->in_flight < 0) {
    fail(c);
    return;
  }
  if (!c->complete) return;
  c->complete = 0;
  c->in_flight = -1;
  count(c->status);
  if (c->keep_alive)
    send_next(c);
  else
    uv_close((uv_handle_t*)&c->tcp, on_closed);
}

static void on_written(uv_write_t* w, int status) {
  if (status < 0 && status != UV_ECANCELED) fail((Conn*)w->handle);
}

static void send_next(Conn* c) {
  if (load.next >= load.requests) {
    uv_close((uv_handle_t*)&c->tcp, NULL);
    return;
  }
  c->in_flight = load.next++;
  const char* cc = load.codes[(size_t)c->in_flight % load.ncodes];
  int n = snprintf(c->request, sizeof c->request,
                   "GET %s/%s/%s.gif HTTP/1.1\r\nHost: %s\r\nUser-Agent: bare_client\r\nAccept: */*\r\n\r\n",
                   load.prefix, cc, cc, load.authority);
  uv_buf_t buf = uv_buf_init(c->request, (unsigned)n);
  if (uv_write(&c->write, (uv_stream_t*)&c->tcp, &buf, 1, on_written) != 0) fail(c);
}

static void on_connected(uv_connect_t* req, int status) {
  Conn* c = (Conn*)req->handle;
  if (status < 0) { /* a request that could not be sent is an error */
    if (load.next < load.requests) c->in_flight = load.next++;
    fail(c);
    return;
  }
  llhttp_init(&c->parser, HTTP_RESPONSE, &load.settings);
  c->parser.data = c;
  uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read);
  send_next(c);
}

static void open_conn(Conn* c) {
  c->in_flight = -1;
  c->complete = 0;
  uv_tcp_init(load.loop, &c->tcp);
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr*)&load.addr, on_connected) != 0) {
    if (load.next < load.requests) c->in_flight = load.next++;
    fail(c);
  }
}

/* ---- llhttp callbacks ----------------------------------------------------------------------------- */

static int on_message_begin(llhttp_t* p) {
  ((Conn*)p->data)->body_len = 0;
  return 0;
}

static int on_body(llhttp_t* p, const char* at, size_t len) {
  Conn* c = p->data;
  if (c->body_len + len > c->body_cap) {
    size_t cap = c->body_cap ? c->body_cap : 1024;
    while (cap < c->body_len + len) cap *= 2;
    char* grown = realloc(c->body, cap);
    if (!grown) return -1;
    c->body = grown;
    c->body_cap = cap;
  }
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

static int on_message_complete(llhttp_t* p) {
  Conn* c = p->data;
  c->complete = 1;
  c->status = llhttp_get_status_code(p);
  c->keep_alive = llhttp_should_keep_alive(p); /* read here: llhttp resets it for the next message */
  return 0;
}

int main(int argc, char** argv) {
  const char *url = NULL, *codes = "all";
  long concurrency = 100;
  load.requests = 100000;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage("every option takes a value");
    if (strcmp(argv[i], "--url") == 0)
      url = argv[i + 1];
    else if (strcmp(argv[i], "--requests") == 0)
      load.requests = number(argv[i + 1], "--requests");
    else if (strcmp(argv[i], "--concurrency") == 0)
      concurrency = number(argv[i + 1], "--concurrency");
    else if (strcmp(argv[i], "--codes") == 0)
      codes = argv[i + 1];
    else
      usage("unknown option");
  }
  if (!url) usage("--url is required");
  if (strcmp(codes, "every") != 0 && strcmp(codes, "all") != 0) usage("--codes must be every or all");
  load_codes(codes);
  parse_url(url);
  if (concurrency > load.requests) concurrency = load.requests;

  struct rlimit files; /* C connections need C descriptors */
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  llhttp_settings_init(&load.settings);
  load.settings.on_message_begin = on_message_begin;
  load.settings.on_body = on_body;
  load.settings.on_message_complete = on_message_complete;
  load.loop = uv_default_loop();
  Conn* conns = calloc((size_t)concurrency, sizeof *conns);
  if (!conns) die("memory", "cannot allocate the connections");

  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  uint64_t start = uv_hrtime();
  for (long i = 0; i < concurrency; ++i) open_conn(&conns[i]);
  uv_run(load.loop, UV_RUN_DEFAULT);
  double seconds = (double)(uv_hrtime() - start) / 1e9;
  getrusage(RUSAGE_SELF, &after);

  double cpu =
      (double)(after.ru_utime.tv_sec - before.ru_utime.tv_sec + after.ru_stime.tv_sec - before.ru_stime.tv_sec) +
      (double)(after.ru_utime.tv_usec - before.ru_utime.tv_usec + after.ru_stime.tv_usec - before.ru_stime.tv_usec) /
          1e6;
  long finished = load.ok + load.not_found + load.errors;
  printf(
      "face=bare-c requests=%ld ok=%ld notfound=%ld errors=%ld seconds=%.3f req_per_s=%.0f peak_rss_mb=%.1f "
      "cpu_us_per_req=%.2f\n",
      finished, load.ok, load.not_found, load.errors, seconds, (double)finished / seconds,
      (double)after.ru_maxrss / 1024.0, cpu * 1e6 / (double)(finished ? finished : 1));
  for (long i = 0; i < concurrency; ++i) free(conns[i].body);
  free(conns);
  uv_loop_close(load.loop);
  return load.errors == 0 ? 0 : 1;
}
