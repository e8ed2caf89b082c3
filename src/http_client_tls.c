/* TLS for the HTTP client (https://, RFC 9110 4.2.2): the glue between a connection's socket and its
 * ps_tls session (src/tls.h: OpenSSL on memory BIOs, so it never touches the socket and never blocks).
 *
 * A connection of an https request connects as any other; then ps_hc_tls_begin sends the ClientHello and
 * arms the handshake timer (PS_TLS_HANDSHAKE_TIMEOUT_MS, or the request's remaining time if shorter).
 * Encrypted bytes read from the socket go to ps_tls_feed; what it decrypts goes to the response parser
 * (ps_hc_conn_response_bytes), as plain bytes would. Once the handshake is done the request is sent through
 * ps_tls_write. Every encrypted piece ps_tls emits is written by its own uv_write (a copy: ps_tls reuses its
 * buffer), at most PS_HTTP_TLS_MAX_PENDING bytes in flight. A connection that closes sends close_notify
 * (RFC 8446 6.1) by one uv_try_write, best effort: nothing waits for it.
 *
 * A handshake that fails (the certificate does not verify, the server does not speak TLS, an alert) ends
 * the request at once with PS_HTTP_ERR_TLS and the reason in words from ps_tls_error, naming the server:
 * "tls 127.0.0.1:9443: x509: unknown authority". Never a header value: credentials are plaintext inside
 * the session and appear in no message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client_int.h"
#include "tls.h"

/* One encrypted piece on its way to the socket. */
struct tls_write {
  uv_write_t req;
  struct conn *cn;
  size_t len;
  char data[];
};

struct ps_tls_ctx *ps_hc_tls_default(struct ps_http_client *c, char *err, size_t errlen) {
  if (c->tls_default == NULL && ps_tls_ctx_client(NULL, false, &c->tls_default, err, errlen) != 0)
    c->tls_default = NULL;
  return c->tls_default;
}

int ps_http_client_tls_init(struct ps_http_client *c, char *err, size_t errlen) {
  return ps_hc_tls_default(c, err, errlen) != NULL ? 0 : UV_EPROTONOSUPPORT;
}

static void tls_write_cb(uv_write_t *w, int status) {
  struct tls_write *tw = w->data;
  struct conn *cn = tw->cn;
  cn->tls_writes--;
  cn->tls_pending -= tw->len;
  free(tw);
  /* A write that fails (EPIPE, ECONNRESET) on a TLS connection is left to the reading side, which is
   * always on: a server that refuses the handshake after it completed on our side (TLS 1.3: a client
   * certificate refused after the client's Finished) sends its alert and closes, and our request may hit
   * the closed socket before we read the alert, which says why. The read ends the request either way. */
  if (status != 0 && status != UV_ECANCELED && cn->state != CONN_CLOSING && cn->req != NULL &&
      !cn->req->got_bytes)
    return;
  ps_hc_write_failed(cn, status); /* nothing when it went well, or the conn is closing */
}

/* ps_tls's on_cipher: bytes for the socket. */
static int on_cipher(void *arg, const uint8_t *data, size_t len) {
  struct conn *cn = arg;
  if (cn->tls_quiet) {
    /* Closing: the socket closes right after this, which would cancel a queued write. */
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    (void)uv_try_write((uv_stream_t *)&cn->tcp, &b, 1);
    return 0;
  }
  if (cn->state == CONN_CLOSING) return UV_ECANCELED;
  if (len > PS_HTTP_TLS_MAX_PENDING - cn->tls_pending) return UV_ENOBUFS;
  struct tls_write *tw = malloc(sizeof *tw + len);
  if (tw == NULL) return UV_ENOMEM;
  memcpy(tw->data, data, len);
  tw->len = len;
  tw->cn = cn;
  tw->req.data = tw;
  uv_buf_t b = uv_buf_init(tw->data, (unsigned)len);
  int err = uv_write(&tw->req, (uv_stream_t *)&cn->tcp, &b, 1, tls_write_cb);
  if (err != 0) {
    free(tw);
    return err;
  }
  cn->tls_writes++;
  cn->tls_pending += len;
  return 0;
}

/* ps_tls's on_plain: decrypted response bytes. A non-zero return stops ps_tls_feed (the request was
 * answered, failed, or the connection closed: the rest is not for anyone). */
