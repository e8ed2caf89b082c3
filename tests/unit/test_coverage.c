/* src/forecast/coverage.c (the target coverage's tuner) and its hooks in the engine (engine.c): the
 * answers waiting for their window, the tracker's exact bookkeeping, the realised coverage, and the
 * convergence to the target on adversarial streams and series, where the bound is the one coverage.h
 * states: over T windows the miss rate is off (1 - target) by (theta's swing) / (rate x T). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <uv.h>

#include "forecast/coverage.h"
#include "forecast/engine.h"

#define STEP 60000

static uint64_t rng = 1;
static double unif(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static double gauss(void) { return (unif() + unif() + unif() + unif() - 2) * 1.7320508; }

/* ---- the tuner alone ----------------------------------------------------------------------------- */

Test(coverage, init_checks_target_and_horizon) {
  struct ps_coverage c;
  cr_assert_eq(ps_cov_init(&c, 0, 2, STEP), 0, "0: off, the realised coverage is still measured");
  ps_cov_free(&c);
  cr_assert_eq(ps_cov_init(&c, 0.99, 2, STEP), 0);
  cr_assert(isnan(c.realised));
  cr_assert_eq(c.n, 2 + PS_COVERAGE_RING_EXTRA);
  cr_assert_float_eq(c.rate, PS_COVERAGE_RATE / sqrt(2.0 + PS_COVERAGE_RING_EXTRA), 1e-15);
  ps_cov_free(&c);
  cr_assert_eq(ps_cov_init(&c, 1, 2, STEP), UV_EINVAL);
  cr_assert_eq(ps_cov_init(&c, -0.5, 2, STEP), UV_EINVAL);
  cr_assert_eq(ps_cov_init(&c, NAN, 2, STEP), UV_EINVAL);
  cr_assert_eq(ps_cov_init(&c, 0.9, 0, STEP), UV_EINVAL);
}

/* An answer is scored only when its own window ends, once; a later answer for the same window replaces
 * it; a window of missing steps is not scored. */
Test(coverage, answers_wait_for_their_window) {
  struct ps_coverage c;
  int64_t lo;
  cr_assert_eq(ps_cov_init(&c, 0.9, 3, STEP), 0);
  ps_cov_answer(&c, 11, 13, 5.0);
  cr_assert(!ps_cov_due(&c, 12, &lo));
  cr_assert(ps_cov_due(&c, 13, &lo));
  cr_assert_eq(lo, 11);
  ps_cov_observe(&c, 12, 100); /* not its window: nothing */
  cr_assert_eq(c.scored, 0);
  ps_cov_answer(&c, 11, 13, 7.0); /* answered again in the same step: the last answer counts */
  ps_cov_observe(&c, 13, 6.0);
  cr_assert_eq(c.scored, 1);
  cr_assert_eq(c.misses, 0);
  cr_assert(!ps_cov_due(&c, 13, &lo), "scored once");
  ps_cov_observe(&c, 13, 100);
  cr_assert_eq(c.scored, 1);
  ps_cov_answer(&c, 12, 14, 5.0);
  ps_cov_observe(&c, 14, NAN);
  cr_assert_eq(c.scored, 1, "every step missing: not scored");
  cr_assert(!ps_cov_due(&c, 14, &lo));
  /* A peak equal to the answer up to the history's float rounding is covered. */
  ps_cov_answer(&c, 13, 15, 41.0 / 60);
  ps_cov_observe(&c, 15, (double)(float)(41.0 / 60));
  cr_assert_eq(c.misses, 0);
  ps_cov_answer(&c, 14, 16, 1.0);
  ps_cov_observe(&c, 16, 1.001);
  cr_assert_eq(c.misses, 1);
  ps_cov_forget(&c);
  ps_cov_answer(&c, 15, 17, 1.0);
  ps_cov_forget(&c);
  cr_assert(!ps_cov_due(&c, 17, &lo), "a restart forgets the waiting answers");
  ps_cov_free(&c);
}

