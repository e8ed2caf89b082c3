/* HTTP/1.1 client on libuv (RFC 9110, RFC 9112) for talking to Prometheus.
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
#include "http_client.h"

#include <ctype.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hostport.h"
#include "list.h"
#include "metrics.h"

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

static void conn_close(struct conn *cn);
static void req_finish(struct ps_http_req *r, int err, const struct ps_http_response *resp);
static void req_resolve(struct ps_http_req *r);
static void req_connect_next(struct ps_http_req *r);
static void conn_send(struct conn *cn, struct ps_http_req *r);
static void client_pump(struct ps_http_client *c);
static void queue_leave(struct ps_http_req *r);
static void slot_release(struct ps_http_req *r);
static const llhttp_settings_t parser_settings;

/* ==== URL splitting ================================================================================ */

int ps_http_url_split(const char *url, char *host, size_t hostlen, int *port, const char **path) {
  if (url == NULL || strncasecmp(url, "http://", 7) != 0) return UV_EINVAL;
  size_t ulen = strlen(url);
  if (ulen > PS_HTTP_MAX_URL) return UV_EINVAL;
  /* Bytes that may never appear raw in a request line (RFC 3986 2, RFC 9112 3): refuse rather than send. */
  for (size_t i = 0; i < ulen; i++) {
    unsigned char ch = (unsigned char)url[i];
    if (ch <= 0x20 || ch >= 0x7f || ch == '#') return UV_EINVAL;
  }
  const char *a = url + 7;
  const char *aend = a + strcspn(a, "/?");
  if (*aend == '?') return UV_EINVAL; /* "http://h?x": a query needs a path to hang on */
  if (memchr(a, '@', (size_t)(aend - a)) != NULL) return UV_EINVAL; /* userinfo: never for Prometheus */
  int pt;
  if (ps_hostport_parse(a, (size_t)(aend - a), PS_HOSTPORT_PORT_OPTIONAL, host, hostlen, &pt) != 0)
    return UV_EINVAL;
  *port = pt == PS_HOSTPORT_NO_PORT ? HTTP_DEFAULT_PORT : pt;
  *path = *aend == '\0' ? "/" : aend;
  return 0;
}

/* ==== client lifecycle ============================================================================= */

int ps_http_client_new(uv_loop_t *loop, struct ps_http_client **out) {
  struct ps_http_client *c = calloc(1, sizeof *c);
  if (c == NULL) return UV_ENOMEM;
  c->loop = loop;
  c->max_inflight = PS_HTTP_DEFAULT_MAX_INFLIGHT;
  c->max_conns = PS_HTTP_MAX_CONNS;
  ps_metrics_declare("prescale_prometheus_inflight", PS_METRIC_GAUGE,
                     "Requests to a Prometheus server in flight (at most --prometheus-max-inflight).");
  ps_metrics_declare(
      "prescale_prometheus_queued", PS_METRIC_GAUGE,
      "Requests to a Prometheus server waiting for one of its --prometheus-max-inflight slots.");
  ps_metrics_declare("prescale_prometheus_connections", PS_METRIC_GAUGE,
                     "Open connections to Prometheus servers (busy, connecting and idle), all servers.");
  ps_metrics_declare("prescale_prometheus_connections_limit", PS_METRIC_GAUGE,
                     "Budget of connections to Prometheus servers (a share of RLIMIT_NOFILE).");
  ps_metrics_declare("prescale_prometheus_request_timeouts_total", PS_METRIC_COUNTER,
                     "Requests to Prometheus that timed out after being sent.");
  ps_metrics_declare("prescale_prometheus_queue_timeouts_total", PS_METRIC_COUNTER,
                     "Requests to Prometheus dropped after waiting their bound in the queue, never sent.");
  ps_metrics_add("prescale_prometheus_request_timeouts_total", "", 0);
  ps_metrics_add("prescale_prometheus_queue_timeouts_total", "", 0);
  ps_metrics_set("prescale_prometheus_connections", "", 0);
  ps_metrics_set("prescale_prometheus_connections_limit", "", (double)c->max_conns);
  *out = c;
  return 0;
}

void ps_http_client_set_limits(struct ps_http_client *c, size_t max_inflight, size_t max_conns) {
  if (max_inflight < 1) max_inflight = 1;
  if (max_inflight > PS_HTTP_MAX_MAX_INFLIGHT) max_inflight = PS_HTTP_MAX_MAX_INFLIGHT;
  if (max_conns < 1) max_conns = 1;
  if (max_conns > PS_HTTP_MAX_CONNS) max_conns = PS_HTTP_MAX_CONNS;
  c->max_inflight = max_inflight;
  c->max_conns = max_conns;
  ps_metrics_set("prescale_prometheus_connections_limit", "", (double)max_conns);
}

void ps_http_client_stats(const struct ps_http_client *c, struct ps_http_stats *out) {
  out->inflight = c->inflight;
  out->queued = c->queued;
  out->conns = c->nconns;
  out->peak_inflight = c->peak_inflight;
  out->peak_conns = c->peak_conns;
}

