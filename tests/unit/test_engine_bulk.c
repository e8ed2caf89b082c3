/* ps_engine_bulk_begin/_end (engine.h): a first load learned at once. Pinned here: a short batch learns
 * exactly as puts do; a week refits once and learns PS_ENGINE_BULK_REPLAY steps one by one (the cost, by
 * count, not by clock); the forecast after a bulk load is the one after puts within a documented
 * tolerance, on synthetic periodic loads and on a web-like trace generated here (and on the public NASA
 * trace when the machine has it); puts between begin and end answer as puts do. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <uv.h>

#include "backtest/trace.h"
#include "forecast/analog.h"
#include "forecast/engine.h"
#include "forecast/holtwinters.h"

#define STEP    60000
#define WEEK    10080
#define DAY     1440
#define CAP_8D  (8 * DAY + 1) /* the server's history for period auto at 1 minute */
#define LOOK_5M (5 * STEP)

static struct ps_engine *mk(enum ps_model m, int64_t period, int64_t look, size_t cap, double q,
                            uint32_t seed) {
  struct ps_engine_config c = {.model = m,
                               .step_ms = STEP,
                               .period_ms = period,
                               .lookahead_ms = look,
                               .capacity = cap,
                               .quantile = q,
                               .seed = seed};
  struct ps_engine *e;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  return e;
}

/* splitmix64, so that every run sees the same data */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static double uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) / 9007199254740992.0; }
static double gauss(uint64_t *s) {
  double u = uniform(s), v = uniform(s);
  return sqrt(-2 * log(u < 1e-300 ? 1e-300 : u)) * cos(2 * M_PI * v);
}

/* A daily sine with a second harmonic, a slow drift and noise; one sample in 500 missing. */
static void periodic(double *x, size_t n, uint64_t seed) {
  uint64_t s = seed;
  double ph = 2 * M_PI * uniform(&s);
  for (size_t i = 0; i < n; i++) {
    double d = 2 * M_PI * (double)(i % DAY) / DAY;
    x[i] = 100 + 40 * sin(d + ph) + 15 * sin(2 * d) + 0.001 * (double)i + 4 * gauss(&s);
    if (rng_next(&s) % 500 == 0) x[i] = NAN;
  }
}

/* Requests per minute of a web site, shaped like the NASA July 1995 log: a working-day peak, quiet
 * nights, weekends at 60 %, Poisson-like noise (sd = sqrt(rate)), and a burst of 2-4x for 5-30 minutes
 * about twice a day. */
static void web(double *x, size_t n, uint64_t seed) {
  uint64_t s = seed;
  size_t burst_end = 0;
  double burst = 1;
  for (size_t i = 0; i < n; i++) {
    double h = (double)(i % DAY) / 60.0;
    int weekend = (i / DAY) % 7 >= 5;
    double shape = 0.15 + 0.85 * exp(-pow((h - 14) / 4.0, 2)) + 0.2 * exp(-pow((h - 20) / 2.0, 2));
    double rate = 120 * shape * (weekend ? 0.6 : 1.0);
    if (i >= burst_end && rng_next(&s) % 720 == 0) {
      burst_end = i + 5 + rng_next(&s) % 26;
      burst = 2 + 2 * uniform(&s);
    }
    if (i < burst_end) rate *= burst;
    double v = rate + sqrt(rate) * gauss(&s);
    x[i] = v < 0 ? 0 : round(v);
  }
}

static void load(struct ps_engine *e, const double *x, size_t n, int bulk) {
  if (bulk) ps_engine_bulk_begin(e);
  for (size_t i = 0; i < n; i++) cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, x[i]), 0);
  if (bulk) ps_engine_bulk_end(e);
}

static void forecast_at(struct ps_engine *e, size_t i, struct ps_engine_result *r) {
  cr_assert_eq(ps_engine_forecast(e, (int64_t)i * STEP, r), 0);
}

static void assert_same(const struct ps_engine_result *a, const struct ps_engine_result *b) {
  cr_assert_eq(a->value, b->value, "%.17g vs %.17g", a->value, b->value);
  cr_assert_eq(a->predicted, b->predicted);
  cr_assert_eq(a->margin, b->margin);
  cr_assert_eq(a->chosen, b->chosen);
  cr_assert_eq(a->period_ms, b->period_ms);
  for (int m = 0; m < PS_MODEL_COUNT; m++)
    cr_assert(a->mae[m] == b->mae[m] || (isnan(a->mae[m]) && isnan(b->mae[m])), "mae[%d]", m);
}

