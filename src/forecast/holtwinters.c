/* Additive Holt-Winters with damped trend (Hyndman & Athanasopoulos, "Forecasting: Principles and
 * Practice", 8.3 and 8.5):
 *   level  l_t = a (y_t - s_{t-p}) + (1 - a)(l_{t-1} + phi b_{t-1})
 *   trend  b_t = b (l_t - l_{t-1}) + (1 - b) phi b_{t-1}
 *   season s_t = g (y_t - l_t) + (1 - g) s_{t-p}
 *   forecast y_{t+k} = l_t + (phi + ... + phi^k) b_t + s_{t+k-p*ceil(k/p)}
 * The season is indexed by absolute step (t mod p), so a forecast for any step reads its entry
 * directly and a missing sample simply leaves it as it was. */
#include "holtwinters.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ring_slot.h"

/* Residual scale decay of the shift test: about the last 32 steps. */
#define HW_MAD_DECAY (1.0 / 32)
/* Values beyond this are saturated when stored as float (the season). */
#define HW_FLOAT_MAX 1e30

static float to_float(double v) {
  if (!(v == v)) return 0;
  if (v > HW_FLOAT_MAX) return (float)HW_FLOAT_MAX;
  if (v < -HW_FLOAT_MAX) return (float)-HW_FLOAT_MAX;
  return (float)v;
}

double ps_hw_damp_sum(int64_t k) {
  if (k <= 0) return 0;
  if (k <= 4) { /* the common short horizons without pow(), which dominates a refit's cost otherwise */
    double s = 0, f = 1;
    for (int64_t i = 0; i < k; i++) s += (f *= PS_HW_PHI);
    return s;
  }
  if (k > 4096) k = 4096; /* phi^4096 is 0 in double: the sum has converged */
  return PS_HW_PHI * (1 - pow(PS_HW_PHI, (double)k)) / (1 - PS_HW_PHI);
}

/* ---- lifecycle ----------------------------------------------------------------------------------- */

void ps_hw_init(struct ps_hw *m) {
  memset(m, 0, sizeof *m);
  m->p = (struct ps_hw_params){0.3f, 0.02f, 0.1f};
}

void ps_hw_free(struct ps_hw *m) {
  free(m->season);
  m->season = NULL;
  m->period = 0;
}

/* ---- update and forecast ------------------------------------------------------------------------- */

float ps_hw_season(const struct ps_hw *m, int64_t t) {
  return m->season != NULL && m->period > 0 ? m->season[ps_ring_slot(t, m->period)] : 0;
}

double ps_hw_forecast(const struct ps_hw_core *c, float season_t, int64_t t) {
  if (!c->ready) return NAN;
  return c->level + ps_hw_damp_sum(t - c->at) * c->trend + season_t;
}

void ps_hw_step(const struct ps_hw_params *p, struct ps_hw_core *c, float *slot, int64_t t, double y) {
  int64_t k = t - c->at;
  if (k < 1) k = 1;
  double s = slot != NULL ? *slot : 0;
  if (!c->ready) {
    if (y == y) {
      c->level = y - s;
      c->trend = 0;
      c->mad = 0;
      c->run = 0;
      c->ready = 1;
    }
    c->at = t;
    return;
  }
  /* Skipped steps (gaps) advance level and trend as the forecast would. */
  double prev = c->level + ps_hw_damp_sum(k - 1) * c->trend;
  double btr = k == 1 ? c->trend : c->trend * pow(PS_HW_PHI, (double)(k - 1 < 4096 ? k - 1 : 4096));
  c->at = t;
  if (!(y == y)) {
    c->level = prev + PS_HW_PHI * btr;
    c->trend = PS_HW_PHI * btr;
    return;
  }
  double fc = prev + PS_HW_PHI * btr + s;
  double e = y - fc;
  /* Level shift: a run of large residuals of one sign re-levels at the data (see holtwinters.h). */
  int big = c->mad > 0 && fabs(e) > PS_HW_SHIFT_SIGMAS * c->mad;
  if (big) {
    c->run = e > 0 ? (c->run > 0 ? c->run + 1 : 1) : (c->run < 0 ? c->run - 1 : -1);
  } else {
    c->run = 0;
  }
  c->mad += HW_MAD_DECAY * (fabs(e) - c->mad);
  if (c->run >= PS_HW_SHIFT_RUN || c->run <= -PS_HW_SHIFT_RUN) {
    /* The trend is kept: a shift moves the level, and a trend learned over many steps is still news. */
    c->level = y - s;
    c->trend = PS_HW_PHI * btr;
    c->run = 0;
    return;
  }
  double l = p->alpha * (y - s) + (1 - p->alpha) * (prev + PS_HW_PHI * btr);
  c->trend = p->beta * (l - prev) + (1 - p->beta) * PS_HW_PHI * btr;
  c->level = l;
  if (slot != NULL) *slot = to_float(p->gamma * (y - l) + (1 - p->gamma) * s);
  if (!isfinite(c->level) || !isfinite(c->trend)) { /* only absurd inputs get here: start over */
    c->level = y - s;
    c->trend = 0;
    c->mad = 0;
  }
}

