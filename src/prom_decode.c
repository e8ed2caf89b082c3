/* The Prometheus answer decoder (https://prometheus.io/docs/prometheus/latest/querying/api/): a streaming
 * scanner of the JSON of a query_range (matrix) or query (vector/scalar) response that builds no tree of the
 * body and writes the one series' samples straight into the caller's array. It holds no socket and no loop:
 * src/prom.c feeds it the body as ps_http reads it; the fuzz driver and the bench feed it bytes.
 * Here: the decoder's lifecycle and the judgement of a finished answer (envelope, resultType, series count,
 * errors worded for the operator); the JSON scanner that fills the decoder is prom_decode_scan.c. */
#include "prom_decode_int.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_token.h"

static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int set_err(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* One line: Prometheus error texts may carry newlines, and this ends in a log line or grpc-message. */
    ps_ctl_to_space(err);
  }
  return code;
}

int ps_prom_dec_new(struct ps_sample **samples, size_t *n, size_t *cap, struct ps_prom_dec **out) {
  struct ps_prom_dec *d = calloc(1, sizeof *d);
  if (d == NULL) return UV_ENOMEM;
  d->out = samples;
  d->n = n;
  d->cap = cap;
  d->mark = *n;
  d->sorted = true;
  d->st = L_BOM;
  *out = d;
  return 0;
}

void ps_prom_dec_free(struct ps_prom_dec *d) { free(d); }
size_t ps_prom_dec_series(const struct ps_prom_dec *d) { return d->series; }
size_t ps_prom_dec_bytes(const struct ps_prom_dec *d) { return d->bytes; }
const char *ps_prom_dec_head(const struct ps_prom_dec *d) { return d->head; }

/* ---- samples ---- */

static int cmp_sample(const void *a, const void *b) {
  int64_t x = ((const struct ps_sample *)a)->t_ms, y = ((const struct ps_sample *)b)->t_ms;
  return (x > y) - (x < y);
}

/* One sample as the whole result (a scalar, or the one series of a vector); `bad` says what was malformed. */
static int finish_one(struct ps_prom_dec *d, bool ok, struct ps_sample one, const char *bad, char *err,
                      size_t errlen) {
  *d->n = d->mark;
  if (!ok) return set_err(err, errlen, UV_EPROTO, "%s", bad);
  ps_prom_dec_push_sample(d, one);
  if (d->err != 0) return set_err(err, errlen, UV_ENOMEM, "out of memory");
  return 0;
}

static bool text_is(const char *s, const struct text *t, const char *want) {
  return !t->over && t->len == strlen(want) && memcmp(s, want, t->len) == 0;
}

/* The checks decode has always made, in their order, on what the scan kept. */
static int judge(struct ps_prom_dec *d, char *err, size_t errlen, bool *api_error) {
  if (d->err != 0) return set_err(err, errlen, UV_ENOMEM, "out of memory");
  if (d->st == L_NUMBER && d->depth == 0) ps_prom_dec_number_done(d); /* a bare number ends with the body */
  if (d->st != L_DONE)
    return set_err(err, errlen, UV_EPROTO, "response is not JSON (%zu bytes starting \"%.*s\")", d->bytes,
                   (int)(d->head_len < 40 ? d->head_len : 40), d->head);
  if (d->root_k != K_OBJECT || d->status_k != K_STRING)
    return set_err(err, errlen, UV_EPROTO, "response is not a Prometheus API response (no \"status\")");
  if (text_is(d->status, &d->status_text, "error")) {
    const char *type = d->errtype_k == K_STRING ? d->errtype : "unknown";
    const char *msg = d->error_k == K_STRING ? d->error : "(no message)";
    *api_error = true;
    if (d->errtype_k == K_STRING && text_is(d->errtype, &d->errtype_text, "bad_data"))
      return set_err(err, errlen, UV_EINVAL, "Prometheus rejected the query: %s", msg);
    return set_err(err, errlen, UV_EAGAIN, "Prometheus query failed (%s): %s", type, msg);
  }
  if (!text_is(d->status, &d->status_text, "success"))
    return set_err(err, errlen, UV_EPROTO, "unknown response status \"%.40s\"", d->status);
  if (d->data_k != K_OBJECT || d->rtype_k != K_STRING || d->result_k == K_ABSENT)
    return set_err(err, errlen, UV_EPROTO, "response has no data.resultType/data.result");
  const char *rt = d->rtype;
  if (text_is(rt, &d->rtype_text, "scalar"))
    return finish_one(d, d->result_k == K_ARRAY && ps_prom_pair_ok(&d->scalar), d->scalar.s,
                      "scalar result is not [time, \"value\"]", err, errlen);
  bool matrix = text_is(rt, &d->rtype_text, "matrix");
  if (!matrix && !text_is(rt, &d->rtype_text, "vector"))
    return set_err(err, errlen, UV_EPROTO, "unsupported resultType \"%.40s\"", rt);
  if (d->result_k != K_ARRAY) return set_err(err, errlen, UV_EPROTO, "%s result is not an array", rt);
  if (d->series == 0) return 0;
  if (d->series > 1)
    return set_err(err, errlen, UV_EINVAL,
                   "query returned %zu series; prescale needs exactly one: aggregate it, e.g. sum(...)",
                   d->series);
  if (d->series0_k != K_OBJECT) return set_err(err, errlen, UV_EPROTO, "%s series is not an object", rt);
  if (!matrix) return finish_one(d, d->one_ok, d->one, "vector sample has malformed \"value\"", err, errlen);
  if (d->values_k == K_ABSENT && d->hist_k != K_ABSENT)
    return set_err(err, errlen, UV_EINVAL,
                   "query returned native histograms; prescale needs a float series, e.g. "
                   "histogram_count(...) or histogram_quantile(...)");
  if (d->values_k != K_ARRAY || d->values_bad)
    return set_err(err, errlen, UV_EPROTO, "matrix series has malformed \"values\"");
  if (!d->sorted) qsort(*d->out + d->mark, *d->n - d->mark, sizeof **d->out, cmp_sample);
  return 0;
}

int ps_prom_dec_finish(struct ps_prom_dec *d, char *err, size_t errlen, bool *api_error) {
  bool api = false;
  int rc = judge(d, err, errlen, &api);
  if (rc != 0) *d->n = d->mark;
  if (api_error != NULL) *api_error = api;
  return rc;
}

/* Decodes body in one piece; *is_api_error as ps_prom_dec_finish's. */
static int decode(const char *body, size_t len, struct ps_sample **samples, size_t *n, char *err,
                  size_t errlen, bool *is_api_error) {
  *samples = NULL;
  *n = 0;
  *is_api_error = false;
  if (body == NULL) return set_err(err, errlen, UV_EPROTO, "empty response from Prometheus");
  size_t cap = 0;
  struct ps_prom_dec *d;
  if (ps_prom_dec_new(samples, n, &cap, &d) != 0) return set_err(err, errlen, UV_ENOMEM, "out of memory");
  ps_prom_dec_feed(d, body, len);
  int rc = ps_prom_dec_finish(d, err, errlen, is_api_error);
  ps_prom_dec_free(d);
  if (rc != 0 || *n == 0) {
    free(*samples);
    *samples = NULL;
  }
  return rc;
}

int ps_prom_decode(const char *body, size_t len, struct ps_sample **samples, size_t *n, char *err,
                   size_t errlen) {
  bool api_error;
  return decode(body, len, samples, n, err, errlen, &api_error);
}
