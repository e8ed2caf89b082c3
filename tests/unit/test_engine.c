#include <criterion/criterion.h>
#include <math.h>
#include <uv.h>

#include "forecast/engine.h"

#define STEP 60000

/* An engine at STEP with the quantile q (0: none). */
static struct ps_engine *mk_q(enum ps_model m, int64_t period, int64_t look, size_t cap, double q) {
  struct ps_engine_config c = {
      .model = m, .step_ms = STEP, .period_ms = period, .lookahead_ms = look, .capacity = cap, .quantile = q};
  struct ps_engine *e;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  return e;
}

static struct ps_engine *mk(enum ps_model m, int64_t period, int64_t look, size_t cap) {
  return mk_q(m, period, look, cap, 0);
}

Test(engine, last_and_seasonal) {
  struct ps_engine *e = mk(PS_MODEL_SEASONAL, 12 * STEP, 3 * STEP, 100);
  struct ps_engine_result r;
  cr_assert_eq(ps_engine_forecast(e, 0, &r), UV_ENOENT);
  for (int i = 0; i < 48; i++) cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, (i % 12) * 10.0), 0);
  cr_assert_eq(ps_engine_forecast(e, 47 * STEP, &r), 0);
  cr_assert_eq(r.chosen, PS_MODEL_SEASONAL);
  cr_assert_float_eq(r.current, 110, 1e-9);
  cr_assert(r.value >= 110);
  ps_engine_free(e);
}

Test(engine, old_put_is_erange) {
  struct ps_engine *e = mk(PS_MODEL_LAST, 0, STEP, 100);
  for (int i = 0; i < 10; i++) cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, 1), 0);
  cr_assert_eq(ps_engine_put(e, 7 * STEP, 2), 0);
  cr_assert_eq(ps_engine_put(e, 6 * STEP, 2), UV_ERANGE);
  ps_engine_free(e);
}

static uint64_t rng = 1;
static double unif(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static double noise(void) { return (unif() + unif() + unif() + unif() - 2) * 1.7320508; }

/* Revisions of the newest PS_ENGINE_REVISABLE steps replace them; older ones are refused. */
Test(engine, revisions_of_newest_steps) {
  struct ps_engine *e = mk(PS_MODEL_LAST, 0, STEP, 100);
  struct ps_engine_result r;
  for (int i = 0; i < 10; i++) cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, 5), 0);
  cr_assert_eq(ps_engine_put(e, 9 * STEP, 42), 0);
  cr_assert_eq(ps_engine_forecast(e, 9 * STEP, &r), 0);
  cr_assert_float_eq(r.current, 42, 1e-9);
  cr_assert_eq(ps_engine_put(e, 9 * STEP, NAN), 0); /* revised to missing: the previous step answers */
  cr_assert_eq(ps_engine_forecast(e, 9 * STEP, &r), 0);
  cr_assert_float_eq(r.current, 5, 1e-9);
  cr_assert_eq(r.current_ms, 8 * STEP);
  cr_assert_eq(ps_engine_put(e, 9 * STEP - PS_ENGINE_REVISABLE * STEP - STEP, 1), UV_ERANGE);
  ps_engine_free(e);
}

/* Period auto: a sine of 97 steps is found through the engine; white noise has no season. */
Test(engine, period_auto_sine_and_noise) {
  struct ps_engine *e = mk(PS_MODEL_AUTO, 0, 2 * STEP, 1000);
  struct ps_engine_result r;
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, 100 + 30 * sin(2 * M_PI * i / 97)), 0);
  cr_assert_eq(ps_engine_forecast(e, 999 * STEP, &r), 0);
  cr_assert_eq(r.period_ms, 97 * STEP);
  ps_engine_free(e);

  e = mk(PS_MODEL_AUTO, 0, 2 * STEP, 1000);
  rng = 9;
  for (int i = 0; i < 1000; i++) cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, 100 + 10 * noise()), 0);
  cr_assert_eq(ps_engine_forecast(e, 999 * STEP, &r), 0);
  cr_assert_eq(r.period_ms, 0);
  cr_assert_not_null(r.note);
  ps_engine_free(e);
}

