/* prescale's gRPC client (src/client/grpc_client.c) against prescale's own server stack (net.c +
 * h2_conn.c) in-process over loopback, with a small dispatcher; a fake nghttp2 peer only for responses
 * the real server never sends (non-200 :status without grpc-status). */
#include <criterion/criterion.h>
#include <nghttp2/nghttp2.h>
#include <string.h>
#include <uv.h>

#include "grpc.h"
#include "grpc_client.h"
#include "h2_conn.h"
#include "h2peer_fixture.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "net.h"

static uv_loop_t loop;

/* ---- the server: prescale's h2 stack with a test dispatcher ----------------------------------- */

static struct {
  int dispatched, cancelled;
  uint64_t last_deadline, last_now;
  struct ps_call *held;
  struct ps_net_conn *net; /* the server side of the last connection */
} d;

static void on_cancel(struct ps_call *call, void *arg) {
  d.cancelled++;
  if (d.held == call) d.held = NULL;
}

static void dispatch(struct ps_call *call, const char *path, const uint8_t *msg, size_t len, void *arg) {
  d.dispatched++;
  d.last_deadline = ps_call_deadline(call);
  d.last_now = uv_now(&loop);
  const char *m = ps_call_method(call);
  if (strcmp(m, "Echo") == 0) {
    cr_assert_eq(ps_call_send(call, msg, len), 0);
    ps_call_finish(call, PS_GRPC_OK, NULL);
  } else if (strcmp(m, "Stream") == 0) {
    const char *parts[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++)
      cr_assert_eq(ps_call_send(call, (const uint8_t *)parts[i], strlen(parts[i])), 0);
    ps_call_finish(call, PS_GRPC_OK, NULL);
  } else if (strcmp(m, "Fail") == 0) {
    ps_call_finish(call, PS_GRPC_INVALID_ARGUMENT, "threshold: \"\xC3\xA9\" is 100% wrong");
  } else if (strcmp(m, "Empty") == 0) {
    ps_call_finish(call, PS_GRPC_OK, NULL); /* OK with no message: wrong for a unary call */
  } else if (strcmp(m, "Hold") == 0) {
    ps_call_on_cancel(call, on_cancel, NULL);
    if (len > 0) cr_assert_eq(ps_call_send(call, msg, len), 0); /* a first update, then silence */
    d.held = call;
  } else {
    ps_call_finish(call, PS_GRPC_UNIMPLEMENTED, "unknown method");
  }
}

static struct ps_h2_server server;
static struct ps_net_listener *listener;
static int port;
static char target[64];

static void *wrap_open(struct ps_net_conn *c, void *arg) {
  d.net = c;
  return ps_h2_net_proto.on_open(c, arg);
}
static void wrap_close(void *state) {
  d.net = NULL;
  ps_h2_net_proto.on_close(state);
}
static struct ps_net_proto wrap_proto;

static bool listener_done;
static void done_cb(void *arg) { listener_done = true; }
static bool is_true(void *arg) { return *(bool *)arg; }

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  ps_metrics_reset();
  memset(&d, 0, sizeof d);
  wrap_proto = ps_h2_net_proto;
  wrap_proto.on_open = wrap_open;
  wrap_proto.on_close = wrap_close;
  memset(&server, 0, sizeof server);
  server.loop = &loop;
  server.dispatch = dispatch;
  server.max_msg = 1 << 16;
  listener_done = false;
  cr_assert_eq(ps_net_listen(&loop, "127.0.0.1:0", &wrap_proto, &server, &listener), 0);
  port = ps_net_listener_port(listener);
  snprintf(target, sizeof target, "127.0.0.1:%d", port);
}

/* Every test ends with stop_server() then PS_LOOP_END. */
static void stop_server(void) {
  if (listener != NULL) {
    ps_net_listener_close(listener, done_cb, NULL);
    cr_assert(ps_test_run_until(&loop, is_true, &listener_done, 5000));
    listener = NULL;
  }
}

static void teardown(void) { ps_metrics_reset(); }

TestSuite(grpc_client, .init = setup, .fini = teardown, .timeout = 60);

/* ---- the client side ---------------------------------------------------------------------------- */

struct result {
  bool connected, connect_done, done;
  int connect_err;
  char connect_msg[512];
  int status;
  char message[512];
  uint8_t resp[64]; /* unary response */
  size_t resp_len;
  int nmsgs;
  char msgs[8][64]; /* stream messages */
};