/* theta moves by rate x (miss - (1 - target)) per scored window, exactly: the identity behind the bound.
 * The k-th of the first n windows steps by PS_COVERAGE_RATE / sqrt(k) (the cold start's schedule), every
 * later one by rate: from then on theta's change is rate times the sum of the shortfalls. */
Test(coverage, theta_is_the_sum_of_the_shortfalls) {
  struct ps_coverage c;
  cr_assert_eq(ps_cov_init(&c, 0.95, 1, STEP), 0);
  cr_assert_float_eq(c.rate, PS_COVERAGE_RATE / sqrt(1.0 + PS_COVERAGE_RING_EXTRA), 1e-12);
  rng = 3;
  double sum = 0, early = 0;
  for (int64_t t = 0; t < 5000; t++) {
    ps_cov_answer(&c, t, t, 1.0);
    bool miss = unif() < 0.06;
    ps_cov_observe(&c, t, miss ? 2.0 : 0.5);
    double k = (double)(t + 1), s = (miss ? 1.0 : 0.0) - 0.05;
    if (k < (double)c.n)
      early += PS_COVERAGE_RATE / sqrt(k) * s;
    else
      sum += s;
    if (t == 0) cr_assert_float_eq(c.theta, PS_COVERAGE_RATE * s, 1e-12, "the first window: the full step");
  }
  cr_assert_float_eq(c.theta, early + c.rate * sum, 1e-9);
  cr_assert_eq(c.scored, 5000);
  ps_cov_free(&c);
}

Test(coverage, margin) {
  struct ps_coverage c;
  cr_assert_eq(ps_cov_init(&c, 0.9, 2, STEP), 0);
  c.theta = 0.5;
  cr_assert_float_eq(ps_cov_margin(&c, 2.0, 3.0), 7.5, 1e-12);
  cr_assert_float_eq(ps_cov_margin(&c, NAN, 3.0), 1.5, 1e-12, "too few errors: theta alone");
  cr_assert_eq(ps_cov_margin(&c, 2.0, 0), 0, "no size yet: no margin");
  c.theta = -4;
  cr_assert_float_eq(ps_cov_margin(&c, 2.0, 1.0), -2.0, 1e-12, "negative: the forecast alone over-covers");
  ps_cov_free(&c);
}

/* The realised coverage is the plain mean of the hits until a day of windows, then weighted over about a
 * day. */
Test(coverage, realised_is_the_mean_then_a_day) {
  struct ps_coverage c;
  cr_assert_eq(ps_cov_init(&c, 0, 1, STEP), 0);
  cr_assert_float_eq(c.span, 1440, 1e-12);
  for (int64_t t = 0; t < 300; t++) {
    ps_cov_answer(&c, t, t, 1.0);
    ps_cov_observe(&c, t, t < 100 ? 2.0 : 0.5);
  }
  cr_assert_float_eq(c.realised, 200.0 / 300, 1e-12);
  cr_assert_eq(c.theta, 0, "target 0: measured, not tuned");
  for (int64_t t = 300; t < 300 + 20 * 1440; t++) {
    ps_cov_answer(&c, t, t, 1.0);
    ps_cov_observe(&c, t, 0.5);
  }
  cr_assert_gt(c.realised, 0.999, "after 20 days of hits the first misses are forgotten");
  ps_cov_free(&c);
}

/* The catch-up term: while the realised coverage is under the target, PS_COVERAGE_CATCHUP error sizes per
 * unit of the shortfall relative to the misses allowed, at most PS_COVERAGE_CATCH_MAX; 0 when at or over
 * the target, with no target, and before 1 / (1 - target) windows were scored. It adds to the margin. */