/* A configured period longer than half the history: fall back and say so. */
Test(engine, short_history_says_so) {
  struct ps_engine *e = mk(PS_MODEL_HOLTWINTERS, 60 * STEP, STEP, 1000);
  struct ps_engine_result r;
  for (int i = 0; i < 90; i++) cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, 10 + i % 60), 0);
  cr_assert_eq(ps_engine_forecast(e, 89 * STEP, &r), 0);
  cr_assert_not_null(r.note);
  cr_assert(isfinite(r.value) && r.value >= 0);
  ps_engine_free(e);
}

/* After a level shift from 100 to 300, auto's answer is near the new level within 8 steps. */
Test(engine, level_shift_followed) {
  struct ps_engine *e = mk(PS_MODEL_AUTO, 0, 2 * STEP, 2000);
  struct ps_engine_result r;
  rng = 4;
  int i = 0;
  for (; i < 1500; i++) ps_engine_put(e, (int64_t)i * STEP, 100 + 3 * noise());
  for (int k = 0; k < 8; k++, i++) ps_engine_put(e, (int64_t)i * STEP, 300 + 3 * noise());
  cr_assert_eq(ps_engine_forecast(e, (int64_t)(i - 1) * STEP, &r), 0);
  cr_assert(r.value > 270 && r.value < 340, "value %f chosen %s", r.value, ps_model_name(r.chosen));
  ps_engine_free(e);
}

/* A counter reset seen through a sum of rates (a pod restarts, its series drops out for a scrape) is a
 * one-step dip to near 0. Auto's answers right after it, and its forecasts one period later at the same
 * phase (the seasonal models' memory), stay near the load: one outlier must not be learned as a daily
 * trough (seasonal naive alone would forecast 3 there). */
Test(engine, a_one_step_dip_is_an_outlier) {
  /* A one-step lookahead: a window maximum would hide the dip. */
  struct ps_engine *e = mk_q(PS_MODEL_AUTO, 120 * STEP, STEP, 2000, 0.9);
  rng = 51;
  enum { DIP = 1500, N = DIP + 130 };
  double worst_after = INFINITY, worst_next_period = INFINITY;
  for (int i = 0; i < N; i++) {
    double load = 200 + 80 * sin(2 * M_PI * i / 120) + 4 * noise();
    ps_engine_put(e, (int64_t)i * STEP, i == DIP ? 3 : load);
    struct ps_engine_result r;
    cr_assert_eq(ps_engine_forecast(e, (int64_t)i * STEP, &r), 0);
    double next = 200 + 80 * sin(2 * M_PI * (i + 1) / 120); /* the load's level one step ahead */
    if (i > DIP && i <= DIP + 5) worst_after = fmin(worst_after, r.value / next);
    if (i >= DIP + 117 && i <= DIP + 121) worst_next_period = fmin(worst_next_period, r.predicted / next);
  }
  cr_assert(worst_after > 0.85, "right after the dip: value down to %.2f of the load", worst_after);
  cr_assert(worst_next_period > 0.9, "a period later: forecast down to %.2f of the load", worst_next_period);
  ps_engine_free(e);
}

/* The q = 0.9 margin covers about 90% of the next windows' maxima (held back: scored before learned). */
Test(engine, quantile_covers) {
  struct ps_engine *e = mk_q(PS_MODEL_AUTO, 0, 2 * STEP, 2000, 0.9);
  rng = 12;
  enum { N = 4000 };
  static double x[N + 2];
  for (int i = 0; i < N + 2; i++) x[i] = 100 + 20 * sin(2 * M_PI * i / 50) + 8 * noise();
  int covered = 0, total = 0;
  for (int i = 0; i < N; i++) {
    ps_engine_put(e, (int64_t)i * STEP, x[i]);
    struct ps_engine_result r;
    cr_assert_eq(ps_engine_forecast(e, (int64_t)i * STEP, &r), 0);
    if (i < 1000) continue;
    total++;
    covered += fmax(x[i + 1], x[i + 2]) <= r.value;
  }
  double cov = (double)covered / total;
  cr_assert(cov > 0.85 && cov < 0.96, "coverage %f", cov);
  ps_engine_free(e);
}