static void client_maybe_free(struct ps_http_client *c) {
  if (c->closing && c->live == 0) free(c);
}

void ps_http_client_close(struct ps_http_client *c) {
  if (c == NULL || c->closing) return;
  c->closing = true;
  /* Callbacks run from here may start new requests; ps_http_get refuses them once closing is set, so
   * this loop ends. */
  for (struct ps_list *n; (n = ps_list_first(&c->reqs)) != NULL;) {
    struct ps_http_req *r = ps_list_entry(n, struct ps_http_req, node);
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: cancelled: HTTP client closing", URL_IN_MSG_MAX, r->url);
    req_finish(r, UV_ECANCELED, NULL);
  }
  for (struct ps_list *n; (n = ps_list_first(&c->conns)) != NULL;)
    conn_close(ps_list_entry(n, struct conn, node));
  client_maybe_free(c); /* now, if nothing was open; otherwise in the last close callback */
}

/* ==== requests: lifetime =========================================================================== */

/* The buffers a response is parsed into (ps_http_get's requests and ps_http_parse_response's). */
static void req_bufs_init(struct ps_http_req *r) {
  ps_buf_init(&r->body);
  ps_buf_init(&r->hname);
  ps_buf_init(&r->hval);
  ps_buf_init(&r->content_type);
}

static void req_bufs_free(struct ps_http_req *r) {
  ps_buf_free(&r->body);
  ps_buf_free(&r->hname);
  ps_buf_free(&r->hval);
  ps_buf_free(&r->content_type);
}

static void req_free_if_unused(struct ps_http_req *r) {
  if (r->timer_open || r->resolving) return;
  struct ps_http_client *c = r->client;
  if (r->addrs != NULL) uv_freeaddrinfo(r->addrs);
  free(r->url);
  req_bufs_free(r);
  free(r);
  c->live--;
  client_maybe_free(c);
}

static void req_timer_closed(uv_handle_t *h) {
  struct ps_http_req *r = h->data;
  r->timer_open = false;
  req_free_if_unused(r);
}

/* Marks the request finished and unlinks it from everything, so that a callback which re-enters the
 * client (a new request, a cancel, closing the client) finds a consistent state. */
static void req_detach(struct ps_http_req *r) {
  r->done = true;
  ps_list_remove(&r->node);
  queue_leave(r);
  if (r->resolving) uv_cancel((uv_req_t *)&r->gai); /* may fail if already running; gai_cb checks done */
  if (r->conn != NULL) {
    struct conn *cn = r->conn;
    r->conn = NULL;
    cn->req = NULL;
    conn_close(cn);
  }
  uv_timer_stop(&r->timer);
  /* Its slot goes to the next request waiting (none is started from here while the client closes). */
  if (r->has_slot) {
    slot_release(r);
    client_pump(r->client);
  }
}

static void req_release(struct ps_http_req *r) {
  if (r->timer_open && !uv_is_closing((uv_handle_t *)&r->timer))
    uv_close((uv_handle_t *)&r->timer, req_timer_closed);
}

/* Delivers the one callback. On error r->errmsg holds the message. */
static void req_finish(struct ps_http_req *r, int err, const struct ps_http_response *resp) {
  if (r->done) return;
  req_detach(r);
  r->cb(r->arg, err, err != 0 ? r->errmsg : NULL, err != 0 ? NULL : resp);
  req_release(r);
}

