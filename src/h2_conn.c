/* gRPC server over h2c: one nghttp2 server session per connection, fed by net.c's on_read and writing
 * through ps_net_write. See PROTOCOL-HTTP2.md (grpc/grpc doc) for the request/response shapes.
 *
 * Lifetimes: a struct ps_call is created in on_begin_headers and freed only in on_stream_close (or when
 * the connection is destroyed). The connection itself is freed only from net.c's on_close, never from
 * inside an nghttp2 callback. Calls into nghttp2 never nest: code that runs inside a callback (the
 * dispatcher, cancel callbacks) may submit frames, and the flush runs when the outer recv/send returns. */
#include "h2_conn.h"

#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "log.h"
#include "metrics.h"

#define WRITE_BATCH (64u << 10) /* frames are gathered up to this size per ps_net_write */
/* The opaque data of the PING that follows the shutdown notice; its ACK starts the final GOAWAY. */
static const uint8_t drain_ping[8] = {'p', 's', 'd', 'r', 'a', 'i', 'n', '1'};

/* Where a connection is in a graceful shutdown (RFC 9113 6.8). */
enum goaway_state {
  GOAWAY_NONE,   /* serving */
  GOAWAY_NOTICE, /* GOAWAY(2^31-1) and the drain PING submitted; waiting for the PING's ACK */
  GOAWAY_FINAL,  /* GOAWAY with the real last stream id submitted: no new streams are processed */
};

/* A one-shot timer of a call (its grpc-timeout) or of a connection (preface, idle). Its memory is freed
 * in its close callback, which may run after the owner is gone, so the owner lets go with timer_release. */
struct owned_timer {
  uv_timer_t timer;
  void *owner; /* the struct ps_call or struct ps_h2_conn; NULL once released */
};

struct ps_h2_conn {
  struct ps_h2_server *srv;
  struct ps_list node;         /* in srv->conns, from conn_new until conn_destroy */
  struct owned_timer *timeout; /* the preface's, then the idle one (idle_again); NULL for memory */
  struct ps_net_conn *net;     /* NULL for a memory connection */
  struct ps_buf *mem_out;      /* a memory connection's output */
  nghttp2_session *session;
  struct ps_list calls; /* of ps_call.node: every live stream's call */
  struct ps_buf batch;  /* frames waiting for one ps_net_write */
  int in_session;       /* > 0 while inside nghttp2_session_mem_recv/mem_send */
  bool closed;          /* being destroyed: the session must not be touched */
  bool dead;            /* unusable session: close once what is queued is written */
  bool fatal;           /* nghttp2 returned a fatal error: do not even send */
  bool calm_down;       /* the client reset too many streams: GOAWAY once the recv returns */
  bool greeted;         /* the client's preface and first SETTINGS arrived */
  size_t busy;          /* calls dispatched whose stream is not closed yet */
  enum goaway_state goaway;
  double rst_tokens;
  uint64_t rst_last_ms;
};

struct ps_call {
  struct ps_h2_conn *conn;
  struct ps_list node; /* in conn->calls */
  int32_t stream_id;
  uint64_t start_ms;
  /* request headers, as received */
  char path[PS_H2_MAX_PATH + 1];
  const char *method; /* after the last '/' of path */
  char http_method[16];
  char content_type[64];
  char timeout_text[16];
  char encoding[32];
  bool content_type_ok, path_too_long, timeout_bad, headers_too_big, headers_done;
  size_t header_bytes;
  uint64_t timeout_ms; /* valid when timeout_text[0] and !timeout_bad */
  uint64_t deadline;
  uint64_t arrival_limit; /* loop time by which END_STREAM must have arrived (request_timeout_ms) */
  /* Fires at the earlier of arrival_limit (until END_STREAM) and deadline: one timer per call. */
  struct owned_timer *timer;
  /* request body */
  bool request_done; /* END_STREAM arrived */
  struct ps_grpc_reader reader;
  uint8_t *req; /* the one request message; owned */
  size_t req_len;
  size_t req_charged; /* bytes of req charged to srv->buffered */
  /* response */
  bool dispatched, ended, headers_sent, trailers_due, data_deferred, rst_after_end;
  int status;
  struct ps_buf message; /* percent-encoded grpc-message */
  struct ps_buf out;     /* framed response messages not yet given to nghttp2 */
  size_t out_off;
  ps_call_cancel_cb cancel_cb;
  void *cancel_arg;
};

static void flush(struct ps_h2_conn *c);
static void req_free(struct ps_call *call);
static void buffered_update(struct ps_h2_server *srv, size_t before);
static void busy_begin(struct ps_h2_conn *c);
static void busy_end(struct ps_h2_conn *c);

#define NV(n, v, vlen)                                                                                       \
  { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen), NGHTTP2_NV_FLAG_NONE }

/* ---- metrics and logs ----------------------------------------------------------------------- */

int ps_h2_metrics_declare(void) {
  int err = ps_metrics_declare("prescale_grpc_requests_total", PS_METRIC_COUNTER,
                               "gRPC calls ended, by method and status code.");
  if (err == 0)
    err = ps_metrics_declare("prescale_grpc_request_duration_seconds", PS_METRIC_HISTOGRAM,
                             "Time from request headers to the end of the call.");
  if (err == 0)
    err = ps_metrics_declare("prescale_grpc_connections", PS_METRIC_GAUGE, "Open gRPC connections.");
  if (err == 0) err = ps_metrics_declare("prescale_grpc_streams", PS_METRIC_GAUGE, "Open gRPC streams.");
  if (err == 0)
    err = ps_metrics_declare("prescale_grpc_buffered_bytes", PS_METRIC_GAUGE,
                             "Bytes of gRPC requests buffered until they are complete, on every connection.");
  if (err == 0)
    err = ps_metrics_declare("prescale_grpc_requests_refused_total", PS_METRIC_COUNTER,
                             "gRPC requests refused before dispatch: too_large (--grpc-max-msg), memory "
                             "(--grpc-max-buffered), request_timeout (--grpc-request-timeout).");
  return err;
}

