/* gRPC server over h2c (HTTP/2 with prior knowledge): one nghttp2 server session per connection,
 * writing through net.c. It validates requests, reassembles messages, enforces grpc-timeout, and hands
 * each complete request to a dispatch function as a struct ps_call. It knows nothing of protobuf. */
#ifndef PS_H2_CONN_H
#define PS_H2_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "grpc.h"
#include "list.h"
#include "net.h"

#define PS_H2_MAX_CONCURRENT_STREAMS 256         /* SETTINGS_MAX_CONCURRENT_STREAMS (--grpc-max-streams) */
#define PS_H2_INITIAL_WINDOW         (1u << 20)  /* per-stream receive window we advertise */
#define PS_H2_CONN_WINDOW            (4u << 20)  /* connection receive window */
#define PS_H2_MAX_HEADER_LIST        (64u << 10) /* SETTINGS_MAX_HEADER_LIST_SIZE */
#define PS_H2_MAX_PATH               256         /* longer :path -> UNIMPLEMENTED without copying it */
#define PS_H2_MAX_STREAM_PENDING                                                                             \
  (256u << 10) /* response bytes queued on one stream before ps_call_send                                    \
                * refuses with UV_ENOBUFS (a watcher that never reads) */
/* Client RST_STREAMs allowed per connection: a token bucket of PS_H2_RST_BURST refilled at
 * PS_H2_RST_PER_SEC. Beyond it the connection gets GOAWAY ENHANCE_YOUR_CALM: opening and resetting
 * streams in a loop costs us a dispatch each and the client nothing (CVE-2023-44487, "rapid reset").
 * Newer libnghttp2 (1.57, and Debian's patched 1.52) has its own limiter (1000, 33/s, GOAWAY
 * INTERNAL_ERROR); ours is below its burst so that it acts first, and works on every version. */
#define PS_H2_RST_BURST   500
#define PS_H2_RST_PER_SEC 50

/* A client must send the HTTP/2 connection preface and its SETTINGS this soon after connecting, or the
 * connection is closed: otherwise clients that connect and say nothing could hold every one of
 * PS_NET_MAX_CONNS slots and lock KEDA out. */
#define PS_H2_PREFACE_TIMEOUT_MS 10000
/* A connection that greeted is closed, with GOAWAY(NO_ERROR), after this long without a call in progress
 * (--grpc-idle-timeout): counted from the greeting or from the end of its last call, as grpc-go's
 * MaxConnectionIdle counts. PINGs and the bytes of a request that never completes do not count, so a client
 * that trickles bytes is closed too. KEDA keeps one connection and calls on it every polling interval (30 s
 * by default) and every HPA sync (15 s), so it is never idle this long; a client with a longer interval just
 * reconnects. While busy (a call dispatched and not closed, e.g. a StreamIsActive watch) there is no limit.
 * At the connection limit, the idle connection idle longest is evicted for a new one, with the same
 * GOAWAY; a busy one never is. */
#define PS_H2_IDLE_TIMEOUT_MS    (5 * 60 * 1000)
/* Connection ageing (docs/reliability.md, "Connection ageing"), grpc-go's MaxConnectionAge and
 * MaxConnectionAgeGrace: a connection that greeted this long ago (--max-connection-age, each connection's
 * age within +-PS_H2_AGE_JITTER_PCT % of it, so that connections opened together do not all reconnect
 * together) gets the two-step GOAWAY(NO_ERROR) of a drain: its calls in flight finish, its client opens the
 * next ones on a new connection, resolving the Service's name again, so that replicas behind a headless
 * Service share KEDA's calls (kedacore/keda#8192). Whatever the connection still has open after the grace
 * (--max-connection-age-grace) is cut off, watches included. In struct ps_h2_server, 0 = never: the
 * defaults below are the flags'. */
#define PS_H2_MAX_AGE_MS         (30 * 60 * 1000)
#define PS_H2_MAX_AGE_GRACE_MS   (30 * 1000)
#define PS_H2_AGE_JITTER_PCT     10