static void req_fail(struct ps_http_req *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void req_fail(struct ps_http_req *r, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
  va_end(ap);
  req_finish(r, err, NULL);
}

/* Errors found while ps_http_get is still on the stack go through a 0 ms timer: the contract promises
 * the callback never runs from inside ps_http_get. */
static void req_timer_cb(uv_timer_t *t);
static void req_defer_error(struct ps_http_req *r, int err) {
  r->pending_err = err;
  uv_timer_stop(&r->timer);
  uv_timer_start(&r->timer, req_timer_cb, 0, 0);
}

static void req_timer_cb(uv_timer_t *t) {
  struct ps_http_req *r = t->data;
  if (r->pending_err != 0) {
    req_finish(r, r->pending_err, NULL);
    return;
  }
  if (r->queued) {
    ps_metrics_add("prescale_prometheus_queue_timeouts_total", "", 1);
    req_fail(r, PS_HTTP_ERR_QUEUE_TIMEOUT,
             "GET %.*s: not sent: waited %llu ms for one of the %zu request slots of %s "
             "(--prometheus-max-inflight), %zu requests queued",
             URL_IN_MSG_MAX, r->url, (unsigned long long)(uv_now(r->client->loop) - r->queued_at),
             r->client->max_inflight, r->hostport, r->pool->queued);
    return;
  }
  ps_metrics_add("prescale_prometheus_request_timeouts_total", "", 1);
  req_fail(r, UV_ETIMEDOUT, "GET %.*s: timed out after %llu ms", URL_IN_MSG_MAX, r->url,
           (unsigned long long)r->timeout_ms);
}

void ps_http_set_body(struct ps_http_req *r, size_t max_body, ps_http_body_cb body_cb, void *body_arg) {
  r->max_body = max_body;
  r->body_cb = body_cb;
  r->body_arg = body_arg;
}

void ps_http_cancel(struct ps_http_req *r) {
  if (r == NULL || r->done) return;
  req_detach(r);
  req_release(r);
}

/* ==== requests: start, DNS ========================================================================= */

static struct conn *pool_take_idle(struct ps_http_client *c, const char *key) {
  ps_list_foreach(n, &c->conns) {
    struct conn *cn = ps_list_entry(n, struct conn, node);
    if (cn->state == CONN_IDLE && strcmp(cn->key, key) == 0) return cn;
  }
  return NULL;
}

/* ==== fan-out: slots and queues ==================================================================== */

static void pool_metrics(const struct pool *p) {
  ps_metrics_set("prescale_prometheus_inflight", p->labels, (double)p->inflight);
  ps_metrics_set("prescale_prometheus_queued", p->labels, (double)p->queued);
}

/* The pool of key, created when absent; NULL when out of memory. */
static struct pool *pool_get(struct ps_http_client *c, const char *key) {
  ps_list_foreach(n, &c->pools) {
    struct pool *p = ps_list_entry(n, struct pool, node);
    if (strcmp(p->key, key) == 0) return p;
  }
  struct pool *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  snprintf(p->key, sizeof p->key, "%s", key);
  char esc[2 * HOSTPORT_MAX];
  ps_metrics_escape_label(esc, sizeof esc, key);
  snprintf(p->labels, sizeof p->labels, "server=\"%s\"", esc);
  ps_list_insert_tail(&c->pools, &p->node);
  return p;
}

/* A pool with nothing queued and no slot held goes (idle connections are found by key, not by pool). */
static void pool_maybe_free(struct pool *p) {
  if (p->inflight > 0 || p->queued > 0) return;
  ps_metrics_remove("prescale_prometheus_inflight", p->labels);
  ps_metrics_remove("prescale_prometheus_queued", p->labels);
  ps_list_remove(&p->node);
  free(p);
}

static bool slot_free(const struct ps_http_client *c, const struct pool *p) {
  /* Each slot holds at most one connection, so c->inflight bounds the busy connections in all. */
  return p->inflight < c->max_inflight && c->inflight < c->max_conns;
}

static void slot_take(struct ps_http_req *r, struct pool *p) {
  struct ps_http_client *c = r->client;
  r->pool = p;
  r->has_slot = true;
  p->inflight++;
  c->inflight++;
  if (p->inflight > c->peak_inflight) c->peak_inflight = p->inflight;
  pool_metrics(p);
}

static void slot_release(struct ps_http_req *r) {
  struct pool *p = r->pool;
  r->has_slot = false;
  r->pool = NULL;
  p->inflight--;
  r->client->inflight--;
  pool_metrics(p);
  pool_maybe_free(p);
}

static void queue_join(struct ps_http_req *r, struct pool *p) {
  struct ps_http_client *c = r->client;
  r->pool = p;
  r->queued = true;
  r->queued_at = uv_now(c->loop);
  ps_list_insert_tail(&p->queue[r->cls], &r->qnode);
  p->queued++;
  c->queued++;
  pool_metrics(p);
  uv_timer_start(&r->timer, req_timer_cb, r->queue_timeout_ms, 0);
}

/* Leaves the queue, keeping r->pool (it is about to take a slot there). */
static void queue_unlink(struct ps_http_req *r) {
  struct pool *p = r->pool;
  ps_list_remove(&r->qnode);
  r->queued = false;
  p->queued--;
  r->client->queued--;
}

/* Leaves the queue for good (cancel, failure, client closing); a no-op when not queued. */
static void queue_leave(struct ps_http_req *r) {
  if (!r->queued) return;
  struct pool *p = r->pool;
  queue_unlink(r);
  r->pool = NULL;
  pool_metrics(p);
  pool_maybe_free(p);
}

/* Sends a request that holds a slot: its whole-request timeout starts now, so time spent queued never
 * counts against it. Errors are deferred (this may run inside ps_http_get). */
static void req_start(struct ps_http_req *r) {
  uv_timer_stop(&r->timer);
  uv_timer_start(&r->timer, req_timer_cb, r->timeout_ms, 0);
  struct conn *cn = pool_take_idle(r->client, r->hostport);
  if (cn != NULL) {
    conn_send(cn, r); /* failures there are deferred */
    return;
  }
  req_resolve(r);
}

/* The oldest request of p's highest class waiting, moved from the queue to a slot and started. */
static void pool_start_one(struct pool *p, struct ps_http_client *c) {
  for (int k = 0; k < PS_HTTP_NCLASSES; k++) {
    struct ps_list *n = ps_list_first(&p->queue[k]);
    if (n == NULL) continue;
    struct ps_http_req *r = ps_list_entry(n, struct ps_http_req, qnode);
    queue_unlink(r);
    slot_take(r, p);
    req_start(r);
    return;
  }
}

/* Starts waiting requests while slots are free: one per pool per round, so that when the connection
 * budget (not the per-server cap) binds, the servers share it round-robin. Nothing here calls a request's
 * callback or frees a pool (req_start defers its errors), so the walk is safe. */
static void client_pump(struct ps_http_client *c) {
  if (c->closing) return;
  bool started = true;
  while (started && c->queued > 0 && c->inflight < c->max_conns) {
    started = false;
    ps_list_foreach(n, &c->pools) {
      struct pool *p = ps_list_entry(n, struct pool, node);
      if (p->queued > 0 && slot_free(c, p)) {
        pool_start_one(p, c);
        started = true;
      }
    }
  }
}

int ps_http_get(struct ps_http_client *c, const char *url, uint64_t timeout_ms, ps_http_cb cb, void *arg,
                struct ps_http_req **out) {
  struct ps_http_opts o = {.timeout_ms = timeout_ms, .queue_timeout_ms = 0, .cls = PS_HTTP_URGENT};
  return ps_http_get_opts(c, url, &o, cb, arg, out);
}

int ps_http_get_opts(struct ps_http_client *c, const char *url, const struct ps_http_opts *o, ps_http_cb cb,
                     void *arg, struct ps_http_req **out) {
  if (out != NULL) *out = NULL;
  if (c == NULL || url == NULL || cb == NULL || o == NULL || o->timeout_ms == 0 || o->cls < 0 ||
      o->cls >= PS_HTTP_NCLASSES)
    return UV_EINVAL;
  uint64_t timeout_ms = o->timeout_ms;
  /* A scheme other than http (RFC 3986 3.1: a letter, then letters, digits, '+', '-', '.') is refused as
   * unsupported rather than malformed, so "https://" gets the clearer error. */
  size_t slen = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
  if (slen > 0 && isalpha((unsigned char)url[0]) && strncmp(url + slen, "://", 3) == 0 &&
      !(slen == 4 && strncasecmp(url, "http", 4) == 0))
    return UV_EPROTONOSUPPORT;
  if (c->closing) return UV_ECANCELED;
  struct ps_http_req *r = calloc(1, sizeof *r);
  if (r == NULL) return UV_ENOMEM;
  r->url = strdup(url);
  if (r->url == NULL) {
    free(r);
    return UV_ENOMEM;
  }
  if (ps_http_url_split(r->url, r->host, sizeof r->host, &r->port, &r->path) != 0) {
    free(r->url);
    free(r);
    return UV_EINVAL;
  }
  ps_hostport_format(r->hostport, sizeof r->hostport, r->host, r->port);
  struct pool *p = c->queued < PS_HTTP_MAX_QUEUED ? pool_get(c, r->hostport) : NULL;
  if (p == NULL) {
    free(r->url);
    free(r);
    return c->queued < PS_HTTP_MAX_QUEUED ? UV_ENOMEM : UV_ENOBUFS;
  }
  r->client = c;
  r->cb = cb;
  r->arg = arg;
  r->timeout_ms = timeout_ms;
  r->queue_timeout_ms = o->queue_timeout_ms != 0 ? o->queue_timeout_ms : timeout_ms;
  r->cls = o->cls;
  ps_list_init(&r->qnode);
  req_bufs_init(r);
  uv_timer_init(c->loop, &r->timer); /* cannot fail for timers */
  r->timer.data = r;
  r->timer_open = true;
  ps_list_insert_head(&c->reqs, &r->node);
  c->live++;
  if (out != NULL) *out = r;
  /* Straight to a slot only when nobody of this server waits: the queue is first come, first served. */
  if (p->queued == 0 && slot_free(c, p)) {
    slot_take(r, p);
    req_start(r);
  } else {
    queue_join(r, p);
  }
  return 0;
}

static void gai_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
  struct ps_http_req *r = g->data;
  r->resolving = false;
  if (r->done) {
    if (res != NULL) uv_freeaddrinfo(res);
    req_free_if_unused(r);
    return;
  }
  if (status != 0) {
    req_fail(r, status, "resolve %s: %s", r->hostport, uv_strerror(status));
    return;
  }
  if (r->addrs != NULL) uv_freeaddrinfo(r->addrs);
  r->addrs = res;
  r->next_addr = res;
  r->last_connect_err = 0;
  req_connect_next(r);
}

