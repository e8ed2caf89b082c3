/* gRPC client, the call half: nghttp2 callbacks, starting and ending calls, and the status a call ends
 * with (PROTOCOL-HTTP2.md, http-grpc-status-mapping.md; grpc/grpc doc). The connection half is
 * grpc_client.c; lifetimes are described there. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_client_int.h"

/* ==== small helpers ================================================================================ */

int ps_grpc_status_from_http(int s) {
  switch (s) {
  case 400: return PS_GRPC_INTERNAL;
  case 401: return PS_GRPC_UNAUTHENTICATED;
  case 403: return PS_GRPC_PERMISSION_DENIED;
  case 404: return PS_GRPC_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504: return PS_GRPC_UNAVAILABLE;
  default: return PS_GRPC_UNKNOWN;
  }
}

/* PROTOCOL-HTTP2.md, "Errors": the gRPC status of a stream reset by the server with this code. */
static int status_from_rst(uint32_t code) {
  switch (code) {
  case NGHTTP2_REFUSED_STREAM: return PS_GRPC_UNAVAILABLE; /* not processed: safe to retry */
  case NGHTTP2_CANCEL: return PS_GRPC_CANCELLED;
  case NGHTTP2_ENHANCE_YOUR_CALM: return PS_GRPC_RESOURCE_EXHAUSTED;
  case NGHTTP2_INADEQUATE_SECURITY: return PS_GRPC_PERMISSION_DENIED;
  default: return PS_GRPC_INTERNAL;
  }
}

void ps_grpc_client_format_timeout(uint64_t ms, char *buf, size_t len) {
  /* TimeoutValue is at most 8 digits (PROTOCOL-HTTP2.md); coarser units round up so that the server
   * never sees a shorter deadline than ours. */
  static const struct {
    uint64_t div;
    char unit;
  } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
  if (ms == 0) ms = 1;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    uint64_t v = (ms + units[i].div - 1) / units[i].div;
    if (v <= 99999999u) {
      snprintf(buf, len, "%llu%c", (unsigned long long)v, units[i].unit);
      return;
    }
  }
  snprintf(buf, len, "99999999H");
}

/* ==== calls: ending ================================================================================ */

static void call_closed(uv_handle_t *h) {
  struct ps_grpc_call *call = h->data;
  struct ps_grpc_client *c = call->c;
  ps_buf_free(&call->body);
  free(call);
  ps_gc_client_unref(c);
}

/* Unlinks the call and detaches it from its stream. While the stream is still open in either direction
 * and the session works, it is reset with `rst` (unless NO_RST), so the server stops working on it. */
static void call_detach(struct ps_grpc_call *call, uint32_t rst) {
  struct ps_grpc_client *c = call->c;
  call->ended = true;
  ps_list_remove(&call->node);
  c->ncalls--;
  uv_timer_stop(&call->timer);
  if (call->stream_id <= 0 || c->session == NULL) return;
  nghttp2_session_set_stream_user_data(c->session, call->stream_id, NULL);
  if (rst == NO_RST || !session_usable(c) || nghttp2_session_find_stream(c->session, call->stream_id) == NULL)
    return;
  bool local = nghttp2_session_get_stream_local_close(c->session, call->stream_id) == 1;
  bool remote =
      call->remote_ended || nghttp2_session_get_stream_remote_close(c->session, call->stream_id) == 1;
  if (!local || !remote) nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id, rst);
}

static void call_release(struct ps_grpc_call *call) {
  ps_grpc_reader_free(&call->reader);
  ps_buf_free(&call->unary);
  ps_buf_free(&call->grpc_message);
  uv_close((uv_handle_t *)&call->timer, call_closed);
}

/* Delivers the one done callback. */
static void call_end(struct ps_grpc_call *call, int status, const char *message, uint32_t rst) {
  if (call->ended) return;
  call_detach(call, rst);
  const uint8_t *msg = NULL;
  size_t len = 0;
  if (call->on_msg == NULL && status == PS_GRPC_OK) {
    msg = (const uint8_t *)(call->unary.data ? call->unary.data : "");
    len = call->unary.len;
  }
  call->done(call->arg, status, message ? message : "", msg, len);
  call_release(call);
  ps_gc_flush(call->c); /* the RST_STREAM, when not inside nghttp2 (then the outer loop sends it) */
}

