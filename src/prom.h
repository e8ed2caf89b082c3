/* Prometheus HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/): building
 * /api/v1/query_range URLs, splitting long ranges, and decoding responses with cJSON. */
#ifndef PS_PROM_H
#define PS_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http_client.h"

/* Prometheus refuses a query_range that would return more than 11,000 points per series. */
#define PS_PROM_MAX_POINTS       11000
#define PS_PROM_MAX_ERROR_TEXT   512
/* ps_prom_query_range refuses a range of more points than this in total (100 requests, ~17 MiB of
 * samples): such a step is a configuration mistake, not a history to fetch. */
#define PS_PROM_MAX_RANGE_POINTS (100 * PS_PROM_MAX_POINTS)

struct ps_sample {
  int64_t t_ms;
  double v; /* "NaN", "+Inf", "-Inf" decode to NAN / INFINITY */
};

/* ---- pure parts (unit tested, fuzzed) -------------------------------------------------------- */

/* Appends base + "/api/v1/query_range?query=...&start=...&end=...&step=..." with the query
 * percent-encoded (RFC 3986 unreserved kept) and times in seconds with millisecond decimals.
 * base may carry a path prefix ("http://h:9090/prom"); a trailing '/' is not doubled. */
int ps_prom_range_url(struct ps_buf *out, const char *base, const char *query, int64_t start_ms,
                      int64_t end_ms, int64_t step_ms);

/* Decodes a query_range (matrix) or query (vector/scalar) response body.
 * Success: 0, *samples malloc'd (caller frees) sorted by time, *n may be 0 (empty result).
 * Errors (err gets a one-line reason, Prometheus's own `error` text when it sent one):
 *  UV_EINVAL  - status "error" with errorType bad_data (a bad query), or a result of several series
 *               ("query returned 3 series; prescale needs exactly one: aggregate it, e.g. sum(...)")
 *  UV_EAGAIN  - status "error" of another type (timeout, execution, unavailable...)
 *  UV_EPROTO  - not JSON, or JSON of the wrong shape
 *  UV_ENOMEM */
int ps_prom_decode(const char *body, size_t len, struct ps_sample **samples, size_t *n, char *err,
                   size_t errlen);

/* ---- the asynchronous client ------------------------------------------------------------------ */

struct ps_prom_req;

/* Exactly once per request unless cancelled. err 0: samples (valid during the call) sorted, possibly
 * n == 0. Otherwise err is from ps_prom_decode or the HTTP client (UV_ECONNREFUSED, UV_ETIMEDOUT, ...,
 * UV_EPROTO also for an HTTP status other than 200/400/422/503 with no Prometheus error body), and
 * errmsg is one line fit for a log and a grpc-message. */
typedef void (*ps_prom_cb)(void *arg, int err, const char *errmsg, const struct ps_sample *samples, size_t n);

/* Fetches query over [start_ms, end_ms] at step_ms, in as many sequential requests as
 * PS_PROM_MAX_POINTS requires, and delivers the concatenation. timeout_ms bounds each request.
 * 0 (cb later) or UV_EINVAL (bad arguments, more than PS_PROM_MAX_RANGE_POINTS points, bad base URL) /
 * UV_EPROTONOSUPPORT (https base) / UV_ENOMEM (cb never called). *out (may be NULL) is valid until cb
 * runs. */
int ps_prom_query_range(struct ps_http_client *http, const char *base, const char *query, int64_t start_ms,
                        int64_t end_ms, int64_t step_ms, int64_t timeout_ms, ps_prom_cb cb, void *arg,
                        struct ps_prom_req **out);
void ps_prom_cancel(struct ps_prom_req *r);

#endif
