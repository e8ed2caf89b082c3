/* The server side of an HTTP/1.1 connection; see http_server.h for what a server built on it gets.
 *
 * Message syntax is RFC 9112, semantics RFC 9110; llhttp does the parsing, strictly (no lenient flags: a
 * permissive parser in front of nothing is how request smuggling starts). net.c owns the socket; this
 * file sees bytes in on_read and hands response bytes to ps_net_write (or, in memory mode, to a buffer).
 *
 * The parser is driven in steps: our callbacks return HPE_PAUSED at the start of a message, at the end of
 * its request target, at the end of its head and at its end, and process() acts on each pause. That gives
 * exact byte positions, so the head (request line + headers) and the body are bounded by counting the
 * bytes llhttp consumed between the pauses, whatever the chunking of the reads, without our buffering
 * anything but the request target.
 *
 * Lifetimes. A connection (struct ps_http_server_conn) owns one uv_timer_t, which is either its idle timeout
 * or, right after a late answer, a 0 ms timer that resumes parsing from the loop (so that
 * ps_http_server_respond never runs the handler from inside itself). In socket mode the connection is freed
 * only in that timer's close callback, which ps_http_server_on_close starts. A request (struct
 * ps_http_server_req) is allocated when its message is complete and is owned by the application from the
 * handler call until ps_http_server_respond frees it; the connection only points at it (`pending`) meanwhile,
 * and when the connection closes first the request is detached (its `conn` set to NULL), so a late answer
 * finds no connection and sends nothing. */
#include "http_server.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "http_token.h"
#include "log.h"

/* ------------------------------------------------------------------------------------------------ */
/* State                                                                                            */
/* ------------------------------------------------------------------------------------------------ */

/* What made llhttp_execute() return HPE_PAUSED. */
enum event { EV_NONE, EV_BEGIN, EV_TARGET_DONE, EV_HEAD_DONE, EV_COMPLETE };

struct ps_http_server_conn {
  struct ps_http_server_config cfg;
  struct ps_net_conn *nc; /* NULL once on_close ran, and always in memory mode */
  struct ps_buf *sink;    /* memory mode only: responses are appended here (not owned) */
  bool has_timer;         /* socket mode: `timer` is initialised and its close callback frees us */
  uv_timer_t timer;       /* idle timeout, or the 0 ms resume after a late answer */
  llhttp_t parser;
  enum event ev;
  bool in_message; /* between on_message_begin and on_message_complete */
  bool in_head;    /* between on_message_begin and on_headers_complete */
  bool in_target;  /* between on_message_begin and on_url_complete */
  bool closing;    /* a final response is queued or the peer is gone: nothing more is parsed or sent */
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
  struct ps_buf url;   /* request target of the current message, at most PS_HTTP_SERVER_MAX_HEAD */
  struct ps_buf stash; /* input not parsed yet: behind a pending request, or held back */
  struct ps_http_server_req *pending; /* handed to the handler and not answered yet (not owned) */
};

struct ps_http_server_req {
  struct ps_http_server_conn *conn; /* NULL once the connection closed */
  uint8_t method;
  uint8_t http_minor;
  bool keep_alive;  /* as the request asked (RFC 9112 9.3), read at its end */
  void *data;       /* the application's */
  const char *path; /* into target[] */
  size_t path_len;
  char target[]; /* NUL-terminated */
};

static int on_message_begin(llhttp_t *p);
static int on_url(llhttp_t *p, const char *at, size_t n);
static int on_url_complete(llhttp_t *p);
static int on_header_field(llhttp_t *p, const char *at, size_t n);
static int on_header_field_complete(llhttp_t *p);
static int on_headers_complete(llhttp_t *p);
static int on_message_complete(llhttp_t *p);
static void idle_cb(uv_timer_t *t);
static void resume_cb(uv_timer_t *t);

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

static struct ps_http_server_conn *conn_new(const struct ps_http_server_config *cfg) {
  struct ps_http_server_conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->cfg = *cfg;
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  ps_buf_init(&c->url);
  ps_buf_init(&c->stash);
  return c;
}

static void conn_free(struct ps_http_server_conn *c) {
  ps_buf_free(&c->url);
  ps_buf_free(&c->stash);
  free(c);
}

