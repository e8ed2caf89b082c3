/* Private to src/client/grpc_client*.c: the client's state, shared by the connection half
 * (grpc_client.c: DNS, sockets, lifecycle) and the call half (grpc_client_call.c: nghttp2 callbacks,
 * calls, statuses). Not a contract for other modules. */
#ifndef PS_GRPC_CLIENT_INT_H
#define PS_GRPC_CLIENT_INT_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "grpc.h"
#include "grpc_client.h"
#include "hostport.h"
#include "list.h"

#define READ_BUF_SIZE    (64u << 10)
#define WRITE_BATCH      (64u << 10) /* frames gathered per uv_write */
#define ERRMSG_MAX       512
#define HOST_MAX         PS_HOSTPORT_HOST_MAX
#define PORT_MAX         8
#define CONTENT_TYPE_MAX 64
#define ERR_STOP         UV_ECANCELED /* from the message callback: the call ended inside on_msg */
#define NO_RST           UINT32_MAX   /* call_end without RST_STREAM: the stream is closing or never began */

enum state { ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_DEAD };

struct sock {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_shutdown_t sreq;
  struct ps_grpc_client *c;
};

struct wreq {
  uv_write_t req;
  struct ps_grpc_client *c;
  size_t len;
  uint8_t data[];
};

struct ps_grpc_client {
  uv_loop_t *loop;
  char target[PS_GRPC_CLIENT_MAX_TARGET + 1];
  char host[HOST_MAX];
  char port[PORT_MAX];
  uint64_t connect_timeout_ms;
  size_t max_msg;
  ps_grpc_connect_cb connect_cb; /* NULL once it ran */
  void *connect_arg;
  enum state state;
  bool closing, close_started, close_done, fatal, goaway;
  int in_session;
  size_t refs;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  struct addrinfo *addrs, *next_addr; /* owned; uv_freeaddrinfo */
  struct sock *sock;                  /* current attempt / connection; NULL when none */
  int last_err;
  char errmsg[ERRMSG_MAX];
  nghttp2_session *session;
  struct ps_list calls; /* of ps_grpc_call.node: open calls, newest first */
  size_t ncalls;
  size_t unsent; /* bytes given to uv_write and not yet written */
  struct ps_buf batch;
  char rbuf[READ_BUF_SIZE];
};

struct ps_grpc_call {
  struct ps_grpc_client *c;
  struct ps_list node; /* in c->calls while open */
  char path[PS_GRPC_CLIENT_MAX_PATH + 1];
  struct ps_buf body; /* the framed request; read by nghttp2's data provider */
  size_t body_off;
  uint64_t timeout_ms, deadline; /* deadline in loop ms; 0: none */
  ps_grpc_msg_fn on_msg;         /* NULL: unary */
  ps_grpc_done_fn done;
  void *arg;
  int32_t stream_id; /* 0 until submitted */
  bool ended;
  bool remote_ended; /* END_STREAM received (nghttp2 marks the stream only after on_frame_recv) */
  uv_timer_t timer;
  struct ps_grpc_reader reader; /* reader.messages: response messages received so far */
  struct ps_buf unary;          /* the unary response message */
  /* the response as received */
  int http_status;  /* of the final response headers; 0 before */
  int block_status; /* :status of the block being received */
  bool in_trailers, headers_too_big, have_grpc_status, grpc_status_bad, content_type_ok;
  size_t header_bytes;
  int grpc_status;
  struct ps_buf grpc_message; /* raw (percent-encoded) */
  char content_type[CONTENT_TYPE_MAX];
};

static inline bool session_usable(const struct ps_grpc_client *c) {
  return c->session != NULL && !c->fatal && (c->state == ST_READY || c->state == ST_HANDSHAKE);
}

/* grpc_client.c */
/* Moves frames from nghttp2 to the socket; no-op while nghttp2 is on the stack. */
void ps_gc_flush(struct ps_grpc_client *c);
/* Drops one reference; frees the client when it was closed and this was the last. */
void ps_gc_client_unref(struct ps_grpc_client *c);

/* grpc_client_call.c */
/* Creates c->session with our callbacks and SETTINGS. 0 or UV_ENOMEM. */
int ps_gc_session_new(struct ps_grpc_client *c);
/* Ends every open call with status/message (their done callbacks run). */
void ps_gc_end_all(struct ps_grpc_client *c, int status, const char *message);
/* The connection is ready: submits the calls started while it was being made. */
void ps_gc_submit_pending(struct ps_grpc_client *c);

#endif