Test(coverage, catchup_holds_the_margin_while_behind) {
  struct ps_coverage c;
  cr_assert_eq(ps_cov_init(&c, 0.95, 2, STEP), 0);
  cr_assert_eq(ps_cov_catchup(&c), 0, "nothing scored");
  for (int64_t t = 0; t < 19; t++) {
    ps_cov_answer(&c, t, t, 1.0);
    ps_cov_observe(&c, t, t < 1 ? 2.0 : 0.5); /* one miss in 19: 94.7 %, under 0.95 */
  }
  cr_assert_lt(c.realised, 0.95);
  cr_assert_eq(ps_cov_catchup(&c), 0, "19 windows: fewer than the 20 that allow one miss");
  ps_cov_answer(&c, 19, 19, 1.0);
  ps_cov_observe(&c, 19, 0.5); /* 19 of 20: the target, up to rounding */
  cr_assert_float_eq(c.realised, 0.95, 1e-12);
  cr_assert_lt(ps_cov_catchup(&c), 1e-9, "at the target: no catch-up");
  ps_cov_answer(&c, 20, 20, 1.0);
  ps_cov_observe(&c, 20, 0.5);
  cr_assert_gt(c.realised, 0.95);
  cr_assert_eq(ps_cov_catchup(&c), 0, "over the target: none");
  c.realised = 0.94; /* 1 point under 0.95: a fifth of the misses allowed more */
  cr_assert_float_eq(ps_cov_catchup(&c), PS_COVERAGE_CATCHUP * 0.01 / 0.05, 1e-9);
  double theta = c.theta;
  cr_assert_float_eq(ps_cov_margin(&c, 1.0, 2.0), (1.0 + theta + PS_COVERAGE_CATCHUP * 0.2) * 2.0, 1e-9);
  c.realised = 0.5;
  cr_assert_float_eq(ps_cov_catchup(&c), PS_COVERAGE_CATCH_MAX, 1e-12, "capped");
  c.realised = 0.99;
  cr_assert_eq(ps_cov_catchup(&c), 0, "over the target: none (the term never lowers the margin)");
  ps_cov_free(&c);
  cr_assert_eq(ps_cov_init(&c, 0, 2, STEP), 0);
  c.scored = 1000;
  c.realised = 0.1;
  cr_assert_eq(ps_cov_catchup(&c), 0, "no target");
  ps_cov_free(&c);
}

/* The cap grows with the price of a miss the target implies, target / (1 - target): 1 error size up to
 * 0.95 (the default 0.82 included), PS_COVERAGE_CATCH_PRICE x 99 = 4.95 at 0.99; below the cap the term is
 * the same at every target for the same shortfall relative to the misses allowed. */
Test(coverage, catchup_cap_follows_the_price_of_a_miss) {
  static const struct {
    double target, cap;
  } cases[] = {{0.8, 1.0}, {0.82, 1.0}, {0.9, 1.0}, {0.95, 1.0}, {0.98, 2.45}, {0.99, 4.95}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct ps_coverage c;
    cr_assert_eq(ps_cov_init(&c, cases[i].target, 2, STEP), 0);
    c.scored = 100000;
    c.realised = 0;
    cr_assert_float_eq(ps_cov_catchup(&c), cases[i].cap, 1e-9, "target %g: cap", cases[i].target);
    double allowed = 1 - cases[i].target;
    c.realised = cases[i].target - 0.25 * allowed; /* a quarter of the misses allowed more: under any cap */
    cr_assert_float_eq(ps_cov_catchup(&c), PS_COVERAGE_CATCHUP * 0.25, 1e-9, "target %g: below the cap",
                       cases[i].target);
    ps_cov_free(&c);
  }
}

/* Days of 1,440 windows (1-minute steps, h = 2, outcomes 5 windows late) whose peaks stand a half-normal
 * above the answer's basis, with `bursts` runs a day of 6 windows `height` error sizes higher (as
 * worldcup98's day 12: rises that no forecast announces). Returns the realised coverage over `days`, and
 * the worst day's; with or without the catch-up term in the margin. */
