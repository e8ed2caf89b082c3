/* A target with a fixed model (not auto): what its engine computes is only what that model and the
 * exported errors read (engine_models.c, learn: the forecast's origin, auto's candidates). Pinned here: a
 * fixed model still scores every model exactly as auto does (prescale_target_model_error of each model), and
 * the linear model answers the least-squares line of its window, the ring wrapped and with missing steps. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <uv.h>

#include "forecast/engine.h"

#define STEP 60000

static struct ps_engine *mk(enum ps_model m, int64_t look, size_t cap) {
  struct ps_engine_config c = {
      .model = m, .step_ms = STEP, .lookahead_ms = look, .capacity = cap, .target_coverage = 0.82};
  struct ps_engine *e;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  return e;
}

static uint64_t rng = 7;
static double unif(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* A season of 60 steps, a trend, a level shift at 1500, noise, and a missing step now and then. */
static double load(int i) {
  if (i % 37 == 5) return NAN;
  return (i < 1500 ? 100 : 160) + 0.01 * i + 40 * sin(2 * M_PI * i / 60) + 8 * (unif() - 0.5);
}

static bool same(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

/* Each fixed model beside auto, fed the same samples: every model's error is auto's, to the bit (the
 * models' forecasts do not depend on which one answers), and the "auto" series of a fixed model is its own
 * model's (its answers are that model's). */
Test(engine_fixed, a_fixed_model_scores_every_model_as_auto_does) {
  for (int fm = 0; fm < PS_MODEL_AUTO; fm++) {
    struct ps_engine *fixed = mk((enum ps_model)fm, 5 * STEP, 1000), *au = mk(PS_MODEL_AUTO, 5 * STEP, 1000);
    rng = 7;
    int compared = 0;
    for (int i = 0; i < 3000; i++) {
      double v = load(i);
      cr_assert_eq(ps_engine_put(fixed, (int64_t)i * STEP, v), 0);
      cr_assert_eq(ps_engine_put(au, (int64_t)i * STEP, v), 0);
      if (i % 97 != 96) continue;
      struct ps_engine_result rf, ra;
      cr_assert_eq(ps_engine_forecast(fixed, (int64_t)i * STEP, &rf), 0);
      cr_assert_eq(ps_engine_forecast(au, (int64_t)i * STEP, &ra), 0);
      cr_assert_eq(rf.chosen, (enum ps_model)fm);
      cr_assert_eq(rf.period_ms, ra.period_ms);
      for (int m = 0; m < PS_MODEL_AUTO; m++)
        cr_assert(same(rf.mae[m], ra.mae[m]), "model %s at step %d: %s's error %.17g, auto's %.17g",
                  ps_model_name((enum ps_model)fm), i, ps_model_name((enum ps_model)m), rf.mae[m], ra.mae[m]);
      cr_assert(same(rf.mae[PS_MODEL_AUTO], rf.mae[fm]));
      compared += isfinite(rf.mae[PS_MODEL_LINEAR]) && isfinite(rf.mae[PS_MODEL_HOLTWINTERS]);
    }
    cr_assert_geq(compared, 25, "errors compared at %d steps only", compared);
    ps_engine_free(fixed);
    ps_engine_free(au);
  }
}

/* The line through the stored (float) values of the newest w steps, missing ones left out, and its maximum
 * over the h steps ahead: what model linear must answer. */
static double line_max(const double *y, int newest, int held, int w, int h) {
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (int k = 0; k < w && k < held; k++) {
    double v = (float)y[newest - k];
    if (isnan(v)) continue;
    n++;
    sx -= k;
    sy += v;
    sxx += (double)k * k;
    sxy -= k * v;
  }
  double b = (n * sxy - sx * sy) / (n * sxx - sx * sx), a = (sy - b * sx) / n;
  return fmax(a + b, a + b * h);
}

/* A history shorter than the line's window (the ring wraps many times) and one longer, rising and falling,
 * with missing steps: the answer is the line's maximum over the window ahead. */
Test(engine_fixed, linear_answers_the_least_squares_line_of_its_window) {
  static double y[800];
  const int h = 4, w = 24; /* LINEAR_SPAN x h, within [LINEAR_MIN, LINEAR_MAX] */
  size_t caps[] = {17, 100};
  for (size_t c = 0; c < 2; c++) {
    struct ps_engine *e = mk(PS_MODEL_LINEAR, h * STEP, caps[c]);
    int checked = 0;
    for (int i = 0; i < 800; i++) {
      y[i] = i % 11 == 3 ? NAN : 500 + 200 * sin(i / 40.0) + 3 * (i % 5);
      cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, y[i]), 0);
      struct ps_engine_result r;
      if (i < 30 || isnan(y[i]) || ps_engine_forecast(e, (int64_t)i * STEP, &r) != 0) continue;
      double want = line_max(y, i, (int)caps[c], w, h);
      cr_assert(fabs(r.predicted - want) <= 1e-9 * fabs(want), "cap %zu step %d: %.17g, want %.17g", caps[c],
                i, r.predicted, want);
      checked++;
    }
    cr_assert_geq(checked, 600);
    ps_engine_free(e);
  }
}

