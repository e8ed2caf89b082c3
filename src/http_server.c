/* The HTTP/1.1 side door: /healthz, /readyz and /metrics.
 *
 * Message syntax is RFC 9112, semantics RFC 9110; llhttp does the parsing, strictly (no lenient flags:
 * a permissive parser in front of nothing is how request smuggling starts). net.c owns the socket; this
 * file sees bytes in on_read and hands response bytes to ps_net_write.
 *
 * The parser is driven in steps: our callbacks return HPE_PAUSED at the start of a message, at the end of
 * its head and at its end, and process() acts on each pause. That gives exact byte positions, so the
 * head (request line + headers) and the body are bounded by counting the bytes llhttp consumed between
 * the pauses, whatever the chunking of the reads, without our buffering anything but the request target. */
#include "http_server.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "metrics.h"

#define REQUESTS_METRIC "prescale_http_requests_total"
/* Input held back while the client does not read its responses (see feed()). net.c stops reading once
 * more than PS_NET_HIGH_WATER bytes wait to be written, so only reads already under way land here; a
 * connection that somehow sends this much anyway is closed. */
#define MAX_STASH       PS_NET_HIGH_WATER
#define LABELS_MAX      64

/* ------------------------------------------------------------------------------------------------ */
/* Connection state                                                                                 */
/* ------------------------------------------------------------------------------------------------ */

enum route { ROUTE_NONE, ROUTE_HEALTHZ, ROUTE_READYZ, ROUTE_METRICS };

/* What made llhttp_execute() return HPE_PAUSED. */
enum event { EV_NONE, EV_BEGIN, EV_HEAD_DONE, EV_COMPLETE };

struct conn {
  struct ps_http_server *srv;
  struct ps_net_conn *nc; /* NULL once on_close ran, and always in memory mode */
  struct ps_buf *sink;    /* memory mode only: responses are appended here (not owned) */
  bool has_timer;         /* socket mode: `idle` is initialised and its close callback frees us */
  uv_timer_t idle;
  llhttp_t parser;
  enum event ev;
  bool in_message; /* between on_message_begin and on_message_complete */
  bool in_head;    /* between on_message_begin and on_headers_complete */
  bool closing;    /* a final response is queued or the peer is gone: nothing more is parsed */
  size_t head_bytes;
  uint64_t body_bytes; /* as sent, chunk framing included */
  int cb_status;       /* status chosen by a callback that failed the parse (0: plain 400) */
  char field[4];       /* start of the current header name: only "Host" matters */
  size_t field_len;    /* bytes of the current header name seen so far */
  unsigned hosts;      /* Host header lines in the current message */
  uint8_t method;
  uint8_t http_major;
  uint8_t http_minor;
  bool keep_alive;
  struct ps_buf url;   /* request target of the current message, at most PS_HTTP_SERVER_MAX_REQUEST */
  struct ps_buf stash; /* unparsed input held back by backpressure */
};

static int on_message_begin(llhttp_t *p);
static int on_url(llhttp_t *p, const char *at, size_t n);
static int on_header_field(llhttp_t *p, const char *at, size_t n);
static int on_header_field_complete(llhttp_t *p);
static int on_headers_complete(llhttp_t *p);
static int on_message_complete(llhttp_t *p);
static void idle_cb(uv_timer_t *t);

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

static struct conn *conn_new(struct ps_http_server *srv) {
  struct conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->srv = srv;
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  ps_buf_init(&c->url);
  ps_buf_init(&c->stash);
  return c;
}

static void conn_free(struct conn *c) {
  ps_buf_free(&c->url);
  ps_buf_free(&c->stash);
  free(c);
}

static void declare_metrics(void) {
  /* Idempotent; done per connection so that a registry reset (tests) is survived. */
  (void)ps_metrics_declare(
      REQUESTS_METRIC, PS_METRIC_COUNTER,
      "HTTP requests answered on the health and metrics listener, by path and status code.");
}

