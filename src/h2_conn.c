/* gRPC server over h2c: one nghttp2 server session per connection, fed by net.c's on_read and writing
 * through ps_net_write. See PROTOCOL-HTTP2.md (grpc/grpc doc) for the request/response shapes. This file
 * is the connection half: the session, GOAWAY and graceful drain, the preface and idle timers and eviction;
 * the calls (streams) and request memory are in h2_call.c, sending (frames serialized into one write, the
 * end-of-turn flush) in h2_send.c, the shared state in h2_conn_int.h.
 *
 * Lifetimes: a struct ps_call is created in on_begin_headers and freed only in on_stream_close (or when
 * the connection is destroyed). The connection itself is freed only from net.c's on_close, never from
 * inside an nghttp2 callback. Calls into nghttp2 never nest: code that runs inside a callback (the
 * dispatcher, cancel callbacks) may submit frames, and the flush runs when the outer recv/send returns. */
#include "h2_conn.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2_conn_int.h"
#include "h2_mem.h"
#include "log.h"
#include "metrics.h"

/* The opaque data of the PING that follows the shutdown notice; its ACK starts the final GOAWAY. */
static const uint8_t drain_ping[8] = {'p', 's', 'd', 'r', 'a', 'i', 'n', '1'};

/* ---- helpers for h2_call.c ------------------------------------------------------------------ */

const char *ps_h2c_peer(const struct ps_h2_conn *c) { return c->net ? ps_net_peer(c->net) : "mem"; }

/* ---- timers of calls and connections ------------------------------------------------------- */

static void timer_closed_cb(uv_handle_t *h) { free(h->data); }

/* Starts a one-shot timer for owner; NULL when out of memory. */
struct owned_timer *ps_h2c_timer_start(uv_loop_t *loop, void *owner, uv_timer_cb cb, uint64_t ms) {
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
void ps_h2c_timer_release(struct owned_timer *t) {
  if (t == NULL) return;
  t->owner = NULL;
  uv_close((uv_handle_t *)&t->timer, timer_closed_cb);
}

void *ps_h2c_timer_owner(const uv_timer_t *t) { return ((const struct owned_timer *)t->data)->owner; }

/* ---- nghttp2 callbacks of the connection (the stream ones are in h2_call.c) -------------------- */

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
    ps_log(PS_LOG_WARN, "client resets streams too fast; closing its connection", "peer", ps_h2c_peer(c),
           NULL);
  c->calm_down = true;
}

