/* prescale-demo-app's HTTP routes (see demo_http.h for what it answers), its service time and its
 * counters. The protocol is http_server.c's: it calls handle() once per complete request and parses nothing
 * more of that connection until the request is answered, which is what makes a workload request
 * occupy its connection for the service time.
 *
 * A workload request in service is a struct work: it owns a uv_timer_t (the service time) and holds the
 * request until it is answered. It ends in finish(), when its timer fires or, earlier, when its client
 * went away (http_server.c's on_cancel), and is freed in the timer's close callback. */
#include "demo_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "metrics.h"

#define LABELS_MAX 32
#define BODY(s)    s, sizeof(s) - 1

struct work {
  uv_timer_t timer; /* the service time */
  struct ps_demo_server *srv;
  struct ps_http_server_req *req; /* owned until finish() answers it */
};

int ps_demo_metrics_declare(void) {
  int r = ps_metrics_declare(
      PS_DEMO_REQUESTS_METRIC, PS_METRIC_COUNTER,
      "Requests answered by the workload, by status code (/metrics and /healthz excluded).");
  if (r == 0)
    r = ps_metrics_declare(PS_DEMO_IN_FLIGHT_METRIC, PS_METRIC_GAUGE,
                           "Workload requests received and not answered yet.");
  if (r != 0) return r;
  ps_metrics_add(PS_DEMO_REQUESTS_METRIC, "code=\"200\"", 0);
  ps_metrics_set(PS_DEMO_IN_FLIGHT_METRIC, "", 0);
  return 0;
}

static void set_in_flight(struct ps_demo_server *srv, int delta) {
  srv->in_flight = (uint64_t)((int64_t)srv->in_flight + delta);
  ps_metrics_set(PS_DEMO_IN_FLIGHT_METRIC, "", (double)srv->in_flight);
  if (srv->in_flight == 0 && srv->draining && srv->on_idle != NULL) srv->on_idle(srv->on_idle_arg);
}

/* Answers and, for a workload response that was queued, counts it in http_requests_total by status.
 * While draining every response closes its connection. */
static void respond(struct ps_demo_server *srv, struct ps_http_server_req *req, int status, const char *ctype,
                    const char *body, size_t len, unsigned flags, bool count) {
  if (srv->draining) flags |= PS_HTTP_SERVER_CLOSE;
  int rc = ps_http_server_respond(req, status, ctype, body, len, flags);
  if (count && rc == 0) {
    char labels[LABELS_MAX];
    snprintf(labels, sizeof labels, "code=\"%d\"", status);
    ps_metrics_add(PS_DEMO_REQUESTS_METRIC, labels, 1);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* Workload requests                                                                                */
/* ------------------------------------------------------------------------------------------------ */

static void work_closed_cb(uv_handle_t *h) { free(h->data); }

/* The end of a request in service. When its client went away first, http_server.c sends nothing: the request
 * is dropped, not answered, so not counted. The response is queued before in_flight drops, so that a drain
 * ending on that drop (on_idle) finds it queued. */
static void finish(struct work *w) {
  struct ps_demo_server *srv = w->srv;
  respond(srv, w->req, 200, PS_HTTP_SERVER_TEXT_PLAIN, BODY("hello from prescale-demo-app\n"), 0, true);
  w->req = NULL;
  uv_close((uv_handle_t *)&w->timer, work_closed_cb);
  set_in_flight(srv, -1);
}

static void service_cb(uv_timer_t *t) { finish(t->data); }

static void on_cancel(struct ps_http_server_req *req, void *arg) { finish(ps_http_server_req_data(req)); }

static void start_work(struct ps_demo_server *srv, struct ps_http_server_req *req) {
  struct work *w = malloc(sizeof(*w));
  if (w == NULL || uv_timer_init(srv->loop, &w->timer) != 0) {
    free(w);
    respond(srv, req, 500, PS_HTTP_SERVER_TEXT_PLAIN, BODY("internal server error\n"), PS_HTTP_SERVER_CLOSE,
            true);
    return;
  }
  w->srv = srv;
  w->req = req;
  w->timer.data = w;
  ps_http_server_req_set_data(req, w);
  set_in_flight(srv, +1);
  uv_timer_start(&w->timer, service_cb, srv->service_ms, 0);
}

/* ------------------------------------------------------------------------------------------------ */
/* Routes                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

enum route { ROUTE_WORK, ROUTE_HEALTHZ, ROUTE_METRICS };

/* Anything that is not one of the two fixed paths is workload (the query is already cut by http_server.c). */
static enum route route_of(const char *path, size_t n) {
  if (n == 8 && memcmp(path, "/healthz", 8) == 0) return ROUTE_HEALTHZ;
  if (n == 8 && memcmp(path, "/metrics", 8) == 0) return ROUTE_METRICS;
  return ROUTE_WORK;
}

/* A complete request: answer it at once, or start its service. */
static void handle(struct ps_http_server_req *req, void *arg) {
  struct ps_demo_server *srv = arg;
  size_t n;
  const char *path = ps_http_server_req_path(req, &n);
  enum route route = route_of(path, n);
  const char *method = ps_http_server_req_method(req);
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    /* http_server.c adds the Allow header RFC 9110 15.5.6 requires */
    respond(srv, req, 405, PS_HTTP_SERVER_TEXT_PLAIN, BODY("method not allowed\n"), 0, route == ROUTE_WORK);
  } else if (route == ROUTE_HEALTHZ) {
    respond(srv, req, 200, PS_HTTP_SERVER_TEXT_PLAIN, BODY("ok\n"), 0, false);
  } else if (route == ROUTE_METRICS) {
    struct ps_buf body;
    ps_buf_init(&body);
    if (ps_metrics_render(&body) != 0)
      respond(srv, req, 500, PS_HTTP_SERVER_TEXT_PLAIN, BODY("internal server error\n"), PS_HTTP_SERVER_CLOSE,
              false);
    else
      respond(srv, req, 200, PS_METRICS_CONTENT_TYPE, body.data ? body.data : "", body.len, 0, false);
    ps_buf_free(&body);
  } else {
    start_work(srv, req);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* net.c glue                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

static void *net_open(struct ps_net_conn *nc, void *listener_arg) {
  struct ps_http_server_config cfg = {
      .handler = handle,
      .on_cancel = on_cancel,
      .arg = listener_arg,
      .idle_ms = PS_DEMO_IDLE_MS,
      .allow = "GET, HEAD",
      .log_prefix = "",
  };
  return ps_http_server_open(nc, &cfg);
}

const struct ps_net_proto ps_demo_net_proto = {
    .on_open = net_open,
    .on_read = ps_http_server_on_read,
    .on_drain = ps_http_server_on_drain,
    .on_close = ps_http_server_on_close,
};