/* Request memory (docs/reliability.md, "Request memory"). The request bytes buffered by every stream of
 * every connection, until the request is dispatched, are counted against one budget: a stream whose next
 * bytes would exceed it is answered RESOURCE_EXHAUSTED and its bytes are released. Buffers grow with the
 * bytes that arrive, not with the length a prefix announces. Small messages (at most
 * PS_H2_SMALL_REQUEST, as KEDA's are) may use PS_H2_BUFFER_RESERVE beyond the budget, so that uploads
 * that fill it do not lock KEDA out. */
#define PS_H2_MAX_BUFFERED_DEFAULT (64u << 20) /* PS_H2_MAX_BUFFERED, --grpc-max-buffered */
#define PS_H2_SMALL_REQUEST        (16u << 10) /* one DATA frame at the default SETTINGS_MAX_FRAME_SIZE */
#define PS_H2_BUFFER_RESERVE       (1u << 20)
/* A request must arrive whole (END_STREAM) this soon after its headers, with or without grpc-timeout,
 * or it is answered DEADLINE_EXCEEDED and its buffer freed. Only the arrival of the request is timed:
 * the response of a server stream may go on for as long as it likes. --grpc-request-timeout. */
#define PS_H2_REQUEST_TIMEOUT_MS   10000
/* glibc keeps freed memory in its heap (and raises its mmap threshold after a large free), so memory an
 * attack made us allocate would stay with the process. After PS_H2_TRIM_AFTER bytes of request buffers
 * were freed, malloc_trim(0) runs, at most once per PS_H2_TRIM_INTERVAL_MS, from a timer on the loop. */
#define PS_H2_TRIM_AFTER           (1u << 20)
#define PS_H2_TRIM_INTERVAL_MS     1000
/* The steady path allocates nothing of its own per call: a connection keeps up to PS_H2_SPARE_CALLS calls
 * whose streams closed for its next streams (with their response buffer, if at most PS_H2_SPARE_OUT_MAX
 * bytes), freed with the connection; a request message of at most PS_H2_CALL_INLINE_REQ bytes that
 * arrived in one piece is copied into its call instead of a buffer of its own (it is still charged to the
 * request-memory budget). */
#define PS_H2_SPARE_CALLS          16
#define PS_H2_SPARE_OUT_MAX        4096
#define PS_H2_CALL_INLINE_REQ      512

struct ps_call;

/* Requests that never reach the dispatcher are answered here, as Trailers-Only responses:
 *   :method not POST            -> HTTP 405, INTERNAL (as grpc-java)
 *   content-type not gRPC       -> HTTP 415, INVALID_ARGUMENT (as grpc-go)
 *   header list > MAX_HEADER_LIST -> RESOURCE_EXHAUSTED;  :path > PS_H2_MAX_PATH -> UNIMPLEMENTED
 *   malformed grpc-timeout      -> INVALID_ARGUMENT
 *   message > max_msg           -> RESOURCE_EXHAUSTED (at once, before buffering it)
 *   request bytes over the budget -> RESOURCE_EXHAUSTED (max_buffered; the stream's bytes are released)
 *   request incomplete after request_timeout_ms -> DEADLINE_EXCEEDED
 *   compressed message          -> UNIMPLEMENTED (we advertise grpc-accept-encoding: identity)
 *   0 messages / 2+ / truncated -> INTERNAL "missing request message" / "too many request messages" /
 *                                  "incomplete request message"
 *   grpc-timeout passed         -> DEADLINE_EXCEEDED (and the cancel callback if dispatched)
 * When the answer goes out before the client finished its request, RST_STREAM(NO_ERROR) follows
 * (RFC 9113 8.1). */

/* A complete request arrived (END_STREAM with exactly one message). path is the :path header
 * ("/externalscaler.ExternalScaler/IsActive"); msg is valid only during the call. The dispatcher owns
 * the duty to end the call with ps_call_finish, now or later, unless it is cancelled first. */
typedef void (*ps_call_dispatch_fn)(struct ps_call *call, const char *path, const uint8_t *msg, size_t len,
                                    void *arg);

/* The call ended without ps_call_finish: the client reset the stream or disconnected, or its deadline
 * passed (the h2 layer has already answered DEADLINE_EXCEEDED). After this returns the call pointer is
 * dead: the dispatcher must drop every reference to it inside the callback. */
