/* The call half of the gRPC server (h2_conn.c is the connection half): one struct ps_call per stream,
 * from on_begin_headers to on_stream_close. It checks the request headers, assembles the request message
 * against the request-memory budget shared by every connection (--grpc-max-buffered), times the request's
 * arrival (--grpc-request-timeout) and the client's grpc-timeout, schedules malloc_trim after large frees,
 * dispatches, and sends responses, trailers and statuses. */
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
#include "h2_conn_int.h"
#include "log.h"
#include "metrics.h"

static void req_free(struct ps_call *call);
static void buffered_update(struct ps_h2_server *srv, size_t before);

/* ---- responses ------------------------------------------------------------------------------ */

/* The decimal text of a status code v < 1000 (gRPC's 0..16 in grpc-status, HTTP's :status) into out (3
 * bytes, no NUL); returns its length. Not snprintf: every response's trailers carry one, and the printf
 * machinery cost ~940 instructions of a GetMetrics' ~19,300 (callgrind, docs/performance.md). */
static size_t code_text(char *out, unsigned v) {
  size_t n = v >= 100 ? 3 : v >= 10 ? 2 : 1;
  for (size_t i = n; i-- > 0; v /= 10) out[i] = (char)('0' + v % 10);
  return n;
}

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
    char st[3];
    size_t stlen = code_text(st, (unsigned)call->status); /* 0..16: respond_end and cancel_call */
    nghttp2_nv tr[] = {NV("grpc-status", st, stlen),
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
  ps_h2c_record_end(call);
  if (c->closed) return;
  if (call->headers_sent) {
    call->trailers_due = true;
    if (call->data_deferred) {
      call->data_deferred = false;
      nghttp2_session_resume_data(c->session, call->stream_id);
    }
  } else {
    char hs[3], st[3];
    size_t hslen = code_text(hs, (unsigned)http_status); /* 200, 405 or 415 */
    size_t stlen = code_text(st, (unsigned)status);
    nghttp2_nv nva[] = {NV(":status", hs, hslen), NV("content-type", "application/grpc", 16),
                        NV("grpc-accept-encoding", "identity", 8), NV("grpc-status", st, stlen),
                        NV("grpc-message", call->message.data, call->message.len)};
    call->headers_sent = true;
    int rv = nghttp2_submit_response(c->session, call->stream_id, nva, call->message.len > 0 ? 5 : 4, NULL);
    if (rv != 0)
      ps_log(PS_LOG_DEBUG, "grpc response not submitted", "peer", ps_h2c_peer(c), "error",
             nghttp2_strerror(rv), NULL);
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
  ps_h2c_flush_soon(c);
  return 0;
}

void ps_call_finish(struct ps_call *call, int grpc_status, const char *message) {
  if (call->ended) return;
  respond_end(call, 200, grpc_status, message);
  ps_h2c_flush_soon(call->conn);
}

void ps_call_on_cancel(struct ps_call *call, ps_call_cancel_cb cb, void *arg) {
  call->cancel_cb = cb;
  call->cancel_arg = arg;
}

uint64_t ps_call_deadline(const struct ps_call *call) { return call->deadline; }
const char *ps_call_method(const struct ps_call *call) { return call->method ? call->method : ""; }

/* The call ended without ps_call_finish; tells the dispatcher, exactly once. */
void ps_h2c_cancel_call(struct ps_call *call, int status) {
  if (call->ended) return;
  call->ended = true;
  call->status = status;
  ps_h2c_record_end(call);
  if (call->dispatched && call->cancel_cb != NULL) call->cancel_cb(call, call->cancel_arg);
}

/* ---- request memory ------------------------------------------------------------------------- */

/* Gives freed heap pages back to the system. Freed request buffers otherwise stay in glibc's heap: after
 * an attack the process would keep the memory it made us allocate (issue 9 saw 1 GB stay). */
void ps_h2c_trim_now(struct ps_h2_server *srv) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  srv->trim_freed = 0;
  srv->trim_last_ms = uv_now(srv->loop);
}

static void trim_cb(uv_timer_t *t) {
  struct ps_h2_server *srv = ps_h2c_timer_owner(t);
  if (srv == NULL) return;
  ps_h2c_timer_release(srv->trim_timer);
  srv->trim_timer = NULL;
  ps_h2c_trim_now(srv);
}

/* Called with srv->buffered.used as it was before something may have been freed: counts what was
 * released for the next trim (at most once per PS_H2_TRIM_INTERVAL_MS, from a timer, so that the loop
 * never trims in a hot path), and tells the gauges. */
