/* Prometheus HTTP API client (https://prometheus.io/docs/prometheus/latest/querying/api/).
 * The pure half builds query_range URLs and decodes JSON responses with cJSON (cJSON stays inside this
 * file); the asynchronous half splits a long range into requests Prometheus accepts and runs them one
 * after another on ps_http. */
#include "prom.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_S        1000
/* Timestamps beyond this many seconds cannot be turned into int64 milliseconds. */
#define MAX_ABS_SECONDS 9.0e15
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

int ps_prom_range_url(struct ps_buf *out, const char *base, const char *query, int64_t start_ms,
                      int64_t end_ms, int64_t step_ms) {
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
  if (err == 0 && out->len - mark > PS_HTTP_MAX_URL) err = UV_EINVAL;
  if (err != 0) {
    out->len = mark;
    if (out->data != NULL) out->data[mark] = '\0';
  }
  return err;
}

/* ==== decoding ===================================================================================== */

static void one_line(char *s) {
  for (char *p = s; *p != '\0'; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
}

static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int set_err(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* One line: Prometheus error texts may carry newlines, and this ends in a log line or grpc-message. */
    one_line(err);
  }
  return code;
}

/* [ <unix seconds as number>, "<value as string>" ] (the API's sample encoding). */
static int decode_pair(const cJSON *pair, struct ps_sample *s) {
  if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2) return UV_EPROTO;
  const cJSON *t = cJSON_GetArrayItem(pair, 0), *v = cJSON_GetArrayItem(pair, 1);
  if (!cJSON_IsNumber(t) || !cJSON_IsString(v) || v->valuestring == NULL) return UV_EPROTO;
  double sec = t->valuedouble;
  if (!isfinite(sec) || fabs(sec) > MAX_ABS_SECONDS) return UV_EPROTO;
  s->t_ms = (int64_t)llround(sec * MS_PER_S);
  const char *vs = v->valuestring;
  /* Go's strconv.FormatFloat output, plus the three specials; strtod takes all of them. */
  if (*vs == '\0' || isspace((unsigned char)*vs)) return UV_EPROTO;
  char *end;
  double d = strtod(vs, &end);
  if (*end != '\0') return UV_EPROTO;
  s->v = d;
  return 0;
}

static int cmp_sample(const void *a, const void *b) {
  int64_t x = ((const struct ps_sample *)a)->t_ms, y = ((const struct ps_sample *)b)->t_ms;
  return (x > y) - (x < y);
}

static int decode_values(const cJSON *values, struct ps_sample **samples, size_t *n) {
  if (!cJSON_IsArray(values)) return UV_EPROTO;
  int cnt = cJSON_GetArraySize(values);
  if (cnt == 0) return 0;
  struct ps_sample *s = malloc((size_t)cnt * sizeof *s);
  if (s == NULL) return UV_ENOMEM;
  size_t i = 0;
  bool sorted = true;
  for (const cJSON *it = values->child; it != NULL; it = it->next, i++) {
    if (decode_pair(it, &s[i]) != 0) {
      free(s);
      return UV_EPROTO;
    }
    if (i > 0 && s[i].t_ms < s[i - 1].t_ms) sorted = false;
  }
  if (!sorted) qsort(s, i, sizeof *s, cmp_sample);
  *samples = s;
  *n = i;
  return 0;
}

/* One sample as the whole result (a scalar, or the one series of a vector); `bad` says what was malformed. */
static int decode_one(const cJSON *pair, const char *bad, struct ps_sample **samples, size_t *n, char *err,
                      size_t errlen) {
  struct ps_sample one;
  if (decode_pair(pair, &one) != 0) return set_err(err, errlen, UV_EPROTO, "%s", bad);
  *samples = malloc(sizeof one);
  if (*samples == NULL) return set_err(err, errlen, UV_ENOMEM, "out of memory");
  **samples = one;
  *n = 1;
  return 0;
}