static const char *peer(const struct ps_http_server_conn *c) { return c->nc ? ps_net_peer(c->nc) : "memory"; }

static void log_debug(const struct ps_http_server_conn *c, const char *what, const char *k1, const char *v1,
                      const char *k2, const char *v2) {
  if (!ps_log_enabled(PS_LOG_DEBUG)) return;
  char msg[64];
  snprintf(msg, sizeof(msg), "%s%s", c->cfg.log_prefix ? c->cfg.log_prefix : "", what);
  ps_log(PS_LOG_DEBUG, msg, "peer", peer(c), k1, v1, k2, v2, NULL);
}

/* Stops parsing and closes once the queued responses are flushed. Idempotent. */
static void shut(struct ps_http_server_conn *c) {
  if (c->has_timer && !c->closing) uv_timer_stop(&c->timer);
  c->closing = true;
  if (c->nc) ps_net_close(c->nc);
}

/* True while the client leaves more than PS_NET_HIGH_WATER of our bytes unread: net.c has stopped
 * reading and calls on_drain once it is below PS_NET_LOW_WATER, and the input already read waits. */
static bool backed_up(const struct ps_http_server_conn *c) {
  return c->nc != NULL && ps_net_pending(c->nc) > PS_NET_HIGH_WATER;
}

/* The request pending on a closing connection is detached and handed back through on_cancel. */
static void cancel_pending(struct ps_http_server_conn *c) {
  struct ps_http_server_req *req = c->pending;
  if (req == NULL) return;
  c->pending = NULL;
  req->conn = NULL;
  if (c->cfg.on_cancel != NULL) c->cfg.on_cancel(req, c->cfg.arg);
}

/* ------------------------------------------------------------------------------------------------ */
/* llhttp callbacks: record, then pause so that process() acts at an exact byte position            */
/* ------------------------------------------------------------------------------------------------ */

static int on_message_begin(llhttp_t *p) {
  struct ps_http_server_conn *c = p->data;
  c->ev = EV_BEGIN;
  return HPE_PAUSED;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  struct ps_http_server_conn *c = p->data;
  /* The head limit covers the target too, but it is checked when llhttp returns; checking here keeps
   * the copy bounded even within one large read. */
  if (c->url.len + n > PS_HTTP_SERVER_MAX_HEAD) {
    c->cb_status = 414;
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

static int on_url_complete(llhttp_t *p) {
  struct ps_http_server_conn *c = p->data;
  c->ev = EV_TARGET_DONE;
  return HPE_PAUSED;
}

/* Header names may arrive split across reads; only their first bytes and length are kept. llhttp hands
 * over a name with a space inside or before the colon ("X Y: z", "Host : a") even when strict; RFC 9112
 * 5.1 says a server MUST answer 400 to whitespace between a field name and its colon (a proxy in front
 * may read such a name differently: smuggling), so every byte of a name is checked to be a tchar. */
static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct ps_http_server_conn *c = p->data;
  for (size_t i = 0; i < n; i++) {
    if (!ps_http_tchar((unsigned char)at[i])) {
      c->cb_status = 400;
      llhttp_set_error_reason(p, "invalid character in a header name (RFC 9110 5.1: a token)");
      return HPE_USER;
    }
  }
  for (size_t i = 0; i < n && c->field_len + i < sizeof(c->field); i++) c->field[c->field_len + i] = at[i];
  c->field_len += n;
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  struct ps_http_server_conn *c = p->data;
  if (c->field_len == 4 && strncasecmp(c->field, "host", 4) == 0) c->hosts++;
  c->field_len = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct ps_http_server_conn *c = p->data;
  c->method = llhttp_get_method(p);
  c->http_major = llhttp_get_http_major(p);
  c->http_minor = llhttp_get_http_minor(p);
  c->ev = EV_HEAD_DONE;
  return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p) {
  struct ps_http_server_conn *c = p->data;
  /* Read here: llhttp clears its flags once the message is done. An Upgrade request is answered and the
   * connection closed, since what follows it would be another protocol (RFC 9110 7.8). */
  c->keep_alive = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);
  c->ev = EV_COMPLETE;
  return HPE_PAUSED;
}

/* ------------------------------------------------------------------------------------------------ */
/* Responses                                                                                        */
/* ------------------------------------------------------------------------------------------------ */