static void count_refused(const char *reason) {
  char labels[64];
  snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
  ps_metrics_add("prescale_grpc_requests_refused_total", labels, 1);
}

static void update_gauges(const struct ps_h2_server *srv) {
  ps_metrics_set("prescale_grpc_connections", "", (double)srv->open_conns);
  ps_metrics_set("prescale_grpc_streams", "", (double)srv->open_streams);
  ps_metrics_set("prescale_grpc_buffered_bytes", "", (double)srv->buffered.used);
}

static const char *conn_peer(const struct ps_h2_conn *c) { return c->net ? ps_net_peer(c->net) : "mem"; }

/* Counts and logs the end of a call. The method label is the client's choice, so only a method the
 * dispatcher recognised (it answers UNIMPLEMENTED otherwise) becomes a label value. */
static void record_end(struct ps_call *call) {
  const char *code = ps_grpc_status_name(call->status);
  const char *method =
      call->dispatched && call->status != PS_GRPC_UNIMPLEMENTED && call->method ? call->method : "unknown";
  char esc[2 * PS_H2_MAX_PATH + 1];
  ps_metrics_escape_label(esc, sizeof esc, method);
  char labels[sizeof esc + 64];
  snprintf(labels, sizeof labels, "method=\"%s\",code=\"%s\"", esc, code);
  ps_metrics_add("prescale_grpc_requests_total", labels, 1);
  uint64_t ms = uv_now(call->conn->srv->loop) - call->start_ms;
  snprintf(labels, sizeof labels, "method=\"%s\"", esc);
  ps_metrics_observe("prescale_grpc_request_duration_seconds", labels, (double)ms / 1000.0);
  if (ps_log_enabled(PS_LOG_DEBUG)) {
    char dur[32];
    snprintf(dur, sizeof dur, "%" PRIu64, ms);
    ps_log(PS_LOG_DEBUG, "grpc call", "method", call->path[0] ? call->path : "?", "code", code, "duration_ms",
           dur, "peer", conn_peer(call->conn), NULL);
  }
}

/* ---- responses ------------------------------------------------------------------------------ */

/* Feeds framed response bytes to nghttp2; at the end, sends the trailers from inside this callback,
 * as nghttp2 requires for NGHTTP2_DATA_FLAG_NO_END_STREAM. */