/* The margin follows the size of the errors as it changes (quiet nights, busy days): with noise that
 * switches between sd 1 and sd 20 every 400 steps, the margin settles within 100 steps of each switch,
 * so each phase's answers cover about q of the maxima, rather than all of them in the quiet phases and
 * too few in the loud ones (a quantile of raw errors over the last PS_ENGINE_ERRORS lags a whole ring). */
Test(engine, quantile_follows_error_size) {
  struct ps_engine *e = mk_q(PS_MODEL_AUTO, 0, 2 * STEP, 2000, 0.9);
  rng = 31;
  enum { PHASE = 400, N = 10 * PHASE };
  static double x[N + 2];
  for (int i = 0; i < N + 2; i++) x[i] = 500 + (i / PHASE % 2 ? 20 : 1) * noise();
  int covered[2] = {0, 0}, total[2] = {0, 0};
  double quiet_margin = 0;
  for (int i = 0; i < N; i++) {
    ps_engine_put(e, (int64_t)i * STEP, x[i]);
    struct ps_engine_result r;
    cr_assert_eq(ps_engine_forecast(e, (int64_t)i * STEP, &r), 0);
    int loud = i / PHASE % 2;
    if (i < 2 * PHASE || i % PHASE < 100) continue;
    total[loud]++;
    covered[loud] += fmax(x[i + 1], x[i + 2]) <= r.value;
    if (!loud) quiet_margin = fmax(quiet_margin, r.margin);
  }
  for (int k = 0; k < 2; k++) {
    double cov = (double)covered[k] / total[k];
    cr_assert(cov > 0.8 && cov < 0.97, "%s coverage %f", k ? "loud" : "quiet", cov);
  }
  cr_assert(quiet_margin < 15, "quiet margin up to %f (noise sd 1 there)", quiet_margin);
  ps_engine_free(e);
}

/* Auto (choice or blend) does no worse than the worst of its members on a seasonal series with noise
 * and shifts. */
Test(engine, auto_not_worse_than_worst_member) {
  struct ps_engine *e = mk(PS_MODEL_AUTO, 0, 3 * STEP, 3000);
  struct ps_engine_result r;
  rng = 21;
  for (int i = 0; i < 6000; i++)
    ps_engine_put(e, (int64_t)i * STEP,
                  (i / 1000 % 2 ? 150 : 80) + 30 * sin(2 * M_PI * i / 120) + 10 * noise());
  cr_assert_eq(ps_engine_forecast(e, 5999 * STEP, &r), 0);
  double worst = 0;
  for (int m = 0; m < PS_MODEL_AUTO; m++)
    if (isfinite(r.mae[m]) && r.mae[m] > worst) worst = r.mae[m];
  cr_assert(isfinite(r.mae[PS_MODEL_AUTO]));
  cr_assert_leq(r.mae[PS_MODEL_AUTO], worst);
  double wsum = 0;
  for (int m = 0; m < PS_MODEL_COUNT; m++) wsum += r.weight[m];
  cr_assert_float_eq(wsum, 1, 1e-6);
  ps_engine_free(e);
}

/* Whatever comes in (NaN, Inf, negatives, huge values, gaps, resets, constants), every model answers
 * a finite value >= 0. */
