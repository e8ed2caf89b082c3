/* prescale-demo-app's HTTP routes, on prescale's HTTP/1.1 server layer (http_server.c) and net.c.
 *
 * Every GET or HEAD other than /metrics and /healthz is a workload request: it is answered 200 after
 * `service_ms`, measured by a libuv timer (the loop never blocks), and counted in
 * http_requests_total{code="200"}. While one request of a connection is in service http_server.c parses
 * nothing more of that connection, so responses leave in request order (RFC 9112 9.3.2) and a pipelining
 * client gets them one service time apart, as from a server with one worker per connection. */
#ifndef PS_DEMO_HTTP_H
#define PS_DEMO_HTTP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "http_server.h"
#include "net.h"

#define PS_DEMO_REQUESTS_METRIC  "http_requests_total"
#define PS_DEMO_IN_FLIGHT_METRIC "http_requests_in_flight"

/* The limits are http_server.c's (see http_server.h for the status each maps to). */
#define PS_DEMO_MAX_HEAD                                                                                     \
  PS_HTTP_SERVER_MAX_HEAD /* request line + header bytes; beyond -> 431 (414) and close */
#define PS_DEMO_MAX_BODY                                                                                     \
  PS_HTTP_SERVER_MAX_BODY       /* request body bytes (GETs carry none); beyond -> 413, close */
#define PS_DEMO_IDLE_MS   60000 /* a keep-alive connection with no request in service is closed after this */
/* Requests pipelined behind the one in service wait unparsed; a connection queueing more is closed. */
#define PS_DEMO_MAX_STASH PS_HTTP_SERVER_MAX_STASH

struct ps_demo_server {
  uv_loop_t *loop;
  uint64_t service_ms;
  /* Set when shutting down: responses then carry "Connection: close". */
  bool draining;
  /* Workload requests in service now (also the value of http_requests_in_flight). */
  uint64_t in_flight;
  /* Called (may be NULL) whenever in_flight drops to 0 while draining. */
  void (*on_idle)(void *arg);
  void *on_idle_arg;
};

/* Declares the two families and creates http_requests_total{code="200"} and the gauge at 0, so that
 * rate() has a first sample before the first request. 0 or a UV error. */
int ps_demo_metrics_declare(void);

/* Plug into ps_net_listen with a struct ps_demo_server as the listener arg (it must outlive the
 * listener; `loop` must be set). Routes: GET|HEAD /healthz -> 200 "ok"; GET|HEAD /metrics -> the
 * exposition; any other GET|HEAD path -> 200 after service_ms (counted); other methods -> 405 at once
 * (counted with code="405" unless the path is /healthz or /metrics); requests http_server.c refuses -> its
 * error status and close (not counted). */
extern const struct ps_net_proto ps_demo_net_proto;

#endif
