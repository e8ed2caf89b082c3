/* TCP listeners and connections on libuv. The only module that reads and writes server sockets;
 * protocols (h2_conn, http_server) plug in through struct ps_net_proto and never see a uv handle. */
#ifndef PS_NET_H
#define PS_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* Reading stops while more than HIGH_WATER bytes wait to be written, and resumes below LOW_WATER
 * (then on_drain is called), so a client that does not read cannot make us buffer without bound. */
#define PS_NET_HIGH_WATER      (1u << 20)
#define PS_NET_LOW_WATER       (256u << 10)
/* Connections per listener (--max-conns). At the limit a new connection evicts the listener's longest-idle
 * connection (see ps_net_set_idle); only when none is idle is the new one closed at once. */
#define PS_NET_MAX_CONNS       1024
/* Connections the kernel completes and queues before we accept them (listen(2)'s backlog): as many as the
 * listener's connection slots (--max-conns, ps_net_listener_set_slots), at least PS_NET_BACKLOG and at most
 * PS_NET_BACKLOG_MAX, so that a client opening its connections all at once (a pool, a benchmark's -c 1000)
 * finds them established however busy the loop is. A SYN that finds the queue full is dropped and sent
 * again only after the client's retransmission timeout, 1 s and then doubling (RFC 6298 2.1, 5.5). The
 * kernel caps the backlog at net.core.somaxconn (4096 by default since Linux 5.4) silently: listen(2)
 * succeeds with a larger one, and a --max-conns above somaxconn gets somaxconn's queue unless the sysctl is
 * raised. Queued connections hold kernel memory, no descriptor of ours, and count against the slots once
 * accepted. */
#define PS_NET_BACKLOG         PS_NET_MAX_CONNS
#define PS_NET_BACKLOG_MAX     65535 /* somaxconn's own ceiling before Linux 4.1 (USHRT_MAX) */
/* A closing connection gets this long to flush its queued writes to a peer that may not be reading;
 * then it is closed anyway and the rest is dropped. */
#define PS_NET_CLOSE_LINGER_MS 5000
#define PS_NET_READ_BUF        (64u << 10) /* one per listener, shared by its connections (one thread) */
/* Descriptors that no connection budget may use (ps_net_fd_budget): stdio, the loop's own (epoll, the
 * signal pipe, the async eventfd, libuv's EMFILE reserve), the listeners, the threadpool's DNS sockets, and
 * what a moment's churn holds. So accept() finds a descriptor even when every budget is spent. */
#define PS_NET_FD_RESERVE      64
/* Each listener gets at most this share of the descriptors left after the reserve (1/PS_NET_FD_SHARE), so
 * that two listeners together never take more than half and outgoing connections keep the rest. */
#define PS_NET_FD_SHARE        4
/* ps_net_nofile raises the soft RLIMIT_NOFILE toward the hard one up to this, as Go's runtime does: the
 * usual soft default of 1024 would cut the budgets below for no reason when the hard limit allows more. */
#define PS_NET_NOFILE_WANT     65536

struct ps_net_conn;
struct ps_net_listener;

struct ps_net_proto {
  /* A connection was accepted. Returns the protocol's state for it, or NULL to close it. */
  void *(*on_open)(struct ps_net_conn *c, void *listener_arg);
  /* Bytes arrived (valid during the call). Return 0, or a negative error to close the connection
   * (queued writes are flushed first). */
  int (*on_read)(void *state, const uint8_t *data, size_t len);
  /* The write queue fell below PS_NET_LOW_WATER after having been above it. May be NULL. */
  void (*on_drain)(void *state);
  /* The peer closed, an error happened, or ps_net_close completed. Called exactly once; the protocol
   * frees `state` here and must not use the conn afterwards. */
  void (*on_close)(void *state);
  /* May be NULL. The connection is being evicted to make room for a new one (it was idle, see
   * ps_net_set_idle): say goodbye with ps_net_write if the protocol has a way (HTTP/2 GOAWAY). net.c closes
   * it right after this returns, at once, so that its descriptor is free for the new connection; the bytes
   * already written are still delivered by the kernel. on_close follows as usual. */
  void (*on_evict)(void *state);
};

/* Parses "host:port", "[v6]:port" or ":port" (all addresses) into ss. Numeric hosts and "localhost"
 * only: listening addresses are never resolved through DNS. 0 or UV_EINVAL. */
int ps_net_parse_addr(const char *hostport, struct sockaddr_storage *ss);

/* Binds and listens. `proto` and `arg` must outlive the listener. 0 or a UV error (UV_EADDRINUSE...). */
int ps_net_listen(uv_loop_t *loop, const char *hostport, const struct ps_net_proto *proto, void *arg,
                  struct ps_net_listener **out);
/* The port actually bound (useful with port 0). */
int ps_net_listener_port(const struct ps_net_listener *l);
size_t ps_net_listener_conns(const struct ps_net_listener *l);
/* The connection slots of the listener: its connection limit (PS_NET_MAX_CONNS until set; at least 1) and
 * its name in the slot metrics ("grpc", "http"; NULL, the default: not counted). `name` is not copied. The
 * listen backlog follows the limit (ps_net_backlog). 0, or the error of listen(2) (the limit is set, the
 * backlog stays as it was). */