static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
  struct ps_call *call = source->ptr;
  size_t avail = call->out.len - call->out_off;
  if (avail == 0 && !call->trailers_due) {
    call->data_deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t n = avail < length ? avail : length;
  if (n > 0) memcpy(buf, call->out.data + call->out_off, n);
  call->out_off += n;
  if (call->out_off == call->out.len) {
    ps_buf_reset(&call->out);
    call->out_off = 0;
  }
  if (call->out.len == 0 && call->trailers_due) {
    char st[4];
    int stlen = snprintf(st, sizeof st, "%d", call->status);
    nghttp2_nv tr[] = {NV("grpc-status", st, (size_t)stlen),
                       NV("grpc-message", call->message.data, call->message.len)};
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (nghttp2_submit_trailer(session, stream_id, tr, call->message.len > 0 ? 2 : 1) != 0)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return (ssize_t)n;
}

/* Ends the call for the dispatcher (ps_call_finish), the deadline, or an early error. Before any
 * message this is a Trailers-Only response (PROTOCOL-HTTP2.md): one HEADERS frame with END_STREAM. */
static void respond_end(struct ps_call *call, int http_status, int status, const char *message) {
  struct ps_h2_conn *c = call->conn;
  if (status < PS_GRPC_OK || status > PS_GRPC_UNAUTHENTICATED) status = PS_GRPC_UNKNOWN; /* not a gRPC code */
  call->ended = true;
  call->status = status;
  ps_buf_reset(&call->message);
  if (message != NULL && message[0] != '\0' && ps_grpc_message_encode(&call->message, message) != 0)
    ps_buf_reset(&call->message);
  record_end(call);
  if (c->closed) return;
  if (call->headers_sent) {
    call->trailers_due = true;
    if (call->data_deferred) {
      call->data_deferred = false;
      nghttp2_session_resume_data(c->session, call->stream_id);
    }
  } else {
    char hs[4], st[4];
    int hslen = snprintf(hs, sizeof hs, "%d", http_status);
    int stlen = snprintf(st, sizeof st, "%d", status);
    nghttp2_nv nva[] = {NV(":status", hs, (size_t)hslen), NV("content-type", "application/grpc", 16),
                        NV("grpc-accept-encoding", "identity", 8), NV("grpc-status", st, (size_t)stlen),
                        NV("grpc-message", call->message.data, call->message.len)};
    call->headers_sent = true;
    int rv = nghttp2_submit_response(c->session, call->stream_id, nva, call->message.len > 0 ? 5 : 4, NULL);
    if (rv != 0)
      ps_log(PS_LOG_DEBUG, "grpc response not submitted", "peer", conn_peer(c), "error", nghttp2_strerror(rv),
             NULL);
  }
  /* RFC 9113 8.1: a server that answers before the request is complete may ask the client to stop
   * sending with RST_STREAM(NO_ERROR) once the response is out (see on_frame_send). */
  if (!nghttp2_session_get_stream_remote_close(c->session, call->stream_id)) call->rst_after_end = true;
}

static void respond_errorf(struct ps_call *call, int http_status, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void respond_errorf(struct ps_call *call, int http_status, int status, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  respond_end(call, http_status, status, text);
  /* An answered request is never dispatched: its bytes go back now rather than when the stream closes. */
  size_t before = call->conn->srv->buffered.used;
  ps_grpc_reader_free(&call->reader);
  req_free(call);
  buffered_update(call->conn->srv, before);
}

/* ---- the call API --------------------------------------------------------------------------- */

int ps_call_send(struct ps_call *call, const uint8_t *msg, size_t len) {
  struct ps_h2_conn *c = call->conn;
  if (call->ended || c->closed || c->dead) return UV_EPIPE;
  size_t unsent = call->out.len - call->out_off;
  if (unsent > 0 && unsent + PS_GRPC_PREFIX_LEN + len > PS_H2_MAX_STREAM_PENDING) return UV_ENOBUFS;
  if (call->out_off > 0) {
    ps_buf_consume(&call->out, call->out_off);
    call->out_off = 0;
  }
  int err = ps_grpc_frame(&call->out, msg, len);
  if (err != 0) return err;
  if (!call->headers_sent) {
    nghttp2_nv nva[] = {NV(":status", "200", 3), NV("content-type", "application/grpc", 16),
                        NV("grpc-accept-encoding", "identity", 8)};
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = data_read_cb};
    int rv = nghttp2_submit_response(c->session, call->stream_id, nva, 3, &prd);
    if (rv != 0) return rv == NGHTTP2_ERR_NOMEM ? UV_ENOMEM : UV_EPIPE;
    call->headers_sent = true;
  } else if (call->data_deferred) {
    call->data_deferred = false;
    nghttp2_session_resume_data(c->session, call->stream_id);
  }
  flush(c);
  return 0;
}

void ps_call_finish(struct ps_call *call, int grpc_status, const char *message) {
  if (call->ended) return;
  respond_end(call, 200, grpc_status, message);
  flush(call->conn);
}

void ps_call_on_cancel(struct ps_call *call, ps_call_cancel_cb cb, void *arg) {
  call->cancel_cb = cb;
  call->cancel_arg = arg;
}

uint64_t ps_call_deadline(const struct ps_call *call) { return call->deadline; }
const char *ps_call_method(const struct ps_call *call) { return call->method ? call->method : ""; }

/* The call ended without ps_call_finish; tells the dispatcher, exactly once. */
static void cancel_call(struct ps_call *call, int status) {
  if (call->ended) return;
  call->ended = true;
  call->status = status;
  record_end(call);
  if (call->dispatched && call->cancel_cb != NULL) call->cancel_cb(call, call->cancel_arg);
}

/* ---- calls: lifecycle ----------------------------------------------------------------------- */

static void timer_closed_cb(uv_handle_t *h) { free(h->data); }

/* Starts a one-shot timer for owner; NULL when out of memory. */
static struct owned_timer *timer_start(uv_loop_t *loop, void *owner, uv_timer_cb cb, uint64_t ms) {
  struct owned_timer *t = malloc(sizeof *t);
  if (t == NULL || uv_timer_init(loop, &t->timer) != 0) {
    free(t);
    return NULL;
  }
  t->owner = owner;
  t->timer.data = t;
  uv_timer_start(&t->timer, cb, ms, 0);
  return t;
}

/* The owner lets go of its timer (NULL: none): it stops, and its memory goes in timer_closed_cb. */
static void timer_release(struct owned_timer *t) {
  if (t == NULL) return;
  t->owner = NULL;
  uv_close((uv_handle_t *)&t->timer, timer_closed_cb);
}

static void *timer_owner(const uv_timer_t *t) { return ((const struct owned_timer *)t->data)->owner; }

/* ---- request memory ------------------------------------------------------------------------- */

/* Gives freed heap pages back to the system. Freed request buffers otherwise stay in glibc's heap: after
 * an attack the process would keep the memory it made us allocate (issue 9 saw 1 GB stay). */
static void trim_now(struct ps_h2_server *srv) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  srv->trim_freed = 0;
  srv->trim_last_ms = uv_now(srv->loop);
}

static void trim_cb(uv_timer_t *t) {
  struct ps_h2_server *srv = timer_owner(t);
  if (srv == NULL) return;
  timer_release(srv->trim_timer);
  srv->trim_timer = NULL;
  trim_now(srv);
}

/* Called with srv->buffered.used as it was before something may have been freed: counts what was
 * released for the next trim (at most once per PS_H2_TRIM_INTERVAL_MS, from a timer, so that the loop
 * never trims in a hot path), and keeps the gauge current. */
static void buffered_update(struct ps_h2_server *srv, size_t before) {
  size_t now_used = srv->buffered.used;
  if (now_used == before) return;
  ps_metrics_set("prescale_grpc_buffered_bytes", "", (double)now_used);
  if (now_used > before) return;
  srv->trim_freed += before - now_used;
  if (srv->trim_freed < PS_H2_TRIM_AFTER || srv->trim_timer != NULL) return;
  uint64_t now = uv_now(srv->loop), next = srv->trim_last_ms + PS_H2_TRIM_INTERVAL_MS;
  /* NULL when out of memory: the next release tries again. */
  srv->trim_timer = timer_start(srv->loop, srv, trim_cb, next > now ? next - now : 0);
}

/* The request message is no longer needed (dispatched, refused or cancelled): its bytes go back. */
static void req_free(struct ps_call *call) {
  free(call->req);
  call->req = NULL;
  ps_grpc_budget_release(&call->conn->srv->buffered, call->req_charged);
  call->req_charged = 0;
}

