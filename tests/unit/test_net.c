/* Listeners and connections (src/net.c) over real loopback sockets. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "loop_fixture.h"
#include "net.h"

static uv_loop_t loop;

/* Every test closes what it opened and ends with PS_LOOP_END, which fails it on a handle left open. */
static void setup(void) { cr_assert_eq(uv_loop_init(&loop), 0); }

TestSuite(net, .init = setup, .timeout = 60);

/* ---- the server side: a small protocol whose behaviour each test picks ----------------------- */

enum mode { M_ECHO, M_FLOOD, M_SAY_BYE, M_FAIL };
#define FLOOD_BYTES (16u << 20)

static struct {
  enum mode mode;
  int opens, reads, drains, closes;
  int reads_at_drain;
  size_t pending_seen; /* ps_net_pending right after the flood */
  bool paused_seen;
  struct ps_net_conn *last;
  struct ps_buf rx;
} srv;

static void *on_open(struct ps_net_conn *c, void *arg) {
  cr_assert_eq(arg, &srv);
  srv.opens++;
  srv.last = c;
  return c;
}

static int on_read(void *state, const uint8_t *data, size_t len) {
  struct ps_net_conn *c = state;
  srv.reads++;
  ps_buf_append(&srv.rx, data, len);
  switch (srv.mode) {
  case M_ECHO: return ps_net_write(c, data, len);
  case M_FLOOD:
    if (srv.reads == 1) {
      uint8_t *big = malloc(FLOOD_BYTES);
      for (size_t i = 0; i < FLOOD_BYTES; i++) big[i] = (uint8_t)(i % 251);
      cr_assert_eq(ps_net_write(c, big, FLOOD_BYTES), 0);
      free(big);
      srv.pending_seen = ps_net_pending(c);
      srv.paused_seen = ps_net_paused(c);
    }
    return 0;
  case M_SAY_BYE: {
    /* More than the socket buffers hold, so the close really has to wait for the flush. */
    uint8_t *big = calloc(1, FLOOD_BYTES / 4);
    cr_assert_eq(ps_net_write(c, big, FLOOD_BYTES / 4), 0);
    free(big);
    cr_assert_eq(ps_net_write(c, (const uint8_t *)"bye", 3), 0);
    ps_net_close(c);
    ps_net_close(c); /* idempotent */
    cr_assert_eq(ps_net_write(c, (const uint8_t *)"late", 4), UV_EPIPE);
    return 0;
  }
  case M_FAIL: ps_net_write(c, (const uint8_t *)"err", 3); return UV_EPROTO;
  }
  return 0;
}

static void on_drain(void *state) {
  srv.drains++;
  srv.reads_at_drain = srv.reads;
}

static void on_close(void *state) { srv.closes++; }

static const struct ps_net_proto proto = {on_open, on_read, on_drain, on_close};

static struct ps_net_listener *listener;
static int listener_done;
static void done_cb(void *arg) {
  cr_assert_eq(arg, &listener_done);
  listener_done++;
}

static int start_server(enum mode mode) {
  memset(&srv, 0, sizeof srv);
  ps_buf_init(&srv.rx);
  srv.mode = mode;
  listener_done = 0;
  cr_assert_eq(ps_net_listen(&loop, "127.0.0.1:0", &proto, &srv, &listener), 0);
  int port = ps_net_listener_port(listener);
  cr_assert_gt(port, 0);
  return port;
}

static bool is_listener_done(void *arg) { return listener_done == 1; }

static void stop_server(void) {
  ps_net_listener_close(listener, done_cb, &listener_done);
  cr_assert(ps_test_run_until(&loop, is_listener_done, NULL, 5000));
  ps_buf_free(&srv.rx);
}

/* ---- the client side ------------------------------------------------------------------------ */

struct client {
  uv_tcp_t tcp;
  uv_connect_t creq;
  bool connected, eof, closed;
  struct ps_buf rx;
  int writes_done;
};

static void client_connect_cb(uv_connect_t *req, int status) {
  struct client *cl = req->data;
  cr_assert_eq(status, 0, "connect: %s", uv_strerror(status));
  cl->connected = true;
}

