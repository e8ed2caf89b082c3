/* Fuzzes the CSV trace reader (src/backtest/trace.c) with arbitrary bytes. Asserts what the backtest
 * relies on: an accepted trace has >= 2 rows, a positive interval and finite values >= 0; a refused
 * one yields a printable one-line error and holds nothing; and accepted input parses the same twice. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "backtest/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct ps_trace t;
  char err[512];
  memset(err, 0, sizeof err);
  int r = ps_trace_parse((const char *)data, size, &t, err, sizeof err);
  if (r == 0) {
    if (t.n < 2 || t.step_ms <= 0 || t.v == NULL) abort();
    for (size_t i = 0; i < t.n; i++)
      if (!isfinite(t.v[i]) || t.v[i] < 0) abort();
    struct ps_trace u;
    if (ps_trace_parse((const char *)data, size, &u, err, sizeof err) != 0) abort();
    if (u.n != t.n || u.step_ms != t.step_ms || u.t0_ms != t.t0_ms ||
        memcmp(u.v, t.v, t.n * sizeof *t.v) != 0)
      abort();
    ps_trace_free(&u);
    ps_trace_free(&t);
  } else {
    if (r != UV_EINVAL && r != UV_ENOMEM && r != UV_E2BIG) abort();
    if (t.v != NULL || t.n != 0) abort();
    size_t len = strnlen(err, sizeof err);
    if (len == 0 || len == sizeof err) abort();
    for (size_t i = 0; i < len; i++)
      if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] >= 0x7f) abort();
  }
  return 0;
}
