/* Forecasting over a ps_history: pure functions, no I/O, no loop, no globals.
 *
 * The seasonal naive model predicts that the load at time t equals the load one period earlier,
 * y(t) = y(t - period) (Hyndman & Athanasopoulos, "Forecasting: Principles and Practice", 5.2). prescale
 * answers KEDA with the maximum over the lookahead window, so capacity is in place before the peak. */
#include "forecast.h"

#include <limits.h>
#include <math.h>
#include <string.h>
#include <uv.h>

/* ---- models -------------------------------------------------------------------------------------- */

int ps_model_parse(const char *s, enum ps_model *out) {
  if (s == NULL) return UV_EINVAL;
  if (strcmp(s, "seasonal") == 0) {
    *out = PS_MODEL_SEASONAL;
    return 0;
  }
  if (strcmp(s, "last") == 0) {
    *out = PS_MODEL_LAST;
    return 0;
  }
  if (strcmp(s, "holtwinters") == 0) {
    *out = PS_MODEL_HOLTWINTERS;
    return 0;
  }
  if (strcmp(s, "linear") == 0) {
    *out = PS_MODEL_LINEAR;
    return 0;
  }
  if (strcmp(s, "auto") == 0) {
    *out = PS_MODEL_AUTO;
    return 0;
  }
  return UV_EINVAL;
}

const char *ps_model_name(enum ps_model m) {
  switch (m) {
  case PS_MODEL_SEASONAL: return "seasonal";
  case PS_MODEL_LAST: return "last";
  case PS_MODEL_HOLTWINTERS: return "holtwinters";
  case PS_MODEL_LINEAR: return "linear";
  case PS_MODEL_AUTO: return "auto";
  }
  return "unknown";
}

/* ---- window arithmetic --------------------------------------------------------------------------- */

/* 128-bit intermediates: times are int64 milliseconds, and sums/products of two of them must not wrap
 * whatever a caller passes (the fuzzer passes anything). */
typedef __int128 wide;

static wide floor_div(wide a, wide b) {
  wide q = a / b;
  if (a % b != 0 && (a < 0) != (b < 0)) q--;
  return q;
}

static wide ceil_div(wide a, wide b) { return -floor_div(-a, b); }

/* ---- forecast ------------------------------------------------------------------------------------ */

int ps_forecast_run(const struct ps_history *h, const struct ps_forecast_params *p, int64_t now_ms,
                    struct ps_forecast *out) {
  memset(out, 0, sizeof *out);
  if (h->step_ms <= 0 || p->lookahead_ms < 0) return UV_EINVAL;
  if (p->model != PS_MODEL_LAST && p->model != PS_MODEL_SEASONAL) return UV_EINVAL;
  if (p->model == PS_MODEL_SEASONAL && p->period_ms <= 0) return UV_EINVAL;

  double cur;
  int64_t cur_ms;
  if (ps_history_latest(h, &cur, &cur_ms) != 0) return UV_ENOENT;
  out->current = cur;
  out->current_ms = cur_ms;

  double pred = cur;
  if (p->model == PS_MODEL_SEASONAL) {
    const wide step = h->step_ms;
    /* The window is the steps (now, now + lookahead]; when it holds no step boundary (lookahead shorter
     * than the rest of the current step), the step containing now + lookahead stands for it, so the
     * answer still looks one season back rather than only at the present. */
    wide end = (wide)now_ms + p->lookahead_ms;
    wide t0 = (floor_div(now_ms, step) + 1) * step;
    wide n;
    if (t0 > end) {
      t0 = floor_div(end, step) * step;
      n = 1;
    } else {
      n = (end - t0) / step + 1;
    }

    /* Window step k forecasts the slot s0 + k*step. Only the k whose slot lies in the ring can have a
     * reference; every other one is a miss without looking, so the loop is bounded by the ring's length
     * rather than by the window's. */
    wide s0 = floor_div(t0 - p->period_ms, step) * step;
    wide first = (wide)h->last_ms - (wide)(h->len - 1) * step;
    wide k_lo = ceil_div(first - s0, step);
    wide k_hi = floor_div((wide)h->last_ms - s0, step);
    if (k_lo < 0) k_lo = 0;
    if (k_hi > n - 1) k_hi = n - 1;

    wide misses = n; /* n >= 1, so either a reference or the fallback sets best */
    double best = -INFINITY;
    for (wide k = k_lo; k <= k_hi; k++) {
      wide idx = ((wide)h->last_ms - (s0 + k * step)) / step; /* steps back from the newest slot */
      double x = h->v[(h->head + h->cap - (size_t)idx) % h->cap];
      if (isnan(x)) continue;
      misses--;
      if (x > best) best = x;
    }
    if (misses > 0) { /* a missing reference falls back to the latest observation */
      if (cur > best) best = cur;
    }
    pred = best;
    out->seasonal_misses = misses > INT_MAX ? INT_MAX : (int)misses;
  }

  out->predicted = pred;
  double v = pred > cur ? pred : cur;
  /* A load below zero (a bad query, a counter reset in a rate) means no load; NaN cannot reach here since
   * the history stores no NaN as an observation, but the comparison form keeps it out regardless. */
  out->value = v > 0 ? v : 0;
  return 0;
}