const char *ps_http_server_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 413: return "Content Too Large";               /* RFC 9110 15.5.14 */
  case 414: return "URI Too Long";                    /* RFC 9110 15.5.15 */
  case 431: return "Request Header Fields Too Large"; /* RFC 6585 5 */
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Internal Server Error";
  }
}

/* The path of a request target (see ps_http_server_req_path). */
static const char *target_path(const char *url, size_t len, size_t *path_len) {
  const char *p = url, *end = url + len;
  if (len >= 7 && strncasecmp(url, "http://", 7) == 0)
    p += 7;
  else if (len >= 8 && strncasecmp(url, "https://", 8) == 0)
    p += 8;
  if (p != url) {
    p = memchr(p, '/', (size_t)(end - p));
    if (p == NULL) {
      *path_len = 0;
      return "";
    }
  }
  size_t n = 0;
  while (p + n < end && p[n] != '?' && p[n] != '#') n++;
  *path_len = n;
  return p;
}

/* Queues one response. `http_minor` is the request's: an HTTP/1.0 client must be told that the
 * connection persists (RFC 9112 C.2.2). Nothing is sent once the connection is closing. */
static int send_response(struct ps_http_server_conn *c, int status, const char *content_type,
                         const void *body, size_t len, bool head_only, bool keep, uint8_t http_minor) {
  if (c->closing) return UV_EPIPE;
  const char *conn_hdr = "";
  if (!keep)
    conn_hdr = "Connection: close\r\n";
  else if (http_minor == 0)
    conn_hdr = "Connection: keep-alive\r\n";
  bool allow = status == 405 && c->cfg.allow != NULL;
  struct ps_buf out;
  ps_buf_init(&out);
  int rc = ps_buf_printf(&out,
                         "HTTP/1.1 %d %s\r\n"
                         "Content-Type: %s\r\n"
                         "Content-Length: %zu\r\n"
                         "%s%s%s%s"
                         "\r\n",
                         status, ps_http_server_reason(status), content_type, len, allow ? "Allow: " : "",
                         allow ? c->cfg.allow : "", allow ? "\r\n" : "", conn_hdr);
  if (rc == 0 && !head_only && len > 0) rc = ps_buf_append(&out, body, len);
  if (rc == 0) {
    if (c->sink != NULL)
      rc = ps_buf_append(c->sink, out.data, out.len);
    else if (c->nc != NULL)
      rc = ps_net_write(c->nc, (const uint8_t *)out.data, out.len);
    else
      rc = UV_EPIPE;
  }
  ps_buf_free(&out);
  return rc;
}

/* Answers a request that could not be (or will not be) parsed to its end, and closes: after a framing
 * error the position of the next request is unknown (RFC 9112 9.6 allows the close). The error body is
 * sent whatever the method: the connection closes right after it, so framing no longer matters. */
static void reject(struct ps_http_server_conn *c, int status, const char *why) {
  char code[8];
  snprintf(code, sizeof(code), "%d", status);
  log_debug(c, "request rejected", "status", code, "reason", why);
  const char *body;
  switch (status) {
  case 400: body = "bad request\n"; break;
  case 413: body = "request body too large\n"; break;
  case 414: body = "uri too long\n"; break;
  case 431: body = "request header fields too large\n"; break;
  case 505: body = "http version not supported\n"; break;
  default: body = "internal server error\n"; break;
  }
  send_response(c, status, PS_HTTP_SERVER_TEXT_PLAIN, body, strlen(body), false, false, c->http_minor);
  if (c->cfg.on_reject != NULL) {
    size_t n;
    const char *path = target_path(c->url.data ? c->url.data : "", c->url.len, &n);
    c->cfg.on_reject(status, path, n, c->cfg.arg);
  }
  shut(c);
}

const char *ps_http_server_req_method(const struct ps_http_server_req *req) {
  return llhttp_method_name((llhttp_method_t)req->method);
}

const char *ps_http_server_req_path(const struct ps_http_server_req *req, size_t *len) {
  *len = req->path_len;
  return req->path;
}

void ps_http_server_req_set_data(struct ps_http_server_req *req, void *data) { req->data = data; }
void *ps_http_server_req_data(const struct ps_http_server_req *req) { return req->data; }

