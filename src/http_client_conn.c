/* HTTP/1.1 client on libuv (RFC 9110, RFC 9112) for talking to Prometheus: its connections.
 *
 * Here: a connection's life (open, close, the budget's eviction of idle ones), connecting with a timeout
 * per resolved address, the keep-alive pool (parking, reuse, the one retry of a reused connection),
 * writing a request and reading its response (with the read burst that yields the loop). Apart from
 * http_client.c (the client, each request's lifetime, timer and DNS) because a connection outlives its
 * requests and has a lifecycle of its own; the objects both share are in http_client_int.h. Same module:
 * http_client.h, tested in tests/unit/test_http_client.c (every path here is a request's path). */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client_int.h"
#include "metrics.h"

static void conn_close(struct conn *cn);
static void conn_send(struct conn *cn, struct ps_http_req *r);

/* ==== the keep-alive pool ========================================================================== */

/* Whether cn may carry r: the same host:port and, for https, the same TLS context and server name. */
static bool conn_fits(const struct conn *cn, const char *key, const struct ps_tls_ctx *tls, const char *sni) {
  return strcmp(cn->key, key) == 0 && cn->tls_ctx == tls && (tls == NULL || strcmp(cn->sni, sni) == 0);
}

struct conn *ps_hc_pool_take_idle(struct ps_http_client *c, const struct ps_http_req *r) {
  ps_list_foreach(n, &c->conns) {
    struct conn *cn = ps_list_entry(n, struct conn, node);
    if (cn->state == CONN_IDLE && conn_fits(cn, r->hostport, r->tls_ctx, r->sni)) return cn;
  }
  return NULL;
}

/* ==== connections ================================================================================== */

static void conn_handle_closed(uv_handle_t *h) {
  struct conn *cn = h->data;
  if (--cn->open_handles > 0) return;
  struct ps_http_client *c = cn->client;
  ps_hc_tls_free(cn);
  ps_buf_wipe(&cn->wbuf);
  ps_buf_free(&cn->wbuf);
  free(cn);
  c->live--;
  ps_hc_client_maybe_free(c);
}

/* Closes the socket and the timer; a write or connect in flight gets UV_ECANCELED first. The request it
 * served, if any, must have been dealt with by the caller (it is only unlinked here). */
static void conn_close(struct conn *cn) {
  if (cn->state == CONN_CLOSING) return;
  ps_list_remove(&cn->node);
  /* uv_close closes a stream's descriptor at once (the handle's memory waits for the callback). */
  cn->client->nconns--;
  ps_metrics_set("prescale_prometheus_connections", "", (double)cn->client->nconns);
  ps_hc_tls_close(cn); /* close_notify while the socket is open */
  cn->state = CONN_CLOSING;
  if (cn->req != NULL) {
    cn->req->conn = NULL;
    cn->req = NULL;
  }
  uv_close((uv_handle_t *)&cn->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&cn->timer, conn_handle_closed);
}

static struct conn *conn_new(struct ps_http_client *c, const struct ps_http_req *r) {
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
  snprintf(cn->key, sizeof cn->key, "%s", r->hostport);
  cn->tls_ctx = r->tls_ctx;
  snprintf(cn->sni, sizeof cn->sni, "%s", r->sni);
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
  ps_hc_req_connect_next(r);
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
  if (cn->tls_ctx != NULL) {
    ps_hc_tls_begin(cn); /* sends the request once the handshake is done */
    return;
  }
  conn_send(cn, cn->req);
}

/* Tries the addresses left from resolution in order (RFC 6724 order from getaddrinfo), so a host whose
 * first address refuses or blackholes still works through the next. */