/* Resolves r->host with uv_getaddrinfo: numeric hosts go through it too, which keeps one path and never
 * blocks. Called from ps_http_get (errors deferred) and from retry paths inside callbacks. */
static void req_resolve(struct ps_http_req *r) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV;
  char svc[8];
  snprintf(svc, sizeof svc, "%d", r->port);
  r->gai.data = r;
  int err = uv_getaddrinfo(r->client->loop, &r->gai, gai_cb, r->host, svc, &hints);
  if (err != 0) {
    snprintf(r->errmsg, sizeof r->errmsg, "resolve %s: %s", r->hostport, uv_strerror(err));
    req_defer_error(r, err);
    return;
  }
  r->resolving = true;
}

/* ==== connections ================================================================================== */

static void conn_handle_closed(uv_handle_t *h) {
  struct conn *cn = h->data;
  if (--cn->open_handles > 0) return;
  struct ps_http_client *c = cn->client;
  ps_buf_free(&cn->wbuf);
  free(cn);
  c->live--;
  client_maybe_free(c);
}

/* Closes the socket and the timer; a write or connect in flight gets UV_ECANCELED first. The request it
 * served, if any, must have been dealt with by the caller (it is only unlinked here). */
static void conn_close(struct conn *cn) {
  if (cn->state == CONN_CLOSING) return;
  ps_list_remove(&cn->node);
  /* uv_close closes a stream's descriptor at once (the handle's memory waits for the callback). */
  cn->client->nconns--;
  ps_metrics_set("prescale_prometheus_connections", "", (double)cn->client->nconns);
  cn->state = CONN_CLOSING;
  if (cn->req != NULL) {
    cn->req->conn = NULL;
    cn->req = NULL;
  }
  uv_close((uv_handle_t *)&cn->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&cn->timer, conn_handle_closed);
}

