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
#define PS_NET_MAX_CONNS       1024 /* per listener; beyond it new connections are closed at once */
#define PS_NET_BACKLOG         128
/* A closing connection gets this long to flush its queued writes to a peer that may not be reading;
 * then it is closed anyway and the rest is dropped. */
#define PS_NET_CLOSE_LINGER_MS 5000
#define PS_NET_READ_BUF        (64u << 10) /* one per listener, shared by its connections (one thread) */

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

#endif
