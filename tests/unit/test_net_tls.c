/* A TLS listener (src/net.c with src/net_tls.c) over real loopback sockets: a small echo protocol behind
 * ps_net_listener_set_tls, and a client made of a uv_tcp_t and a client ps_tls. The protocol sees only
 * plaintext; the handshake timeout, garbage, close_notify, backpressure counted in ciphertext, mTLS and a
 * reload with a connection open. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "cert_fixture.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "net.h"
#include "tls.h"

static uv_loop_t loop;
static struct ps_test_cert ca, leaf, other_ca;

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  ps_test_cert_ca(&ca, "prescale test CA");
  ps_test_cert_leaf(&leaf, &ca, 2);
  ps_test_cert_ca(&other_ca, "another CA");
}

static void teardown(void) {
  ps_test_cert_free(&ca);
  ps_test_cert_free(&leaf);
  ps_test_cert_free(&other_ca);
}

TestSuite(net_tls, .init = setup, .fini = teardown, .timeout = 60);

/* ---- the server: echoes, says "hi" on open (before the handshake is done), floods on "flood" ------ */

#define FLOOD_BYTES (8u << 20)

static struct {
  int opens, closes;
  struct ps_net_conn *last;
  struct ps_buf rx;
  size_t pending_seen;
  bool paused_seen;
} srv;

static void *on_open(struct ps_net_conn *c, void *arg) {
  srv.opens++;
  srv.last = c;
  cr_assert_eq(ps_net_write(c, (const uint8_t *)"hi", 2), 0);
  return c;
}

static int on_read(void *state, const uint8_t *data, size_t len) {
  struct ps_net_conn *c = state;
  ps_buf_append(&srv.rx, data, len);
  if (len == 5 && memcmp(data, "flood", 5) == 0) {
    uint8_t *big = malloc(FLOOD_BYTES);
    for (size_t i = 0; i < FLOOD_BYTES; i++) big[i] = (uint8_t)(i % 251);
    cr_assert_eq(ps_net_write(c, big, FLOOD_BYTES), 0);
    free(big);
    srv.pending_seen = ps_net_pending(c);
    srv.paused_seen = ps_net_paused(c);
    return 0;
  }
  if (len == 4 && memcmp(data, "quit", 4) == 0) {
    ps_net_close(c);
    return 0;
  }
  return ps_net_write(c, data, len);
}

static void on_close(void *state) { srv.closes++; }

static const struct ps_net_proto proto = {on_open, on_read, NULL, on_close, NULL};

static struct ps_net_listener *listener;
static struct ps_tls_ctx *server_ctx;
static bool listener_done;
static void done_cb(void *arg) { listener_done = true; }
static bool is_listener_done(void *arg) { return listener_done; }

/* A TLS listener named "grpc" serving `cert` (client certificates from client_ca when set). */
static int start_server(const struct ps_test_cert *cert, const struct ps_test_cert *client_ca,
                        uint64_t hs_ms) {
  memset(&srv, 0, sizeof srv);
  ps_buf_init(&srv.rx);
  listener_done = false;
  struct ps_tls_pem pem = {
      .cert = cert->cert, .cert_len = cert->cert_len, .key = cert->key, .key_len = cert->key_len};
  if (client_ca) pem.ca = client_ca->cert, pem.ca_len = client_ca->cert_len;
  char err[PS_TLS_ERR_MAX] = "";
  cr_assert_eq(ps_tls_ctx_server(&pem, &server_ctx, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ps_net_listen(&loop, "127.0.0.1:0", &proto, NULL, &listener), 0);
  ps_net_listener_set_slots(listener, 16, "grpc");
  ps_net_listener_set_tls(listener, server_ctx, hs_ms);
  return ps_net_listener_port(listener);
}

static void stop_server(void) {
  ps_net_listener_close(listener, done_cb, NULL);
  cr_assert(ps_test_run_until(&loop, is_listener_done, NULL, 5000));
  ps_tls_ctx_free(server_ctx);
  ps_buf_free(&srv.rx);
}

static double handshakes(const char *result) {
  char labels[64];
  snprintf(labels, sizeof labels, "listener=\"grpc\",result=\"%s\"", result);
  double v = ps_metrics_get("prescale_tls_handshakes_total", labels);
  return isnan(v) ? 0 : v;
}

/* ---- the client: a socket and a client ps_tls ------------------------------------------------- */

struct client {
  uv_tcp_t tcp;
  uv_connect_t creq;
  struct ps_tls_ctx *ctx;
  struct ps_tls *tls; /* NULL: a raw client */
  bool connected, eof, closed;
  int feed_rc;
  struct ps_buf plain, raw;
};

static int cl_plain(void *arg, const uint8_t *d, size_t n) {
  return ps_buf_append(&((struct client *)arg)->plain, d, n);
}

struct creq {
  uv_write_t req;
  char data[];
};

static void cl_write_cb(uv_write_t *req, int status) { free(req); }

static void cl_write_raw(struct client *cl, const void *d, size_t n) {
  struct creq *w = malloc(sizeof *w + n);
  memcpy(w->data, d, n);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  cr_assert_eq(uv_write(&w->req, (uv_stream_t *)&cl->tcp, &b, 1, cl_write_cb), 0);
}

static int cl_cipher(void *arg, const uint8_t *d, size_t n) {
  cl_write_raw(arg, d, n);
  return 0;
}

static const struct ps_tls_io cl_io = {cl_plain, cl_cipher};

static void cl_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  static char buf[65536];
  b->base = buf;
  b->len = sizeof buf;
}

