/* Private to src/http_client*.c: the client's state, shared by the connection half (http_client.c:
 * lifecycle, DNS, connections, keep-alive, reading), the fan-out (http_client_queue.c: per-server slots,
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
 *  - struct conn: one TCP connection. Owns the socket, a timer (connect timeout while connecting, idle
 *    timeout while pooled), the request bytes being written and the read buffer. Freed in the close
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
  size_t burst;            /* response bytes read since reading last paused (PS_HTTP_READ_BURST) */
  struct ps_buf wbuf;      /* request bytes; owned by the conn, referenced by write_req while writing */
  llhttp_t parser;
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
  bool closing;
};

/* ---- http_client.c ---- */

/* Sends a request that holds a slot (http_client.c, as it picks or opens the connection). */
void ps_hc_req_start(struct ps_http_req *r);
/* The request timer's callback: a deferred error, the queue bound, or the whole-request timeout. */
void ps_hc_req_timer_cb(uv_timer_t *t);

/* ---- http_client_queue.c ---- */

/* Leaves the queue for good; a no-op when not queued. */
void ps_hc_queue_leave(struct ps_http_req *r);
/* Gives back the slot r holds, freeing its pool when nothing else refers to it. */
void ps_hc_slot_release(struct ps_http_req *r);
/* Starts waiting requests while slots are free. */
void ps_hc_client_pump(struct ps_http_client *c);

/* ---- http_client_parse.c ---- */

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
