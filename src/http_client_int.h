/* Private to src/http_client*.c: the client's state, shared by the request half (http_client.c:
 * lifecycle, request lifetime and timer, DNS), the connection half (http_client_conn.c: connections,
 * keep-alive, writing, reading), the fan-out (http_client_queue.c: per-server slots,
 * FIFO queues in classes, the connection budget's round-robin) and the response parser
 * (http_client_parse.c: llhttp callbacks, no socket). Not a contract for other modules: http_client.h is.
 *
 * Objects:
 *  - struct ps_http_client: the pool. Lists every live request and every open connection.
 *  - struct ps_http_req: one GET. Owns its whole-request timer (also used, armed at 0 ms, to deliver errors
 *    found while ps_http_get runs) and, while resolving, a uv_getaddrinfo_t. Freed when its timer is closed
 *    and no resolution is in flight.
 *  - struct pool: the fan-out state of one host:port (slots in use, FIFO queues per class); exists while a
 *    request of that host:port is queued or holds a slot. Connections are not tied to it (idle ones are
 *    found by their key).
 *  - struct conn: one TCP connection. Owns the socket, a timer (connect timeout while connecting, TLS
 *    handshake timeout, idle timeout while pooled), the request bytes being written, the read buffer and,
 *    for https, its TLS session and the encrypted writes in flight (http_client_tls.c). Freed in the close
 *    callbacks of both handles.
 * The client itself is freed when it has been closed and its last request and connection are gone. */
#ifndef PS_HTTP_CLIENT_INT_H
#define PS_HTTP_CLIENT_INT_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "hostport.h"
#include "http_client.h"
#include "list.h"

#define HOST_MAX             PS_HOSTPORT_HOST_MAX
#define HTTP_DEFAULT_PORT    80  /* RFC 9110 4.2.1 */
#define HTTPS_DEFAULT_PORT   443 /* RFC 9110 4.2.2 */
#define HOSTPORT_MAX         272 /* "[" host "]:" port */
#define ERRMSG_MAX           512
#define URL_IN_MSG_MAX       200 /* URLs in error messages are cut here: a PromQL query can be 16 KiB */
#define READ_BUF_SIZE        65536
#define HEADER_LINE_OVERHEAD 4 /* ": " and CRLF, counted per header toward PS_HTTP_MAX_HEADER_BYTES */

enum conn_state { CONN_CONNECTING, CONN_BUSY, CONN_IDLE, CONN_CLOSING };

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer; /* connect timeout, then idle timeout */
  uv_connect_t connect_req;
  uv_write_t write_req;
  struct ps_http_client *client;
  struct ps_list node; /* in client->conns, while not closing */
  enum conn_state state;
  int open_handles;        /* tcp + timer; the struct is freed when both are closed */
  char key[HOSTPORT_MAX];  /* "host:port" of the pool it belongs to */
  char peer[HOSTPORT_MAX]; /* the address connected to, for messages */
  struct ps_http_req *req; /* the request it serves; NULL when idle */
  bool reused;             /* served a request before this one */
  bool writing;            /* write_req in flight: wbuf must not change */
  struct ps_buf wbuf;      /* request bytes; owned by the conn, referenced by write_req while writing */
  llhttp_t parser;
  /* https only (tls_ctx NULL: plain). Connections are reused only by requests of the same host:port,
   * context and server name. */
  struct ps_tls_ctx *tls_ctx; /* not owned */
  char sni[HOST_MAX];         /* the name verified and sent as SNI */
  struct ps_tls *tls;         /* the session, from the TCP connect on; freed with the conn */
  bool tls_ready;             /* handshake done: request bytes go through ps_tls_write */
  bool tls_quiet;             /* closing: encrypted bytes (close_notify) are tried once, never queued */
  bool tls_stopped;           /* the bytes being decrypted are not for anyone any more (on_plain) */
  size_t tls_writes;          /* encrypted writes in flight */
  size_t tls_pending;         /* their bytes, at most PS_HTTP_TLS_MAX_PENDING */
  char rbuf[READ_BUF_SIZE];
};