Test(engine, never_nan_nor_negative) {
  static const double odd[] = {NAN, INFINITY, -INFINITY, -5, 1e300, -1e300, 0, 1e-300, 7, 7, 7};
  for (int m = 0; m < PS_MODEL_COUNT; m++) {
    for (int period = 0; period <= 5; period += 5) {
      struct ps_engine *e = mk_q((enum ps_model)m, period * STEP, 3 * STEP, 64, 0.95);
      rng = (uint64_t)(m * 10 + period);
      int64_t t = 0;
      for (int i = 0; i < 3000; i++) {
        double v = unif() < 0.3 ? odd[(size_t)(unif() * 11) % 11] : 1000 * unif() - 100;
        t += unif() < 0.05 ? (int64_t)(unif() * 10) * STEP : STEP; /* gaps */
        if (unif() < 0.01) t += 100 * STEP;                        /* longer than the history */
        ps_engine_put(e, t, v);
        struct ps_engine_result r;
        if (ps_engine_forecast(e, t, &r) == 0) {
          cr_assert(isfinite(r.value) && r.value >= 0, "model %d value %f", m, r.value);
          cr_assert(isfinite(r.margin) && r.margin >= 0);
          cr_assert_neq(r.chosen, PS_MODEL_AUTO);
        }
      }
      ps_engine_free(e);
    }
  }
}

/* A constant series: the answer is the constant, with no margin. */
Test(engine, constant_series) {
  struct ps_engine *e = mk_q(PS_MODEL_AUTO, 0, 5 * STEP, 500, 0.9);
  struct ps_engine_result r;
  for (int i = 0; i < 500; i++) ps_engine_put(e, (int64_t)i * STEP, 42);
  cr_assert_eq(ps_engine_forecast(e, 499 * STEP, &r), 0);
  cr_assert_float_eq(r.value, 42, 1e-6);
  cr_assert_float_eq(r.margin, 0, 1e-9);
  cr_assert_eq(r.period_ms, 0);
  ps_engine_free(e);
}

/* Gaps: missing steps are skipped; the seasonal model still finds its reference a period back. */
Test(engine, gaps) {
  struct ps_engine *e = mk(PS_MODEL_SEASONAL, 10 * STEP, STEP, 200);
  struct ps_engine_result r;
  for (int i = 0; i < 60; i++)
    if (i % 4 != 1) ps_engine_put(e, (int64_t)i * STEP, i % 10 == 0 ? 90 : 10);
  cr_assert_eq(ps_engine_forecast(e, 59 * STEP, &r), 0); /* the window is step 60: 50 was 90 */
  cr_assert_float_eq(r.value, 90, 1e-6);
  cr_assert_eq(ps_engine_forecast(e, 59 * STEP + 30000, &r), 0);
  cr_assert(isfinite(r.value));
  ps_engine_free(e);
}

Test(engine, bad_config_and_memory) {
  struct ps_engine *e;
  struct ps_engine_config c = {.model = PS_MODEL_AUTO, .step_ms = 0, .capacity = 10};
  cr_assert_eq(ps_engine_new(&c, &e), UV_EINVAL);
  c.step_ms = STEP;
  c.period_ms = STEP + 1;
  cr_assert_eq(ps_engine_new(&c, &e), UV_EINVAL);
  c.period_ms = 0;
  c.quantile = 0.2;
  cr_assert_eq(ps_engine_new(&c, &e), UV_EINVAL);
  c.quantile = 0;
  c.capacity = 10081;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  /* a week of minutes: well under 8.5 bytes per sample before any season */
  cr_assert_lt((double)ps_engine_memory(e) / 10081, 8.5);
  ps_engine_free(e);
}

/* History is kept as float, but the current value and the last-value model answer with the exact double
 * that was put: 19.1 must not come back as 19.100000381. */
Test(engine, current_and_last_are_exact_doubles) {
  struct ps_engine *e = mk(PS_MODEL_LAST, 0, 60000, 100);
  for (int i = 0; i < 10; i++) cr_assert_eq(ps_engine_put(e, i * 60000, 10.3 + i), 0);
  cr_assert_eq(ps_engine_put(e, 10 * 60000, 19.1), 0);
  struct ps_engine_result r;
  cr_assert_eq(ps_engine_forecast(e, 10 * 60000, &r), 0);
  cr_assert_eq(r.current, 19.1);
  cr_assert_eq(r.value, 19.1);
  /* A revision of the newest step replaces it exactly too; a missing newest falls back to the previous. */
  cr_assert_eq(ps_engine_put(e, 10 * 60000, 19.7), 0);
  cr_assert_eq(ps_engine_forecast(e, 10 * 60000, &r), 0);
  cr_assert_eq(r.current, 19.7);
  cr_assert_eq(ps_engine_put(e, 10 * 60000, NAN), 0);
  cr_assert_eq(ps_engine_forecast(e, 10 * 60000, &r), 0);
  cr_assert_float_eq(r.current, 19.3, 1e-5, "the float history's previous value");
  ps_engine_free(e);
}

