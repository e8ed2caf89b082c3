/* The fan-out of the HTTP client: requests to one host:port share --prometheus-max-inflight slots, and
 * the ones beyond wait in FIFO queues, one per class (PS_HTTP_URGENT before PS_HTTP_BACKGROUND), each
 * bounded in time; the connection budget (a share of RLIMIT_NOFILE) bounds the slots of all servers,
 * which then share it round-robin. Requests enter here (ps_http_get_opts) and, once they hold a slot,
 * go to the connection half (ps_hc_req_start). The gauges of inflight and queued requests per server and
 * ps_http_stats are kept here. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client_int.h"
#include "http_token.h"
#include "metrics.h"

/* ==== limits and statistics ======================================================================== */

void ps_http_client_set_limits(struct ps_http_client *c, size_t max_inflight, size_t max_conns) {
  if (max_inflight < 1) max_inflight = 1;
  if (max_inflight > PS_HTTP_MAX_MAX_INFLIGHT) max_inflight = PS_HTTP_MAX_MAX_INFLIGHT;
  if (max_conns < 1) max_conns = 1;
  if (max_conns > PS_HTTP_MAX_CONNS) max_conns = PS_HTTP_MAX_CONNS;
  c->max_inflight = max_inflight;
  c->max_conns = max_conns;
  ps_metrics_set("prescale_prometheus_connections_limit", "", (double)max_conns);
}

void ps_http_client_stats(const struct ps_http_client *c, struct ps_http_stats *out) {
  out->inflight = c->inflight;
  out->queued = c->queued;
  out->conns = c->nconns;
  out->peak_inflight = c->peak_inflight;
  out->peak_conns = c->peak_conns;
  out->tls_handshakes = c->tls_handshakes;
}

/* ==== fan-out: slots and queues ==================================================================== */

static void pool_metrics(const struct pool *p) {
  ps_metrics_set("prescale_prometheus_inflight", p->labels, (double)p->inflight);
  ps_metrics_set("prescale_prometheus_queued", p->labels, (double)p->queued);
}

/* The pool of key, created when absent; NULL when out of memory. */
static struct pool *pool_get(struct ps_http_client *c, const char *key) {
  ps_list_foreach(n, &c->pools) {
    struct pool *p = ps_list_entry(n, struct pool, node);
    if (strcmp(p->key, key) == 0) return p;
  }
  struct pool *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  snprintf(p->key, sizeof p->key, "%s", key);
  char esc[2 * HOSTPORT_MAX];
  ps_metrics_escape_label(esc, sizeof esc, key);
  snprintf(p->labels, sizeof p->labels, "server=\"%s\"", esc);
  ps_list_insert_tail(&c->pools, &p->node);
  return p;
}

/* A pool with nothing queued and no slot held goes (idle connections are found by key, not by pool). */
static void pool_maybe_free(struct pool *p) {
  if (p->inflight > 0 || p->queued > 0) return;
  ps_metrics_remove("prescale_prometheus_inflight", p->labels);
  ps_metrics_remove("prescale_prometheus_queued", p->labels);
  ps_list_remove(&p->node);
  free(p);
}

static bool slot_free(const struct ps_http_client *c, const struct pool *p) {
  /* Each slot holds at most one connection, so c->inflight bounds the busy connections in all. */
  return p->inflight < c->max_inflight && c->inflight < c->max_conns;
}

static void slot_take(struct ps_http_req *r, struct pool *p) {
  struct ps_http_client *c = r->client;
  r->pool = p;
  r->has_slot = true;
  p->inflight++;
  c->inflight++;
  if (p->inflight > c->peak_inflight) c->peak_inflight = p->inflight;
  pool_metrics(p);
}

void ps_hc_slot_release(struct ps_http_req *r) {
  struct pool *p = r->pool;
  r->has_slot = false;
  r->pool = NULL;
  p->inflight--;
  r->client->inflight--;
  pool_metrics(p);
  pool_maybe_free(p);
}