struct pool {
  struct ps_list node; /* in client->pools */
  char key[HOSTPORT_MAX];
  char labels[2 * HOSTPORT_MAX + 16]; /* server="host:port", escaped */
  size_t inflight;                    /* slots held by its requests */
  size_t queued;
  struct ps_list queue[PS_HTTP_NCLASSES]; /* of ps_http_req.qnode, oldest first */
};

struct ps_http_req {
  struct ps_http_client *client;
  struct ps_list node; /* in client->reqs, until finished */
  ps_http_cb cb;
  void *arg;
  uint64_t timeout_ms;
  uint64_t queue_timeout_ms;
  enum ps_http_class cls;
  struct pool *pool;    /* set while queued or holding a slot */
  struct ps_list qnode; /* in pool->queue[cls] while queued */
  bool queued;
  bool has_slot;
  uint64_t queued_at; /* uv_now when it joined the queue */
  char *url;          /* owned copy; path points into it */
  char *headers;      /* owned copy of ps_http_opts.headers, checked; NULL: none */
  const char *path;
  char host[HOST_MAX];
  int port;
  char hostport[HOSTPORT_MAX]; /* pool key and Host header value source */
  struct ps_tls_ctx *tls_ctx;  /* https: the context (not owned); NULL: plain http */
  char sni[HOST_MAX];          /* https: the server name to verify */
  uv_timer_t timer;            /* whole-request timeout, or 0 ms for a deferred error */
  uv_getaddrinfo_t gai;
  bool resolving; /* gai in flight: the struct must outlive its callback */
  bool timer_open;
  struct addrinfo *addrs;     /* owned; freed with uv_freeaddrinfo */
  struct addrinfo *next_addr; /* next address to try */
  struct conn *conn;
  bool done;               /* callback ran, or cancelled: nothing more may happen */
  bool retried;            /* already retried once after a stale keep-alive connection */
  int pending_err;         /* deferred error, delivered by the 0 ms timer */
  char errmsg[ERRMSG_MAX]; /* pending_err's message, or the last connect error */
  int last_connect_err;
  /* response being parsed */
  bool got_bytes;
  bool complete;
  int parse_err; /* set by a parser callback that refused the response (limits, status) */
  size_t header_bytes;
  int status;
  size_t max_body;         /* body limit; 0: PS_HTTP_MAX_RESPONSE */
  ps_http_body_cb body_cb; /* NULL: the body is collected in `body` */
  void *body_arg;
  size_t body_seen; /* body bytes of this response so far, collected or streamed */
  struct ps_buf body;
  struct ps_buf hname, hval; /* current header, accumulated across reads */
  struct ps_buf content_type;
};

struct ps_http_client {
  uv_loop_t *loop;
  struct ps_list reqs;  /* of ps_http_req.node */
  struct ps_list conns; /* of conn.node */
  struct ps_list pools; /* of pool.node; served round-robin when the connection budget binds */
  size_t live;          /* requests + connections not yet freed */
  size_t max_inflight, max_conns;
  size_t inflight, queued, nconns; /* slots held, requests waiting, connections open (in conns) */
  size_t peak_inflight, peak_conns;
  size_t tls_handshakes;
  size_t burst; /* response bytes read by all connections since reading last paused (PS_HTTP_READ_BURST) */
  struct ps_tls_ctx *tls_default; /* owned: https without ps_http_opts.tls (ps_http_client_tls_init) */
  bool closing;
};

/* ---- http_client.c ---- */