static double burst_stream(double target, int catchup, int bursts, double height, int days, double *worst) {
  struct ps_coverage c;
  size_t h = 2, delay = h + 3, n = 1440 * (size_t)days, hits = 0, all = 0, dh = 0, dn = 0;
  cr_assert_eq(ps_cov_init(&c, target, h, STEP), 0);
  double *peak = malloc((n + delay) * sizeof *peak);
  cr_assert_not_null(peak);
  rng = 7;
  int left = 0;
  *worst = 1;
  for (size_t t = 0; t < n + delay; t++) {
    if (t >= delay) {
      uint64_t before = c.misses;
      ps_cov_observe(&c, (int64_t)(t - delay) + (int64_t)h, peak[t - delay]);
      bool hit = c.misses == before;
      hits += hit;
      dh += hit;
      all++;
      if (++dn == 1440) {
        *worst = fmin(*worst, (double)dh / (double)dn);
        dh = dn = 0;
      }
    }
    if (t >= n) continue;
    double m = ps_cov_margin(&c, 1.5, 1.0) - (catchup ? 0 : ps_cov_catchup(&c));
    ps_cov_answer(&c, (int64_t)t + 1, (int64_t)(t + h), 100 + m);
    if (left == 0 && unif() < (double)bursts / 1440) left = 6;
    peak[t] = 100 + fabs(gauss()) + (left > 0 ? height : 0);
    if (left > 0) left--;
  }
  free(peak);
  ps_cov_free(&c);
  return (double)hits / (double)all;
}

/* The catch-up term against bursts of misses, at 0.99 over 30 days: eight bursts a day 2 error sizes high
 * leave the worst day 1.4 points short with theta alone (measured: 97.64 %) and within 1 point with the
 * term (98.33 %); the whole stays within 1 point either way (theta's identity is untouched: 98.96 % both).
 * Over bursts 1 to 4 sizes high, 4 or 8 a day, the term never makes the worst day worse (measured: it
 * lifts it by 0.4 to 0.7 point). */
Test(coverage, catchup_recovers_days_after_bursts) {
  double w0, w1, c0 = burst_stream(0.99, 0, 8, 2, 30, &w0), c1 = burst_stream(0.99, 1, 8, 2, 30, &w1);
  cr_assert_lt(fabs(c0 - 0.99), 0.01, "theta alone, whole: %.4f", c0);
  cr_assert_lt(fabs(c1 - 0.99), 0.01, "with the catch-up, whole: %.4f", c1);
  cr_assert_lt(w0, 0.98, "theta alone, worst day: %.4f (else this test proves nothing)", w0);
  cr_assert_gt(w1, 0.98, "with the catch-up, worst day: %.4f", w1);
  for (int bursts = 4; bursts <= 8; bursts += 4)
    for (double height = 1; height <= 4; height++) {
      burst_stream(0.99, 0, bursts, height, 30, &w0);
      burst_stream(0.99, 1, bursts, height, 30, &w1);
      cr_assert_geq(w1, w0, "%d bursts of %g: worst day %.4f with, %.4f without", bursts, height, w1, w0);
    }
}

/* ---- adversarial streams: the tuner against scores that change under it --------------------------- */

enum regime { ALTERNATING, SHIFT, GROWING };

/* A stream of window outcomes with a delay of h + 3 windows, as the engine's: the answer is
 * base + margin, the peak base + score x size; the tuner's basis is a stale quantile (of the first
 * regime) so that theta must do the work. Returns the realised coverage over the windows scored, and the
 * worst coverage over blocks of `block` windows. */
static double run_stream(enum regime rg, double target, size_t h, size_t n, size_t block, double *worst) {
  struct ps_coverage c;
  cr_assert_eq(ps_cov_init(&c, target, h, STEP), 0);
  double *peak = malloc((n + h + 8) * sizeof *peak);
  cr_assert_not_null(peak);
  rng = 11 + (uint64_t)rg;
  size_t delay = h + 3, hits = 0, all = 0, bh = 0, bn = 0;
  *worst = 1;
  for (size_t t = 0; t < n; t++) {
    /* The outcome of the window answered `delay` windows ago. */
    if (t >= delay) {
      int64_t end = (int64_t)(t - delay) + (int64_t)h, lo;
      if (ps_cov_due(&c, end, &lo)) {
        double before = (double)c.misses;
        ps_cov_observe(&c, end, peak[t - delay]);
        bool hit = (double)c.misses == before;
        hits += hit;
        bh += hit;
        all++;
        if (++bn == block) {
          *worst = fmin(*worst, (double)bh / (double)bn);
          bh = bn = 0;
        }
      }
    }
    double size = 1, shift = 0;
    if (rg == ALTERNATING) size = (t / 500) % 2 ? 6 : 1;
    if (rg == SHIFT) shift = t >= n / 3 ? 8 : 0;
    if (rg == GROWING) size = 1 + 9 * (double)t / (double)n;
    double base = 100, vol = 1; /* the engine's vol lags behind: here it never learns at all */
    double value = base + ps_cov_margin(&c, 1.28, vol);
    ps_cov_answer(&c, (int64_t)t + 1, (int64_t)(t + h), value);
    peak[t] = base + shift + size * fabs(gauss());
  }
  free(peak);
  double cov = (double)hits / (double)all;
  ps_cov_free(&c);
  return cov;
}