/* The earlier of the request's arrival limit and the client's deadline has come. A request still
 * incomplete at its arrival limit gets DEADLINE_EXCEEDED: statuscodes.md defines it as "the deadline
 * expired before the operation could complete", and lists it for a deadline that expires on the server;
 * CANCELLED is "typically by the caller", which would mislead the client about who ended the call. */
static void call_timer_cb(uv_timer_t *t) {
  struct ps_call *call = timer_owner(t);
  if (call == NULL || call->ended) return;
  if (!call->request_done && (call->deadline == 0 || call->arrival_limit < call->deadline)) {
    struct ps_h2_server *srv = call->conn->srv;
    uint64_t ms = srv->request_timeout_ms ? srv->request_timeout_ms : PS_H2_REQUEST_TIMEOUT_MS;
    count_refused("request_timeout");
    respond_errorf(call, 200, PS_GRPC_DEADLINE_EXCEEDED,
                   "request not received whole within %" PRIu64 " ms of its headers (--grpc-request-timeout)",
                   ms);
  } else {
    respond_errorf(call, 200, PS_GRPC_DEADLINE_EXCEEDED, "deadline exceeded (grpc-timeout %s)",
                   call->timeout_text);
    if (call->dispatched && call->cancel_cb != NULL) call->cancel_cb(call, call->cancel_arg);
  }
  flush(call->conn);
}

static void call_free(struct ps_call *call) {
  struct ps_h2_conn *c = call->conn;
  size_t before = c->srv->buffered.used;
  if (call->dispatched) busy_end(c);
  ps_list_remove(&call->node);
  timer_release(call->timer);
  ps_grpc_reader_free(&call->reader);
  req_free(call);
  buffered_update(c->srv, before);
  ps_buf_free(&call->message);
  ps_buf_free(&call->out);
  c->srv->open_streams--;
  update_gauges(c->srv);
  free(call);
}

/* The request is complete (END_STREAM): a unary or server-streaming call carries exactly one message,
 * and answers to 0 or 2+ follow grpc-java ("missing/too many request messages"). */
static void end_of_request(struct ps_call *call) {
  struct ps_h2_conn *c = call->conn;
  if (call->ended) return;
  call->request_done = true;
  if (call->timer != NULL && call->deadline == 0) {
    timer_release(call->timer); /* the arrival limit no longer applies: a stream may live on */
    call->timer = NULL;
  } else if (call->timer != NULL && call->arrival_limit < call->deadline) {
    uint64_t now = uv_now(c->srv->loop);
    uv_timer_start(&call->timer->timer, call_timer_cb, call->deadline > now ? call->deadline - now : 0, 0);
  }
  if (ps_grpc_reader_partial(&call->reader)) {
    respond_errorf(call, 200, PS_GRPC_INTERNAL,
                   "incomplete request message (%" PRIu32 " of %" PRIu32 " bytes)", call->reader.msg_have,
                   call->reader.msg_len);
    return;
  }
  if (call->req == NULL) {
    respond_errorf(call, 200, PS_GRPC_INTERNAL, "missing request message");
    return;
  }
  call->dispatched = true;
  busy_begin(c);
  uint8_t *req = call->req; /* freed after dispatch: the dispatcher copies what it keeps */
  size_t charged = call->req_charged;
  call->req = NULL;
  call->req_charged = 0;
  struct ps_h2_server *srv = c->srv; /* the call may end inside dispatch; the server stays */
  srv->dispatch(call, call->path, req, call->req_len, srv->dispatch_arg);
  free(req);
  size_t before = srv->buffered.used;
  ps_grpc_budget_release(&srv->buffered, charged);
  buffered_update(srv, before);
}

/* Checks the request headers once they are all in (PROTOCOL-HTTP2.md, "Requests"). Non-POST follows
 * grpc-java (405), a foreign content-type grpc-go (415, INVALID_ARGUMENT). */
static void headers_done(struct ps_call *call) {
  struct ps_h2_conn *c = call->conn;
  call->headers_done = true;
  if (call->headers_too_big) {
    respond_errorf(call, 200, PS_GRPC_RESOURCE_EXHAUSTED, "request headers exceed %u bytes",
                   PS_H2_MAX_HEADER_LIST);
  } else if (strcmp(call->http_method, "POST") != 0) {
    respond_errorf(call, 405, PS_GRPC_INTERNAL, "method \"%s\" is not supported; gRPC uses POST",
                   call->http_method);
  } else if (!call->content_type_ok) {
    respond_errorf(call, 415, PS_GRPC_INVALID_ARGUMENT, "invalid gRPC request content-type \"%s\"",
                   call->content_type);
  } else if (call->path_too_long) {
    respond_errorf(call, 200, PS_GRPC_UNIMPLEMENTED, "method path longer than %d bytes", PS_H2_MAX_PATH);
  } else if (call->timeout_bad) {
    respond_errorf(call, 200, PS_GRPC_INVALID_ARGUMENT, "invalid grpc-timeout \"%s\"", call->timeout_text);
  } else {
    /* The request must arrive whole within request_timeout_ms whatever the client's grpc-timeout says:
     * a client without one would otherwise hold the stream and its buffer forever. */
    uint64_t now = uv_now(c->srv->loop);
    uint64_t ms = c->srv->request_timeout_ms ? c->srv->request_timeout_ms : PS_H2_REQUEST_TIMEOUT_MS;
    call->arrival_limit = now + ms;
    if (call->timeout_text[0] != '\0') {
      call->deadline = now + call->timeout_ms;
      if (call->timeout_ms <= ms) ms = call->timeout_ms;
    }
    call->timer = timer_start(c->srv->loop, call, call_timer_cb, ms);
    if (call->timer == NULL) respond_errorf(call, 200, PS_GRPC_RESOURCE_EXHAUSTED, "out of memory");
  }
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct ps_h2_conn *c = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  struct ps_call *call = calloc(1, sizeof *call);
  if (call == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
  call->conn = c;
  call->stream_id = frame->hd.stream_id;
  call->start_ms = uv_now(c->srv->loop);
  ps_grpc_reader_init(&call->reader, c->srv->max_msg ? c->srv->max_msg : PS_GRPC_MAX_MSG_DEFAULT);
  call->reader.budget = &c->srv->buffered;
  ps_buf_init(&call->message);
  ps_buf_init(&call->out);
  ps_list_insert_head(&c->calls, &call->node);
  c->srv->open_streams++;
  update_gauges(c->srv);
  nghttp2_session_set_stream_user_data(session, call->stream_id, call);
  return 0;
}

static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t len) {
  if (len >= cap) len = cap - 1; /* only for messages: a truncated echo of the offending value */
  memcpy(dst, v, len);
  dst[len] = '\0';
}