/* A batch up to PS_ENGINE_BULK_STEPWISE steps (two days at 1 minute) is learned step by step, refits
 * included, as puts learn it: the same answer to the bit, beyond the analog model's horizon (8 steps). Within
 * it (5 steps), the same steps and refits, but the analog model forecasts at a few of the steps only
 * (engine_int.h, AN_BULK_SCORED): it is scored, on fewer errors than after puts. One step more is a bulk
 * load: the replay alone is learned one by one. */
Test(engine_bulk, a_short_batch_is_learned_as_puts_learn_it) {
  /* The newest PS_ENGINE_REVISABLE + 1 steps stay unlearned: n learns PS_ENGINE_BULK_STEPWISE steps. */
  size_t n = PS_ENGINE_BULK_STEPWISE + PS_ENGINE_REVISABLE + 1;
  double *x = malloc((n + 1) * sizeof *x);
  periodic(x, n + 1, 7);
  struct ps_engine *a, *b;
  for (int look = 0; look < 2; look++) {
    int64_t l = look ? LOOK_5M : (PS_ANALOG_MAX_H + 1) * STEP;
    a = mk(PS_MODEL_AUTO, 0, l, CAP_8D, 0.9, 42);
    b = mk(PS_MODEL_AUTO, 0, l, CAP_8D, 0.9, 42);
    load(a, x, n, 1);
    load(b, x, n, 0);
    struct ps_engine_result ra, rb;
    forecast_at(a, n - 1, &ra);
    forecast_at(b, n - 1, &rb);
    if (!look) {
      assert_same(&ra, &rb);
    } else {
      cr_assert(isfinite(ra.mae[PS_MODEL_ANALOG]) && isfinite(rb.mae[PS_MODEL_ANALOG]));
      cr_assert_neq(ra.mae[PS_MODEL_ANALOG], rb.mae[PS_MODEL_ANALOG], "scored on other steps");
      cr_assert_eq(ra.mae[PS_MODEL_HOLTWINTERS], rb.mae[PS_MODEL_HOLTWINTERS]);
    }
    struct ps_engine_counts ca, cb;
    ps_engine_counts(a, &ca);
    ps_engine_counts(b, &cb);
    cr_assert_eq(ca.refits, cb.refits);
    cr_assert_eq(ca.learns, cb.learns);
    cr_assert_eq(ca.learns, PS_ENGINE_BULK_STEPWISE);
    ps_engine_free(a);
    ps_engine_free(b);
  }
  a = mk(PS_MODEL_AUTO, 0, LOOK_5M, CAP_8D, 0.9, 42);
  load(a, x, n + 1, 1);
  struct ps_engine_counts ca;
  ps_engine_counts(a, &ca);
  cr_assert_eq(ca.learns, PS_ENGINE_BULK_REPLAY, "one step more: a bulk load");
  ps_engine_free(a);
  free(x);
}

/* The bulk refit scores the Holt-Winters parameters on at least the newest PS_ENGINE_BULK_FIT_FLAT steps
 * before the replay, however short the season (engine.h): a week with a 2-hour season, holtwinters alone,
 * 1 step ahead, answers exactly what that fit, the replay learned step by step and the provisional steps
 * give, and not what a fit scored on 3 periods (360 steps) gives. */
Test(engine_bulk, a_short_season_is_fitted_on_at_least_a_day) {
  const size_t p = 120, n = WEEK;
  double *x = malloc(n * sizeof *x);
  uint64_t s = 1;
  for (size_t i = 0; i < n; i++) /* a 2-hour cycle whose amplitude wanders from day to day, and noise */
    x[i] =
        100 + (30 + 10 * sin((double)i / DAY)) * sin(2 * M_PI * (double)(i % p) / (double)p) + 8 * gauss(&s);
  struct ps_engine *e = mk(PS_MODEL_HOLTWINTERS, (int64_t)p * STEP, STEP, CAP_8D, 0, 1);
  load(e, x, n, 1);
  struct ps_engine_result r;
  forecast_at(e, n - 1, &r);
  ps_engine_free(e);
  /* engine.c's bulk end, by hand: the refit over steps [0, skip], the replay, the provisional steps. */
  const int64_t newest = (int64_t)n - 1, upto = newest - PS_ENGINE_REVISABLE - 1;
  const int64_t skip = upto - PS_ENGINE_BULK_REPLAY;
  float *xf = malloc(n * sizeof *xf);
  for (size_t i = 0; i < n; i++) xf[i] = (float)x[i];
  double want[2];
  const size_t search[2] = {PS_ENGINE_BULK_FIT_FLAT, PS_ENGINE_BULK_FIT_PERIODS * p};
  cr_assert_gt(search[0], search[1]);
  for (int k = 0; k < 2; k++) {
    struct ps_hw m;
    ps_hw_init(&m);
    cr_assert_eq(ps_hw_fit_tail(&m, xf, (size_t)skip + 1, 0, p, 1, search[k]), 0);
    for (int64_t t = skip + 1; t <= upto; t++) ps_hw_step(&m.p, &m.c, &m.season[t % (int64_t)p], t, xf[t]);
    struct ps_hw_core c = m.c;
    for (int64_t t = upto + 1; t <= newest; t++) {
      float slot = m.season[t % (int64_t)p];
      ps_hw_step(&m.p, &c, &slot, t, xf[t]);
    }
    want[k] = ps_hw_forecast_damped(&c, m.season[(newest + 1) % (int64_t)p], ps_hw_damp_sum(1));
    ps_hw_free(&m);
  }
  cr_assert_neq(want[0], want[1], "the data tells the two fits apart");
  cr_assert_eq(r.predicted, want[0], "%.17g, want %.17g (3 periods: %.17g)", r.predicted, want[0], want[1]);
  free(xf);
  free(x);
}

