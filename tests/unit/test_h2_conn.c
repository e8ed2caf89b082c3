/* The gRPC server transport (src/h2_conn.c on src/net.c), driven over loopback by a real HTTP/2 client:
 * an nghttp2 client session on a libuv socket, inside the test. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "grpc.h"
#include "h2_conn.h"
#include "h2_mem.h"
#include "h2peer_fixture.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "net.h"

static uv_loop_t loop;

static bool run_until(bool (*cond)(void *), void *arg, uint64_t ms) {
  return ps_test_run_until(&loop, cond, arg, ms);
}

/* ---- the test dispatcher (service.c plays this part in prescale) ----------------------------- */

#define MAX_HELD   8
#define HELD_SLOTS 48 /* calls the dispatcher can hold: MAX_HELD, or 40 in one test */
static struct {
  int dispatched, cancelled, enobufs, flood_sent, idle;
  struct ps_call *held[HELD_SLOTS];
  int nheld;
  uint64_t last_deadline;
  uv_timer_t later_timer;
  struct ps_call *later;
  /* Big: 16 MiB sent from a timer to a client that stops reading */
  uv_timer_t big_timer;
  struct ps_call *big;
  size_t big_sent, big_enobufs, max_pending;
  struct ps_net_conn *net; /* the server side of the last connection, seen through wrap_proto */
} d;

/* An in-memory connection (ps_h2_conn_new_mem) for the graceful-shutdown tests: the client session's
 * bytes go straight to ps_h2_conn_feed and the server's come back through `out`, so a test decides
 * exactly what each side has seen. */
static struct {
  struct ps_h2_conn *conn; /* NULL: the client talks over its socket */
  struct ps_buf out;       /* the server's bytes not yet given to the client */
  int feed_err;            /* the last ps_h2_conn_feed result */
  bool gather;             /* client_flush keeps the client's bytes in `gathered` instead of feeding them */
  struct ps_buf gathered;
  /* With hold_goaway, GOAWAY frames are kept back in `held` (in flight, as seen from the client) and
   * their fields recorded here: the client then behaves as one that has not received them yet. */
  bool hold_goaway;
  struct ps_buf held;
  int nheld_goaway;
  int32_t held_last[4];
  uint32_t held_code[4];
} mem;

#define BIG_CHUNK (64u << 10)
#define BIG_TOTAL (16u << 20)

static void big_tick(uv_timer_t *t) {
  static uint8_t chunk[BIG_CHUNK];
  while (d.big_sent < BIG_TOTAL) {
    int err = ps_call_send(d.big, chunk, sizeof chunk);
    if (d.net != NULL && ps_net_pending(d.net) > d.max_pending) d.max_pending = ps_net_pending(d.net);
    if (err == UV_ENOBUFS) {
      d.big_enobufs++;
      return; /* try again on the next tick */
    }
    cr_assert_eq(err, 0);
    d.big_sent += sizeof chunk;
  }
  ps_call_finish(d.big, PS_GRPC_OK, NULL);
  d.big = NULL;
  uv_timer_stop(t);
}

static void on_cancel(struct ps_call *call, void *arg) {
  cr_assert_eq(arg, &d);
  d.cancelled++;
  for (int i = 0; i < d.nheld; i++)
    if (d.held[i] == call) d.held[i] = NULL;
}

static void later_cb(uv_timer_t *t) {
  /* Outside any nghttp2 callback: the h2 layer must flush by itself. */
  cr_assert_eq(ps_call_send(d.later, (const uint8_t *)"late", 4), 0);
  ps_call_finish(d.later, PS_GRPC_OK, NULL);
  d.later = NULL;
}

static void dispatch(struct ps_call *call, const char *path, const uint8_t *msg, size_t len, void *arg) {
  d.dispatched++;
  d.last_deadline = ps_call_deadline(call);
  const char *m = ps_call_method(call);
  if (strncmp(path, "/test.Svc/", 10) != 0) {
    ps_call_finish(call, PS_GRPC_UNIMPLEMENTED, "unknown service");
  } else if (strcmp(m, "Echo") == 0) {
    cr_assert_eq(ps_call_send(call, msg, len), 0);
    ps_call_finish(call, PS_GRPC_OK, NULL);
    cr_assert_eq(ps_call_send(call, msg, len), UV_EPIPE); /* ended: refused */
  } else if (strcmp(m, "Stream") == 0) {
    const char *parts[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++)
      cr_assert_eq(ps_call_send(call, (const uint8_t *)parts[i], strlen(parts[i])), 0);
    ps_call_finish(call, PS_GRPC_OK, "");
  } else if (strcmp(m, "Fail") == 0) {
    ps_call_finish(call, PS_GRPC_INVALID_ARGUMENT, "bad value \"\xC3\xA9\" is 100% wrong");
  } else if (strcmp(m, "Weird") == 0) {
    ps_call_finish(call, 99, NULL); /* not a gRPC status */
  } else if (strcmp(m, "Hold") == 0) {
    ps_call_on_cancel(call, on_cancel, &d);
    if (len == 4 && memcmp(msg, "send", 4) == 0) cr_assert_eq(ps_call_send(call, msg, len), 0);
    cr_assert_lt(d.nheld, HELD_SLOTS);
    d.held[d.nheld++] = call;
  } else if (strcmp(m, "Later") == 0) {
    ps_call_on_cancel(call, on_cancel, &d);
    d.later = call;
    uv_timer_start(&d.later_timer, later_cb, 5, 0);
  } else if (strcmp(m, "Big") == 0) {
    ps_call_on_cancel(call, on_cancel, &d);
    d.big = call;
    uv_timer_start(&d.big_timer, big_tick, 1, 1);
  } else if (strcmp(m, "Flood") == 0) {
    /* A client that does not read: the stream's queue fills up and ps_call_send refuses. */
    static uint8_t chunk[32 << 10];
    int err;
    while ((err = ps_call_send(call, chunk, sizeof chunk)) == 0) d.flood_sent++;
    cr_assert_eq(err, UV_ENOBUFS);
    d.enobufs++;
    ps_call_finish(call, PS_GRPC_OK, NULL);
  } else {
    ps_call_finish(call, PS_GRPC_UNIMPLEMENTED, "unknown method");
  }
}

/* ---- server fixture ------------------------------------------------------------------------- */

static struct ps_h2_server server;
static struct ps_net_listener *listener;
static int port;
static bool listener_done;
static void done_cb(void *arg) { listener_done = true; }
static bool is_listener_done(void *arg) { return listener_done; }

/* ps_h2_net_proto, with a look at the server's net connection for the tests. */
static void *wrap_open(struct ps_net_conn *c, void *arg) {
  d.net = c;
  return ps_h2_net_proto.on_open(c, arg);
}
static void wrap_close(void *state) {
  d.net = NULL;
  ps_h2_net_proto.on_close(state);
}
static struct ps_net_proto wrap_proto;

static void idle_cb(void *arg) {
  cr_assert_eq(arg, &d);
  d.idle++;
}

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  ps_metrics_reset();
  memset(&d, 0, sizeof d);
  memset(&mem, 0, sizeof mem);
  ps_buf_init(&mem.out);
  ps_buf_init(&mem.held);
  uv_timer_init(&loop, &d.later_timer);
  uv_timer_init(&loop, &d.big_timer);
  wrap_proto = ps_h2_net_proto;
  wrap_proto.on_open = wrap_open;
  wrap_proto.on_close = wrap_close;
  memset(&server, 0, sizeof server);
  server.loop = &loop;
  server.dispatch = dispatch;
  server.dispatch_arg = &d;
  server.max_msg = 1024;
  server.on_idle = idle_cb;
  server.idle_arg = &d;
  listener_done = false;
  cr_assert_eq(ps_net_listen(&loop, "127.0.0.1:0", &wrap_proto, &server, &listener), 0);
  port = ps_net_listener_port(listener);
}

/* Every test ends with stop_server() then PS_LOOP_END. */
static void stop_server(void) {
  ps_net_listener_close(listener, done_cb, NULL);
  cr_assert(run_until(is_listener_done, NULL, 5000));
  uv_close((uv_handle_t *)&d.later_timer, NULL);
  uv_close((uv_handle_t *)&d.big_timer, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  cr_assert_eq(server.open_conns, 0);
  cr_assert_eq(server.open_streams, 0);
  cr_assert(ps_list_empty(&server.conns));
}

static void teardown(void) {
  ps_buf_free(&mem.out);
  ps_buf_free(&mem.held);
  ps_metrics_reset();
}

TestSuite(h2_conn, .init = setup, .fini = teardown, .timeout = 60);

/* ---- the HTTP/2 client ---------------------------------------------------------------------- */

struct stream {
  int32_t id;
  const uint8_t *body;
  size_t body_len, body_off, chunk; /* chunk: bytes per DATA frame */
  bool hold_open;                   /* send no END_STREAM after the body */
  int http_status, grpc_status, header_blocks, data_frames;
  bool trailers_only, closed;
  uint32_t close_error;
  char content_type[512], grpc_message[512], accept_encoding[512];
  struct ps_buf sent; /* the body framed from req.msg */
  struct ps_buf data;
};

#define MAX_STREAMS  8
#define STREAM_SLOTS 48 /* the client's streams: MAX_STREAMS, or 40 in one test */
static struct client {
  struct ps_test_h2peer peer; /* the socket and the nghttp2 client session */
  uv_connect_t creq;
  bool connected, closed;
  int goaway_error; /* -1 until a GOAWAY arrives */
  int ngoaway;      /* GOAWAYs the client session processed, with their fields in order */
  int32_t goaway_last[4];
  uint32_t goaway_code[4];
  char goaway_debug[64]; /* of the first GOAWAY */
  int ping_acks;
  int pings; /* PINGs from the server (not ACKs) */
  struct stream st[STREAM_SLOTS];
  int nst;
} cl;

static struct stream *find_stream(int32_t id) {
  for (int i = 0; i < cl.nst; i++)
    if (cl.st[i].id == id) return &cl.st[i];
  return NULL;
}

/* Hands nghttp2's frames to the socket, or to the in-memory connection. */
static void client_flush(void) {
  if (mem.conn == NULL) {
    ps_test_h2peer_flush(&cl.peer);
    return;
  }
  for (;;) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(cl.peer.s, &p);
    cr_assert_geq(n, 0);
    if (n == 0) break;
    if (mem.gather)
      ps_buf_append(&mem.gathered, p, (size_t)n);
    else
      mem.feed_err = ps_h2_conn_feed(mem.conn, p, (size_t)n);
  }
}

static int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                       const uint8_t *value, size_t vl, uint8_t flags, void *u) {
  struct stream *st = find_stream(f->hd.stream_id);
  if (st == NULL) return 0;
  char v[512];
  size_t n = vl < sizeof v - 1 ? vl : sizeof v - 1;
  memcpy(v, value, n);
  v[n] = '\0';
  if (nl == 7 && memcmp(name, ":status", 7) == 0)
    st->http_status = atoi(v);
  else if (nl == 12 && memcmp(name, "content-type", 12) == 0)
    snprintf(st->content_type, sizeof st->content_type, "%s", v);
  else if (nl == 11 && memcmp(name, "grpc-status", 11) == 0)
    st->grpc_status = atoi(v);
  else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0)
    snprintf(st->grpc_message, sizeof st->grpc_message, "%s", v);
  else if (nl == 20 && memcmp(name, "grpc-accept-encoding", 20) == 0)
    snprintf(st->accept_encoding, sizeof st->accept_encoding, "%s", v);
  return 0;
}

