/* Prometheus HTTP API client (https://prometheus.io/docs/prometheus/latest/querying/api/).
 * The pure half builds query_range URLs; the asynchronous half splits a long range into requests Prometheus
 * accepts, runs them one after another on ps_http, and feeds each answer as it arrives to the streaming
 * decoder (src/prom_decode.c), which writes straight into the array of samples it delivers. */
#include "prom.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_token.h"

#define MS_PER_S        1000
#define BASE_IN_MSG_MAX 200

/* ==== URL building ================================================================================= */

static bool is_unreserved(unsigned char ch) {
  /* RFC 3986 2.3 */
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
         ch == '.' || ch == '_' || ch == '~';
}

static int append_pct(struct ps_buf *out, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    int err;
    if (is_unreserved(*p)) {
      err = ps_buf_append(out, p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      err = ps_buf_append(out, e, 3);
    }
    if (err != 0) return err;
  }
  return 0;
}

/* Milliseconds as decimal seconds with exactly three decimals, without going through a double. */
static int append_seconds(struct ps_buf *out, int64_t ms) {
  const char *sign = ms < 0 ? "-" : "";
  uint64_t a = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
  return ps_buf_printf(out, "%s%llu.%03u", sign, (unsigned long long)(a / MS_PER_S),
                       (unsigned)(a % MS_PER_S));
}

/* What pp adds to the query string, appended to out: "&namespace=...&k=v..." (RFC 3986 3.4; each part
 * percent-encoded, so '&', '=', '#', '+' and non-ASCII bytes in a value stay in it). */
static int params_encode(struct ps_buf *out, const struct ps_prom_params *pp) {
  int err = 0;
  if (pp == NULL) return 0;
  if (pp->ns != NULL) {
    err = ps_buf_puts(out, "&namespace=");
    if (err == 0) err = append_pct(out, pp->ns);
  }
  for (size_t i = 0; err == 0 && pp->query_params != NULL && i < pp->query_params->n; i++) {
    err = ps_buf_puts(out, "&");
    if (err == 0) err = append_pct(out, pp->query_params->items[i].key);
    if (err == 0) err = ps_buf_puts(out, "=");
    if (err == 0) err = append_pct(out, pp->query_params->items[i].value);
  }
  return err;
}

/* ps_prom_range_url with the encoded parameters (params_encode; "" for none) and the URL limit as a
 * parameter (SIZE_MAX: none, to measure a refused URL). */
static int range_url(struct ps_buf *out, const char *base, const char *query, int64_t start_ms,
                     int64_t end_ms, int64_t step_ms, const char *extra, size_t max_url) {
  if (base == NULL || query == NULL || *base == '\0' || *query == '\0' || step_ms <= 0 || end_ms < start_ms)
    return UV_EINVAL;
  size_t blen = strlen(base);
  while (blen > 0 && base[blen - 1] == '/') blen--; /* "http://h:9090/" + "/api" must not give "//api" */
  size_t mark = out->len;
  int err = ps_buf_append(out, base, blen);
  if (err == 0) err = ps_buf_puts(out, "/api/v1/query_range?query=");
  if (err == 0) err = append_pct(out, query);
  if (err == 0) err = ps_buf_puts(out, "&start=");
  if (err == 0) err = append_seconds(out, start_ms);
  if (err == 0) err = ps_buf_puts(out, "&end=");
  if (err == 0) err = append_seconds(out, end_ms);
  if (err == 0) err = ps_buf_puts(out, "&step=");
  /* Whole seconds print as an integer ("60"), others with milliseconds ("1.500"). */
  if (err == 0)
    err = step_ms % MS_PER_S == 0 ? ps_buf_printf(out, "%lld", (long long)(step_ms / MS_PER_S))
                                  : append_seconds(out, step_ms);
  if (err == 0) err = ps_buf_puts(out, extra);
  if (err == 0 && out->len - mark > max_url) err = UV_EINVAL;
  if (err != 0) {
    out->len = mark;
    if (out->data != NULL) out->data[mark] = '\0';
  }
  return err;
}

int ps_prom_range_url(struct ps_buf *out, const char *base, const char *query, int64_t start_ms,
                      int64_t end_ms, int64_t step_ms, const struct ps_prom_params *pp) {
  struct ps_buf extra;
  ps_buf_init(&extra);
  int err = params_encode(&extra, pp);
  if (err == 0)
    err =
        range_url(out, base, query, start_ms, end_ms, step_ms, extra.data ? extra.data : "", PS_HTTP_MAX_URL);
  ps_buf_free(&extra);
  return err;
}

