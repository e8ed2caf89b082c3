/* An HTTP/1.1 client on libuv for Prometheus: async DNS (uv_getaddrinfo), one keep-alive connection pool
 * per host:port and TLS context, llhttp for responses (Content-Length and chunked), bounded sizes and
 * times. https:// goes through TLS (src/tls.h, OpenSSL on memory BIOs, on the same loop; RFC 9110 4.2.2):
 * SNI and verification of the URL's host (or the options' server name), a handshake timeout, keep-alive
 * over TLS, close_notify when a connection closes (http_client_tls.c). */
#ifndef PS_HTTP_CLIENT_H
#define PS_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PS_HTTP_MAX_RESPONSE       (32u << 20) /* body bytes by default; more -> UV_E2BIG (ps_http_set_body) */
#define PS_HTTP_MAX_HEADER_BYTES   (64u << 10)
#define PS_HTTP_MAX_URL            16384
/* Extra request header lines (struct ps_http_opts.headers), all together: room for a bearer token (a
 * Kubernetes service-account JWT is 1-2 KiB) and a few custom headers; more -> UV_EINVAL. */
#define PS_HTTP_MAX_EXTRA_HEADERS  16384
#define PS_HTTP_MAX_IDLE_PER_HOST  4     /* keep-alive connections kept per host:port */
#define PS_HTTP_IDLE_TIMEOUT_MS    30000 /* idle keep-alive connections are closed after this */
/* Each address of a host gets at most this long (or the request timeout, if shorter) to accept the
 * connection before the next address is tried. */
#define PS_HTTP_CONNECT_TIMEOUT_MS 5000
/* Once the client's connections together have read this many bytes of responses, every connection
 * reading a response stops for one loop turn before it reads on, so that large answers arriving faster
 * than they are parsed (loopback, full socket buffers) cannot hold the loop: libuv reads up to 32 buffers
 * in one go, 2 MiB of READ_BUF_SIZE reads, per connection. Measured by tests/bench/prom_bench.c (2-core
 * machine): prom_decode.c decodes 130-330 MB/s, so a turn of 256 KiB costs 1-2 ms, and a 30 MB answer
 * never more than 3 ms a turn (it was 860 ms in one callback). The budget is the client's, not each
 * connection's: at a restart, --prometheus-max-inflight first loads answer at once, and with a budget per
 * connection one turn decoded up to 3 MB of them (15-36 ms of CPU; tests/bench/restart_bench.py). */
#define PS_HTTP_READ_BURST         (256u << 10)
/* TLS (https://): the handshake of a new connection must end within PS_TLS_HANDSHAKE_TIMEOUT_MS (src/tls.h),
 * or the request's remaining time if shorter. Encrypted bytes waiting to be written to one connection's
 * socket (a handshake flight and one request, PS_HTTP_MAX_URL plus headers, take a fraction of it): more
 * ends the request with UV_ENOBUFS. */
#define PS_HTTP_TLS_MAX_PENDING    (1u << 20)

/* Fan-out limits (docs/reliability.md, "Prometheus fan-out"). A request holds one slot of its host:port
 * from the moment it leaves the queue (resolution, connect, send, response) until its callback; at most
 * max_inflight slots per host:port (--prometheus-max-inflight), so at most that many connections to one
 * server are busy, and a black-hole server holds at most that many descriptors. The others wait in a FIFO
 * queue per host:port and class. */
#define PS_HTTP_DEFAULT_MAX_INFLIGHT 16    /* --prometheus-max-inflight default */
#define PS_HTTP_MAX_MAX_INFLIGHT     1024  /* --prometheus-max-inflight upper bound */
#define PS_HTTP_MAX_QUEUED           65536 /* requests waiting, all servers together; more -> UV_ENOBUFS */
/* Outgoing connections in all (busy, connecting and idle), whatever RLIMIT_NOFILE allows; main.c lowers it
 * to what ps_net_fd_budget leaves outgoing connections, so that the listeners, accepted connections and the
 * health port keep the rest of the descriptors. */
