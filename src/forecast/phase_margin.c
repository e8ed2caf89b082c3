/* The margin's scale by the phase of a forecast's origin (phase_margin.h). */
#include "phase_margin.h"

#include <math.h>
#include <string.h>

_Static_assert(PS_PM_SEASON_BUCKETS <= PS_PM_BUCKETS && PS_PM_HOUR_BUCKETS <= PS_PM_BUCKETS, "table size");

static void cycle_reset(struct ps_pm_cycle *c, size_t steps, size_t buckets) {
  if (steps > UINT32_MAX) steps = 0;
  c->steps = (uint32_t)steps;
  c->nb = (uint32_t)(steps < buckets ? steps : buckets);
  for (size_t b = 0; b < PS_PM_BUCKETS; b++) {
    c->f[b] = 1;
    c->k[b] = 0;
  }
}

void ps_pm_init(struct ps_phase_margin *pm) {
  memset(pm, 0, sizeof *pm);
  cycle_reset(&pm->season, 0, PS_PM_SEASON_BUCKETS);
  cycle_reset(&pm->hour, 0, PS_PM_HOUR_BUCKETS);
}

void ps_pm_set(struct ps_phase_margin *pm, size_t season_steps, size_t hour_steps) {
  if (season_steps > UINT32_MAX) season_steps = 0;
  if (hour_steps == 0 || hour_steps >= season_steps) hour_steps = 0;
  if (pm->season.steps != season_steps) cycle_reset(&pm->season, season_steps, PS_PM_SEASON_BUCKETS);
  if (pm->hour.steps != hour_steps) cycle_reset(&pm->hour, hour_steps, PS_PM_HOUR_BUCKETS);
}

static size_t bucket(const struct ps_pm_cycle *c, int64_t t) {
  int64_t r = t % (int64_t)c->steps;
  if (r < 0) r += c->steps;
  return (size_t)((uint64_t)r * c->nb / c->steps);
}

double ps_pm_factor(const struct ps_phase_margin *pm, int64_t t) {
  double f = 1;
  if (pm->season.steps > 0) f *= pm->season.f[bucket(&pm->season, t)];
  if (pm->hour.steps > 0) f *= pm->hour.f[bucket(&pm->hour, t)];
  return f;
}

/* A bucket holds 1/nb of the errors: e = season / nb of them a season, so over PS_PM_MEMORY seasons each
 * weighs 1 / (PS_PM_MEMORY e); before that, a mean of its k errors and e at factor 1 weighs 1 / (k + e). */
static void cycle_learn(struct ps_pm_cycle *c, int64_t t, double ratio, double season) {
  if (c->steps == 0) return;
  size_t b = bucket(c, t);
  double e = season / (double)c->nb, w = fmax(1 / (PS_PM_MEMORY * e), 1 / (c->k[b] + e));
  if (c->k[b] < UINT16_MAX) c->k[b]++;
  double x = c->f[b] * (1 + w * (ratio - 1));
  c->f[b] = (float)fmin(PS_PM_LIMIT, fmax(1 / PS_PM_LIMIT, x));
}

void ps_pm_learn(struct ps_phase_margin *pm, int64_t t, double ratio) {
  if (!(ratio >= 0) || !isfinite(ratio) || pm->season.steps == 0) return;
  double season = (double)pm->season.steps;
  cycle_learn(&pm->season, t, ratio, season);
  cycle_learn(&pm->hour, t, ratio, season);
}