static void queue_join(struct ps_http_req *r, struct pool *p) {
  struct ps_http_client *c = r->client;
  r->pool = p;
  r->queued = true;
  r->queued_at = uv_now(c->loop);
  ps_list_insert_tail(&p->queue[r->cls], &r->qnode);
  p->queued++;
  c->queued++;
  pool_metrics(p);
  uv_timer_start(&r->timer, ps_hc_req_timer_cb, r->queue_timeout_ms, 0);
}

/* Leaves the queue, keeping r->pool (it is about to take a slot there). */
static void queue_unlink(struct ps_http_req *r) {
  struct pool *p = r->pool;
  ps_list_remove(&r->qnode);
  r->queued = false;
  p->queued--;
  r->client->queued--;
}

/* Leaves the queue for good (cancel, failure, client closing); a no-op when not queued. */
void ps_hc_queue_leave(struct ps_http_req *r) {
  if (!r->queued) return;
  struct pool *p = r->pool;
  queue_unlink(r);
  r->pool = NULL;
  pool_metrics(p);
  pool_maybe_free(p);
}

/* The oldest request of p's highest class waiting, moved from the queue to a slot and started. */
static void pool_start_one(struct pool *p, struct ps_http_client *c) {
  for (int k = 0; k < PS_HTTP_NCLASSES; k++) {
    struct ps_list *n = ps_list_first(&p->queue[k]);
    if (n == NULL) continue;
    struct ps_http_req *r = ps_list_entry(n, struct ps_http_req, qnode);
    queue_unlink(r);
    slot_take(r, p);
    ps_hc_req_start(r);
    return;
  }
}

/* Starts waiting requests while slots are free: one per pool per round, so that when the connection
 * budget (not the per-server cap) binds, the servers share it round-robin. Nothing here calls a request's
 * callback or frees a pool (ps_hc_req_start defers its errors), so the walk is safe. */
void ps_hc_client_pump(struct ps_http_client *c) {
  if (c->closing) return;
  bool started = true;
  while (started && c->queued > 0 && c->inflight < c->max_conns) {
    started = false;
    ps_list_foreach(n, &c->pools) {
      struct pool *p = ps_list_entry(n, struct pool, node);
      if (p->queued > 0 && slot_free(c, p)) {
        pool_start_one(p, c);
        started = true;
      }
    }
  }
}

/* ==== requests: admission ========================================================================== */

bool ps_http_header_reserved(const char *name, size_t len) {
  /* The client frames the message and manages the connection itself (RFC 9112 6, 9.6; RFC 9110 7.2,
   * 7.8, 10.1.4, 7.6.1) and decodes only the identity coding: a second Host or Content-Length could make
   * a proxy and the server see two different requests (request smuggling), and the others would change
   * what the response looks like under the parser. */
  static const char *const reserved[] = {"Host",       "Content-Length", "Transfer-Encoding",
                                         "Connection", "Keep-Alive",     "Upgrade",
                                         "TE",         "Trailer",        "Accept-Encoding"};
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    if (strlen(reserved[i]) == len && strncasecmp(reserved[i], name, len) == 0) return true;
  return false;
}

int ps_http_headers_check(const char *headers) {
  if (headers == NULL) return 0;
  size_t total = strnlen(headers, PS_HTTP_MAX_EXTRA_HEADERS + 1);
  if (total > PS_HTTP_MAX_EXTRA_HEADERS) return UV_EINVAL;
  const char *p = headers;
  while (*p != '\0') {
    size_t nlen = 0;
    while (ps_http_tchar((unsigned char)p[nlen])) nlen++;
    if (nlen == 0 || p[nlen] != ':' || ps_http_header_reserved(p, nlen)) return UV_EINVAL;
    const char *v = p + nlen + 1;
    /* field-value: visible bytes, SP, HTAB and obs-text; no CR, LF or other controls (RFC 9110 5.5). */
    while (!ps_field_ctl((unsigned char)*v)) v++; /* stops at the CR (or NUL, LF, another control) */
    if (v[0] != '\r' || v[1] != '\n') return UV_EINVAL;
    p = v + 2;
  }
  return 0;
}

