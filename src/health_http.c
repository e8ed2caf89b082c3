/* The HTTP/1.1 side door: /healthz, /readyz and /metrics, and the counter of what they answered.
 *
 * Only the routes live here. The protocol is http_server.c's: it parses (llhttp, strict), enforces the
 * limits, handles keep-alive and pipelining and frames the responses, and calls handle() once per complete
 * request. Every answer here is given during that call, so a connection never waits on this file. */
#include "health_http.h"

#include <stdio.h>
#include <string.h>

#include "metrics.h"

#define REQUESTS_METRIC "prescale_http_requests_total"
#define LABELS_MAX      64

enum route { ROUTE_NONE, ROUTE_HEALTHZ, ROUTE_READYZ, ROUTE_METRICS };

static void declare_metrics(void) {
  /* Idempotent; done per connection so that a registry reset (tests) is survived. */
  (void)ps_metrics_declare(
      REQUESTS_METRIC, PS_METRIC_COUNTER,
      "HTTP requests answered on the health and metrics listener, by path and status code.");
}

/* Matches a request path (query already cut by http_server.c). No percent-decoding: none of our paths needs
 * it. */
static enum route route_of(const char *path, size_t n) {
  if (n == 8 && memcmp(path, "/healthz", 8) == 0) return ROUTE_HEALTHZ;
  if (n == 7 && memcmp(path, "/readyz", 7) == 0) return ROUTE_READYZ;
  if (n == 8 && memcmp(path, "/metrics", 8) == 0) return ROUTE_METRICS;
  return ROUTE_NONE;
}

static const char *route_label(enum route r) {
  switch (r) {
  case ROUTE_HEALTHZ: return "/healthz";
  case ROUTE_READYZ: return "/readyz";
  case ROUTE_METRICS: return "/metrics";
  default: return "other";
  }
}

/* Every response is counted, errors included, whether or not it could be written. */
static void count(enum route route, int status) {
  char labels[LABELS_MAX];
  snprintf(labels, sizeof(labels), "path=\"%s\",code=\"%d\"", route_label(route), status);
  ps_metrics_add(REQUESTS_METRIC, labels, 1);
}

/* http_server.c refused a request (parse error or limit) and answered it. */
static void on_reject(int status, const char *path, size_t path_len, void *arg) {
  count(route_of(path, path_len), status);
}

static void handle(struct ps_http_server_req *req, void *arg) {
  struct ps_health_http *srv = arg;
  size_t n;
  const char *path = ps_http_server_req_path(req, &n);
  enum route route = route_of(path, n);
  const char *method = ps_http_server_req_method(req);
  bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  int status = 200;
  const char *ctype = PS_HTTP_SERVER_TEXT_PLAIN, *body;
  unsigned flags = 0;
  struct ps_buf exposition;
  ps_buf_init(&exposition);

  if (route == ROUTE_NONE) {
    status = 404;
    body = "not found\n";
  } else if (!get) {
    status = 405; /* http_server.c adds the Allow header RFC 9110 15.5.6 requires */
    body = "method not allowed\n";
  } else if (route == ROUTE_HEALTHZ) {
    body = "ok\n";
  } else if (route == ROUTE_READYZ) {
    bool ready = srv->ready == NULL || srv->ready(srv->ready_arg);
    status = ready ? 200 : 503;
    body = ready ? "ready\n" : "not ready\n";
  } else if (ps_metrics_render(&exposition) != 0) {
    status = 500;
    body = "internal server error\n";
    flags = PS_HTTP_SERVER_CLOSE;
  } else {
    ctype = PS_METRICS_CONTENT_TYPE;
    body = exposition.data ? exposition.data : "";
  }
  size_t len = body == exposition.data ? exposition.len : strlen(body);
  ps_http_server_respond(req, status, ctype, body, len, flags);
  count(route, status);
  ps_buf_free(&exposition);
}

static struct ps_http_server_config config_of(struct ps_health_http *srv) {
  return (struct ps_http_server_config){
      .handler = handle,
      .on_reject = on_reject,
      .arg = srv,
      .idle_ms = srv->idle_ms ? srv->idle_ms : PS_HEALTH_HTTP_IDLE_MS,
      .allow = "GET, HEAD",
      .log_prefix = "http ",
  };
}

static void *net_open(struct ps_net_conn *nc, void *listener_arg) {
  declare_metrics();
  struct ps_http_server_config cfg = config_of(listener_arg);
  return ps_http_server_open(nc, &cfg);
}

const struct ps_net_proto ps_health_http_net_proto = {
    .on_open = net_open,
    .on_read = ps_http_server_on_read,
    .on_drain = ps_http_server_on_drain,
    .on_close = ps_http_server_on_close,
};

int ps_health_http_feed_mem(struct ps_health_http *srv, const uint8_t *data, size_t len, size_t chunk,
                            struct ps_buf *out) {
  declare_metrics();
  struct ps_http_server_config cfg = config_of(srv);
  return ps_http_server_feed_mem(&cfg, data, len, chunk, out);
}
