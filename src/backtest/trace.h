/* Request-rate traces for `prescale backtest`: CSV `timestamp_seconds,value`, one row per fixed interval.
 *
 * The format (as in /work/shared/data/traces/SOURCES.md): an optional header line (the first non-blank
 * line when it does not start like a number), then rows `timestamp_seconds,value` where value is the
 * number of requests in the interval that starts at timestamp. Timestamps are seconds (a fraction is
 * read to the millisecond), strictly evenly spaced: the interval is the difference of the first two rows
 * and every later row must follow by exactly that much (no gaps, no duplicates). Values are finite and
 * >= 0. Blank lines are ignored, CRLF is accepted, spaces around fields are allowed. */
#ifndef PS_TRACE_H
#define PS_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define PS_TRACE_MAX_BYTES       (256u << 20) /* a file larger than this is refused (10M rows fit easily) */
#define PS_TRACE_MAX_ROWS        10000000u    /* 80 MB of values */
#define PS_TRACE_MAX_FIELD       64           /* bytes of one number; longer fields are errors */
#define PS_TRACE_MAX_ABS_SECONDS 1e12         /* |timestamp| bound, so that milliseconds never overflow */

struct ps_trace {
  int64_t t0_ms;   /* timestamp of the first row */
  int64_t step_ms; /* the fixed interval, > 0 */
  size_t n;        /* rows, >= 2 */
  double *v;       /* owned: v[i] is the value of the row at t0_ms + i * step_ms */
};

/* Parses len bytes (not NUL-terminated). 0; UV_EINVAL with one line in err naming the line number and
 * quoting its content (or the problem with the whole file, e.g. fewer than 2 rows); UV_ENOMEM; UV_E2BIG
 * past PS_TRACE_MAX_ROWS. On error `out` holds nothing to free. */
int ps_trace_parse(const char *buf, size_t len, struct ps_trace *out, char *err, size_t errlen);

/* Reads and parses the file at path. Errors as ps_trace_parse, plus the file's own errors (UV_ENOENT, ...,
 * UV_EFBIG past PS_TRACE_MAX_BYTES), with err naming the path. Blocking: for the CLI only. */
int ps_trace_load(const char *path, struct ps_trace *out, char *err, size_t errlen);

void ps_trace_free(struct ps_trace *t);

#endif