int ps_http_server_respond(struct ps_http_server_req *req, int status, const char *content_type,
                           const void *body, size_t len, unsigned flags) {
  /* Owns `req` from here on, and frees it before returning whatever happens. */
  struct ps_http_server_conn *c = req->conn;
  if (c == NULL) {
    free(req); /* the connection closed while the answer was being prepared */
    return UV_EPIPE;
  }
  c->pending = NULL;
  bool keep = req->keep_alive && (flags & PS_HTTP_SERVER_CLOSE) == 0;
  int rc = send_response(c, status, content_type, body, len, req->method == HTTP_HEAD, keep, req->http_minor);
  free(req);
  if (rc != 0 || !keep) {
    shut(c);
    return rc;
  }
  if (!c->has_timer) return 0; /* memory mode: the next ps_http_server_mem_feed resumes */
  /* Progress: the connection is evictable again, and now the most recently idle of its listener. */
  if (c->nc != NULL) ps_net_set_idle(c->nc, true);
  /* The connection is idle again from now on, unless requests pipelined behind this one wait: they are
   * parsed from the loop (the handler must not run inside the application's call to us), or, when the
   * client is not reading, once it has drained our answers (on_drain). */
  if (c->stash.len > 0 && !backed_up(c))
    uv_timer_start(&c->timer, resume_cb, 0, 0);
  else
    uv_timer_start(&c->timer, idle_cb, c->cfg.idle_ms, 0);
  return 0;
}