/* Regimes alternating every 500 windows between errors 6 times apart, a sudden shift of 8 error sizes,
 * errors growing tenfold, each against a basis that never adapts (theta alone must follow): over 30,000
 * windows the realised coverage is within 1 point of the target (measured: 0.3 to 0.7), and within 1.5
 * points over each third (measured: at most 1.2, in the first, which includes theta's climb from 0). The
 * bound behind it: theta's swing over a stretch / (rate x its windows); growing errors keep theta
 * climbing, hence their larger shortfall at 0.99. Per 3,000 windows the alternating regimes miss by up to
 * 3.8 points at 0.99: a 6-fold jump of the errors needs about 130 misses to climb, more than the 30 the
 * target allows in such a stretch. */
Test(coverage, converges_on_adversarial_streams) {
  static const double targets[] = {0.9, 0.95, 0.99};
  for (int rg = ALTERNATING; rg <= GROWING; rg++)
    for (size_t k = 0; k < 3; k++) {
      double worst, cov = run_stream((enum regime)rg, targets[k], 2, 30000, 10000, &worst);
      cr_assert_lt(fabs(cov - targets[k]), 0.01, "regime %d target %g: realised %.4f", rg, targets[k], cov);
      cr_assert_gt(worst, targets[k] - 0.015, "regime %d target %g: worst block %.4f", rg, targets[k], worst);
    }
}

/* A long delay (h = 120, as 2 minutes at 1 s) does not make the tuner overshoot without bound: it still
 * converges, over a longer stretch. */
Test(coverage, converges_with_a_long_delay) {
  double worst, cov = run_stream(SHIFT, 0.95, 120, 60000, 60000, &worst);
  cr_assert_lt(fabs(cov - 0.95), 0.01, "realised %.4f", cov);
}

/* An adversarial cold start: the tuner's basis is 0 (as if the quantile knew nothing) while the window
 * peaks stand `off` error sizes above the forecast, so theta alone must climb from 0 to about off + 1.6
 * (at 0.9), with its outcomes h + 3 windows late. Returns the realised coverage of the first n windows. */
static double cold_stream(double target, size_t h, size_t n, double off) {
  struct ps_coverage c;
  cr_assert_eq(ps_cov_init(&c, target, h, STEP), 0);
  double *peak = malloc((n + h + 8) * sizeof *peak);
  cr_assert_not_null(peak);
  rng = 5;
  size_t delay = h + 3;
  for (size_t t = 0; t < n + delay; t++) {
    if (t >= delay) ps_cov_observe(&c, (int64_t)(t - delay) + (int64_t)h, peak[t - delay]);
    if (t >= n) continue;
    ps_cov_answer(&c, (int64_t)t + 1, (int64_t)(t + h), 100 + ps_cov_margin(&c, 0, 1));
    peak[t] = 100 + off + fabs(gauss());
  }
  cr_assert_eq(c.scored, n);
  double cov = 1 - (double)c.misses / (double)c.scored;
  free(peak);
  ps_cov_free(&c);
  return cov;
}

/* The cold start's schedule (a step of PS_COVERAGE_RATE / sqrt(k) for the k-th of the first h + 4
 * outcomes): at h = 120 (2 minutes at 1 s), with peaks 1 error size above a basis of 0 (theta must climb
 * to about 2.6 at 0.9), the first 4,000 windows (about 30 delays) are covered within 1 point of 0.9 and
 * 0.95 (measured: 0.50 and 0.63 point short; with the delay's constant step from the first outcome 2.9
 * and 3.2); with peaks 2 sizes above, the first 8,000 are (0.70 and 0.77; constant step: 1.9 and 2.1).
 * The first h + 3 answers are made before any outcome is known and all miss (3 points of 4,000 windows):
 * the bound is what the tuner makes up for them in the windows after. */
