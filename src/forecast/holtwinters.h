/* Additive Holt-Winters (level + damped trend + season), O(1) per sample, with a cheap parameter
 * search over a history. Pure, no I/O, no globals. Internal to src/forecast. */
#ifndef PS_HOLTWINTERS_H
#define PS_HOLTWINTERS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* A one-step residual beyond PS_HW_SHIFT_SIGMAS times the running mean absolute residual, with the same
 * sign PS_HW_SHIFT_RUN times in a row, is a level shift: the level jumps to the data instead of
 * creeping there at alpha per step. */
#define PS_HW_SHIFT_SIGMAS 4.0
#define PS_HW_SHIFT_RUN    3
/* Trend damping (Gardner & McKenzie 1985): a trend extrapolated undamped over a long lookahead
 * overshoots; 0.98 keeps it for tens of steps and fades it beyond. */
#define PS_HW_PHI          0.98

struct ps_hw_params {
  float alpha, beta, gamma;
};

/* The part of the state a provisional update copies (everything but the season array). */
struct ps_hw_core {
  double level, trend;
  double mad; /* running mean absolute one-step residual, for the shift test */
  int run;    /* signed count of consecutive large residuals */
  int64_t at; /* step index of the last update */
  int ready;  /* level initialised */
};

struct ps_hw {
  struct ps_hw_params p;
  struct ps_hw_core c;
  float *season; /* period entries, season[step mod period], owned; NULL without a season */
  size_t period; /* 0 = Holt's linear trend only */
};

void ps_hw_init(struct ps_hw *m);
void ps_hw_free(struct ps_hw *m);

/* Learns y (NaN = missing: the state only advances) at step index t > c->at. slot points at the
 * season entry of t (NULL without a season); the caller passes a copy for a provisional update. */
void ps_hw_step(const struct ps_hw_params *p, struct ps_hw_core *c, float *slot, int64_t t, double y);
/* Forecast for step t > c->at given the season entry of t (0 without a season). */
double ps_hw_forecast(const struct ps_hw_core *c, float season_t, int64_t t);
/* phi + phi^2 + ... + phi^k (0 for k <= 0): the trend's weight k steps ahead. A caller forecasting the
 * same k again and again (h steps ahead every step) computes it once and passes it to
 * ps_hw_forecast_damped: the pow() inside is most of a refit's cost otherwise. */
double ps_hw_damp_sum(int64_t k);
/* ps_hw_forecast(c, season_t, t) given damp = ps_hw_damp_sum(t - c->at): the same value, bit for bit.
 * Inline: the engine calls it for each step of each window it scores. */
static inline double ps_hw_forecast_damped(const struct ps_hw_core *c, float season_t, double damp) {
  if (!c->ready) return NAN;
  return c->level + damp * c->trend + season_t;
}
/* The season entry of step t (0 without a season). */
float ps_hw_season(const struct ps_hw *m, int64_t t);

/* Refits m on x[0..n) (oldest first, NaN = missing; x[i] is step t0 + i) with the given period
 * (0 = none): a coordinate search of alpha, beta, gamma minimising the mean absolute h-step error,
 * then the state after x. O(n * ~24). 0 or UV_ENOMEM (m is then unchanged). */
int ps_hw_fit(struct ps_hw *m, const float *x, size_t n, int64_t t0, size_t period, size_t h);
/* ps_hw_fit with the search scored on the newest search_n steps of x only (at least two periods), from a
 * fresh state there: the initial season and trend still come from all of x, and the final state from a
 * run over all of x. O(n + search_n * ~24): a cost that grows with the period, not the history. */
int ps_hw_fit_tail(struct ps_hw *m, const float *x, size_t n, int64_t t0, size_t period, size_t h,
                   size_t search_n);

#endif