static void on_connect(void *arg, int err, const char *errmsg) {
  struct result *r = arg;
  r->connect_done = true;
  r->connect_err = err;
  r->connected = err == 0;
  if (errmsg != NULL) snprintf(r->connect_msg, sizeof r->connect_msg, "%s", errmsg);
}

static void on_msg(void *arg, const uint8_t *msg, size_t len) {
  struct result *r = arg;
  cr_assert_lt(r->nmsgs, 8);
  snprintf(r->msgs[r->nmsgs++], 64, "%.*s", (int)len, (const char *)msg);
}

static void on_done(void *arg, int status, const char *message, const uint8_t *msg, size_t len) {
  struct result *r = arg;
  cr_assert_not(r->done, "done ran twice");
  r->done = true;
  r->status = status;
  snprintf(r->message, sizeof r->message, "%s", message);
  if (msg != NULL) {
    cr_assert_leq(len, sizeof r->resp);
    memcpy(r->resp, msg, len);
    r->resp_len = len;
  }
}

static bool is_done(void *arg) { return ((struct result *)arg)->done; }
static bool has_msg(void *arg) { return ((struct result *)arg)->nmsgs > 0; }
static bool was_dispatched(void *arg) { return d.dispatched > 0; }
static bool is_connect_done(void *arg) { return ((struct result *)arg)->connect_done; }

static struct ps_grpc_client *client_new(const char *t, struct result *cr, size_t max_msg) {
  struct ps_grpc_client *c = NULL;
  struct ps_grpc_client_opts o = {.target = t, .connect_timeout_ms = 2000, .max_msg = max_msg};
  cr_assert_eq(ps_grpc_client_new(&loop, &o, on_connect, cr, &c), 0);
  return c;
}

static void client_close(struct ps_grpc_client *c) {
  ps_grpc_client_close(c);
  uv_run(&loop, UV_RUN_NOWAIT);
}

static void wait_done(struct result *r) {
  cr_assert(ps_test_run_until(&loop, is_done, r, 5000), "call did not end");
}

static bool server_cancelled(void *arg) { return d.cancelled >= 1; }

/* ---- tests ---------------------------------------------------------------------------------- */

