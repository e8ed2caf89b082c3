/* prescale-demo-app's HTTP/1.1 server side (see demo_http.h for what it answers).
 *
 * Message syntax is RFC 9112, parsed strictly by llhttp; net.c owns the socket and this file only sees
 * bytes in on_read. llhttp is paused at the end of each message (on_message_complete returns
 * HPE_PAUSED), which gives the exact byte where the next pipelined request starts: while a request is in
 * service, those bytes wait in the connection's stash and are parsed when its response has been queued.
 *
 * One uv_timer_t per connection serves two purposes, never both at once: the service delay of the
 * request in service, and otherwise the idle timeout. It is closed in on_close, and the connection is
 * freed only in the timer's close callback (libuv may touch the handle until then). */
#include "demo_http.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"

#define LABELS_MAX 32
#define TEXT_PLAIN "text/plain; charset=utf-8"

/* ------------------------------------------------------------------------------------------------ */
/* Connection state                                                                                 */
/* ------------------------------------------------------------------------------------------------ */

struct conn {
  struct ps_demo_server *srv;
  struct ps_net_conn *nc; /* NULL once on_close ran */
  uv_timer_t timer;       /* service delay while `busy`, idle timeout otherwise */
  llhttp_t parser;
  struct ps_buf url;   /* request target of the current message, at most PS_DEMO_MAX_HEAD bytes */
  struct ps_buf stash; /* input not parsed yet: pipelined behind a request in service, or held back */
  size_t head_bytes;   /* target + header bytes of the current message */
  size_t body_bytes;
  int cb_status; /* status chosen by a callback that failed the parse (0: plain 400) */
  uint8_t method;
  uint8_t http_major;
  uint8_t http_minor;
  bool keep_alive; /* of the current message, read at its end */
  bool busy;       /* a workload request is in service; parsing waits for its response */
  bool closing;    /* a final response is queued or the peer is gone: nothing more is parsed */
};

static int on_message_begin(llhttp_t *p);
static int on_url(llhttp_t *p, const char *at, size_t n);
static int on_header_field(llhttp_t *p, const char *at, size_t n);
static int on_header_value(llhttp_t *p, const char *at, size_t n);
static int on_headers_complete(llhttp_t *p);
static int on_body(llhttp_t *p, const char *at, size_t n);
static int on_message_complete(llhttp_t *p);
static void idle_cb(uv_timer_t *t);
static void service_cb(uv_timer_t *t);
static void feed(struct conn *c, const char *data, size_t len);

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int ps_demo_metrics_declare(void) {
  int r = ps_metrics_declare(
      PS_DEMO_REQUESTS_METRIC, PS_METRIC_COUNTER,
      "Requests answered by the workload, by status code (/metrics and /healthz excluded).");
  if (r == 0)
    r = ps_metrics_declare(PS_DEMO_IN_FLIGHT_METRIC, PS_METRIC_GAUGE,
                           "Workload requests received and not answered yet.");
  if (r != 0) return r;
  ps_metrics_add(PS_DEMO_REQUESTS_METRIC, "code=\"200\"", 0);
  ps_metrics_set(PS_DEMO_IN_FLIGHT_METRIC, "", 0);
  return 0;
}

static const char *peer(const struct conn *c) { return c->nc ? ps_net_peer(c->nc) : "closed"; }

static void set_in_flight(struct ps_demo_server *srv, int delta) {
  srv->in_flight = (uint64_t)((int64_t)srv->in_flight + delta);
  ps_metrics_set(PS_DEMO_IN_FLIGHT_METRIC, "", (double)srv->in_flight);
  if (srv->in_flight == 0 && srv->draining && srv->on_idle != NULL) srv->on_idle(srv->on_idle_arg);
}

/* Stops parsing and closes once the queued responses are flushed. Idempotent. */
static void shut(struct conn *c) {
  if (!c->closing) uv_timer_stop(&c->timer);
  c->closing = true;
  if (c->nc) ps_net_close(c->nc);
}

/* ------------------------------------------------------------------------------------------------ */
/* llhttp callbacks                                                                                 */
/* ------------------------------------------------------------------------------------------------ */

static int head_limit(llhttp_t *p, struct conn *c, size_t n) {
  c->head_bytes += n;
  if (c->head_bytes <= PS_DEMO_MAX_HEAD) return 0;
  c->cb_status = 431;
  llhttp_set_error_reason(p, "request head too long");
  return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
  struct conn *c = p->data;
  c->head_bytes = 0;
  c->body_bytes = 0;
  ps_buf_reset(&c->url);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  if (head_limit(p, c, n) != 0) return HPE_USER;
  if (ps_buf_append(&c->url, at, n) != 0) {
    c->cb_status = 500;
    llhttp_set_error_reason(p, "out of memory");
    return HPE_USER;
  }
  return 0;
}

/* Header names and values are not kept (nothing here depends on them), only counted against the limit.
 * Each header line carries at least ":" and CRLF beyond what is counted, so the count bounds the head. */