/* A week at 1 minute: one refit and PS_ENGINE_BULK_REPLAY steps learned one by one, against a refit
 * every half history and every step for puts (the cost by count: the figures in time are
 * tests/bench/engine_bench.c's). The answer: the same period, within 3 % of the puts' value (documented
 * in engine.h: the puts' last refit saw less of the week), for several seeds. */
Test(engine_bulk, a_week_refits_once_and_answers_as_puts_do) {
  double *x = malloc(WEEK * sizeof *x);
  for (uint32_t seed = 1; seed <= 4; seed++) {
    periodic(x, WEEK, seed);
    struct ps_engine *a = mk(PS_MODEL_AUTO, 0, LOOK_5M, CAP_8D, 0.9, seed);
    struct ps_engine *b = mk(PS_MODEL_AUTO, 0, LOOK_5M, CAP_8D, 0.9, seed);
    load(a, x, WEEK, 1);
    load(b, x, WEEK, 0);
    struct ps_engine_counts ca, cb;
    ps_engine_counts(a, &ca);
    ps_engine_counts(b, &cb);
    cr_assert_eq(ca.refits, 1);
    cr_assert_eq(ca.learns, PS_ENGINE_BULK_REPLAY);
    cr_assert_geq(cb.refits, 5, "puts refit %llu times", (unsigned long long)cb.refits);
    cr_assert_eq(cb.learns, WEEK - PS_ENGINE_REVISABLE - 1);
    struct ps_engine_result ra, rb;
    forecast_at(a, WEEK - 1, &ra);
    forecast_at(b, WEEK - 1, &rb);
    cr_assert_eq(ra.period_ms, 86400000);
    cr_assert_eq(rb.period_ms, 86400000);
    cr_assert_lt(fabs(ra.value - rb.value), 0.03 * rb.value, "seed %u: bulk %g, puts %g", seed, ra.value,
                 rb.value);
    cr_assert_gt(ra.margin, 0);
    for (int m = 0; m < PS_MODEL_COUNT; m++) cr_assert(isfinite(ra.mae[m]), "mae[%d] known", m);
    ps_engine_free(a);
    ps_engine_free(b);
  }
  free(x);
}

/* A backtest in small: load rows [0, n0) in bulk or by puts, then put and forecast every later row as the
 * server does; score each answer against the maximum of the rows in its window (what it should cover):
 * the mean absolute error of the prediction, and the shortfall of the value (under-provisioning). */
struct score {
  double mae, under;
};
static struct score replay(const double *x, size_t n, size_t n0, int bulk, size_t cap,
                           int64_t step_rows_look) {
  struct ps_engine *e = mk(PS_MODEL_AUTO, 0, step_rows_look * STEP, cap, 0.9, 3);
  load(e, x, n0, bulk);
  struct score s = {0, 0};
  size_t cnt = 0;
  for (size_t i = n0; i + (size_t)step_rows_look < n; i++) {
    cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, x[i]), 0);
    struct ps_engine_result r;
    forecast_at(e, i, &r);
    double act = -INFINITY;
    for (size_t k = 1; k <= (size_t)step_rows_look; k++)
      if (x[i + k] > act) act = x[i + k];
    if (!isfinite(act)) continue;
    s.mae += fabs(act - r.predicted);
    s.under += fmax(0, act - r.value);
    cnt++;
  }
  ps_engine_free(e);
  s.mae /= (double)cnt;
  s.under /= (double)cnt;
  return s;
}

