#include <criterion/criterion.h>
#include <math.h>
#include <uv.h>

#include "forecast/forecast.h"

#define STEP   15000
#define PERIOD (12 * STEP)

static struct ps_history h;

static void setup(void) { cr_assert_eq(ps_history_init(&h, 48, STEP), 0); }
static void teardown(void) { ps_history_free(&h); }

TestSuite(forecast, .init = setup, .fini = teardown);

/* A sawtooth of period 12 steps: 0, 10, 20, ..., 110, 0, 10, ... */
static double saw(int64_t i) { return (double)(i % 12) * 10; }

static void fill_saw(int64_t upto) {
  for (int64_t i = 0; i <= upto; i++) cr_assert_eq(ps_history_put(&h, i * STEP, saw(i)), 0);
}

Test(forecast, model_parse_and_name) {
  enum ps_model m;
  cr_assert_eq(ps_model_parse("seasonal", &m), 0);
  cr_assert_eq(m, PS_MODEL_SEASONAL);
  cr_assert_eq(ps_model_parse("last", &m), 0);
  cr_assert_eq(m, PS_MODEL_LAST);
  cr_assert_eq(ps_model_parse("Seasonal", &m), UV_EINVAL);
  cr_assert_eq(ps_model_parse("", &m), UV_EINVAL);
  cr_assert_eq(ps_model_parse(NULL, &m), UV_EINVAL);
  cr_assert_str_eq(ps_model_name(PS_MODEL_SEASONAL), "seasonal");
  cr_assert_str_eq(ps_model_name(PS_MODEL_LAST), "last");
}

Test(forecast, empty_history_is_enoent) {
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 3 * STEP};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 0, &f), UV_ENOENT);
  ps_history_put(&h, 0, NAN);
  cr_assert_eq(ps_forecast_run(&h, &p, 0, &f), UV_ENOENT);
}

Test(forecast, bad_params_are_einval) {
  ps_history_put(&h, 0, 1);
  struct ps_forecast f;
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, 0, STEP};
  cr_assert_eq(ps_forecast_run(&h, &p, 0, &f), UV_EINVAL);
  p = (struct ps_forecast_params){PS_MODEL_LAST, 0, -1};
  cr_assert_eq(ps_forecast_run(&h, &p, 0, &f), UV_EINVAL);
}

/* For every position in the season: the forecast over 3 steps is the max of the sawtooth one period
 * before each of the 3 window steps, and the answer is max(current, that). */
Test(forecast, sawtooth_lookahead_three_steps) {
  fill_saw(47);
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 3 * STEP};
  for (int64_t n = 24; n <= 47; n++) {
    /* Rebuild the history up to n so that "now" is the newest point. */
    ps_history_free(&h);
    ps_history_init(&h, 48, STEP);
    fill_saw(n);
    int64_t now = n * STEP + 1234; /* mid-step: the window is steps n+1 .. n+3 */
    struct ps_forecast f;
    cr_assert_eq(ps_forecast_run(&h, &p, now, &f), 0);
    double want = -1;
    for (int64_t k = n + 1; k <= n + 3; k++) want = fmax(want, saw(k - 12));
    cr_assert_eq(f.current, saw(n));
    cr_assert_eq(f.current_ms, n * STEP);
    cr_assert_eq(f.predicted, want, "n=%lld predicted=%g want=%g", (long long)n, f.predicted, want);
    cr_assert_eq(f.value, fmax(want, saw(n)));
    cr_assert_eq(f.seasonal_misses, 0);
  }
}

Test(forecast, window_ends_on_a_step_boundary_inclusive) {
  fill_saw(30);
  /* now exactly at step 30: window (30, 33] -> steps 31, 32, 33 -> refs 19, 20, 21 -> 70, 80, 90 */
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 3 * STEP};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 30 * STEP, &f), 0);
  cr_assert_eq(f.predicted, 90);
  /* now one ms before step 31: window (30.99, 33.99] -> steps 31..33 as well */
  cr_assert_eq(ps_forecast_run(&h, &p, 31 * STEP - 1, &f), 0);
  cr_assert_eq(f.predicted, 90);
}

Test(forecast, short_lookahead_uses_one_step) {
  fill_saw(30); /* current = saw(30) = 60 */
  struct ps_forecast f;
  /* lookahead shorter than a step but crossing a boundary: the window is step 31 (ref 19 -> 70) */
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, STEP / 2};
  cr_assert_eq(ps_forecast_run(&h, &p, 30 * STEP + STEP - 10, &f), 0);
  cr_assert_eq(f.predicted, 70);
  /* not crossing one: the step containing now + lookahead, i.e. step 30 (ref 18 -> 60) */
  cr_assert_eq(ps_forecast_run(&h, &p, 30 * STEP + 10, &f), 0);
  cr_assert_eq(f.predicted, 60);
  cr_assert_eq(f.seasonal_misses, 0);
}