static int on_header_field(llhttp_t *p, const char *at, size_t n) { return head_limit(p, p->data, n + 1); }
static int on_header_value(llhttp_t *p, const char *at, size_t n) { return head_limit(p, p->data, n); }

static int on_headers_complete(llhttp_t *p) {
  struct conn *c = p->data;
  c->method = llhttp_get_method(p);
  c->http_major = llhttp_get_http_major(p);
  c->http_minor = llhttp_get_http_minor(p);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  c->body_bytes += n;
  if (c->body_bytes <= PS_DEMO_MAX_BODY) return 0;
  c->cb_status = 413;
  llhttp_set_error_reason(p, "request body too long");
  return HPE_USER;
}

static int on_message_complete(llhttp_t *p) {
  struct conn *c = p->data;
  /* Read here: llhttp clears its flags once the message is done. After an Upgrade request the bytes
   * would be another protocol, so the connection is closed after the answer (RFC 9110 7.8). */
  c->keep_alive = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);
  return HPE_PAUSED;
}

/* ------------------------------------------------------------------------------------------------ */
/* Responses                                                                                        */
/* ------------------------------------------------------------------------------------------------ */

enum route { ROUTE_WORK, ROUTE_HEALTHZ, ROUTE_METRICS };

/* Origin-form "/healthz?x" and absolute-form "http://host/healthz" (RFC 9112 3.2.2) are both understood;
 * the query is ignored. Anything that is not one of the two fixed paths is workload. */
static enum route route_of(const char *url, size_t len) {
  const char *p = url, *end = url + len;
  if (len >= 7 && strncasecmp(url, "http://", 7) == 0) {
    p = memchr(url + 7, '/', len - 7);
    if (p == NULL) return ROUTE_WORK;
  }
  size_t n = 0;
  while (p + n < end && p[n] != '?' && p[n] != '#') n++;
  if (n == 8 && memcmp(p, "/healthz", 8) == 0) return ROUTE_HEALTHZ;
  if (n == 8 && memcmp(p, "/metrics", 8) == 0) return ROUTE_METRICS;
  return ROUTE_WORK;
}

/* Queues one response. Content-Length is always sent so that keep-alive works for HTTP/1.0 clients
 * too. `count`: the response is a workload one, counted in http_requests_total by its status. */
static void respond(struct conn *c, int status, const char *ctype, const char *body, size_t body_len,
                    bool keep, bool count) {
  bool head_only = c->method == HTTP_HEAD;
  keep = keep && c->keep_alive && !c->srv->draining;
  const char *conn_hdr = "";
  if (!keep)
    conn_hdr = "Connection: close\r\n";
  else if (c->http_minor == 0)
    conn_hdr = "Connection: keep-alive\r\n"; /* HTTP/1.0 persistence must be announced (RFC 9112 C.2.2) */
  struct ps_buf out;
  ps_buf_init(&out);
  int rc = ps_buf_printf(&out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                         status, ps_http_reason(status), ctype, body_len,
                         status == 405 ? "Allow: GET, HEAD\r\n" : "", conn_hdr);
  if (rc == 0 && !head_only && body_len > 0) rc = ps_buf_append(&out, body, body_len);
  if (rc == 0) rc = c->nc ? ps_net_write(c->nc, (const uint8_t *)out.data, out.len) : UV_EPIPE;
  ps_buf_free(&out);
  if (count && rc == 0) {
    char labels[LABELS_MAX];
    snprintf(labels, sizeof labels, "code=\"%d\"", status);
    ps_metrics_add(PS_DEMO_REQUESTS_METRIC, labels, 1);
  }
  if (rc != 0 || !keep) shut(c);
}

#define BODY(s) s, sizeof(s) - 1

/* Answers a request that could not be parsed to its end, and closes: after a framing error the start of
 * the next request is unknown (RFC 9112 9.6 allows the close). */
static void reject(struct conn *c, int status, const char *why) {
  if (ps_log_enabled(PS_LOG_DEBUG)) {
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    ps_log(PS_LOG_DEBUG, "request rejected", "peer", peer(c), "status", code, "reason", why, NULL);
  }
  const char *body;
  switch (status) {
  case 413: body = "request body too large\n"; break;
  case 431: body = "request header fields too large\n"; break;
  case 505: body = "http version not supported\n"; break;
  case 500: body = "internal server error\n"; break;
  default: body = "bad request\n"; break;
  }
  c->method = HTTP_GET; /* the body is sent whatever the method was */
  respond(c, status, TEXT_PLAIN, body, strlen(body), false, false);
}