static int c_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *u) {
  if (f->hd.type == NGHTTP2_GOAWAY && cl.goaway_error < 0) {
    cl.goaway_error = (int)f->goaway.error_code;
    size_t n = f->goaway.opaque_data_len < sizeof cl.goaway_debug - 1 ? f->goaway.opaque_data_len
                                                                      : sizeof cl.goaway_debug - 1;
    if (n > 0) memcpy(cl.goaway_debug, f->goaway.opaque_data, n); /* NULL when there is none */
    cl.goaway_debug[n] = '\0';
  }
  if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) cl.ping_acks++;
  if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK)) cl.pings++;
  if (f->hd.type == NGHTTP2_GOAWAY && cl.ngoaway < 4) {
    cl.goaway_last[cl.ngoaway] = f->goaway.last_stream_id;
    cl.goaway_code[cl.ngoaway++] = f->goaway.error_code;
  }
  struct stream *st = find_stream(f->hd.stream_id);
  if (st == NULL) return 0;
  if (f->hd.type == NGHTTP2_HEADERS) {
    st->header_blocks++;
    if (st->header_blocks == 1 && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) st->trailers_only = true;
  } else if (f->hd.type == NGHTTP2_DATA && f->hd.length > 0) {
    st->data_frames++;
  }
  return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                     void *u) {
  struct stream *st = find_stream(id);
  if (st != NULL) ps_buf_append(&st->data, data, len);
  return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t err, void *u) {
  struct stream *st = find_stream(id);
  if (st != NULL) {
    st->closed = true;
    st->close_error = err;
  }
  return 0;
}

static void streams_free(void) {
  for (int i = 0; i < cl.nst; i++) {
    ps_buf_free(&cl.st[i].sent);
    ps_buf_free(&cl.st[i].data);
  }
}

static void c_connected(uv_connect_t *req, int status) {
  cr_assert_eq(status, 0);
  cl.connected = true;
  ps_test_h2peer_read_start(&cl.peer);
  client_flush();
}

static bool is_connected(void *arg) { return cl.connected; }

static void client_session_new(uint32_t initial_window) {
  memset(&cl, 0, sizeof cl);
  cl.goaway_error = -1;
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, c_on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, c_on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_on_close);
  /* Let the client send header blocks bigger than the server accepts: the server must cope. */
  nghttp2_option *opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_max_send_header_block_length(opt, 1u << 20);
  cr_assert_eq(nghttp2_session_client_new2(&cl.peer.s, cbs, NULL, opt), 0);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, initial_window}};
  nghttp2_submit_settings(cl.peer.s, NGHTTP2_FLAG_NONE, iv, 1);
}

static void client_start(uint32_t initial_window) {
  client_session_new(initial_window);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_init(&loop, &cl.peer.tcp);
  cr_assert_eq(uv_tcp_connect(&cl.creq, &cl.peer.tcp, (struct sockaddr *)&a, c_connected), 0);
  cr_assert(run_until(is_connected, NULL, 5000));
}

static void c_closed(uv_handle_t *h) { cl.closed = true; }
static bool is_closed(void *arg) { return cl.closed; }

static void client_stop(void) {
  uv_close((uv_handle_t *)&cl.peer.tcp, c_closed);
  cr_assert(run_until(is_closed, NULL, 5000));
  nghttp2_session_del(cl.peer.s);
  streams_free();
}

static ssize_t c_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                      nghttp2_data_source *src, void *u) {
  struct stream *st = src->ptr;
  size_t n = st->body_len - st->body_off;
  if (n > st->chunk) n = st->chunk;
  if (n > length) n = length;
  if (n > 0) memcpy(buf, st->body + st->body_off, n);
  st->body_off += n;
  if (st->body_off == st->body_len) {
    if (st->hold_open) {
      if (n == 0) return NGHTTP2_ERR_DEFERRED;
    } else {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
  }
  return (ssize_t)n;
}

struct req {
  const char *method, *path, *content_type, *timeout;
  const char *msg;     /* the body: this one message, framed */
  const uint8_t *body; /* or these bytes as they are; neither: HEADERS with END_STREAM */
  size_t body_len, chunk;
  bool hold_open;
  const char *extra_value; /* sent twice, as x-a and x-b */
};

static struct stream *request(const struct req *r) {
  cr_assert_lt(cl.nst, STREAM_SLOTS);
  struct stream *st = &cl.st[cl.nst++];
  memset(st, 0, sizeof *st);
  st->grpc_status = -1;
  ps_buf_init(&st->sent);
  ps_buf_init(&st->data);
  st->body = r->body;
  st->body_len = r->body_len;
  if (r->msg != NULL) {
    ps_grpc_frame(&st->sent, (const uint8_t *)r->msg, strlen(r->msg));
    st->body = (const uint8_t *)st->sent.data;
    st->body_len = st->sent.len;
  }
  st->chunk = r->chunk ? r->chunk : 16384;
  st->hold_open = r->hold_open;
  nghttp2_nv nva[10];
  size_t n = 0;
#define ADD(k, v)                                                                                            \
  nva[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE}
  ADD(":method", r->method ? r->method : "POST");
  ADD(":scheme", "http");
  ADD(":authority", "127.0.0.1");
  ADD(":path", r->path);
  if (r->content_type == NULL || r->content_type[0])
    ADD("content-type", r->content_type ? r->content_type : "application/grpc");
  ADD("te", "trailers");
  if (r->timeout) ADD("grpc-timeout", r->timeout);
  if (r->extra_value) {
    ADD("x-a", r->extra_value);
    ADD("x-b", r->extra_value);
  }
#undef ADD
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = c_body};
  st->id = nghttp2_submit_request(cl.peer.s, NULL, nva, n, st->body ? &prd : NULL, NULL);
  cr_assert_gt(st->id, 0);
  client_flush();
  return st;
}

static bool stream_closed(void *st) { return ((struct stream *)st)->closed; }
static bool stream_has_data(void *st) { return ((struct stream *)st)->data.len > 0; }

static void wait_closed(struct stream *st) {
  cr_assert(run_until(stream_closed, st, 5000), "stream %d did not close", st->id);
}

/* The gRPC framing of one message, for building request bodies and checking response ones. */
static struct ps_buf framed(const char *msg, size_t len) {
  struct ps_buf b;
  ps_buf_init(&b);
  ps_grpc_frame(&b, (const uint8_t *)msg, len);
  return b;
}

/* The stream's response body is exactly `want`. */
static void assert_data(const struct stream *st, const struct ps_buf *want) {
  cr_assert_eq(st->data.len, want->len, "stream %d", st->id);
  cr_assert_eq(memcmp(st->data.data, want->data, want->len), 0, "stream %d", st->id);
}

/* The stream's response body is exactly the one message `msg`. */
static void assert_data_msg(const struct stream *st, const char *msg) {
  struct ps_buf want = framed(msg, strlen(msg));
  assert_data(st, &want);
  ps_buf_free(&want);
}

static double metric(const char *labels) { return ps_metrics_get("prescale_grpc_requests_total", labels); }

/* ---- tests ---------------------------------------------------------------------------------- */

