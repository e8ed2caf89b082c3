/* The HTTP/1.1 side door: /healthz, /readyz and /metrics, parsed with llhttp, served through net.c. */
#ifndef PS_HTTP_SERVER_H
#define PS_HTTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "net.h"

#define PS_HTTP_SERVER_MAX_REQUEST (16u << 10) /* request line + headers; beyond -> 431 and close */
#define PS_HTTP_SERVER_IDLE_MS     30000       /* an idle keep-alive connection is closed after this */
/* Request body as sent, chunk framing included; beyond -> 413 and close. Health probes send none. */
#define PS_HTTP_SERVER_MAX_BODY    (64u << 10)

struct ps_http_server {
  uv_loop_t *loop;
  /* /healthz answers 200 whenever the loop answers at all (a stalled loop answers nothing, which
   * is what a liveness probe must see). /readyz answers 200 when this returns true (e.g. the gRPC listener is
   * bound), 503 otherwise. */
  bool (*ready)(void *arg); /* NULL: always ready */
  void *ready_arg;
  /* 0 means PS_HTTP_SERVER_IDLE_MS. A connection is closed when no request completes for this long
   * (counted from the accept or the last response), which also bounds slow request heads. */
  uint64_t idle_ms;
};

/* Plug into ps_net_listen with the struct ps_http_server as listener arg.
 * Routes: GET|HEAD /healthz, /readyz, /metrics (text/plain; version=0.0.4); other paths 404; other methods
 * on known paths 405; unparsable requests 400 and close. Keep-alive as HTTP/1.1 says. */
extern const struct ps_net_proto ps_http_server_net_proto;

/* The reason phrase of a status line for the codes prescale's HTTP/1.1 servers send (RFC 9110 15);
 * "Internal Server Error" for any other. */
const char *ps_http_reason(int status);

/* The parsing path without a socket (fuzzing, tests): feeds `data` to a fresh connection state as
 * successive reads of at most `chunk` bytes (0: one read), appends every response byte to `out`, and
 * frees the state. 0 when the connection would stay open, UV_EOF when the server would close it,
 * UV_ENOMEM. The request counter is updated as for a real connection. */
int ps_http_server_feed_mem(struct ps_http_server *srv, const uint8_t *data, size_t len, size_t chunk,
                            struct ps_buf *out);

#endif