Test(coverage, cold_start_reaches_the_target) {
  static const double targets[] = {0.9, 0.95};
  for (size_t k = 0; k < 2; k++) {
    double near = cold_stream(targets[k], 120, 4000, 1), far = cold_stream(targets[k], 120, 8000, 2);
    cr_assert_lt(fabs(near - targets[k]), 0.01, "target %g, peaks 1 above: %.4f", targets[k], near);
    cr_assert_lt(fabs(far - targets[k]), 0.01, "target %g, peaks 2 above: %.4f", targets[k], far);
  }
}

/* ---- through the engine -------------------------------------------------------------------------- */

static struct ps_engine *mk(double target, double quantile, int64_t look, size_t cap) {
  struct ps_engine_config c = {.model = PS_MODEL_AUTO,
                               .step_ms = STEP,
                               .period_ms = 60 * STEP,
                               .lookahead_ms = look,
                               .capacity = cap,
                               .quantile = quantile,
                               .target_coverage = target};
  struct ps_engine *e = NULL;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  return e;
}

Test(coverage, engine_checks_the_target) {
  struct ps_engine_config c = {
      .model = PS_MODEL_AUTO, .step_ms = STEP, .lookahead_ms = STEP, .capacity = 100};
  struct ps_engine *e = NULL;
  c.target_coverage = 1;
  cr_assert_eq(ps_engine_new(&c, &e), UV_EINVAL);
  c.target_coverage = -0.1;
  cr_assert_eq(ps_engine_new(&c, &e), UV_EINVAL);
  c.target_coverage = 0.5;
  cr_assert_eq(ps_engine_new(&c, &e), 0);
  ps_engine_free(e);
}

/* A series of a period of 60 steps; by `rg`: noise regimes alternating every 400 steps (4 times apart), a
 * level shift of +150% a third of the way, noise growing fivefold. */
static double series(enum regime rg, size_t i, size_t n) {
  double phase = (double)(i % 60) / 60, level = 100 + 60 * sin(2 * M_PI * phase), noise = 5;
  if (rg == ALTERNATING) noise = (i / 400) % 2 ? 20 : 5;
  if (rg == SHIFT && i >= n / 3) level *= 2.5;
  if (rg == GROWING) noise = 5 * (1 + 4 * (double)i / (double)n);
  return fmax(0, level + noise * gauss());
}

/* What the engine answered at each step against the actual peak of its window (rows i+1..i+h): the
 * realised coverage of the answers from `from` to `to` (excluded; 0: all whose window is in the series),
 * counted here; *engine_cov the engine's own figure at the end. */
static double replay_to(struct ps_engine *e, enum regime rg, size_t n, size_t h, size_t from, size_t to,
                        double *engine_cov) {
  double *y = malloc(n * sizeof *y), *v = malloc(n * sizeof *v);
  cr_assert(y != NULL && v != NULL);
  rng = 21 + (uint64_t)rg;
  for (size_t i = 0; i < n; i++) y[i] = series(rg, i, n);
  for (size_t i = 0; i < n; i++) {
    struct ps_engine_result r;
    cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, y[i]), 0);
    cr_assert_eq(ps_engine_forecast(e, (int64_t)i * STEP, &r), 0);
    v[i] = r.value;
    *engine_cov = r.coverage;
  }
  size_t hits = 0, all = 0;
  for (size_t i = from; i + h < n && (to == 0 || i < to); i++) {
    double peak = -INFINITY;
    for (size_t k = 1; k <= h; k++) peak = fmax(peak, (float)y[i + k]);
    hits += !(peak > v[i] + fabs(v[i]) * PS_COVERAGE_TIE);
    all++;
  }
  free(y);
  free(v);
  return (double)hits / (double)all;
}