static struct conn *conn_new(struct ps_http_client *c, const char *key) {
  struct conn *cn = malloc(sizeof *cn);
  if (cn == NULL) return NULL;
  memset(cn, 0, offsetof(struct conn, rbuf));
  if (uv_tcp_init(c->loop, &cn->tcp) != 0) {
    free(cn);
    return NULL;
  }
  uv_timer_init(c->loop, &cn->timer);
  cn->tcp.data = cn->timer.data = cn;
  cn->open_handles = 2;
  cn->client = c;
  cn->state = CONN_CONNECTING;
  snprintf(cn->key, sizeof cn->key, "%s", key);
  ps_buf_init(&cn->wbuf);
  ps_list_insert_head(&c->conns, &cn->node);
  c->live++;
  if (++c->nconns > c->peak_conns) c->peak_conns = c->nconns;
  ps_metrics_set("prescale_prometheus_connections", "", (double)c->nconns);
  return cn;
}

/* At the connection budget, the idle connection parked longest ago (any server) makes room: busy ones
 * are bounded by the slots, which stay under the budget, so there is always one when the budget is full. */
static void conns_make_room(struct ps_http_client *c) {
  if (c->nconns < c->max_conns) return;
  for (struct ps_list *n = c->conns.prev; n != NULL && n != &c->conns; n = n->prev) {
    struct conn *cn = ps_list_entry(n, struct conn, node);
    if (cn->state == CONN_IDLE) {
      conn_close(cn);
      return;
    }
  }
}

static void connect_failed(struct conn *cn, int err, const char *what) {
  struct ps_http_req *r = cn->req;
  conn_close(cn);
  if (r == NULL) return;
  r->last_connect_err = err;
  snprintf(r->errmsg, sizeof r->errmsg, "connect %s: %s", cn->peer, what);
  req_connect_next(r);
}

/* How long one address may take to accept: PS_HTTP_CONNECT_TIMEOUT_MS, or the request's timeout if
 * shorter. */
static uint64_t connect_timeout_ms(const struct ps_http_req *r) {
  return r->timeout_ms < PS_HTTP_CONNECT_TIMEOUT_MS ? r->timeout_ms : PS_HTTP_CONNECT_TIMEOUT_MS;
}

static void connect_timer_cb(uv_timer_t *t) {
  struct conn *cn = t->data;
  char what[64];
  uint64_t ms = cn->req != NULL ? connect_timeout_ms(cn->req) : PS_HTTP_CONNECT_TIMEOUT_MS;
  snprintf(what, sizeof what, "timed out after %llu ms", (unsigned long long)ms);
  connect_failed(cn, UV_ETIMEDOUT, what);
}