Test(forecast, lookahead_zero) {
  fill_saw(29); /* current = saw(29) = 50; step 29 - 12 = 17 -> 50 */
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 0};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 29 * STEP + 5, &f), 0);
  cr_assert_eq(f.predicted, 50);
  cr_assert_eq(f.value, 50);
  /* exactly on the boundary: the step containing now is step 29 as well */
  cr_assert_eq(ps_forecast_run(&h, &p, 29 * STEP, &f), 0);
  cr_assert_eq(f.predicted, 50);
}

Test(forecast, missing_references_fall_back_to_current) {
  /* Only the last 3 steps are known: every reference one period back is missing. */
  ps_history_put(&h, 40 * STEP, 5);
  ps_history_put(&h, 41 * STEP, 6);
  ps_history_put(&h, 42 * STEP, 7);
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 4 * STEP};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 42 * STEP, &f), 0);
  cr_assert_eq(f.current, 7);
  cr_assert_eq(f.predicted, 7);
  cr_assert_eq(f.value, 7);
  cr_assert_eq(f.seasonal_misses, 4);
}

Test(forecast, nan_reference_is_a_miss) {
  fill_saw(30);
  ps_history_put(&h, 20 * STEP, NAN); /* ref of step 32 */
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 3 * STEP};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 30 * STEP, &f), 0);
  cr_assert_eq(f.seasonal_misses, 1);
  cr_assert_eq(f.predicted, 90); /* steps 31, 33 -> 70, 90; 32 -> current 60 */
  ps_history_put(&h, 21 * STEP, NAN);
  ps_history_put(&h, 19 * STEP, NAN);
  cr_assert_eq(ps_forecast_run(&h, &p, 30 * STEP, &f), 0);
  cr_assert_eq(f.seasonal_misses, 3);
  cr_assert_eq(f.predicted, 60);
}

Test(forecast, lookahead_beyond_period_counts_future_refs_as_misses) {
  fill_saw(30);
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 20 * STEP};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 30 * STEP, &f), 0);
  /* window 31..50, refs 19..38: 19..30 known (12), 31..38 in the future (8 misses) */
  cr_assert_eq(f.seasonal_misses, 8);
  cr_assert_eq(f.predicted, 110);
}

Test(forecast, huge_lookahead_is_bounded_by_the_ring) {
  fill_saw(47);
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, INT64_MAX / 2};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 47 * STEP, &f), 0); /* returns at once: no loop over the window */
  cr_assert_eq(f.predicted, 110);
  cr_assert_eq(f.seasonal_misses, INT_MAX);
}

Test(forecast, last_model) {
  fill_saw(30);
  ps_history_put(&h, 31 * STEP, NAN); /* the newest slot is a gap: current is the latest observation */
  struct ps_forecast_params p = {PS_MODEL_LAST, 0, 10 * STEP};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 31 * STEP, &f), 0);
  cr_assert_eq(f.current, 60);
  cr_assert_eq(f.current_ms, 30 * STEP);
  cr_assert_eq(f.predicted, 60);
  cr_assert_eq(f.value, 60);
  cr_assert_eq(f.seasonal_misses, 0);
}

Test(forecast, negative_values_clamped) {
  for (int i = 0; i < 30; i++) ps_history_put(&h, (int64_t)i * STEP, -5.0 - i);
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 3 * STEP};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 29 * STEP, &f), 0);
  cr_assert_eq(f.current, -34);
  cr_assert_eq(f.value, 0);
  cr_assert(!signbit(f.value));
  p.model = PS_MODEL_LAST;
  cr_assert_eq(ps_forecast_run(&h, &p, 29 * STEP, &f), 0);
  cr_assert_eq(f.value, 0);
}

Test(forecast, peak_ahead_raises_value_above_current) {
  /* Flat 10 with one spike of 100 a period ago, two steps after now. */
  for (int i = 0; i < 40; i++) ps_history_put(&h, (int64_t)i * STEP, 10);
  ps_history_put(&h, (39 + 2 - 12) * STEP, 100);
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 3 * STEP};
  struct ps_forecast f;
  cr_assert_eq(ps_forecast_run(&h, &p, 39 * STEP, &f), 0);
  cr_assert_eq(f.current, 10);
  cr_assert_eq(f.value, 100);
  p.lookahead_ms = STEP; /* the spike is 2 steps ahead: out of a 1-step window */
  cr_assert_eq(ps_forecast_run(&h, &p, 39 * STEP, &f), 0);
  cr_assert_eq(f.value, 10);
}

Test(forecast, never_nan) {
  for (int i = 0; i < 48; i++) ps_history_put(&h, (int64_t)i * STEP, (i % 3) ? NAN : 1e300);
  ps_history_put(&h, 48 * STEP, INFINITY);
  struct ps_forecast_params p = {PS_MODEL_SEASONAL, PERIOD, 12 * STEP};
  struct ps_forecast f;
  for (int64_t now = 40 * STEP; now < 60 * STEP; now += 7000) {
    cr_assert_eq(ps_forecast_run(&h, &p, now, &f), 0);
    cr_assert(isfinite(f.value) && f.value >= 0);
    cr_assert(!isnan(f.predicted));
  }
}