static uint64_t idle_ms(const struct conn *c) {
  return c->srv->idle_ms ? c->srv->idle_ms : PS_HTTP_SERVER_IDLE_MS;
}

static const char *peer(const struct conn *c) { return c->nc ? ps_net_peer(c->nc) : "memory"; }

/* Stops parsing and closes once the queued responses are flushed. Idempotent. */
static void shut(struct conn *c) {
  if (c->has_timer && !c->closing) uv_timer_stop(&c->idle);
  c->closing = true;
  if (c->nc) ps_net_close(c->nc);
}

static int emit(struct conn *c, const void *data, size_t n) {
  if (c->sink) return ps_buf_append(c->sink, data, n);
  if (c->nc == NULL) return UV_EPIPE;
  return ps_net_write(c->nc, data, n);
}

/* ------------------------------------------------------------------------------------------------ */
/* llhttp callbacks: record, then pause so that process() acts at an exact byte position            */
/* ------------------------------------------------------------------------------------------------ */

static int on_message_begin(llhttp_t *p) {
  struct conn *c = p->data;
  c->ev = EV_BEGIN;
  return HPE_PAUSED;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  /* The target is part of the request line, so the head limit applies to it; checking here keeps the
   * copy bounded even within one large read. */
  if (c->url.len + n > PS_HTTP_SERVER_MAX_REQUEST) {
    c->cb_status = 431;
    llhttp_set_error_reason(p, "request target too long");
    return HPE_USER;
  }
  if (ps_buf_append(&c->url, at, n) != 0) {
    c->cb_status = 500;
    llhttp_set_error_reason(p, "out of memory");
    return HPE_USER;
  }
  return 0;
}

/* Header names may arrive split across reads; only their first bytes and length are kept. */
static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  for (size_t i = 0; i < n && c->field_len + i < sizeof(c->field); i++) c->field[c->field_len + i] = at[i];
  c->field_len += n;
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  struct conn *c = p->data;
  if (c->field_len == 4 && strncasecmp(c->field, "host", 4) == 0) c->hosts++;
  c->field_len = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct conn *c = p->data;
  c->method = llhttp_get_method(p);
  c->http_major = llhttp_get_http_major(p);
  c->http_minor = llhttp_get_http_minor(p);
  c->ev = EV_HEAD_DONE;
  return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p) {
  struct conn *c = p->data;
  /* Read here: llhttp clears its flags once the message is done. An Upgrade request is answered and the
   * connection closed, since what follows it would be another protocol (RFC 9110 7.8). */
  c->keep_alive = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);
  c->ev = EV_COMPLETE;
  return HPE_PAUSED;
}

/* ------------------------------------------------------------------------------------------------ */
/* Responses                                                                                        */
/* ------------------------------------------------------------------------------------------------ */

const char *ps_http_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 413: return "Content Too Large";               /* RFC 9110 15.5.14 */
  case 431: return "Request Header Fields Too Large"; /* RFC 6585 5 */
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Internal Server Error";
  }
}

static const char *route_label(enum route r) {
  switch (r) {
  case ROUTE_HEALTHZ: return "/healthz";
  case ROUTE_READYZ: return "/readyz";
  case ROUTE_METRICS: return "/metrics";
  default: return "other";
  }
}

/* Maps a request target to a route. Origin-form "/healthz?x" and absolute-form
 * "http://host/healthz" (which a server MUST accept, RFC 9112 3.2.2) are both understood; the query is
 * ignored for routing. No percent-decoding: none of our paths needs it. */
