/* src/backtest/replay.c: the walk-forward replay on small synthetic traces whose outcomes are worked out
 * by hand. The command around it is tested in test_backtest.c, its flags in test_backtest_flags.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "backtest/run.h"

#define STEP 60000

static struct ps_bt_run r;
static char err[1024];
static bool usage_err;

static void setup(void) {
  memset(&r, 0, sizeof r);
  r.opt.trace_path = "synthetic";
  r.opt.lookahead_ms = 120000;
  r.opt.startup_ms = 60000;
  r.opt.model = PS_MODEL_LAST;
}

static void teardown(void) { ps_bt_run_free(&r); }

TestSuite(replay, .init = setup, .fini = teardown);

/* rows of requests per 60 s interval (rate = v / 60). */
static void set_trace(size_t n, double (*f)(size_t)) {
  r.trace.t0_ms = 1000 * STEP;
  r.trace.step_ms = STEP;
  r.trace.n = n;
  r.trace.v = malloc(n * sizeof *r.trace.v);
  cr_assert_not_null(r.trace.v);
  for (size_t i = 0; i < n; i++) r.trace.v[i] = f(i);
}

static double constant(size_t i) { return 600; }                     /* 10/s */
static double step_up(size_t i) { return i < 10 ? 600 : 1200; }      /* 10/s, then 20/s */
static double square(size_t i) { return (i % 10) < 5 ? 600 : 1800; } /* 10/s and 30/s, period 10 rows */

Test(replay, constant_demand) {
  set_trace(20, constant);
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  cr_assert_float_eq(r.threshold, 2, 1e-12, "median 10/s / 5");
  cr_assert_eq(r.horizon_steps, 2);
  for (int w = 0; w < PS_BT_COUNT; w++) {
    const struct ps_bt_result *x = &r.res[w];
    cr_assert_eq(x->score.n, 18, "%s", x->name);
    cr_assert_float_eq(x->score.mae, 0, 1e-9, "%s", x->name);
    cr_assert(isnan(x->score.mase), "%s: the naive forecast is perfect", x->name);
    cr_assert_eq(x->under_pod_seconds, 0, "%s", x->name);
    cr_assert_eq(x->events, 0, "%s", x->name);
    cr_assert_float_eq(x->pod_seconds, 5.0 * 1200, 1e-6, "%s: 5 pods for 20 minutes", x->name);
    cr_assert_eq(r.replicas[w][19], 5);
  }
}

/* Reactive: 5 pods (threshold 2) until the sync at 600 s reads 20/s and asks for 10, ready at 660 s: 5 pods
 * short for 60 s. Forecast errors: rows 8 and 9 forecast 10 where the next two rows peak at 20. */
Test(replay, step_up_reactive) {
  set_trace(20, step_up);
  r.opt.threshold = 2;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  cr_assert(r.threshold_given);
  const struct ps_bt_result *x = &r.res[PS_BT_REACTIVE];
  cr_assert_float_eq(x->under_pod_seconds, 5.0 * 60, 1e-6);
  cr_assert_float_eq(x->under_fraction, 60.0 / 1200, 1e-12);
  cr_assert_float_eq(x->pod_seconds, 5.0 * 600 + 10.0 * 600, 1e-6);
  cr_assert_eq(x->events, 1);
  cr_assert_eq(x->score.n, 18);
  cr_assert_float_eq(x->score.mae, 20.0 / 18, 1e-9);
  cr_assert_float_eq(x->score.rmse, sqrt(200.0 / 18), 1e-9);
  cr_assert_float_eq(x->score.mase, 1, 1e-12);
  cr_assert_eq(r.replicas[PS_BT_REACTIVE][9], 5);
  cr_assert_eq(r.replicas[PS_BT_REACTIVE][10], 10);
  cr_assert_eq(r.min_ready[PS_BT_REACTIVE][10], 5);
  cr_assert_eq(r.min_ready[PS_BT_REACTIVE][11], 10);
  /* model last answers the current value: the same replay */
  cr_assert_float_eq(r.res[PS_BT_MODEL].under_pod_seconds, x->under_pod_seconds, 1e-6);
  cr_assert_eq(r.res[PS_BT_MODEL].answered[PS_MODEL_LAST], 20);
}

/* A square wave with a known period: the seasonal naive forecast sees each rise one period ahead, so
 * once it has history it scales before the rise and beats the last-value forecast. */
Test(replay, seasonal_beats_reactive_on_a_square_wave) {
  set_trace(80, square);
  r.opt.threshold = 2;
  r.opt.period_ms = 10 * STEP;
  r.opt.model = PS_MODEL_SEASONAL;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  const struct ps_bt_result *re = &r.res[PS_BT_REACTIVE], *s = &r.res[PS_BT_SEED];
  cr_assert_gt(re->under_pod_seconds, 0);
  cr_assert_lt(s->under_pod_seconds, re->under_pod_seconds / 2, "seed %g reactive %g", s->under_pod_seconds,
               re->under_pod_seconds);
  cr_assert_lt(s->score.mase, 1);
  cr_assert_eq(s->period_ms, 10 * STEP);
  cr_assert_eq(r.history_ms, 3600000, "max(3 x period, 1h)");
  cr_assert_eq(r.capacity, 61);
}

Test(replay, lookahead_shorter_than_the_interval) {
  set_trace(20, step_up);
  r.opt.lookahead_ms = 30000;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.horizon_steps, 0);
  cr_assert_eq(r.res[PS_BT_REACTIVE].score.n, 20);
  cr_assert_float_eq(r.res[PS_BT_REACTIVE].score.mae, 0, 1e-12);
  cr_assert(isnan(r.res[PS_BT_REACTIVE].score.mase));
}

Test(replay, too_short) {
  set_trace(11, constant);
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), UV_EINVAL);
  cr_assert(!usage_err);
  cr_assert(strstr(err, "11 rows") != NULL && strstr(err, "at least 12") != NULL, "%s", err);
}

Test(replay, period_must_be_a_multiple_of_the_interval) {
  set_trace(20, constant);
  r.opt.period_ms = 90000;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), UV_EINVAL);
  cr_assert(usage_err);
  cr_assert(strstr(err, "1m30s") != NULL, "%s", err);
}

Test(replay, all_zero_demand_needs_a_threshold) {
  set_trace(20, constant);
  for (size_t i = 0; i < 20; i++) r.trace.v[i] = 0;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), UV_EINVAL);
  cr_assert(strstr(err, "--threshold") != NULL, "%s", err);
}

Test(replay, auto_period_history_is_the_servers_default) {
  set_trace(20, constant);
  r.opt.model = PS_MODEL_AUTO;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.history_ms, 8LL * 86400 * 1000);
  cr_assert_eq(r.capacity, 8 * 1440 + 1);
}

/* The checks against the interval are the trigger's, in its words. */
Test(replay, period_and_history_are_checked_as_the_trigger_checks_them) {
  set_trace(20, constant);
  r.opt.period_ms = 150000;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "--period: \"2m30s\" is not a multiple of step (1m)");
  ps_bt_run_free(&r);
  setup();
  set_trace(20, constant);
  r.opt.period_ms = 60000;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "--period: \"1m\" must be at least 2 steps (step is 1m)");
  ps_bt_run_free(&r);
  setup();
  set_trace(20, constant);
  r.opt.period_ms = 86400000;
  r.opt.history_ms = 3600000;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), UV_EINVAL);
  cr_assert(usage_err);
  cr_assert_str_eq(err, "--history: \"1h\" is shorter than period (1d)");
}