static void client_connect(struct client *cl, int port) {
  memset(cl, 0, sizeof *cl);
  ps_buf_init(&cl->rx);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_init(&loop, &cl->tcp);
  cl->tcp.data = cl;
  cl->creq.data = cl;
  cr_assert_eq(uv_tcp_connect(&cl->creq, &cl->tcp, (struct sockaddr *)&a, client_connect_cb), 0);
}

static void client_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  static char buf[65536];
  b->base = buf;
  b->len = sizeof buf;
}

static void client_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct client *cl = s->data;
  if (n > 0) ps_buf_append(&cl->rx, b->base, (size_t)n);
  if (n < 0) {
    cl->eof = true;
    uv_read_stop(s);
  }
}

static void client_read(struct client *cl) {
  uv_read_start((uv_stream_t *)&cl->tcp, client_alloc, client_read_cb);
}

struct creq {
  uv_write_t req;
  struct client *cl;
  char data[];
};

static void client_write_cb(uv_write_t *req, int status) {
  struct creq *w = (struct creq *)req;
  w->cl->writes_done++;
  free(w);
}

static void client_write(struct client *cl, const char *s) {
  size_t len = strlen(s);
  struct creq *w = malloc(sizeof *w + len);
  memcpy(w->data, s, len);
  w->cl = cl;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  cr_assert_eq(uv_write(&w->req, (uv_stream_t *)&cl->tcp, &b, 1, client_write_cb), 0);
}

static void client_closed_cb(uv_handle_t *h) { ((struct client *)h->data)->closed = true; }

static void client_close(struct client *cl) {
  if (!uv_is_closing((uv_handle_t *)&cl->tcp)) uv_close((uv_handle_t *)&cl->tcp, client_closed_cb);
}

static size_t want_len;
static bool cl_connected(void *cl) { return ((struct client *)cl)->connected; }
static bool cl_has_bytes(void *cl) { return ((struct client *)cl)->rx.len >= want_len; }
static bool cl_eof(void *cl) { return ((struct client *)cl)->eof; }
static bool cl_closed(void *cl) { return ((struct client *)cl)->closed; }
static int want_closes, want_reads, want_opens;
static bool srv_closes(void *arg) { return srv.closes >= want_closes; }
static bool srv_reads(void *arg) { return srv.reads >= want_reads; }
static bool srv_opens(void *arg) { return srv.opens >= want_opens; }
static bool srv_drained(void *arg) { return srv.drains >= 1; }

static void close_client_and_wait(struct client *cl) {
  client_close(cl);
  cr_assert(ps_test_run_until(&loop, cl_closed, cl, 5000));
  ps_buf_free(&cl->rx);
}

/* A server in `mode` and one client connected to it. */
static void start_connected(enum mode mode, struct client *cl) {
  client_connect(cl, start_server(mode));
  cr_assert(ps_test_run_until(&loop, cl_connected, cl, 5000));
}

/* ---- tests ---------------------------------------------------------------------------------- */

Test(net, parse_addr) {
  struct sockaddr_storage ss;
  cr_assert_eq(ps_net_parse_addr("127.0.0.1:8080", &ss), 0);
  cr_assert_eq(ss.ss_family, AF_INET);
  cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
  cr_assert_eq(ps_net_parse_addr("[::1]:9", &ss), 0);
  cr_assert_eq(ss.ss_family, AF_INET6);
  cr_assert_eq(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 9);
  cr_assert_eq(ps_net_parse_addr(":6000", &ss), 0);
  cr_assert_eq(ss.ss_family, AF_INET6);
  cr_assert_eq(ps_net_parse_addr("localhost:0", &ss), 0);
  cr_assert_eq(ss.ss_family, AF_INET);
  cr_assert_eq(ps_net_parse_addr("0.0.0.0:65535", &ss), 0);
  const char *bad[] = {"",
                       "8080",
                       "127.0.0.1",
                       "127.0.0.1:",
                       "127.0.0.1:65536",
                       "127.0.0.1:8o",
                       "::1:80",
                       "[::1]80",
                       "[127.0.0.1]:80",
                       "example.com:80",
                       "1.2.3:80",
                       "[::1]:",
                       "127.0.0.1:123456",
                       "[::1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(ps_net_parse_addr(bad[i], &ss), UV_EINVAL, "\"%s\" accepted", bad[i]);
  PS_LOOP_END(&loop);
}