int ps_prom_url_problem(char *buf, size_t len, const char *base, const char *query, int64_t start_ms,
                        int64_t end_ms, int64_t step_ms, const struct ps_prom_params *pp) {
  struct ps_buf url, q, extra;
  ps_buf_init(&url);
  ps_buf_init(&q);
  ps_buf_init(&extra);
  int err = params_encode(&extra, pp);
  if (err == 0)
    err = range_url(&url, base, query, start_ms, end_ms, step_ms, extra.data ? extra.data : "", SIZE_MAX);
  if (err == 0) err = append_pct(&q, query);
  bool over = err == 0 && url.len > PS_HTTP_MAX_URL;
  char added[96] = "";
  if (extra.len > 0) snprintf(added, sizeof added, ", and namespace and queryParameters add %zu", extra.len);
  if (over)
    snprintf(
        buf, len,
        "the Prometheus request URL would be %zu bytes, %zu over the limit of %d bytes (PS_HTTP_MAX_URL): "
        "the query is %zu bytes, %zu once percent-encoded%s; shorten it (e.g. with a recording rule)",
        url.len, url.len - PS_HTTP_MAX_URL, PS_HTTP_MAX_URL, strlen(query), q.len, added);
  ps_buf_free(&url);
  ps_buf_free(&q);
  ps_buf_free(&extra);
  return over ? UV_E2BIG : 0;
}

/* " " and the reason phrase of the statuses a Prometheus or a proxy in front of it answers (RFC 9110
 * 15), for messages; "" for others (the number says it all). */
static const char *reason_phrase(int status) {
  static const struct {
    int status;
    const char *phrase;
  } phrases[] = {
      {400, " Bad Request"},
      {401, " Unauthorized"},
      {403, " Forbidden"},
      {404, " Not Found"},
      {405, " Method Not Allowed"},
      {406, " Not Acceptable"},
      {407, " Proxy Authentication Required"},
      {408, " Request Timeout"},
      {413, " Content Too Large"},
      {414, " URI Too Long"},
      {422, " Unprocessable Content"},
      {429, " Too Many Requests"},
      {431, " Request Header Fields Too Large"},
      {500, " Internal Server Error"},
      {501, " Not Implemented"},
      {502, " Bad Gateway"},
      {503, " Service Unavailable"},
      {504, " Gateway Timeout"},
  };
  for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
    if (phrases[i].status == status) return phrases[i].phrase;
  return "";
}

/* ==== asynchronous range queries =================================================================== */

struct ps_prom_req {
  struct ps_http_client *http;
  struct ps_http_req *hreq; /* the request in flight */
  char *base, *query;       /* owned copies */
  int64_t start_ms, step_ms;
  int64_t points;     /* total points in the range: floor((end - start) / step) + 1 */
  int64_t next_point; /* index of the first point of the next chunk */
  ps_prom_cb cb;
  void *arg;
  struct ps_sample *samples; /* the concatenation so far */
  size_t n, cap;
  struct ps_prom_dec *dec; /* decodes the answer in flight into samples; owned */
  size_t mark;             /* n before the answer in flight: its samples start here */
  struct ps_buf url;
  struct ps_http_opts opts; /* every chunk's: timeout, queue bound, class; headers point to `headers` */
  char *headers;            /* owned copy of the caller's extra header lines; NULL: none */
  char *extra;              /* owned: the encoded namespace and queryParameters (params_encode), or "" */
};

static void prom_req_free(struct ps_prom_req *p) {
  ps_prom_dec_free(p->dec);
  free(p->base);
  free(p->query);
  free(p->headers);
  free(p->extra);
  free(p->samples);
  ps_buf_free(&p->url);
  free(p);
}

static void prom_finish(struct ps_prom_req *p, int err, const char *msg) {
  p->cb(p->arg, err, err != 0 ? msg : NULL, err != 0 ? NULL : p->samples, err != 0 ? 0 : p->n);
  prom_req_free(p);
}

static void prom_http_cb(void *arg, int err, const char *errmsg, const struct ps_http_response *resp);

/* The body of the answer in flight, as the connection reads it: decoded at once into p->samples, so that
 * no answer is held whole, and no piece costs more than its bytes (PS_HTTP_READ_BURST a loop turn). */