/* A complete request was parsed: answer it at once, or start its service. */
static void dispatch(struct conn *c) {
  enum route route = route_of(c->url.data ? c->url.data : "", c->url.len);
  bool get = c->method == HTTP_GET || c->method == HTTP_HEAD;
  if (c->http_major != 1) {
    reject(c, 505, "HTTP version other than 1.x");
  } else if (!get) {
    respond(c, 405, TEXT_PLAIN, BODY("method not allowed\n"), true, route == ROUTE_WORK);
  } else if (route == ROUTE_HEALTHZ) {
    respond(c, 200, TEXT_PLAIN, BODY("ok\n"), true, false);
  } else if (route == ROUTE_METRICS) {
    struct ps_buf body;
    ps_buf_init(&body);
    if (ps_metrics_render(&body) != 0)
      respond(c, 500, TEXT_PLAIN, BODY("internal server error\n"), false, false);
    else /* https://prometheus.io/docs/instrumenting/exposition_formats/#basic-info */
      respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", body.data ? body.data : "", body.len, true,
              false);
    ps_buf_free(&body);
  } else {
    c->busy = true;
    set_in_flight(c->srv, +1);
    uv_timer_start(&c->timer, service_cb, c->srv->service_ms, 0);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* Parsing                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

/* Parses bytes and acts on each complete request, in order. Returns how many bytes were consumed: all,
 * unless a request went into service (the rest waits for its response) or the client stopped reading
 * and responses piled up past PS_NET_HIGH_WATER (the rest waits for on_drain). */
static size_t process(struct conn *c, const char *data, size_t len) {
  const char *p = data, *end = data + len;
  while (p < end && !c->closing && !c->busy) {
    llhttp_errno_t err = llhttp_execute(&c->parser, p, (size_t)(end - p));
    if (err == HPE_OK) return len;
    if (err != HPE_PAUSED) {
      reject(c, c->cb_status ? c->cb_status : 400, llhttp_errno_name(err));
      return len;
    }
    p = llhttp_get_error_pos(&c->parser);
    llhttp_resume(&c->parser);
    dispatch(c);
    if (c->nc && !c->closing && ps_net_pending(c->nc) > PS_NET_HIGH_WATER) break;
  }
  return (size_t)(p - data);
}

/* While a stash is held, newer bytes queue behind it so that requests are still answered in order. */
static void feed(struct conn *c, const char *data, size_t len) {
  if (c->closing || len == 0) return;
  if (c->stash.len > 0 || c->busy) {
    if (c->stash.len + len > PS_DEMO_MAX_STASH || ps_buf_append(&c->stash, data, len) != 0) shut(c);
    return;
  }
  size_t used = process(c, data, len);
  if (used < len && !c->closing && ps_buf_append(&c->stash, data + used, len - used) != 0) shut(c);
}

/* Parses what waited in the stash, then arms the idle timeout if the connection is idle again. */
static void resume(struct conn *c) {
  if (c->closing) return;
  if (c->stash.len > 0) {
    /* Owns `held` here; feed() may stash a new remainder in the now empty c->stash. */
    size_t n;
    char *held = ps_buf_steal(&c->stash, &n);
    feed(c, held, n);
    free(held);
  }
  if (!c->closing && !c->busy) uv_timer_start(&c->timer, idle_cb, PS_DEMO_IDLE_MS, 0);
}

/* ------------------------------------------------------------------------------------------------ */
/* Timers                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

static void service_cb(uv_timer_t *t) {
  struct conn *c = t->data;
  c->busy = false;
  respond(c, 200, TEXT_PLAIN, BODY("hello from prescale-demo-app\n"), true, true);
  set_in_flight(c->srv, -1);
  if (c->nc && !c->closing && ps_net_pending(c->nc) > PS_NET_HIGH_WATER) return; /* on_drain resumes */
  resume(c);
}

static void idle_cb(uv_timer_t *t) {
  struct conn *c = t->data;
  if (ps_log_enabled(PS_LOG_DEBUG)) ps_log(PS_LOG_DEBUG, "connection idle, closing", "peer", peer(c), NULL);
  shut(c);
}

/* ------------------------------------------------------------------------------------------------ */
/* net.c glue                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

static void timer_closed_cb(uv_handle_t *h) {
  struct conn *c = h->data;
  ps_buf_free(&c->url);
  ps_buf_free(&c->stash);
  free(c);
}

static void *net_open(struct ps_net_conn *nc, void *listener_arg) {
  struct conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  if (uv_timer_init(ps_net_loop(nc), &c->timer) != 0) {
    free(c);
    return NULL;
  }
  c->srv = listener_arg;
  c->nc = nc;
  c->timer.data = c;
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  ps_buf_init(&c->url);
  ps_buf_init(&c->stash);
  uv_timer_start(&c->timer, idle_cb, PS_DEMO_IDLE_MS, 0);
  return c;
}

static int net_read(void *state, const uint8_t *data, size_t len) {
  feed(state, (const char *)data, len);
  return 0;
}

static void net_drain(void *state) {
  struct conn *c = state;
  if (!c->busy) resume(c);
}

static void net_close(void *state) {
  struct conn *c = state;
  c->nc = NULL; /* net.c forgets the conn after this call */
  c->closing = true;
  uv_timer_stop(&c->timer);
  /* A request in service whose client went away is dropped: not answered, so not counted. */
  if (c->busy) {
    c->busy = false;
    set_in_flight(c->srv, -1);
  }
  uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
}

const struct ps_net_proto ps_demo_net_proto = {
    .on_open = net_open,
    .on_read = net_read,
    .on_drain = net_drain,
    .on_close = net_close,
};