static enum route route_of(const char *url, size_t len) {
  const char *p = url, *end = url + len;
  if (len >= 7 && strncasecmp(url, "http://", 7) == 0)
    p += 7;
  else if (len >= 8 && strncasecmp(url, "https://", 8) == 0)
    p += 8;
  if (p != url) {
    p = memchr(p, '/', (size_t)(end - p));
    if (p == NULL) return ROUTE_NONE; /* empty path, i.e. "/" */
  }
  size_t n = 0;
  while (p + n < end && p[n] != '?' && p[n] != '#') n++;
  if (n == 8 && memcmp(p, "/healthz", 8) == 0) return ROUTE_HEALTHZ;
  if (n == 7 && memcmp(p, "/readyz", 7) == 0) return ROUTE_READYZ;
  if (n == 8 && memcmp(p, "/metrics", 8) == 0) return ROUTE_METRICS;
  return ROUTE_NONE;
}

struct response {
  int status;
  const char *content_type;
  const char *body;
  size_t body_len;
  bool allow;     /* 405: RFC 9110 15.5.6 requires an Allow header */
  bool head_only; /* HEAD: same header fields as GET, no content (RFC 9110 9.3.2) */
  bool keep;      /* false: "Connection: close", then close once it is flushed */
};

/* Queues one response and counts it. Content-Length is always sent, so the client needs no EOF to
 * delimit the body and keep-alive works for HTTP/1.0 clients too. */
static void send_response(struct conn *c, enum route route, const struct response *r) {
  struct ps_buf out;
  ps_buf_init(&out);
  const char *conn_hdr = "";
  if (!r->keep)
    conn_hdr = "Connection: close\r\n";
  else if (c->http_major == 1 && c->http_minor == 0)
    conn_hdr = "Connection: keep-alive\r\n"; /* HTTP/1.0 persistence must be announced (RFC 9112 C.2.2) */
  int rc = ps_buf_printf(&out,
                         "HTTP/1.1 %d %s\r\n"
                         "Content-Type: %s\r\n"
                         "Content-Length: %zu\r\n"
                         "%s%s"
                         "\r\n",
                         r->status, ps_http_reason(r->status), r->content_type, r->body_len,
                         r->allow ? "Allow: GET, HEAD\r\n" : "", conn_hdr);
  if (rc == 0 && !r->head_only && r->body_len > 0) rc = ps_buf_append(&out, r->body, r->body_len);
  if (rc == 0) rc = emit(c, out.data, out.len);
  ps_buf_free(&out);

  char labels[LABELS_MAX];
  snprintf(labels, sizeof(labels), "path=\"%s\",code=\"%d\"", route_label(route), r->status);
  ps_metrics_add(REQUESTS_METRIC, labels, 1);

  if (rc != 0 || !r->keep) {
    shut(c);
    return;
  }
  /* A response went out: the connection is idle again from now on. */
  if (c->has_timer) uv_timer_start(&c->idle, idle_cb, idle_ms(c), 0);
}

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define BODY(s)    s, sizeof(s) - 1

/* Answers a request that could not be (or will not be) parsed to its end, and closes: after a framing
 * error the position of the next request is unknown (RFC 9112 9.6 allows the close). */
static void reject(struct conn *c, int status, const char *why) {
  if (ps_log_enabled(PS_LOG_DEBUG)) {
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    ps_log(PS_LOG_DEBUG, "http request rejected", "peer", peer(c), "status", code, "reason", why, NULL);
  }
  struct response r = {.status = status, .content_type = TEXT_PLAIN, .keep = false};
  switch (status) {
  case 400: r.body = "bad request\n"; break;
  case 413: r.body = "request body too large\n"; break;
  case 431: r.body = "request header fields too large\n"; break;
  case 505: r.body = "http version not supported\n"; break;
  default: r.body = "internal server error\n"; break;
  }
  r.body_len = strlen(r.body);
  send_response(c, route_of(c->url.data ? c->url.data : "", c->url.len), &r);
}