static int prom_body_cb(void *arg, const char *data, size_t len) {
  struct ps_prom_req *p = arg;
  return ps_prom_dec_feed(p->dec, data, len);
}

/* Issues the request for the next chunk: points [next_point, next_point + PS_PROM_MAX_POINTS) at most.
 * Chunk edges sit on start + k*step, so every chunk evaluates exactly the instants one big query would,
 * and consecutive chunks share no instant. */
static int prom_next(struct ps_prom_req *p) {
  int64_t first = p->next_point;
  int64_t last = first + PS_PROM_MAX_POINTS - 1;
  if (last > p->points - 1) last = p->points - 1;
  p->next_point = last + 1;
  ps_buf_reset(&p->url);
  int err = range_url(&p->url, p->base, p->query, p->start_ms + first * p->step_ms,
                      p->start_ms + last * p->step_ms, p->step_ms, p->extra, PS_HTTP_MAX_URL);
  if (err != 0) return err;
  ps_prom_dec_free(p->dec);
  p->dec = NULL;
  p->mark = p->n;
  err = ps_prom_dec_new(&p->samples, &p->n, &p->cap, &p->dec);
  if (err != 0) return err;
  err = ps_http_get_opts(p->http, p->url.data, &p->opts, prom_http_cb, p, &p->hreq);
  if (err == 0) ps_http_set_body(p->hreq, PS_PROM_MAX_RESPONSE, prom_body_cb, p);
  return err;
}

/* Keeps, of the samples of the answer just decoded (from `mark` on, sorted), only those after the last
 * one kept. Chunks are disjoint and in order; a sample not after the last one would be a server bug. */
static void prom_keep_increasing(struct ps_prom_req *p, size_t mark) {
  size_t w = mark;
  for (size_t i = mark; i < p->n; i++) {
    if (w > 0 && p->samples[i].t_ms <= p->samples[w - 1].t_ms) continue;
    p->samples[w++] = p->samples[i];
  }
  p->n = w;
}

/* An answer over PS_PROM_MAX_RESPONSE: cut short by the HTTP client (announced by Content-Length, or read
 * to the limit). When the part read already held several series, that is the answer's fault. */
static void prom_too_big(struct ps_prom_req *p) {
  char msg[2 * PS_PROM_MAX_ERROR_TEXT];
  size_t series = ps_prom_dec_series(p->dec);
  if (series > 1) {
    snprintf(msg, sizeof msg,
             "query %.*s: query returned at least %zu series in the first %zu bytes of its answer; prescale "
             "needs exactly one: aggregate it, e.g. sum(...)",
             BASE_IN_MSG_MAX, p->base, series, ps_prom_dec_bytes(p->dec));
    prom_finish(p, UV_EINVAL, msg);
    return;
  }
  snprintf(msg, sizeof msg,
           "query %.*s: the answer exceeds %zu bytes, the most one series of %d points can take "
           "(PS_PROM_MAX_RESPONSE); if the query returns several series, aggregate it, e.g. sum(...)",
           BASE_IN_MSG_MAX, p->base, (size_t)PS_PROM_MAX_RESPONSE, PS_PROM_MAX_POINTS);
  prom_finish(p, UV_E2BIG, msg);
}