/* decode() past the JSON parse; root stays the caller's. */
static int decode_root(const cJSON *root, struct ps_sample **samples, size_t *n, char *err, size_t errlen,
                       bool *is_api_error) {
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(root, "status");
  if (!cJSON_IsObject(root) || !cJSON_IsString(status))
    return set_err(err, errlen, UV_EPROTO, "response is not a Prometheus API response (no \"status\")");
  if (strcmp(status->valuestring, "error") == 0) {
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(root, "errorType");
    const cJSON *em = cJSON_GetObjectItemCaseSensitive(root, "error");
    const char *type = cJSON_IsString(et) ? et->valuestring : "unknown";
    const char *msg = cJSON_IsString(em) ? em->valuestring : "(no message)";
    *is_api_error = true;
    if (strcmp(type, "bad_data") == 0)
      return set_err(err, errlen, UV_EINVAL, "Prometheus rejected the query: %s", msg);
    return set_err(err, errlen, UV_EAGAIN, "Prometheus query failed (%s): %s", type, msg);
  }
  if (strcmp(status->valuestring, "success") != 0)
    return set_err(err, errlen, UV_EPROTO, "unknown response status \"%.40s\"", status->valuestring);
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
  const cJSON *rtype = cJSON_GetObjectItemCaseSensitive(data, "resultType");
  const cJSON *result = cJSON_GetObjectItemCaseSensitive(data, "result");
  if (!cJSON_IsObject(data) || !cJSON_IsString(rtype) || result == NULL)
    return set_err(err, errlen, UV_EPROTO, "response has no data.resultType/data.result");
  const char *rt = rtype->valuestring;
  if (strcmp(rt, "scalar") == 0)
    return decode_one(result, "scalar result is not [time, \"value\"]", samples, n, err, errlen);
  bool matrix = strcmp(rt, "matrix") == 0;
  if (!matrix && strcmp(rt, "vector") != 0)
    return set_err(err, errlen, UV_EPROTO, "unsupported resultType \"%.40s\"", rt);
  if (!cJSON_IsArray(result)) return set_err(err, errlen, UV_EPROTO, "%s result is not an array", rt);
  int series = cJSON_GetArraySize(result);
  if (series == 0) return 0;
  if (series > 1)
    return set_err(err, errlen, UV_EINVAL,
                   "query returned %d series; prescale needs exactly one: aggregate it, e.g. sum(...)",
                   series);
  const cJSON *s0 = result->child;
  if (!cJSON_IsObject(s0)) return set_err(err, errlen, UV_EPROTO, "%s series is not an object", rt);
  if (!matrix)
    return decode_one(cJSON_GetObjectItemCaseSensitive(s0, "value"), "vector sample has malformed \"value\"",
                      samples, n, err, errlen);
  const cJSON *values = cJSON_GetObjectItemCaseSensitive(s0, "values");
  if (values == NULL && cJSON_GetObjectItemCaseSensitive(s0, "histograms") != NULL)
    return set_err(err, errlen, UV_EINVAL,
                   "query returned native histograms; prescale needs a float series, e.g. "
                   "histogram_count(...) or histogram_quantile(...)");
  int rc = decode_values(values, samples, n);
  if (rc == UV_EPROTO)
    set_err(err, errlen, rc, "matrix series has malformed \"values\"");
  else if (rc == UV_ENOMEM)
    set_err(err, errlen, rc, "out of memory");
  return rc;
}

/* Decodes body; *is_api_error tells whether the error came from an {"status":"error"} envelope, which is
 * what the asynchronous half needs to tell a Prometheus error from an unrelated error page. */
static int decode(const char *body, size_t len, struct ps_sample **samples, size_t *n, char *err,
                  size_t errlen, bool *is_api_error) {
  *samples = NULL;
  *n = 0;
  *is_api_error = false;
  if (body == NULL) return set_err(err, errlen, UV_EPROTO, "empty response from Prometheus");
  cJSON *root = cJSON_ParseWithLength(body, len);
  if (root == NULL)
    return set_err(err, errlen, UV_EPROTO, "response is not JSON (%zu bytes starting \"%.*s\")", len,
                   (int)(len < 40 ? len : 40), body);
  int rc = decode_root(root, samples, n, err, errlen, is_api_error);
  cJSON_Delete(root);
  return rc;
}

int ps_prom_decode(const char *body, size_t len, struct ps_sample **samples, size_t *n, char *err,
                   size_t errlen) {
  bool api_error;
  return decode(body, len, samples, n, err, errlen, &api_error);
}

/* ==== asynchronous range queries =================================================================== */

struct ps_prom_req {
  struct ps_http_client *http;
  struct ps_http_req *hreq; /* the request in flight */
  char *base, *query;       /* owned copies */
  int64_t start_ms, step_ms, timeout_ms;
  int64_t points;     /* total points in the range: floor((end - start) / step) + 1 */
  int64_t next_point; /* index of the first point of the next chunk */
  ps_prom_cb cb;
  void *arg;
  struct ps_sample *samples; /* the concatenation so far */
  size_t n, cap;
  struct ps_buf url;
};

