#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#include "forecast/holtwinters.h"

static uint64_t rng = 5;
static double noise(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0 - 0.5; /* uniform, sd 0.29 */
}

static double truth(int64_t t) { return 200 + 0.5 * (double)t + 30 * sin(2 * M_PI * (double)t / 24); }

/* Level + trend + season: after a fit on 10 periods, the next period is forecast within 3% of the
 * truth (the noise is +-1). */
Test(holtwinters, recovers_level_trend_season) {
  enum { P = 24, N = 240 };
  float x[N];
  for (int t = 0; t < N; t++) x[t] = (float)(truth(t) + 2 * noise());
  struct ps_hw m;
  ps_hw_init(&m);
  cr_assert_eq(ps_hw_fit(&m, x, N, 0, P, 1), 0);
  cr_assert_eq(m.period, P);
  for (int64_t t = N; t < N + P; t++) {
    double f = ps_hw_forecast(&m.c, ps_hw_season(&m, t), t);
    cr_assert(fabs(f - truth(t)) < 0.03 * truth(t), "t=%lld f=%f truth=%f", (long long)t, f, truth(t));
  }
  ps_hw_free(&m);
}

/* A level shift is followed within PS_HW_SHIFT_RUN steps, not at alpha per step. */
Test(holtwinters, level_shift_readapts) {
  enum { P = 24, N = 240 };
  float x[N];
  for (int t = 0; t < N; t++) x[t] = (float)(100 + 10 * sin(2 * M_PI * t / P) + noise());
  struct ps_hw m;
  ps_hw_init(&m);
  cr_assert_eq(ps_hw_fit(&m, x, N, 0, P, 1), 0);
  int64_t t = N;
  for (; t < N + PS_HW_SHIFT_RUN; t++) {
    float *slot = &m.season[t % P];
    ps_hw_step(&m.p, &m.c, slot, t, 400 + 10 * sin(2 * M_PI * (double)t / P));
  }
  double f = ps_hw_forecast(&m.c, ps_hw_season(&m, t), t);
  double want = 400 + 10 * sin(2 * M_PI * (double)t / P);
  cr_assert(fabs(f - want) < 15, "f=%f want=%f", f, want);
  ps_hw_free(&m);
}

/* Gaps (NaN) advance the state; the forecast stays finite and near the truth. */
Test(holtwinters, gaps_and_no_season) {
  enum { N = 200 };
  float x[N];
  for (int t = 0; t < N; t++) x[t] = t % 7 == 0 ? NAN : (float)(50 + 0.2 * t + noise());
  struct ps_hw m;
  ps_hw_init(&m);
  cr_assert_eq(ps_hw_fit(&m, x, N, 1000, 0, 3), 0);
  cr_assert_eq(m.period, 0);
  cr_assert_null(m.season);
  double f = ps_hw_forecast(&m.c, 0, 1000 + N + 2);
  cr_assert(fabs(f - (50 + 0.2 * (N + 2))) < 3, "f=%f", f);
  ps_hw_free(&m);
}

/* ps_hw_fit_tail: over all of x it is ps_hw_fit, to the bit; over the newest three periods it still ends
 * in the state after all of x (the final run covers it) and forecasts the next period within 3 %; the
 * damped forecast with ps_hw_damp_sum is ps_hw_forecast's value, to the bit, at every horizon. */
Test(holtwinters, fit_tail_searches_the_newest_periods_and_ends_after_all) {
  enum { P = 24, N = 480 };
  float x[N];
  for (int t = 0; t < N; t++) x[t] = (float)(truth(t) + 2 * noise());
  struct ps_hw a, b, c;
  ps_hw_init(&a);
  ps_hw_init(&b);
  ps_hw_init(&c);
  cr_assert_eq(ps_hw_fit(&a, x, N, 0, P, 3), 0);
  cr_assert_eq(ps_hw_fit_tail(&b, x, N, 0, P, 3, N), 0);
  cr_assert(a.p.alpha == b.p.alpha && a.p.beta == b.p.beta && a.p.gamma == b.p.gamma);
  cr_assert(a.c.level == b.c.level && a.c.trend == b.c.trend && a.c.at == b.c.at);
  for (int j = 0; j < P; j++) cr_assert(a.season[j] == b.season[j]);
  cr_assert_eq(ps_hw_fit_tail(&c, x, N, 0, P, 3, 3 * P), 0);
  cr_assert_eq(c.period, P);
  cr_assert_eq(c.c.at, N - 1);
  for (int64_t t = N; t < N + P; t++) {
    double f = ps_hw_forecast(&c.c, ps_hw_season(&c, t), t);
    cr_assert(fabs(f - truth(t)) < 0.03 * truth(t), "t=%lld f=%f truth=%f", (long long)t, f, truth(t));
    double g = ps_hw_forecast_damped(&c.c, ps_hw_season(&c, t), ps_hw_damp_sum(t - c.c.at));
    cr_assert(f == g, "t=%lld: %.17g vs %.17g", (long long)t, f, g);
  }
  ps_hw_free(&a);
  ps_hw_free(&b);
  ps_hw_free(&c);
}