Test(h2_conn, unary_success) {
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "ping"});
  wait_closed(st);
  cr_assert_eq(st->http_status, 200);
  cr_assert_str_eq(st->content_type, "application/grpc");
  cr_assert_str_eq(st->accept_encoding, "identity");
  cr_assert_eq(st->grpc_status, 0);
  cr_assert_not(st->trailers_only);
  cr_assert_eq(st->header_blocks, 2);
  cr_assert_eq(st->close_error, NGHTTP2_NO_ERROR);
  assert_data_msg(st, "ping");
  cr_assert_eq(d.dispatched, 1);
  cr_assert_eq(d.last_deadline, 0);
  cr_assert_eq(metric("method=\"Echo\",code=\"OK\""), 1);
  cr_assert_eq(server.open_conns, 1);
  cr_assert_eq(server.open_streams, 0);
  cr_assert_eq(ps_metrics_get("prescale_grpc_connections", ""), 1);
  cr_assert_eq(ps_metrics_get("prescale_grpc_streams", ""), 0);
  /* What the server advertised. */
  cr_assert_eq(nghttp2_session_get_remote_settings(cl.peer.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
               PS_H2_MAX_CONCURRENT_STREAMS);
  cr_assert_eq(nghttp2_session_get_remote_settings(cl.peer.s, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
               PS_H2_INITIAL_WINDOW);
  cr_assert_eq(nghttp2_session_get_remote_settings(cl.peer.s, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE),
               PS_H2_MAX_HEADER_LIST);
  cr_assert_gt(nghttp2_session_get_remote_window_size(cl.peer.s), 65535, "connection window not enlarged");
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* Calls of closed streams are reused by the connection's next streams (PS_H2_SPARE_CALLS), and small
 * requests live inside their call (PS_H2_CALL_INLINE_REQ): each answer is still its own request's, with
 * nothing left over from the call's previous life, whether its request was inline or on the heap. */
Test(h2_conn, reused_calls_answer_only_their_own_request) {
  server.max_msg = 1u << 20;
  client_start(65535);
  static char msgs[7][4000];
  const size_t lens[7] = {3, PS_H2_CALL_INLINE_REQ - 5, PS_H2_CALL_INLINE_REQ - 4, 3000, 700, 1, 40};
  struct stream *st[7];
  for (int round = 0; round < 2; round++) {
    int from = round == 0 ? 0 : 4, to = round == 0 ? 4 : 7;
    for (int i = from; i < to; i++) {
      memset(msgs[i], 'a' + i, lens[i]);
      msgs[i][lens[i]] = '\0';
      st[i] = request(&(struct req){.path = "/test.Svc/Echo", .msg = msgs[i]});
    }
    for (int i = from; i < to; i++) {
      wait_closed(st[i]);
      cr_assert_eq(st[i]->grpc_status, 0, "request %d: %s", i, st[i]->grpc_message);
      assert_data_msg(st[i], msgs[i]);
    }
  }
  /* A reused call whose last answer was 3000 bytes now streams three short messages. */
  struct stream *three = request(&(struct req){.path = "/test.Svc/Stream", .msg = "go"});
  wait_closed(three);
  struct ps_buf want;
  ps_buf_init(&want);
  ps_grpc_frame(&want, (const uint8_t *)"one", 3);
  ps_grpc_frame(&want, (const uint8_t *)"two", 3);
  ps_grpc_frame(&want, (const uint8_t *)"three", 5);
  assert_data(three, &want);
  ps_buf_free(&want);
  cr_assert_eq(d.dispatched, 8);
  cr_assert_eq(server.open_streams, 0);
  cr_assert_eq(server.buffered.used, 0, "every request's bytes are back, inline or not");
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, server_streaming_three_messages) {
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Stream", .msg = ""});
  wait_closed(st);
  struct ps_buf want;
  ps_buf_init(&want);
  ps_grpc_frame(&want, (const uint8_t *)"one", 3);
  ps_grpc_frame(&want, (const uint8_t *)"two", 3);
  ps_grpc_frame(&want, (const uint8_t *)"three", 5);
  cr_assert_eq(st->grpc_status, 0);
  cr_assert_str_eq(st->grpc_message, "");
  assert_data(st, &want);
  ps_buf_free(&want);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, trailers_only_error_with_encoded_message) {
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Fail", .msg = "x"});
  wait_closed(st);
  cr_assert(st->trailers_only);
  cr_assert_eq(st->header_blocks, 1);
  cr_assert_eq(st->http_status, 200);
  cr_assert_str_eq(st->content_type, "application/grpc");
  cr_assert_eq(st->grpc_status, PS_GRPC_INVALID_ARGUMENT);
  cr_assert_str_eq(st->grpc_message, "bad value \"%C3%A9\" is 100%25 wrong");
  struct ps_buf dec;
  ps_buf_init(&dec);
  ps_grpc_message_decode(&dec, st->grpc_message, strlen(st->grpc_message));
  cr_assert_str_eq(dec.data, "bad value \"\xC3\xA9\" is 100% wrong");
  cr_assert_eq(st->data.len, 0);
  cr_assert_eq(metric("method=\"Fail\",code=\"INVALID_ARGUMENT\""), 1);
  ps_buf_free(&dec);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, wrong_content_type_is_415_and_get_is_405) {
  client_start(65535);
  struct stream *a =
      request(&(struct req){.path = "/test.Svc/Echo", .content_type = "application/json", .msg = "x"});
  struct stream *b = request(&(struct req){.path = "/test.Svc/Echo", .content_type = ""});
  struct stream *c = request(&(struct req){.method = "GET", .path = "/test.Svc/Echo"});
  wait_closed(a);
  wait_closed(b);
  wait_closed(c);
  cr_assert_eq(a->http_status, 415);
  cr_assert_eq(a->grpc_status, PS_GRPC_INVALID_ARGUMENT);
  cr_assert(strstr(a->grpc_message, "application/json") != NULL, "%s", a->grpc_message);
  cr_assert_eq(b->http_status, 415);
  cr_assert_eq(c->http_status, 405);
  cr_assert_eq(c->grpc_status, PS_GRPC_INTERNAL);
  cr_assert_eq(d.dispatched, 0);
  cr_assert_eq(metric("method=\"unknown\",code=\"INVALID_ARGUMENT\""), 2);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, message_split_across_data_frames) {
  client_start(65535);
  char msg[700];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = (char)('a' + i % 26);
  struct ps_buf body = framed(msg, sizeof msg);
  /* 3 bytes per DATA frame: the prefix itself is split. */
  struct stream *st = request(&(struct req){
      .path = "/test.Svc/Echo", .body = (uint8_t *)body.data, .body_len = body.len, .chunk = 3});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, 0);
  assert_data(st, &body);
  ps_buf_free(&body);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, oversize_message_is_resource_exhausted) {
  client_start(65535);
  static char big[5000];
  struct ps_buf body = framed(big, sizeof big); /* server.max_msg is 1024 */
  /* The client never ends its side: the stream can only close because the server, having answered,
   * stops the upload with RST_STREAM(NO_ERROR) (RFC 9113 8.1). */
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo",
                                            .body = (uint8_t *)body.data,
                                            .body_len = body.len,
                                            .chunk = 100,
                                            .hold_open = true});
  wait_closed(st);
  cr_assert(st->trailers_only);
  cr_assert_eq(st->grpc_status, PS_GRPC_RESOURCE_EXHAUSTED);
  cr_assert(strstr(st->grpc_message, "5000 vs. 1024") != NULL, "%s", st->grpc_message);
  cr_assert_eq(st->close_error, NGHTTP2_NO_ERROR);
  cr_assert_eq(d.dispatched, 0);
  /* The connection is still good. */
  struct stream *st2 = request(&(struct req){.path = "/test.Svc/Echo", .msg = "ok"});
  wait_closed(st2);
  cr_assert_eq(st2->grpc_status, 0);
  ps_buf_free(&body);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, compressed_flag_is_unimplemented) {
  client_start(65535);
  const uint8_t body[] = {1, 0, 0, 0, 2, 'h', 'i'};
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .body = body, .body_len = sizeof body});
  wait_closed(st);
  cr_assert(st->trailers_only);
  cr_assert_eq(st->grpc_status, PS_GRPC_UNIMPLEMENTED);
  cr_assert_str_eq(st->accept_encoding, "identity");
  cr_assert_eq(d.dispatched, 0);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, message_count_errors) {
  client_start(65535);
  struct ps_buf two = framed("a", 1);
  ps_grpc_frame(&two, (const uint8_t *)"b", 1);
  struct stream *a =
      request(&(struct req){.path = "/test.Svc/Echo", .body = (uint8_t *)two.data, .body_len = two.len});
  struct stream *b = request(&(struct req){.path = "/test.Svc/Echo"}); /* no DATA at all */
  struct ps_buf one = framed("abc", 3);
  struct stream *c =
      request(&(struct req){.path = "/test.Svc/Echo", .body = (uint8_t *)one.data, .body_len = one.len - 1});
  wait_closed(a);
  wait_closed(b);
  wait_closed(c);
  cr_assert_eq(a->grpc_status, PS_GRPC_INTERNAL);
  cr_assert_str_eq(a->grpc_message, "too many request messages");
  cr_assert_eq(b->grpc_status, PS_GRPC_INTERNAL);
  cr_assert_str_eq(b->grpc_message, "missing request message");
  cr_assert_eq(c->grpc_status, PS_GRPC_INTERNAL);
  cr_assert(strstr(c->grpc_message, "incomplete") != NULL, "%s", c->grpc_message);
  cr_assert_eq(d.dispatched, 0);
  ps_buf_free(&one);
  ps_buf_free(&two);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

static bool one_cancelled(void *arg) { return d.cancelled >= 1; }
static bool no_conns(void *arg) { return server.open_conns == 0; }

Test(h2_conn, deadline_exceeded_cancels_the_call) {
  client_start(65535);
  uint64_t before = uv_now(&loop);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Hold", .timeout = "50m", .msg = "x"});
  wait_closed(st);
  cr_assert_eq(d.dispatched, 1);
  cr_assert_geq(d.last_deadline, before + 50);
  cr_assert_eq(d.cancelled, 1);
  cr_assert(st->trailers_only);
  cr_assert_eq(st->grpc_status, PS_GRPC_DEADLINE_EXCEEDED);
  cr_assert_geq(uv_now(&loop), before + 50);
  cr_assert_eq(metric("method=\"Hold\",code=\"DEADLINE_EXCEEDED\""), 1);
  /* A deadline that passes while the request is still uploading: answered, the upload stopped, and
   * no cancel callback (the call was never dispatched). */
  struct stream *up =
      request(&(struct req){.path = "/test.Svc/Hold", .timeout = "20m", .msg = "x", .hold_open = true});
  wait_closed(up);
  cr_assert(up->trailers_only);
  cr_assert_eq(up->grpc_status, PS_GRPC_DEADLINE_EXCEEDED);
  cr_assert_eq(up->close_error, NGHTTP2_NO_ERROR);
  cr_assert_eq(d.dispatched, 1);
  cr_assert_eq(d.cancelled, 1);
  /* A malformed grpc-timeout is refused up front. */
  struct stream *bad = request(&(struct req){.path = "/test.Svc/Hold", .timeout = "1x", .msg = "x"});
  wait_closed(bad);
  cr_assert_eq(bad->grpc_status, PS_GRPC_INVALID_ARGUMENT);
  cr_assert_eq(d.dispatched, 1);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, client_rst_mid_stream_cancels) {
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Hold", .msg = "send"});
  cr_assert(run_until(stream_has_data, st, 5000));
  cr_assert_eq(server.open_streams, 1);
  nghttp2_submit_rst_stream(cl.peer.s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
  client_flush();
  cr_assert(run_until(one_cancelled, NULL, 5000));
  cr_assert_eq(d.cancelled, 1);
  cr_assert_null(d.held[0]);
  cr_assert_eq(server.open_streams, 0);
  cr_assert_eq(metric("method=\"Hold\",code=\"CANCELLED\""), 1);
  client_stop();
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(d.cancelled, 1, "cancel ran twice");
  stop_server();
  PS_LOOP_END(&loop);
}

static bool two_held_three_open(void *arg) { return d.nheld == 2 && server.open_streams == 3; }

Test(h2_conn, client_disconnect_cancels_open_calls) {
  client_start(65535);
  request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  /* A third stream is still uploading (no END_STREAM): not dispatched, so no cancel for it. */
  request(&(struct req){.path = "/test.Svc/Hold", .msg = "x", .hold_open = true});
  cr_assert(run_until(two_held_three_open, NULL, 5000));
  cr_assert_eq(d.cancelled, 0);
  client_stop();
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(d.cancelled, 2);
  cr_assert_eq(server.open_streams, 0);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, finish_from_a_timer_flushes) {
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Later", .msg = "x"});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, 0);
  assert_data_msg(st, "late");
  cr_assert_eq(d.cancelled, 0);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, unknown_method_is_unimplemented_without_a_new_label) {
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/other.Svc/Whatever", .msg = "x"});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, PS_GRPC_UNIMPLEMENTED);
  cr_assert_eq(metric("method=\"unknown\",code=\"UNIMPLEMENTED\""), 1);
  cr_assert(isnan(metric("method=\"Whatever\",code=\"UNIMPLEMENTED\"")));
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, slow_reader_gets_enobufs_then_everything) {
  /* The client's stream window is 16 KiB, so most of what the dispatcher sends stays queued. */
  client_start(16384);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Flood", .msg = "x"});
  wait_closed(st);
  cr_assert_eq(d.enobufs, 1);
  cr_assert_geq(d.flood_sent, 1);
  cr_assert_leq((size_t)d.flood_sent * (32 << 10), PS_H2_MAX_STREAM_PENDING + (32 << 10));
  cr_assert_eq(st->grpc_status, 0);
  cr_assert_eq(st->data.len, (size_t)d.flood_sent * ((32 << 10) + 5));
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* Sends outside the input are written at the end of the loop turn (ps_h2c_flush_soon), after big_tick
 * returns: the socket's queue is looked at here too, after each turn. */
static bool server_blocked(void *arg) {
  if (d.net != NULL && ps_net_pending(d.net) > d.max_pending) d.max_pending = ps_net_pending(d.net);
  return d.net != NULL && ps_net_paused(d.net) && d.big_enobufs > 0;
}

Test(h2_conn, client_that_stops_reading_bounds_server_memory) {
  client_start((1u << 31) - 1);
  /* Huge windows: only the socket can hold the server back. */
  nghttp2_session_set_local_window_size(cl.peer.s, NGHTTP2_FLAG_NONE, 0, (1u << 31) - 1);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Big", .msg = "x"});
  uv_read_stop((uv_stream_t *)&cl.peer.tcp);
  cr_assert(run_until(server_blocked, NULL, 10000), "pending %zu, enobufs %zu",
            d.net ? ps_net_pending(d.net) : 0, d.big_enobufs);
  /* Bounded: the h2 layer stopped pulling frames at the high-water mark (plus one write batch). */
  cr_assert_gt(d.max_pending, PS_NET_HIGH_WATER);
  cr_assert_lt(d.max_pending, PS_NET_HIGH_WATER + (128u << 10));
  cr_assert_lt(d.big_sent, BIG_TOTAL);
  ps_test_h2peer_read_start(&cl.peer);
  cr_assert(run_until(stream_closed, st, 20000));
  cr_assert_eq(st->grpc_status, 0);
  cr_assert_eq(st->data.len, (size_t)(BIG_TOTAL / BIG_CHUNK) * (BIG_CHUNK + 5));
  cr_assert_lt(d.max_pending, PS_NET_HIGH_WATER + (128u << 10));
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, header_list_over_the_limit_is_refused) {
  client_start(65535);
  char *v = malloc(40000);
  memset(v, 'v', 39999);
  v[39999] = '\0';
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "x", .extra_value = v});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, PS_GRPC_RESOURCE_EXHAUSTED, "status %d http %d err %u", st->grpc_status,
               st->http_status, st->close_error);
  cr_assert_eq(d.dispatched, 0);
  free(v);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

static bool got_goaway(void *arg) { return cl.goaway_error >= 0; }

Test(h2_conn, rapid_reset_gets_goaway) {
  client_start(65535);
  /* Open a stream (HEADERS without END_STREAM) and reset it, over and over. */
  static struct stream dummy = {.hold_open = true, .chunk = 1};
  nghttp2_nv nva[] = {
      {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
      {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
      {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
      {(uint8_t *)":path", (uint8_t *)"/test.Svc/Echo", 5, 14, 0},
      {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
  };
  nghttp2_data_provider prd = {.source.ptr = &dummy, .read_callback = c_body};
  for (int i = 0; i < PS_H2_RST_BURST + 100 && !cl.peer.eof; i++) {
    int32_t id = nghttp2_submit_request(cl.peer.s, NULL, nva, 5, &prd, NULL);
    cr_assert_gt(id, 0);
    client_flush();
    nghttp2_submit_rst_stream(cl.peer.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    client_flush();
  }
  cr_assert(run_until(got_goaway, NULL, 5000));
  cr_assert_eq(cl.goaway_error, NGHTTP2_ENHANCE_YOUR_CALM, "goaway %d", cl.goaway_error);
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(d.dispatched, 0);
  cr_assert_geq(metric("method=\"unknown\",code=\"CANCELLED\""), PS_H2_RST_BURST);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, out_of_range_status_becomes_unknown) {
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Weird", .msg = "x"});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, PS_GRPC_UNKNOWN);
  cr_assert_eq(metric("method=\"Weird\",code=\"UNKNOWN\""), 1);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* ---- preface timeout ------------------------------------------------------------------------ */

static int silent_fd = -1;
/* Reads what the server sends (its SETTINGS) until it closes: true at EOF. */
static bool silent_closed(void *arg) {
  char buf[512];
  for (;;) {
    ssize_t n = recv(silent_fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK; /* a reset closes too */
  }
}
Test(h2_conn, silent_client_is_closed_after_the_preface_timeout) {
  server.preface_timeout_ms = 200;
  silent_fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(connect(silent_fd, (struct sockaddr *)&a, sizeof a), 0);
  uint64_t t0 = uv_now(&loop);
  cr_assert(run_until(silent_closed, NULL, 5000), "the server kept a client that never sent its preface");
  cr_assert_geq(uv_now(&loop) - t0, 150, "closed before the timeout");
  cr_assert(run_until(no_conns, NULL, 2000));
  close(silent_fd);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, greeting_client_outlives_the_preface_timeout) {
  /* Long enough that the greeting is read before it on a busy machine too: the timer starts at the
   * accept, the greeting is read a loop turn or two later. */
  server.preface_timeout_ms = 1000;
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "ping"});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, 0);
  /* Well past the timeout: the connection must still serve. (A bounded wait for a close that must not
   * come; the timer it would come from was started before this wait's own timer, with the same delay.) */
  cr_assert_not(run_until(no_conns, NULL, server.preface_timeout_ms + 300),
                "closed after the preface timeout");
  cr_assert_eq(server.open_conns, 1);
  struct stream *again = request(&(struct req){.path = "/test.Svc/Echo", .msg = "ping"});
  wait_closed(again);
  cr_assert_eq(again->grpc_status, 0);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* ---- connection slots: the idle timeout and eviction -------------------------------------------- */

Test(h2_conn, idle_connection_gets_goaway_no_error_after_the_idle_timeout) {
  server.idle_timeout_ms = 300;
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "ping"});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, 0);
  uint64_t t0 = uv_now(&loop);
  cr_assert(run_until(got_goaway, NULL, 5000), "an idle connection was never closed");
  /* Counted from the end of the last call, not from the connection's start. */
  cr_assert_geq(uv_now(&loop) - t0, 250, "closed before the idle timeout");
  cr_assert_eq(cl.goaway_error, NGHTTP2_NO_ERROR);
  cr_assert_str_eq(cl.goaway_debug, "idle");
  cr_assert_eq(cl.goaway_last[0], st->id, "the GOAWAY must name the last stream processed");
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(server.idle_closed, 1);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* The connection's timer is armed lazily (h2_conn.c, conn_timer_arm): calls that come and go leave it at
 * the first idle deadline, which comes while the client is still calling. There it must find the real
 * deadline later and wait again, never close; and once the calls stop, the close comes one idle timeout
 * after the last one, not sooner. The calls run back to back for 2.5 idle timeouts (no pause in between). */
Test(h2_conn, activity_keeps_postponing_the_idle_close) {
  const uint64_t idle = 1000;
  server.idle_timeout_ms = idle;
  client_start(65535);
  uint64_t start = uv_now(&loop), last_sent = start;
  int calls = 0;
  while (uv_now(&loop) - start < idle * 5 / 2) {
    last_sent = uv_now(&loop);
    struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "busy"});
    wait_closed(st);
    cr_assert_eq(st->grpc_status, PS_GRPC_OK);
    cr_assert_lt(cl.goaway_error, 0, "closed after %" PRIu64 " ms of calls", uv_now(&loop) - start);
    /* The client's record of the stream goes, so that the calls are not bounded by MAX_STREAMS. */
    ps_buf_free(&st->sent);
    ps_buf_free(&st->data);
    cl.nst--;
    calls++;
  }
  cr_assert_eq(server.idle_closed, 0);
  cr_assert(run_until(got_goaway, NULL, 10 * idle), "idle after %d calls and never closed", calls);
  /* The last call ended after it was sent (one loop, one clock): its idle timeout cannot be over sooner. */
  cr_assert_geq(uv_now(&loop), last_sent + idle, "closed before the idle timeout after the last call");
  cr_assert_str_eq(cl.goaway_debug, "idle");
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(server.idle_closed, 1);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

static bool one_held(void *arg);
static void finish_held(int i);
static uint32_t be32(const uint8_t *p);

Test(h2_conn, a_call_in_progress_suspends_the_idle_timeout) {
  server.idle_timeout_ms = 200;
  client_start(65535);
  struct stream *held = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  cr_assert(run_until(one_held, NULL, 5000));
  /* Several idle timeouts long, with a call held (a StreamIsActive watch is one): no GOAWAY may come. A
   * bounded wait for an event that must not happen; the timer it would come from has a fixed delay. */
  cr_assert_not(run_until(got_goaway, NULL, 700), "closed with a call in progress");
  finish_held(0);
  wait_closed(held);
  cr_assert_eq(held->grpc_status, 0);
  cr_assert(run_until(got_goaway, NULL, 5000), "idle after its call and never closed");
  cr_assert_str_eq(cl.goaway_debug, "idle");
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* A client that sends a PING every 40 ms: pings are no progress. */
static uv_timer_t ping_timer;
static int pings_sent;
static void ping_tick(uv_timer_t *t) {
  if (cl.peer.eof) return;
  nghttp2_submit_ping(cl.peer.s, NGHTTP2_FLAG_NONE, NULL);
  pings_sent++;
  client_flush();
}

Test(h2_conn, pings_do_not_keep_an_idle_connection) {
  server.idle_timeout_ms = 300;
  client_start(65535);
  pings_sent = 0;
  uv_timer_init(&loop, &ping_timer);
  uv_timer_start(&ping_timer, ping_tick, 40, 40);
  cr_assert(run_until(got_goaway, NULL, 5000), "a pinging client without calls was never closed");
  uv_close((uv_handle_t *)&ping_timer, NULL);
  cr_assert_eq(cl.goaway_error, NGHTTP2_NO_ERROR);
  cr_assert_gt(cl.ping_acks, 1, "the pings were answered meanwhile");
  cr_assert(run_until(no_conns, NULL, 5000));
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* ---- raw HTTP/2 clients: a socket, the preface and SETTINGS written by hand, frames read back ---- */

struct raw {
  int fd;
  struct ps_buf in;
  bool eof;
};

static const char preface_and_settings[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"      /* RFC 9113 3.4 */
                                           "\x00\x00\x00\x04\x00\x00\x00\x00\x00"; /* empty SETTINGS */

static void raw_connect(struct raw *r, bool greet) {
  memset(r, 0, sizeof *r);
  ps_buf_init(&r->in);
  r->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(connect(r->fd, (struct sockaddr *)&a, sizeof a), 0);
  if (greet) cr_assert_eq(send(r->fd, preface_and_settings, sizeof preface_and_settings - 1, 0), 33);
}

static void raw_read(struct raw *r) {
  char buf[4096];
  while (!r->eof) {
    ssize_t n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) ps_buf_append(&r->in, buf, (size_t)n);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) r->eof = true;
    if (n <= 0) return;
  }
}

/* The first frame of `type` (and with ACK when `ack`) the server sent, or NULL; *len gets its length. */
static const uint8_t *raw_frame(const struct raw *r, uint8_t type, bool ack, size_t *len) {
  const uint8_t *p = (const uint8_t *)r->in.data, *end = p + r->in.len;
  while (p != NULL && end - p >= 9) {
    size_t n = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
    if ((size_t)(end - p) < 9 + n) return NULL;
    if (p[3] == type && (!ack || (p[4] & NGHTTP2_FLAG_ACK))) {
      *len = n;
      return p + 9;
    }
    p += 9 + n;
  }
  return NULL;
}

/* The server acknowledged our SETTINGS: it has processed the greeting. */
static bool raw_greeted(void *arg) {
  size_t n;
  raw_read(arg);
  return raw_frame(arg, NGHTTP2_SETTINGS, true, &n) != NULL;
}

static bool raw_closed(void *arg) {
  raw_read(arg);
  return ((struct raw *)arg)->eof;
}

/* The connection was closed after a GOAWAY(NO_ERROR) carrying `debug`. */
static void assert_raw_goaway(struct raw *r, const char *debug) {
  cr_assert(run_until(raw_closed, r, 5000), "not closed");
  size_t n;
  const uint8_t *g = raw_frame(r, NGHTTP2_GOAWAY, false, &n);
  cr_assert_not_null(g, "closed without GOAWAY");
  cr_assert_geq(n, 8);
  cr_assert_eq(be32(g + 4), NGHTTP2_NO_ERROR);
  cr_assert_eq(n - 8, strlen(debug));
  cr_assert_eq(memcmp(g + 8, debug, n - 8), 0, "debug data %.*s", (int)(n - 8), g + 8);
}

static void raw_free(struct raw *r) {
  close(r->fd);
  ps_buf_free(&r->in);
}

static bool two_conns(void *arg) { return server.open_conns == 2; }

Test(h2_conn, at_the_limit_the_longest_idle_connection_is_evicted_with_goaway) {
  ps_net_listener_set_slots(listener, 2, NULL);
  /* A connection with a call in progress is never evicted, however long it has been open. */
  client_start(65535);
  struct stream *held = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  cr_assert(run_until(one_held, NULL, 5000));
  struct raw r1, r2, r3;
  raw_connect(&r1, true);
  cr_assert(run_until(raw_greeted, &r1, 5000));
  /* The limit: the newcomer evicts r1, the only idle one. */
  raw_connect(&r2, true);
  assert_raw_goaway(&r1, "evicted: connection limit");
  cr_assert(run_until(raw_greeted, &r2, 5000), "the newcomer was not served");
  cr_assert(run_until(two_conns, NULL, 5000));
  cr_assert_eq(d.cancelled, 0);
  cr_assert_lt(cl.goaway_error, 0);
  /* The call ends: the client's connection is idle from now, more recently than r2, which goes next. */
  finish_held(0);
  wait_closed(held);
  cr_assert_eq(held->grpc_status, 0);
  raw_connect(&r3, true);
  assert_raw_goaway(&r2, "evicted: connection limit");
  cr_assert(run_until(raw_greeted, &r3, 5000));
  cr_assert_lt(cl.goaway_error, 0, "the most recently active connection was evicted");
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "still here"});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, 0);
  cr_assert_eq(server.evicted, 2);
  cr_assert_eq(ps_net_listener_evicted(listener), 2);
  cr_assert_eq(ps_net_listener_refused(listener), 0);
  raw_free(&r1);
  raw_free(&r2);
  raw_free(&r3);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* A client that greets, opens a stream with a HEADERS frame of 200 bytes, and sends its block one byte
 * every 40 ms: bytes keep coming, a frame never completes. */
static struct raw slow;
static uv_timer_t slow_timer;
static size_t slow_sent;
static uint64_t slow_first_ms;
static void slow_tick(uv_timer_t *t) {
  if (slow.eof) return;
  if (slow_sent == 0) slow_first_ms = uv_now(&loop);
  if (send(slow.fd, "a", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) slow_sent++;
}

Test(h2_conn, a_client_trickling_bytes_without_a_complete_request_is_closed) {
  server.idle_timeout_ms = 400;
  raw_connect(&slow, true);
  /* HEADERS, 200 bytes, END_HEADERS, stream 1: the server opens the stream and waits for its block. */
  static const char headers[] = "\x00\x00\xc8\x01\x04\x00\x00\x00\x01";
  cr_assert_eq(send(slow.fd, headers, sizeof headers - 1, 0), 9);
  slow_sent = 0;
  uv_timer_init(&loop, &slow_timer);
  uv_timer_start(&slow_timer, slow_tick, 40, 40);
  cr_assert(run_until(raw_closed, &slow, 10000), "a client trickling bytes was never closed");
  uv_close((uv_handle_t *)&slow_timer, NULL);
  cr_assert_geq(slow_sent, 2, "bytes kept coming");
  cr_assert_lt(slow_sent, 200, "the frame was completed");
  cr_assert_geq(uv_now(&loop) - slow_first_ms, 300, "closed before the idle timeout");
  size_t n;
  const uint8_t *g = raw_frame(&slow, NGHTTP2_GOAWAY, false, &n);
  cr_assert_not_null(g, "closed without GOAWAY");
  cr_assert_eq(be32(g + 4), NGHTTP2_NO_ERROR);
  cr_assert(run_until(no_conns, NULL, 5000));
  raw_free(&slow);
  stop_server();
  PS_LOOP_END(&loop);
}

/* ---- graceful shutdown (RFC 9113 6.8) ---------------------------------------------------------- */

#define LAST_STREAM_MAX ((int32_t)((1u << 31) - 1)) /* the shutdown notice's last-stream-id */

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Gives the server's bytes to the client session frame by frame (holding GOAWAYs back when asked),
 * then sends the client's answers (SETTINGS and PING ACKs) straight to the server. */
static void mem_to_client(void) {
  uv_run(&loop, UV_RUN_NOWAIT); /* the end of the loop turn: frames sent outside the input are written */
  size_t off = 0;
  while (off < mem.out.len) {
    const uint8_t *f = (const uint8_t *)mem.out.data + off;
    cr_assert_geq(mem.out.len - off, 9, "truncated frame header");
    size_t flen = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
    cr_assert_geq(mem.out.len - off, 9 + flen, "truncated frame");
    if (f[3] == NGHTTP2_GOAWAY && mem.hold_goaway) {
      cr_assert_geq(flen, 8);
      cr_assert_lt(mem.nheld_goaway, 4);
      mem.held_last[mem.nheld_goaway] = (int32_t)(be32(f + 9) & 0x7fffffffu);
      mem.held_code[mem.nheld_goaway++] = be32(f + 13);
      ps_buf_append(&mem.held, f, 9 + flen);
    } else {
      cr_assert_eq(nghttp2_session_mem_recv(cl.peer.s, f, 9 + flen), (ssize_t)(9 + flen));
    }
    off += 9 + flen;
  }
  ps_buf_reset(&mem.out);
  client_flush();
}

/* Until neither side has anything left to say (bounded: a handful of round trips at most). */
static void mem_pump(void) {
  uv_run(&loop, UV_RUN_NOWAIT); /* the end of the loop turn: frames sent outside the input are written */
  for (int i = 0; i < 16 && mem.out.len > 0; i++) mem_to_client();
  cr_assert_eq(mem.out.len, 0, "the two sessions kept talking");
}

/* The GOAWAYs held back arrive now. */
static void mem_deliver_held(void) {
  cr_assert_eq(nghttp2_session_mem_recv(cl.peer.s, (const uint8_t *)mem.held.data, mem.held.len),
               (ssize_t)mem.held.len);
  ps_buf_reset(&mem.held);
  client_flush();
  mem_pump();
}

static void mem_start(void) {
  client_session_new(65535);
  mem.conn = ps_h2_conn_new_mem(&server, &mem.out);
  cr_assert_not_null(mem.conn);
  cl.connected = true;
  client_flush(); /* the client preface and SETTINGS */
  mem_pump();
}

static void mem_stop(void) {
  if (mem.conn != NULL) ps_h2_conn_free(mem.conn);
  mem.conn = NULL;
  nghttp2_session_del(cl.peer.s);
  streams_free();
  uv_run(&loop, UV_RUN_NOWAIT); /* call timers close asynchronously */
}

/* Sends "done" on a held call and finishes it OK, as a dispatcher whose slow work completed would. */
static void finish_held(int i) {
  cr_assert_not_null(d.held[i]);
  cr_assert_eq(ps_call_send(d.held[i], (const uint8_t *)"done", 4), 0);
  ps_call_finish(d.held[i], PS_GRPC_OK, NULL);
  d.held[i] = NULL;
}

static void assert_done_ok(const struct stream *st) {
  cr_assert(st->closed, "stream %d still open", st->id);
  cr_assert_eq(st->grpc_status, PS_GRPC_OK, "stream %d: %d %s", st->id, st->grpc_status, st->grpc_message);
  assert_data_msg(st, "done");
}

/* Many streams' requests in one input (as KEDA's and h2load's arrive in one read): every answer (headers,
 * data, trailers of each stream) goes out in one write, not one per stream or per frame. */
Test(h2_conn, the_answers_to_one_input_go_out_in_one_write) {
  mem_start();
  enum { N = 8 }; /* MAX_STREAMS */
  char msgs[N][8];
  struct stream *st[N];
  mem.gather = true;
  for (int i = 0; i < N; i++) {
    snprintf(msgs[i], sizeof msgs[i], "m%d", i);
    st[i] = request(&(struct req){.path = "/test.Svc/Echo", .msg = msgs[i]});
  }
  mem.gather = false;
  size_t writes = server.writes;
  cr_assert_eq(ps_h2_conn_feed(mem.conn, (const uint8_t *)mem.gathered.data, mem.gathered.len), 0);
  cr_assert_eq(d.dispatched, N);
  cr_assert_eq(server.writes, writes + 1, "%zu writes for %d answers", server.writes - writes, N);
  mem_pump();
  for (int i = 0; i < N; i++) {
    cr_assert(st[i]->closed, "stream %d", st[i]->id);
    cr_assert_eq(st[i]->grpc_status, PS_GRPC_OK);
    assert_data_msg(st[i], msgs[i]);
  }
  /* nghttp2's memory of the closed streams waits on the server's free lists for the next ones. */
  cr_assert_not_null(server.mem);
  cr_assert_gt(server.mem->kept, 0);
  ps_buf_free(&mem.gathered);
  mem_stop();
  cr_assert_null(server.mem, "no connection left: the free lists went back to malloc");
  stop_server();
  PS_LOOP_END(&loop);
}

/* The gRPC families are not looked up again at every accept, only when needed: after a registry reset,
 * the next connection declares them again (skipped, its gauges and the calls' counters would not exist). */
Test(h2_conn, a_connection_after_a_registry_reset_declares_the_families_again) {
  mem_start();
  cr_assert_eq(ps_metrics_get("prescale_grpc_connections", ""), 1);
  mem_stop();
  ps_metrics_reset();
  mem_start();
  cr_assert_eq(ps_metrics_get("prescale_grpc_connections", ""), 1, "declared again after the reset");
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "again"});
  mem_pump();
  cr_assert(st->closed);
  cr_assert_eq(metric("method=\"Echo\",code=\"OK\""), 1);
  mem_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, drain_sends_notice_then_goaway_with_last_stream_and_lets_calls_finish) {
  mem_start();
  struct stream *held = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  struct stream *echo = request(&(struct req){.path = "/test.Svc/Echo", .msg = "x"});
  mem_pump();
  cr_assert_eq(mem.feed_err, 0);
  cr_assert(echo->closed);
  cr_assert_eq(echo->grpc_status, PS_GRPC_OK);
  cr_assert_eq(d.nheld, 1);
  cr_assert_eq(held->id, 1);
  cr_assert_eq(echo->id, 3);

  ps_h2_server_drain(&server);
  /* Step one only: the notice (last-stream-id 2^31-1, NO_ERROR). The final GOAWAY waits for the PING's
   * round trip, or a request already on its way would be refused. */
  cr_assert_gt(mem.out.len, 0, "no frames after ps_h2_server_drain");
  mem_to_client();
  cr_assert_eq(cl.ngoaway, 1, "%d GOAWAYs before the PING's ACK", cl.ngoaway);
  cr_assert_eq(cl.goaway_last[0], LAST_STREAM_MAX);
  cr_assert_eq(cl.goaway_code[0], NGHTTP2_NO_ERROR);
  /* The client acknowledged the PING (nghttp2 does by itself): now the final GOAWAY names stream 3. */
  mem_pump();
  cr_assert_eq(cl.ngoaway, 2);
  cr_assert_eq(cl.goaway_last[1], 3);
  cr_assert_eq(cl.goaway_code[1], NGHTTP2_NO_ERROR);

  /* The call dispatched before the drain is not cut: it finishes normally and its answer arrives. */
  cr_assert_eq(mem.feed_err, 0);
  cr_assert_not(held->closed);
  finish_held(0);
  mem_pump();
  assert_done_ok(held);
  cr_assert_eq(held->close_error, NGHTTP2_NO_ERROR);
  cr_assert_eq(d.cancelled, 0);
  /* Its last stream done after the final GOAWAY, the connection is finished (a socket closes now). */
  cr_assert_eq(ps_h2_conn_feed(mem.conn, (const uint8_t *)"", 0), UV_EPIPE);
  cr_assert_eq(d.idle, 0);
  mem_stop();
  cr_assert_eq(d.idle, 1, "on_idle after the last connection went");
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, stream_opened_after_the_final_goaway_is_refused) {
  mem_start();
  struct stream *held = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  mem_pump();
  cr_assert_eq(mem.feed_err, 0);
  cr_assert_eq(d.dispatched, 1);
  /* The GOAWAYs are in flight while the client opens another stream: the race RFC 9113 6.8 settles
   * with the last-stream-id. */
  mem.hold_goaway = true;
  ps_h2_server_drain(&server);
  mem_pump();
  cr_assert_eq(mem.nheld_goaway, 2);
  cr_assert_eq(mem.held_last[1], 1);
  struct stream *late = request(&(struct req){.path = "/test.Svc/Echo", .msg = "x"});
  cr_assert_eq(late->id, 3);
  mem_pump();
  cr_assert_eq(mem.feed_err, 0, "the late stream must be ignored, not break the connection");
  cr_assert_eq(d.dispatched, 1, "a stream above the final last-stream-id was dispatched");
  cr_assert_eq(server.open_streams, 1);
  cr_assert_not(late->closed);
  /* The GOAWAY arrives: the client learns stream 3 was not processed (nghttp2 closes it as refused, so
   * a gRPC client retries it on another connection). */
  mem.hold_goaway = false;
  mem_deliver_held();
  cr_assert(late->closed);
  cr_assert_eq(late->close_error, NGHTTP2_REFUSED_STREAM, "close error %u", late->close_error);
  cr_assert_eq(late->http_status, 0, "a refused stream got response headers");
  /* The accepted call still completes. */
  finish_held(0);
  mem_pump();
  assert_done_ok(held);
  cr_assert_eq(d.cancelled, 0);
  mem_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, connection_opened_during_a_drain_gets_goaway_at_once) {
  ps_h2_server_drain(&server);
  cr_assert_eq(d.idle, 0, "no connection was open: on_idle must not run");
  mem.hold_goaway = true;
  mem_start();
  cr_assert_eq(mem.nheld_goaway, 1);
  cr_assert_eq(mem.held_last[0], 0);
  cr_assert_eq(mem.held_code[0], NGHTTP2_NO_ERROR);
  cr_assert_eq(ps_h2_conn_feed(mem.conn, (const uint8_t *)"", 0), UV_EPIPE, "nothing to wait for: done");
  cr_assert_eq(d.dispatched, 0);
  mem_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

static bool two_goaways(void *arg) { return cl.ngoaway >= 2; }
static bool one_held(void *arg) { return d.nheld == 1; }
static bool first_goaway(void *arg) { return cl.ngoaway >= 1; }

Test(h2_conn, drain_over_a_socket_closes_once_the_last_call_ends) {
  client_start(65535);
  struct stream *held = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  cr_assert(run_until(one_held, NULL, 5000));
  ps_net_listener_stop(listener);
  ps_h2_server_drain(&server);
  cr_assert(run_until(two_goaways, NULL, 5000), "%d GOAWAYs", cl.ngoaway);
  cr_assert_eq(cl.goaway_last[0], LAST_STREAM_MAX);
  cr_assert_eq(cl.goaway_last[1], 1);
  cr_assert_eq(cl.goaway_code[1], NGHTTP2_NO_ERROR);
  /* Stopped listener: the kernel refuses new connections. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), -1, "connected to a stopped listener");
  cr_assert_eq(errno, ECONNREFUSED, "%s", strerror(errno));
  close(fd);
  /* The open connection is untouched until its call ends; then it closes by itself. */
  cr_assert_eq(server.open_conns, 1);
  cr_assert_eq(d.nheld, 1);
  finish_held(0);
  cr_assert(run_until(no_conns, NULL, 5000), "the drained connection stayed open");
  assert_done_ok(held);
  cr_assert_eq(d.cancelled, 0);
  cr_assert_eq(d.idle, 1);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

static int held_want; /* the streams the test below holds */
static bool all_held(void *arg) { return d.nheld == held_want; }

static bool every_held_stream_has(void *arg) {
  for (int i = 0; i < held_want; i++)
    if (cl.st[i].data.len < *(size_t *)arg) return false;
  return true;
}

/* n streams held by the dispatcher get a message each from outside the input, then another and their
 * trailers: one write for the first messages, one for the rest, each stream's data whole and in order. */
static void sends_outside_the_input(int n) {
  held_want = n;
  client_start(65535);
  for (int i = 0; i < n; i++) request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  cr_assert(run_until(all_held, NULL, 5000));
  size_t w0 = server.writes;
  for (int i = 0; i < n; i++) cr_assert_eq(ps_call_send(d.held[i], (const uint8_t *)"on", 2), 0);
  cr_assert_eq(server.writes, w0, "written before the end of the loop turn");
  size_t want = PS_GRPC_PREFIX_LEN + 2;
  cr_assert(run_until(every_held_stream_has, &want, 5000));
  cr_assert_eq(server.writes, w0 + 1, "%zu writes for %d streams", server.writes - w0, n);
  for (int i = 0; i < n; i++) assert_data_msg(&cl.st[i], "on");
  /* The same again, then every call finished: the trailers of all of them go in one write too. */
  for (int i = 0; i < n; i++) cr_assert_eq(ps_call_send(d.held[i], (const uint8_t *)"off", 3), 0);
  for (int i = 0; i < n; i++) {
    ps_call_finish(d.held[i], PS_GRPC_OK, NULL);
    d.held[i] = NULL;
  }
  cr_assert_eq(server.writes, w0 + 1, "written before the end of the loop turn");
  for (int i = 0; i < n; i++) wait_closed(&cl.st[i]);
  cr_assert_eq(server.writes, w0 + 2, "%zu writes", server.writes - w0);
  for (int i = 0; i < n; i++) {
    cr_assert_eq(cl.st[i].grpc_status, PS_GRPC_OK);
    struct ps_buf want2 = framed("on", 2);
    ps_buf_append(&want2, "\0\0\0\0\3off", 8);
    assert_data(&cl.st[i], &want2);
    ps_buf_free(&want2);
  }
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* A refresh that changes a target sends to every stream watching it, from a Prometheus answer (outside
 * the connection's input): the frames of all the streams of one connection leave in one write at the end
 * of the loop turn, not one write each. */
Test(h2_conn, sends_outside_the_input_leave_in_one_write_per_loop_turn) { sends_outside_the_input(MAX_HELD); }

/* More sends outside the input than h2_send.c's SERIALIZE_EVERY (32): their frames are serialized while the
 * turn goes on (nghttp2's queue of streams with data stays small), but they still leave as above. */
Test(h2_conn, many_sends_outside_the_input_still_leave_in_one_write) { sends_outside_the_input(40); }

/* --grpc-max-streams: what a connection advertises in SETTINGS_MAX_CONCURRENT_STREAMS. */
Test(h2_conn, max_streams_is_advertised) {
  server.max_streams = 1000;
  client_start(65535);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "ping"});
  wait_closed(st);
  cr_assert_eq(nghttp2_session_get_remote_settings(cl.peer.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 1000);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, terminate_cuts_what_is_left_with_goaway_no_error) {
  client_start(65535);
  request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  /* A third call still uploading: open, not dispatched, and cut too. */
  request(&(struct req){.path = "/test.Svc/Hold", .msg = "x", .hold_open = true});
  cr_assert(run_until(two_held_three_open, NULL, 5000));
  /* One of them finished before the deadline: not counted. */
  finish_held(1);
  cr_assert_eq(ps_h2_server_terminate(&server), 2);
  cr_assert(run_until(first_goaway, NULL, 5000));
  cr_assert_eq(cl.goaway_code[0], NGHTTP2_NO_ERROR);
  cr_assert_eq(cl.goaway_last[0], 5);
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(d.cancelled, 1, "the dispatched call left is cancelled");
  cr_assert_eq(d.idle, 1);
  assert_done_ok(&cl.st[1]);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* ---- request memory: budget, growth, request timeout ------------------------------------------ */

static double refused(const char *reason) {
  char labels[64];
  snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
  return ps_metrics_get("prescale_grpc_requests_refused_total", labels);
}

/* The body of an unfinished message: a prefix announcing `announce` bytes, then `have` of them. */
static uint8_t *partial_body(uint32_t announce, size_t have, size_t *len) {
  uint8_t *b = calloc(1, PS_GRPC_PREFIX_LEN + have);
  b[1] = (uint8_t)(announce >> 24);
  b[2] = (uint8_t)(announce >> 16);
  b[3] = (uint8_t)(announce >> 8);
  b[4] = (uint8_t)announce;
  *len = PS_GRPC_PREFIX_LEN + have;
  return b;
}

static bool all_sent(void *arg) {
  for (int i = 0; i < cl.nst; i++)
    if (!cl.st[i].closed && cl.st[i].body_off < cl.st[i].body_len) return false;
  return true;
}
static size_t buffered_at_least;
static bool buffered_reached(void *arg) { return server.buffered.used >= buffered_at_least; }

Test(h2_conn, prefixes_alone_reserve_nothing) {
  server.max_msg = 4u << 20;
  client_start(65535);
  size_t len;
  uint8_t *body = partial_body((4u << 20) - 1, 0, &len);
  for (int i = 0; i < MAX_STREAMS - 1; i++)
    request(&(struct req){.path = "/test.Svc/Echo", .body = body, .body_len = len, .hold_open = true});
  /* An Echo behind them on the same connection: once it is answered, every prefix was processed. */
  struct stream *echo = request(&(struct req){.path = "/test.Svc/Echo", .msg = "after"});
  wait_closed(echo);
  cr_assert_eq(echo->grpc_status, PS_GRPC_OK);
  cr_assert_eq(server.open_streams, MAX_STREAMS - 1);
  cr_assert_eq(server.buffered.used, 0, "prefixes announcing 4 MiB reserved %zu bytes", server.buffered.used);
  for (int i = 0; i < MAX_STREAMS - 1; i++) cr_assert_not(cl.st[i].closed);
  free(body);
  client_stop();
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(server.buffered.used, 0);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, budget_refuses_the_stream_over_it_and_releases_its_bytes) {
  server.max_msg = 1u << 20;
  server.max_buffered = 64u << 10;
  client_start(1u << 20);
  size_t len;
  /* Each stream sends 30000 bytes of a message announcing 1 MiB - 1, and never ends it. */
  uint8_t *body = partial_body((1u << 20) - 1, 30000, &len);
  for (int i = 0; i < 5; i++)
    request(&(struct req){.path = "/test.Svc/Echo", .body = body, .body_len = len, .hold_open = true});
  cr_assert(run_until(all_sent, NULL, 5000));
  /* Once everything sent was read, a small call on the same connection still gets in (the reserve for
   * small messages), and answers. */
  struct stream *echo = request(&(struct req){.path = "/test.Svc/Echo", .msg = "small"});
  wait_closed(echo);
  cr_assert_eq(echo->grpc_status, PS_GRPC_OK);
  int exhausted = 0, open = 0;
  for (int i = 0; i < 5; i++) {
    struct stream *st = &cl.st[i];
    if (st->closed) {
      exhausted++;
      cr_assert(st->trailers_only);
      cr_assert_eq(st->grpc_status, PS_GRPC_RESOURCE_EXHAUSTED);
      cr_assert(strstr(st->grpc_message, "--grpc-max-buffered 65536") != NULL, "%s", st->grpc_message);
      cr_assert_eq(st->close_error, NGHTTP2_NO_ERROR);
    } else {
      open++;
    }
  }
  /* 30000 bytes take at most 32768 reserved: two streams fit in 64 KiB, the others were refused. */
  cr_assert_eq(open, 2, "%d streams left open", open);
  cr_assert_eq(exhausted, 3);
  cr_assert_eq(refused("memory"), 3);
  cr_assert_leq(server.buffered.used, server.buffered.limit);
  cr_assert_geq(server.buffered.used, 2 * 30000);
  cr_assert_eq(ps_metrics_get("prescale_grpc_buffered_bytes", ""), (double)server.buffered.used);
  cr_assert_eq(metric("method=\"unknown\",code=\"RESOURCE_EXHAUSTED\""), 3);
  /* The client goes away: every byte comes back. */
  free(body);
  client_stop();
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(server.buffered.used, 0);
  cr_assert_eq(ps_metrics_get("prescale_grpc_buffered_bytes", ""), 0);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, complete_message_without_end_stream_is_counted_until_dispatch) {
  server.max_msg = 1u << 20;
  client_start(1u << 20);
  static char big[100000];
  struct ps_buf whole = framed(big, sizeof big);
  /* The whole message, split over DATA frames, but no END_STREAM: held, and counted. */
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo",
                                            .body = (uint8_t *)whole.data,
                                            .body_len = whole.len,
                                            .chunk = 10000,
                                            .hold_open = true});
  buffered_at_least = sizeof big;
  cr_assert(run_until(buffered_reached, NULL, 5000));
  cr_assert_leq(server.buffered.used, 2 * sizeof big);
  cr_assert_eq(d.dispatched, 0);
  /* END_STREAM: dispatched, answered, and its bytes are back. */
  st->hold_open = false;
  nghttp2_session_resume_data(cl.peer.s, st->id);
  client_flush();
  wait_closed(st);
  cr_assert_eq(st->grpc_status, PS_GRPC_OK);
  cr_assert_eq(d.dispatched, 1);
  cr_assert_eq(server.buffered.used, 0);
  ps_buf_free(&whole);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, request_timeout_ends_an_incomplete_request_with_deadline_exceeded) {
  server.request_timeout_ms = 100;
  server.max_msg = 1u << 20;
  client_start(1u << 20);
  size_t len;
  uint8_t *body = partial_body(50000, 20000, &len);
  uint64_t t0 = uv_now(&loop);
  /* No grpc-timeout; one longer than the limit; one shorter (the client's deadline comes first). */
  struct stream *a =
      request(&(struct req){.path = "/test.Svc/Echo", .body = body, .body_len = len, .hold_open = true});
  struct stream *b = request(&(struct req){
      .path = "/test.Svc/Echo", .timeout = "1M", .body = body, .body_len = len, .hold_open = true});
  struct stream *c = request(&(struct req){
      .path = "/test.Svc/Echo", .timeout = "30m", .body = body, .body_len = len, .hold_open = true});
  /* A server-streaming call whose request is complete is not timed: it outlives the limit. */
  struct stream *held = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  wait_closed(a);
  wait_closed(b);
  wait_closed(c);
  cr_assert_geq(uv_now(&loop) - t0, 90, "ended before the request timeout");
  for (int i = 0; i < 2; i++) {
    struct stream *st = i == 0 ? a : b;
    cr_assert(st->trailers_only);
    cr_assert_eq(st->grpc_status, PS_GRPC_DEADLINE_EXCEEDED);
    cr_assert(strstr(st->grpc_message, "within 100 ms of its headers (--grpc-request-timeout)") != NULL, "%s",
              st->grpc_message);
    cr_assert_eq(st->close_error, NGHTTP2_NO_ERROR);
  }
  cr_assert_eq(c->grpc_status, PS_GRPC_DEADLINE_EXCEEDED);
  cr_assert(strstr(c->grpc_message, "grpc-timeout 30m") != NULL, "%s", c->grpc_message);
  cr_assert_eq(refused("request_timeout"), 2);
  cr_assert_eq(server.buffered.used, 0, "the timed-out requests' bytes are back");
  cr_assert_eq(d.dispatched, 1);
  /* Well past the limit, the held call is still open (a bounded wait for what must not happen). */
  cr_assert_not(run_until(stream_closed, held, 300), "the request timeout ended a dispatched call");
  cr_assert_eq(d.cancelled, 0);
  free(body);
  client_stop();
  cr_assert(run_until(one_cancelled, NULL, 5000));
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, request_timeout_holds_for_a_request_that_ends_in_time) {
  server.request_timeout_ms = 200;
  client_start(65535);
  /* grpc-timeout longer than the limit: once the request is complete, the client's deadline rules. */
  struct stream *st = request(&(struct req){.path = "/test.Svc/Hold", .timeout = "400m", .msg = "x"});
  uint64_t t0 = uv_now(&loop);
  wait_closed(st);
  cr_assert_geq(uv_now(&loop) - t0, 350, "the request limit cut a complete request");
  cr_assert_eq(st->grpc_status, PS_GRPC_DEADLINE_EXCEEDED);
  cr_assert(strstr(st->grpc_message, "grpc-timeout 400m") != NULL, "%s", st->grpc_message);
  cr_assert_eq(d.cancelled, 1);
  cr_assert(isnan(refused("request_timeout")), "no request was refused");
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

static bool buffered_empty(void *arg) { return server.buffered.used == 0; }

Test(h2_conn, client_reset_mid_upload_gives_the_bytes_back) {
  server.max_msg = 1u << 20;
  client_start(1u << 20);
  size_t len;
  uint8_t *body = partial_body((1u << 20) - 1, 50000, &len);
  struct stream *st =
      request(&(struct req){.path = "/test.Svc/Echo", .body = body, .body_len = len, .hold_open = true});
  buffered_at_least = 50000;
  cr_assert(run_until(buffered_reached, NULL, 5000));
  nghttp2_submit_rst_stream(cl.peer.s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
  client_flush();
  cr_assert(run_until(buffered_empty, NULL, 5000), "%zu bytes still counted", server.buffered.used);
  cr_assert_eq(server.open_conns, 1, "the connection stays");
  cr_assert_eq(ps_metrics_get("prescale_grpc_buffered_bytes", ""), 0);
  free(body);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* ---- connection ageing (--max-connection-age) ------------------------------------------------------- */

static double age_metric(const char *name) { return ps_metrics_get(name, ""); }
static bool client_eof(void *arg) { return cl.peer.eof; }

Test(h2_conn, the_age_jitter_stays_within_ten_percent) {
  /* A fixed random source: the ends of the range, its middle, and a sweep over it. */
  cr_assert_eq(ps_h2_age_jitter(1000, 0), 900);
  cr_assert_eq(ps_h2_age_jitter(1000, 1u << 31), 1000);
  cr_assert_geq(ps_h2_age_jitter(1000, UINT32_MAX), 1099);
  cr_assert_leq(ps_h2_age_jitter(1000, UINT32_MAX), 1100);
  const uint64_t ages[] = {1, 9, 10, 250, 1000, 30 * 60 * 1000, 24ull * 3600 * 1000};
  for (size_t i = 0; i < sizeof ages / sizeof ages[0]; i++) {
    uint64_t age = ages[i], lo = age - age / 10, hi = age + age / 10, prev = 0, min = UINT64_MAX, max = 0;
    for (uint64_t r = 0; r <= UINT32_MAX; r += (1u << 22) - 1) {
      uint64_t j = ps_h2_age_jitter(age, (uint32_t)r);
      cr_assert(j >= lo && j <= hi, "age %llu, random %llu: %llu", (unsigned long long)age,
                (unsigned long long)r, (unsigned long long)j);
      cr_assert_geq(j, prev, "not monotonic in the random draw");
      prev = j;
      min = j < min ? j : min;
      max = j > max ? j : max;
    }
    /* The whole range is used, so that connections opened together spread over +-10 %. */
    cr_assert_leq(min, lo + age / 100, "age %llu: lowest %llu", (unsigned long long)age,
                  (unsigned long long)min);
    cr_assert_geq(max + age / 100 + 1, hi, "age %llu: highest %llu", (unsigned long long)age,
                  (unsigned long long)max);
  }
  stop_server(); /* the suite's listener */
  PS_LOOP_END(&loop);
}

/* The GOAWAYs a raw client has read, in order: their last-stream-id and error code. */
static int raw_goaways(const struct raw *r, int32_t *last, uint32_t *code, int max) {
  const uint8_t *p = (const uint8_t *)r->in.data, *end = p + r->in.len;
  int n = 0;
  while (end - p >= 9) {
    size_t len = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
    if ((size_t)(end - p) < 9 + len) break;
    if (p[3] == NGHTTP2_GOAWAY && len >= 8 && n < max) {
      last[n] = (int32_t)(be32(p + 9) & 0x7fffffffu);
      code[n++] = be32(p + 13);
    }
    p += 9 + len;
  }
  return n;
}

static bool raw_pinged(void *arg) {
  size_t n;
  raw_read(arg);
  return raw_frame(arg, NGHTTP2_PING, false, &n) != NULL;
}

/* A raw client, so that the test sees every frame on the wire and acknowledges the PING itself (an
 * nghttp2 client with no stream open ignores what follows a GOAWAY). */
Test(h2_conn, an_aged_connection_gets_the_two_step_goaway_then_closes) {
  server.max_age_ms = 300;
  server.max_age_grace_ms = 10000;
  struct raw r;
  raw_connect(&r, true);
  uint64_t t0 = uv_now(&loop);
  cr_assert(run_until(raw_greeted, &r, 5000));
  cr_assert(run_until(raw_pinged, &r, 5000), "the connection never aged");
  /* Counted from the greeting, which came after t0: at least the age less its jitter. */
  cr_assert_geq(uv_now(&loop) - t0, 270, "aged before its time");
  /* Step one: GOAWAY(NO_ERROR, 2^31-1) and a PING, as in a shutdown (RFC 9113 6.8). */
  int32_t last[4];
  uint32_t code[4];
  cr_assert_eq(raw_goaways(&r, last, code, 4), 1, "the final GOAWAY came before the PING's ACK");
  cr_assert_eq(last[0], LAST_STREAM_MAX);
  cr_assert_eq(code[0], NGHTTP2_NO_ERROR);
  size_t n;
  const uint8_t *opaque = raw_frame(&r, NGHTTP2_PING, false, &n);
  cr_assert_eq(n, 8);
  uint8_t ack[17] = {0, 0, 8, NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0, 0, 0, 0};
  memcpy(ack + 9, opaque, 8);
  cr_assert_eq(send(r.fd, ack, sizeof ack, 0), (ssize_t)sizeof ack);
  /* Step two once the ACK is in: the final GOAWAY names the last stream processed (none: 0), and with
   * nothing open the connection closes, long before the grace. */
  cr_assert(run_until(raw_closed, &r, 5000), "the aged connection stayed open after the ACK");
  cr_assert_eq(raw_goaways(&r, last, code, 4), 2);
  cr_assert_eq(last[1], 0);
  cr_assert_eq(code[1], NGHTTP2_NO_ERROR);
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(server.aged, 1);
  cr_assert_eq(server.age_cut, 0);
  cr_assert_eq(age_metric("prescale_grpc_connections_aged_total"), 1);
  cr_assert_eq(age_metric("prescale_grpc_connections_age_cut_total"), 0);
  cr_assert_eq(age_metric("prescale_grpc_connections_opened_total"), 1);
  cr_assert_eq(server.idle_closed, 0, "closed by the idle timeout, not by its age");
  raw_free(&r);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, a_client_that_never_acknowledges_the_ping_is_closed_at_the_end_of_the_grace) {
  server.max_age_ms = 200;
  server.max_age_grace_ms = 300;
  struct raw r;
  raw_connect(&r, true);
  cr_assert(run_until(raw_pinged, &r, 5000), "the connection never aged");
  uint64_t t_aged = uv_now(&loop);
  cr_assert(run_until(raw_closed, &r, 5000), "a client that ignores the notice kept its connection");
  cr_assert_geq(uv_now(&loop) - t_aged, 250, "closed before the grace was over");
  int32_t last[4];
  uint32_t code[4];
  cr_assert_eq(raw_goaways(&r, last, code, 4), 2, "closed without the final GOAWAY");
  cr_assert_eq(last[1], 0);
  cr_assert_eq(code[1], NGHTTP2_NO_ERROR);
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(server.aged, 1);
  cr_assert_eq(server.age_cut, 1);
  raw_free(&r);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, a_call_in_flight_when_the_connection_ages_completes) {
  server.max_age_ms = 200;
  server.max_age_grace_ms = 10000;
  client_start(65535);
  struct stream *held = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  cr_assert(run_until(one_held, NULL, 5000));
  cr_assert(run_until(two_goaways, NULL, 5000), "a busy connection never aged");
  cr_assert_eq(cl.goaway_last[0], LAST_STREAM_MAX);
  cr_assert_eq(cl.goaway_last[1], held->id);
  /* The call goes on: the connection waits for it. */
  cr_assert_eq(server.open_conns, 1);
  cr_assert_not(held->closed);
  cr_assert_eq(d.cancelled, 0);
  finish_held(0);
  wait_closed(held);
  assert_done_ok(held);
  cr_assert_eq(held->close_error, NGHTTP2_NO_ERROR);
  /* Its last call done after the final GOAWAY, the connection closes, well inside the grace. */
  cr_assert(run_until(no_conns, NULL, 5000), "the aged connection stayed open after its last call");
  cr_assert_eq(d.cancelled, 0);
  cr_assert_eq(server.aged, 1);
  cr_assert_eq(server.age_cut, 0);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, a_watch_still_open_after_the_grace_is_cancelled_and_the_connection_closed) {
  server.max_age_ms = 200;
  server.max_age_grace_ms = 300;
  client_start(65535);
  /* A server stream that has sent one message and never ends, as a StreamIsActive watch. */
  struct stream *watch = request(&(struct req){.path = "/test.Svc/Hold", .msg = "send"});
  cr_assert(run_until(one_held, NULL, 5000));
  cr_assert(run_until(stream_has_data, watch, 5000));
  cr_assert(run_until(first_goaway, NULL, 5000), "the connection never aged");
  uint64_t t_aged = uv_now(&loop);
  cr_assert(run_until(two_goaways, NULL, 5000));
  cr_assert_eq(cl.goaway_last[1], watch->id, "the watch was accepted before the notice");
  cr_assert(run_until(no_conns, NULL, 5000), "the watch kept its aged connection past the grace");
  cr_assert_geq(uv_now(&loop) - t_aged, 250, "cut off before the grace was over");
  cr_assert(run_until(client_eof, NULL, 5000), "the client's socket was not closed");
  cr_assert_eq(d.cancelled, 1, "the watch was not cancelled");
  cr_assert_null(d.held[0]);
  cr_assert_not(watch->closed && watch->grpc_status == PS_GRPC_OK, "the watch ended as if it had finished");
  cr_assert_eq(server.aged, 1);
  cr_assert_eq(server.age_cut, 1);
  cr_assert_eq(age_metric("prescale_grpc_connections_age_cut_total"), 1);
  cr_assert_eq(metric("method=\"Hold\",code=\"CANCELLED\""), 1);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, age_zero_never_ages_a_connection) {
  server.max_age_ms = 0;
  server.max_age_grace_ms = 0;
  client_start(65535);
  struct stream *held = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  cr_assert(run_until(one_held, NULL, 5000));
  /* A bounded wait for what must not come: 0 is "never", not "at once" (nor after a grace of 0). */
  cr_assert_not(run_until(got_goaway, NULL, 500), "a connection with max age 0 was told to go away");
  finish_held(0);
  wait_closed(held);
  assert_done_ok(held);
  struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "still here"});
  wait_closed(st);
  cr_assert_eq(st->grpc_status, PS_GRPC_OK);
  cr_assert_eq(server.aged, 0);
  cr_assert_eq(server.open_conns, 1);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

Test(h2_conn, the_age_and_the_idle_timeout_share_one_timer) {
  /* Idle sooner than aged: the idle timeout closes it ("idle"), and the age never fires afterwards. */
  server.idle_timeout_ms = 200;
  server.max_age_ms = 5000;
  client_start(65535);
  cr_assert(run_until(got_goaway, NULL, 5000));
  cr_assert_str_eq(cl.goaway_debug, "idle");
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(server.idle_closed, 1);
  cr_assert_eq(server.aged, 0);
  client_stop();
  /* Aged sooner than idle, with calls coming and going (each re-arms the timer): the age still comes, and
   * the connection closes once the PING is acknowledged, not at the end of the grace. */
  server.idle_timeout_ms = 60000;
  server.max_age_ms = 400;
  server.max_age_grace_ms = 60000;
  client_start(65535);
  for (int i = 0; i < 3; i++) {
    struct stream *st = request(&(struct req){.path = "/test.Svc/Echo", .msg = "x"});
    wait_closed(st);
    cr_assert_eq(st->grpc_status, PS_GRPC_OK);
  }
  cr_assert(run_until(first_goaway, NULL, 5000), "calls that come and go postponed the age for ever");
  cr_assert_eq(cl.goaway_last[0], LAST_STREAM_MAX);
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert_eq(server.aged, 1);
  cr_assert_eq(server.age_cut, 0);
  cr_assert_eq(server.idle_closed, 1);
  client_stop();
  stop_server();
  PS_LOOP_END(&loop);
}

/* Whether /metrics, rendered now, has this sample line (name, labels and value). */
static bool scrape_has(const char *line) {
  struct ps_buf out;
  ps_buf_init(&out);
  cr_assert_eq(ps_metrics_render(&out), 0);
  char want[128];
  snprintf(want, sizeof want, "\n%s\n", line);
  bool found = strstr(out.data, want) != NULL;
  ps_buf_free(&out);
  return found;
}

static bool three_held(void *arg) { return d.nheld == 3; }

/* The connection, stream and buffered-bytes gauges are not set at every stream's start and end: a collect
 * hook sets them from the server's counts when /metrics is rendered. Scraped mid-load (three calls in
 * progress, one upload incomplete) and after each change, /metrics shows the counts of that moment, and
 * zeros once the last connection is gone (the hook is gone too: nothing sets them after). */
Test(h2_conn, the_gauges_show_the_server_counts_when_scraped_mid_load) {
  client_start(65535);
  struct stream *st[3];
  for (int i = 0; i < 3; i++) st[i] = request(&(struct req){.path = "/test.Svc/Hold", .msg = "x"});
  cr_assert(run_until(three_held, NULL, 5000));
  /* A fourth stream whose message is incomplete: its bytes are buffered, not dispatched. */
  size_t len;
  uint8_t *body = partial_body(1000, 600, &len);
  struct stream *upload =
      request(&(struct req){.path = "/test.Svc/Echo", .body = body, .body_len = len, .hold_open = true});
  buffered_at_least = 600;
  cr_assert(run_until(buffered_reached, NULL, 5000));
  char line[128];
  cr_assert(scrape_has("prescale_grpc_connections 1"));
  cr_assert(scrape_has("prescale_grpc_streams 4"));
  snprintf(line, sizeof line, "prescale_grpc_buffered_bytes %zu", server.buffered.used);
  cr_assert(scrape_has(line), "want %s", line);
  finish_held(0);
  wait_closed(st[0]);
  cr_assert(scrape_has("prescale_grpc_streams 3"));
  nghttp2_submit_rst_stream(cl.peer.s, NGHTTP2_FLAG_NONE, upload->id, NGHTTP2_CANCEL);
  client_flush();
  cr_assert(run_until(buffered_empty, NULL, 5000));
  cr_assert(scrape_has("prescale_grpc_streams 2"));
  cr_assert(scrape_has("prescale_grpc_buffered_bytes 0"));
  finish_held(1);
  finish_held(2);
  client_stop();
  cr_assert(run_until(no_conns, NULL, 5000));
  cr_assert(scrape_has("prescale_grpc_connections 0"));
  cr_assert(scrape_has("prescale_grpc_streams 0"));
  cr_assert(scrape_has("prescale_grpc_buffered_bytes 0"));
  free(body);
  stop_server();
  PS_LOOP_END(&loop);
}
