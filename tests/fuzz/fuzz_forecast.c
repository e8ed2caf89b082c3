/* Fuzzes history + forecast with arbitrary samples (NaN, +-Inf, huge, negative), times and parameters.
 * Asserts what KEDA relies on: the answer is finite and >= 0, and ps_forecast_run's windowed arithmetic
 * agrees with a naive step-by-step evaluation of the same definition.
 *
 * Input: cap(1) step(1) period_steps(1) lookahead(2) flags(1) now_offset(2), then records of
 * dt(1, signed: steps from the previous time) value(8, raw double bits). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "forecast/forecast.h"

#define NAIVE_MAX 20000 /* window steps the naive reference walks */

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static int64_t floor_to(int64_t t, int64_t step) {
  int64_t q = t / step;
  if (t % step != 0 && t < 0) q--;
  return q * step;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8) return 0;
  size_t cap = 1 + data[0] % 64;
  int64_t step = 1000 * (1 + data[1] % 60);
  int64_t period = step * (data[2] % 40); /* 0 is invalid for seasonal: must be rejected, not crash */
  int64_t lookahead = (int64_t)u16(data + 3) * (data[5] & 0x80 ? 1000 : 1);
  enum ps_model model = (data[5] & 1) ? PS_MODEL_LAST : PS_MODEL_SEASONAL;
  int64_t now_off = u16(data + 6) % (3 * (uint64_t)step);
  data += 8;
  size -= 8;

  struct ps_history h;
  if (ps_history_init(&h, cap, step) != 0) abort();
  int64_t t = 1700000000000LL;
  while (size >= 9) {
    t += (int64_t)(int8_t)data[0] * step;
    double v;
    memcpy(&v, data + 1, sizeof v);
    int r = ps_history_put(&h, t, v);
    if (r != 0 && r != UV_ERANGE) abort();
    if (r == 0) {
      double back = ps_history_at(&h, t);
      if (isfinite(v) ? back != v : !isnan(back)) abort();
    }
    if (h.len > h.cap) abort();
    data += 9;
    size -= 9;
  }

  int64_t now = (h.len > 0 ? h.last_ms : t) + now_off;
  struct ps_forecast_params p = {model, period, lookahead};
  struct ps_forecast f;
  int r = ps_forecast_run(&h, &p, now, &f);
  if (r == UV_EINVAL) {
    if (!(model == PS_MODEL_SEASONAL && period <= 0)) abort();
  } else if (r == UV_ENOENT) {
    if (ps_history_latest(&h, NULL, NULL) != UV_ENOENT) abort();
  } else if (r != 0) {
    abort();
  } else {
    if (!isfinite(f.value) || !(f.value >= 0)) abort();
    if (isnan(f.current) || isnan(f.predicted)) abort();
    if (f.value < f.current && f.current > 0) abort();
    if (model == PS_MODEL_SEASONAL) {
      /* naive reference */
      int64_t end = now + lookahead, t0 = floor_to(now, step) + step, n;
      if (t0 > end) {
        t0 = floor_to(end, step);
        n = 1;
      } else {
        n = (end - t0) / step + 1;
      }
      if (n <= NAIVE_MAX) {
        double best = -INFINITY;
        int misses = 0;
        for (int64_t k = 0; k < n; k++) {
          double x = ps_history_at(&h, t0 + k * step - period);
          if (isnan(x)) {
            x = f.current;
            misses++;
          }
          if (x > best) best = x;
        }
        if (best != f.predicted || misses != f.seasonal_misses) abort();
      }
    } else if (f.predicted != f.current) {
      abort();
    }
  }
  ps_history_free(&h);
  return 0;
}
