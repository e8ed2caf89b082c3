/* Auto's answer built on the candidate of the least pinball loss at the target coverage (engine_int.h,
 * QSCORE_DECAY), while the forecast it reports stays the MAE choice. */
#include <criterion/criterion.h>
#include <math.h>

#include "forecast/engine.h"

#define STEP   60000
#define PERIOD 60   /* steps: an hour at a minute */
#define N      6000 /* steps replayed: 100 periods */
#define WARM   1000 /* steps before anything is counted */

static uint64_t rng = 1;
static double unif(void) {
  rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static double noise(void) { return (unif() + unif() + unif() + unif() - 2) * 1.7320508; }

/* twitter's kind of load, in small: a level that wanders (the last value and the analog model follow it
 * best), and a spike
 * of 60 over two minutes at half past the hour in half of the hours (a season carries it into the next
 * hour whether or not it comes back). */
static void series(double *x) {
  double level = 100;
  int spike = 0;
  rng = 5;
  for (int i = 0; i < N + 8; i++) {
    int ph = i % PERIOD;
    if (ph == 30) spike = unif() < 0.5;
    level = fmin(140, fmax(60, level + noise()));
    x[i] = level + 0.5 * noise() + (spike && (ph == 30 || ph == 31) ? 60 : 0);
  }
}

static struct ps_engine *mk(enum ps_model m, int64_t look_steps, double quantile, double target) {
  struct ps_engine_config c = {.model = m,
                               .step_ms = STEP,
                               .period_ms = PERIOD * STEP,
                               .lookahead_ms = look_steps * STEP,
                               .capacity = 2000,
                               .quantile = quantile,
                               .target_coverage = target};
  struct ps_engine *e;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  return e;
}

static double pinball(double actual, double answer, double level) {
  double u = actual - answer;
  return u >= 0 ? level * u : (level - 1) * u;
}

/* Row i of the series into both engines, and both forecasts. */
static void step_both(const double *x, int i, struct ps_engine *cov, struct ps_engine *mae,
                      struct ps_engine_result *rc, struct ps_engine_result *rm) {
  ps_engine_put(cov, (int64_t)i * STEP, x[i]);
  ps_engine_put(mae, (int64_t)i * STEP, x[i]);
  cr_assert_eq(ps_engine_forecast(cov, (int64_t)i * STEP, rc), 0);
  cr_assert_eq(ps_engine_forecast(mae, (int64_t)i * STEP, rm), 0);
}

/* The two engines see the same series; `mae` holds the fixed quantile, whose answer stays on the MAE
 * choice, `cov` the target coverage. Counts the steps after WARM each answered with model m. */
static void replay(const double *x, struct ps_engine *cov, struct ps_engine *mae, int *cov_hw, int *mae_hw,
                   int *mae_near) {
  *cov_hw = *mae_hw = *mae_near = 0;
  for (int i = 0; i < N; i++) {
    struct ps_engine_result rc, rm;
    step_both(x, i, cov, mae, &rc, &rm);
    /* The forecast reported (and MASE) does not depend on how the answer is built. */
    cr_assert_eq(rc.predicted, rm.predicted, "row %d: %g vs %g", i, rc.predicted, rm.predicted);
    cr_assert(fabs(rc.value - fmax(rc.current, rc.predicted + rc.margin)) <= 1e-9 * (1 + rc.value),
              "row %d: the margin is the answer's distance from the forecast", i);
    if (i < WARM) continue;
    *cov_hw += rc.chosen == PS_MODEL_HOLTWINTERS;
    *mae_hw += rm.chosen == PS_MODEL_HOLTWINTERS;
    *mae_near += rm.chosen == PS_MODEL_LAST || rm.chosen == PS_MODEL_ANALOG;
  }
}

/* On this series the last value and the analog model have the least MAE and auto forecasts with them, but
 * Holt-Winters' answer (its forecast plus its margin at the target) has the least pinball loss at 0.82: its
 * season carries the spikes that recur. The answer must be built on Holt-Winters, the forecast stay on the
 * others. */
Test(engine_base, the_answer_follows_the_candidate_of_the_least_pinball_loss) {
  static double x[N + 8];
  series(x);
  /* The premise, measured here: each model alone at the target, its answers' pinball loss. */
  double loss[2] = {0, 0};
  const enum ps_model alone[2] = {PS_MODEL_LAST, PS_MODEL_HOLTWINTERS};
  for (int k = 0; k < 2; k++) {
    struct ps_engine *e = mk(alone[k], 2, 0, 0.82);
    for (int i = 0; i < N; i++) {
      struct ps_engine_result r;
      ps_engine_put(e, (int64_t)i * STEP, x[i]);
      cr_assert_eq(ps_engine_forecast(e, (int64_t)i * STEP, &r), 0);
      if (i >= WARM) loss[k] += pinball(fmax(x[i + 1], x[i + 2]), r.value, 0.82);
    }
    ps_engine_free(e);
  }
  cr_assert_lt(loss[1], 0.95 * loss[0], "holtwinters %g, last %g", loss[1], loss[0]);

  struct ps_engine *cov = mk(PS_MODEL_AUTO, 2, 0, 0.82), *mae = mk(PS_MODEL_AUTO, 2, 0.82, 0);
  int cov_hw, mae_hw, mae_near;
  replay(x, cov, mae, &cov_hw, &mae_hw, &mae_near);
  cr_log_info("holtwinters answers %d, forecasts %d; last or analog forecasts %d", cov_hw, mae_hw, mae_near);
  cr_assert_gt(mae_near, (N - WARM) / 2, "the MAE choice is the last value or the analog model: %d of %d",
               mae_near, N - WARM);
  cr_assert_gt(cov_hw, (N - WARM) / 2, "the answer is built on holtwinters in %d of %d steps", cov_hw,
               N - WARM);
  cr_assert_gt(cov_hw, 2 * mae_hw);
  ps_engine_free(cov);
  ps_engine_free(mae);
}

/* From the horizon where the peak model competes (PS_PEAK_MIN_H), the answer stays on the MAE choice:
 * with a target coverage auto answers with the model it forecasts with, as with a fixed quantile. */
Test(engine_base, from_the_peak_horizon_the_answer_stays_on_the_mae_choice) {
  static double x[N + 8];
  series(x);
  struct ps_engine *cov = mk(PS_MODEL_AUTO, 8, 0, 0.82), *mae = mk(PS_MODEL_AUTO, 8, 0.82, 0);
  for (int i = 0; i < N; i++) {
    struct ps_engine_result rc, rm;
    step_both(x, i, cov, mae, &rc, &rm);
    cr_assert_eq(rc.predicted, rm.predicted, "row %d", i);
    cr_assert_eq(rc.chosen, rm.chosen, "row %d", i);
  }
  ps_engine_free(cov);
  ps_engine_free(mae);
}

/* At a high target the candidates' offsets step up on misses only: the answer stays on the MAE choice
 * until they saw about 16 of the misses the target allows (16 / (1 - 0.99) = 1,600 errors), then may
 * leave it. */
Test(engine_base, a_high_target_ranks_only_after_enough_misses) {
  static double x[N + 8];
  series(x);
  struct ps_engine *cov = mk(PS_MODEL_AUTO, 2, 0, 0.99), *mae = mk(PS_MODEL_AUTO, 2, 0.99, 0);
  int first_apart = -1;
  for (int i = 0; i < N; i++) {
    struct ps_engine_result rc, rm;
    step_both(x, i, cov, mae, &rc, &rm);
    if (first_apart < 0 && rc.chosen != rm.chosen) first_apart = i;
  }
  cr_assert_geq(first_apart, 1600, "the answer left the MAE choice at row %d", first_apart);
  ps_engine_free(cov);
  ps_engine_free(mae);
}
