/* gRPC client over h2c on libuv + nghttp2 (PROTOCOL-HTTP2.md, grpc/grpc doc; RFC 9113): the connection
 * half (DNS, sockets, the handshake, closing). The call half is grpc_client_call.c.
 *
 * Objects and lifetimes:
 *  - struct ps_grpc_client: one connection. Owns a timer (connect timeout, then the close linger), the
 *    current socket, the nghttp2 session, and the list of open calls. Freed when it was closed and its
 *    last reference went (c->refs counts the timer, each socket, each call not yet freed, and a DNS
 *    request in flight), always from a close or DNS callback, never from inside nghttp2.
 *  - struct sock: one TCP attempt (several when a name resolves to several addresses). Freed in its
 *    close callback.
 *  - struct ps_grpc_call: one RPC. Owns a timer (its deadline) and is freed in that timer's close
 *    callback, so a call ended from inside an nghttp2 callback stays valid until the loop turns.
 * nghttp2 calls never nest: code running inside a callback (user callbacks included) may submit frames;
 * the outer mem_recv/mem_send loop picks them up (c->in_session guards flush). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_client_int.h"

static void finish_close(struct ps_grpc_client *c);
static void try_next_address(struct ps_grpc_client *c);

/* ==== target, references ========================================================================== */

/* "host:port" or "[v6]:port" -> host (unbracketed) and a numeric port string. 0 or UV_EINVAL. */
static int parse_target(const char *t, char *host, char *port) {
  size_t len = strlen(t);
  int pn;
  if (len > PS_GRPC_CLIENT_MAX_TARGET || ps_hostport_parse(t, len, 0, host, HOST_MAX, &pn) != 0)
    return UV_EINVAL;
  snprintf(port, PORT_MAX, "%d", pn);
  return 0;
}

void ps_gc_client_unref(struct ps_grpc_client *c) {
  if (--c->refs > 0 || !c->closing) return;
  if (c->session != NULL) nghttp2_session_del(c->session);
  if (c->addrs != NULL) uv_freeaddrinfo(c->addrs);
  ps_buf_free(&c->batch);
  free(c);
}

/* ==== socket I/O =================================================================================== */

static void sock_closed(uv_handle_t *h) {
  struct sock *sk = h->data;
  struct ps_grpc_client *c = sk->c;
  free(sk);
  ps_gc_client_unref(c);
}

static void sock_close(struct ps_grpc_client *c) {
  struct sock *sk = c->sock;
  if (sk == NULL) return;
  c->sock = NULL;
  if (!uv_is_closing((uv_handle_t *)&sk->tcp)) uv_close((uv_handle_t *)&sk->tcp, sock_closed);
}

static void write_cb(uv_write_t *w, int status) {
  struct wreq *wr = (struct wreq *)w;
  struct ps_grpc_client *c = wr->c;
  c->unsent -= wr->len;
  free(wr);
  if (status == 0 && c->sock != NULL && c->unsent < PS_GRPC_CLIENT_HIGH_WATER) ps_gc_flush(c);
  /* A failed write shows up as a read error or EOF too; the read side reports it. */
}

static void write_batch(struct ps_grpc_client *c) {
  if (c->batch.len == 0 || c->sock == NULL) {
    ps_buf_reset(&c->batch);
    return;
  }
  struct wreq *wr = malloc(sizeof *wr + c->batch.len);
  if (wr == NULL) {
    c->fatal = true;
    ps_buf_reset(&c->batch);
    return;
  }
  wr->c = c;
  wr->len = c->batch.len;
  memcpy(wr->data, c->batch.data, c->batch.len);
  ps_buf_reset(&c->batch);
  uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)wr->len);
  if (uv_write(&wr->req, (uv_stream_t *)&c->sock->tcp, &b, 1, write_cb) != 0) {
    free(wr);
    c->fatal = true;
    return;
  }
  c->unsent += wr->len;
}

static void conn_lost(struct ps_grpc_client *c, int err, const char *what);