static void connect_cb(uv_connect_t *creq, int status) {
  struct conn *cn = creq->data;
  if (status == UV_ECANCELED || cn->state == CONN_CLOSING) return;
  uv_timer_stop(&cn->timer);
  if (cn->req == NULL) { /* its request went away meanwhile */
    conn_close(cn);
    return;
  }
  if (status != 0) {
    connect_failed(cn, status, uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&cn->tcp, 1);
  conn_send(cn, cn->req);
}

/* Tries the addresses left from resolution in order (RFC 6724 order from getaddrinfo), so a host whose
 * first address refuses or blackholes still works through the next. */
static void req_connect_next(struct ps_http_req *r) {
  while (r->next_addr != NULL) {
    struct addrinfo *ai = r->next_addr;
    r->next_addr = ai->ai_next;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    conns_make_room(r->client);
    struct conn *cn = conn_new(r->client, r->hostport);
    if (cn == NULL) {
      req_fail(r, UV_ENOMEM, "GET %.*s: out of memory", URL_IN_MSG_MAX, r->url);
      return;
    }
    char ip[64] = "?";
    int port = r->port;
    if (ai->ai_family == AF_INET)
      uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
    else
      uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
    ps_hostport_format(cn->peer, sizeof cn->peer, ip, port);
    cn->req = r;
    r->conn = cn;
    cn->connect_req.data = cn;
    int err = uv_tcp_connect(&cn->connect_req, &cn->tcp, ai->ai_addr, connect_cb);
    if (err != 0) {
      r->last_connect_err = err;
      snprintf(r->errmsg, sizeof r->errmsg, "connect %s: %s", cn->peer, uv_strerror(err));
      conn_close(cn);
      continue;
    }
    uv_timer_start(&cn->timer, connect_timer_cb, connect_timeout_ms(r), 0);
    return;
  }
  int err = r->last_connect_err != 0 ? r->last_connect_err : UV_EADDRNOTAVAIL;
  if (r->last_connect_err == 0)
    snprintf(r->errmsg, sizeof r->errmsg, "connect %s: no usable address", r->hostport);
  req_finish(r, err, NULL);
}

static void idle_timer_cb(uv_timer_t *t) { conn_close(t->data); }

/* Parks a connection after a complete response, or closes it when the pool for its host is full. */
static void conn_park(struct conn *cn) {
  struct ps_http_client *c = cn->client;
  int idle = 0;
  ps_list_foreach(n, &c->conns) {
    const struct conn *o = ps_list_entry(n, struct conn, node);
    if (o->state == CONN_IDLE && strcmp(o->key, cn->key) == 0) idle++;
  }
  if (c->closing || idle >= PS_HTTP_MAX_IDLE_PER_HOST) {
    conn_close(cn);
    return;
  }
  cn->state = CONN_IDLE;
  cn->reused = true;
  ps_list_remove(&cn->node); /* newest parked first: conns_make_room takes from the other end */
  ps_list_insert_head(&c->conns, &cn->node);
  uv_timer_start(&cn->timer, idle_timer_cb, PS_HTTP_IDLE_TIMEOUT_MS, 0);
  /* Reading continues while idle: an EOF then means the server closed it, and it leaves the pool. */
}

/* A reused keep-alive connection that fails before any response byte was probably closed by the server
 * while idle (RFC 9112 9.3.1 allows retrying idempotent requests then). GET is idempotent: retry once on
 * a fresh connection. Returns true when it took over the request. */
static bool maybe_retry(struct conn *cn) {
  struct ps_http_req *r = cn->req;
  if (r == NULL || !cn->reused || r->got_bytes || r->retried) return false;
  r->retried = true;
  conn_close(cn);
  req_resolve(r);
  return true;
}

/* ==== request writing ============================================================================== */

static void write_cb(uv_write_t *w, int status) {
  struct conn *cn = w->data;
  cn->writing = false;
  if (status == UV_ECANCELED || cn->state == CONN_CLOSING) return;
  if (status != 0 && cn->req != NULL) {
    if (maybe_retry(cn)) return;
    struct ps_http_req *r = cn->req;
    req_fail(r, status, "send to %s: %s", cn->peer, uv_strerror(status));
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct conn *cn = h->data;
  buf->base = cn->rbuf;
  buf->len = sizeof cn->rbuf;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void req_reset_response(struct ps_http_req *r) {
  r->got_bytes = false;
  r->complete = false;
  r->parse_err = 0;
  r->header_bytes = 0;
  r->status = 0;
  r->body_seen = 0;
  ps_buf_reset(&r->body);
  ps_buf_reset(&r->hname);
  ps_buf_reset(&r->hval);
  ps_buf_reset(&r->content_type);
}

/* Sends r on cn (fresh or idle). Errors are deferred through the request timer, because this runs from
 * inside ps_http_get when an idle connection is reused. */
static void conn_send(struct conn *cn, struct ps_http_req *r) {
  uv_timer_stop(&cn->timer);
  cn->state = CONN_BUSY;
  cn->req = r;
  cn->burst = 0;
  r->conn = cn;
  req_reset_response(r);
  if (cn->peer[0] == '\0') snprintf(cn->peer, sizeof cn->peer, "%s", r->hostport);
  llhttp_init(&cn->parser, HTTP_RESPONSE, &parser_settings);
  cn->parser.data = r;
  ps_buf_reset(&cn->wbuf);
  /* Host carries the port unless it is the default (RFC 9110 7.2). */
  char hosthdr[HOSTPORT_MAX];
  if (r->port != HTTP_DEFAULT_PORT)
    snprintf(hosthdr, sizeof hosthdr, "%s", r->hostport);
  else if (strchr(r->host, ':') != NULL)
    snprintf(hosthdr, sizeof hosthdr, "[%s]", r->host);
  else
    snprintf(hosthdr, sizeof hosthdr, "%s", r->host);
  int err = ps_buf_printf(&cn->wbuf,
                          "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: prescale/0.1\r\n"
                          "Accept: application/json\r\nAccept-Encoding: identity\r\n\r\n",
                          r->path, hosthdr);
  if (err == 0) {
    err = uv_read_start((uv_stream_t *)&cn->tcp, alloc_cb, read_cb);
    if (err == UV_EALREADY) err = 0; /* idle connections keep reading */
  }
  if (err == 0) {
    uv_buf_t b = uv_buf_init(cn->wbuf.data, (unsigned)cn->wbuf.len);
    cn->write_req.data = cn;
    err = uv_write(&cn->write_req, (uv_stream_t *)&cn->tcp, &b, 1, write_cb);
    if (err == 0) cn->writing = true;
  }
  if (err != 0) {
    snprintf(r->errmsg, sizeof r->errmsg, "send to %s: %s", cn->peer, uv_strerror(err));
    r->conn = NULL;
    cn->req = NULL;
    conn_close(cn);
    req_defer_error(r, err);
  }
}

/* ==== response parsing (llhttp callbacks) ========================================================== */

/* The parser's data is the request it parses for: a connection's, or ps_http_parse_response's. */
static struct ps_http_req *parser_req(llhttp_t *p) { return p->data; }

static int count_header_bytes(struct ps_http_req *r, size_t n) {
  r->header_bytes += n;
  if (r->header_bytes > PS_HTTP_MAX_HEADER_BYTES) {
    r->parse_err = UV_E2BIG;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: response headers exceed %u bytes", URL_IN_MSG_MAX,
             r->url, PS_HTTP_MAX_HEADER_BYTES);
    return -1;
  }
  return 0;
}

static size_t body_limit(const struct ps_http_req *r) {
  return r->max_body != 0 ? r->max_body : PS_HTTP_MAX_RESPONSE;
}

static int on_status(llhttp_t *p, const char *at, size_t n) { return count_header_bytes(parser_req(p), n); }

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct ps_http_req *r = parser_req(p);
  if (count_header_bytes(r, n) != 0) return -1;
  return ps_buf_append(&r->hname, at, n) == 0 ? 0 : -1;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  struct ps_http_req *r = parser_req(p);
  if (count_header_bytes(r, n) != 0) return -1;
  return ps_buf_append(&r->hval, at, n) == 0 ? 0 : -1;
}

static int on_header_value_complete(llhttp_t *p) {
  struct ps_http_req *r = parser_req(p);
  if (count_header_bytes(r, HEADER_LINE_OVERHEAD) != 0) return -1;
  if (r->hname.len == 12 && strncasecmp(r->hname.data, "content-type", 12) == 0) {
    ps_buf_reset(&r->content_type);
    if (ps_buf_append(&r->content_type, r->hval.data ? r->hval.data : "", r->hval.len) != 0) return -1;
  }
  ps_buf_reset(&r->hname);
  ps_buf_reset(&r->hval);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct ps_http_req *r = parser_req(p);
  r->status = llhttp_get_status_code(p);
  if (r->status < 100 || r->status > 999) { /* status-code = 3DIGIT (RFC 9112 4) */
    r->parse_err = UV_EPROTO;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: malformed HTTP response: status code %d", URL_IN_MSG_MAX,
             r->url, r->status);
    return -1;
  }
  /* Refuse a declared oversize body at once rather than after reading the limit's worth of it. */
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > body_limit(r)) {
    r->parse_err = UV_E2BIG;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: response body exceeds %zu bytes (Content-Length %llu)",
             URL_IN_MSG_MAX, r->url, body_limit(r), (unsigned long long)p->content_length);
    return -1;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct ps_http_req *r = parser_req(p);
  if (n > body_limit(r) - r->body_seen) {
    r->parse_err = UV_E2BIG;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: response body exceeds %zu bytes", URL_IN_MSG_MAX, r->url,
             body_limit(r));
    return -1;
  }
  r->body_seen += n;
  if (r->body_cb != NULL) {
    int err = r->body_cb(r->body_arg, at, n);
    if (err != 0) {
      r->parse_err = err;
      snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: response body refused: %s", URL_IN_MSG_MAX, r->url,
               uv_strerror(err));
      return -1;
    }
    return 0;
  }
  if (ps_buf_append(&r->body, at, n) != 0) {
    r->parse_err = UV_ENOMEM;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: out of memory", URL_IN_MSG_MAX, r->url);
    return -1;
  }
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  struct ps_http_req *r = parser_req(p);
  /* Interim 1xx responses precede the real one (RFC 9110 15.2): forget them and keep parsing. */
  if (r->status >= 100 && r->status < 200) {
    size_t hb = r->header_bytes; /* interim headers still count: a stream of 1xx must hit the limit */
    req_reset_response(r);
    r->header_bytes = hb;
    r->got_bytes = true;
    return 0;
  }
  r->complete = true;
  return HPE_PAUSED; /* stop at the end of this response; anything after it is not ours */
}