static void answer(struct conn *c) {
  enum route route = route_of(c->url.data ? c->url.data : "", c->url.len);
  bool is_head = c->method == HTTP_HEAD;
  struct response r = {
      .status = 200, .content_type = TEXT_PLAIN, .head_only = is_head, .keep = c->keep_alive};

  if (route == ROUTE_NONE) {
    r.status = 404;
    r.body = "not found\n";
    r.body_len = strlen(r.body);
  } else if (c->method != HTTP_GET && !is_head) {
    r.status = 405;
    r.allow = true;
    r.body = "method not allowed\n";
    r.body_len = strlen(r.body);
  } else if (route == ROUTE_HEALTHZ) {
    r.body = "ok\n";
    r.body_len = 3;
  } else if (route == ROUTE_READYZ) {
    bool ready = c->srv->ready == NULL || c->srv->ready(c->srv->ready_arg);
    r.status = ready ? 200 : 503;
    r.body = ready ? "ready\n" : "not ready\n";
    r.body_len = strlen(r.body);
  } else {
    struct ps_buf body;
    ps_buf_init(&body);
    if (ps_metrics_render(&body) != 0) {
      ps_buf_free(&body);
      r.status = 500;
      r.keep = false;
      r.body = "internal server error\n";
      r.body_len = strlen(r.body);
      send_response(c, route, &r);
      return;
    }
    /* https://prometheus.io/docs/instrumenting/exposition_formats/#basic-info */
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = body.data ? body.data : "";
    r.body_len = body.len;
    send_response(c, route, &r);
    ps_buf_free(&body);
    return;
  }
  send_response(c, route, &r);
}

/* ------------------------------------------------------------------------------------------------ */
/* Parsing                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

/* Charges n bytes just consumed by llhttp to the head or the body of the current message, and enforces
 * the limits. Bytes between messages (the CRLFs RFC 9112 2.2 lets a server skip) are charged to neither.
 * false when the connection was rejected. */
static bool charge(struct conn *c, size_t n) {
  if (c->in_head) {
    c->head_bytes += n;
    if (c->head_bytes > PS_HTTP_SERVER_MAX_REQUEST) {
      reject(c, 431, "request line and headers too long");
      return false;
    }
  } else if (c->in_message) {
    c->body_bytes += n;
    if (c->body_bytes > PS_HTTP_SERVER_MAX_BODY) {
      reject(c, 413, "request body too long");
      return false;
    }
  }
  return true;
}

/* Feeds bytes to the parser and answers every request completed in them, in order (pipelining, RFC 9112
 * 9.3.2). Returns how many bytes were consumed: all of them, unless the client stopped reading and our
 * responses piled up past PS_NET_HIGH_WATER, in which case the rest waits for on_drain. */
static size_t process(struct conn *c, const char *data, size_t len) {
  const char *p = data, *end = data + len;
  /* After a pause llhttp is run again even with no byte left: the steps that follow a callback (e.g.
   * completing a body-less message after its head) need no input, and must not wait for the next read. */
  bool resumed = false;
  while ((p < end || resumed) && !c->closing) {
    resumed = false;
    c->ev = EV_NONE;
    llhttp_errno_t err = llhttp_execute(&c->parser, p, (size_t)(end - p));
    const char *pos = end;
    if (err == HPE_PAUSED)
      pos = llhttp_get_error_pos(&c->parser);
    else if (err != HPE_OK)
      pos = p; /* nothing after an error matters */
    size_t used = (size_t)(pos - p);
    p = pos;
    if (!charge(c, used)) break;
    if (err == HPE_OK) break;
    if (err != HPE_PAUSED) {
      reject(c, c->cb_status ? c->cb_status : 400, llhttp_errno_name(err));
      break;
    }
    llhttp_resume(&c->parser);
    resumed = true;
    switch (c->ev) {
    case EV_BEGIN:
      c->in_message = c->in_head = true;
      c->head_bytes = 0;
      c->body_bytes = 0;
      c->field_len = 0;
      c->hosts = 0;
      ps_buf_reset(&c->url);
      break;
    case EV_HEAD_DONE:
      c->in_head = false;
      if (c->http_major != 1) {
        reject(c, 505, "HTTP version other than 1.x");
      } else if (c->hosts > 1 || (c->http_minor >= 1 && c->hosts == 0)) {
        /* RFC 9112 3.2: an HTTP/1.1 request without Host, or any with several, MUST get a 400. */
        reject(c, 400, "missing or repeated Host header");
      } else if ((c->parser.flags & F_CONTENT_LENGTH) && c->parser.content_length > PS_HTTP_SERVER_MAX_BODY) {
        /* Refused before reading it: the client learns at once (RFC 9110 15.5.14). */
        reject(c, 413, "Content-Length too large");
      }
      break;
    case EV_COMPLETE:
      c->in_message = false;
      answer(c);
      if (c->nc && !c->closing && ps_net_pending(c->nc) > PS_NET_HIGH_WATER) return (size_t)(p - data);
      break;
    default: break;
    }
  }
  return len;
}