static void conn_timer_release(struct ps_h2_conn *c) {
  ps_h2c_timer_release(c->timeout);
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
    ps_log(PS_LOG_DEBUG, "http2 goaway not submitted", "peer", ps_h2c_peer(c), "error", nghttp2_strerror(rv),
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
  if (frame->hd.type == NGHTTP2_HEADERS && !call->headers_done) ps_h2c_headers_done(call);
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ps_h2c_end_of_request(call);
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

/* ---- connection lifecycle ------------------------------------------------------------------- */

static nghttp2_session_callbacks *make_callbacks(void) {
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return NULL;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, ps_h2c_on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, ps_h2c_on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, ps_h2c_on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, ps_h2c_on_stream_close);
  return cbs;
}

/* With no connection left, nghttp2's free lists go back to malloc (so an idle server keeps none). */
static void mem_release(struct ps_h2_server *srv) {
  if (srv->open_conns != 0 || srv->mem == NULL) return;
  ps_h2_mem_release(srv->mem);
  if (srv->mem->live == 0) { /* every session is deleted, so this holds; else a block would outlive it */
    free(srv->mem);
    srv->mem = NULL;
  }
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
  ps_list_init(&c->to_arm);
  ps_list_init(&c->spare);
  if (srv->mem == NULL && (srv->mem = malloc(sizeof *srv->mem)) != NULL) ps_h2_mem_init(srv->mem);
  nghttp2_session_callbacks *cbs = make_callbacks();
  nghttp2_mem hooks = srv->mem != NULL ? ps_h2_mem_hooks(srv->mem) : (nghttp2_mem){0};
  if (cbs == NULL ||
      nghttp2_session_server_new3(&c->session, cbs, c, NULL, srv->mem != NULL ? &hooks : NULL) != 0) {
    if (cbs != NULL) nghttp2_session_callbacks_del(cbs);
    free(c);
    mem_release(srv);
    return NULL;
  }
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
       srv->max_streams ? (uint32_t)srv->max_streams : PS_H2_MAX_CONCURRENT_STREAMS},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, PS_H2_INITIAL_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, PS_H2_MAX_HEADER_LIST},
  };
  /* The connection window starts at 64 KiB (RFC 9113 6.9.2) whatever SETTINGS say; widen it so that
   * several streams can upload at once without waiting for WINDOW_UPDATEs. */
  if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
      nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, PS_H2_CONN_WINDOW) != 0) {
    nghttp2_session_del(c->session);
    free(c);
    mem_release(srv);
    return NULL;
  }
  ps_list_insert_head(&srv->conns, &c->node);
  srv->open_conns++;
  ps_h2c_gauges_changed(srv);
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
  ps_list_foreach(n, &c->calls) ps_h2c_cancel_call(ps_list_entry(n, struct ps_call, node), PS_GRPC_CANCELLED);
  nghttp2_session_del(c->session);
  for (struct ps_list *n; (n = ps_list_first(&c->calls)) != NULL;)
    ps_h2c_call_free(ps_list_entry(n, struct ps_call, node));
  ps_h2c_spare_free(c);
  ps_buf_free(&c->batch);
  struct ps_h2_server *srv = c->srv;
  if (c->flush_due) ps_list_remove(&c->flush_node);
  ps_list_remove(&c->node);
  srv->open_conns--;
  if (srv->open_conns == 0)
    ps_h2c_flusher_close(srv); /* like the trim timer: never outlives the connections */
  ps_h2c_gauges_changed(srv);
  free(c);
  mem_release(srv);
  /* The trim timer never outlives the connections (so it never holds a loop that should end): the last
   * one to go trims now what is due. */
  if (srv->open_conns == 0 && srv->trim_timer != NULL) {
    ps_h2c_timer_release(srv->trim_timer);
    srv->trim_timer = NULL;
    ps_h2c_trim_now(srv);
  }
  if (srv->draining && srv->open_conns == 0 && srv->on_idle != NULL) srv->on_idle(srv->idle_arg);
}

static int conn_recv(struct ps_h2_conn *c, const uint8_t *data, size_t len) {
  if (c->dead || c->closed) return UV_EPIPE;
  c->in_session++;
  ssize_t n = nghttp2_session_mem_recv(c->session, data, len);
  c->in_session--;
  if (n < 0) {
    /* Every error mem_recv returns is fatal (bad preface, flood, out of memory): protocol errors it
     * can answer, it answers itself with GOAWAY and keeps going until want_read turns false. */
    ps_log(PS_LOG_DEBUG, "http2 session failed", "peer", ps_h2c_peer(c), "error", nghttp2_strerror((int)n),
           NULL);
    c->fatal = true;
    c->dead = true;
  } else if (c->calm_down) {
    nghttp2_session_terminate_session(c->session, NGHTTP2_ENHANCE_YOUR_CALM);
  }
  ps_h2c_arm_timers(c);
  ps_h2c_flush(c);
  return c->dead ? UV_EPROTO : 0;
}

/* ---- net.c protocol ------------------------------------------------------------------------- */

static void preface_timeout_cb(uv_timer_t *t) {
  struct ps_h2_conn *c = ps_h2c_timer_owner(t);
  if (c == NULL) return;
  ps_log(PS_LOG_INFO, "no HTTP/2 preface in time; closing the connection", "peer", ps_h2c_peer(c), NULL);
  conn_timer_release(c);
  c->dead = true;
  ps_net_close(c->net); /* asynchronous: on_close frees the connection later */
}