/* Auto's bias correction is a loop with an h-step delay; at h = 120 it once oscillated without bound
 * on near-Poisson per-second arrivals (5/s). The forecast must stay of the data's order. */
Test(engine, auto_stays_bounded_at_a_long_horizon_on_noise) {
  struct ps_engine_config c = {
      .model = PS_MODEL_AUTO, .step_ms = 1000, .period_ms = 0, .lookahead_ms = 120000, .capacity = 4000};
  struct ps_engine *e;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  rng = 7;
  double worst = 0;
  for (int i = 0; i < 3500; i++) {
    double v = floor(10 * unif()); /* 0..9, mean 4.5 */
    cr_assert_eq(ps_engine_put(e, (int64_t)i * 1000, v), 0);
    struct ps_engine_result r;
    cr_assert_eq(ps_engine_forecast(e, (int64_t)i * 1000, &r), 0);
    if (r.value > worst) worst = r.value;
  }
  cr_assert_lt(worst, 30, "the forecast ran away to %g on data within 0..9", worst);
  ps_engine_free(e);
}

/* ps_engine_margins gives, from one engine, what an engine configured with each quantile answers: the
 * forecasts and errors do not depend on the quantile (what `prescale backtest --sweep` relies on). */
Test(engine, margins_equal_engines_configured_with_each_quantile) {
  static const double q[] = {0, 0.5, 0.5, 0.7, 0.9, 0.99};
  enum { NQ = sizeof q / sizeof q[0], N = 1500 };
  struct ps_engine *one = mk_q(PS_MODEL_AUTO, 0, 3 * STEP, 2000, 0.8), *each[NQ];
  for (int j = 0; j < NQ; j++) each[j] = mk_q(PS_MODEL_AUTO, 0, 3 * STEP, 2000, q[j]);
  rng = 77;
  int with_margin = 0;
  for (int i = 0; i < N; i++) {
    double x = 200 + 40 * sin(2 * M_PI * i / 90) + (i / 300 % 2 ? 15 : 2) * noise();
    struct ps_engine_result r, rj;
    double margin[NQ], value[NQ];
    ps_engine_put(one, (int64_t)i * STEP, x);
    cr_assert_eq(ps_engine_forecast(one, (int64_t)i * STEP, &r), 0);
    cr_assert_eq(ps_engine_margins(one, &r, q, NQ, margin, value), 0);
    for (int j = 0; j < NQ; j++) {
      ps_engine_put(each[j], (int64_t)i * STEP, x);
      cr_assert_eq(ps_engine_forecast(each[j], (int64_t)i * STEP, &rj), 0);
      cr_assert_eq(rj.predicted, r.predicted, "row %d q %g", i, q[j]);
      cr_assert_eq(margin[j], rj.margin, "row %d q %g: %g vs %g", i, q[j], margin[j], rj.margin);
      cr_assert_eq(value[j], rj.value, "row %d q %g", i, q[j]);
      if (j > 0) cr_assert_geq(margin[j], margin[j - 1], "row %d: ascending quantiles", i);
    }
    with_margin += margin[NQ - 1] > 0;
  }
  cr_assert_gt(with_margin, N / 2);
  double m[2], v[2];
  struct ps_engine_result r;
  cr_assert_eq(ps_engine_forecast(one, (int64_t)(N - 1) * STEP, &r), 0);
  cr_assert_eq(ps_engine_margins(one, &r, (const double[]){0.9, 0.5}, 2, m, v), UV_EINVAL, "unsorted");
  cr_assert_eq(ps_engine_margins(one, &r, (const double[]){0.3}, 1, m, v), UV_EINVAL,
               "as the config refuses");
  cr_assert_eq(ps_engine_margins(one, &r, (const double[]){1}, 1, m, v), UV_EINVAL);
  ps_engine_free(one);
  for (int j = 0; j < NQ; j++) ps_engine_free(each[j]);
}

