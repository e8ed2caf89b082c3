/* Forecasting over a ps_history: pure functions, no I/O, no loop, no globals. */
#ifndef PS_FORECAST_H
#define PS_FORECAST_H

#include <stdint.h>

#include "history.h"

enum ps_model {
  PS_MODEL_SEASONAL,    /* seasonal naive: the value one period before the predicted time */
  PS_MODEL_LAST,        /* reactive: the latest observation */
  PS_MODEL_HOLTWINTERS, /* additive level + trend + season, O(1) per sample */
  PS_MODEL_LINEAR,      /* trend over a recent window */
  PS_MODEL_AUTO,        /* the engine picks (or blends) by each model's recent h-step errors */
};
#define PS_MODEL_COUNT 5

/* "seasonal" | "last" | "holtwinters" | "linear" | "auto"; 0 or UV_EINVAL. */
int ps_model_parse(const char *s, enum ps_model *out);
const char *ps_model_name(enum ps_model m);

struct ps_forecast_params {
  enum ps_model model;
  int64_t period_ms;    /* the season, a multiple of the history's step; used by PS_MODEL_SEASONAL */
  int64_t lookahead_ms; /* >= 0 */
};

struct ps_forecast {
  double current; /* the latest observation */
  int64_t current_ms;
  double predicted; /* max of the forecast over (now, now + lookahead] (== current for PS_MODEL_LAST) */
  double value; /* max(current, predicted), never NaN nor negative: what the scaler answers before headroom */
  int seasonal_misses; /* steps of the window whose seasonal reference was missing (the latest value was used)
                        */
};

/* Forecasts the window (now_ms, now_ms + lookahead] at the history's step.
 * Seasonal: each step t in the window forecasts history(t - period); a missing reference falls back to the
 * latest observation. Negative values are clamped to 0.
 * The window is the steps t = k*step with now < t <= now + lookahead; when it holds none (lookahead shorter
 * than the rest of the current step) it is the one step containing now + lookahead. Cost is
 * O(min(window steps, history length)), whatever the lookahead.
 * Returns 0, UV_ENOENT when the history holds no observation at all, or UV_EINVAL for parameters no
 * validated config produces (lookahead < 0, unknown model, seasonal with period <= 0). */
int ps_forecast_run(const struct ps_history *h, const struct ps_forecast_params *p, int64_t now_ms,
                    struct ps_forecast *out);

#endif