Test(net, echo_and_peer_close) {
  struct client cl;
  start_connected(M_ECHO, &cl);
  client_read(&cl);
  client_write(&cl, "hello");
  client_write(&cl, " world");
  want_len = 11;
  cr_assert(ps_test_run_until(&loop, cl_has_bytes, &cl, 5000));
  cr_assert_eq(memcmp(cl.rx.data, "hello world", 11), 0);
  cr_assert_eq(srv.opens, 1);
  cr_assert_eq(ps_net_listener_conns(listener), 1);
  cr_assert_eq(strncmp(ps_net_peer(srv.last), "127.0.0.1:", 10), 0, "%s", ps_net_peer(srv.last));
  cr_assert_eq(ps_net_loop(srv.last), &loop);
  /* The peer closes: on_close runs once and the conn no longer counts. */
  close_client_and_wait(&cl);
  want_closes = 1;
  cr_assert(ps_test_run_until(&loop, srv_closes, NULL, 5000));
  cr_assert_eq(srv.closes, 1);
  cr_assert_eq(ps_net_listener_conns(listener), 0);
  stop_server();
  cr_assert_eq(srv.closes, 1);
  PS_LOOP_END(&loop);
}

Test(net, backpressure_pauses_reading_until_drained) {
  struct client cl;
  start_connected(M_FLOOD, &cl);
  /* The client asks for the flood and does not read it. */
  client_write(&cl, "go");
  want_reads = 1;
  cr_assert(ps_test_run_until(&loop, srv_reads, NULL, 5000));
  cr_assert_gt(srv.pending_seen, PS_NET_HIGH_WATER);
  cr_assert(srv.paused_seen);
  cr_assert(ps_net_paused(srv.last));
  /* Bytes sent now must wait: the server is not reading. */
  client_write(&cl, "more");
  /* Now the client reads: the queue drains, on_drain fires, then "more" is read. */
  client_read(&cl);
  cr_assert(ps_test_run_until(&loop, srv_drained, NULL, 10000));
  cr_assert_eq(srv.reads_at_drain, 1, "read while paused");
  cr_assert_not(ps_net_paused(srv.last));
  cr_assert_lt(ps_net_pending(srv.last), PS_NET_LOW_WATER);
  want_reads = 2;
  cr_assert(ps_test_run_until(&loop, srv_reads, NULL, 5000));
  cr_assert_eq(srv.rx.len, 6);
  cr_assert_eq(memcmp(srv.rx.data, "gomore", 6), 0);
  want_len = FLOOD_BYTES;
  cr_assert(ps_test_run_until(&loop, cl_has_bytes, &cl, 10000));
  cr_assert_eq(cl.rx.len, FLOOD_BYTES);
  for (size_t i = 0; i < FLOOD_BYTES; i += 4093)
    cr_assert_eq((uint8_t)cl.rx.data[i], (uint8_t)(i % 251), "byte %zu", i);
  cr_assert_eq(srv.drains, 1);
  close_client_and_wait(&cl);
  stop_server();
  cr_assert_eq(srv.closes, 1);
  PS_LOOP_END(&loop);
}

Test(net, close_flushes_queued_writes_first) {
  struct client cl;
  start_connected(M_SAY_BYE, &cl);
  client_write(&cl, "hi");
  client_read(&cl);
  cr_assert(ps_test_run_until(&loop, cl_eof, &cl, 10000));
  cr_assert_eq(cl.rx.len, FLOOD_BYTES / 4 + 3);
  cr_assert_eq(memcmp(cl.rx.data + FLOOD_BYTES / 4, "bye", 3), 0);
  want_closes = 1;
  cr_assert(ps_test_run_until(&loop, srv_closes, NULL, 5000));
  cr_assert_eq(srv.closes, 1);
  close_client_and_wait(&cl);
  stop_server();
  cr_assert_eq(srv.closes, 1);
  PS_LOOP_END(&loop);
}

