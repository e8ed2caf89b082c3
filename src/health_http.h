/* The HTTP/1.1 side door: /healthz, /readyz and /metrics. Its routes only; the protocol (llhttp, limits,
 * keep-alive, pipelining) is http_server.c's, and net.c owns the sockets. */
#ifndef PS_HEALTH_HTTP_H
#define PS_HEALTH_HTTP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "http_server.h"
#include "net.h"

/* The limits are http_server.c's (see http_server.h for the status each maps to); named here too for this
 * server's tests and readers. Health probes send no body. */
#define PS_HEALTH_HTTP_MAX_REQUEST PS_HTTP_SERVER_MAX_HEAD /* request line + headers; beyond -> 431 (414) */
#define PS_HEALTH_HTTP_MAX_BODY    PS_HTTP_SERVER_MAX_BODY /* request body as sent; beyond -> 413 */
#define PS_HEALTH_HTTP_IDLE_MS     30000 /* an idle keep-alive connection is closed after this */

struct ps_health_http {
  uv_loop_t *loop;
  /* /healthz answers 200 whenever the loop answers at all (a stalled loop answers nothing, which
   * is what a liveness probe must see). /readyz answers 200 when this returns true (e.g. the gRPC listener is
   * bound), 503 otherwise. */
  bool (*ready)(void *arg); /* NULL: always ready */
  void *ready_arg;
  /* 0 means PS_HEALTH_HTTP_IDLE_MS. A connection is closed when no request completes for this long
   * (counted from the accept or the last response), which also bounds slow request heads. */
  uint64_t idle_ms;
};

/* Plug into ps_net_listen with the struct ps_health_http as listener arg (it must outlive the listener).
 * Routes: GET|HEAD /healthz, /readyz, /metrics (text/plain; version=0.0.4); other paths 404; other methods
 * on known paths 405 (with Allow); requests http_server.c refuses get its error status and a close. Every
 * response is counted in prescale_http_requests_total{path,code}. Keep-alive as HTTP/1.1 says. */
extern const struct ps_net_proto ps_health_http_net_proto;

/* The parsing path without a socket (fuzzing, tests): feeds `data` to a fresh connection state as
 * successive reads of at most `chunk` bytes (0: one read), appends every response byte to `out`, and
 * frees the state. 0 when the connection would stay open, UV_EOF when the server would close it,
 * UV_ENOMEM. The request counter is updated as for a real connection. */
int ps_health_http_feed_mem(struct ps_health_http *srv, const uint8_t *data, size_t len, size_t chunk,
                            struct ps_buf *out);

#endif
