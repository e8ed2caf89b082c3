/* Private to src/h2_conn.c, src/h2_send.c and src/h2_call.c: the state of a server connection and of its
 * calls, shared by the connection half (h2_conn.c: the nghttp2 session, GOAWAY and drain, the preface and
 * idle timers, eviction), its send path (h2_send.c: frames serialized into one batch and written, the
 * end-of-turn flush) and the call half (h2_call.c: the stream callbacks, request assembly, the
 * request-memory budget and arrival timers, responses and trailers). Not a contract for other modules:
 * h2_conn.h is. */
#ifndef PS_H2_CONN_INT_H
#define PS_H2_CONN_INT_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "grpc.h"
#include "h2_conn.h"
#include "list.h"

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
  struct owned_timer *timeout; /* the preface's, then the idle and age one (conn_timer_arm); NULL: memory */
  struct ps_net_conn *net;     /* NULL for a memory connection */
  struct ps_buf *mem_out;      /* a memory connection's output */
  nghttp2_session *session;
  struct ps_list calls;  /* of ps_call.node: every live stream's call */
  struct ps_list to_arm; /* of ps_call.arm_node: calls whose timer is due to start after this input */
  struct ps_list spare;  /* of ps_call.node: calls kept for reuse (PS_H2_SPARE_CALLS) */
  size_t nspare;
  struct ps_buf batch;       /* frames waiting for one ps_net_write */
  struct ps_list flush_node; /* in srv->flush_due while flush_due */
  bool flush_due;
  unsigned sends_due;  /* ps_h2c_flush_soon calls since the frames were last serialized (SERIALIZE_EVERY) */
  int in_session;      /* > 0 while inside nghttp2_session_mem_recv/mem_send */
  bool closed;         /* being destroyed: the session must not be touched */
  bool dead;           /* unusable session: close once what is queued is written */
  bool fatal;          /* nghttp2 returned a fatal error: do not even send */
  bool calm_down;      /* the client reset too many streams: GOAWAY once the recv returns */
  bool greeted;        /* the client's preface and first SETTINGS arrived */
  size_t busy;         /* calls dispatched whose stream is not closed yet */
  uint64_t idle_since; /* loop time (ms) the last call ended, or of the greeting; valid while busy == 0 */
  uint64_t age_due;    /* loop time of the age, then (aged) of the end of its grace; 0: none */
  uint64_t
      timer_at; /* loop time conn_timer_arm armed `timeout` for (never later than the deadline); 0: not */
  bool aged;    /* told to go away because of its age (conn_age) */
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
  /* Fires at the earlier of arrival_limit (until END_STREAM) and deadline: one timer per call, started
   * only if the call still needs it once the input that carried its headers is consumed (arm_node). */
  struct owned_timer *timer;
  struct ps_list arm_node; /* in conn->to_arm while arm_pending */
  bool arm_pending;
  /* request body */
  bool request_done; /* END_STREAM arrived */
  struct ps_grpc_reader reader;
  uint8_t *req; /* the one request message; owned unless it is req_inline */
  uint8_t req_inline[PS_H2_CALL_INLINE_REQ];
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

#define NV(n, v, vlen)                                                                                       \
  { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen), NGHTTP2_NV_FLAG_NONE }

/* h2_conn.c */
/* "ip:port" of the client, "mem" for a connection without a socket (for logs). */
const char *ps_h2c_peer(const struct ps_h2_conn *c);
/* A call was dispatched / its stream closed: the connection is busy (never idle, never evicted) between. */
void ps_h2c_busy_begin(struct ps_h2_conn *c);
void ps_h2c_busy_end(struct ps_h2_conn *c);
/* Starts a one-shot timer for owner; NULL when out of memory. */
struct owned_timer *ps_h2c_timer_start(uv_loop_t *loop, void *owner, uv_timer_cb cb, uint64_t ms);
/* The owner lets go of its timer (NULL: none): it stops, and its memory is freed in its close callback. */
void ps_h2c_timer_release(struct owned_timer *t);
/* The owner of a timer started by ps_h2c_timer_start, NULL once released. */
void *ps_h2c_timer_owner(const uv_timer_t *t);

/* h2_send.c */
/* Moves frames from nghttp2 to the socket; a no-op while nghttp2 is on the stack (the outer recv/send
 * flushes) and once the connection is being destroyed. */
void ps_h2c_flush(struct ps_h2_conn *c);
/* Flushes c at the end of this loop turn (after the poll phase), together with every other stream of c
 * that sends meanwhile: one write for all of them. Inside nghttp2 it does nothing (the outer recv/send
 * flushes). Falls back to ps_h2c_flush when out of memory. */
void ps_h2c_flush_soon(struct ps_h2_conn *c);
/* Closes the end-of-turn flusher's handles (the server's last connection is going); it is made again by
 * the next ps_h2c_flush_soon. */
void ps_h2c_flusher_close(struct ps_h2_server *srv);

/* h2_metrics.c */
/* srv's open connections, open streams or buffered bytes changed. Their gauges are set from these counts
 * when the metrics are read (a collect hook, registered while srv has a connection), not here; only
 * without a hook (none could be registered) are they set at once. Inline: it runs at every stream's start
 * and end, and does nothing there but the test. */
void ps_h2c_gauges_hook(struct ps_h2_server *srv);
static inline void ps_h2c_gauges_changed(struct ps_h2_server *srv) {
  if (!srv->gauges_collected || srv->open_conns == 0) ps_h2c_gauges_hook(srv);
}
/* Counts a request refused before dispatch (prescale_grpc_requests_refused_total{reason}). */
void ps_h2c_count_refused(const char *reason);
/* Counts and logs the end of a call (prescale_grpc_requests_total, the duration histogram). */
void ps_h2c_record_end(struct ps_call *call);

/* h2_call.c */
/* Frees the calls kept for reuse (the connection is going). */
void ps_h2c_spare_free(struct ps_h2_conn *c);
/* The nghttp2 callbacks of streams: a call is created in on_begin_headers and freed in on_stream_close. */
int ps_h2c_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data);
int ps_h2c_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data);
int ps_h2c_on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data);
int ps_h2c_on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data);
/* From on_frame_recv: the request headers are all in (validates them, starts the call's timer). */
void ps_h2c_headers_done(struct ps_call *call);
/* After an input is consumed: starts the timer of each call of c->to_arm that still needs one. */
void ps_h2c_arm_timers(struct ps_h2_conn *c);
/* From on_frame_recv: END_STREAM arrived (answers a malformed request, or dispatches it). */
void ps_h2c_end_of_request(struct ps_call *call);
/* The call ended without ps_call_finish (status, e.g. CANCELLED); tells the dispatcher, exactly once. */
void ps_h2c_cancel_call(struct ps_call *call, int status);
/* Frees a call and gives its request bytes back to the budget; the stream is closed or the session gone. */
void ps_h2c_call_free(struct ps_call *call);
/* malloc_trim now (the last connection is going, so no timer may wait for it). */
void ps_h2c_trim_now(struct ps_h2_server *srv);

#endif
