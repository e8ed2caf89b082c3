/* An HTTP/1.1 client on libuv for Prometheus: async DNS (uv_getaddrinfo), one keep-alive connection pool
 * per host:port, llhttp for responses (Content-Length and chunked), bounded sizes and times.
 * Only http:// for now (https:// -> UV_EPROTONOSUPPORT with a clear message). */
#ifndef PS_HTTP_CLIENT_H
#define PS_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PS_HTTP_MAX_RESPONSE       (32u << 20) /* body bytes by default; more -> UV_E2BIG (ps_http_set_body) */
#define PS_HTTP_MAX_HEADER_BYTES   (64u << 10)
#define PS_HTTP_MAX_URL            16384
#define PS_HTTP_MAX_IDLE_PER_HOST  4     /* keep-alive connections kept per host:port */
#define PS_HTTP_IDLE_TIMEOUT_MS    30000 /* idle keep-alive connections are closed after this */
/* Each address of a host gets at most this long (or the request timeout, if shorter) to accept the
 * connection before the next address is tried. */
#define PS_HTTP_CONNECT_TIMEOUT_MS 5000
/* A connection that has read this many bytes of a response stops reading for one loop turn before it
 * reads on, so that a large answer arriving faster than it is parsed (loopback, a full socket buffer)
 * cannot hold the loop: libuv reads up to 32 buffers in one go, 2 MiB of READ_BUF_SIZE reads. Measured by
 * tests/bench/prom_bench.c (2-core machine): prom.c decodes 130-330 MB/s, so a turn of 256 KiB costs 1-2
 * ms, and a 30 MB answer never more than 3 ms a turn (it was 860 ms in one callback). */
#define PS_HTTP_READ_BURST         (256u << 10)

struct ps_http_client;
struct ps_http_req;

struct ps_http_response {
  int status;       /* HTTP status code */
  const char *body; /* NUL-terminated; valid only during the callback; "" when streamed (ps_http_set_body) */
  size_t body_len;  /* 0 when streamed */
  const char *content_type; /* "" when absent */
};

/* Exactly one call per request, unless cancelled first. err is 0 (resp set, whatever the HTTP status) or
 * negative: UV_ECONNREFUSED, UV_ETIMEDOUT (connect or whole-request timeout), UV_EAI_* (DNS), UV_EMFILE
 * (ps_http_client_set_max_conns), UV_E2BIG (response over limits), UV_EPROTO (not HTTP), UV_ECONNRESET
 * (closed mid-response), UV_ECANCELED (client closing). errmsg says what happened in words, naming host:port
 * ("connect 127.0.0.1:9090: connection refused"); NULL when err is 0. */
typedef void (*ps_http_cb)(void *arg, int err, const char *errmsg, const struct ps_http_response *resp);

int ps_http_client_new(uv_loop_t *loop, struct ps_http_client **out);
/* Cancels pending requests (their callbacks run with UV_ECANCELED), closes every connection; the memory
 * goes in the close callbacks, so run the loop afterwards until it is empty. */
void ps_http_client_close(struct ps_http_client *c);

/* At most `max` connections open at once (connecting, busy or idle; 0: no limit, the default). A request
 * that needs one more closes the longest-idle keep-alive connection, or, when none is idle, fails at once
 * with UV_EMFILE. main.c sets it from RLIMIT_NOFILE (ps_net_fd_budget), so that outgoing connections can
 * never take the descriptors the listeners need: /healthz and KEDA's connection still get in. */
void ps_http_client_set_max_conns(struct ps_http_client *c, size_t max);

/* GET url (http://host[:port]/path?query). timeout_ms bounds connect + request + response.
 * Returns 0 (cb will be called later, never from inside this call) or UV_EINVAL (bad URL, timeout_ms 0) /
 * UV_EPROTONOSUPPORT (not http) / UV_ENOMEM / UV_ECANCELED (client closing), in which case cb is never
 * called.
 * *out (may be NULL) receives a handle for ps_http_cancel, valid until cb runs. */
int ps_http_get(struct ps_http_client *c, const char *url, uint64_t timeout_ms, ps_http_cb cb, void *arg,
                struct ps_http_req **out);
/* Receives the body of a response as it arrives, in the pieces the connection reads: 0, or a negative
 * error that ends the request with it. It must not call into the client (cancel, close, get). */
typedef int (*ps_http_body_cb)(void *arg, const char *data, size_t len);
/* Sets r's limit on body bytes (instead of PS_HTTP_MAX_RESPONSE), checked against Content-Length as the
 * headers arrive and against the bytes as they stream in: past it the request ends with UV_E2BIG. With
 * body_cb, the body goes to body_cb(body_arg, ...) as it arrives instead of being collected, so that a
 * caller can decode it without a copy of the whole. Call it right after ps_http_get returned r, before the
 * loop runs again. */
void ps_http_set_body(struct ps_http_req *r, size_t max_body, ps_http_body_cb body_cb, void *body_arg);
/* The callback will not run; the connection it used is closed (its response is not awaited). */
void ps_http_cancel(struct ps_http_req *r);

/* Splits an http URL; exposed for tests. host is unbracketed for IPv6. 0 or UV_EINVAL. */
int ps_http_url_split(const char *url, char *host, size_t hostlen, int *port, const char **path);

/* Parses data as the bytes a connection would receive for one GET, fed to the parser in pieces of at most
 * `piece` bytes (0: at once) and followed by EOF; exposed for tests and fuzzing (no I/O). 0 with *status
 * (may be NULL) and the body appended to *body (may be NULL), or the error the request would end with:
 * UV_EPROTO (not HTTP), UV_E2BIG (over a limit), UV_ECONNRESET (bytes end mid-response), UV_ENOMEM. */
struct ps_buf;
int ps_http_parse_response(const char *data, size_t len, size_t piece, int *status, struct ps_buf *body);

#endif