int ps_net_listener_set_slots(struct ps_net_listener *l, size_t max_conns, const char *name);
/* The listen backlog for max_conns slots: max_conns within [PS_NET_BACKLOG, PS_NET_BACKLOG_MAX] (the kernel
 * may cap it lower: net.core.somaxconn). */
int ps_net_backlog(size_t max_conns);
/* Connections evicted and refused at the limit since the listener started (also counted in
 * prescale_connections_evicted_total / prescale_connections_refused_total{listener=name}). */
size_t ps_net_listener_evicted(const struct ps_net_listener *l);
size_t ps_net_listener_refused(const struct ps_net_listener *l);
/* Makes the listener speak TLS with `ctx` (not owned: it must outlive the listener; ps_tls_ctx_reload it in
 * place and new connections get the new certificate). Each connection's handshake must complete within
 * handshake_timeout_ms (0: PS_TLS_HANDSHAKE_TIMEOUT_MS) or it is closed. Outcomes are counted in
 * prescale_tls_handshakes_total{listener=name,result=ok|failed|timeout|closed}. Call before the loop
 * accepts connections. */
struct ps_tls_ctx;
void ps_net_listener_set_tls(struct ps_net_listener *l, struct ps_tls_ctx *ctx,
                             uint64_t handshake_timeout_ms);
/* Stops accepting and leaves the open connections alone (a graceful shutdown drains them): the
 * listening socket is closed at once, so connection attempts from here on are refused. The listener
 * stays allocated (and its port reads 0) until ps_net_listener_close. Idempotent. */
void ps_net_listener_stop(struct ps_net_listener *l);
/* Stops accepting if not stopped yet, closes every connection (their on_close run), and frees the
 * listener once its handle and every connection are closed. `done` (may be NULL) runs then; that may be
 * before this returns, when the listener was stopped and nothing is left open. Idempotent. */
void ps_net_listener_close(struct ps_net_listener *l, void (*done)(void *arg), void *arg);

/* Queues a copy of data for writing. 0, UV_ENOMEM, or UV_EPIPE once the connection is closing. */
int ps_net_write(struct ps_net_conn *c, const uint8_t *data, size_t len);
/* Bytes queued and not yet written by the kernel. */
size_t ps_net_pending(const struct ps_net_conn *c);
/* Closes after the queued writes are flushed (or fail). on_close follows. Idempotent. */
void ps_net_close(struct ps_net_conn *c);
/* True while reading is paused because more than PS_NET_HIGH_WATER bytes wait to be written. */
bool ps_net_paused(const struct ps_net_conn *c);
uv_loop_t *ps_net_loop(const struct ps_net_conn *c);
/* "127.0.0.1:53122", for logs. */
const char *ps_net_peer(const struct ps_net_conn *c);

/* ---- connection slots --------------------------------------------------------------------------- */

/* The protocol says whether the connection is idle, i.e. may be evicted for a new one: it has no request in
 * progress (HTTP/2: no call dispatched and not ended; HTTP/1: no request waiting for its answer). Marking it
 * idle again makes it the most recently idle: at the limit the connection evicted is the one that has been
 * idle longest, so call this when the connection makes progress (a call ends, a response is sent), not on
 * every byte, or a client trickling bytes would stay young. A connection starts not idle (a protocol that
 * never calls this keeps the old refuse-at-the-limit behaviour). O(1): the listener keeps its idle
 * connections in a list in the order they became idle. Ignored once the connection is closing. */
void ps_net_set_idle(struct ps_net_conn *c, bool idle);

/* How RLIMIT_NOFILE is shared out: each listener gets at most `listener_conns` connections, and outgoing
 * connections (the Prometheus client) at most `outgoing_conns`, so that together with PS_NET_FD_RESERVE
 * they fit in `nofile` and accept() never meets EMFILE. */
struct ps_net_fd_budget {
  size_t listener_conns;
  size_t outgoing_conns;
};
/* The budget for `nofile` descriptors, `listeners` listeners and a wanted `max_conns` per listener:
 * listener_conns = min(max_conns, (nofile - PS_NET_FD_RESERVE) / PS_NET_FD_SHARE), and outgoing_conns is what
 * is left after the reserve and the listeners. Both are at least 1, even for a tiny nofile (then nothing
 * fits and accept() relies on libuv's EMFILE handling, which closes the connections it cannot take). */
void ps_net_fd_budget(uint64_t nofile, size_t listeners, size_t max_conns, struct ps_net_fd_budget *out);
/* Raises the soft RLIMIT_NOFILE to min(hard, PS_NET_NOFILE_WANT) when it is lower, and returns the soft limit
 * then in effect (UINT64_MAX when unlimited or unknown). */
uint64_t ps_net_nofile(void);

#endif