#define PS_HTTP_MAX_CONNS            256
/* A request that waited PS_HTTP_ERR_QUEUE_TIMEOUT's bound in the queue fails with this (nothing was sent). */
#define PS_HTTP_ERR_QUEUE_TIMEOUT    UV_EBUSY
/* A request whose TLS handshake (or a later record) failed ends with this (see ps_http_cb). */
#define PS_HTTP_ERR_TLS              UV_EPROTO

/* Queue classes, served in this order (strict priority): requests someone waits for (a target's first
 * load, with KEDA's RPC waiting) go before background refreshes. Within a class, first come first served. */
enum ps_http_class { PS_HTTP_URGENT, PS_HTTP_BACKGROUND, PS_HTTP_NCLASSES };

struct ps_http_opts {
  uint64_t timeout_ms;       /* connect + request + response, counted from when the request leaves the
                              * queue: waiting never eats into it */
  uint64_t queue_timeout_ms; /* longest wait for a slot (then PS_HTTP_ERR_QUEUE_TIMEOUT); 0: timeout_ms */
  enum ps_http_class cls;
  /* Extra request header lines, written after the client's own (Host, User-Agent, Accept,
   * Accept-Encoding): "Name: value\r\n" each, NULL or "" for none. Copied (the request may wait in the
   * queue). Checked by ps_http_headers_check; a bad one makes ps_http_get_opts return UV_EINVAL. */
  const char *headers;
  /* https:// only: the TLS context (CAs, client certificate; NULL: the client's default, the system CAs)
   * and the name to verify and send as SNI (NULL: the URL's host). Not owned: the context must outlive
   * the client's connections (ps_http_client_close, then free it); the name is copied. */
  struct ps_tls_ctx *tls;
  const char *tls_server_name;
};

/* Whether headers (as in ps_http_opts.headers) is safe to send: at most PS_HTTP_MAX_EXTRA_HEADERS bytes,
 * each line "name: value\r\n" with a token name (RFC 9110 5.6.2), a value without CR, LF, NUL or other
 * control bytes but HTAB (RFC 9110 5.5), and no name the client sets itself or that changes the message
 * framing or the connection (ps_http_header_reserved). 0 or UV_EINVAL. */
int ps_http_headers_check(const char *headers);
/* Whether the header name (len bytes, any case) is one the client owns: Host, Content-Length,
 * Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer, Accept-Encoding. */
bool ps_http_header_reserved(const char *name, size_t len);

/* Occupancy, for /metrics and tests. */
struct ps_http_stats {
  size_t inflight;       /* slots held, all servers */
  size_t queued;         /* requests waiting, all servers */
  size_t conns;          /* open outgoing connections (busy, connecting, idle) */
  size_t peak_inflight;  /* the most slots one host:port ever held at once */
  size_t peak_conns;     /* the most open connections at once */
  size_t tls_handshakes; /* TLS handshakes completed (a reused connection needs none) */
};

struct ps_http_client;
struct ps_http_req;
struct ps_tls_ctx;

struct ps_http_response {
  int status;       /* HTTP status code */
  const char *body; /* NUL-terminated; valid only during the callback; "" when streamed (ps_http_set_body) */
  size_t body_len;  /* 0 when streamed */
  const char *content_type; /* "" when absent */
};

/* Exactly one call per request, unless cancelled first. err is 0 (resp set, whatever the HTTP status) or
 * negative: UV_ECONNREFUSED, UV_ETIMEDOUT (connect or whole-request timeout), UV_EAI_* (DNS),
 * UV_E2BIG (response over limits), UV_EPROTO (not HTTP), UV_ECONNRESET (closed mid-response),
 * UV_ECANCELED (client closing), PS_HTTP_ERR_QUEUE_TIMEOUT (never sent: no slot within its queue bound),
 * PS_HTTP_ERR_TLS (the TLS handshake or a record failed: a certificate that does not verify, a peer that
 * does not speak TLS; never retried on another address, since each would say the same).
 * errmsg says what happened in words, naming host:port
 * ("connect 127.0.0.1:9090: connection refused", "tls 127.0.0.1:9443: x509: unknown authority"); NULL
 * when err is 0. It never holds a header value (credentials). */
typedef void (*ps_http_cb)(void *arg, int err, const char *errmsg, const struct ps_http_response *resp);