Test(grpc_client, unary_started_before_the_connection_is_ready) {
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  /* Started at once: queued until the server's SETTINGS arrive, then sent. */
  cr_assert_eq(
      ps_grpc_client_call(c, "/test.Svc/Echo", (const uint8_t *)"ping", 4, 0, NULL, on_done, &r, NULL), 0);
  cr_assert_not(r.done, "done must never run from inside ps_grpc_client_call");
  wait_done(&r);
  cr_assert(cr.connected);
  cr_assert_eq(r.status, PS_GRPC_OK, "%d %s", r.status, r.message);
  cr_assert_str_eq(r.message, "");
  cr_assert_eq(r.resp_len, 4);
  cr_assert_eq(memcmp(r.resp, "ping", 4), 0);
  cr_assert_eq(d.dispatched, 1);
  cr_assert_eq(d.last_deadline, 0, "no grpc-timeout without a deadline");
  cr_assert_eq(ps_grpc_client_open_calls(c), 0);
  /* An empty request message works too (a ScaledObjectRef with every field default packs to 0 bytes). */
  struct result r2 = {0};
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Echo", NULL, 0, 1000, NULL, on_done, &r2, NULL), 0);
  wait_done(&r2);
  cr_assert_eq(r2.status, PS_GRPC_OK);
  cr_assert_eq(r2.resp_len, 0);
  cr_assert_eq(server.open_conns, 1, "both calls on one connection");
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, server_streaming_messages_in_order) {
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  cr_assert(ps_test_run_until(&loop, is_connect_done, &cr, 5000));
  cr_assert_eq(cr.connect_err, 0);
  cr_assert_eq(
      ps_grpc_client_call(c, "/test.Svc/Stream", (const uint8_t *)"x", 1, 5000, on_msg, on_done, &r, NULL),
      0);
  wait_done(&r);
  cr_assert_eq(r.status, PS_GRPC_OK);
  cr_assert_eq(r.nmsgs, 3);
  cr_assert_str_eq(r.msgs[0], "one");
  cr_assert_str_eq(r.msgs[1], "two");
  cr_assert_str_eq(r.msgs[2], "three");
  cr_assert_eq(r.resp_len, 0, "a stream's done gets no message");
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, trailers_only_error_message_is_decoded) {
  struct result cr = {0}, r = {0}, u = {0}, e = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Fail", (const uint8_t *)"x", 1, 0, NULL, on_done, &r, NULL),
               0);
  cr_assert_eq(ps_grpc_client_call(c, "/other.Svc/Nope", (const uint8_t *)"x", 1, 0, NULL, on_done, &u, NULL),
               0);
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Empty", (const uint8_t *)"x", 1, 0, NULL, on_done, &e, NULL),
               0);
  wait_done(&r);
  wait_done(&u);
  wait_done(&e);
  cr_assert_eq(r.status, PS_GRPC_INVALID_ARGUMENT);
  /* The server percent-encodes the UTF-8 and the '%' (PROTOCOL-HTTP2.md); the client decodes both. */
  cr_assert_str_eq(r.message, "threshold: \"\xC3\xA9\" is 100% wrong");
  cr_assert_eq(r.resp_len, 0);
  cr_assert_eq(u.status, PS_GRPC_UNIMPLEMENTED);
  cr_assert_str_eq(u.message, "unknown method");
  cr_assert_eq(e.status, PS_GRPC_INTERNAL, "unary OK without a message is a cardinality violation");
  cr_assert(strstr(e.message, "0 response messages") != NULL, "%s", e.message);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, deadline_sent_as_grpc_timeout_and_enforced_locally) {
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  cr_assert(ps_test_run_until(&loop, is_connect_done, &cr, 5000));
  uint64_t t0 = uv_now(&loop);
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Hold", NULL, 0, 200, NULL, on_done, &r, NULL), 0);
  wait_done(&r);
  uint64_t took = uv_now(&loop) - t0;
  cr_assert_eq(r.status, PS_GRPC_DEADLINE_EXCEEDED, "%d %s", r.status, r.message);
  cr_assert_str_eq(r.message, "deadline exceeded after 200 ms");
  cr_assert_geq(took, 190);
  cr_assert_lt(took, 2000);
  cr_assert_eq(d.dispatched, 1);
  /* The server got grpc-timeout (its own deadline is ~200 ms after the request arrived). */
  cr_assert_neq(d.last_deadline, 0);
  cr_assert_leq(d.last_deadline - d.last_now, 200);
  cr_assert_geq(d.last_deadline - d.last_now, 150);
  cr_assert(ps_test_run_until(&loop, server_cancelled, NULL, 2000), "the server's call never ended");
  /* The connection is still good for further calls. */
  struct result r2 = {0};
  cr_assert_eq(
      ps_grpc_client_call(c, "/test.Svc/Echo", (const uint8_t *)"a", 1, 1000, NULL, on_done, &r2, NULL), 0);
  wait_done(&r2);
  cr_assert_eq(r2.status, PS_GRPC_OK);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, cancel_resets_the_stream_and_runs_no_callback) {
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  cr_assert(ps_test_run_until(&loop, is_connect_done, &cr, 5000));
  struct ps_grpc_call *call = NULL;
  cr_assert_eq(
      ps_grpc_client_call(c, "/test.Svc/Hold", (const uint8_t *)"u1", 2, 0, on_msg, on_done, &r, &call), 0);
  cr_assert_not_null(call);
  /* Wait for the first update, then cancel: the server's cancel callback is the RST_STREAM arriving. */
  cr_assert(ps_test_run_until(&loop, has_msg, &r, 5000));
  cr_assert_str_eq(r.msgs[0], "u1");
  ps_grpc_client_cancel(call);
  cr_assert_eq(ps_grpc_client_open_calls(c), 0);
  cr_assert(ps_test_run_until(&loop, server_cancelled, NULL, 2000), "RST_STREAM did not reach the server");
  cr_assert_eq(d.cancelled, 1);
  cr_assert_not(r.done);
  client_close(c);
  cr_assert_not(r.done, "a cancelled call's callback never runs, even at close");
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, server_closing_the_connection_mid_stream_is_unavailable) {
  struct result cr = {0}, r = {0}, u = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  cr_assert_eq(
      ps_grpc_client_call(c, "/test.Svc/Hold", (const uint8_t *)"first", 5, 0, on_msg, on_done, &r, NULL), 0);
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Hold", NULL, 0, 0, NULL, on_done, &u, NULL), 0);
  cr_assert(ps_test_run_until(&loop, has_msg, &r, 5000));
  cr_assert_eq(r.nmsgs, 1);
  cr_assert_not_null(d.net);
  ps_net_close(d.net); /* the server goes away without GOAWAY */
  wait_done(&r);
  wait_done(&u);
  cr_assert_eq(r.status, PS_GRPC_UNAVAILABLE);
  cr_assert_eq(u.status, PS_GRPC_UNAVAILABLE);
  char want[128];
  snprintf(want, sizeof want, "connection to %s lost: the server closed the connection", target);
  cr_assert_str_eq(r.message, want);
  /* The client is dead now: new calls are refused at once, with no callback. */
  struct result n = {0};
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Echo", NULL, 0, 0, NULL, on_done, &n, NULL), UV_ENOTCONN);
  client_close(c);
  cr_assert_not(n.done);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, connection_refused) {
  /* A port nobody listens on: our own listener's, once closed. */
  ps_net_listener_close(listener, done_cb, NULL);
  cr_assert(ps_test_run_until(&loop, is_true, &listener_done, 5000));
  listener = NULL;
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Echo", NULL, 0, 0, NULL, on_done, &r, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_connect_done, &cr, 5000));
  cr_assert_eq(cr.connect_err, UV_ECONNREFUSED);
  char want[128];
  snprintf(want, sizeof want, "cannot connect to %s: connection refused", target);
  cr_assert_str_eq(cr.connect_msg, want);
  cr_assert(r.done, "calls waiting for the connection end with it");
  cr_assert_eq(r.status, PS_GRPC_UNAVAILABLE);
  cr_assert_str_eq(r.message, want);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, bad_targets_and_a_name_resolved_through_getaddrinfo) {
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = NULL;
  const char *bad[] = {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "[::1:80", "[::1]80", "a b:80",
                       ":80",       "h:8x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct ps_grpc_client_opts o = {.target = bad[i]};
    cr_assert_eq(ps_grpc_client_new(&loop, &o, on_connect, &cr, &c), UV_EINVAL, "%s", bad[i]);
  }
  cr_assert_not(cr.connect_done);
  /* "localhost" comes from /etc/hosts (no DNS traffic). It may give ::1 first, where nobody listens:
   * the next address is tried. */
  char t[64];
  snprintf(t, sizeof t, "localhost:%d", port);
  c = client_new(t, &cr, 0);
  cr_assert_eq(
      ps_grpc_client_call(c, "/test.Svc/Echo", (const uint8_t *)"hi", 2, 3000, NULL, on_done, &r, NULL), 0);
  wait_done(&r);
  cr_assert_eq(r.status, PS_GRPC_OK, "%d %s", r.status, r.message);
  cr_assert_str_eq(ps_grpc_client_target(c), t);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, response_over_max_msg_is_resource_exhausted) {
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 8);
  cr_assert_eq(
      ps_grpc_client_call(c, "/test.Svc/Echo", (const uint8_t *)"0123456789", 10, 0, NULL, on_done, &r, NULL),
      0);
  wait_done(&r);
  cr_assert_eq(r.status, PS_GRPC_RESOURCE_EXHAUSTED);
  cr_assert_str_eq(r.message, "received message larger than max (10 vs. 8)");
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, close_ends_open_calls_cancelled) {
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Hold", NULL, 0, 0, on_msg, on_done, &r, NULL), 0);
  cr_assert(ps_test_run_until(&loop, was_dispatched, NULL, 5000));
  ps_grpc_client_close(c);
  cr_assert(r.done);
  cr_assert_eq(r.status, PS_GRPC_CANCELLED);
  /* The server sees the stream go (GOAWAY + close): its call is cancelled. */
  cr_assert(ps_test_run_until(&loop, server_cancelled, NULL, 3000));
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, invalid_calls_are_refused_without_callback) {
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(target, &cr, 0);
  cr_assert_eq(ps_grpc_client_call(c, "noslash", NULL, 0, 0, NULL, on_done, &r, NULL), UV_EINVAL);
  cr_assert_eq(ps_grpc_client_call(c, "/a b", NULL, 0, 0, NULL, on_done, &r, NULL), UV_EINVAL);
  cr_assert_eq(
      ps_grpc_client_call(c, "/x", NULL, 0, PS_GRPC_CLIENT_MAX_TIMEOUT_MS + 1, NULL, on_done, &r, NULL),
      UV_EINVAL);
  cr_assert_eq(ps_grpc_client_open_calls(c), 0);
  client_close(c);
  cr_assert_not(r.done);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, timeout_formatting_and_http_status_mapping) {
  char b[32];
  ps_grpc_client_format_timeout(250, b, sizeof b);
  cr_assert_str_eq(b, "250m");
  ps_grpc_client_format_timeout(99999999, b, sizeof b);
  cr_assert_str_eq(b, "99999999m");
  ps_grpc_client_format_timeout(100000000, b, sizeof b);
  cr_assert_str_eq(b, "100000S");
  ps_grpc_client_format_timeout(100000001, b, sizeof b);
  cr_assert_str_eq(b, "100001S", "rounded up: the server must not see a shorter deadline");
  uint64_t ms;
  ps_grpc_client_format_timeout(PS_GRPC_CLIENT_MAX_TIMEOUT_MS, b, sizeof b);
  cr_assert_eq(ps_grpc_timeout_parse(b, strlen(b), &ms), 0, "%s", b);
  cr_assert_geq(ms, PS_GRPC_CLIENT_MAX_TIMEOUT_MS);
  /* http-grpc-status-mapping.md */
  cr_assert_eq(ps_grpc_status_from_http(400), PS_GRPC_INTERNAL);
  cr_assert_eq(ps_grpc_status_from_http(401), PS_GRPC_UNAUTHENTICATED);
  cr_assert_eq(ps_grpc_status_from_http(403), PS_GRPC_PERMISSION_DENIED);
  cr_assert_eq(ps_grpc_status_from_http(404), PS_GRPC_UNIMPLEMENTED);
  cr_assert_eq(ps_grpc_status_from_http(429), PS_GRPC_UNAVAILABLE);
  cr_assert_eq(ps_grpc_status_from_http(502), PS_GRPC_UNAVAILABLE);
  cr_assert_eq(ps_grpc_status_from_http(503), PS_GRPC_UNAVAILABLE);
  cr_assert_eq(ps_grpc_status_from_http(504), PS_GRPC_UNAVAILABLE);
  cr_assert_eq(ps_grpc_status_from_http(415), PS_GRPC_UNKNOWN);
  cr_assert_eq(ps_grpc_status_from_http(500), PS_GRPC_UNKNOWN);
  stop_server();
  PS_LOOP_END(&loop);
}

