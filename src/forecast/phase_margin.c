/* The margin's scale by the phase of a forecast's origin (phase_margin.h). */
#include "phase_margin.h"

#include <math.h>
#include <string.h>

static void cycle_reset(struct ps_pm_cycle *c, size_t steps) {
  if (steps > UINT32_MAX) steps = 0;
  c->steps = (uint32_t)steps;
  c->nb = steps < PS_PM_BUCKETS ? (uint32_t)steps : PS_PM_BUCKETS;
  for (size_t b = 0; b < PS_PM_BUCKETS; b++) c->f[b] = 1;
}

void ps_pm_init(struct ps_phase_margin *pm) {
  memset(pm, 0, sizeof *pm);
  cycle_reset(&pm->season, 0);
  cycle_reset(&pm->hour, 0);
}

void ps_pm_set(struct ps_phase_margin *pm, size_t season_steps, size_t hour_steps) {
  if (season_steps > UINT32_MAX) season_steps = 0;
  if (hour_steps == 0 || hour_steps >= season_steps) hour_steps = 0;
  if (pm->season.steps != season_steps) cycle_reset(&pm->season, season_steps);
  if (pm->hour.steps != hour_steps) cycle_reset(&pm->hour, hour_steps);
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

/* A bucket holds 1/nb of the errors: over PS_PM_MEMORY seasons of `season` steps it sees
 * PS_PM_MEMORY x season / nb of them, so each weighs the inverse. */
static void cycle_learn(struct ps_pm_cycle *c, int64_t t, double ratio, double season) {
  if (c->steps == 0) return;
  float *f = &c->f[bucket(c, t)];
  double w = (double)c->nb / (PS_PM_MEMORY * season);
  double x = *f * (1 + w * (ratio - 1));
  *f = (float)fmin(PS_PM_LIMIT, fmax(1 / PS_PM_LIMIT, x));
}

void ps_pm_learn(struct ps_phase_margin *pm, int64_t t, double ratio) {
  if (!(ratio >= 0) || !isfinite(ratio) || pm->season.steps == 0) return;
  double season = (double)pm->season.steps;
  cycle_learn(&pm->season, t, ratio, season);
  cycle_learn(&pm->hour, t, ratio, season);
}
