/* grpcblast's HTTP/2 client side without sockets (RFC 9113, RFC 7541): the pre-encoded request, the
 * per-connection state, the frame walker over the bytes a server sent, and the latency histogram.
 * grpcblast.c owns the sockets and the clock and calls these; tests/fuzz/fuzz_blast_h2.c calls the walker.
 *
 * Every request is the same bytes but for its stream id: a HEADERS frame whose HPACK block uses only
 * static-table indices and literals without indexing (so no request changes the server's decoder state,
 * RFC 7541 §6.2.2) and a DATA frame with the request body and END_STREAM. Every answer is checked: :status
 * 200, the DATA bytes equal to the expected ones, and with grpc set the trailers' grpc-status 0. */
#ifndef PS_BLAST_H2_H
#define PS_BLAST_H2_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

/* Streams in flight per connection (-m): at most this. */
#define PS_BLAST_MAX_STREAMS 1024
/* The largest frame payload a server may send us: SETTINGS_MAX_FRAME_SIZE left at its initial value
 * (RFC 9113 §6.5.2); a longer frame is a FRAME_SIZE_ERROR (§4.2). */
#define PS_BLAST_MAX_FRAME   16384
/* A connection's read buffer: two whole frames, so that one is always walked before more is read. */
#define PS_BLAST_IN_BUF      (2 * (9 + PS_BLAST_MAX_FRAME))
/* Our SETTINGS_INITIAL_WINDOW_SIZE and the connection window we open (RFC 9113 §6.9): the server never
 * waits for a WINDOW_UPDATE in a run; the connection's is sent again each time half of it is consumed. */
#define PS_BLAST_WINDOW      (1 << 30)
/* The request: header block and body, each sent as one frame (no CONTINUATION, one DATA). */
#define PS_BLAST_MAX_BLOCK   4096
#define PS_BLAST_MAX_BODY    PS_BLAST_MAX_FRAME
/* Extra request headers (-H). */
#define PS_BLAST_MAX_HEADERS 16
/* The expected answer's DATA bytes. */
#define PS_BLAST_MAX_EXPECT  (1 << 20)
/* Room kept in a connection's output for the frames the walker answers with (SETTINGS ACK, PING ACK,
 * WINDOW_UPDATE, GOAWAY): when less is left the walker stops and resumes once the output is written. */
#define PS_BLAST_CTRL_ROOM   256
/* Header fields decoded per header block; more fails the connection (a bound on the inflate loop). */
#define PS_BLAST_MAX_FIELDS  256
/* The highest stream id a client may use (RFC 9113 §5.1.1). */
#define PS_BLAST_MAX_SID     0x7fffffffu

/* Latency histogram: exact below 2 * 2^SUB_BITS ns, then 2^SUB_BITS buckets per power of two (within
 * 0.8 %); values are capped at 2^41 ns (36 min). */
#define PS_BLAST_HIST_SUB_BITS 7
#define PS_BLAST_HIST_MAX_BITS 41
#define PS_BLAST_HIST_BUCKETS                                                                                \
  ((2 + PS_BLAST_HIST_MAX_BITS - 1 - PS_BLAST_HIST_SUB_BITS) << PS_BLAST_HIST_SUB_BITS)

/* Negative errors of the walker: the connection is closed with GOAWAY carrying the matching code. */
enum {
  PS_BLAST_E_PROTOCOL = -1,    /* PROTOCOL_ERROR (0x1) */
  PS_BLAST_E_FLOW = -3,        /* FLOW_CONTROL_ERROR (0x3) */
  PS_BLAST_E_FRAME_SIZE = -6,  /* FRAME_SIZE_ERROR (0x6) */
  PS_BLAST_E_COMPRESSION = -9, /* COMPRESSION_ERROR (0x9) */
  PS_BLAST_E_NOMEM = -12,
};

/* The request as bytes: one HEADERS and one DATA frame (or HEADERS alone, with END_STREAM, when the body
 * is empty); the stream id is written at sid_at[0] and sid_at[1] (the second only with a body). */
struct ps_blast_req {
  uint8_t bytes[9 + PS_BLAST_MAX_BLOCK + 9 + PS_BLAST_MAX_BODY];
  size_t len;
  size_t sid_at[2];
  uint32_t body_len;
};

/* What each answer must be. */
struct ps_blast_expect {
  const uint8_t *data; /* the DATA bytes, in order, over every DATA frame of the stream */
  size_t len;
  int grpc; /* the trailers (a second header block, with END_STREAM) must carry grpc-status 0 */
};

struct ps_blast_hist {
  uint64_t count[PS_BLAST_HIST_BUCKETS];
  uint64_t n;
};

/* Counts over the whole run, and the window measured ([win_start, win_end) in the caller's clock). */
struct ps_blast_stats {
  int64_t win_start, win_end;
  uint64_t issued;  /* requests sent (a stream refused by GOAWAY is taken back: it was not processed) */
  uint64_t ok;      /* answers checked and right */
  uint64_t failed;  /* wrong answers, resets, streams lost with their connection */
  uint64_t refused; /* streams above a GOAWAY's last stream id (RFC 9113 §6.8: not processed) */
  uint64_t win_ok;  /* answers completed inside the window */
  uint64_t win_failed;
  uint64_t first_fail_reason; /* a PS_BLAST_WHY_* bit of the first failure, for the message */
  struct ps_blast_hist hist;  /* latency of the answers completed inside the window, ns */
};