/* Input path shared by sockets and memory mode. While a stash is held, newer bytes queue behind it so
 * that requests are still answered in order. */
static void feed(struct conn *c, const char *data, size_t len) {
  if (c->closing || len == 0) return;
  if (c->stash.len > 0) {
    if (c->stash.len + len > MAX_STASH || ps_buf_append(&c->stash, data, len) != 0) shut(c);
    return;
  }
  size_t used = process(c, data, len);
  if (used < len && !c->closing && ps_buf_append(&c->stash, data + used, len - used) != 0) shut(c);
}

/* ------------------------------------------------------------------------------------------------ */
/* net.c glue                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

static void idle_cb(uv_timer_t *t) {
  struct conn *c = t->data;
  if (ps_log_enabled(PS_LOG_DEBUG))
    ps_log(PS_LOG_DEBUG, "http connection idle, closing", "peer", peer(c), NULL);
  shut(c);
}

/* The conn is freed here and only here in socket mode: on_close runs while the timer is still a live
 * handle, and libuv may touch it until this callback. */
static void idle_closed_cb(uv_handle_t *h) { conn_free(h->data); }

static void *net_open(struct ps_net_conn *nc, void *listener_arg) {
  struct ps_http_server *srv = listener_arg;
  declare_metrics();
  struct conn *c = conn_new(srv);
  if (c == NULL) return NULL;
  c->nc = nc;
  if (uv_timer_init(ps_net_loop(nc), &c->idle) != 0) {
    conn_free(c);
    return NULL;
  }
  c->has_timer = true;
  c->idle.data = c;
  uv_timer_start(&c->idle, idle_cb, idle_ms(c), 0);
  return c;
}

static int net_read(void *state, const uint8_t *data, size_t len) {
  feed(state, (const char *)data, len);
  return 0;
}

static void net_drain(void *state) {
  struct conn *c = state;
  if (c->closing || c->stash.len == 0) return;
  /* Owns `held` here; feed() may stash a new remainder in the now empty c->stash. */
  size_t n;
  char *held = ps_buf_steal(&c->stash, &n);
  feed(c, held, n);
  free(held);
}

static void net_close(void *state) {
  struct conn *c = state;
  c->nc = NULL; /* net.c forgets the conn after this call */
  c->closing = true;
  uv_close((uv_handle_t *)&c->idle, idle_closed_cb);
}

const struct ps_net_proto ps_http_server_net_proto = {
    .on_open = net_open,
    .on_read = net_read,
    .on_drain = net_drain,
    .on_close = net_close,
};

int ps_http_server_feed_mem(struct ps_http_server *srv, const uint8_t *data, size_t len, size_t chunk,
                            struct ps_buf *out) {
  declare_metrics();
  struct conn *c = conn_new(srv);
  if (c == NULL) return UV_ENOMEM;
  c->sink = out;
  if (chunk == 0) chunk = len;
  for (size_t off = 0; off < len && !c->closing;) {
    size_t n = len - off < chunk ? len - off : chunk;
    feed(c, (const char *)data + off, n);
    off += n;
  }
  int rc = c->closing ? UV_EOF : 0;
  conn_free(c);
  return rc;
}
