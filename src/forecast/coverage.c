/* Target coverage: the margin's online tuner and the realised coverage (coverage.h). */
#include "coverage.h"

#include <math.h>
#include <stdlib.h>
#include <uv.h>

#include "ring_slot.h"

int ps_cov_init(struct ps_coverage *c, double target, size_t h, int64_t step_ms) {
  *c = (struct ps_coverage){.target = target, .realised = NAN};
  if (!(target == 0 || (target > PS_COVERAGE_MIN && target < PS_COVERAGE_MAX)) || h == 0 || step_ms <= 0)
    return UV_EINVAL;
  c->span = (double)(PS_COVERAGE_SPAN_MS / step_ms);
  if (c->span < 1) c->span = 1;
  c->n = h + PS_COVERAGE_RING_EXTRA;
  c->rate = PS_COVERAGE_RATE / sqrt((double)c->n);
  c->ring = malloc(c->n * sizeof *c->ring);
  if (c->ring == NULL) return UV_ENOMEM;
  ps_cov_forget(c);
  return 0;
}

void ps_cov_free(struct ps_coverage *c) {
  free(c->ring);
  c->ring = NULL;
  c->n = 0;
}

void ps_cov_forget(struct ps_coverage *c) {
  for (size_t i = 0; i < c->n; i++) c->ring[i].end = INT64_MIN;
}

static size_t slot(const struct ps_coverage *c, int64_t end) { return ps_ring_slot(end, c->n); }

double ps_cov_rate(const struct ps_coverage *c) {
  return c->scored < c->n && c->scored > 0 ? PS_COVERAGE_RATE / sqrt((double)c->scored) : c->rate;
}

double ps_cov_catchup(const struct ps_coverage *c) {
  if (!(c->target > 0) || !(c->realised < c->target) || (double)c->scored * (1 - c->target) < 1) return 0;
  double cap = fmax(PS_COVERAGE_CATCH_MAX, PS_COVERAGE_CATCH_PRICE * c->target / (1 - c->target));
  return fmin(cap, PS_COVERAGE_CATCHUP * (c->target - c->realised) / (1 - c->target));
}

double ps_cov_margin(const struct ps_coverage *c, double qz, double vol) {
  double z = (qz == qz ? qz : 0) + c->theta + ps_cov_catchup(c), m = z * (vol > 0 ? vol : 0);
  return isfinite(m) ? m : 0;
}

void ps_cov_answer(struct ps_coverage *c, int64_t lo, int64_t hi, double value) {
  if (c->n == 0 || hi < lo || !(value == value)) return;
  struct ps_cov_answer *a = &c->ring[slot(c, hi)];
  uint64_t len = (uint64_t)hi - (uint64_t)lo + 1;
  /* An older answer in the slot whose window is still open is dropped: its window ended n steps or more
   * before this one's, so its last steps were learned long ago; it only waits when learning stalled. */
  a->end = hi;
  a->len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
  a->value = (float)value;
}

int ps_cov_due(const struct ps_coverage *c, int64_t end, int64_t *lo) {
  if (c->n == 0) return 0;
  const struct ps_cov_answer *a = &c->ring[slot(c, end)];
  if (a->end != end) return 0;
  *lo = end - (int64_t)a->len + 1;
  return 1;
}

void ps_cov_observe(struct ps_coverage *c, int64_t end, double actual) {
  if (c->n == 0) return;
  struct ps_cov_answer *a = &c->ring[slot(c, end)];
  if (a->end != end) return;
  a->end = INT64_MIN;
  if (!(actual == actual)) return;
  double v = a->value;
  int miss = actual > v + fabs(v) * PS_COVERAGE_TIE;
  c->scored++;
  c->misses += (uint64_t)miss;
  /* The plain mean of the hits until `span` windows, then exponentially weighted over about span. */
  double w = (double)c->scored < c->span ? 1.0 / (double)c->scored : 1.0 / c->span;
  c->realised = c->scored == 1 ? 1.0 - miss : c->realised + w * ((1.0 - miss) - c->realised);
  if (c->target > 0) {
    c->theta += ps_cov_rate(c) * ((double)miss - (1 - c->target));
    c->theta = fmax(-PS_COVERAGE_THETA_MAX, fmin(PS_COVERAGE_THETA_MAX, c->theta));
  }
}

/* The standard normal's quantile by bisection on its distribution function (erfc): 0.5 erfc(-x / sqrt 2). */
static double normal_quantile(double p) {
  double lo = -40, hi = 40;
  for (int i = 0; i < 100; i++) {
    double mid = 0.5 * (lo + hi);
    if (0.5 * erfc(-mid / M_SQRT2) < p)
      lo = mid;
    else
      hi = mid;
  }
  return 0.5 * (lo + hi);
}

double ps_cov_peak_z(double level, size_t h) {
  if (!(level > 0 && level < 1) || h == 0) return NAN;
  return normal_quantile(pow(level, 1.0 / (double)h));
}