/* The margin's errors are standardized by their recent size; while every error so far was exactly 0 (a
 * constant start, integer counts, a short window), that size is 0 and the next error is not divided by
 * it: an error of 1 over VOL_FLOOR stood in the ring as 1e9 error sizes (a synthetic 1 s trace of counts
 * at a 4 s lookahead asked for 1.4e9 requests/s, 3,800 times reactive's pods; here the answers reached 48
 * on data within 0..9, and stay under 15 now). */
Test(engine, margin_after_exact_forecasts_stays_of_the_datas_order) {
  for (int tc = 0; tc < 2; tc++) {
    struct ps_engine_config c = {.model = PS_MODEL_AUTO,
                                 .step_ms = 1000,
                                 .lookahead_ms = 4000,
                                 .capacity = 4000,
                                 .quantile = tc ? 0 : 0.95,
                                 .target_coverage = tc ? 0.95 : 0};
    struct ps_engine *e;
    cr_assert_eq(ps_engine_new(&c, &e), 0);
    rng = 41;
    double worst = 0;
    for (int i = 0; i < 2000; i++) {
      double v = i < 40 ? 4 : floor(10 * unif()); /* exact forecasts first, then 0..9 */
      cr_assert_eq(ps_engine_put(e, (int64_t)i * 1000, v), 0);
      struct ps_engine_result r;
      cr_assert_eq(ps_engine_forecast(e, (int64_t)i * 1000, &r), 0);
      if (r.value > worst) worst = r.value;
    }
    cr_assert_lt(worst, 25, "%s: the answer went to %g on data within 0..9", tc ? "coverage" : "quantile",
                 worst);
    ps_engine_free(e);
  }
}

/* At a long horizon the ring of standardized errors keeps one error in h x RING_WINDOWS / 256 (every 15th
 * at h = 120), so that it spans about 32 windows, not 2: its quantiles (seen through the ratio of two
 * margins, which share the scale) change at most once in 15 steps; at h = 2 it keeps every error, and
 * they change at most steps. */
Test(engine, error_ring_spans_windows_at_a_long_horizon) {
  static const double q[] = {0.6, 0.9};
  for (int long_h = 0; long_h < 2; long_h++) {
    struct ps_engine_config c = {.model = PS_MODEL_LAST,
                                 .step_ms = 1000,
                                 .lookahead_ms = long_h ? 120000 : 2000,
                                 .capacity = 8000,
                                 .quantile = 0.9};
    struct ps_engine *e;
    cr_assert_eq(ps_engine_new(&c, &e), 0);
    rng = 9;
    struct ps_engine_result r;
    double m[2], v[2], prev = NAN;
    int changed = 0, n = 0;
    for (int i = 0; i < 6000; i++) {
      cr_assert_eq(ps_engine_put(e, (int64_t)i * 1000, 100 + 5 * noise()), 0);
      cr_assert_eq(ps_engine_forecast(e, (int64_t)i * 1000, &r), 0);
      if (i < 1000) continue;
      cr_assert_eq(ps_engine_margins(e, &r, q, 2, m, v), 0);
      double ratio = m[1] / m[0];
      n++;
      changed += !(fabs(ratio - prev) <= 1e-9 * ratio); /* the scale rounds differently */
      prev = ratio;
    }
    if (long_h)
      cr_assert_leq(changed, n / 15 + 1, "h = 120: the ring's quantiles changed at %d of %d steps", changed,
                    n);
    else
      cr_assert_gt(changed, n / 3, "h = 2: the ring's quantiles changed at %d of %d steps", changed, n);
    ps_engine_free(e);
  }
}
