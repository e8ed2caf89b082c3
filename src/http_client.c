/* HTTP/1.1 client on libuv (RFC 9110, RFC 9112) for talking to Prometheus: the connection half.
 *
 * Here: the client's lifecycle, each request's lifetime and timer, starting a request and DNS.
 * Connections (connect with a timeout per address, the keep-alive pool, the budget's eviction of idle
 * ones, writing requests and reading responses) are in http_client_conn.c, the fan-out (slots, queues) in
 * http_client_queue.c, the llhttp callbacks and URL splitting in http_client_parse.c, TLS (https) in
 * http_client_tls.c; the objects they share are described in http_client_int.h. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client_int.h"
#include "metrics.h"
#include "tls.h"

/* ==== client lifecycle ============================================================================= */

int ps_http_client_new(uv_loop_t *loop, struct ps_http_client **out) {
  struct ps_http_client *c = calloc(1, sizeof *c);
  if (c == NULL) return UV_ENOMEM;
  c->loop = loop;
  c->max_inflight = PS_HTTP_DEFAULT_MAX_INFLIGHT;
  c->max_conns = PS_HTTP_MAX_CONNS;
  ps_metrics_declare("prescale_prometheus_inflight", PS_METRIC_GAUGE,
                     "Requests to a Prometheus server in flight (at most --prometheus-max-inflight).");
  ps_metrics_declare(
      "prescale_prometheus_queued", PS_METRIC_GAUGE,
      "Requests to a Prometheus server waiting for one of its --prometheus-max-inflight slots.");
  ps_metrics_declare("prescale_prometheus_connections", PS_METRIC_GAUGE,
                     "Open connections to Prometheus servers (busy, connecting and idle), all servers.");
  ps_metrics_declare("prescale_prometheus_connections_limit", PS_METRIC_GAUGE,
                     "Budget of connections to Prometheus servers (a share of RLIMIT_NOFILE).");
  ps_metrics_declare("prescale_prometheus_request_timeouts_total", PS_METRIC_COUNTER,
                     "Requests to Prometheus that timed out after being sent.");
  ps_metrics_declare("prescale_prometheus_queue_timeouts_total", PS_METRIC_COUNTER,
                     "Requests to Prometheus dropped after waiting their bound in the queue, never sent.");
  ps_metrics_add("prescale_prometheus_request_timeouts_total", "", 0);
  ps_metrics_add("prescale_prometheus_queue_timeouts_total", "", 0);
  ps_metrics_set("prescale_prometheus_connections", "", 0);
  ps_metrics_set("prescale_prometheus_connections_limit", "", (double)c->max_conns);
  *out = c;
  return 0;
}

void ps_hc_client_maybe_free(struct ps_http_client *c) {
  if (!c->closing || c->live != 0) return;
  ps_tls_ctx_free(c->tls_default);
  free(c);
}

void ps_http_client_close(struct ps_http_client *c) {
  if (c == NULL || c->closing) return;
  c->closing = true;
  /* Callbacks run from here may start new requests; ps_http_get refuses them once closing is set, so
   * this loop ends. */
  for (struct ps_list *n; (n = ps_list_first(&c->reqs)) != NULL;) {
    struct ps_http_req *r = ps_list_entry(n, struct ps_http_req, node);
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: cancelled: HTTP client closing", URL_IN_MSG_MAX, r->url);
    ps_hc_req_finish(r, UV_ECANCELED, NULL);
  }
  for (struct ps_list *n; (n = ps_list_first(&c->conns)) != NULL;)
    ps_hc_conn_close(ps_list_entry(n, struct conn, node));
  ps_hc_client_maybe_free(c); /* now, if nothing was open; otherwise in the last close callback */
}

/* ==== requests: lifetime =========================================================================== */

static void req_free_if_unused(struct ps_http_req *r) {
  if (r->timer_open || r->resolving) return;
  struct ps_http_client *c = r->client;
  if (r->addrs != NULL) uv_freeaddrinfo(r->addrs);
  free(r->url);
  ps_free_secret(r->headers); /* may hold an Authorization value */
  ps_hc_req_bufs_free(r);
  free(r);
  c->live--;
  ps_hc_client_maybe_free(c);
}

static void req_timer_closed(uv_handle_t *h) {
  struct ps_http_req *r = h->data;
  r->timer_open = false;
  req_free_if_unused(r);
}

/* Marks the request finished and unlinks it from everything, so that a callback which re-enters the
 * client (a new request, a cancel, closing the client) finds a consistent state. */
static void req_detach(struct ps_http_req *r) {
  r->done = true;
  ps_list_remove(&r->node);
  ps_hc_queue_leave(r);
  if (r->resolving) uv_cancel((uv_req_t *)&r->gai); /* may fail if already running; gai_cb checks done */
  if (r->conn != NULL) {
    struct conn *cn = r->conn;
    r->conn = NULL;
    cn->req = NULL;
    ps_hc_conn_close(cn);
  }
  uv_timer_stop(&r->timer);
  /* Its slot goes to the next request waiting (none is started from here while the client closes). */
  if (r->has_slot) {
    ps_hc_slot_release(r);
    ps_hc_client_pump(r->client);
  }
}