/* ---- a fake peer: an nghttp2 server answering every request with fixed headers ------------------ */

static struct {
  uv_tcp_t srv;
  struct ps_test_h2peer conn; /* the accepted connection and its nghttp2 server session */
  bool conn_open;
  const char *status, *content_type, *grpc_status; /* NULL: header absent */
  bool hold;                                       /* answer nothing */
  int rst_count;
  uint32_t rst_code;
  int requests; /* request HEADERS received */
} fk;

static int fk_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *u) {
  if (f->hd.type == NGHTTP2_RST_STREAM) {
    fk.rst_count++;
    fk.rst_code = f->rst_stream.error_code;
  }
  if (f->hd.type == NGHTTP2_HEADERS) fk.requests++;
  if (fk.hold) return 0;
  if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
      (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    nghttp2_nv nv[3];
    size_t n = 0;
#define ADD(k, v)                                                                                            \
  nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE}
    ADD(":status", fk.status);
    if (fk.content_type) ADD("content-type", fk.content_type);
    if (fk.grpc_status) ADD("grpc-status", fk.grpc_status);
#undef ADD
    nghttp2_submit_response(s, f->hd.stream_id, nv, n, NULL); /* HEADERS with END_STREAM */
  }
  return 0;
}

static void fk_accept(uv_stream_t *srv, int status) {
  cr_assert_eq(status, 0);
  cr_assert_not(fk.conn_open);
  uv_tcp_init(&loop, &fk.conn.tcp);
  cr_assert_eq(uv_accept(srv, (uv_stream_t *)&fk.conn.tcp), 0);
  fk.conn_open = true;
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, fk_on_frame_recv);
  nghttp2_session_server_new(&fk.conn.s, cbs, NULL);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(fk.conn.s, NGHTTP2_FLAG_NONE, NULL, 0);
  ps_test_h2peer_flush(&fk.conn);
  ps_test_h2peer_read_start(&fk.conn);
}