/* ---- fitting ------------------------------------------------------------------------------------- */

/* The mean of period q of x (NaN when it holds no data). */
static double period_mean(const float *x, size_t q, size_t p) {
  double ms = 0;
  size_t mc = 0;
  for (size_t j = 0; j < p; j++) {
    float v = x[q * p + j];
    if (v == v) {
      ms += v;
      mc++;
    }
  }
  return mc > 0 ? ms / (double)mc : NAN;
}

/* The initial trend: the slope between the means of the first and the last full period. */
static double init_trend(const float *x, size_t n, size_t p) {
  size_t np = n / p;
  if (np < 2) return 0;
  double a = period_mean(x, 0, p), b = period_mean(x, np - 1, p);
  double s = (b - a) / (double)((np - 1) * p);
  return isfinite(s) ? s : 0;
}

/* The initial season: for each phase, the mean over the full periods of x of (value - that period's
 * mean - the trend within the period). Phases without data stay 0. */
static void init_season(float *season, const float *x, size_t n, int64_t t0, size_t p, double slope) {
  size_t np = n / p;
  double *sum = calloc(p, sizeof *sum);
  size_t *cnt = calloc(p, sizeof *cnt);
  for (size_t j = 0; j < p; j++) season[j] = 0;
  if (sum == NULL || cnt == NULL || np == 0) goto out;
  for (size_t q = 0; q < np; q++) {
    double ms = period_mean(x, q, p);
    if (!(ms == ms)) continue;
    for (size_t j = 0; j < p; j++) {
      float v = x[q * p + j];
      if (v == v) {
        size_t ph = ps_ring_slot(t0 + (int64_t)(q * p + j), p);
        sum[ph] += v - ms - slope * ((double)j - (double)(p - 1) / 2);
        cnt[ph]++;
      }
    }
  }
  for (size_t j = 0; j < p; j++)
    if (cnt[j] > 0) season[j] = to_float(sum[j] / (double)cnt[j]);
out:
  free(sum);
  free(cnt);
}

/* Runs the parameters over x from a fresh state on a copy of the initial season; returns the mean
 * absolute h-step error (after the first period, the burn-in) and leaves the final state in *c. */