static const llhttp_settings_t parser_settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ==== reading ====================================================================================== */

static void deliver(struct conn *cn, bool reusable) {
  struct ps_http_req *r = cn->req;
  struct ps_http_response resp = {
      .status = r->status,
      .body = r->body.data != NULL ? r->body.data : "",
      .body_len = r->body.len,
      .content_type = r->content_type.data != NULL ? r->content_type.data : "",
  };
  cn->req = NULL;
  r->conn = NULL;
  if (reusable && !cn->writing)
    conn_park(cn);
  else
    conn_close(cn);
  req_finish(r, 0, &resp);
}

/* At EOF: whether the response is complete, a body delimited by the close of the connection (RFC 9112
 * 6.3 item 8) ending here. */
static bool complete_at_eof(llhttp_t *p, const struct ps_http_req *r) {
  llhttp_errno_t e = llhttp_finish(p);
  return (e == HPE_OK || e == HPE_PAUSED) && r->complete;
}

static void read_failed(struct conn *cn, int nread) {
  struct ps_http_req *r = cn->req;
  if (r == NULL) { /* idle: the server closed it, or reset it */
    conn_close(cn);
    return;
  }
  if (maybe_retry(cn)) return;
  if (nread == UV_EOF && r->got_bytes && !r->parse_err && complete_at_eof(&cn->parser, r)) {
    deliver(cn, false);
    return;
  }
  int err = nread == UV_EOF ? UV_ECONNRESET : nread;
  if (r->got_bytes)
    req_fail(r, err, "GET %.*s: connection to %s closed in the middle of the response (%s)", URL_IN_MSG_MAX,
             r->url, cn->peer, nread == UV_EOF ? "EOF" : uv_strerror(nread));
  else
    req_fail(r, err, "GET %.*s: %s closed the connection without responding (%s)", URL_IN_MSG_MAX, r->url,
             cn->peer, nread == UV_EOF ? "EOF" : uv_strerror(nread));
}