int ps_http_client_new(uv_loop_t *loop, struct ps_http_client **out);
/* Sets the slots per host:port (1..PS_HTTP_MAX_MAX_INFLIGHT; default PS_HTTP_DEFAULT_MAX_INFLIGHT) and the
 * connections in all (1..PS_HTTP_MAX_CONNS; default PS_HTTP_MAX_CONNS). Call before the first request. */
void ps_http_client_set_limits(struct ps_http_client *c, size_t max_inflight, size_t max_conns);
void ps_http_client_stats(const struct ps_http_client *c, struct ps_http_stats *out);
/* Loads the default TLS context of https:// requests without ps_http_opts.tls: the system CAs (OpenSSL's
 * default paths; Debian's ca-certificates). It reads the CA bundle synchronously, so call it at startup;
 * otherwise the first https:// request loads it. 0, or an error with a reason in err. */
int ps_http_client_tls_init(struct ps_http_client *c, char *err, size_t errlen);
/* Cancels pending requests (their callbacks run with UV_ECANCELED), closes every connection; the memory
 * goes in the close callbacks, so run the loop afterwards until it is empty. */
void ps_http_client_close(struct ps_http_client *c);

/* GET url (http[s]://host[:port]/path?query). timeout_ms bounds connect + TLS handshake + request +
 * response. Returns 0 (cb will be called later, never from inside this call) or UV_EINVAL (bad URL,
 * timeout_ms 0, bad extra headers) / UV_EPROTONOSUPPORT (neither http nor https, or https without a TLS
 * context: the system CAs failed to load) / UV_ENOMEM / UV_ECANCELED (client closing), in which case cb is
 * never called. *out (may be NULL) receives a handle for ps_http_cancel, valid until cb runs. */
int ps_http_get(struct ps_http_client *c, const char *url, uint64_t timeout_ms, ps_http_cb cb, void *arg,
                struct ps_http_req **out);
/* The same with a class and a queue bound: ps_http_get is {timeout_ms, 0, PS_HTTP_URGENT}. Also
 * UV_ENOBUFS (PS_HTTP_MAX_QUEUED requests wait already; cb never called). */
int ps_http_get_opts(struct ps_http_client *c, const char *url, const struct ps_http_opts *o, ps_http_cb cb,
                     void *arg, struct ps_http_req **out);
/* Receives the body of a response as it arrives, in the pieces the connection reads: 0, or a negative
 * error that ends the request with it. It must not call into the client (cancel, close, get). */
typedef int (*ps_http_body_cb)(void *arg, const char *data, size_t len);
/* Sets r's limit on body bytes (instead of PS_HTTP_MAX_RESPONSE), checked against Content-Length as the
 * headers arrive and against the bytes as they stream in: past it the request ends with UV_E2BIG. With
 * body_cb, the body goes to body_cb(body_arg, ...) as it arrives instead of being collected, so that a
 * caller can decode it without a copy of the whole. Call it right after ps_http_get returned r, before the
 * loop runs again (ps_http_get_opts too: the request may wait in the queue, the limit and sink wait with it).
 */
void ps_http_set_body(struct ps_http_req *r, size_t max_body, ps_http_body_cb body_cb, void *body_arg);
/* The callback will not run; the connection it used is closed (its response is not awaited). */
void ps_http_cancel(struct ps_http_req *r);

/* Splits an http or https URL (default port 80 or 443); exposed for tests. host is unbracketed for IPv6.
 * 0 or UV_EINVAL. */
int ps_http_url_split(const char *url, char *host, size_t hostlen, int *port, const char **path);

/* Parses data as the bytes a connection would receive for one GET, fed to the parser in pieces of at most
 * `piece` bytes (0: at once) and followed by EOF; exposed for tests and fuzzing (no I/O). 0 with *status
 * (may be NULL) and the body appended to *body (may be NULL), or the error the request would end with:
 * UV_EPROTO (not HTTP), UV_E2BIG (over a limit), UV_ECONNRESET (bytes end mid-response), UV_ENOMEM. */
struct ps_buf;
int ps_http_parse_response(const char *data, size_t len, size_t piece, int *status, struct ps_buf *body);

#endif