/* The day after a restart, on a web-like trace: the bulk load's answers score within 3 % of the puts'
 * (MAE) and 5 % (shortfall). docs/performance.md has the same comparison on the public traces. */
Test(engine_bulk, the_day_after_a_bulk_load_scores_as_after_puts) {
  size_t n = 9 * DAY + 10;
  double *x = malloc(n * sizeof *x);
  for (uint64_t seed = 11; seed <= 13; seed++) {
    web(x, n, seed);
    struct score b = replay(x, n, 8 * DAY, 1, CAP_8D, 2), p = replay(x, n, 8 * DAY, 0, CAP_8D, 2);
    cr_assert_lt(b.mae, 1.03 * p.mae, "seed %llu: MAE bulk %g, puts %g", (unsigned long long)seed, b.mae,
                 p.mae);
    cr_assert_lt(b.under, 1.05 * p.under, "seed %llu: shortfall bulk %g, puts %g", (unsigned long long)seed,
                 b.under, p.under);
  }
  free(x);
}

/* The same on the public NASA trace (docs/forecasting.md), when this machine has it: restarted after 8
 * days and after 15, scored over the next day. prescale never reads it at run time; the test skips
 * without it. */
Test(engine_bulk, the_nasa_trace_after_a_bulk_load_scores_as_after_puts) {
  struct ps_trace tr;
  char err[256];
  if (ps_trace_load("/work/shared/data/traces/nasa-http-1995-07-60s.csv", &tr, err, sizeof err) != 0)
    cr_skip_test("no public NASA trace here: %s", err);
  cr_assert_eq(tr.step_ms, STEP);
  for (size_t days = 8; days <= 15; days += 7) {
    size_t n0 = days * DAY, n = n0 + DAY;
    cr_assert_leq(n, tr.n);
    struct score b = replay(tr.v, n, n0, 1, CAP_8D, 2), p = replay(tr.v, n, n0, 0, CAP_8D, 2);
    cr_assert_lt(b.mae, 1.03 * p.mae, "day %zu: MAE bulk %g, puts %g", days, b.mae, p.mae);
    cr_assert_lt(b.under, 1.05 * p.under, "day %zu: shortfall bulk %g, puts %g", days, b.under, p.under);
  }
  ps_trace_free(&tr);
}

/* Puts between begin and end keep their rules (revisions, too old, gaps, the exact newest value); a
 * forecast meanwhile answers the newest value; end without begin does nothing; a second bulk load onto a
 * learned history (a reload after an outage) learns the new steps with one more refit. */
Test(engine_bulk, puts_in_a_bulk_load_keep_their_rules) {
  struct ps_engine *e = mk(PS_MODEL_AUTO, 0, LOOK_5M, CAP_8D, 0, 1);
  ps_engine_bulk_end(e); /* not begun: nothing */
  ps_engine_bulk_begin(e);
  for (int i = 0; i < 100; i++) cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, 10.25 + i), 0);
  cr_assert_eq(ps_engine_put(e, 99 * STEP, 7.5), 0);                                   /* a revision */
  cr_assert_eq(ps_engine_put(e, (99 - PS_ENGINE_REVISABLE - 1) * STEP, 1), UV_ERANGE); /* too old */
  struct ps_engine_result r;
  forecast_at(e, 99, &r);
  cr_assert_eq(r.current, 7.5);
  struct ps_engine_counts c;
  ps_engine_counts(e, &c);
  cr_assert_eq(c.learns, 0, "nothing learned before the end");
  cr_assert_eq(c.refits, 0);
  ps_engine_bulk_end(e);
  ps_engine_counts(e, &c);
  cr_assert_eq(c.learns, 100 - PS_ENGINE_REVISABLE - 1);
  /* A reload: a gap of 3 days (less than the history), then 3 days in bulk. */
  double *x = malloc(6 * DAY * sizeof *x);
  periodic(x, 6 * DAY, 5);
  x[6 * DAY - 1] = 123.0;
  ps_engine_bulk_begin(e);
  for (size_t i = 3 * DAY; i < 6 * DAY; i++) cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, x[i]), 0);
  ps_engine_bulk_end(e);
  struct ps_engine_counts c2;
  ps_engine_counts(e, &c2);
  cr_assert_eq(c2.refits, c.refits + 1);
  cr_assert_eq(c2.learns, c.learns + PS_ENGINE_BULK_REPLAY);
  forecast_at(e, 6 * DAY - 1, &r);
  cr_assert_eq(r.current, x[6 * DAY - 1]);
  cr_assert(r.value >= r.current && isfinite(r.value));
  free(x);
  ps_engine_free(e);
}