/* Moves frames from nghttp2 to the socket while the kernel keeps up. */
void ps_gc_flush(struct ps_grpc_client *c) {
  if (c->in_session > 0 || c->sock == NULL || !session_usable(c)) return;
  c->in_session++;
  while (c->unsent < PS_GRPC_CLIENT_HIGH_WATER) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(c->session, &p);
    if (n < 0) {
      c->fatal = true;
      break;
    }
    if (n == 0) break;
    if (ps_buf_append(&c->batch, p, (size_t)n) != 0) {
      c->fatal = true;
      break;
    }
    if (c->batch.len >= WRITE_BATCH) write_batch(c);
  }
  write_batch(c);
  c->in_session--;
  if (c->close_started) {
    finish_close(c);
  } else if (c->closing) {
    /* ps_grpc_client_close is still running: it finishes the close itself */
  } else if (c->fatal) {
    conn_lost(c, UV_EPROTO, "HTTP/2 session failed");
  } else if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) {
    /* GOAWAY exchanged and no stream left; before the handshake, the peer rejected our preface. */
    if (c->state == ST_READY)
      conn_lost(c, UV_ECONNRESET, "the server ended the HTTP/2 session (GOAWAY)");
    else
      conn_lost(c, UV_EPROTO, "its first bytes are not HTTP/2 SETTINGS");
  }
}

/* ==== connecting =================================================================================== */

static void connect_done(struct ps_grpc_client *c, int err) {
  ps_grpc_connect_cb cb = c->connect_cb;
  c->connect_cb = NULL;
  if (err != 0) {
    c->state = ST_DEAD;
    uv_timer_stop(&c->timer);
    sock_close(c);
    ps_gc_end_all(c, PS_GRPC_UNAVAILABLE, c->errmsg);
  }
  if (cb != NULL) cb(c->connect_arg, err, err != 0 ? c->errmsg : NULL);
}

static void connect_failf(struct ps_grpc_client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void connect_failf(struct ps_grpc_client *c, int err, const char *fmt, ...) {
  int off = snprintf(c->errmsg, sizeof c->errmsg, "cannot connect to %s: ", c->target);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->errmsg + off, sizeof c->errmsg - (size_t)off, fmt, ap);
  va_end(ap);
  connect_done(c, err);
}

/* Connection lost after the handshake, or the session failed: every open call ends UNAVAILABLE. */
static void conn_lost(struct ps_grpc_client *c, int err, const char *what) {
  if (c->state == ST_DEAD || c->closing) return;
  if (c->state != ST_READY) {
    if (err == UV_EPROTO)
      connect_failf(c, err, "the server does not speak HTTP/2 with prior knowledge (h2c): %s", what);
    else
      connect_failf(c, err, "%s before sending HTTP/2 SETTINGS (is it an h2c gRPC server?)", what);
    return;
  }
  c->state = ST_DEAD;
  c->fatal = true;
  sock_close(c);
  snprintf(c->errmsg, sizeof c->errmsg, "connection to %s lost: %s", c->target, what);
  ps_gc_end_all(c, PS_GRPC_UNAVAILABLE, c->errmsg);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct sock *sk = h->data;
  buf->base = sk->c->rbuf;
  buf->len = sizeof sk->c->rbuf;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct sock *sk = s->data;
  struct ps_grpc_client *c = sk->c;
  if (c->sock != sk || nread == 0) return;
  if (nread < 0) {
    char what[128];
    if (nread == UV_EOF)
      snprintf(what, sizeof what, "the server closed the connection");
    else
      snprintf(what, sizeof what, "%s", uv_strerror((int)nread));
    conn_lost(c, nread == UV_EOF ? UV_ECONNRESET : (int)nread, what);
    return;
  }
  c->in_session++;
  ssize_t n = nghttp2_session_mem_recv(c->session, (const uint8_t *)buf->base, (size_t)nread);
  c->in_session--;
  if (n < 0) {
    /* Fatal (bad server preface, flood, out of memory): nghttp2 answers what it can with GOAWAY itself
     * and returns errors only when the session cannot go on. */
    char what[128];
    snprintf(what, sizeof what, "HTTP/2 protocol error: %s", nghttp2_strerror((int)n));
    c->fatal = true;
    conn_lost(c, UV_EPROTO, what);
    if (c->close_started) finish_close(c);
    return;
  }
  ps_gc_flush(c);
  if (c->close_started) finish_close(c); /* closed from a callback while flush could not run */
}