static void buffered_update(struct ps_h2_server *srv, size_t before) {
  size_t now_used = srv->buffered.used;
  if (now_used == before) return;
  ps_h2c_gauges_changed(srv);
  if (now_used > before) return;
  srv->trim_freed += before - now_used;
  if (srv->trim_freed < PS_H2_TRIM_AFTER || srv->trim_timer != NULL) return;
  uint64_t now = uv_now(srv->loop), next = srv->trim_last_ms + PS_H2_TRIM_INTERVAL_MS;
  /* NULL when out of memory: the next release tries again. */
  srv->trim_timer = ps_h2c_timer_start(srv->loop, srv, trim_cb, next > now ? next - now : 0);
}

/* The request message is no longer needed (dispatched, refused or cancelled): its bytes go back. */
static void req_free(struct ps_call *call) {
  if (call->req != call->req_inline) free(call->req);
  call->req = NULL;
  ps_grpc_budget_release(&call->conn->srv->buffered, call->req_charged);
  call->req_charged = 0;
}

/* ---- calls: lifecycle ----------------------------------------------------------------------- */

/* The earlier of the request's arrival limit and the client's deadline has come. A request still
 * incomplete at its arrival limit gets DEADLINE_EXCEEDED: statuscodes.md defines it as "the deadline
 * expired before the operation could complete", and lists it for a deadline that expires on the server;
 * CANCELLED is "typically by the caller", which would mislead the client about who ended the call. */
static void call_timer_cb(uv_timer_t *t) {
  struct ps_call *call = ps_h2c_timer_owner(t);
  if (call == NULL || call->ended) return;
  if (!call->request_done && (call->deadline == 0 || call->arrival_limit < call->deadline)) {
    struct ps_h2_server *srv = call->conn->srv;
    uint64_t ms = srv->request_timeout_ms ? srv->request_timeout_ms : PS_H2_REQUEST_TIMEOUT_MS;
    ps_h2c_count_refused("request_timeout");
    respond_errorf(call, 200, PS_GRPC_DEADLINE_EXCEEDED,
                   "request not received whole within %" PRIu64 " ms of its headers (--grpc-request-timeout)",
                   ms);
  } else {
    respond_errorf(call, 200, PS_GRPC_DEADLINE_EXCEEDED, "deadline exceeded (grpc-timeout %s)",
                   call->timeout_text);
    if (call->dispatched && call->cancel_cb != NULL) call->cancel_cb(call, call->cancel_arg);
  }
  ps_h2c_flush(call->conn);
}

void ps_h2c_call_free(struct ps_call *call) {
  struct ps_h2_conn *c = call->conn;
  size_t before = c->srv->buffered.used;
  if (call->dispatched) ps_h2c_busy_end(c);
  ps_list_remove(&call->node);
  if (call->arm_pending) ps_list_remove(&call->arm_node);
  ps_h2c_timer_release(call->timer);
  ps_grpc_reader_free(&call->reader);
  req_free(call);
  buffered_update(c->srv, before);
  ps_buf_free(&call->message);
  c->srv->open_streams--;
  ps_h2c_gauges_changed(c->srv);
  if (c->closed || c->nspare >= PS_H2_SPARE_CALLS) {
    ps_buf_free(&call->out);
    free(call);
    return;
  }
  if (call->out.cap > PS_H2_SPARE_OUT_MAX) ps_buf_free(&call->out);
  ps_list_insert_head(&c->spare, &call->node);
  c->nspare++;
}

void ps_h2c_spare_free(struct ps_h2_conn *c) {
  for (struct ps_list *n; (n = ps_list_first(&c->spare)) != NULL;) {
    struct ps_call *call = ps_list_entry(n, struct ps_call, node);
    ps_list_remove(n);
    ps_buf_free(&call->out);
    free(call);
  }
  c->nspare = 0;
}

/* A call for a new stream: a spare one of the connection, cleared as calloc would (its response buffer's
 * memory kept, emptied), or a new one; NULL when out of memory. */
static struct ps_call *call_alloc(struct ps_h2_conn *c) {
  struct ps_list *n = ps_list_first(&c->spare);
  if (n == NULL) {
    struct ps_call *call = calloc(1, sizeof *call);
    if (call != NULL) ps_buf_init(&call->out);
    return call;
  }
  ps_list_remove(n);
  c->nspare--;
  struct ps_call *call = ps_list_entry(n, struct ps_call, node);
  struct ps_buf out = call->out;
  memset(call, 0, sizeof *call);
  call->out = out;
  ps_buf_reset(&call->out);
  return call;
}

/* The request is complete (END_STREAM): a unary or server-streaming call carries exactly one message,
 * and answers to 0 or 2+ follow grpc-java ("missing/too many request messages"). */