typedef void (*ps_call_cancel_cb)(struct ps_call *call, void *arg);

struct ps_h2_conn;
struct ps_h2_mem;

struct ps_h2_server {
  uv_loop_t *loop;
  ps_call_dispatch_fn dispatch;
  void *dispatch_arg;
  size_t max_msg;              /* PS_GRPC_MAX_MSG; 0 means PS_GRPC_MAX_MSG_DEFAULT */
  uint64_t preface_timeout_ms; /* 0 means PS_H2_PREFACE_TIMEOUT_MS */
  size_t max_buffered;         /* 0 means PS_H2_MAX_BUFFERED_DEFAULT */
  uint64_t request_timeout_ms; /* 0 means PS_H2_REQUEST_TIMEOUT_MS */
  uint64_t idle_timeout_ms;    /* 0 means PS_H2_IDLE_TIMEOUT_MS */
  size_t max_streams;          /* per connection; 0 means PS_H2_MAX_CONCURRENT_STREAMS */
  /* Runs (may be NULL) when the last connection is gone after ps_h2_server_drain or _terminate, from
   * the connection's close path: it should only schedule work (e.g. start a timer), not close things. */
  void (*on_idle)(void *arg);
  void *idle_arg;
  /* statistics, kept current by h2_conn (also exported as metrics) */
  size_t open_conns;
  size_t open_streams;
  struct ps_grpc_budget buffered; /* request bytes held by every stream (limit: max_buffered) */
  bool gauges_collected; /* the gauges of the three above are set when /metrics is read (h2_metrics.c) */
  size_t trim_freed;     /* bytes of request buffers freed since the last malloc_trim */
  uint64_t trim_last_ms;
  void *trim_timer;   /* a pending trim; it closes with the last connection */
  size_t writes;      /* batches of frames written (one ps_net_write each: see ps_h2c_flush) */
  size_t idle_closed; /* connections closed by the idle timeout */
  size_t evicted;     /* idle connections evicted at the connection limit */
  /* Connection ageing (PS_H2_MAX_AGE_MS): max_age_ms 0 = never; max_age_grace_ms 0 = what is open is cut
   * off as soon as the age is reached (the GOAWAY still goes first). */
  uint64_t max_age_ms;
  uint64_t max_age_grace_ms;
  uint64_t age_rng; /* the jitter's random state (seeded on first use) */
  size_t opened;    /* connections accepted on a socket */
  size_t aged;      /* connections told to go away because of their age */
  size_t age_cut;   /* aged connections still open at the end of the grace, closed */
  /* kept by h2_conn: every connection not yet destroyed, memory ones included (zeroed: empty) */
  struct ps_list conns;
  /* Frames a call submits outside the connection's input (a StreamIsActive update from a refresh, an answer
   * after a first load) are written at the end of the loop turn, one write per connection for all its
   * streams: kept by h2_conn, the connections with frames due (zeroed: empty), and the handles that flush
   * them (created with the first such send, closed with the last connection). */
  struct ps_list flush_due;
  void *flusher;
  struct ps_h2_mem
      *mem;      /* nghttp2's free lists (h2_mem.h), from the first connection until the last is gone */
  bool draining; /* ps_h2_server_drain or _terminate ran: new connections get GOAWAY at once */
};

/* The age of one connection: age_ms moved by random (uniform over 0..UINT32_MAX) within
 * +-PS_H2_AGE_JITTER_PCT % of it, from age_ms - 10 % for 0 to age_ms + 10 % for UINT32_MAX. */
uint64_t ps_h2_age_jitter(uint64_t age_ms, uint32_t random);

/* Plug into ps_net_listen with the struct ps_h2_server as listener arg. */
extern const struct ps_net_proto ps_h2_net_proto;