static void prom_http_cb(void *arg, int err, const char *errmsg, const struct ps_http_response *resp) {
  struct ps_prom_req *p = arg;
  p->hreq = NULL;
  if (err == UV_E2BIG) {
    prom_too_big(p);
    return;
  }
  if (err != 0) {
    prom_finish(p, err, errmsg);
    return;
  }
  char msg[2 * PS_PROM_MAX_ERROR_TEXT], derr[PS_PROM_MAX_ERROR_TEXT];
  bool api_error = false;
  int rc = ps_prom_dec_finish(p->dec, derr, sizeof derr, &api_error);
  if (resp->status == 401 || resp->status == 403) {
    /* Prometheus itself never says 401/403: its --web.config.file, or a proxy in front (OpenShift's
     * kube-rbac-proxy, Mimir's gateway), refused prescale's credentials. Named as such, at once, and
     * without the body: some gateways echo the request, headers and tokens included. */
    snprintf(msg, sizeof msg, "prometheus %.*s answered %d%s (check its credentials: --prometheus-config)",
             BASE_IN_MSG_MAX, p->base, resp->status, reason_phrase(resp->status));
    ps_ctl_to_space(msg);
    prom_finish(p, UV_EACCES, msg);
    return;
  }
  if (resp->status != 200 && !(rc != 0 && api_error)) {
    /* Prometheus answers its own errors with 400/422/503 and a JSON envelope; anything else (a proxy's
     * 502 page, a 404 from a wrong base path) is not the API we expected. The head of its body helps,
     * unless the request carried header lines (customHeaders, credentials) a proxy may have echoed. */
    snprintf(msg, sizeof msg, "prometheus %.*s answered %d%s (expected a Prometheus API response)%s%.80s",
             BASE_IN_MSG_MAX, p->base, resp->status, reason_phrase(resp->status), p->headers ? "" : ": ",
             p->headers ? "" : ps_prom_dec_head(p->dec));
    ps_ctl_to_space(msg);
    prom_finish(p, UV_EPROTO, msg);
    return;
  }
  if (rc != 0) {
    snprintf(msg, sizeof msg, "query %.*s: %s", BASE_IN_MSG_MAX, p->base, derr);
    prom_finish(p, rc, msg);
    return;
  }
  prom_keep_increasing(p, p->mark);
  if (p->next_point >= p->points) {
    prom_finish(p, 0, NULL);
    return;
  }
  rc = prom_next(p);
  if (rc != 0) {
    snprintf(msg, sizeof msg, "query %.*s: cannot start the next request: %s", BASE_IN_MSG_MAX, p->base,
             uv_strerror(rc));
    prom_finish(p, rc, msg);
  }
}

int ps_prom_query_range(struct ps_http_client *http, const char *base, const char *query, int64_t start_ms,
                        int64_t end_ms, int64_t step_ms, int64_t timeout_ms, ps_prom_cb cb, void *arg,
                        struct ps_prom_req **out) {
  struct ps_http_opts o = {.timeout_ms = timeout_ms > 0 ? (uint64_t)timeout_ms : 0, .cls = PS_HTTP_URGENT};
  return ps_prom_query_range_opts(http, base, query, start_ms, end_ms, step_ms, &o, NULL, cb, arg, out);
}

int ps_prom_query_range_opts(struct ps_http_client *http, const char *base, const char *query,
                             int64_t start_ms, int64_t end_ms, int64_t step_ms, const struct ps_http_opts *o,
                             const struct ps_prom_params *pp, ps_prom_cb cb, void *arg,
                             struct ps_prom_req **out) {
  if (out != NULL) *out = NULL;
  if (http == NULL || base == NULL || query == NULL || cb == NULL || step_ms <= 0 || end_ms < start_ms ||
      o == NULL || o->timeout_ms == 0)
    return UV_EINVAL;
  /* (end - start) may overflow int64 for absurd inputs: compute in unsigned. */
  uint64_t span = (uint64_t)end_ms - (uint64_t)start_ms;
  if (span / (uint64_t)step_ms >= PS_PROM_MAX_RANGE_POINTS) return UV_EINVAL;
  uint64_t points = span / (uint64_t)step_ms + 1;
  struct ps_prom_req *p = calloc(1, sizeof *p);
  if (p == NULL) return UV_ENOMEM;
  p->base = strdup(base);
  p->query = strdup(query);
  ps_buf_init(&p->url);
  struct ps_buf extra;
  ps_buf_init(&extra);
  int err = params_encode(&extra, pp);
  p->extra = err == 0 ? (extra.len > 0 ? ps_buf_steal(&extra, NULL) : strdup("")) : NULL;
  ps_buf_free(&extra);
  if (o->headers != NULL && o->headers[0] != '\0') p->headers = strdup(o->headers);
  if (p->base == NULL || p->query == NULL || p->extra == NULL ||
      (o->headers != NULL && o->headers[0] != '\0' && p->headers == NULL)) {
    prom_req_free(p);
    return UV_ENOMEM;
  }
  p->http = http;
  p->start_ms = start_ms;
  p->step_ms = step_ms;
  p->opts = *o;
  p->opts.headers = p->headers;
  p->points = (int64_t)points;
  p->cb = cb;
  p->arg = arg;
  err = prom_next(p);
  if (err != 0) {
    prom_req_free(p);
    return err;
  }
  if (out != NULL) *out = p;
  return 0;
}

void ps_prom_cancel(struct ps_prom_req *r) {
  if (r == NULL) return;
  ps_http_cancel(r->hreq); /* its callback will not run, so nothing else refers to r */
  prom_req_free(r);
}