void ps_h2c_end_of_request(struct ps_call *call) {
  struct ps_h2_conn *c = call->conn;
  if (call->ended) return;
  call->request_done = true;
  if (call->timer != NULL && call->deadline == 0) {
    ps_h2c_timer_release(call->timer); /* the arrival limit no longer applies: a stream may live on */
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
  ps_h2c_busy_begin(c);
  uint8_t *req = call->req; /* freed after dispatch: the dispatcher copies what it keeps */
  bool inline_req = req == call->req_inline;
  size_t charged = call->req_charged;
  call->req = NULL;
  call->req_charged = 0;
  struct ps_h2_server *srv = c->srv; /* the call may end inside dispatch; the server stays */
  /* The call, and req_inline with it, outlives the dispatch: it is freed only when nghttp2 closes the
   * stream, which happens in a later mem_send, not inside this callback. */
  srv->dispatch(call, call->path, req, call->req_len, srv->dispatch_arg);
  if (!inline_req) free(req);
  size_t before = srv->buffered.used;
  ps_grpc_budget_release(&srv->buffered, charged);
  buffered_update(srv, before);
}

/* Checks the request headers once they are all in (PROTOCOL-HTTP2.md, "Requests"). Non-POST follows
 * grpc-java (405), a foreign content-type grpc-go (415, INVALID_ARGUMENT). */
void ps_h2c_headers_done(struct ps_call *call) {
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
    if (call->timeout_text[0] != '\0') call->deadline = now + call->timeout_ms;
    /* Most requests arrive whole in the read that carries their headers, and a call without grpc-timeout
     * needs no timer once END_STREAM is in: the timer starts only if the call still needs one when this
     * input is consumed (ps_h2c_arm_timers, the same loop turn, so the same uv_now), at the same due time. */
    call->arm_pending = true;
    ps_list_insert_tail(&c->to_arm, &call->arm_node);
  }
}

void ps_h2c_arm_timers(struct ps_h2_conn *c) {
  for (struct ps_list *n; (n = ps_list_first(&c->to_arm)) != NULL;) {
    struct ps_call *call = ps_list_entry(n, struct ps_call, arm_node);
    ps_list_remove(n);
    call->arm_pending = false;
    /* After END_STREAM only the client's deadline is left (ps_h2c_end_of_request); before it, the
     * earlier of the deadline and the arrival limit. */
    uint64_t due = call->request_done ? call->deadline : call->arrival_limit;
    if (!call->request_done && call->deadline != 0 && call->deadline < due) due = call->deadline;
    if (call->ended || due == 0) continue;
    uint64_t now = uv_now(c->srv->loop);
    call->timer = ps_h2c_timer_start(c->srv->loop, call, call_timer_cb, due > now ? due - now : 0);
    if (call->timer == NULL) respond_errorf(call, 200, PS_GRPC_RESOURCE_EXHAUSTED, "out of memory");
  }
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------------- */

int ps_h2c_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  struct ps_h2_conn *c = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  struct ps_call *call = call_alloc(c);
  if (call == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
  call->conn = c;
  call->stream_id = frame->hd.stream_id;
  call->start_ms = uv_now(c->srv->loop);
  ps_grpc_reader_init(&call->reader, c->srv->max_msg ? c->srv->max_msg : PS_GRPC_MAX_MSG_DEFAULT);
  call->reader.budget = &c->srv->buffered;
  ps_buf_init(&call->message);
  ps_list_insert_head(&c->calls, &call->node);
  c->srv->open_streams++;
  ps_h2c_gauges_changed(c->srv);
  nghttp2_session_set_stream_user_data(session, call->stream_id, call);
  return 0;
}

static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t len) {
  if (len >= cap) len = cap - 1; /* only for messages: a truncated echo of the offending value */
  memcpy(dst, v, len);
  dst[len] = '\0';
}

#define NAME_IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)

int ps_h2c_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
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
    req = len <= sizeof call->req_inline ? call->req_inline : malloc(len ? len : 1);
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

int ps_h2c_on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data) {
  struct ps_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
  if (call == NULL || call->ended || !call->headers_done) return 0; /* flow control is still credited */
  struct ps_h2_server *srv = call->conn->srv;
  size_t before = srv->buffered.used;
  int err = ps_grpc_reader_feed(&call->reader, data, len, on_message, call);
  switch (err) {
  case 0: break;
  case UV_E2BIG:
    ps_h2c_count_refused("too_large");
    respond_errorf(call, 200, PS_GRPC_RESOURCE_EXHAUSTED,
                   "received message larger than max (%" PRIu32 " vs. %zu)", call->reader.msg_len,
                   call->reader.max_msg);
    break;
  case UV_ENOBUFS:
    /* Over the budget shared by every connection: this stream's bytes are released (respond_errorf
     * frees its reader) and the others go on. RESOURCE_EXHAUSTED: "some resource has been exhausted"
     * (statuscodes.md); the client may retry once the uploads in progress are done. */
    ps_h2c_count_refused("memory");
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

int ps_h2c_on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
  struct ps_h2_conn *c = user_data;
  if (c->closed) return 0;
  struct ps_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
  if (call == NULL) return 0;
  ps_h2c_cancel_call(call, PS_GRPC_CANCELLED); /* no-op when the call already ended */
  ps_h2c_call_free(call);
  return 0;
}