/* A complete request: hand it to the handler. */
static void dispatch(struct ps_http_server_conn *c) {
  size_t n = c->url.len;
  struct ps_http_server_req *req = malloc(sizeof(*req) + n + 1);
  if (req == NULL) {
    reject(c, 500, "out of memory");
    return;
  }
  req->conn = c;
  req->method = c->method;
  req->http_minor = c->http_minor;
  req->keep_alive = c->keep_alive;
  req->data = NULL;
  if (n > 0) memcpy(req->target, c->url.data, n);
  req->target[n] = '\0';
  req->path = target_path(req->target, n, &req->path_len);
  c->pending = req;
  /* The handler owns req from here on; ps_http_server_respond, now or later, clears c->pending. */
  c->cfg.handler(req, c->cfg.arg);
  /* Answered later: the connection is not idle meanwhile, it waits for us (and is not evicted). */
  if (c->pending != NULL && c->has_timer && !c->closing) {
    uv_timer_stop(&c->timer);
    ps_net_set_idle(c->nc, false);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* Parsing                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

/* Charges n bytes just consumed by llhttp to the head or the body of the current message, and enforces
 * the limits. Bytes between messages (the CRLFs RFC 9112 2.2 lets a server skip) are charged to neither.
 * false when the connection was rejected. */
static bool charge(struct ps_http_server_conn *c, size_t n) {
  if (c->in_head) {
    c->head_bytes += n;
    if (c->head_bytes > PS_HTTP_SERVER_MAX_HEAD) {
      if (c->in_target)
        reject(c, 414, "request target too long"); /* RFC 9112 3 */
      else
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

/* Feeds bytes to the parser and dispatches every request completed in them, in order (pipelining, RFC
 * 9112 9.3.2). Returns how many bytes were consumed: all of them, unless a request is left to be answered
 * later, or the client stopped reading and our responses piled up past PS_NET_HIGH_WATER; the rest then
 * waits in the stash. */
static size_t process(struct ps_http_server_conn *c, const char *data, size_t len) {
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
      c->in_message = c->in_head = c->in_target = true;
      c->head_bytes = 0;
      c->body_bytes = 0;
      c->field_len = 0;
      c->hosts = 0;
      ps_buf_reset(&c->url);
      break;
    case EV_TARGET_DONE: c->in_target = false; break;
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
      dispatch(c);
      if (c->pending != NULL || (!c->closing && backed_up(c))) return (size_t)(p - data);
      break;
    default: break;
    }
  }
  return len;
}

/* Input path shared by sockets and memory mode. While a stash is held or a request waits for its
 * answer, newer bytes queue behind, so that requests are still answered in order. */
static void feed(struct ps_http_server_conn *c, const char *data, size_t len) {
  if (c->closing || len == 0) return;
  if (c->stash.len > 0 || c->pending != NULL) {
    if (c->stash.len + len > PS_HTTP_SERVER_MAX_STASH || ps_buf_append(&c->stash, data, len) != 0) shut(c);
    return;
  }
  size_t used = process(c, data, len);
  if (used < len && !c->closing && ps_buf_append(&c->stash, data + used, len - used) != 0) shut(c);
}

/* Parses what waited in the stash, if nothing holds it back any more. */
static void resume(struct ps_http_server_conn *c) {
  if (c->closing || c->pending != NULL || c->stash.len == 0 || backed_up(c)) return;
  /* Owns `held` here; feed() may stash a new remainder in the now empty c->stash. */
  size_t n;
  char *held = ps_buf_steal(&c->stash, &n);
  feed(c, held, n);
  free(held);
}

/* ------------------------------------------------------------------------------------------------ */
/* net.c glue                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

static void idle_cb(uv_timer_t *t) {
  struct ps_http_server_conn *c = t->data;
  log_debug(c, "connection idle, closing", NULL, NULL, NULL, NULL);
  shut(c);
}

/* Runs after a late answer, from the loop: the requests pipelined behind it are parsed now. */
static void resume_cb(uv_timer_t *t) {
  struct ps_http_server_conn *c = t->data;
  resume(c);
  /* A response armed the idle timeout again; if none was sent (a partial request, or input still held
   * back), the connection is idle from now. */
  if (!c->closing && c->pending == NULL && !uv_is_active((uv_handle_t *)&c->timer))
    uv_timer_start(&c->timer, idle_cb, c->cfg.idle_ms, 0);
}

/* The conn is freed here and only here in socket mode: on_close runs while the timer is still a live
 * handle, and libuv may touch it until this callback. */
static void timer_closed_cb(uv_handle_t *h) { conn_free(h->data); }

struct ps_http_server_conn *ps_http_server_open(struct ps_net_conn *nc,
                                                const struct ps_http_server_config *cfg) {
  struct ps_http_server_conn *c = conn_new(cfg);
  if (c == NULL) return NULL;
  if (uv_timer_init(ps_net_loop(nc), &c->timer) != 0) {
    conn_free(c);
    return NULL;
  }
  c->nc = nc;
  c->has_timer = true;
  c->timer.data = c;
  uv_timer_start(&c->timer, idle_cb, c->cfg.idle_ms, 0);
  /* Idle (evictable at the connection limit) whenever no request waits for its answer, even in the middle
   * of a request's bytes: a client that sends them slowly must not hold a slot that the kubelet needs. */
  ps_net_set_idle(nc, true);
  return c;
}

int ps_http_server_on_read(void *conn, const uint8_t *data, size_t len) {
  feed(conn, (const char *)data, len);
  return 0;
}

void ps_http_server_on_drain(void *conn) { resume(conn); }

void ps_http_server_on_close(void *conn) {
  struct ps_http_server_conn *c = conn;
  c->nc = NULL; /* net.c forgets the conn after this call */
  c->closing = true;
  cancel_pending(c);
  uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
}

/* ------------------------------------------------------------------------------------------------ */
/* Memory mode                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

struct ps_http_server_conn *ps_http_server_mem_new(const struct ps_http_server_config *cfg,
                                                   struct ps_buf *out) {
  struct ps_http_server_conn *c = conn_new(cfg);
  if (c != NULL) c->sink = out;
  return c;
}

int ps_http_server_mem_feed(struct ps_http_server_conn *c, const uint8_t *data, size_t len) {
  resume(c);
  feed(c, (const char *)data, len);
  return c->closing ? UV_EOF : 0;
}

void ps_http_server_mem_free(struct ps_http_server_conn *c) {
  c->closing = true;
  cancel_pending(c);
  conn_free(c);
}

int ps_http_server_feed_mem(const struct ps_http_server_config *cfg, const uint8_t *data, size_t len,
                            size_t chunk, struct ps_buf *out) {
  struct ps_http_server_conn *c = ps_http_server_mem_new(cfg, out);
  if (c == NULL) return UV_ENOMEM;
  if (chunk == 0) chunk = len;
  int rc = 0;
  for (size_t off = 0; off < len && rc == 0;) {
    size_t n = len - off < chunk ? len - off : chunk;
    rc = ps_http_server_mem_feed(c, data + off, n);
    off += n;
  }
  ps_http_server_mem_free(c);
  return rc;
}