#define NAME_IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
  struct ps_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (call == NULL || call->headers_done || call->headers_too_big) return 0; /* trailers are ignored */
  /* RFC 9113 6.5.2: the size of a header list counts each field as name + value + 32. */
  call->header_bytes += namelen + valuelen + 32;
  if (call->header_bytes > PS_H2_MAX_HEADER_LIST) {
    call->headers_too_big = true;
    return 0;
  }
  /* nghttp2 has already checked the pseudo-headers and "te" (RFC 9113 8.2); names are lowercase. */
  if (NAME_IS(":method")) {
    copy_value(call->http_method, sizeof call->http_method, value, valuelen);
  } else if (NAME_IS(":path")) {
    if (valuelen > PS_H2_MAX_PATH) {
      call->path_too_long = true;
    } else {
      memcpy(call->path, value, valuelen);
      call->path[valuelen] = '\0';
      const char *slash = strrchr(call->path, '/');
      call->method = slash ? slash + 1 : call->path;
    }
  } else if (NAME_IS("content-type")) {
    call->content_type_ok = ps_grpc_content_type_ok((const char *)value, valuelen);
    copy_value(call->content_type, sizeof call->content_type, value, valuelen);
  } else if (NAME_IS("grpc-timeout")) {
    copy_value(call->timeout_text, sizeof call->timeout_text, value, valuelen);
    if (ps_grpc_timeout_parse((const char *)value, valuelen, &call->timeout_ms) != 0)
      call->timeout_bad = true;
  } else if (NAME_IS("grpc-encoding")) {
    copy_value(call->encoding, sizeof call->encoding, value, valuelen);
  }
  return 0;
}

/* A complete request message. Unary and server-streaming requests carry one; a second one is refused
 * at once instead of being buffered. */
static int on_message(void *arg, const uint8_t *msg, size_t len) {
  struct ps_call *call = arg;
  if (call->req != NULL) return PS_GRPC_ERR_TOO_MANY_MESSAGES;
  struct ps_grpc_budget *budget = &call->conn->srv->buffered;
  size_t charged;
  uint8_t *req = ps_grpc_reader_take(&call->reader, &charged); /* assembled: kept as it is */
  if (req == NULL) {
    /* In nghttp2's input, valid only now: copied, and counted until END_STREAM dispatches it. */
    if (ps_grpc_budget_charge(budget, len, len) != 0) return UV_ENOBUFS;
    charged = len;
    req = malloc(len ? len : 1);
    if (req == NULL) {
      ps_grpc_budget_release(budget, len);
      return UV_ENOMEM;
    }
    memcpy(req, msg, len);
  }
  call->req = req;
  call->req_len = len;
  call->req_charged = charged;
  return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data) {
  struct ps_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
  if (call == NULL || call->ended || !call->headers_done) return 0; /* flow control is still credited */
  struct ps_h2_server *srv = call->conn->srv;
  size_t before = srv->buffered.used;
  int err = ps_grpc_reader_feed(&call->reader, data, len, on_message, call);
  switch (err) {
  case 0: break;
  case UV_E2BIG:
    count_refused("too_large");
    respond_errorf(call, 200, PS_GRPC_RESOURCE_EXHAUSTED,
                   "received message larger than max (%" PRIu32 " vs. %zu)", call->reader.msg_len,
                   call->reader.max_msg);
    break;
  case UV_ENOBUFS:
    /* Over the budget shared by every connection: this stream's bytes are released (respond_errorf
     * frees its reader) and the others go on. RESOURCE_EXHAUSTED: "some resource has been exhausted"
     * (statuscodes.md); the client may retry once the uploads in progress are done. */
    count_refused("memory");
    respond_errorf(call, 200, PS_GRPC_RESOURCE_EXHAUSTED,
                   "server is out of memory for requests: %zu bytes buffered (--grpc-max-buffered %zu); "
                   "retry later",
                   srv->buffered.used, srv->buffered.limit);
    break;
  case UV_ENOTSUP:
    respond_errorf(call, 200, PS_GRPC_UNIMPLEMENTED,
                   "compressed messages are not supported (grpc-encoding \"%s\"); use identity",
                   call->encoding[0] ? call->encoding : "identity");
    break;
  case UV_EPROTO:
    respond_errorf(call, 200, PS_GRPC_INTERNAL, "invalid message compression flag %u",
                   call->reader.prefix[0]);
    break;
  case PS_GRPC_ERR_TOO_MANY_MESSAGES:
    respond_errorf(call, 200, PS_GRPC_INTERNAL, "too many request messages");
    break;
  default: respond_errorf(call, 200, PS_GRPC_RESOURCE_EXHAUSTED, "out of memory"); break;
  }
  buffered_update(srv, before);
  return 0;
}