/* The analog model's codes are kept only as far back as its library reaches (engine.c analog_reach): a
 * ring of the flat library's reach until a period is found, resized and encoded again from the float ring
 * then. An engine that found the daily period itself answers, to the bit, what one given it answers from
 * the step it found it on; with the period given the ring is 6 days and 135 steps of an 8-day history. */
Test(engine_fixed, the_analog_models_codes_follow_the_period_found) {
  const int day = 1440, n = 10 * day;
  struct ps_engine_config c = {.model = PS_MODEL_ANALOG,
                               .step_ms = STEP,
                               .lookahead_ms = 2 * STEP,
                               .capacity = 8 * day + 1,
                               .target_coverage = 0.82};
  struct ps_engine *found, *given, *none;
  cr_assert_eq(ps_engine_new(&c, &found), 0);
  c.period_ms = (int64_t)day * STEP;
  cr_assert_eq(ps_engine_new(&c, &given), 0);
  c.lookahead_ms = 8 * STEP; /* beyond the model's horizon: a ring of its inputs' 12 steps only */
  cr_assert_eq(ps_engine_new(&c, &none), 0);
  rng = 11;
  int compared = 0;
  for (int i = 0; i < n; i++) {
    double v = 100 + 60 * sin(2 * M_PI * i / day) + 10 * (unif() - 0.5) + (i % day == 700 ? 80 : 0);
    cr_assert_eq(ps_engine_put(found, (int64_t)i * STEP, v), 0);
    cr_assert_eq(ps_engine_put(given, (int64_t)i * STEP, v), 0);
    cr_assert_eq(ps_engine_put(none, (int64_t)i * STEP, v), 0);
    struct ps_engine_result rf, rg;
    cr_assert_eq(ps_engine_forecast(found, (int64_t)i * STEP, &rf), 0);
    cr_assert_eq(ps_engine_forecast(given, (int64_t)i * STEP, &rg), 0);
    if (rf.period_ms != rg.period_ms || !isfinite(rg.predicted)) continue;
    cr_assert(same(rf.predicted, rg.predicted), "step %d: %.17g vs %.17g", i, rf.predicted, rg.predicted);
    compared++;
  }
  cr_assert_gt(compared, 5 * day, "the period found after %d steps", n - compared);
  /* the code rings' sizes, by difference: 2 bytes a step, within the few KB the horizon changes besides */
  size_t codes = (size_t)(6 * day + 120 + 11 + 1 + 3); /* from the learned step, 3 behind the newest */
  cr_assert_geq(ps_engine_memory(given) + 4096, ps_engine_memory(none) + 2 * codes);
  cr_assert_lt(ps_engine_memory(given), ps_engine_memory(none) + 2 * codes + 4096, "not 8 days of codes");
  ps_engine_free(found);
  ps_engine_free(given);
  ps_engine_free(none);
}
