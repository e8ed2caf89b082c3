/* A target with a fixed model (not auto): what its engine computes is only what that model and the
 * exported errors read (engine_models.c, learn: the forecast's origin, auto's candidates). Pinned here: a
 * fixed model still scores every model exactly as auto does (prescale_target_model_error of each model), and
 * the linear model answers the least-squares line of its window, the ring wrapped and with missing steps. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <uv.h>

#include "analog_library.h"
#include "forecast/analog.h"
#include "forecast/engine.h"
#include "forecast/engine_int.h"

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

/* The analog model's codes are kept only where its library reads (engine.c codes_layout): a ring of the
 * flat library's reach until a period is found, laid out again then (a ring of the newest steps and a
 * window around the same phase of each of the last 6 days), encoded again from the float ring. An engine
 * that found the daily period itself answers, to the bit, what one given it answers from the step it
 * found it on. */
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
  /* the codes' layout (white box): the newest 240 + 2 + 11 steps and 6 windows of 120 + 11 + 1 + 120 + 2
   * steps, each 3 more (from the learned step, 3 behind the newest); beyond the model's horizon, its
   * inputs' 12 steps and 3 */
  cr_assert_eq(given->lay.cap, 240 + 2 + 11 + 3);
  cr_assert_eq(given->lay.win_n, 6);
  cr_assert_eq(given->lay.win_cap, 120 + 11 + 1 + 120 + 2 + 3);
  cr_assert_eq(found->lay.cap, given->lay.cap);
  cr_assert_eq(found->lay.win_n, given->lay.win_n);
  cr_assert_eq(found->lay.win_cap, given->lay.win_cap);
  cr_assert_eq(none->lay.cap, 12 + 3);
  cr_assert_eq(none->lay.win_n, 0);
  size_t codes = 256 + 6 * 257 - 15;
  cr_assert_lt(ps_engine_memory(given), ps_engine_memory(none) + 2 * codes + 1024, "not 8 days of codes");
  ps_engine_free(found);
  ps_engine_free(given);
  ps_engine_free(none);
}

/* White box (engine_int.h): the codes the analog model reads through the engine's view (ps_eng_codes), a
 * ring of the newest steps and windows that slide around the same phase of past periods, are those of the
 * values the history holds, after a bulk load, across gaps, revisions of the provisional steps and a gap
 * longer than the history (a restart): every code it holds is that of its step's value, and it holds every
 * step the library of an origin from the learned step to the newest reads, within the history. */
Test(engine_fixed, the_analog_models_view_holds_the_codes_of_the_history) {
  enum { P = 400, CAP = 3 * P + 50, N = 9000, H = 3, BULK = 2000 }; /* the 3rd window reaches beyond */
  struct ps_engine_config c = {.model = PS_MODEL_ANALOG,
                               .step_ms = STEP,
                               .lookahead_ms = H * STEP,
                               .period_ms = (int64_t)P * STEP,
                               .capacity = CAP,
                               .target_coverage = 0.82};
  struct ps_engine *e;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  static double val[N + CAP + 100];
  for (size_t i = 0; i < sizeof val / sizeof *val; i++) val[i] = NAN;
  rng = 13;
  int64_t t = -1;
  size_t checked = 0, held = 0;
  ps_engine_bulk_begin(e);
  for (int i = 0; i < N; i++) {
    t++;
    if (i == 6000) t += CAP + 10;                  /* a restart */
    if (i % 900 >= 400 && i % 900 < 430) continue; /* a gap of 30 steps */
    double v = 200 + 80 * sin(2 * M_PI * (double)t / P) + 30 * unif();
    cr_assert_eq(ps_engine_put(e, t * STEP, v), 0);
    val[t] = (float)v;
    if (i == BULK) ps_engine_bulk_end(e);
    if (i > BULK && i % 37 == 0 && ps_engine_put(e, (t - 1) * STEP, v / 2) == 0) val[t - 1] = (float)(v / 2);
    if (i < BULK || (i % 7 != 0 && i % 900 != 430)) continue;
    struct ps_analog_ring r = ps_eng_codes(e);
    struct ps_analog an = e->an;
    int64_t first = e->newest - (int64_t)e->len + 1;
    for (int64_t s = e->newest - 6 * P - 300; s <= e->newest; s++) {
      if (s < 0) continue;
      int16_t got = ps_analog_code_at(&r, s),
              want = s < first ? PS_ANALOG_MISSING : ps_analog_encode(&an, val[s]);
      int needed = s >= first && ps_test_library_reads(e->learned, e->newest, H, P, s);
      if (got != PS_ANALOG_MISSING || needed)
        cr_assert_eq(got, want, "step %lld at newest %lld: %d, want %d", (long long)s, (long long)e->newest,
                     got, want);
      held += got != PS_ANALOG_MISSING;
      checked++;
    }
  }
  cr_assert_eq(e->lay.win_n, 3, "the windows within the history: %zu", e->lay.win_n);
  cr_assert_gt(held, checked / 4);
  ps_engine_free(e);
}