static void resume_cb(uv_timer_t *t) {
  struct conn *cn = t->data;
  int err = uv_read_start((uv_stream_t *)&cn->tcp, alloc_cb, read_cb);
  if (err != 0 && err != UV_EALREADY && cn->req != NULL)
    req_fail(cn->req, err, "GET %.*s: read from %s: %s", URL_IN_MSG_MAX, cn->req->url, cn->peer,
             uv_strerror(err));
}

/* Yields the loop after PS_HTTP_READ_BURST bytes: the poll phase goes on to other descriptors (gRPC,
 * /healthz), and the conn's timer, unused while a request is served, resumes reading at the next turn. A
 * request timeout or cancel meanwhile closes the conn with its timer, so nothing resumes a closed conn. */
static void pause_reading(struct conn *cn) {
  cn->burst = 0;
  uv_read_stop((uv_stream_t *)&cn->tcp);
  uv_timer_start(&cn->timer, resume_cb, 0, 0);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct conn *cn = s->data;
  if (cn->state == CONN_CLOSING) return;
  if (nread == 0) return;
  if (nread < 0) {
    read_failed(cn, (int)nread);
    return;
  }
  struct ps_http_req *r = cn->req;
  if (r == NULL) { /* bytes on an idle connection: nothing was asked, so it is out of step; drop it */
    conn_close(cn);
    return;
  }
  r->got_bytes = true;
  llhttp_errno_t e = llhttp_execute(&cn->parser, buf->base, (size_t)nread);
  if (e == HPE_PAUSED && r->complete) {
    /* Reuse only when the server allows it (Connection: close, HTTP/1.0, close-delimited bodies say no)
     * and sent nothing past the response. */
    bool reusable =
        llhttp_should_keep_alive(&cn->parser) && llhttp_get_error_pos(&cn->parser) == buf->base + nread;
    deliver(cn, reusable);
    return;
  }
  if (e == HPE_OK) {
    cn->burst += (size_t)nread;
    if (cn->burst >= PS_HTTP_READ_BURST) pause_reading(cn);
    return;
  }
  if (r->parse_err != 0) {
    req_finish(r, r->parse_err, NULL);
    return;
  }
  req_fail(r, UV_EPROTO, "GET %.*s: malformed HTTP response from %s: %s", URL_IN_MSG_MAX, r->url, cn->peer,
           llhttp_get_error_reason(&cn->parser));
}

/* ==== pure response parsing (tests, fuzzing) ======================================================= */

int ps_http_parse_response(const char *data, size_t len, size_t piece, int *status, struct ps_buf *body) {
  struct ps_http_req *r = calloc(1, sizeof *r);
  if (r == NULL) return UV_ENOMEM;
  r->url = (char *)"(parse)";
  req_bufs_init(r);
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &parser_settings);
  parser.data = r;
  if (piece == 0) piece = len ? len : 1;
  int err = UV_ECONNRESET; /* what a connection reports when the bytes end before the response */
  size_t off = 0;
  while (off < len) {
    size_t n = len - off < piece ? len - off : piece;
    r->got_bytes = true;
    llhttp_errno_t e = llhttp_execute(&parser, data + off, n);
    off += n;
    if (e == HPE_PAUSED && r->complete) {
      err = 0;
      break;
    }
    if (e != HPE_OK) {
      err = r->parse_err != 0 ? r->parse_err : UV_EPROTO;
      break;
    }
  }
  if (off >= len && err == UV_ECONNRESET && r->got_bytes && complete_at_eof(&parser, r)) err = 0;
  if (err == 0) {
    if (status != NULL) *status = r->status;
    if (body != NULL && ps_buf_append(body, r->body.data ? r->body.data : "", r->body.len) != 0)
      err = UV_ENOMEM;
  }
  req_bufs_free(r);
  free(r);
  return err;
}
