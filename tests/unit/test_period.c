#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "forecast/period.h"

/* A deterministic Gaussian-ish noise (sum of 4 uniforms from an LCG), so failures replay. */
static uint64_t rng;
static double noise(void) {
  double s = 0;
  for (int i = 0; i < 4; i++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    s += (double)(rng >> 11) / 9007199254740992.0 - 0.5;
  }
  return s * 1.7320508; /* variance 1 */
}

Test(period, sine_97_is_97) {
  size_t n = 97 * 8;
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = (float)(50 + 10 * sin(2 * M_PI * (double)i / 97));
  double str;
  cr_assert_eq(ps_period_detect(x, n, n, NULL, 0, &str), 97);
  cr_assert_gt(str, 0.9);
  free(x);
}

Test(period, noisy_sine_with_gaps_and_trend) {
  rng = 7;
  size_t n = 1000;
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++)
    x[i] = i % 17 == 3 ? NAN
                       : (float)(50 + 0.05 * (double)i + 10 * sin(2 * M_PI * (double)i / 97) + 4 * noise());
  size_t p = ps_period_detect(x, n, n, NULL, 0, NULL);
  cr_assert(p >= 95 && p <= 99, "period %zu (within 2%%)", p);
  free(x);
}

Test(period, white_noise_is_none) {
  size_t n = 2000;
  float *x = malloc(n * sizeof *x);
  for (uint64_t seed = 1; seed <= 20; seed++) {
    rng = seed;
    for (size_t i = 0; i < n; i++) x[i] = (float)(100 + 10 * noise());
    cr_assert_eq(ps_period_detect(x, n, n, NULL, 0, NULL), 0, "seed %llu", (unsigned long long)seed);
  }
  free(x);
}

Test(period, ramp_constant_and_short_are_none) {
  size_t n = 600;
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = 5;
  cr_assert_eq(ps_period_detect(x, n, n, NULL, 0, NULL), 0);
  rng = 3;
  for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * (double)i + noise());
  cr_assert_eq(ps_period_detect(x, n, n, NULL, 0, NULL), 0);
  for (size_t i = 0; i < n; i++) x[i] = NAN;
  cr_assert_eq(ps_period_detect(x, n, n, NULL, 0, NULL), 0);
  for (size_t i = 0; i < n; i++) x[i] = (float)sin((double)i);
  cr_assert_eq(ps_period_detect(x, PS_PERIOD_MIN_HISTORY - 1, n, NULL, 0, NULL), 0);
  free(x);
}

/* One week at 1-minute steps with a daily cycle: found through the downsampled ACF, then refined. */
Test(period, daily_in_a_week_of_minutes) {
  rng = 11;
  size_t n = 10080;
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(100 + 40 * sin(2 * M_PI * (double)i / 1440) + 15 * sin(2 * M_PI * (double)i / 480) +
                   10 * noise());
  size_t p = ps_period_detect(x, n, n, NULL, 0, NULL);
  cr_assert(p >= 1430 && p <= 1450, "period %zu", p);
  free(x);
}

/* A day of 1,440 steps (1-minute steps) with a broad daily shape and noise: a period found a little off
 * (the shape's autocorrelation is flat near its peak) is replaced by the calendar day the caller prefers;
 * a true period 4% away from the day is not (period.h: PS_PERIOD_SNAP_*). */
static float *daily(size_t n, double period, double noise_sd) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) {
    double ph = 2 * M_PI * (double)i / period;
    x[i] = (float)(100 + 60 * sin(ph) + 25 * sin(2 * ph + 1) + noise_sd * noise());
  }
  return x;
}

Test(period, snaps_to_a_preferred_calendar_period) {
  rng = 41;
  size_t n = 8 * 1440, prefer[] = {60, 1440, 10080};
  float *x = daily(n, 1425, 30);
  size_t raw = ps_period_detect(x, n, n / 3, NULL, 0, NULL);
  cr_assert(raw >= 1410 && raw < 1440, "without preference %zu", raw);
  cr_assert_eq(ps_period_detect(x, n, n / 3, prefer, 3, NULL), 1440);
  free(x);
}

Test(period, a_distinct_period_is_not_snapped) {
  rng = 42;
  size_t n = 8 * 1440, prefer[] = {60, 1440, 10080};
  float *x = daily(n, 1380, 5);
  size_t p = ps_period_detect(x, n, n / 3, prefer, 3, NULL);
  cr_assert(p >= 1370 && p <= 1390, "period %zu, the series repeats every 1380", p);
  free(x);
}

/* The preference is ignored beyond max_period and when no season is found at all. */
Test(period, preference_needs_a_season_and_room) {
  rng = 43;
  size_t n = 8 * 1440, prefer[] = {1440};
  float *x = daily(n, 1425, 30);
  cr_assert_eq(ps_period_detect(x, n, 1430, prefer, 1, NULL) <= 1430, 1);
  for (size_t i = 0; i < n; i++) x[i] = (float)(100 + 10 * noise());
  cr_assert_eq(ps_period_detect(x, n, n / 3, prefer, 1, NULL), 0);
  free(x);
}