int ps_http_get(struct ps_http_client *c, const char *url, uint64_t timeout_ms, ps_http_cb cb, void *arg,
                struct ps_http_req **out) {
  struct ps_http_opts o = {.timeout_ms = timeout_ms, .queue_timeout_ms = 0, .cls = PS_HTTP_URGENT};
  return ps_http_get_opts(c, url, &o, cb, arg, out);
}

int ps_http_get_opts(struct ps_http_client *c, const char *url, const struct ps_http_opts *o, ps_http_cb cb,
                     void *arg, struct ps_http_req **out) {
  if (out != NULL) *out = NULL;
  if (c == NULL || url == NULL || cb == NULL || o == NULL || o->timeout_ms == 0 || o->cls < 0 ||
      o->cls >= PS_HTTP_NCLASSES)
    return UV_EINVAL;
  uint64_t timeout_ms = o->timeout_ms;
  /* A scheme other than http and https (RFC 3986 3.1: a letter, then letters, digits, '+', '-', '.') is
   * refused as unsupported rather than malformed, so "ftp://" gets the clearer error. */
  size_t slen = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
  if (slen > 0 && isalpha((unsigned char)url[0]) && strncmp(url + slen, "://", 3) == 0 &&
      !(slen == 4 && strncasecmp(url, "http", 4) == 0) && !(slen == 5 && strncasecmp(url, "https", 5) == 0))
    return UV_EPROTONOSUPPORT;
  if (ps_http_headers_check(o->headers) != 0) return UV_EINVAL;
  if (c->closing) return UV_ECANCELED;
  struct ps_http_req *r = calloc(1, sizeof *r);
  if (r == NULL) return UV_ENOMEM;
  r->url = strdup(url);
  if (o->headers != NULL && o->headers[0] != '\0') r->headers = strdup(o->headers);
  if (r->url == NULL || (o->headers != NULL && o->headers[0] != '\0' && r->headers == NULL)) {
    free(r->url);
    ps_free_secret(r->headers);
    free(r);
    return UV_ENOMEM;
  }
  bool https = false;
  if (ps_hc_url_split(r->url, r->host, sizeof r->host, &r->port, &r->path, &https) != 0) {
    free(r->url);
    ps_free_secret(r->headers);
    free(r);
    return UV_EINVAL;
  }
  if (https) {
    char why[256];
    r->tls_ctx = o->tls != NULL ? o->tls : ps_hc_tls_default(c, why, sizeof why);
    const char *sni =
        o->tls_server_name != NULL && *o->tls_server_name != '\0' ? o->tls_server_name : r->host;
    int bad = r->tls_ctx == NULL ? UV_EPROTONOSUPPORT : strlen(sni) >= sizeof r->sni ? UV_EINVAL : 0;
    if (bad != 0) {
      free(r->url);
      ps_free_secret(r->headers);
      free(r);
      return bad;
    }
    snprintf(r->sni, sizeof r->sni, "%s", sni);
  }
  ps_hostport_format(r->hostport, sizeof r->hostport, r->host, r->port);
  struct pool *p = c->queued < PS_HTTP_MAX_QUEUED ? pool_get(c, r->hostport) : NULL;
  if (p == NULL) {
    free(r->url);
    ps_free_secret(r->headers);
    free(r);
    return c->queued < PS_HTTP_MAX_QUEUED ? UV_ENOMEM : UV_ENOBUFS;
  }
  r->client = c;
  r->cb = cb;
  r->arg = arg;
  r->timeout_ms = timeout_ms;
  r->queue_timeout_ms = o->queue_timeout_ms != 0 ? o->queue_timeout_ms : timeout_ms;
  r->cls = o->cls;
  ps_list_init(&r->qnode);
  ps_hc_req_bufs_init(r);
  uv_timer_init(c->loop, &r->timer); /* cannot fail for timers */
  r->timer.data = r;
  r->timer_open = true;
  ps_list_insert_head(&c->reqs, &r->node);
  c->live++;
  if (out != NULL) *out = r;
  /* Straight to a slot only when nobody of this server waits: the queue is first come, first served. */
  if (p->queued == 0 && slot_free(c, p)) {
    slot_take(r, p);
    ps_hc_req_start(r);
  } else {
    queue_join(r, p);
  }
  return 0;
}