Test(net, read_error_closes_after_flush) {
  struct client cl;
  start_connected(M_FAIL, &cl);
  client_read(&cl);
  client_write(&cl, "x");
  cr_assert(ps_test_run_until(&loop, cl_eof, &cl, 5000));
  cr_assert_eq(cl.rx.len, 3);
  cr_assert_eq(memcmp(cl.rx.data, "err", 3), 0);
  want_closes = 1;
  cr_assert(ps_test_run_until(&loop, srv_closes, NULL, 5000));
  close_client_and_wait(&cl);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(net, listener_close_closes_every_connection) {
  int port = start_server(M_ECHO);
  struct client cl[3];
  for (int i = 0; i < 3; i++) client_connect(&cl[i], port);
  want_opens = 3;
  cr_assert(ps_test_run_until(&loop, srv_opens, NULL, 5000));
  cr_assert_eq(ps_net_listener_conns(listener), 3);
  for (int i = 0; i < 3; i++) client_read(&cl[i]);
  ps_net_listener_close(listener, done_cb, &listener_done);
  cr_assert_eq(listener_done, 0, "done must wait for the close callbacks");
  cr_assert(ps_test_run_until(&loop, is_listener_done, NULL, 5000));
  cr_assert_eq(srv.closes, 3);
  cr_assert_eq(listener_done, 1);
  for (int i = 0; i < 3; i++) {
    cr_assert(ps_test_run_until(&loop, cl_eof, &cl[i], 5000));
    close_client_and_wait(&cl[i]);
  }
  ps_buf_free(&srv.rx);
  PS_LOOP_END(&loop);
}

Test(net, listen_errors) {
  int port = start_server(M_ECHO);
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  struct ps_net_listener *other = NULL;
  cr_assert_eq(ps_net_listen(&loop, addr, &proto, &srv, &other), UV_EADDRINUSE);
  cr_assert_null(other);
  cr_assert_eq(ps_net_listen(&loop, "nonsense", &proto, &srv, &other), UV_EINVAL);
  cr_assert_eq(ps_net_listen(&loop, "192.0.2.1:0", &proto, &srv, &other), UV_EADDRNOTAVAIL);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(net, close_without_connections_and_null_done) {
  start_server(M_ECHO);
  ps_net_listener_close(listener, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(srv.closes, 0);
  ps_buf_free(&srv.rx);
  PS_LOOP_END(&loop);
}

static struct client *many;
static int many_eof;
static bool all_opened_and_one_refused(void *arg) {
  many_eof = 0;
  for (int i = 0; i <= PS_NET_MAX_CONNS; i++) many_eof += many[i].eof;
  return srv.opens == PS_NET_MAX_CONNS && many_eof == 1;
}

Test(net, connections_beyond_the_limit_are_closed) {
  int port = start_server(M_ECHO);
  many = calloc(PS_NET_MAX_CONNS + 1, sizeof *many);
  /* In batches smaller than the backlog, so that no SYN is dropped and retried seconds later. */
  for (int i = 0; i <= PS_NET_MAX_CONNS; i++) {
    client_connect(&many[i], port);
    client_read(&many[i]);
    if (i % 64 == 63 && i < PS_NET_MAX_CONNS) {
      want_opens = i + 1;
      cr_assert(ps_test_run_until(&loop, srv_opens, NULL, 5000), "opens %d of %d", srv.opens, want_opens);
    }
  }
  cr_assert(ps_test_run_until(&loop, all_opened_and_one_refused, NULL, 20000), "opens %d, refused %d",
            srv.opens, many_eof);
  cr_assert_eq(ps_net_listener_conns(listener), PS_NET_MAX_CONNS);
  for (int i = 0; i <= PS_NET_MAX_CONNS; i++) client_close(&many[i]);
  uv_run(&loop, UV_RUN_NOWAIT);
  want_closes = PS_NET_MAX_CONNS;
  cr_assert(ps_test_run_until(&loop, srv_closes, NULL, 20000));
  cr_assert_eq(ps_net_listener_conns(listener), 0);
  for (int i = 0; i <= PS_NET_MAX_CONNS; i++) {
    cr_assert(ps_test_run_until(&loop, cl_closed, &many[i], 5000));
    ps_buf_free(&many[i].rx);
  }
  free(many);
  stop_server();
  PS_LOOP_END(&loop);
}