void ps_hc_req_connect_next(struct ps_http_req *r) {
  while (r->next_addr != NULL) {
    struct addrinfo *ai = r->next_addr;
    r->next_addr = ai->ai_next;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    conns_make_room(r->client);
    struct conn *cn = conn_new(r->client, r);
    if (cn == NULL) {
      ps_hc_req_fail(r, UV_ENOMEM, "GET %.*s: out of memory", URL_IN_MSG_MAX, r->url);
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
  ps_hc_req_finish(r, err, NULL);
}

static void idle_timer_cb(uv_timer_t *t) { conn_close(t->data); }

/* Parks a connection after a complete response, or closes it when the pool for its host is full. */
static void conn_park(struct conn *cn) {
  struct ps_http_client *c = cn->client;
  int idle = 0;
  ps_list_foreach(n, &c->conns) {
    const struct conn *o = ps_list_entry(n, struct conn, node);
    if (o->state == CONN_IDLE && conn_fits(o, cn->key, cn->tls_ctx, cn->sni)) idle++;
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
  ps_hc_req_resolve(r);
  return true;
}

/* ==== request writing ============================================================================== */

void ps_hc_write_failed(struct conn *cn, int status) {
  if (status == UV_ECANCELED || cn->state == CONN_CLOSING) return;
  if (status != 0 && cn->req != NULL) {
    if (maybe_retry(cn)) return;
    struct ps_http_req *r = cn->req;
    ps_hc_req_fail(r, status, "send to %s: %s", cn->peer, uv_strerror(status));
  }
}

static void write_cb(uv_write_t *w, int status) {
  struct conn *cn = w->data;
  cn->writing = false;
  ps_buf_wipe(&cn->wbuf); /* the request is written: its Authorization line does not wait in the pool */
  ps_hc_write_failed(cn, status);
}

void ps_hc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct conn *cn = h->data;
  buf->base = cn->rbuf;
  buf->len = sizeof cn->rbuf;
}

/* Sends r on cn (fresh or idle). Errors are deferred through the request timer, because this runs from
 * inside ps_http_get when an idle connection is reused. */
static void conn_send(struct conn *cn, struct ps_http_req *r) {
  uv_timer_stop(&cn->timer);
  cn->state = CONN_BUSY;
  cn->req = r;
  r->conn = cn;
  ps_hc_req_reset_response(r);
  if (cn->peer[0] == '\0') snprintf(cn->peer, sizeof cn->peer, "%s", r->hostport);
  llhttp_init(&cn->parser, HTTP_RESPONSE, &ps_hc_parser_settings);
  cn->parser.data = r;
  ps_buf_reset(&cn->wbuf);
  /* Host carries the port unless it is the scheme's default (RFC 9110 7.2). */
  char hosthdr[HOSTPORT_MAX];
  if (r->port != (r->tls_ctx != NULL ? HTTPS_DEFAULT_PORT : HTTP_DEFAULT_PORT))
    snprintf(hosthdr, sizeof hosthdr, "%s", r->hostport);
  else if (strchr(r->host, ':') != NULL)
    snprintf(hosthdr, sizeof hosthdr, "[%s]", r->host);
  else
    snprintf(hosthdr, sizeof hosthdr, "%s", r->host);
  int err = ps_buf_printf(&cn->wbuf,
                          "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: prescale/0.1\r\n"
                          "Accept: application/json\r\nAccept-Encoding: identity\r\n",
                          r->path, hosthdr);
  /* The extra lines may hold a secret (an Authorization value): appended into room made first, so that
   * no copy is left in a block a growth frees or in ps_buf_vprintf's stack buffer; wiped once sent. */
  size_t hlen = r->headers != NULL ? strlen(r->headers) : 0;
  if (err == 0) err = ps_buf_reserve(&cn->wbuf, hlen + 2);
  if (err == 0 && hlen > 0) err = ps_buf_append(&cn->wbuf, r->headers, hlen);
  if (err == 0) err = ps_buf_append(&cn->wbuf, "\r\n", 2);
  if (err == 0) {
    err = uv_read_start((uv_stream_t *)&cn->tcp, ps_hc_alloc_cb, ps_hc_read_cb);
    if (err == UV_EALREADY) err = 0; /* idle connections keep reading */
  }
  if (err == 0 && cn->tls != NULL) {
    err = ps_hc_tls_send(cn); /* copied into the TLS session */
  } else if (err == 0) {
    uv_buf_t b = uv_buf_init(cn->wbuf.data, (unsigned)cn->wbuf.len);
    cn->write_req.data = cn;
    err = uv_write(&cn->write_req, (uv_stream_t *)&cn->tcp, &b, 1, write_cb);
    if (err == 0) cn->writing = true;
  }
  if (!cn->writing) ps_buf_wipe(&cn->wbuf); /* copied or not sent; else write_cb wipes it */
  if (err != 0) {
    snprintf(r->errmsg, sizeof r->errmsg, "send to %s: %s", cn->peer, uv_strerror(err));
    r->conn = NULL;
    cn->req = NULL;
    conn_close(cn);
    ps_hc_req_defer_error(r, err);
  }
}

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
  ps_hc_req_finish(r, 0, &resp);
}

void ps_hc_read_failed(struct conn *cn, int nread) {
  struct ps_http_req *r = cn->req;
  if (r == NULL) { /* idle: the server closed it, or reset it */
    conn_close(cn);
    return;
  }
  if (maybe_retry(cn)) return;
  if (nread == UV_EOF && r->got_bytes && !r->parse_err && ps_hc_complete_at_eof(&cn->parser, r)) {
    deliver(cn, false);
    return;
  }
  int err = nread == UV_EOF ? UV_ECONNRESET : nread;
  if (r->got_bytes)
    ps_hc_req_fail(r, err, "GET %.*s: connection to %s closed in the middle of the response (%s)",
                   URL_IN_MSG_MAX, r->url, cn->peer, nread == UV_EOF ? "EOF" : uv_strerror(nread));
  else
    ps_hc_req_fail(r, err, "GET %.*s: %s closed the connection without responding (%s)", URL_IN_MSG_MAX,
                   r->url, cn->peer, nread == UV_EOF ? "EOF" : uv_strerror(nread));
}

static void resume_cb(uv_timer_t *t) {
  struct conn *cn = t->data;
  int err = uv_read_start((uv_stream_t *)&cn->tcp, ps_hc_alloc_cb, ps_hc_read_cb);
  if (err != 0 && err != UV_EALREADY && cn->req != NULL)
    ps_hc_req_fail(cn->req, err, "GET %.*s: read from %s: %s", URL_IN_MSG_MAX, cn->req->url, cn->peer,
                   uv_strerror(err));
}

/* Yields the loop after PS_HTTP_READ_BURST bytes read by all connections: every connection reading a
 * response stops, so the rest of the poll phase goes to other descriptors (gRPC, /healthz), and each conn's
 * timer, unused while a request is served, resumes its reading at the next turn. A connection still
 * connecting or in its TLS handshake uses its timer for that and is left alone (it reads no response yet).
 * A request timeout or cancel meanwhile closes the conn with its timer, so nothing resumes a closed conn. */
static void pause_reading(struct ps_http_client *c) {
  c->burst = 0;
  ps_list_foreach(n, &c->conns) {
    struct conn *cn = ps_list_entry(n, struct conn, node);
    if (cn->state != CONN_BUSY || (cn->tls != NULL && !cn->tls_ready)) continue;
    uv_read_stop((uv_stream_t *)&cn->tcp);
    uv_timer_start(&cn->timer, resume_cb, 0, 0);
  }
}

/* Response bytes of cn's request (read, or decrypted): 0 to read on; otherwise the response was delivered
 * or the request failed, and cn is parked or closed. */
int ps_hc_conn_response_bytes(struct conn *cn, const char *data, size_t len) {
  struct ps_http_req *r = cn->req;
  if (r == NULL) { /* bytes on an idle connection: nothing was asked, so it is out of step; drop it */
    conn_close(cn);
    return UV_ECANCELED;
  }
  r->got_bytes = true;
  llhttp_errno_t e = llhttp_execute(&cn->parser, data, len);
  if (e == HPE_PAUSED && r->complete) {
    /* Reuse only when the server allows it (Connection: close, HTTP/1.0, close-delimited bodies say no)
     * and sent nothing past the response. */
    bool reusable = llhttp_should_keep_alive(&cn->parser) && llhttp_get_error_pos(&cn->parser) == data + len;
    deliver(cn, reusable);
    return UV_ECANCELED;
  }
  if (e == HPE_OK) return 0;
  if (r->parse_err != 0) {
    ps_hc_req_finish(r, r->parse_err, NULL);
    return UV_ECANCELED;
  }
  ps_hc_req_fail(r, UV_EPROTO, "GET %.*s: malformed HTTP response from %s: %s", URL_IN_MSG_MAX, r->url,
                 cn->peer, llhttp_get_error_reason(&cn->parser));
  return UV_ECANCELED;
}

void ps_hc_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct conn *cn = s->data;
  struct ps_http_client *c = cn->client;
  if (cn->state == CONN_CLOSING) return;
  if (nread == 0) return;
  if (nread > 0) c->burst += (size_t)nread; /* parsed below, whatever becomes of cn */
  if (nread < 0) {
    if (cn->tls != NULL && !cn->tls_ready && cn->req != NULL)
      ps_hc_req_fail(cn->req, PS_HTTP_ERR_TLS, "tls %s: connection closed during the handshake (%s)",
                     cn->peer, nread == UV_EOF ? "EOF" : uv_strerror((int)nread));
    else
      ps_hc_read_failed(cn, (int)nread);
    return;
  }
  if (cn->tls != NULL) {
    ps_hc_tls_read(cn, buf->base, (size_t)nread);
  } else if (ps_hc_conn_response_bytes(cn, buf->base, (size_t)nread) != 0) {
    return;
  }
  /* The client outlives its conns' callbacks: it is freed only once every conn is closed. */
  if (c->burst >= PS_HTTP_READ_BURST && !c->closing) pause_reading(c);
}

/* For http_client.c and http_client_tls.c. */
void ps_hc_conn_close(struct conn *cn) { conn_close(cn); }
void ps_hc_conn_send(struct conn *cn, struct ps_http_req *r) { conn_send(cn, r); }