static void rst_budget(struct ps_h2_conn *c) {
  uint64_t now = uv_now(c->srv->loop);
  c->rst_tokens += (double)(now - c->rst_last_ms) * PS_H2_RST_PER_SEC / 1000.0;
  if (c->rst_tokens > PS_H2_RST_BURST) c->rst_tokens = PS_H2_RST_BURST;
  c->rst_last_ms = now;
  if (c->rst_tokens >= 1) {
    c->rst_tokens -= 1;
    return;
  }
  if (!c->calm_down)
    ps_log(PS_LOG_WARN, "client resets streams too fast; closing its connection", "peer", conn_peer(c), NULL);
  c->calm_down = true;
}

static void conn_timer_release(struct ps_h2_conn *c) {
  timer_release(c->timeout);
  c->timeout = NULL;
}

static void greeted(struct ps_h2_conn *c);

/* Submits the final GOAWAY(NO_ERROR) naming the last stream whose request headers were processed
 * (RFC 9113 6.8); nghttp2 then ignores HEADERS of new streams, and once every stream left is done,
 * want_read and want_write turn false and flush closes the connection. The frame goes out at the next
 * flush (callers inside nghttp2 callbacks leave that to the outer recv). */
static void goaway_final(struct ps_h2_conn *c) {
  if (c->goaway == GOAWAY_FINAL) return;
  c->goaway = GOAWAY_FINAL;
  int rv =
      nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                            nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR, NULL, 0);
  if (rv != 0) {
    /* Out of memory: without a GOAWAY the client cannot tell what was processed; close instead. */
    ps_log(PS_LOG_DEBUG, "http2 goaway not submitted", "peer", conn_peer(c), "error", nghttp2_strerror(rv),
           NULL);
    c->dead = true;
  }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct ps_h2_conn *c = user_data;
  /* nghttp2 delivers the client's first SETTINGS only after a valid preface (RFC 9113 3.4). */
  if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) greeted(c);
  if (frame->hd.type == NGHTTP2_RST_STREAM) {
    rst_budget(c);
    return 0;
  }
  if (frame->hd.type == NGHTTP2_PING) {
    /* The client has now seen the shutdown notice, and every stream it opened before that has
     * arrived: the final GOAWAY can name the true last stream (nghttp2_submit_shutdown_notice). */
    if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && c->goaway == GOAWAY_NOTICE &&
        memcmp(frame->ping.opaque_data, drain_ping, sizeof drain_ping) == 0)
      goaway_final(c);
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  struct ps_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (call == NULL) return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !call->headers_done) headers_done(call);
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) end_of_request(call);
  return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
  struct ps_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (call != NULL && call->rst_after_end &&
      !nghttp2_session_get_stream_remote_close(session, call->stream_id))
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_NO_ERROR);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
  struct ps_h2_conn *c = user_data;
  if (c->closed) return 0;
  struct ps_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
  if (call == NULL) return 0;
  cancel_call(call, PS_GRPC_CANCELLED); /* no-op when the call already ended */
  call_free(call);
  return 0;
}

/* ---- connection lifecycle ------------------------------------------------------------------- */

static nghttp2_session_callbacks *make_callbacks(void) {
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return NULL;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  return cbs;
}

static struct ps_h2_conn *conn_new(struct ps_h2_server *srv, struct ps_net_conn *net,
                                   struct ps_buf *mem_out) {
  ps_h2_metrics_declare();
  struct ps_h2_conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->srv = srv;
  srv->buffered.limit = srv->max_buffered ? srv->max_buffered : PS_H2_MAX_BUFFERED_DEFAULT;
  srv->buffered.small = PS_H2_SMALL_REQUEST;
  srv->buffered.reserve = PS_H2_BUFFER_RESERVE;
  c->net = net;
  c->mem_out = mem_out;
  c->rst_tokens = PS_H2_RST_BURST;
  c->rst_last_ms = uv_now(srv->loop);
  ps_buf_init(&c->batch);
  nghttp2_session_callbacks *cbs = make_callbacks();
  if (cbs == NULL || nghttp2_session_server_new(&c->session, cbs, c) != 0) {
    if (cbs != NULL) nghttp2_session_callbacks_del(cbs);
    free(c);
    return NULL;
  }
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, PS_H2_MAX_CONCURRENT_STREAMS},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, PS_H2_INITIAL_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, PS_H2_MAX_HEADER_LIST},
  };
  /* The connection window starts at 64 KiB (RFC 9113 6.9.2) whatever SETTINGS say; widen it so that
   * several streams can upload at once without waiting for WINDOW_UPDATEs. */
  if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
      nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, PS_H2_CONN_WINDOW) != 0) {
    nghttp2_session_del(c->session);
    free(c);
    return NULL;
  }
  ps_list_insert_head(&srv->conns, &c->node);
  srv->open_conns++;
  update_gauges(srv);
  /* Accepted while shutting down (it was in the accept queue): nothing of it has been processed, so the
   * final GOAWAY names stream 0 and the client goes elsewhere at once. Sent after our SETTINGS. */
  if (srv->draining) goaway_final(c);
  return c;
}