static double replay(struct ps_engine *e, enum regime rg, size_t n, size_t h, size_t from,
                     double *engine_cov) {
  return replay_to(e, rg, n, h, from, 0, engine_cov);
}

/* The engine's realised coverage is that of its own answers, each scored once its window's last step is
 * learned (lookahead + PS_ENGINE_REVISABLE + 1 steps later): the plain mean before a day of windows,
 * exactly what counting them here gives over the windows ended and learned. */
Test(coverage, engine_scores_its_own_answers) {
  size_t n = 1000, h = 2;
  struct ps_engine *e = mk(0.9, 0, (int64_t)h * STEP, 2000);
  /* After the put of step n - 1 the engine has learned up to n - 1 - 3 = n - 4: the windows of answers
   * 0 .. n - 4 - h. */
  double engine_cov, own = replay_to(e, SHIFT, n, h, 0, n - 3 - h, &engine_cov);
  cr_assert_float_eq(engine_cov, own, 1e-12, "engine %.6f, counted %.6f", engine_cov, own);
  ps_engine_free(e);
  e = mk(0.9, 0, (int64_t)h * STEP, 2000);
  double not_yet = replay_to(e, SHIFT, n, h, 0, n - 2 - h, &engine_cov);
  cr_assert_neq(own, not_yet, "one more answer counted: a different figure (else this test proves nothing)");
  ps_engine_free(e);
}

/* Without a target the engine still measures its coverage, and the quantile sets the margin; with one,
 * the quantile is not used. */
Test(coverage, engine_target_overrides_quantile) {
  struct ps_engine *a = mk(0.8, 0.99, 2 * STEP, 2000), *b = mk(0.8, 0.5, 2 * STEP, 2000);
  double ca, cb;
  double ra = replay(a, ALTERNATING, 800, 2, 0, &ca), rb = replay(b, ALTERNATING, 800, 2, 0, &cb);
  cr_assert_eq(ra, rb);
  cr_assert_eq(ca, cb);
  ps_engine_free(a);
  ps_engine_free(b);
  struct ps_engine *q = mk(0, 0.9, 2 * STEP, 2000);
  double cq;
  replay(q, ALTERNATING, 800, 2, 0, &cq);
  cr_assert(cq > 0 && cq <= 1, "measured without a target: %g", cq);
  ps_engine_free(q);
}

/* The adversarial series through the whole engine (model auto, a period of 60 steps, lookahead 2 steps):
 * over 12,000 steps the realised coverage is within 1 point of each target, and within 1.5 points over
 * the second half (the engine's basis, its errors' quantile and size, adapts; theta corrects the rest). */
Test(coverage, engine_converges_on_adversarial_series) {
  static const double targets[] = {0.9, 0.95, 0.99};
  size_t n = 12000;
  for (int rg = ALTERNATING; rg <= GROWING; rg++)
    for (size_t k = 0; k < 3; k++) {
      struct ps_engine *e = mk(targets[k], 0, 2 * STEP, 500);
      double ec, cov = replay(e, (enum regime)rg, n, 2, 0, &ec);
      ps_engine_free(e);
      e = mk(targets[k], 0, 2 * STEP, 500);
      double late = replay(e, (enum regime)rg, n, 2, n / 2, &ec);
      ps_engine_free(e);
      cr_assert_lt(fabs(cov - targets[k]), 0.01, "regime %d target %g: realised %.4f", rg, targets[k], cov);
      cr_assert_lt(fabs(late - targets[k]), 0.015, "regime %d target %g: second half %.4f", rg, targets[k],
                   late);
    }
}

/* The cold start's z: the peak of h standard normal samples is below it with probability level. */
Test(coverage, peak_z) {
  cr_assert_float_eq(ps_cov_peak_z(0.975, 1), 1.959964, 1e-5, "one sample: the normal's quantile");
  cr_assert_float_eq(ps_cov_peak_z(0.9, 2), 1.632219, 1e-5, "two: the quantile at sqrt(0.9)");
  cr_assert_float_eq(ps_cov_peak_z(0.5, 1), 0, 1e-9);
  cr_assert_gt(ps_cov_peak_z(0.9, 120), ps_cov_peak_z(0.9, 30), "a longer window peaks higher");
  cr_assert(isnan(ps_cov_peak_z(1, 2)) && isnan(ps_cov_peak_z(0, 2)) && isnan(ps_cov_peak_z(0.9, 0)));
}