/* ---- the connection's timer: the idle timeout, the age, eviction ----------------------------------- */

static uint64_t idle_timeout_ms(const struct ps_h2_server *srv) {
  return srv->idle_timeout_ms ? srv->idle_timeout_ms : PS_H2_IDLE_TIMEOUT_MS;
}

static void conn_timer_cb(uv_timer_t *t);
static void conn_drain(struct ps_h2_conn *c);
static size_t conn_terminate(struct ps_h2_conn *c);

/* From the greeting on, one timer per connection serves both limits: it fires at the earlier of the idle
 * deadline (while no call is in progress) and the age's next step. It is armed lazily: a call that begins
 * or ends only moves the deadline later (busy: no idle deadline; idle again: a later one), so the timer is
 * left where it is, armed no later than the real deadline, and conn_timer_cb, when it fires early, finds
 * the deadline not reached and arms it again for the real one. Re-arming it at every call's start and end
 * was a removal and an insertion in libuv's timer heap each time, among 1,000 connections' timers at
 * `h2load -c 1000 -m 4` (~3.7 % of prescale's CPU there, perf); now a connection that keeps calling
 * re-arms it once per idle timeout. The timer is started again only when the deadline moved earlier than
 * where it is armed, or it is not armed (the first arm after the greeting replaces the preface's). */
static void conn_timer_arm(struct ps_h2_conn *c) {
  if (c->closed || c->timeout == NULL || !c->greeted) return;
  uint64_t due = c->busy == 0 ? c->idle_since + idle_timeout_ms(c->srv) : 0;
  if (c->age_due != 0 && (due == 0 || c->age_due < due)) due = c->age_due;
  if (due == 0) {
    /* No deadline: an armed timer just fires once for nothing. Not armed by us, it may still be the
     * preface's, which the greeting ends. */
    if (c->timer_at == 0) uv_timer_stop(&c->timeout->timer);
    return;
  }
  if (c->timer_at != 0 && c->timer_at <= due) return;
  c->timer_at = due;
  uint64_t now = uv_now(c->srv->loop);
  uv_timer_start(&c->timeout->timer, conn_timer_cb, due > now ? due - now : 0, 0);
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
  ps_h2c_flush(c);
}

static void idle_close(struct ps_h2_conn *c) {
  ps_log(PS_LOG_DEBUG, "gRPC connection idle; closing it", "peer", ps_h2c_peer(c), NULL);
  c->srv->idle_closed++;
  goodbye(c, "idle");
  c->dead = true;
  ps_net_close(c->net); /* flushes the GOAWAY, then FIN; on_close frees the connection later */
}

uint64_t ps_h2_age_jitter(uint64_t age_ms, uint32_t random) {
  /* PCT % of age_ms without overflow, then an offset into [0, 2 x span] (random / 2^32 < 1). */
  uint64_t span = age_ms / 100 * PS_H2_AGE_JITTER_PCT + age_ms % 100 * PS_H2_AGE_JITTER_PCT / 100;
  uint64_t offset = (uint64_t)((double)(2 * span) * ((double)random / 4294967296.0));
  return age_ms - span + offset;
}

/* The next draw of splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
 * 2014): a good spread from a counter, which is all jitter needs (nothing here is a secret). Seeded from
 * the clock on first use, so that replicas started apart draw apart. */