/* Why a stream failed (bits). */
enum {
  PS_BLAST_WHY_STATUS = 1,  /* :status not 200, or missing */
  PS_BLAST_WHY_DATA = 2,    /* DATA bytes differ from the expected, or too many, or too few */
  PS_BLAST_WHY_GRPC = 4,    /* no trailers, or grpc-status not 0 */
  PS_BLAST_WHY_RESET = 8,   /* RST_STREAM */
  PS_BLAST_WHY_LOST = 16,   /* its connection failed or closed before the answer ended */
  PS_BLAST_WHY_BLOCKS = 32, /* more header blocks than headers and trailers */
};

struct ps_blast_stream {
  uint32_t id;  /* 0: the slot is free */
  uint32_t got; /* DATA bytes received */
  int64_t sent;
  uint8_t blocks; /* header blocks received */
  uint8_t status_ok, grpc_ok;
  uint8_t why; /* PS_BLAST_WHY_* */
};

struct ps_blast_conn {
  nghttp2_hd_inflater
      *inflater; /* the server's HPACK encoder state (its dynamic table), one per connection */
  const struct ps_blast_expect *expect;
  struct ps_blast_stats *stats;
  /* Streams by id: slot (id >> 1) & ring_mask, a power of two at least twice the streams allowed, so that a
   * free slot is always near (a new id skips a slot still held by an older stream; ids need only grow,
   * RFC 9113 §5.1.1). */
  struct ps_blast_stream *ring;
  uint32_t ring_mask;
  uint32_t streams; /* -m */
  uint32_t in_flight;
  uint32_t server_max; /* the server's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says) */
  uint32_t next_sid;
  uint32_t sid_limit;     /* no stream id above this: the connection is drained and closed instead */
  int64_t send_window;    /* the connection's flow-control window for our DATA (RFC 9113 §6.9.1) */
  int64_t server_initial; /* the server's SETTINGS_INITIAL_WINDOW_SIZE: each stream's window for our DATA */
  uint32_t recv_unacked;  /* DATA bytes received since our last connection WINDOW_UPDATE */
  uint8_t got_settings;   /* the server's first SETTINGS arrived: its limits are known */
  uint8_t goaway;         /* the server sent GOAWAY: no new stream */
  uint32_t goaway_last;
  uint32_t cont_sid; /* a header block is open on this stream: only its CONTINUATION may come (§6.10) */
  uint8_t cont_end_stream;
  uint16_t cont_fields;
  uint8_t *out; /* bytes to write, owned; out_cap = room for a full batch of requests + PS_BLAST_CTRL_ROOM */
  size_t out_len, out_cap;
};

/* Builds the request. authority: host:port; headers: "name: value" each (lower-case names). Returns 0, or
 * -1 with a message in err (a block or body over its bound, a malformed header). */
int ps_blast_req_build(struct ps_blast_req *r, const char *method, const char *scheme, const char *authority,
                       const char *path, const char *const *headers, int n_headers, const uint8_t *body,
                       size_t body_len, char *err, size_t err_len);

/* Sets c up for a new connection with `streams` streams at most in flight. Returns 0 or PS_BLAST_E_NOMEM. */
int ps_blast_conn_init(struct ps_blast_conn *c, uint32_t streams, uint32_t sid_limit,
                       const struct ps_blast_expect *expect, struct ps_blast_stats *stats, size_t req_len);
/* Frees what init allocated; streams still in flight are counted as failed (lost). */
void ps_blast_conn_free(struct ps_blast_conn *c, int64_t now);
/* Appends the client preface, our SETTINGS and the connection WINDOW_UPDATE (RFC 9113 §3.4). */
void ps_blast_conn_start(struct ps_blast_conn *c);
/* Appends up to `budget` requests, as many as the streams, the server's limit, the flow-control window, the
 * stream ids and the output allow, stamped `now`. Returns how many. */
uint32_t ps_blast_conn_fill(struct ps_blast_conn *c, const struct ps_blast_req *r, int64_t now,
                            uint64_t budget);
/* Walks the complete frames in p[0..len) and sets *used to the bytes walked (a partial frame is left for
 * the next read; the walk also stops when the output has no room for a reply). Answers that end are
 * checked and counted at `now`. Returns 0 or a PS_BLAST_E_* (the connection must be closed). */
int ps_blast_conn_recv(struct ps_blast_conn *c, const uint8_t *p, size_t len, int64_t now, size_t *used);
/* Appends GOAWAY with the error code (RFC 9113 §6.8), if there is room. */
void ps_blast_conn_goaway(struct ps_blast_conn *c, uint32_t code);
/* The connection should be closed now: it may open no more streams (GOAWAY received, or ids used up) and
 * has none in flight. */
int ps_blast_conn_done(const struct ps_blast_conn *c);

void ps_blast_hist_add(struct ps_blast_hist *h, int64_t ns);
/* The q-quantile (nearest rank) in ns, the middle of its bucket; 0 when empty. */
double ps_blast_hist_quantile(const struct ps_blast_hist *h, double q);

#endif