/* Sends a request that holds a slot (http_client.c, as it picks or opens the connection). */
void ps_hc_req_start(struct ps_http_req *r);
/* The request timer's callback: a deferred error, the queue bound, or the whole-request timeout. */
void ps_hc_req_timer_cb(uv_timer_t *t);
/* Delivers r's one callback (on error r->errmsg holds the message) and lets r go. */
void ps_hc_req_finish(struct ps_http_req *r, int err, const struct ps_http_response *resp);
/* An error found while ps_http_get may be on the stack: delivered from a 0 ms timer. */
void ps_hc_req_defer_error(struct ps_http_req *r, int err);
/* Resolves r's host with uv_getaddrinfo, then connects (ps_hc_req_connect_next). */
void ps_hc_req_resolve(struct ps_http_req *r);
/* Frees a closing client once nothing it opened is left. */
void ps_hc_client_maybe_free(struct ps_http_client *c);
/* For http_client_conn.c and http_client_tls.c: the request's end with a message. */
void ps_hc_req_fail(struct ps_http_req *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- http_client_conn.c ---- */

/* An idle connection that may carry r (same host:port, TLS context and server name), or NULL. */
struct conn *ps_hc_pool_take_idle(struct ps_http_client *c, const struct ps_http_req *r);
/* Connects r to the next address left from resolution, or finishes it with the last error. */
void ps_hc_req_connect_next(struct ps_http_req *r);
/* For http_client.c and http_client_tls.c: closing a connection; sending r's bytes on a connection ready
 * for them; response bytes (decrypted) of cn's request: 0 to read on, else cn was handed back or closed;
 * the end of reading (nread < 0); a write that failed. */
void ps_hc_conn_close(struct conn *cn);
void ps_hc_conn_send(struct conn *cn, struct ps_http_req *r);
int ps_hc_conn_response_bytes(struct conn *cn, const char *data, size_t len);
void ps_hc_read_failed(struct conn *cn, int nread);
void ps_hc_write_failed(struct conn *cn, int status);
void ps_hc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void ps_hc_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- http_client_tls.c ---- */

/* The TCP connection of an https request is up: starts the handshake (ClientHello, handshake timer). The
 * request is sent once it completes. Errors end cn's request. */
void ps_hc_tls_begin(struct conn *cn);
/* Encrypted bytes read from cn's socket. */
void ps_hc_tls_read(struct conn *cn, const char *data, size_t len);
/* Encrypts and writes cn->wbuf (the request). 0 or a negative error (nothing deferred). */
int ps_hc_tls_send(struct conn *cn);
/* Before the socket closes: close_notify (RFC 8446 6.1), best effort, never waited for. */
void ps_hc_tls_close(struct conn *cn);
/* Frees the session (the conn's memory goes). */
void ps_hc_tls_free(struct conn *cn);
/* The client's default context, loaded now if it was not. NULL when the system CAs fail to load. */
struct ps_tls_ctx *ps_hc_tls_default(struct ps_http_client *c, char *err, size_t errlen);

/* ---- http_client_queue.c ---- */

/* Leaves the queue for good; a no-op when not queued. */
void ps_hc_queue_leave(struct ps_http_req *r);
/* Gives back the slot r holds, freeing its pool when nothing else refers to it. */
void ps_hc_slot_release(struct ps_http_req *r);
/* Starts waiting requests while slots are free. */
void ps_hc_client_pump(struct ps_http_client *c);

/* ---- http_client_parse.c ---- */

/* ps_http_url_split, also saying whether the scheme is https. */
int ps_hc_url_split(const char *url, char *host, size_t hostlen, int *port, const char **path, bool *https);

/* The llhttp callbacks: the parser's data is the request it parses for. */
extern const llhttp_settings_t ps_hc_parser_settings;
void ps_hc_req_bufs_init(struct ps_http_req *r);
void ps_hc_req_bufs_free(struct ps_http_req *r);
/* Forgets a response parsed so far (a new request on the connection, or an interim 1xx). */
void ps_hc_req_reset_response(struct ps_http_req *r);
/* At EOF: whether the response is complete, a body delimited by the close of the connection (RFC 9112
 * 6.3 item 8) ending here. */
bool ps_hc_complete_at_eof(llhttp_t *p, const struct ps_http_req *r);

#endif