static void call_endf(struct ps_grpc_call *call, int status, uint32_t rst, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void call_endf(struct ps_grpc_call *call, int status, uint32_t rst, const char *fmt, ...) {
  char text[ERRMSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  call_end(call, status, text, rst);
}

/* Ends every open call. A done callback may start new calls (refused: the state says so) or close the
 * client (which ends the rest itself), so the list is re-read each time. */
void ps_gc_end_all(struct ps_grpc_client *c, int status, const char *message) {
  for (struct ps_list *n; (n = ps_list_first(&c->calls)) != NULL;)
    call_end(ps_list_entry(n, struct ps_grpc_call, node), status, message, NGHTTP2_CANCEL);
}

/* The status of a call whose response ended (END_STREAM from the server), from what it received. */
static void call_finish_response(struct ps_grpc_call *call, bool trailers) {
  char text[PS_GRPC_CLIENT_MAX_MESSAGE_TEXT + 1];
  if (call->headers_too_big) {
    call_endf(call, PS_GRPC_RESOURCE_EXHAUSTED, NGHTTP2_CANCEL, "response headers exceed %u bytes",
              PS_GRPC_CLIENT_MAX_HEADER_LIST);
  } else if (call->have_grpc_status) {
    /* http-grpc-status-mapping.md: "If grpc-status was provided, it must be used." */
    if (call->grpc_status_bad) {
      call_endf(call, PS_GRPC_INTERNAL, NGHTTP2_CANCEL, "malformed grpc-status in the response");
      return;
    }
    struct ps_buf m;
    ps_buf_init(&m);
    if (call->grpc_message.len > 0 &&
        ps_grpc_message_decode(&m, call->grpc_message.data, call->grpc_message.len) == 0) {
      size_t n = m.len < PS_GRPC_CLIENT_MAX_MESSAGE_TEXT ? m.len : PS_GRPC_CLIENT_MAX_MESSAGE_TEXT;
      memcpy(text, m.data, n);
      text[n] = '\0';
    } else {
      text[0] = '\0';
    }
    ps_buf_free(&m);
    if (call->grpc_status == PS_GRPC_OK && ps_grpc_reader_partial(&call->reader))
      call_endf(call, PS_GRPC_INTERNAL, NGHTTP2_CANCEL, "the stream ended in the middle of a message");
    else if (call->grpc_status == PS_GRPC_OK && call->on_msg == NULL && call->reader.messages != 1)
      call_endf(call, PS_GRPC_INTERNAL, NGHTTP2_CANCEL,
                "unary call answered OK with %u response messages instead of 1", call->reader.messages);
    else
      call_end(call, call->grpc_status, text, NGHTTP2_CANCEL);
  } else if (call->http_status != 200) {
    call_endf(call, ps_grpc_status_from_http(call->http_status), NGHTTP2_CANCEL,
              "HTTP status %d from the server, without grpc-status", call->http_status);
  } else if (!call->content_type_ok) {
    call_endf(call, PS_GRPC_UNKNOWN, NGHTTP2_CANCEL, "response content-type \"%s\" is not gRPC",
              call->content_type);
  } else if (!trailers) {
    call_endf(call, PS_GRPC_INTERNAL, NGHTTP2_CANCEL, "the server ended the stream without trailers");
  } else {
    call_endf(call, PS_GRPC_UNKNOWN, NGHTTP2_CANCEL, "trailers without grpc-status");
  }
}

/* ==== nghttp2 callbacks ============================================================================ */

static struct ps_grpc_call *stream_call(nghttp2_session *s, int32_t id) {
  struct ps_grpc_call *call = nghttp2_session_get_stream_user_data(s, id);
  return call != NULL && !call->ended ? call : NULL;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user) {
  struct ps_grpc_call *call = stream_call(s, f->hd.stream_id);
  if (call == NULL) return 0;
  call->header_bytes = 0; /* the limit is per header block (RFC 9113 6.5.2) */
  call->block_status = 0;
  if (call->http_status != 0) call->in_trailers = true;
  return 0;
}

#define NAME_IS(lit) (nl == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *user) {
  struct ps_grpc_call *call = stream_call(s, f->hd.stream_id);
  if (call == NULL || call->headers_too_big) return 0;
  call->header_bytes += nl + vl + 32; /* RFC 9113 6.5.2: name + value + 32 per field */
  if (call->header_bytes > PS_GRPC_CLIENT_MAX_HEADER_LIST) {
    call->headers_too_big = true;
    return 0;
  }
  /* nghttp2 has checked the pseudo-headers (RFC 9113 8.3.2): :status is 3 digits, only in responses. */
  if (NAME_IS(":status")) {
    int st = 0;
    for (size_t i = 0; i < vl; i++) st = st * 10 + (value[i] - '0');
    call->block_status = st;
  } else if (NAME_IS("content-type")) {
    call->content_type_ok = ps_grpc_content_type_ok((const char *)value, vl);
    size_t n = vl < sizeof call->content_type - 1 ? vl : sizeof call->content_type - 1;
    memcpy(call->content_type, value, n);
    call->content_type[n] = '\0';
  } else if (NAME_IS("grpc-status")) {
    /* A non-negative decimal; codes beyond 16 are kept (a newer server's), names print UNKNOWN. */
    int st = 0;
    bool bad = vl == 0 || vl > 9;
    for (size_t i = 0; !bad && i < vl; i++) {
      if (value[i] < '0' || value[i] > '9') bad = true;
      st = st * 10 + (value[i] - '0');
    }
    call->have_grpc_status = true;
    call->grpc_status_bad = bad;
    call->grpc_status = bad ? PS_GRPC_UNKNOWN : st;
  } else if (NAME_IS("grpc-message")) {
    ps_buf_reset(&call->grpc_message);
    size_t n = vl < 3 * PS_GRPC_CLIENT_MAX_MESSAGE_TEXT ? vl : 3 * PS_GRPC_CLIENT_MAX_MESSAGE_TEXT;
    if (ps_buf_append(&call->grpc_message, value, n) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int on_message(void *arg, const uint8_t *msg, size_t len) {
  struct ps_grpc_call *call = arg; /* call->reader.messages counts this one already */
  if (call->on_msg != NULL) {
    call->on_msg(call->arg, msg, len);
    return call->ended ? ERR_STOP : 0; /* cancelled or closed from inside on_msg */
  }
  if (call->reader.messages > 1) return PS_GRPC_ERR_TOO_MANY_MESSAGES;
  return ps_buf_append(&call->unary, msg, len);
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                              void *user) {
  struct ps_grpc_call *call = stream_call(s, id);
  if (call == NULL) return 0; /* flow control is credited all the same */
  int err = ps_grpc_reader_feed(&call->reader, data, len, on_message, call);
  switch (err) {
  case 0:
  case ERR_STOP: break;
  case UV_E2BIG:
    call_endf(call, PS_GRPC_RESOURCE_EXHAUSTED, NGHTTP2_CANCEL,
              "received message larger than max (%u vs. %zu)", call->reader.msg_len, call->reader.max_msg);
    break;
  case UV_ENOTSUP:
    call_endf(call, PS_GRPC_INTERNAL, NGHTTP2_CANCEL,
              "compressed message received, but no compression was "
              "negotiated (we accept identity only)");
    break;
  case UV_EPROTO:
    call_endf(call, PS_GRPC_INTERNAL, NGHTTP2_CANCEL, "invalid message compression flag %u",
              call->reader.prefix[0]);
    break;
  case PS_GRPC_ERR_TOO_MANY_MESSAGES:
    call_endf(call, PS_GRPC_INTERNAL, NGHTTP2_CANCEL, "unary call got more than one response message");
    break;
  default: call_endf(call, PS_GRPC_RESOURCE_EXHAUSTED, NGHTTP2_CANCEL, "out of memory"); break;
  }
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user) {
  struct ps_grpc_client *c = user;
  if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) && c->state == ST_HANDSHAKE) {
    /* The server preface (RFC 9113 3.4): the peer speaks HTTP/2. */
    c->state = ST_READY;
    uv_timer_stop(&c->timer);
    ps_gc_submit_pending(c);
    ps_grpc_connect_cb cb = c->connect_cb;
    c->connect_cb = NULL;
    if (cb != NULL) cb(c->connect_arg, 0, NULL);
    return 0;
  }
  if (f->hd.type == NGHTTP2_GOAWAY) {
    c->goaway = true; /* streams above last_stream_id close with REFUSED_STREAM -> UNAVAILABLE */
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  struct ps_grpc_call *call = stream_call(s, f->hd.stream_id);
  if (call == NULL) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (end) call->remote_ended = true;
  if (f->hd.type == NGHTTP2_HEADERS) {
    if (!call->in_trailers) {
      if (call->block_status >= 100 && call->block_status < 200 && !end)
        return 0; /* interim response (RFC 9113 8.1): the final one follows */
      call->http_status = call->block_status;
    }
    if (end) call_finish_response(call, call->in_trailers);
  } else if (end) {
    call_finish_response(call, false);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user) {
  struct ps_grpc_client *c = user;
  struct ps_grpc_call *call = stream_call(s, id);
  if (call == NULL) return 0;
  /* Closed before the response ended: a reset from the server, or the session going down. */
  if (code == NGHTTP2_REFUSED_STREAM && c->goaway)
    call_endf(call, PS_GRPC_UNAVAILABLE, NO_RST,
              "the server is going away (GOAWAY) and did not "
              "process the call");
  else
    call_endf(call, status_from_rst(code), NO_RST, "stream reset by the server: %s",
              nghttp2_http2_strerror(code));
  return 0;
}

static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *user) {
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  struct ps_grpc_call *call = stream_call(s, f->hd.stream_id);
  if (call != NULL)
    call_endf(call, PS_GRPC_UNAVAILABLE, NO_RST, "cannot start the call on %s: %s", call->c->target,
              nghttp2_strerror(lib_error));
  return 0;
}

/* The request body: the one framed message, then END_STREAM (a unary or server-streaming request). */
static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *user) {
  struct ps_grpc_call *call = src->ptr; /* valid: the stream is reset before the call is freed */
  size_t n = call->body.len - call->body_off;
  if (n > length) n = length;
  memcpy(buf, call->body.data + call->body_off, n);
  call->body_off += n;
  if (call->body_off == call->body.len) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static nghttp2_session_callbacks *make_callbacks(void) {
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return NULL;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
  return cbs;
}

int ps_gc_session_new(struct ps_grpc_client *c) {
  nghttp2_session_callbacks *cbs = make_callbacks();
  if (cbs == NULL) return UV_ENOMEM;
  nghttp2_option *opt;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return UV_ENOMEM;
  }
  nghttp2_option_set_max_reserved_remote_streams(opt, 0); /* we never accept server push */
  int rv = nghttp2_session_client_new2(&c->session, cbs, c, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) return UV_ENOMEM;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, PS_GRPC_CLIENT_INITIAL_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, PS_GRPC_CLIENT_MAX_HEADER_LIST},
  };
  /* The connection window starts at 64 KiB whatever SETTINGS say (RFC 9113 6.9.2): widen it. */
  if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
      nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, PS_GRPC_CLIENT_CONN_WINDOW) !=
          0)
    return UV_ENOMEM;
  return 0;
}

