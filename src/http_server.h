/* The HTTP/1.1 side door: /healthz, /readyz and /metrics, parsed with llhttp, served through net.c. */
#ifndef PS_HTTP_SERVER_H
#define PS_HTTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "net.h"

#define PS_HTTP_SERVER_MAX_REQUEST (16u << 10) /* request line + headers; beyond -> 431 and close */
#define PS_HTTP_SERVER_IDLE_MS 30000           /* an idle keep-alive connection is closed after this */

struct ps_http_server {
  uv_loop_t *loop;
  /* /healthz answers 200 whenever the loop answers at all (a stalled loop answers nothing, which
   * is what a liveness probe must see). /readyz answers 200 when this returns true (e.g. the gRPC listener is bound), 503 otherwise. */
  bool (*ready)(void *arg);
  void *ready_arg;
};

/* Plug into ps_net_listen with the struct ps_http_server as listener arg.
 * Routes: GET|HEAD /healthz, /readyz, /metrics (text/plain; version=0.0.4); other paths 404; other methods
 * on known paths 405; unparsable requests 400 and close. Keep-alive as HTTP/1.1 says. */
extern const struct ps_net_proto ps_http_server_net_proto;

#endif
