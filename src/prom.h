/* Prometheus HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/): building
 * /api/v1/query_range URLs and splitting long ranges; the answers are decoded as they stream in by
 * prom_decode.h (included here: struct ps_sample and the decoder are part of this API). */
#ifndef PS_PROM_H
#define PS_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http_client.h"
#include "kv_list.h"
#include "prom_decode.h"

/* Prometheus refuses a query_range that would return more than 11,000 points per series. */
#define PS_PROM_MAX_POINTS       11000
/* ps_prom_query_range refuses a range of more points than this in total (100 requests, ~17 MiB of
 * samples): such a step is a configuration mistake, not a history to fetch. */
#define PS_PROM_MAX_RANGE_POINTS (100 * PS_PROM_MAX_POINTS)

/* The largest answer a chunk may legitimately be. A chunk asks for at most PS_PROM_MAX_POINTS points and
 * prescale needs exactly one series (several are refused), so a good answer is one series' points plus an
 * envelope. The longest sample Prometheus writes (util/jsonutil: a timestamp as seconds with at most 3
 * decimals, a value by strconv 'f' below 1e21 and 'e' above) is [-9223372036854775.808,"-2.2250738585072014
 * e-308"], 52 bytes with its comma; PS_PROM_MAX_SAMPLE_BYTES leaves room for a pretty-printing proxy's
 * whitespace. The envelope holds the series' labels, warnings/infos and an error text. Over the limit a
 * request ends with UV_E2BIG (or UV_EINVAL when the part read already held several series), checked while
 * the body streams in, so a 30 MB answer costs 1.6 MB of reading and no more. */
#define PS_PROM_MAX_SAMPLE_BYTES   128
#define PS_PROM_MAX_ENVELOPE_BYTES (256u << 10)
#define PS_PROM_MAX_RESPONSE                                                                                 \
  ((size_t)PS_PROM_MAX_POINTS * PS_PROM_MAX_SAMPLE_BYTES + PS_PROM_MAX_ENVELOPE_BYTES)

/* ---- pure parts (unit tested, fuzzed) -------------------------------------------------------- */

/* What a trigger adds to the query string of each request: KEDA's prometheus scaler keys. NULL (or NULL
 * fields) adds nothing. */
struct ps_prom_params {
  const char *ns;                        /* `namespace`: &namespace=ns, as Thanos querier's tenancy expects */
  const struct ps_kv_list *query_params; /* `queryParameters`: &k=v each, in the list's (sorted) order */
};

/* Appends base + "/api/v1/query_range?query=...&start=...&end=...&step=..." with the query
 * percent-encoded (RFC 3986 unreserved kept) and times in seconds with millisecond decimals, then what
 * pp (may be NULL) adds: &namespace=..., then each query parameter, keys and values percent-encoded the
 * same way (Prometheus ignores parameters it does not know; a proxy in front of it reads them).
 * base may carry a path prefix ("http://h:9090/prom"); a trailing '/' is not doubled. */
int ps_prom_range_url(struct ps_buf *out, const char *base, const char *query, int64_t start_ms,
                      int64_t end_ms, int64_t step_ms, const struct ps_prom_params *pp);

/* Why ps_prom_range_url refuses these arguments for the length of the URL: UV_E2BIG with a one-line text
 * in buf (the length, by how much it exceeds PS_HTTP_MAX_URL, the query's size and what namespace and
 * queryParameters add), or 0 when that is not the reason. */
int ps_prom_url_problem(char *buf, size_t len, const char *base, const char *query, int64_t start_ms,
                        int64_t end_ms, int64_t step_ms, const struct ps_prom_params *pp);

/* ---- the asynchronous client ------------------------------------------------------------------ */

struct ps_prom_req;

/* Exactly once per request unless cancelled. err 0: samples (valid during the call) sorted, possibly
 * n == 0. Otherwise err is from ps_prom_decode or the HTTP client (UV_ECONNREFUSED, UV_ETIMEDOUT, ...,
 * UV_EACCES for a 401 or 403, whatever the body: "prometheus <base> answered 403 Forbidden", nothing of
 * the request's headers; UV_EPROTO for another HTTP status than 200/400/422/503 with no Prometheus error
 * body, "prometheus <base> answered 502 Bad Gateway (...)" and the head of the body unless o carried
 * header lines; an answer over PS_PROM_MAX_RESPONSE:
 * UV_EINVAL when the part read held several series, else UV_E2BIG), and errmsg is one line fit for a log
 * and a grpc-message. */
typedef void (*ps_prom_cb)(void *arg, int err, const char *errmsg, const struct ps_sample *samples, size_t n);

/* Fetches query over [start_ms, end_ms] at step_ms, in as many sequential requests as
 * PS_PROM_MAX_POINTS requires, and delivers the concatenation. timeout_ms bounds each request.
 * 0 (cb later) or UV_EINVAL (bad arguments, more than PS_PROM_MAX_RANGE_POINTS points, bad base URL) /
 * UV_EPROTONOSUPPORT (https base) / UV_ENOMEM (cb never called). *out (may be NULL) is valid until cb
 * runs. */
int ps_prom_query_range(struct ps_http_client *http, const char *base, const char *query, int64_t start_ms,
                        int64_t end_ms, int64_t step_ms, int64_t timeout_ms, ps_prom_cb cb, void *arg,
                        struct ps_prom_req **out);
/* The same with the HTTP client's options for every request (ps_http_get_opts: class, queue bound,
 * extra header lines) and what pp (may be NULL) adds to the query string; the plain call is
 * {timeout_ms, 0, PS_HTTP_URGENT} and no pp. o's headers and pp are copied: the request may outlive them. */
int ps_prom_query_range_opts(struct ps_http_client *http, const char *base, const char *query,
                             int64_t start_ms, int64_t end_ms, int64_t step_ms, const struct ps_http_opts *o,
                             const struct ps_prom_params *pp, ps_prom_cb cb, void *arg,
                             struct ps_prom_req **out);
void ps_prom_cancel(struct ps_prom_req *r);

#endif