static int fk_start(void) {
  uv_tcp_init(&loop, &fk.srv);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  cr_assert_eq(uv_tcp_bind(&fk.srv, (struct sockaddr *)&a, 0), 0);
  cr_assert_eq(uv_listen((uv_stream_t *)&fk.srv, 4, fk_accept), 0);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&fk.srv, (struct sockaddr *)&ss, &len);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void fk_stop(void) {
  uv_close((uv_handle_t *)&fk.srv, NULL);
  if (fk.conn_open) uv_close((uv_handle_t *)&fk.conn.tcp, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  if (fk.conn.s != NULL) nghttp2_session_del(fk.conn.s);
  memset(&fk, 0, sizeof fk);
}

static bool fk_eof(void *arg) { return fk.conn.eof; }
static bool fk_got_rst(void *arg) { return fk.rst_count > 0; }

/* One call to a fake peer answering with the given headers; also checks that a call the server ended
 * is not reset afterwards (no RST_STREAM reaches the peer before the client's clean close). */
static struct result fake_call(const char *status, const char *ctype, const char *gstatus) {
  memset(&fk, 0, sizeof fk);
  fk.status = status;
  fk.content_type = ctype;
  fk.grpc_status = gstatus;
  char t[64];
  snprintf(t, sizeof t, "127.0.0.1:%d", fk_start());
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(t, &cr, 0);
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Echo", NULL, 0, 3000, NULL, on_done, &r, NULL), 0);
  wait_done(&r);
  client_close(c);
  cr_assert(ps_test_run_until(&loop, fk_eof, NULL, 3000), "the client did not close its connection");
  cr_assert_eq(fk.rst_count, 0, "a finished call must not be reset (code %u)", fk.rst_code);
  fk_stop();
  return r;
}

Test(grpc_client, deadline_resets_the_stream_with_cancel) {
  memset(&fk, 0, sizeof fk);
  fk.hold = true;
  char t[64];
  snprintf(t, sizeof t, "127.0.0.1:%d", fk_start());
  struct result cr = {0}, r = {0};
  struct ps_grpc_client *c = client_new(t, &cr, 0);
  /* The deadline must pass after the stream reached the peer (only then is there a stream to reset), so it
   * is long enough for a slow machine or valgrind to connect and send the HEADERS first. */
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Hold", NULL, 0, 2000, NULL, on_done, &r, NULL), 0);
  wait_done(&r);
  cr_assert_eq(r.status, PS_GRPC_DEADLINE_EXCEEDED);
  cr_assert_eq(fk.requests, 1, "the request never reached the peer before its deadline");
  cr_assert(ps_test_run_until(&loop, fk_got_rst, NULL, 20000), "no RST_STREAM after the deadline");
  cr_assert_eq(fk.rst_count, 1);
  cr_assert_eq(fk.rst_code, NGHTTP2_CANCEL, "PROTOCOL-HTTP2.md: a client cancels with RST_STREAM(CANCEL)");
  client_close(c);
  cr_assert(ps_test_run_until(&loop, fk_eof, NULL, 3000));
  fk_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(grpc_client, non_200_without_grpc_status_maps_as_grpc_does) {
  struct result r = fake_call("503", "text/plain", NULL);
  cr_assert_eq(r.status, PS_GRPC_UNAVAILABLE);
  cr_assert_str_eq(r.message, "HTTP status 503 from the server, without grpc-status");
  r = fake_call("404", NULL, NULL);
  cr_assert_eq(r.status, PS_GRPC_UNIMPLEMENTED);
  r = fake_call("415", "text/plain", NULL);
  cr_assert_eq(r.status, PS_GRPC_UNKNOWN);
  /* "If grpc-status was provided, it must be used" (http-grpc-status-mapping.md): prescale's own server
   * answers a foreign content-type with 415 and INVALID_ARGUMENT. */
  r = fake_call("415", "application/grpc", "3");
  cr_assert_eq(r.status, PS_GRPC_INVALID_ARGUMENT);
  r = fake_call("200", "text/html", NULL);
  cr_assert_eq(r.status, PS_GRPC_UNKNOWN);
  cr_assert_str_eq(r.message, "response content-type \"text/html\" is not gRPC");
  stop_server();
  PS_LOOP_END(&loop);
}