static double run(const struct ps_hw_params *p, const float *x, size_t n, int64_t t0, size_t period, size_t h,
                  const float *season0, double trend0, float *season, double *pend, struct ps_hw_core *c) {
  memset(c, 0, sizeof *c);
  c->at = t0 - 1;
  if (period > 0) memcpy(season, season0, period * sizeof *season);
  size_t burn = period > 0 ? period : 8;
  double damp_h = ps_hw_damp_sum((int64_t)h); /* every forecast below is h steps past c->at */
  double err = 0;
  size_t cnt = 0;
  for (size_t i = 0; i <= h; i++) pend[i] = NAN;
  for (size_t i = 0; i < n; i++) {
    int64_t t = t0 + (int64_t)i;
    double y = x[i];
    double f = pend[i % (h + 1)];
    if (i >= burn && y == y && f == f) {
      err += fabs(y - f);
      cnt++;
    }
    float *slot = period > 0 ? &season[ps_ring_slot(t, period)] : NULL;
    int was = c->ready;
    ps_hw_step(p, c, slot, t, y);
    if (!was && c->ready) c->trend = trend0;
    float sf = period > 0 ? season[ps_ring_slot(t + (int64_t)h, period)] : 0;
    pend[(i + h) % (h + 1)] = ps_hw_forecast_damped(c, sf, damp_h); /* ps_hw_step set c->at = t */
  }
  return cnt > 0 ? err / (double)cnt : INFINITY;
}

int ps_hw_fit(struct ps_hw *m, const float *x, size_t n, int64_t t0, size_t period, size_t h) {
  return ps_hw_fit_tail(m, x, n, t0, period, h, n);
}

int ps_hw_fit_tail(struct ps_hw *m, const float *x, size_t n, int64_t t0, size_t period, size_t h,
                   size_t search_n) {
  static const float alphas[] = {0.02f, 0.05f, 0.1f, 0.2f, 0.35f, 0.5f, 0.7f, 0.9f};
  static const float betas[] = {0.0f, 0.01f, 0.05f, 0.2f};
  static const float gammas[] = {0.02f, 0.1f, 0.25f, 0.5f};
  if (h < 1) h = 1;
  if (period > 0 && n < 2 * period) period = 0;
  float *season0 = NULL, *season = NULL, *best_season = NULL;
  double *pend = malloc((h + 1) * sizeof *pend);
  if (period > 0) {
    season0 = malloc(period * sizeof *season0);
    season = malloc(period * sizeof *season);
    best_season = malloc(period * sizeof *best_season);
  }
  if (pend == NULL || (period > 0 && (season0 == NULL || season == NULL || best_season == NULL))) {
    free(pend);
    free(season0);
    free(season);
    free(best_season);
    return UV_ENOMEM;
  }
  double trend0 = period > 0 ? init_trend(x, n, period) : 0;
  if (period > 0) init_season(season0, x, n, t0, period, trend0);

  struct ps_hw_params p = m->p, best = m->p;
  struct ps_hw_core c;
  /* The search runs on the newest search_n steps (at least two periods: one of burn-in, one scored). */
  size_t sn = search_n < n ? search_n : n;
  if (period > 0 && sn < 2 * period) sn = 2 * period;
  const float *sx = x + (n - sn);
  int64_t st0 = t0 + (int64_t)(n - sn);
  double be = run(&p, sx, sn, st0, period, h, season0, trend0, season, pend, &c);
  /* Coordinate search: alpha, beta, gamma (only with a season), alpha again. */
  for (int pass = 0; pass < 4; pass++) {
    const float *grid = pass == 1 ? betas : pass == 2 ? gammas : alphas;
    size_t gn = pass == 1   ? sizeof betas / sizeof *betas
                : pass == 2 ? sizeof gammas / sizeof *gammas
                            : sizeof alphas / sizeof *alphas;
    if (pass == 2 && period == 0) continue;
    for (size_t i = 0; i < gn; i++) {
      p = best;
      if (pass == 1)
        p.beta = grid[i];
      else if (pass == 2)
        p.gamma = grid[i];
      else
        p.alpha = grid[i];
      if (p.alpha == best.alpha && p.beta == best.beta && p.gamma == best.gamma) continue;
      double err = run(&p, sx, sn, st0, period, h, season0, trend0, season, pend, &c);
      if (err < be) {
        be = err;
        best = p;
      }
    }
  }
  run(&best, x, n, t0, period, h, season0, trend0, period > 0 ? best_season : season, pend, &c);
  free(m->season);
  m->season = best_season;
  m->period = period;
  m->p = best;
  m->c = c;
  free(pend);
  free(season0);
  free(season);
  return 0;
}