/* Before PS_ENGINE_MIN_ERRORS errors are known, the basis is the load's own spread: the answer is
 * predicted + qz x vol = mean + z x sd of every value put so far (the newest, not learned yet, included),
 * z = ps_cov_peak_z(level, h); and the engine's margin is that basis (theta is still 0). */
Test(coverage, cold_basis_is_the_spread_so_far) {
  static const double y[] = {10, 14, 9, 13, 12, 8, 15};
  size_t h = 30;
  struct ps_engine *e = mk(0.9, 0, (int64_t)h * STEP, 2000);
  double sum = 0, sq = 0;
  for (size_t i = 0; i < sizeof y / sizeof y[0]; i++) {
    struct ps_engine_result r;
    cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, y[i]), 0);
    cr_assert_eq(ps_engine_forecast(e, (int64_t)i * STEP, &r), 0);
    sum += y[i];
    sq += y[i] * y[i];
    double n = (double)(i + 1), qz, vol;
    ps_engine_coverage_basis(e, 0.95, &qz, &vol);
    if (i == 0) {
      cr_assert(isnan(qz), "one value: no spread yet");
      continue;
    }
    double mean = sum / n, sd = sqrt((sq - n * mean * mean) / (n - 1));
    cr_assert_float_eq(r.predicted + qz * vol, mean + ps_cov_peak_z(0.95, h) * sd, 1e-6, "row %zu", i);
    cr_assert_float_eq(r.margin, mean + ps_cov_peak_z(0.9, h) * sd - r.predicted, 1e-6, "row %zu", i);
    cr_assert_float_eq(r.value, fmax(y[i], mean + ps_cov_peak_z(0.9, h) * sd), 1e-6, "row %zu", i);
  }
  ps_engine_free(e);
}

/* An adversarial cold start through the engine: noise around a level (sd 10), a lookahead of 30 steps,
 * 40 series: the answers made before any error is known (rows 0 to h + 5) cover their window's peak in
 * at least 75 % of the windows at a target of 0.9 (measured: 0.795, short of 0.9 because the spread of
 * the first few values underestimates the load's: the first answer knows one value and has no margin).
 * Without the cold basis those answers are the current value, below the peak of 30 noisy steps nearly
 * always (measured: 0.04). */
Test(coverage, cold_start_covers_before_errors) {
  size_t h = 30, n = 2 * h + 20, hits = 0, all = 0;
  double y[2 * 30 + 20], v[2 * 30 + 20];
  rng = 77;
  for (int s = 0; s < 40; s++) {
    struct ps_engine *e = mk(0.9, 0, (int64_t)h * STEP, 2000);
    for (size_t i = 0; i < n; i++) y[i] = 100 + 10 * gauss();
    for (size_t i = 0; i < n; i++) {
      struct ps_engine_result r;
      cr_assert_eq(ps_engine_put(e, (int64_t)i * STEP, y[i]), 0);
      cr_assert_eq(ps_engine_forecast(e, (int64_t)i * STEP, &r), 0);
      v[i] = r.value;
    }
    for (size_t i = 0; i <= h + 5; i++) {
      double peak = -INFINITY;
      for (size_t k = 1; k <= h; k++) peak = fmax(peak, (float)y[i + k]);
      hits += !(peak > v[i] + fabs(v[i]) * PS_COVERAGE_TIE);
      all++;
    }
    ps_engine_free(e);
  }
  double cov = (double)hits / (double)all;
  cr_assert_gt(cov, 0.75, "cold windows covered: %.4f", cov);
}

/* The tuner's ring is per target, not per sample: a week of minutes stays under the engine's budget of
 * 8.5 bytes per stored sample. */
Test(coverage, engine_memory) {
  struct ps_engine *e = mk(0.99, 0, 2 * STEP, 10081);
  cr_assert_lt((double)ps_engine_memory(e) / 10081, 8.5);
  ps_engine_free(e);
}