static uint32_t age_random(struct ps_h2_server *srv) {
  if (srv->age_rng == 0) srv->age_rng = uv_hrtime() | 1;
  uint64_t z = srv->age_rng += 0x9e3779b97f4a7c15u;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* The connection reached its age: the same two-step GOAWAY as a shutdown (conn_drain), so that its calls in
 * flight finish and its client opens the next ones on a new connection, resolving the Service's name again
 * (grpc-go re-resolves only when a connection goes; kedacore/keda#8192). Not when it is going already (a
 * drain, an eviction). The grace starts now. */
static void conn_age(struct ps_h2_conn *c) {
  struct ps_h2_server *srv = c->srv;
  c->aged = true;
  c->age_due = 0;
  if (c->dead || c->fatal || c->goaway != GOAWAY_NONE) return;
  srv->aged++;
  ps_metrics_add("prescale_grpc_connections_aged_total", "", 1);
  ps_log(PS_LOG_DEBUG, "gRPC connection reached its max age; asking the client to reconnect", "peer",
         ps_h2c_peer(c), NULL);
  c->age_due = uv_now(srv->loop) + srv->max_age_grace_ms;
  conn_drain(c);
}

/* The grace is over and the connection is still here: whatever it has open is cut off now, calls cancelled
 * (their cancel callbacks run) and the connection closed, long StreamIsActive watches included (KEDA opens
 * its watch again on its new connection). grpc-go's server does the same: at MaxConnectionAge it drains the
 * transport, and after MaxConnectionAgeGrace it closes it, which cancels every stream left (keepalive() in
 * internal/transport/http2_server.go). A client that never acknowledged the PING ends here too. */
static void conn_age_cut(struct ps_h2_conn *c) {
  struct ps_h2_server *srv = c->srv;
  c->age_due = 0;
  srv->age_cut++;
  ps_metrics_add("prescale_grpc_connections_age_cut_total", "", 1);
  char calls[24];
  snprintf(calls, sizeof calls, "%zu", conn_terminate(c));
  ps_log(PS_LOG_INFO, "gRPC connection still open after its max age grace; closing it", "peer",
         ps_h2c_peer(c), "calls_cut", calls, NULL);
}

static void conn_timer_cb(uv_timer_t *t) {
  struct ps_h2_conn *c = ps_h2c_timer_owner(t);
  if (c == NULL) return;
  c->timer_at = 0; /* a one-shot timer: it is not armed any more */
  if (c->closed || c->dead) return;
  uint64_t now = uv_now(c->srv->loop);
  if (c->age_due != 0 && now >= c->age_due) {
    if (c->aged) {
      conn_age_cut(c);
      return;
    }
    conn_age(c);
    if (c->dead) return;
  }
  if (c->busy == 0 && now >= c->idle_since + idle_timeout_ms(c->srv)) {
    idle_close(c);
    return;
  }
  conn_timer_arm(c);
}

/* The connection has no call in progress from now on: the idle timeout starts over, and the connection
 * becomes the listener's most recently idle one (evicted last). As grpc-go's MaxConnectionIdle counts it,
 * idleness starts when the connection is established or its last call ends. Nothing else restarts it: not
 * PINGs, not bytes of a request that never completes, so a client that trickles bytes is closed on time. */
static void idle_again(struct ps_h2_conn *c) {
  if (c->closed || c->net == NULL || c->timeout == NULL || !c->greeted) return;
  c->idle_since = uv_now(c->srv->loop);
  conn_timer_arm(c);
  ps_net_set_idle(c->net, true);
}

/* The preface and SETTINGS arrived: the preface timeout gives way to the idle timeout and the age. The age
 * counts from here, not from the accept: before it the connection is not HTTP/2 yet (nothing could be told
 * to go away) and its one timer is the preface's, which bounds the difference to PS_H2_PREFACE_TIMEOUT_MS;
 * grpc-go too starts its age timer once it has read the client's preface and SETTINGS (newHTTP2Server). */
static void greeted(struct ps_h2_conn *c) {
  if (c->greeted) return;
  c->greeted = true;
  if (c->net != NULL && c->srv->max_age_ms != 0)
    c->age_due = uv_now(c->srv->loop) + ps_h2_age_jitter(c->srv->max_age_ms, age_random(c->srv));
  if (c->busy == 0) idle_again(c);
}

/* A call was dispatched: the connection is busy (not idle, never evicted) until that call's stream closes;
 * only the age still applies. Streams still receiving their request do not count: they are not work yet,
 * and a client that opens them and never finishes them must not keep its connection. */
void ps_h2c_busy_begin(struct ps_h2_conn *c) {
  if (c->busy++ > 0 || c->net == NULL) return;
  conn_timer_arm(c);
  ps_net_set_idle(c->net, false);
}

void ps_h2c_busy_end(struct ps_h2_conn *c) {
  if (--c->busy == 0) idle_again(c);
}

static void *net_on_open(struct ps_net_conn *net, void *arg) {
  struct ps_h2_conn *c = conn_new(arg, net, NULL);
  if (c == NULL) return NULL;
  struct ps_h2_server *srv = arg;
  srv->opened++;
  ps_metrics_add("prescale_grpc_connections_opened_total", "", 1);
  c->timeout =
      ps_h2c_timer_start(srv->loop, c, preface_timeout_cb,
                         srv->preface_timeout_ms ? srv->preface_timeout_ms : PS_H2_PREFACE_TIMEOUT_MS);
  if (c->timeout == NULL) {
    conn_destroy(c);
    return NULL;
  }
  /* Evictable from the start: a client that has not even greeted holds a slot for nothing. */
  ps_net_set_idle(net, true);
  ps_h2c_flush(c); /* our SETTINGS go first (RFC 9113 3.4: the server preface) */
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
static void net_on_drain(void *state) { ps_h2c_flush(state); }
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
  ps_h2c_flush(c);
}

void ps_h2_server_drain(struct ps_h2_server *srv) {
  srv->draining = true;
  /* flush never frees a connection (a socket's closes in net.c's close callback, later), so the list
   * stays intact while it is walked. */
  ps_list_foreach(n, &srv->conns) conn_drain(ps_list_entry(n, struct ps_h2_conn, node));
}

/* The end of one connection's drain (the shutdown's, or its age's grace): the final GOAWAY(NO_ERROR) if it
 * has not had it, then the close once its queued bytes are written. Returns how many of its calls were
 * still open; they are cancelled when net.c's on_close destroys the connection. */
static size_t conn_terminate(struct ps_h2_conn *c) {
  if (c->closed) return 0;
  size_t open = 0;
  ps_list_foreach(m, &c->calls) if (!ps_list_entry(m, struct ps_call, node)->ended) open++;
  if (!c->dead && !c->fatal && c->goaway != GOAWAY_FINAL) {
    /* Names the same last stream as goaway_final, and makes nghttp2 stop reading and writing once
     * it is out (its TERM_ON_SEND), so nothing queued behind it delays the close. */
    c->goaway = GOAWAY_FINAL;
    /* What calls sent in this loop turn (ps_h2c_flush_soon) goes out first: nothing queued behind the
     * GOAWAY is sent, and a call finished just before the terminate would lose its answer. */
    ps_h2c_flush(c);
    nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
  }
  ps_h2c_flush(c);
  /* Whatever flush could not send (a peer that stopped reading) is dropped: this is the deadline. */
  c->dead = true;
  if (c->net != NULL) ps_net_close(c->net);
  return open;
}

size_t ps_h2_server_terminate(struct ps_h2_server *srv) {
  srv->draining = true;
  size_t open = 0;
  ps_list_foreach(n, &srv->conns) open += conn_terminate(ps_list_entry(n, struct ps_h2_conn, node));
  return open;
}

struct ps_h2_conn *ps_h2_conn_new_mem(struct ps_h2_server *srv, struct ps_buf *out) {
  struct ps_h2_conn *c = conn_new(srv, NULL, out);
  if (c != NULL) ps_h2c_flush(c);
  return c;
}

int ps_h2_conn_feed(struct ps_h2_conn *c, const uint8_t *data, size_t len) { return conn_recv(c, data, len); }
void ps_h2_conn_free(struct ps_h2_conn *c) { conn_destroy(c); }