static void req_release(struct ps_http_req *r) {
  if (r->timer_open && !uv_is_closing((uv_handle_t *)&r->timer))
    uv_close((uv_handle_t *)&r->timer, req_timer_closed);
}

/* Delivers the one callback. On error r->errmsg holds the message. */
void ps_hc_req_finish(struct ps_http_req *r, int err, const struct ps_http_response *resp) {
  if (r->done) return;
  req_detach(r);
  r->cb(r->arg, err, err != 0 ? r->errmsg : NULL, err != 0 ? NULL : resp);
  req_release(r);
}

void ps_hc_req_fail(struct ps_http_req *r, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
  va_end(ap);
  ps_hc_req_finish(r, err, NULL);
}

/* Errors found while ps_http_get is still on the stack go through a 0 ms timer: the contract promises
 * the callback never runs from inside ps_http_get. */
void ps_hc_req_defer_error(struct ps_http_req *r, int err) {
  r->pending_err = err;
  uv_timer_stop(&r->timer);
  uv_timer_start(&r->timer, ps_hc_req_timer_cb, 0, 0);
}

void ps_hc_req_timer_cb(uv_timer_t *t) {
  struct ps_http_req *r = t->data;
  if (r->pending_err != 0) {
    ps_hc_req_finish(r, r->pending_err, NULL);
    return;
  }
  if (r->queued) {
    ps_metrics_add("prescale_prometheus_queue_timeouts_total", "", 1);
    ps_hc_req_fail(r, PS_HTTP_ERR_QUEUE_TIMEOUT,
                   "GET %.*s: not sent: waited %llu ms for one of the %zu request slots of %s "
                   "(--prometheus-max-inflight), %zu requests queued",
                   URL_IN_MSG_MAX, r->url, (unsigned long long)(uv_now(r->client->loop) - r->queued_at),
                   r->client->max_inflight, r->hostport, r->pool->queued);
    return;
  }
  ps_metrics_add("prescale_prometheus_request_timeouts_total", "", 1);
  if (r->conn != NULL && r->conn->tls != NULL && !r->conn->tls_ready) {
    ps_hc_req_fail(r, UV_ETIMEDOUT, "tls %s: no TLS handshake within the request's %llu ms", r->conn->peer,
                   (unsigned long long)r->timeout_ms);
    return;
  }
  ps_hc_req_fail(r, UV_ETIMEDOUT, "GET %.*s: timed out after %llu ms", URL_IN_MSG_MAX, r->url,
                 (unsigned long long)r->timeout_ms);
}

void ps_http_set_body(struct ps_http_req *r, size_t max_body, ps_http_body_cb body_cb, void *body_arg) {
  r->max_body = max_body;
  r->body_cb = body_cb;
  r->body_arg = body_arg;
}

void ps_http_cancel(struct ps_http_req *r) {
  if (r == NULL || r->done) return;
  req_detach(r);
  req_release(r);
}

/* ==== requests: start, DNS ========================================================================= */

/* Sends a request that holds a slot: its whole-request timeout starts now, so time spent queued never
 * counts against it. Errors are deferred (this may run inside ps_http_get). */
void ps_hc_req_start(struct ps_http_req *r) {
  uv_timer_stop(&r->timer);
  uv_timer_start(&r->timer, ps_hc_req_timer_cb, r->timeout_ms, 0);
  struct conn *cn = ps_hc_pool_take_idle(r->client, r);
  if (cn != NULL) {
    ps_hc_conn_send(cn, r); /* failures there are deferred */
    return;
  }
  ps_hc_req_resolve(r);
}

static void gai_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
  struct ps_http_req *r = g->data;
  r->resolving = false;
  if (r->done) {
    if (res != NULL) uv_freeaddrinfo(res);
    req_free_if_unused(r);
    return;
  }
  if (status != 0) {
    ps_hc_req_fail(r, status, "resolve %s: %s", r->hostport, uv_strerror(status));
    return;
  }
  if (r->addrs != NULL) uv_freeaddrinfo(r->addrs);
  r->addrs = res;
  r->next_addr = res;
  r->last_connect_err = 0;
  ps_hc_req_connect_next(r);
}

/* Resolves r->host with uv_getaddrinfo: numeric hosts go through it too, which keeps one path and never
 * blocks. Called from ps_http_get (errors deferred) and from retry paths inside callbacks. */
void ps_hc_req_resolve(struct ps_http_req *r) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV;
  char svc[8];
  snprintf(svc, sizeof svc, "%d", r->port);
  r->gai.data = r;
  int err = uv_getaddrinfo(r->client->loop, &r->gai, gai_cb, r->host, svc, &hints);
  if (err != 0) {
    snprintf(r->errmsg, sizeof r->errmsg, "resolve %s: %s", r->hostport, uv_strerror(err));
    ps_hc_req_defer_error(r, err);
    return;
  }
  r->resolving = true;
}
