/* Fuzzes the forecasting engine with arbitrary samples (NaN, +-Inf, huge, negative), times (gaps,
 * revisions, times far back or far ahead) and configurations. Asserts what KEDA relies on: every
 * forecast is finite and >= 0, with a finite margin (>= 0 but for a target coverage's, which may be
 * negative), a realised coverage NaN or within [0, 1], and a chosen model that is not auto.
 *
 * Input: model(1) cap(1) step(1) period(1: below 200, that mod 50 steps; else 361 + 8 x (it - 200) steps,
 * where the analog model keeps its codes in windows) lookahead_steps(1) quantile(1; with a remainder of 1 by
 * 3, a target coverage as well, which then sets the margin), then records of
 * dt(1, signed: steps from the previous time; -128 jumps far) value(4, raw float bits) or value(8) when
 * the record's dt is odd. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "forecast/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 6) return 0;
  struct ps_engine_config c = {
      .model = (enum ps_model)(data[0] % PS_MODEL_COUNT),
      .capacity = 1 + (size_t)data[1] * 4,
      .step_ms = 1000 * (1 + data[2] % 60),
  };
  /* periods under 50 steps, or from 361 (long enough for the analog model's windows, analog.h) */
  c.period_ms = c.step_ms * (data[3] < 200 ? data[3] % 50 : 361 + (data[3] - 200) * 8);
  c.lookahead_ms = c.step_ms * (data[4] % 40) + (data[4] & 0x40 ? 123 : 0);
  c.quantile = data[5] % 3 == 0 ? 0 : 0.5 + (data[5] % 50) / 100.0;
  c.target_coverage = data[5] % 3 == 1 ? (1 + data[5] % 99) / 100.0 : 0;
  c.seed = data[5];
  struct ps_engine *e;
  if (ps_engine_new(&c, &e) != 0) abort();
  data += 6;
  size -= 6;
  int64_t t = 0;
  while (size >= 1) {
    int8_t dt = (int8_t)data[0];
    size_t need = (dt & 1) ? 9 : 5;
    if (size < need) break;
    double v;
    if (dt & 1) {
      memcpy(&v, data + 1, 8);
    } else {
      float f;
      memcpy(&f, data + 1, 4);
      v = f;
    }
    data += need;
    size -= need;
    if (dt == -128)
      t += (int64_t)1 << 40;
    else
      t += (int64_t)dt * c.step_ms / 4;
    int rc = ps_engine_put(e, t, v);
    if (rc != 0 && rc != UV_ERANGE) abort();
    struct ps_engine_result r;
    rc = ps_engine_forecast(e, t + (dt & 2 ? c.step_ms / 2 : 0), &r);
    if (rc == 0) {
      if (!isfinite(r.value) || r.value < 0 || !isfinite(r.margin)) abort();
      if (r.margin < 0 && c.target_coverage == 0) abort();
      if (!isnan(r.coverage) && !(r.coverage >= 0 && r.coverage <= 1)) abort();
      if (r.chosen == PS_MODEL_AUTO) abort();
    } else if (rc != UV_ENOENT) {
      abort();
    }
  }
  ps_engine_free(e);
  return 0;
}