/* Declares the prescale_grpc_* metric families (idempotent; also done when a connection opens):
 * prescale_grpc_requests_total{method,code}, prescale_grpc_request_duration_seconds{method},
 * prescale_grpc_connections, prescale_grpc_streams, prescale_grpc_buffered_bytes,
 * prescale_grpc_requests_refused_total{reason="too_large"|"memory"|"request_timeout"},
 * prescale_grpc_connections_opened_total, prescale_grpc_connections_aged_total and
 * prescale_grpc_connections_age_cut_total. The method label is "unknown" unless the dispatcher handled the
 * call with a status other than UNIMPLEMENTED, so clients cannot mint series. */
int ps_h2_metrics_declare(void);

/* ---- graceful shutdown ---------------------------------------------------------------------- */

/* Starts a graceful shutdown of every connection (RFC 9113 6.8), the two-step way nghttp2 documents
 * for nghttp2_submit_shutdown_notice: first GOAWAY(NO_ERROR, last-stream-id 2^31-1), which tells the
 * client to open no more streams here, and a PING; when the client acknowledges that PING (one round
 * trip, so every HEADERS it sent before seeing the first GOAWAY has arrived), the final
 * GOAWAY(NO_ERROR) with the last stream id this connection accepted. Streams above it are not
 * processed, so the client knows it may retry them elsewhere. Calls already accepted go on normally;
 * a connection closes itself once the final GOAWAY is out and its last call has ended, and on_idle runs
 * when the last one is gone (not when none was open to begin with: check open_conns). A client that
 * never acknowledges the PING keeps its connection until ps_h2_server_terminate. A connection opened
 * from here on gets the final GOAWAY at once. Idempotent. A connection that reaches its age
 * (PS_H2_MAX_AGE_MS) gets the same two steps, alone. */
void ps_h2_server_drain(struct ps_h2_server *srv);
/* The end of a drain (or a shutdown without one): every connection gets the final GOAWAY(NO_ERROR) now,
 * if it has not yet, and is closed once its queued bytes are written. Calls still open are cancelled
 * when their connection goes (cancel callbacks run; run the loop afterwards). Returns how many calls
 * were still open, i.e. are cut off; calls the dispatcher already finished do not count. */
size_t ps_h2_server_terminate(struct ps_h2_server *srv);

/* ---- a connection without a socket (fuzzing, tests) ------------------------------------------ */
/* A server session whose output is appended to *out (the caller drains it as it likes). srv->loop
 * must be a live loop (grpc-timeout timers run on it). NULL on ENOMEM. */
struct ps_h2_conn *ps_h2_conn_new_mem(struct ps_h2_server *srv, struct ps_buf *out);
/* The same input path a socket's bytes take. 0, or a negative error once the session is unusable
 * (a socket would be closed then). */
int ps_h2_conn_feed(struct ps_h2_conn *c, const uint8_t *data, size_t len);
/* Cancels the calls still open (their cancel callbacks run) and frees everything. Timers close
 * asynchronously: run the loop afterwards. */
void ps_h2_conn_free(struct ps_h2_conn *c);

/* ---- the call API, used by the dispatcher (service.c) ------------------------------------------ */

/* Sends one response message; the response headers (:status 200, content-type application/grpc,
 * grpc-accept-encoding identity) go first if not sent yet. Copies msg. 0, UV_ENOBUFS (the stream's
 * unsent bytes exceed PS_H2_MAX_STREAM_PENDING), UV_ENOMEM, or UV_EPIPE when the call already ended. */
int ps_call_send(struct ps_call *call, const uint8_t *msg, size_t len);
/* Ends the call with trailers grpc-status and, if message is non-NULL and non-empty, grpc-message
 * (percent-encoded). Before any message was sent this is a trailers-only response. The call pointer is
 * dead for the dispatcher after this returns; the cancel callback will not run. */
void ps_call_finish(struct ps_call *call, int grpc_status, const char *message);
/* Registers the cancel callback (one per call; a second call replaces it). */
void ps_call_on_cancel(struct ps_call *call, ps_call_cancel_cb cb, void *arg);
/* Loop time (uv_now, ms) at which the client's grpc-timeout expires; 0 when it sent none. */
uint64_t ps_call_deadline(const struct ps_call *call);
/* The method name after the last '/', e.g. "IsActive". */
const char *ps_call_method(const struct ps_call *call);

#endif