/* ==== calls: starting ============================================================================== */

#define NV(n, v)                                                                                             \
  { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

/* Submits the HEADERS and DATA of a call (PROTOCOL-HTTP2.md, "Requests"). 0 or a UV error. */
static int call_submit(struct ps_grpc_call *call) {
  struct ps_grpc_client *c = call->c;
  char timeout[32] = "";
  if (call->deadline != 0) {
    uint64_t now = uv_now(c->loop);
    ps_grpc_client_format_timeout(call->deadline > now ? call->deadline - now : 1, timeout, sizeof timeout);
  }
  nghttp2_nv nva[] = {
      NV(":method", "POST"),
      NV(":scheme", "http"),
      NV(":path", call->path),
      NV(":authority", c->target),
      NV("te", "trailers"), /* PROTOCOL-HTTP2.md: required, detects incompatible proxies */
      NV("content-type", "application/grpc"),
      NV("user-agent", "prescale/" PS_VERSION),
      NV("grpc-accept-encoding", "identity"),
      NV("grpc-timeout", timeout),
  };
  size_t n = sizeof nva / sizeof nva[0] - (call->deadline != 0 ? 0 : 1);
  nghttp2_data_provider prd = {.source.ptr = call, .read_callback = read_body};
  int32_t id = nghttp2_submit_request(c->session, NULL, nva, n, &prd, call);
  if (id < 0) return id == NGHTTP2_ERR_NOMEM ? UV_ENOMEM : UV_ENOTCONN;
  call->stream_id = id;
  return 0;
}

/* The connection is ready: the calls started while it was being made go out now (inside an nghttp2
 * callback: the frames leave when it returns). */
void ps_gc_submit_pending(struct ps_grpc_client *c) {
  ps_list_foreach_safe(n, next, &c->calls) {
    struct ps_grpc_call *call = ps_list_entry(n, struct ps_grpc_call, node);
    if (call->stream_id != 0) continue;
    int err = call_submit(call);
    if (err != 0)
      call_endf(call, PS_GRPC_UNAVAILABLE, NO_RST, "cannot start the call on %s: %s", c->target,
                uv_strerror(err));
  }
}

static void deadline_cb(uv_timer_t *t) {
  struct ps_grpc_call *call = t->data;
  char dur[32];
  snprintf(dur, sizeof dur, "%llu ms", (unsigned long long)call->timeout_ms);
  /* RST_STREAM(CANCEL) tells the server to stop working on it (PROTOCOL-HTTP2.md, "Errors"). */
  call_endf(call, PS_GRPC_DEADLINE_EXCEEDED, NGHTTP2_CANCEL, "deadline exceeded after %s", dur);
}

int ps_grpc_client_call(struct ps_grpc_client *c, const char *path, const uint8_t *req, size_t len,
                        uint64_t timeout_ms, ps_grpc_msg_fn on_msg, ps_grpc_done_fn done, void *arg,
                        struct ps_grpc_call **out) {
  if (out != NULL) *out = NULL;
  if (c == NULL || path == NULL || done == NULL || (req == NULL && len > 0)) return UV_EINVAL;
  size_t plen = strlen(path);
  if (plen < 2 || plen > PS_GRPC_CLIENT_MAX_PATH || path[0] != '/') return UV_EINVAL;
  for (size_t i = 0; i < plen; i++)
    if ((unsigned char)path[i] <= 0x20 || (unsigned char)path[i] >= 0x7f) return UV_EINVAL;
  if (timeout_ms > PS_GRPC_CLIENT_MAX_TIMEOUT_MS) return UV_EINVAL;
  if (c->closing || c->state == ST_DEAD || c->goaway || c->fatal) return UV_ENOTCONN;
  struct ps_grpc_call *call = calloc(1, sizeof *call);
  if (call == NULL) return UV_ENOMEM;
  call->c = c;
  snprintf(call->path, sizeof call->path, "%s", path);
  ps_buf_init(&call->body);
  ps_buf_init(&call->unary);
  ps_buf_init(&call->grpc_message);
  int err = ps_grpc_frame(&call->body, req ? req : (const uint8_t *)"", len);
  if (err != 0) {
    ps_buf_free(&call->body);
    free(call);
    return err;
  }
  ps_grpc_reader_init(&call->reader, c->max_msg);
  call->on_msg = on_msg;
  call->done = done;
  call->arg = arg;
  call->timeout_ms = timeout_ms;
  if (timeout_ms > 0) call->deadline = uv_now(c->loop) + timeout_ms;
  if (c->state == ST_READY) {
    err = call_submit(call);
    if (err != 0) {
      ps_buf_free(&call->body);
      free(call);
      return err;
    }
  }
  uv_timer_init(c->loop, &call->timer);
  call->timer.data = call;
  if (timeout_ms > 0) uv_timer_start(&call->timer, deadline_cb, timeout_ms, 0);
  ps_list_insert_head(&c->calls, &call->node);
  c->ncalls++;
  c->refs++;
  if (out != NULL) *out = call;
  ps_gc_flush(c);
  return 0;
}

void ps_grpc_client_cancel(struct ps_grpc_call *call) {
  if (call == NULL || call->ended) return;
  call_detach(call, NGHTTP2_CANCEL);
  call_release(call);
  ps_gc_flush(call->c);
}