static int on_plain(void *arg, const uint8_t *data, size_t len) {
  struct conn *cn = arg;
  if (cn->state == CONN_CLOSING || cn->tls_stopped ||
      ps_hc_conn_response_bytes(cn, (const char *)data, len) != 0) {
    cn->tls_stopped = true;
    return UV_ECANCELED;
  }
  return 0;
}

static const struct ps_tls_io tls_io = {.on_plain = on_plain, .on_cipher = on_cipher};

static void tls_failed(struct conn *cn, int err) {
  struct ps_http_req *r = cn->req;
  if (r == NULL) { /* idle: an alert or garbage after a response; the connection is done */
    ps_hc_conn_close(cn);
    return;
  }
  const char *why = cn->tls != NULL ? ps_tls_error(cn->tls) : NULL;
  if (why == NULL || *why == '\0') why = uv_strerror(err);
  ps_hc_req_fail(r, PS_HTTP_ERR_TLS, "tls %s: %s", cn->peer, why);
}

static void handshake_timer_cb(uv_timer_t *t) {
  struct conn *cn = t->data;
  if (cn->req == NULL) {
    ps_hc_conn_close(cn);
    return;
  }
  uint64_t ms = uv_timer_get_repeat(t); /* the timeout it was armed with (see ps_hc_tls_begin) */
  ps_hc_req_fail(cn->req, UV_ETIMEDOUT, "tls %s: handshake not done after %llu ms", cn->peer,
                 (unsigned long long)ms);
}

void ps_hc_tls_begin(struct conn *cn) {
  struct ps_http_req *r = cn->req;
  int err = ps_tls_new(cn->tls_ctx, cn->sni, &tls_io, cn, &cn->tls);
  if (err != 0) {
    cn->tls = NULL;
    ps_hc_req_fail(r, err, "tls %s: cannot start a session: %s", cn->peer, uv_strerror(err));
    return;
  }
  err = uv_read_start((uv_stream_t *)&cn->tcp, ps_hc_alloc_cb, ps_hc_read_cb);
  if (err != 0) {
    ps_hc_req_fail(r, err, "read from %s: %s", cn->peer, uv_strerror(err));
    return;
  }
  /* The handshake gets PS_TLS_HANDSHAKE_TIMEOUT_MS, or what is left of the request's time if less (its own
   * timer then fires too, with the same words). The timeout rides in the timer's repeat field, unused
   * otherwise (the timer is one-shot: stopped before it could repeat). */
  uint64_t ms = PS_TLS_HANDSHAKE_TIMEOUT_MS;
  uint64_t left = uv_timer_get_due_in(&r->timer);
  if (left > 0 && left < ms) ms = left;
  uv_timer_start(&cn->timer, handshake_timer_cb, ms, ms);
  err = ps_tls_start(cn->tls);
  if (err != 0) tls_failed(cn, err);
}

void ps_hc_tls_read(struct conn *cn, const char *data, size_t len) {
  cn->tls_stopped = false;
  int err = ps_tls_feed(cn->tls, (const uint8_t *)data, len);
  /* on_plain handed the conn back or failed its request (its state says what it is now), or it closed */
  if (cn->tls_stopped || cn->state == CONN_CLOSING) return;
  if (err == UV_EOF) { /* close_notify from the server: as a TCP EOF */
    ps_hc_read_failed(cn, UV_EOF);
    return;
  }
  if (err != 0) {
    tls_failed(cn, err);
    return;
  }
  if (!cn->tls_ready && ps_tls_handshake_done(cn->tls)) {
    cn->tls_ready = true;
    cn->client->tls_handshakes++;
    uv_timer_stop(&cn->timer);
    if (cn->req != NULL) ps_hc_conn_send(cn, cn->req);
  }
}

int ps_hc_tls_send(struct conn *cn) {
  return ps_tls_write(cn->tls, (const uint8_t *)cn->wbuf.data, cn->wbuf.len);
}

void ps_hc_tls_close(struct conn *cn) {
  if (cn->tls == NULL || !cn->tls_ready || cn->state == CONN_CLOSING) return;
  cn->tls_quiet = true;
  (void)ps_tls_shutdown(cn->tls);
}

void ps_hc_tls_free(struct conn *cn) {
  ps_tls_free(cn->tls);
  cn->tls = NULL;
}