static void prom_req_free(struct ps_prom_req *p) {
  free(p->base);
  free(p->query);
  free(p->samples);
  ps_buf_free(&p->url);
  free(p);
}

static void prom_finish(struct ps_prom_req *p, int err, const char *msg) {
  p->cb(p->arg, err, err != 0 ? msg : NULL, err != 0 ? NULL : p->samples, err != 0 ? 0 : p->n);
  prom_req_free(p);
}

static void prom_http_cb(void *arg, int err, const char *errmsg, const struct ps_http_response *resp);

/* Issues the request for the next chunk: points [next_point, next_point + PS_PROM_MAX_POINTS) at most.
 * Chunk edges sit on start + k*step, so every chunk evaluates exactly the instants one big query would,
 * and consecutive chunks share no instant. */
static int prom_next(struct ps_prom_req *p) {
  int64_t first = p->next_point;
  int64_t last = first + PS_PROM_MAX_POINTS - 1;
  if (last > p->points - 1) last = p->points - 1;
  p->next_point = last + 1;
  ps_buf_reset(&p->url);
  int err = ps_prom_range_url(&p->url, p->base, p->query, p->start_ms + first * p->step_ms,
                              p->start_ms + last * p->step_ms, p->step_ms);
  if (err != 0) return err;
  return ps_http_get(p->http, p->url.data, (uint64_t)p->timeout_ms, prom_http_cb, p, &p->hreq);
}

static int prom_append(struct ps_prom_req *p, const struct ps_sample *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    /* Chunks are disjoint and in order; a sample not after the last one would be a server bug. */
    if (p->n > 0 && s[i].t_ms <= p->samples[p->n - 1].t_ms) continue;
    if (p->n == p->cap) {
      size_t cap = p->cap ? p->cap * 2 : 1024;
      struct ps_sample *ns = realloc(p->samples, cap * sizeof *ns);
      if (ns == NULL) return UV_ENOMEM;
      p->samples = ns;
      p->cap = cap;
    }
    p->samples[p->n++] = s[i];
  }
  return 0;
}

static void prom_http_cb(void *arg, int err, const char *errmsg, const struct ps_http_response *resp) {
  struct ps_prom_req *p = arg;
  p->hreq = NULL;
  if (err != 0) {
    prom_finish(p, err, errmsg);
    return;
  }
  char msg[2 * PS_PROM_MAX_ERROR_TEXT], derr[PS_PROM_MAX_ERROR_TEXT];
  struct ps_sample *s = NULL;
  size_t n = 0;
  bool api_error = false;
  int rc = decode(resp->body, resp->body_len, &s, &n, derr, sizeof derr, &api_error);
  if (resp->status != 200 && !(rc != 0 && api_error)) {
    /* Prometheus answers its own errors with 400/422/503 and a JSON envelope; anything else (a proxy's
     * 502 page, a 404 from a wrong base path) is not the API we expected. */
    free(s);
    char host[256];
    int port;
    const char *path;
    if (ps_http_url_split(p->url.data, host, sizeof host, &port, &path) != 0)
      snprintf(host, sizeof host, "?");
    bool v6 = strchr(host, ':') != NULL;
    snprintf(msg, sizeof msg, "HTTP %d from %s%s%s:%d (expected a Prometheus API response): %.80s",
             resp->status, v6 ? "[" : "", host, v6 ? "]" : "", port, resp->body);
    one_line(msg);
    prom_finish(p, UV_EPROTO, msg);
    return;
  }
  if (rc != 0) {
    snprintf(msg, sizeof msg, "query %.*s: %s", BASE_IN_MSG_MAX, p->base, derr);
    prom_finish(p, rc, msg);
    return;
  }
  rc = prom_append(p, s, n);
  free(s);
  if (rc != 0) {
    prom_finish(p, rc, "out of memory collecting Prometheus samples");
    return;
  }
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
  if (out != NULL) *out = NULL;
  if (http == NULL || base == NULL || query == NULL || cb == NULL || step_ms <= 0 || end_ms < start_ms ||
      timeout_ms <= 0)
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
  if (p->base == NULL || p->query == NULL) {
    prom_req_free(p);
    return UV_ENOMEM;
  }
  p->http = http;
  p->start_ms = start_ms;
  p->step_ms = step_ms;
  p->timeout_ms = timeout_ms;
  p->points = (int64_t)points;
  p->cb = cb;
  p->arg = arg;
  int err = prom_next(p);
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
