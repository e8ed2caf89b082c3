/* The peak model: a direct forecast of the window's peak (peak.h). */
#include "peak.h"

#include <math.h>

#include "coverage.h" /* ps_cov_peak_z */

void ps_peak_init(struct ps_peak *p, size_t h) {
  if (h == 0) h = 1;
  double span = (double)PS_PEAK_SPAN * (double)h;
  if (span < PS_PEAK_SPAN_MIN) span = PS_PEAK_SPAN_MIN;
  p->decay = 1 / span;
  p->step = PS_PEAK_RATE / (double)h;
  p->k = h > 1 ? ps_cov_peak_z(0.5, h) : 0;
  ps_peak_reset(p);
}

void ps_peak_reset(struct ps_peak *p) { p->level = p->var = p->n = 0; }

/* An exponentially weighted mean and variance (West 1979's incremental form); the weight of a new value
 * is 1/n until that falls below decay, so the first values make a plain mean instead of a mean pulled
 * towards 0. */
void ps_peak_add(struct ps_peak *p, double y) {
  if (!isfinite(y)) return;
  p->n++;
  double w = fmax(p->decay, 1 / p->n), d = y - p->level;
  p->level += w * d;
  p->var = (1 - w) * (p->var + w * d * d);
}

double ps_peak_sd(const struct ps_peak *p) { return p->n >= 2 && p->var > 0 ? sqrt(p->var) : 0; }

double ps_peak_forecast(const struct ps_peak *p) {
  if (!(p->n > 0)) return NAN;
  return p->level + p->k * ps_peak_sd(p);
}

void ps_peak_learn(struct ps_peak *p, double actual, double forecast) {
  if (!(actual == actual) || !(forecast == forecast) || actual == forecast) return;
  p->k += actual > forecast ? p->step : -p->step;
  p->k = fmax(-PS_PEAK_K_MAX, fmin(PS_PEAK_K_MAX, p->k));
}