static void conn_destroy(struct ps_h2_conn *c) {
  c->closed = true;
  conn_timer_release(c);
  /* Calls still open end here as CANCELLED. A cancel callback may finish other calls of this
   * connection: respond_end sees `closed` and only records them. */
  ps_list_foreach(n, &c->calls) cancel_call(ps_list_entry(n, struct ps_call, node), PS_GRPC_CANCELLED);
  nghttp2_session_del(c->session);
  for (struct ps_list *n; (n = ps_list_first(&c->calls)) != NULL;)
    call_free(ps_list_entry(n, struct ps_call, node));
  ps_buf_free(&c->batch);
  struct ps_h2_server *srv = c->srv;
  ps_list_remove(&c->node);
  srv->open_conns--;
  update_gauges(srv);
  free(c);
  /* The trim timer never outlives the connections (so it never holds a loop that should end): the last
   * one to go trims now what is due. */
  if (srv->open_conns == 0 && srv->trim_timer != NULL) {
    timer_release(srv->trim_timer);
    srv->trim_timer = NULL;
    trim_now(srv);
  }
  if (srv->draining && srv->open_conns == 0 && srv->on_idle != NULL) srv->on_idle(srv->idle_arg);
}

static void write_batch(struct ps_h2_conn *c) {
  if (c->batch.len == 0) return;
  int err = c->net ? ps_net_write(c->net, (const uint8_t *)c->batch.data, c->batch.len)
                   : ps_buf_append(c->mem_out, c->batch.data, c->batch.len);
  ps_buf_reset(&c->batch);
  if (err != 0) c->dead = true;
}

/* Moves frames from nghttp2 to the socket while it keeps up. Reading pauses in net.c when too much is
 * queued, and on_drain calls back here, so a client that does not read stalls only itself. */
static void flush(struct ps_h2_conn *c) {
  if (c->closed || c->in_session > 0) return; /* the outer recv/send loop will pick the frames up */
  c->in_session++;
  while (!c->fatal && !c->dead && !(c->net && ps_net_paused(c->net))) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(c->session, &p);
    if (n < 0) {
      ps_log(PS_LOG_DEBUG, "http2 send failed", "peer", conn_peer(c), "error", nghttp2_strerror((int)n),
             NULL);
      c->dead = c->fatal = true;
      break;
    }
    if (n == 0) break;
    if (ps_buf_append(&c->batch, p, (size_t)n) != 0) c->dead = true;
    if (c->batch.len >= WRITE_BATCH) write_batch(c);
  }
  write_batch(c);
  c->in_session--;
  if (!c->dead && !c->fatal && !nghttp2_session_want_read(c->session) &&
      !nghttp2_session_want_write(c->session))
    c->dead = true;                                    /* GOAWAY exchanged and every stream done */
  if (c->dead && c->net != NULL) ps_net_close(c->net); /* asynchronous: on_close frees us later */
}

static int conn_recv(struct ps_h2_conn *c, const uint8_t *data, size_t len) {
  if (c->dead || c->closed) return UV_EPIPE;
  c->in_session++;
  ssize_t n = nghttp2_session_mem_recv(c->session, data, len);
  c->in_session--;
  if (n < 0) {
    /* Every error mem_recv returns is fatal (bad preface, flood, out of memory): protocol errors it
     * can answer, it answers itself with GOAWAY and keeps going until want_read turns false. */
    ps_log(PS_LOG_DEBUG, "http2 session failed", "peer", conn_peer(c), "error", nghttp2_strerror((int)n),
           NULL);
    c->fatal = true;
    c->dead = true;
  } else if (c->calm_down) {
    nghttp2_session_terminate_session(c->session, NGHTTP2_ENHANCE_YOUR_CALM);
  }
  flush(c);
  return c->dead ? UV_EPROTO : 0;
}

/* ---- net.c protocol ------------------------------------------------------------------------- */

static void preface_timeout_cb(uv_timer_t *t) {
  struct ps_h2_conn *c = timer_owner(t);
  if (c == NULL) return;
  ps_log(PS_LOG_INFO, "no HTTP/2 preface in time; closing the connection", "peer", conn_peer(c), NULL);
  conn_timer_release(c);
  c->dead = true;
  ps_net_close(c->net); /* asynchronous: on_close frees the connection later */
}

/* ---- connection slots: the idle timeout and eviction ------------------------------------------- */

static uint64_t idle_timeout_ms(const struct ps_h2_server *srv) {
  return srv->idle_timeout_ms ? srv->idle_timeout_ms : PS_H2_IDLE_TIMEOUT_MS;
}

/* Writes GOAWAY(NO_ERROR) naming the last stream processed, with `why` as its debug data, before the
 * connection is closed under a client that did nothing wrong (RFC 9113 9.1: a server may close an idle
 * connection, and SHOULD send GOAWAY first so that the client knows nothing of it was lost). NO_ERROR, not
 * ENHANCE_YOUR_CALM: that code says the peer generates excessive load (RFC 9113 7), which an idle
 * connection does not, and the connection closed may well be KEDA's own, which must simply reconnect
 * (grpc-go treats NO_ERROR as a graceful close and redials on its next RPC). A connection error, where
 * RFC 9113 5.4.1 wants GOAWAY with the error's code, is not what this is. The caller closes the socket. */
static void goodbye(struct ps_h2_conn *c, const char *why) {
  if (c->closed || c->dead || c->fatal) return;
  if (c->goaway != GOAWAY_FINAL) {
    c->goaway = GOAWAY_FINAL;
    nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->session),
                          NGHTTP2_NO_ERROR, (const uint8_t *)why, strlen(why));
  }
  flush(c);
}

static void idle_timeout_cb(uv_timer_t *t) {
  struct ps_h2_conn *c = timer_owner(t);
  if (c == NULL || c->closed) return;
  ps_log(PS_LOG_DEBUG, "gRPC connection idle; closing it", "peer", conn_peer(c), NULL);
  c->srv->idle_closed++;
  goodbye(c, "idle");
  c->dead = true;
  ps_net_close(c->net); /* flushes the GOAWAY, then FIN; on_close frees the connection later */
}