static void cl_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct client *cl = s->data;
  if (n < 0) {
    cl->eof = true;
    uv_read_stop(s);
    return;
  }
  ps_buf_append(&cl->raw, b->base, (size_t)n);
  if (cl->tls && cl->feed_rc == 0) cl->feed_rc = ps_tls_feed(cl->tls, (const uint8_t *)b->base, (size_t)n);
}

static void cl_connect_cb(uv_connect_t *req, int status) {
  struct client *cl = req->data;
  cr_assert_eq(status, 0, "connect: %s", uv_strerror(status));
  cl->connected = true;
  cr_assert_eq(uv_read_start((uv_stream_t *)&cl->tcp, cl_alloc, cl_read_cb), 0);
  if (cl->tls) cr_assert_eq(ps_tls_start(cl->tls), 0);
}

static bool cl_connected(void *cl) { return ((struct client *)cl)->connected; }

/* trust NULL: a raw TCP client. cert: a client certificate (may be NULL). */
static void client_connect(struct client *cl, int port, const struct ps_test_cert *trust,
                           const struct ps_test_cert *cert) {
  memset(cl, 0, sizeof *cl);
  ps_buf_init(&cl->plain);
  ps_buf_init(&cl->raw);
  if (trust) {
    struct ps_tls_pem pem = {.ca = trust->cert, .ca_len = trust->cert_len};
    if (cert)
      pem.cert = cert->cert, pem.cert_len = cert->cert_len, pem.key = cert->key, pem.key_len = cert->key_len;
    char err[PS_TLS_ERR_MAX] = "";
    cr_assert_eq(ps_tls_ctx_client(&pem, false, &cl->ctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ps_tls_ctx_set_alpn(cl->ctx, "h2"), 0);
    cr_assert_eq(ps_tls_new(cl->ctx, "localhost", &cl_io, cl, &cl->tls), 0);
  }
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_init(&loop, &cl->tcp);
  cl->tcp.data = cl;
  cl->creq.data = cl;
  cr_assert_eq(uv_tcp_connect(&cl->creq, &cl->tcp, (struct sockaddr *)&a, cl_connect_cb), 0);
  cr_assert(ps_test_run_until(&loop, cl_connected, cl, 5000));
}

static void cl_closed_cb(uv_handle_t *h) { ((struct client *)h->data)->closed = true; }
static bool cl_closed(void *cl) { return ((struct client *)cl)->closed; }
static bool cl_eof(void *cl) { return ((struct client *)cl)->eof; }
static bool cl_done(void *cl) {
  return ((struct client *)cl)->tls && ps_tls_handshake_done(((struct client *)cl)->tls);
}
static bool cl_failed(void *cl) { return ((struct client *)cl)->feed_rc != 0 || ((struct client *)cl)->eof; }
static size_t want_len;
static bool cl_has_plain(void *cl) { return ((struct client *)cl)->plain.len >= want_len; }
static int want_closes;
static bool srv_closes(void *arg) { return srv.closes >= want_closes; }
static bool srv_flooded(void *arg) { return srv.pending_seen > 0; }

static void client_close(struct client *cl) {
  uv_close((uv_handle_t *)&cl->tcp, cl_closed_cb);
  cr_assert(ps_test_run_until(&loop, cl_closed, cl, 5000));
  ps_tls_free(cl->tls);
  ps_tls_ctx_free(cl->ctx);
  ps_buf_free(&cl->plain);
  ps_buf_free(&cl->raw);
}

static void client_send(struct client *cl, const char *s) {
  cr_assert_eq(ps_tls_write(cl->tls, (const uint8_t *)s, strlen(s)), 0);
}

/* ---- tests ------------------------------------------------------------------------------------- */

Test(net_tls, echo_over_tls_with_alpn_h2) {
  int port = start_server(&leaf, NULL, 0);
  struct client cl;
  client_connect(&cl, port, &ca, NULL);
  cr_assert(ps_test_run_until(&loop, cl_done, &cl, 5000), "%s", ps_tls_error(cl.tls));
  cr_assert_str_eq(ps_tls_alpn(cl.tls), "h2");
  client_send(&cl, "hello");
  want_len = 7;
  cr_assert(ps_test_run_until(&loop, cl_has_plain, &cl, 5000));
  /* "hi" was written by on_open before the handshake; it arrives first, encrypted like the rest. */
  cr_assert_eq(memcmp(cl.plain.data, "hihello", 7), 0);
  cr_assert_str_eq(srv.rx.data, "hello");
  cr_assert_null(memmem(cl.raw.data, cl.raw.len, "hello", 5), "plaintext on the wire");
  cr_assert_eq(handshakes("ok"), 1);
  /* The client's close_notify reads as the end of the connection: on_close runs. */
  cr_assert_eq(ps_tls_shutdown(cl.tls), 0);
  want_closes = 1;
  cr_assert(ps_test_run_until(&loop, srv_closes, NULL, 5000));
  client_close(&cl);
  stop_server();
  cr_assert_eq(handshakes("closed"), 0);
  PS_LOOP_END(&loop);
}

Test(net_tls, server_close_sends_close_notify) {
  int port = start_server(&leaf, NULL, 0);
  struct client cl;
  client_connect(&cl, port, &ca, NULL);
  client_send(&cl, "quit");
  cr_assert(ps_test_run_until(&loop, cl_eof, &cl, 5000));
  cr_assert_eq(cl.feed_rc, UV_EOF, "the TCP FIN came without a close_notify before it (%d)", cl.feed_rc);
  client_close(&cl);
  stop_server();
  PS_LOOP_END(&loop);
}

/* The water marks count what waits on the socket, i.e. ciphertext: a client that does not read pauses
 * the connection, and everything arrives intact once it reads. */
Test(net_tls, backpressure_counts_ciphertext) {
  int port = start_server(&leaf, NULL, 0);
  struct client cl;
  client_connect(&cl, port, &ca, NULL);
  cr_assert(ps_test_run_until(&loop, cl_done, &cl, 5000));
  uv_read_stop((uv_stream_t *)&cl.tcp);
  client_send(&cl, "flood");
  cr_assert(ps_test_run_until(&loop, srv_flooded, NULL, 5000));
  cr_assert(srv.paused_seen);
  cr_assert_gt(srv.pending_seen, PS_NET_HIGH_WATER);
  cr_assert(ps_net_paused(srv.last));
  cr_assert_eq(uv_read_start((uv_stream_t *)&cl.tcp, cl_alloc, cl_read_cb), 0);
  want_len = 2 + FLOOD_BYTES;
  cr_assert(ps_test_run_until(&loop, cl_has_plain, &cl, 20000));
  for (size_t i = 0; i < FLOOD_BYTES; i += 4093)
    cr_assert_eq((uint8_t)cl.plain.data[2 + i], (uint8_t)(i % 251), "byte %zu", i);
  cr_assert_gt(cl.raw.len, 2 + FLOOD_BYTES, "records cost bytes: the wire carries more than the plaintext");
  cr_assert_not(ps_net_paused(srv.last));
  client_close(&cl);
  stop_server();
  PS_LOOP_END(&loop);
}

/* A client that connects and sends nothing, and one that sends half a ClientHello: each holds a slot until
 * the handshake timeout, then is closed; a good client meanwhile gets through. */
Test(net_tls, slow_handshakes_are_closed_at_the_timeout) {
  /* 300 ms, stretched under valgrind, where the good client's own handshake takes longer than that. */
  int port = start_server(&leaf, NULL, 300 * ps_test_timeout_scale());
  struct client silent, partial, good;
  client_connect(&silent, port, NULL, NULL);
  client_connect(&partial, port, NULL, NULL);
  cl_write_raw(&partial, "\x16\x03\x01\x02\x00\x01", 6); /* a handshake record header: 512 bytes announced */
  client_connect(&good, port, &ca, NULL);
  cr_assert(ps_test_run_until(&loop, cl_done, &good, 5000), "%s", ps_tls_error(good.tls));
  cr_assert(ps_test_run_until(&loop, cl_eof, &silent, 10000));
  cr_assert(ps_test_run_until(&loop, cl_eof, &partial, 10000));
  cr_assert_eq(handshakes("timeout"), 2);
  cr_assert_eq(handshakes("ok"), 1);
  cr_assert_eq(ps_net_listener_conns(listener), 1, "the slots of the timed-out ones are free");
  /* The good connection outlived the timeout: the timer stopped at its handshake. */
  client_send(&good, "still");
  want_len = 7;
  cr_assert(ps_test_run_until(&loop, cl_has_plain, &good, 5000));
  cr_assert_eq(memcmp(good.plain.data, "histill", 7), 0);
  client_close(&silent);
  client_close(&partial);
  client_close(&good);
  stop_server();
  PS_LOOP_END(&loop);
}

/* Plain HTTP (or h2c) to the TLS port: an alert and a close, at once, not at the timeout. */
Test(net_tls, garbage_fails_at_once) {
  int port = start_server(&leaf, NULL, 60000);
  struct client cl;
  client_connect(&cl, port, NULL, NULL);
  cl_write_raw(&cl, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
  cr_assert(ps_test_run_until(&loop, cl_eof, &cl, 5000), "closed only at the handshake timeout");
  cr_assert_eq(handshakes("failed"), 1);
  cr_assert_eq(srv.rx.len, 0, "nothing reached the protocol");
  client_close(&cl);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(net_tls, mtls_over_sockets) {
  struct ps_test_cert keda, stranger;
  ps_test_cert_make(&keda, &ca, "keda", NULL, -3600, 3600, 10);
  ps_test_cert_make(&stranger, &other_ca, "keda", NULL, -3600, 3600, 11);
  int port = start_server(&leaf, &ca, 0);
  struct client ok, none, other;
  client_connect(&ok, port, &ca, &keda);
  client_send(&ok, "ping");
  want_len = 6;
  cr_assert(ps_test_run_until(&loop, cl_has_plain, &ok, 5000), "%s", ps_tls_error(ok.tls));
  client_connect(&none, port, &ca, NULL);
  client_connect(&other, port, &ca, &stranger);
  cr_assert(ps_test_run_until(&loop, cl_failed, &none, 5000));
  cr_assert(ps_test_run_until(&loop, cl_failed, &other, 5000));
  cr_assert(ps_test_run_until(&loop, cl_eof, &none, 5000));
  cr_assert(ps_test_run_until(&loop, cl_eof, &other, 5000));
  cr_assert_eq(none.plain.len, 0);
  cr_assert_eq(other.plain.len, 0);
  cr_assert_eq(handshakes("ok"), 1);
  cr_assert_eq(handshakes("failed"), 2);
  cr_assert_str_eq(srv.rx.data, "ping", "only the client with the right certificate got through");
  client_close(&ok);
  client_close(&none);
  client_close(&other);
  stop_server();
  ps_test_cert_free(&keda);
  ps_test_cert_free(&stranger);
  PS_LOOP_END(&loop);
}

/* A reload with a connection open: it keeps working; a new one gets the new certificate. */
Test(net_tls, reload_keeps_the_open_connection) {
  struct ps_test_cert leaf2;
  ps_test_cert_make(&leaf2, &other_ca, "localhost", "DNS:localhost", -3600, 7200, 12);
  int port = start_server(&leaf, NULL, 0);
  struct client old;
  client_connect(&old, port, &ca, NULL);
  cr_assert(ps_test_run_until(&loop, cl_done, &old, 5000));
  struct ps_tls_pem pem = {
      .cert = leaf2.cert, .cert_len = leaf2.cert_len, .key = leaf2.key, .key_len = leaf2.key_len};
  char err[PS_TLS_ERR_MAX] = "";
  cr_assert_eq(ps_tls_ctx_reload(server_ctx, &pem, err, sizeof err), 0, "%s", err);
  client_send(&old, "after");
  want_len = 7;
  cr_assert(ps_test_run_until(&loop, cl_has_plain, &old, 5000));
  cr_assert_eq(memcmp(old.plain.data, "hiafter", 7), 0);
  struct client stale, fresh;
  client_connect(&stale, port, &ca, NULL);
  cr_assert(ps_test_run_until(&loop, cl_failed, &stale, 5000));
  cr_assert_str_eq(ps_tls_error(stale.tls), "x509: unknown authority");
  client_connect(&fresh, port, &other_ca, NULL);
  cr_assert(ps_test_run_until(&loop, cl_done, &fresh, 5000), "%s", ps_tls_error(fresh.tls));
  client_close(&old);
  client_close(&stale);
  client_close(&fresh);
  stop_server();
  ps_test_cert_free(&leaf2);
  PS_LOOP_END(&loop);
}