/* One address failed: errmsg says why (the connect ends with it if no address is left) and its socket
 * goes. */
static void attempt_failed(struct ps_grpc_client *c, int err, const char *why) {
  c->last_err = err;
  snprintf(c->errmsg, sizeof c->errmsg, "cannot connect to %s: %s", c->target, why);
  sock_close(c);
}

static void timer_closed(uv_handle_t *h) { ps_gc_client_unref(h->data); }

static void close_timer(struct ps_grpc_client *c) {
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, timer_closed);
}

static void timer_cb(uv_timer_t *t) {
  struct ps_grpc_client *c = t->data;
  if (c->closing) { /* the close linger ran out: drop what is unsent */
    sock_close(c);
    close_timer(c);
    return;
  }
  if (c->state == ST_CONNECTING) {
    char why[64];
    snprintf(why, sizeof why, "timed out after %llu ms", (unsigned long long)c->connect_timeout_ms);
    attempt_failed(c, UV_ETIMEDOUT, why);
    try_next_address(c);
  } else if (c->state == ST_HANDSHAKE) {
    connect_failf(c, UV_ETIMEDOUT,
                  "no HTTP/2 SETTINGS from the server within %llu ms (is it an h2c gRPC server?)",
                  (unsigned long long)c->connect_timeout_ms);
  }
}

static void connect_cb(uv_connect_t *req, int status) {
  struct sock *sk = req->data;
  struct ps_grpc_client *c = sk->c;
  if (c->sock != sk || c->state != ST_CONNECTING) return; /* given up on (timeout, close) */
  if (status != 0) {
    attempt_failed(c, status, uv_strerror(status));
    try_next_address(c);
    return;
  }
  uv_tcp_nodelay(&sk->tcp, 1);
  c->state = ST_HANDSHAKE;
  int err = uv_read_start((uv_stream_t *)&sk->tcp, alloc_cb, read_cb);
  if (err != 0) {
    connect_failf(c, err, "%s", uv_strerror(err));
    return;
  }
  /* The client connection preface (RFC 9113 3.4): the magic and our SETTINGS go out now; the server's
   * SETTINGS, within the same timeout, tell us it speaks HTTP/2. */
  uv_timer_start(&c->timer, timer_cb, c->connect_timeout_ms, 0);
  ps_gc_flush(c);
}

/* Tries the resolved addresses in order (RFC 6724 order from getaddrinfo), each with its own timeout,
 * so a name whose first address refuses or blackholes still works through the next. */
static void try_next_address(struct ps_grpc_client *c) {
  while (c->next_addr != NULL) {
    struct addrinfo *ai = c->next_addr;
    c->next_addr = ai->ai_next;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    struct sock *sk = calloc(1, sizeof *sk);
    if (sk == NULL) {
      connect_failf(c, UV_ENOMEM, "out of memory");
      return;
    }
    sk->c = c;
    if (uv_tcp_init(c->loop, &sk->tcp) != 0) {
      free(sk);
      connect_failf(c, UV_ENOMEM, "cannot create a socket");
      return;
    }
    sk->tcp.data = sk;
    sk->creq.data = sk;
    c->refs++;
    c->sock = sk;
    c->state = ST_CONNECTING;
    int err = uv_tcp_connect(&sk->creq, &sk->tcp, ai->ai_addr, connect_cb);
    if (err != 0) {
      attempt_failed(c, err, uv_strerror(err));
      continue;
    }
    uv_timer_start(&c->timer, timer_cb, c->connect_timeout_ms, 0);
    return;
  }
  if (c->last_err == 0) {
    connect_failf(c, UV_EADDRNOTAVAIL, "no usable address for \"%s\"", c->host);
    return;
  }
  connect_done(c, c->last_err); /* errmsg already says what the last attempt met */
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct ps_grpc_client *c = req->data;
  if (c->closing) {
    if (res != NULL) uv_freeaddrinfo(res);
    ps_gc_client_unref(c);
    return;
  }
  c->refs--; /* the request is over; the client holds the timer reference still */
  if (status != 0) {
    connect_failf(c, status, "cannot resolve \"%s\": %s", c->host, uv_strerror(status));
    return;
  }
  c->addrs = c->next_addr = res;
  try_next_address(c);
}

/* ==== client lifecycle ============================================================================= */