/* The connection has no call in progress from now on: the idle timeout starts over, and the connection
 * becomes the listener's most recently idle one (evicted last). As grpc-go's MaxConnectionIdle counts it,
 * idleness starts when the connection is established or its last call ends. Nothing else restarts it: not
 * PINGs, not bytes of a request that never completes, so a client that trickles bytes is closed on time. */
static void idle_again(struct ps_h2_conn *c) {
  if (c->closed || c->net == NULL || c->timeout == NULL || !c->greeted) return;
  uv_timer_start(&c->timeout->timer, idle_timeout_cb, idle_timeout_ms(c->srv), 0);
  ps_net_set_idle(c->net, true);
}

/* The preface and SETTINGS arrived: the preface timeout gives way to the idle timeout. */
static void greeted(struct ps_h2_conn *c) {
  if (c->greeted) return;
  c->greeted = true;
  if (c->busy == 0) idle_again(c);
}

/* A call was dispatched: the connection is busy (not idle, never evicted) until that call's stream closes.
 * Streams still receiving their request do not count: they are not work yet, and a client that opens
 * them and never finishes them must not keep its connection. */
static void busy_begin(struct ps_h2_conn *c) {
  if (c->busy++ > 0 || c->net == NULL) return;
  if (c->timeout != NULL) uv_timer_stop(&c->timeout->timer);
  ps_net_set_idle(c->net, false);
}

static void busy_end(struct ps_h2_conn *c) {
  if (--c->busy == 0) idle_again(c);
}

static void *net_on_open(struct ps_net_conn *net, void *arg) {
  struct ps_h2_conn *c = conn_new(arg, net, NULL);
  if (c == NULL) return NULL;
  struct ps_h2_server *srv = arg;
  c->timeout = timer_start(srv->loop, c, preface_timeout_cb,
                           srv->preface_timeout_ms ? srv->preface_timeout_ms : PS_H2_PREFACE_TIMEOUT_MS);
  if (c->timeout == NULL) {
    conn_destroy(c);
    return NULL;
  }
  /* Evictable from the start: a client that has not even greeted holds a slot for nothing. */
  ps_net_set_idle(net, true);
  flush(c); /* our SETTINGS go first (RFC 9113 3.4: the server preface) */
  return c;
}

/* At the connection limit, net.c closes this idle connection for a new one right after this returns. */
static void net_on_evict(void *state) {
  struct ps_h2_conn *c = state;
  c->srv->evicted++;
  goodbye(c, "evicted: connection limit");
  c->dead = true;
}

static int net_on_read(void *state, const uint8_t *data, size_t len) { return conn_recv(state, data, len); }
static void net_on_drain(void *state) { flush(state); }
static void net_on_close(void *state) { conn_destroy(state); }

const struct ps_net_proto ps_h2_net_proto = {.on_open = net_on_open,
                                             .on_read = net_on_read,
                                             .on_drain = net_on_drain,
                                             .on_close = net_on_close,
                                             .on_evict = net_on_evict};

/* ---- graceful shutdown ---------------------------------------------------------------------- */

/* Step one of RFC 9113 6.8's graceful close: the notice, and a PING whose ACK marks one round trip. */
static void conn_drain(struct ps_h2_conn *c) {
  if (c->closed || c->dead || c->fatal || c->goaway != GOAWAY_NONE) return;
  if (nghttp2_submit_shutdown_notice(c->session) == 0 &&
      nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, drain_ping) == 0)
    c->goaway = GOAWAY_NOTICE;
  else
    goaway_final(c); /* out of memory: skip the round trip rather than leave the client unaware */
  flush(c);
}

void ps_h2_server_drain(struct ps_h2_server *srv) {
  srv->draining = true;
  /* flush never frees a connection (a socket's closes in net.c's close callback, later), so the list
   * stays intact while it is walked. */
  ps_list_foreach(n, &srv->conns) conn_drain(ps_list_entry(n, struct ps_h2_conn, node));
}

size_t ps_h2_server_terminate(struct ps_h2_server *srv) {
  srv->draining = true;
  size_t open = 0;
  ps_list_foreach(n, &srv->conns) {
    struct ps_h2_conn *c = ps_list_entry(n, struct ps_h2_conn, node);
    if (c->closed) continue;
    ps_list_foreach(m, &c->calls) if (!ps_list_entry(m, struct ps_call, node)->ended) open++;
    if (!c->dead && !c->fatal && c->goaway != GOAWAY_FINAL) {
      /* Names the same last stream as goaway_final, and makes nghttp2 stop reading and writing once
       * it is out (its TERM_ON_SEND), so nothing queued behind it delays the close. */
      c->goaway = GOAWAY_FINAL;
      nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
    }
    flush(c);
    /* Whatever flush could not send (a peer that stopped reading) is dropped: this is the deadline. The
     * calls still open are cancelled when net.c's on_close destroys the connection. */
    c->dead = true;
    if (c->net != NULL) ps_net_close(c->net);
  }
  return open;
}

struct ps_h2_conn *ps_h2_conn_new_mem(struct ps_h2_server *srv, struct ps_buf *out) {
  struct ps_h2_conn *c = conn_new(srv, NULL, out);
  if (c != NULL) flush(c);
  return c;
}

int ps_h2_conn_feed(struct ps_h2_conn *c, const uint8_t *data, size_t len) { return conn_recv(c, data, len); }
void ps_h2_conn_free(struct ps_h2_conn *c) { conn_destroy(c); }
