/* The streaming decoder of Prometheus API answers (https://prometheus.io/docs/prometheus/latest/querying/
 * api/): a query_range (matrix) or query (vector/scalar) response body, fed in pieces of any size, to the
 * one series' samples. Pure: no socket, no loop (src/prom.c feeds it from the HTTP client). */
#ifndef PS_PROM_DECODE_H
#define PS_PROM_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h> /* the UV_E* error codes it returns */

/* Room for an error text: the decoder's own, or Prometheus's `error` cut to fit. */
#define PS_PROM_MAX_ERROR_TEXT  512
/* The streaming decoder's bounds (its state is fixed-size, 2.5 KiB; only the samples grow). Nesting as
 * cJSON's CJSON_NESTING_LIMIT; a number longer than PS_PROM_JSON_MAX_NUMBER bytes (a double's longest exact
 * decimal is 767 digits) is not JSON it reads, and a sample value string longer than any float Prometheus
 * writes is malformed; texts kept for messages are cut. */
#define PS_PROM_JSON_MAX_DEPTH  1000
#define PS_PROM_JSON_MAX_NUMBER 1024
#define PS_PROM_MAX_VALUE_TEXT  127

struct ps_sample {
  int64_t t_ms;
  double v; /* "NaN", "+Inf", "-Inf" decode to NAN / INFINITY */
};

/* Decodes a query_range (matrix) or query (vector/scalar) response body (in one piece: ps_prom_dec_*).
 * Success: 0, *samples malloc'd (caller frees) sorted by time, *n may be 0 (empty result).
 * Errors (err gets a one-line reason, Prometheus's own `error` text when it sent one):
 *  UV_EINVAL  - status "error" with errorType bad_data (a bad query), or a result of several series
 *               ("query returned 3 series; prescale needs exactly one: aggregate it, e.g. sum(...)")
 *  UV_EAGAIN  - status "error" of another type (timeout, execution, unavailable...)
 *  UV_EPROTO  - not JSON, or JSON of the wrong shape
 *  UV_ENOMEM */
int ps_prom_decode(const char *body, size_t len, struct ps_sample **samples, size_t *n, char *err,
                   size_t errlen);

/* A streaming decoder of one response body: fed the body in pieces of any size as they arrive, with
 * bounded state (2.5 KiB), it writes the one series' samples straight into the caller's array. Its
 * result and messages are exactly ps_prom_decode's for the concatenation of the pieces.
 * ps_prom_dec_new: the samples are appended at (*samples)[*n] on, growing *samples with realloc and
 * updating *samples, *n and *cap in place; the array stays the caller's, and must not be touched until
 * ps_prom_dec_finish. 0 or UV_ENOMEM. */
struct ps_prom_dec;
int ps_prom_dec_new(struct ps_sample **samples, size_t *n, size_t *cap, struct ps_prom_dec **out);
/* 0, or UV_ENOMEM. A malformed body is not an error here: it is reported by ps_prom_dec_finish, which
 * needs the whole body to say what ps_prom_decode would (its length, the first bytes). */
int ps_prom_dec_feed(struct ps_prom_dec *d, const char *data, size_t len);
/* Ends the body: the return and err as ps_prom_decode's. On success (*samples)[mark..*n) hold this
 * body's samples sorted by time (mark: *n at ps_prom_dec_new); on error *n is back at mark.
 * *api_error (may be NULL) tells whether the error came from a {"status":"error"} envelope. */
int ps_prom_dec_finish(struct ps_prom_dec *d, char *err, size_t errlen, bool *api_error);
/* Series seen so far in data.result (for a message when the body is cut short), body bytes fed, and the
 * first bytes of the body (NUL-terminated, at most 80). */
size_t ps_prom_dec_series(const struct ps_prom_dec *d);
size_t ps_prom_dec_bytes(const struct ps_prom_dec *d);
const char *ps_prom_dec_head(const struct ps_prom_dec *d);
void ps_prom_dec_free(struct ps_prom_dec *d);

#endif