int ps_grpc_client_new(uv_loop_t *loop, const struct ps_grpc_client_opts *opts, ps_grpc_connect_cb cb,
                       void *arg, struct ps_grpc_client **out) {
  if (loop == NULL || opts == NULL || opts->target == NULL || out == NULL) return UV_EINVAL;
  struct ps_grpc_client *c = calloc(1, sizeof *c);
  if (c == NULL) return UV_ENOMEM;
  if (parse_target(opts->target, c->host, c->port) != 0) {
    free(c);
    return UV_EINVAL;
  }
  snprintf(c->target, sizeof c->target, "%s", opts->target);
  c->loop = loop;
  c->connect_timeout_ms =
      opts->connect_timeout_ms ? opts->connect_timeout_ms : PS_GRPC_CLIENT_CONNECT_TIMEOUT_MS;
  c->max_msg = opts->max_msg ? opts->max_msg : PS_GRPC_MAX_MSG_DEFAULT;
  c->connect_cb = cb;
  c->connect_arg = arg;
  ps_buf_init(&c->batch);
  int err = ps_gc_session_new(c);
  if (err != 0) {
    if (c->session != NULL) nghttp2_session_del(c->session);
    free(c);
    return err;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV; /* not AI_ADDRCONFIG: it hides 127.0.0.1 on a host with loopback only */
  c->gai.data = c;
  c->state = ST_RESOLVING;
  /* Asynchronous (threadpool): gai_cb runs later even for a numeric address. */
  err = uv_getaddrinfo(loop, &c->gai, gai_cb, c->host, c->port, &hints);
  if (err != 0) {
    nghttp2_session_del(c->session);
    free(c);
    return err;
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->refs = 2; /* the timer and the DNS request */
  *out = c;
  return 0;
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  struct sock *sk = req->data;
  if (!uv_is_closing((uv_handle_t *)&sk->tcp)) uv_close((uv_handle_t *)&sk->tcp, sock_closed);
  struct ps_grpc_client *c = sk->c;
  if (c->sock == sk) c->sock = NULL;
  close_timer(c);
}

/* The last step of closing, once no nghttp2 call is on the stack: GOAWAY has been handed to the socket;
 * a half-close (shutdown) follows the queued bytes, bounded by the linger timer. */
static void finish_close(struct ps_grpc_client *c) {
  if (c->close_done || c->in_session > 0) return;
  c->close_done = true;
  struct sock *sk = c->sock;
  if (sk != NULL && c->state == ST_READY && !c->fatal) {
    uv_read_stop((uv_stream_t *)&sk->tcp);
    sk->sreq.data = sk;
    if (uv_shutdown(&sk->sreq, (uv_stream_t *)&sk->tcp, shutdown_cb) == 0) {
      uv_timer_stop(&c->timer);
      uv_timer_start(&c->timer, timer_cb, PS_GRPC_CLIENT_CLOSE_LINGER_MS, 0);
      return;
    }
  }
  sock_close(c);
  close_timer(c);
}

void ps_grpc_client_close(struct ps_grpc_client *c) {
  if (c == NULL || c->closing) return;
  c->closing = true; /* first: done callbacks that start new calls are refused */
  if (c->state == ST_RESOLVING) uv_cancel((uv_req_t *)&c->gai); /* gai_cb then only drops its reference */
  ps_gc_end_all(c, PS_GRPC_CANCELLED, "the client is closing");
  ps_grpc_connect_cb cb = c->connect_cb;
  c->connect_cb = NULL;
  if (cb != NULL) {
    snprintf(c->errmsg, sizeof c->errmsg, "cannot connect to %s: the client was closed", c->target);
    cb(c->connect_arg, UV_ECANCELED, c->errmsg);
  }
  if (session_usable(c) && c->state == ST_READY)
    nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
  /* GOAWAY goes out now, or, when nghttp2 is on the stack (closed from a callback), when the outer
   * recv/send returns; finish_close follows either way. */
  c->close_started = true;
  ps_gc_flush(c);
  finish_close(c);
}

const char *ps_grpc_client_target(const struct ps_grpc_client *c) { return c->target; }
size_t ps_grpc_client_open_calls(const struct ps_grpc_client *c) { return c->ncalls; }
