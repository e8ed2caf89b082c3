/* targets.c against a real Prometheus: first load, the seasonal answer on an exactly known series,
 * errors as Prometheus reports them, staleness and recovery, watchers, eviction, limits, and long histories
 * fed to the engine a slice per loop turn. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "config.h"
#include "engine.h"
#include "http_client.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "prom_fixture.h"
#include "targets.h"

#include "targets_fixture.h"

TestSuite(targets, .init = targets_fixture_setup, .fini = targets_fixture_teardown, .timeout = 90);

static bool run_until(bool (*cond)(void *), void *arg, uint64_t ms) {
  return ps_test_run_until(&loop, cond, arg, ms);
}

/* Gets a target and waits for its first load; returns the waiter's result. */
static int load(const struct ps_kv *md, size_t n, struct ps_target **t) {
  char err[512] = "";
  int r = ps_targets_get_or_create(targets, "ns", "app", md, n, t, err, sizeof err);
  cr_assert_eq(r, 0, "get: %s", err);
  struct ps_target_reading rd;
  cr_assert_eq(ps_target_read(*t, &rd, err, sizeof err), 1, "a new target is loading");
  struct waited x = {.w.cb = waited_cb};
  ps_target_wait(*t, &x.w);
  cr_assert(run_until(waited_done, &x, 15000), "first load did not end");
  return x.err;
}

/* Loads a target that must load, and gives its first reading. */
static struct ps_target *load_read(const struct ps_kv *md, size_t n, struct ps_target_reading *rd) {
  struct ps_target *t;
  cr_assert_eq(load(md, n, &t), 0);
  char err[256];
  cr_assert_eq(ps_target_read(t, rd, err, sizeof err), 0, "%s", err);
  return t;
}

Test(targets, last_model_returns_current) {
  struct ps_kv md[] = {{"query", "vector(7)"}, {"threshold", "2"}, {"model", "last"}, {"step", "1s"}};
  struct ps_target_reading rd;
  load_read(md, 4, &rd);
  cr_assert_float_eq(rd.observed, 7, 1e-12);
  cr_assert_float_eq(rd.value, 7, 1e-12);
  cr_assert(rd.active);
  cr_assert_eq(ps_targets_count(targets), 1);
  stop_targets();
  PS_LOOP_END(&loop);
}

#define LABELS "namespace=\"ns\",name=\"app\",metric=\"prescale\""

/* time() % 180 is a sawtooth with a 180 s period, so the seasonal forecast is exact: each step t of the
 * window (now, now + 30 s] forecasts (t - 180) % 180 == t % 180. The max over that window: */
static double sawtooth_max(int64_t end_s) {
  double want = 0;
  for (int k = 1; k <= 6; k++) want = fmax(want, (double)((end_s + 5 * k) % 180));
  return want;
}

Test(targets, seasonal_matches_known_series_with_headroom) {
  struct ps_kv md[] = {{"query", "vector(time() % 180)"},
                       {"threshold", "10"},
                       {"step", "5s"},
                       {"period", "3m"},
                       {"lookahead", "30s"},
                       {"headroom", "0.5"},
                       {"model", "seasonal"}};
  struct ps_target_reading rd;
  load_read(md, 7, &rd);
  int64_t end = rd.observed_ms / 1000;
  cr_assert_eq(rd.observed_ms % 5000, 0, "observations sit on step boundaries");
  cr_assert_float_eq(rd.observed, (double)(end % 180), 1e-9);
  double want = fmax(rd.observed, sawtooth_max(end));
  cr_assert_float_eq(rd.value, want * 1.5, 1e-9, "value %g, want %g", rd.value, want * 1.5);
  cr_assert_float_eq(ps_metrics_get("prescale_target_value", LABELS), rd.value, 1e-9);
  cr_assert_eq(ps_metrics_get("prescale_target_model_info", LABELS ",model=\"seasonal\""), 1);
  cr_assert_eq(ps_metrics_get("prescale_target_period_seconds", LABELS), 180);
  cr_assert_eq(ps_metrics_get("prescale_target_shadow", LABELS), 0);
  cr_assert_eq(ps_metrics_get("prescale_target_threshold", LABELS), 10, "the trigger's threshold");
  cr_assert_eq(ps_metrics_get("prescale_target_quantile_margin", LABELS), 0);
  cr_assert_eq(ps_metrics_get("prescale_target_fallback", LABELS), 0, "a given period, history for 20 of it");
  stop_targets();
  PS_LOOP_END(&loop);
}

/* A series without a season under period auto: the non-seasonal models answer, and /metrics says the
 * forecast falls back (the log line says why). */
Test(targets, fallback_is_exported) {
  struct ps_kv md[] = {{"query", "vector(7)"}, {"threshold", "10"}, {"step", "5s"}, {"history", "1h"}};
  struct ps_target_reading rd;
  load_read(md, 4, &rd);
  cr_assert_float_eq(rd.value, 7, 1e-9);
  cr_assert_eq(ps_metrics_get("prescale_target_period_seconds", LABELS), 0);
  cr_assert_eq(ps_metrics_get("prescale_target_fallback", LABELS), 1);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* Shadow mode: KEDA gets the observation itself (no forecast, no headroom), while /metrics carries the
 * forecast, exactly the one normal mode would have used. */
Test(targets, shadow_mode_answers_the_observation_and_exports_the_forecast) {
  struct ps_kv md[] = {{"query", "vector(time() % 180)"},
                       {"threshold", "10"},
                       {"step", "5s"},
                       {"period", "3m"},
                       {"lookahead", "30s"},
                       {"headroom", "0.5"},
                       {"model", "seasonal"},
                       {"mode", "shadow"}};
  struct ps_target_reading rd;
  load_read(md, 8, &rd);
  int64_t end = rd.observed_ms / 1000;
  cr_assert_float_eq(rd.observed, (double)(end % 180), 1e-9);
  cr_assert_eq(rd.value, rd.observed, "shadow answers the observation: %g vs %g", rd.value, rd.observed);
  double pred = sawtooth_max(end);
  cr_assert_float_eq(rd.predicted, pred, 1e-9);
  cr_assert_float_eq(ps_metrics_get("prescale_target_predicted", LABELS), pred, 1e-9);
  cr_assert_eq(ps_metrics_get("prescale_target_value", LABELS), rd.observed);
  cr_assert_eq(ps_metrics_get("prescale_target_shadow", LABELS), 1);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* Model auto with period auto on the sawtooth: the engine finds the 180 s season (within a step) from an
 * hour of history, says which model answers, and reports the error of the models it has scored. */
Test(targets, auto_detects_the_period_and_reports_the_model) {
  struct ps_kv md[] = {{"query", "vector(time() % 180)"},
                       {"threshold", "10"},
                       {"step", "5s"},
                       {"history", "1h"},
                       {"lookahead", "30s"}};
  struct ps_target_reading rd;
  struct ps_target *t = load_read(md, 5, &rd);
  cr_assert_eq(ps_target_config(t)->model, PS_MODEL_AUTO);
  double period = ps_metrics_get("prescale_target_period_seconds", LABELS);
  cr_assert(fabs(period - 180) <= 5, "period %g s, want 180 s", period);
  int models = 0;
  for (int m = 0; m < PS_MODEL_COUNT; m++) {
    char l[256];
    snprintf(l, sizeof l, LABELS ",model=\"%s\"", ps_model_name((enum ps_model)m));
    double v = ps_metrics_get("prescale_target_model_info", l);
    if (!isnan(v)) {
      cr_assert_eq(v, 1);
      cr_assert_neq(m, PS_MODEL_AUTO, "auto is never the answering model");
      models++;
    }
    double e = ps_metrics_get("prescale_target_model_error", l);
    cr_assert(isnan(e) || e >= 0, "%s error %g", ps_model_name((enum ps_model)m), e);
  }
  cr_assert_eq(models, 1, "exactly one model_info series");
  cr_assert(rd.value >= rd.observed);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* A quantile adds a margin >= 0 from the model's own errors: with a component the 3m season does not
 * explain (time() % 7), seasonal's errors are not 0, so the margin is positive and lands in the value. */
Test(targets, quantile_adds_the_error_margin) {
  struct ps_kv md[] = {{"query", "vector(time() % 180 + 3 * (time() % 7))"},
                       {"threshold", "10"},
                       {"step", "1s"},
                       {"period", "3m"},
                       {"model", "seasonal"},
                       {"lookahead", "10s"},
                       {"quantile", "0.9"},
                       {"headroom", "0.1"}};
  struct ps_target_reading rd;
  load_read(md, 8, &rd);
  double margin = ps_metrics_get("prescale_target_quantile_margin", LABELS);
  cr_assert_gt(margin, 0, "margin %g", margin);
  cr_assert_float_eq(rd.value, fmax(rd.observed, rd.predicted + margin) * 1.1, 1e-9,
                     "value %g obs %g pred %g", rd.value, rd.observed, rd.predicted);
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, metadata_order_does_not_matter_and_errors_name_the_key) {
  struct ps_kv a[] = {{"query", "vector(1)"}, {"threshold", "2"}, {"model", "last"}};
  struct ps_kv b[] = {{"model", "last"}, {"threshold", "2"}, {"query", "vector(1)"}};
  struct ps_target *ta, *tb;
  char err[256] = "";
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", a, 3, &ta, err, sizeof err), 0);
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", b, 3, &tb, err, sizeof err), 0);
  cr_assert_eq(ta, tb);
  struct ps_kv bad[] = {{"query", "vector(1)"}, {"threshold", "abc"}, {"model", "last"}};
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", bad, 3, &tb, err, sizeof err), UV_EINVAL);
  cr_assert(strstr(err, "threshold") && strstr(err, "abc"), "%s", err);
  cr_assert_eq(ps_targets_count(targets), 1);
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, max_targets_is_enforced) {
  cfg.max_targets = 1;
  struct ps_kv a[] = {{"query", "vector(1)"}, {"threshold", "2"}, {"model", "last"}};
  struct ps_kv b[] = {{"query", "vector(2)"}, {"threshold", "2"}, {"model", "last"}};
  struct ps_target *t;
  char err[256] = "";
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", a, 3, &t, err, sizeof err), 0);
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", b, 3, &t, err, sizeof err),
               PS_TARGETS_ERR_FULL);
  cr_assert(strstr(err, "--max-targets"), "%s", err);
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, bad_promql_is_invalid_argument_with_prometheus_text) {
  struct ps_kv md[] = {{"query", "sum(rate(x[1m]"}, {"threshold", "2"}, {"model", "last"}};
  struct ps_target *t;
  cr_assert_eq(load(md, 3, &t), UV_EINVAL);
  struct ps_target_reading rd;
  char err[512];
  cr_assert_eq(ps_target_read(t, &rd, err, sizeof err), UV_EINVAL);
  cr_assert(strstr(err, "parse error"), "Prometheus's own message expected: %s", err);
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, several_series_are_rejected) {
  struct ps_kv md[] = {{"query", "label_replace(vector(1),\"a\",\"x\",\"\",\"\") or "
                                 "label_replace(vector(2),\"a\",\"y\",\"\",\"\")"},
                       {"threshold", "2"},
                       {"model", "last"}};
  struct ps_target *t;
  cr_assert_eq(load(md, 3, &t), UV_EINVAL);
  struct ps_target_reading rd;
  char err[512];
  ps_target_read(t, &rd, err, sizeof err);
  cr_assert(strstr(err, "series"), "%s", err);
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, empty_result_depends_on_ignore_null_values) {
  struct ps_kv strict[] = {
      {"query", "vector(1) > 5"}, {"threshold", "2"}, {"model", "last"}, {"ignoreNullValues", "false"}};
  struct ps_target *t;
  cr_assert_eq(load(strict, 4, &t), PS_TARGET_ERR_EMPTY_RESULT);
  struct ps_kv lax[] = {{"query", "vector(1) > 5"}, {"threshold", "2"}, {"model", "last"}};
  cr_assert_eq(load(lax, 3, &t), 0);
  struct ps_target_reading rd;
  char err[256];
  cr_assert_eq(ps_target_read(t, &rd, err, sizeof err), 0, "%s", err);
  cr_assert_float_eq(rd.value, 0, 1e-12);
  cr_assert_not(rd.active);
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, unreachable_prometheus_is_unavailable) {
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", ps_test_free_port());
  struct ps_kv md[] = {{"query", "vector(1)"}, {"threshold", "2"}, {"model", "last"}, {"serverAddress", url}};
  struct ps_target *t;
  cr_assert_eq(load(md, 4, &t), UV_EAGAIN);
  struct ps_target_reading rd;
  char err[512];
  cr_assert_eq(ps_target_read(t, &rd, err, sizeof err), UV_EAGAIN);
  cr_assert(strstr(err, "refused"), "%s", err);
  stop_targets();
  PS_LOOP_END(&loop);
}

struct flips {
  struct ps_target_watcher w;
  int calls;
  bool last;
};
static void flips_cb(struct ps_target_watcher *w, bool active) {
  struct flips *f = (struct flips *)w;
  cr_assert_neq(active, f->last, "a watcher hears only changes");
  f->last = active;
  f->calls++;
}
static bool two_flips(void *arg) { return ((struct flips *)arg)->calls >= 2; }

Test(targets, watchers_hear_each_change_of_activity) {
  /* time() % 4 at a 1 s step is 0,1,2,3,...: active (> 1.5) half of the time. */
  /* quantile 0: without a margin the value follows the sawtooth across 1.5 */
  struct ps_kv md[] = {{"query", "vector(time() % 4)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"},
                       {"activationThreshold", "1.5"},  {"quantile", "0"}};
  struct ps_target_reading rd;
  struct ps_target *t = load_read(md, 6, &rd);
  struct flips f = {.w.cb = flips_cb, .last = rd.active};
  ps_target_watch(t, &f.w);
  cr_assert(run_until(two_flips, &f, 15000), "saw %d changes", f.calls);
  ps_target_unwatch(&f.w);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* Watchers of one target whose callback unwatches the others (a send that closes another stream of the
 * same target: h2_send.c serializes frames while the fan-out goes on). */
struct greedy {
  struct ps_target_watcher w;
  int calls;
  struct greedy *others[2];
};
static int greedy_calls;
static void greedy_cb(struct ps_target_watcher *w, bool active) {
  (void)active;
  struct greedy *g = (struct greedy *)w;
  g->calls++;
  greedy_calls++;
  for (int i = 0; i < 2; i++) ps_target_unwatch(&g->others[i]->w);
}
static bool greedy_heard(void *arg) {
  (void)arg;
  return greedy_calls > 0;
}

Test(targets, a_watcher_may_unwatch_the_others_from_its_callback) {
  struct ps_kv md[] = {{"query", "vector(time() % 4)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"},
                       {"activationThreshold", "1.5"},  {"quantile", "0"}};
  struct ps_target_reading rd;
  struct ps_target *t = load_read(md, 6, &rd);
  struct greedy g[3];
  for (int i = 0; i < 3; i++)
    g[i] = (struct greedy){.w.cb = greedy_cb, .others = {&g[(i + 1) % 3], &g[(i + 2) % 3]}};
  for (int i = 0; i < 3; i++) ps_target_watch(t, &g[i].w);
  cr_assert(run_until(greedy_heard, NULL, 15000), "no change heard");
  /* The first called took the two others out before their turn: they hear nothing, and nobody twice. */
  cr_assert_eq(greedy_calls, 1);
  for (int i = 0; i < 3; i++) {
    cr_assert_leq(g[i].calls, 1);
    ps_target_unwatch(&g[i].w);
  }
  stop_targets();
  PS_LOOP_END(&loop);
}

static bool no_targets(void *arg) { return ps_targets_count(targets) == 0; }

Test(targets, idle_targets_are_dropped) {
  cfg.target_idle_ms = 1000;
  ps_targets_close(targets); /* a registry built with the short idle time */
  cr_assert_eq(ps_targets_new(&loop, &cfg, http, &targets), 0);
  struct ps_kv md[] = {{"query", "vector(1)"}, {"threshold", "2"}, {"model", "last"}};
  struct ps_target *t;
  char err[256] = "";
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", md, 3, &t, err, sizeof err), 0, "%s", err);
  /* A watcher holds the target however long its first load takes on a busy machine (a load longer than
   * the idle time must not let a sweep drop it before the checks below); its idle time starts at the
   * unwatch. */
  struct flips f = {.w.cb = flips_cb};
  ps_target_watch(t, &f.w);
  struct ps_target_reading rd;
  cr_assert_eq(ps_target_read(t, &rd, err, sizeof err), 1, "a new target is loading");
  struct waited x = {.w.cb = waited_cb};
  ps_target_wait(t, &x.w);
  cr_assert(run_until(waited_done, &x, 15000), "first load did not end");
  cr_assert_eq(x.err, 0);
  cr_assert_eq(ps_targets_count(targets), 1);
  cr_assert_eq(ps_metrics_get("prescale_target_model_info", LABELS ",model=\"last\""), 1);
  ps_target_unwatch(&f.w);
  cr_assert(run_until(no_targets, NULL, 5000), "target not dropped");
  /* Its series go with it, the model-labelled ones too. */
  cr_assert(isnan(ps_metrics_get("prescale_target_model_info", LABELS ",model=\"last\"")));
  cr_assert(isnan(ps_metrics_get("prescale_target_value", LABELS)));
  cr_assert(isnan(ps_metrics_get("prescale_target_shadow", LABELS)));
  cr_assert(isnan(ps_metrics_get("prescale_target_threshold", LABELS)));
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, closing_fails_waiters_with_ecanceled) {
  struct ps_kv md[] = {{"query", "vector(1)"}, {"threshold", "2"}, {"model", "last"}};
  struct ps_target *t;
  char err[256];
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", md, 3, &t, err, sizeof err), 0);
  struct waited x = {.w.cb = waited_cb};
  ps_target_wait(t, &x.w);
  ps_targets_close(targets);
  targets = NULL;
  cr_assert(x.done);
  cr_assert_eq(x.err, UV_ECANCELED);
  stop_targets();
  PS_LOOP_END(&loop);
}

struct readable {
  struct ps_target *t;
  int want; /* 0 or the error expected */
};
static bool read_gives(void *arg) {
  struct readable *x = arg;
  struct ps_target_reading rd;
  char err[256];
  return ps_target_read(x->t, &rd, err, sizeof err) == x->want;
}

Test(targets, stale_then_unavailable_then_recovers) {
  cfg.stale_after_ms = 2000;
  /* The request timeout scaled: under make valgrind on a busy machine the first load took over 500 ms. */
  char timeout[32];
  snprintf(timeout, sizeof timeout, "%llums", (unsigned long long)(500 * ps_test_timeout_scale()));
  struct ps_kv md[] = {
      {"query", "vector(3)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"}, {"timeout", timeout}};
  struct ps_target *t;
  cr_assert_eq(load(md, 5, &t), 0);
  int port = prom.port;
  ps_test_prom_stop(&prom, 1);
  struct ps_target_reading rd;
  char err[256];
  cr_assert_eq(ps_target_read(t, &rd, err, sizeof err), 0, "the last value is served at first");
  struct readable x = {t, UV_EAGAIN};
  cr_assert(run_until(read_gives, &x, 10000), "never became unavailable");
  ps_target_read(t, &rd, err, sizeof err);
  cr_assert(strstr(err, "stale-after"), "%s", err);
  cr_assert_gt(ps_metrics_get("prescale_refresh_errors_total", LABELS), 0);
  cr_assert_eq(ps_test_prom_start(&prom, port, why, sizeof why), 0, "%s", why);
  x.want = 0;
  cr_assert(run_until(read_gives, &x, 15000), "did not recover");
  cr_assert_eq(ps_target_read(t, &rd, err, sizeof err), 0);
  cr_assert_float_eq(rd.value, 3, 1e-12);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* ---- long histories, fed in slices ---------------------------------------------------------------- */

/* Two hours at 1 s: 7,200 samples, several slices. */
#define LONG_HISTORY "2h"
#define LONG_SAMPLES 7200
_Static_assert(LONG_SAMPLES > 3 * PS_TARGET_LOAD_SLICE, "the long history must take several slices");
/* The largest history a target may hold (PS_MAX_HISTORY_POINTS steps of 1 s): about 50 slices, so that a
 * load is still going on when something else happens. */
#define HUGE_HISTORY "100000s"

/* A run of the loop from a target's fetch callback to the end of its load, seen from outside: a zero
 * timer armed at each turn, and the loop's turns (a check handle), while the fetch is done and the waiter not
 * yet. */
struct load_watch {
  struct waited x;
  uv_timer_t tick;
  uv_check_t turn;
  int ticks, turns;
  double max_loading; /* prescale_targets_loading seen */
};
static bool fetched(void) { return ps_metrics_get("prescale_refreshes_total", LABELS) >= 1; }
static void watch_tick_cb(uv_timer_t *h) {
  struct load_watch *lw = h->data;
  if (fetched() && !lw->x.done) lw->ticks++;
}
static void watch_turn_cb(uv_check_t *h) {
  struct load_watch *lw = h->data;
  if (fetched() && !lw->x.done) {
    lw->turns++;
    /* A timer due at once, armed at the end of this turn, runs in the next turn's timer phase: it counts
     * only if that comes before the load ends, i.e. timers run between slices. No wall clock involved (a
     * bulk slice takes microseconds, so a 1 ms timer may never come due during the load). */
    if (!uv_is_active((uv_handle_t *)&lw->tick)) uv_timer_start(&lw->tick, watch_tick_cb, 0, 0);
  }
  double l = ps_metrics_get("prescale_targets_loading", "");
  if (l > lw->max_loading) lw->max_loading = l;
}

/* Before slicing, the whole history went into the engine inside the fetch callback, and the waiter heard
 * of it in the same callback: no timer ran and the loop did not turn in between. */
Test(targets, a_long_history_loads_while_the_loop_turns) {
  struct ps_kv md[] = {{"query", "vector(time() % 180)"},
                       {"threshold", "10"},
                       {"step", "1s"},
                       {"history", LONG_HISTORY},
                       {"lookahead", "30s"}};
  struct ps_target *t;
  char err[256] = "";
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", md, 5, &t, err, sizeof err), 0, "%s", err);
  struct load_watch lw = {.x.w.cb = waited_cb};
  ps_target_wait(t, &lw.x.w);
  uv_timer_init(&loop, &lw.tick);
  uv_check_init(&loop, &lw.turn);
  lw.tick.data = lw.turn.data = &lw;
  uv_check_start(&lw.turn, watch_turn_cb);
  bool ended = run_until(waited_done, &lw.x, 15000);
  uv_close((uv_handle_t *)&lw.tick, NULL);
  uv_close((uv_handle_t *)&lw.turn, NULL);
  uv_run(&loop, UV_RUN_NOWAIT); /* the handles live on this stack: closed before any assertion */
  cr_assert(ended, "first load did not end");
  cr_assert_eq(lw.x.err, 0);
  /* The first slice goes in one turn after the fetch callback, each further slice one turn later. */
  int slices = (LONG_SAMPLES + PS_TARGET_LOAD_SLICE - 1) / PS_TARGET_LOAD_SLICE;
  cr_assert_geq(lw.turns, slices, "the loop turned %d times during a load of %d slices", lw.turns, slices);
  cr_assert_gt(lw.ticks, 0, "no timer ran between the slices of the load (%d turns)", lw.turns);
  cr_assert_eq(lw.max_loading, 1, "prescale_targets_loading %g", lw.max_loading);
  cr_assert_eq(ps_metrics_get("prescale_targets_loading", ""), 0);
  struct ps_target_reading rd;
  cr_assert_eq(ps_target_read(t, &rd, err, sizeof err), 0, "%s", err);
  cr_assert_float_eq(rd.observed, (double)(rd.observed_ms / 1000 % 180), 1e-12);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* The seed targets.c gives a target's engine: derived from its key (make_key, fnv1a). */
static uint32_t engine_seed(const char *ns, const char *name, const struct ps_kv *md, size_t n) {
  struct ps_kv sorted[16];
  cr_assert_leq(n, 16);
  memcpy(sorted, md, n * sizeof *md);
  for (size_t i = 1; i < n; i++) /* insertion sort by key, as make_key's qsort orders them */
    for (size_t j = i; j > 0 && strcmp(sorted[j - 1].key, sorted[j].key) > 0; j--) {
      struct ps_kv x = sorted[j];
      sorted[j] = sorted[j - 1];
      sorted[j - 1] = x;
    }
  char key[1024];
  int off = snprintf(key, sizeof key, "%s\x1f%s", ns, name);
  for (size_t i = 0; i < n; i++)
    off += snprintf(key + off, sizeof key - (size_t)off, "\x1f%s\x1e%s", sorted[i].key, sorted[i].value);
  cr_assert_lt((size_t)off, sizeof key);
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < off; i++) {
    h ^= (unsigned char)key[i];
    h *= 1099511628211ULL;
  }
  return (uint32_t)(h ^ (h >> 32));
}

static int64_t wall_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The sliced load leaves the engine exactly as the whole batch loaded at once in bulk: an engine fed the
 * same samples directly (time() % 180 at 1 s steps is known exactly) between ps_engine_bulk_begin and
 * ps_engine_bulk_end with the same settings and seed answers, to the bit, what the target answers. Model and
 * period auto, so that every model, the period detection and the refits take part. The target forecast at the
 * wall time its load ended, which the test does not know to the step: one of the steps since the newest
 * sample must match. */
Test(targets, a_sliced_load_answers_what_the_whole_batch_answered) {
  struct ps_kv md[] = {{"query", "vector(time() % 180)"},
                       {"threshold", "10"},
                       {"step", "1s"},
                       {"history", LONG_HISTORY},
                       {"lookahead", "30s"}};
  struct ps_target_reading rd;
  struct ps_target *t = load_read(md, 5, &rd);
  int64_t until = wall_now_ms();
  const struct ps_target_config *c = ps_target_config(t);
  struct ps_engine_config ec = {
      .model = c->model,
      .step_ms = c->step_ms,
      .period_ms = c->period_ms,
      .lookahead_ms = c->lookahead_ms,
      .capacity = (size_t)(c->history_ms / c->step_ms) + 1,
      .quantile = c->quantile,
      .seed = engine_seed("ns", "app", md, 5),
  };
  struct ps_engine *e;
  cr_assert_eq(ps_engine_new(&ec, &e), 0);
  /* The range start_fetch asked for: the newest step back over the history. */
  int64_t end = rd.observed_ms, start = end - c->history_ms + c->step_ms;
  cr_assert_eq((end - start) / c->step_ms + 1, LONG_SAMPLES);
  ps_engine_bulk_begin(e);
  for (int64_t ms = start; ms <= end; ms += c->step_ms)
    cr_assert_eq(ps_engine_put(e, ms, (double)(ms / 1000 % 180)), 0);
  ps_engine_bulk_end(e);
  struct ps_engine_counts n;
  ps_engine_counts(e, &n);
  cr_assert_eq(n.refits, 1, "a bulk load of %d samples refits once, not %llu times", LONG_SAMPLES,
               (unsigned long long)n.refits);
  struct ps_engine_result res;
  bool matched = false;
  for (int64_t now = end; now <= until && !matched; now += c->step_ms) {
    cr_assert_eq(ps_engine_forecast(e, now, &res), 0);
    double value = fmax(res.current, res.predicted + res.margin); /* headroom 0, normal mode */
    matched = rd.observed == res.current && rd.predicted == res.predicted && rd.value == value;
  }
  cr_assert(matched, "target: observed %.17g predicted %.17g value %.17g; engine fed directly: %.17g %.17g",
            rd.observed, rd.predicted, rd.value, res.current, res.predicted);
  /* What does not depend on the time asked about must match as well, every model's error included. */
  char l[256];
  snprintf(l, sizeof l, LABELS ",model=\"%s\"", ps_model_name(res.chosen));
  cr_assert_eq(ps_metrics_get("prescale_target_model_info", l), 1, "the engine chose %s",
               ps_model_name(res.chosen));
  cr_assert_eq(ps_metrics_get("prescale_target_period_seconds", LABELS), (double)res.period_ms / 1000);
  cr_assert_eq(ps_metrics_get("prescale_target_quantile_margin", LABELS), res.margin);
  for (int m = 0; m < PS_MODEL_COUNT; m++) {
    snprintf(l, sizeof l, LABELS ",model=\"%s\"", ps_model_name((enum ps_model)m));
    double got = ps_metrics_get("prescale_target_model_error", l);
    if (isnan(res.mae[m]))
      cr_assert(isnan(got), "%s error %g, want none", ps_model_name((enum ps_model)m), got);
    else
      cr_assert_eq(got, res.mae[m], "%s error %.17g, want %.17g", ps_model_name((enum ps_model)m), got,
                   res.mae[m]);
  }
  ps_engine_free(e);
  stop_targets();
  PS_LOOP_END(&loop);
}

static bool both_loading(void *arg) {
  (void)arg;
  return ps_metrics_get("prescale_targets_loading", "") >= 2;
}
static bool one_loading(void *arg) {
  (void)arg;
  return ps_metrics_get("prescale_targets_loading", "") >= 1;
}

/* A target evicted while it loads leaves the queue (ASan checks its copy is not read after), and the
 * other loads in the queue go on. The loads are held (ps_targets_hold_loads) until both are queued: a
 * bulk load's slices take microseconds, less than the second target's fetch. */
Test(targets, a_target_evicted_mid_load_leaves_the_others_loading) {
  struct ps_kv huge[] = {{"query", "vector(time() % 180)"},
                         {"threshold", "10"},
                         {"step", "1s"},
                         {"history", HUGE_HISTORY},
                         {"model", "last"}};
  struct ps_kv kept[] = {{"query", "vector(time() % 180)"},
                         {"threshold", "10"},
                         {"step", "1s"},
                         {"history", LONG_HISTORY},
                         {"period", "3m"},
                         {"model", "seasonal"},
                         {"quantile", "0"}};
  struct ps_target *ta, *tb;
  char err[256] = "";
  ps_targets_hold_loads(targets, true);
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "evicted", huge, 5, &ta, err, sizeof err), 0, "%s",
               err);
  cr_assert(run_until(one_loading, NULL, 15000), "the huge history never started loading");
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", kept, 7, &tb, err, sizeof err), 0, "%s", err);
  struct waited x = {.w.cb = waited_cb};
  ps_target_wait(tb, &x.w);
  cr_assert(run_until(both_loading, NULL, 15000), "the two loads never overlapped");
  /* Every target with neither waiter nor watcher is idle now: only the huge one goes. */
  cfg.target_idle_ms = 0;
  ps_targets_sweep(targets);
  cr_assert_eq(ps_targets_count(targets), 1);
  cr_assert_eq(ps_metrics_get("prescale_targets_loading", ""), 1);
  cr_assert_not(x.done, "held");
  ps_targets_hold_loads(targets, false);
  cr_assert(run_until(waited_done, &x, 15000), "the remaining load did not end");
  cr_assert_eq(x.err, 0);
  cr_assert_eq(ps_metrics_get("prescale_targets_loading", ""), 0);
  struct ps_target_reading rd;
  cr_assert_eq(ps_target_read(tb, &rd, err, sizeof err), 0, "%s", err);
  /* Seasonal on the sawtooth is exact: the max of s % 180 over the 30 steps after the time of the
   * forecast, which lies between the newest sample and now. */
  int64_t end = rd.observed_ms / 1000, until = wall_now_ms() / 1000;
  cr_assert_float_eq(rd.observed, (double)(end % 180), 1e-12);
  bool matched = false;
  for (int64_t now = end; now <= until && !matched; now++) {
    double want = rd.observed;
    for (int64_t s = now + 1; s <= now + 30; s++) want = fmax(want, (double)(s % 180));
    matched = rd.value == want;
  }
  cr_assert(matched, "value %g at %lld s", rd.value, (long long)end);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* Shutdown mid-load: the waiter hears UV_ECANCELED, the copy and the loader handle go (PS_LOOP_END asserts
 * that the loop closes with no handle left; ASan that nothing leaks or is read after free). */
Test(targets, closing_the_registry_mid_load_is_clean) {
  struct ps_kv huge[] = {{"query", "vector(time() % 180)"},
                         {"threshold", "10"},
                         {"step", "1s"},
                         {"history", HUGE_HISTORY},
                         {"model", "last"}};
  struct ps_target *t;
  char err[256] = "";
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", huge, 5, &t, err, sizeof err), 0, "%s", err);
  struct waited x = {.w.cb = waited_cb};
  ps_target_wait(t, &x.w);
  cr_assert(run_until(one_loading, NULL, 15000), "the history never started loading");
  uv_run(&loop, UV_RUN_ONCE); /* one slice in, dozens to go */
  cr_assert_eq(ps_metrics_get("prescale_targets_loading", ""), 1);
  cr_assert_not(x.done, "still loading");
  ps_targets_close(targets);
  targets = NULL;
  cr_assert(x.done);
  cr_assert_eq(x.err, UV_ECANCELED);
  cr_assert_eq(ps_metrics_get("prescale_targets_loading", ""), 0);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* ---- the answer at the extremes --------------------------------------------------------------- */

Test(targets, saturate_clamps_to_the_largest_finite_value) {
  cr_assert_eq(ps_target_saturate(INFINITY), DBL_MAX);
  cr_assert_eq(ps_target_saturate(DBL_MAX), DBL_MAX);
  cr_assert_eq(ps_target_saturate(1.797e308), 1.797e308);
  cr_assert_eq(ps_target_saturate(NAN), 0);
  cr_assert_eq(ps_target_saturate(-INFINITY), 0);
  cr_assert_eq(ps_target_saturate(-1), 0);
  cr_assert_eq(ps_target_saturate(2.5), 2.5);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* A query whose value crosses from one side to the other T seconds ago: `when` < T before, >= T after. */
static char *crossing(char *buf, size_t len, const char *fmt) {
  long long t = (long long)time(NULL) - 30;
  snprintf(buf, len, fmt, t, t);
  return buf;
}

Test(targets, plus_inf_saturates_and_is_active) {
  struct ps_kv md[] = {{"query", "vector(1) / 0"}, {"threshold", "2"}, {"model", "last"}, {"step", "1s"}};
  struct ps_target_reading rd;
  load_read(md, 4, &rd);
  cr_assert_eq(rd.value, DBL_MAX);
  cr_assert(rd.active);
  cr_assert(isinf(rd.observed) && rd.observed > 0, "observed %g", rd.observed);
  cr_assert_eq(ps_metrics_get("prescale_target_value", LABELS), DBL_MAX);
  /* The default model (auto) too: the engine never sees the infinite samples, the answer does. */
  struct ps_kv dflt[] = {{"query", "vector(1) / 0"}, {"threshold", "2"}, {"history", "1h"}};
  load_read(dflt, 3, &rd);
  cr_assert_eq(rd.value, DBL_MAX);
  cr_assert(rd.active);
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, plus_inf_after_finite_saturates_and_finite_after_inf_does_not) {
  char q1[160], q2[160];
  struct ps_kv now_inf[] = {{"query", crossing(q1, sizeof q1, "vector(5) / (time() < bool %lld)")},
                            {"threshold", "2"},
                            {"step", "1s"},
                            {"history", "5m"}};
  struct ps_target_reading rd;
  load_read(now_inf, 4, &rd);
  cr_assert_eq(rd.value, DBL_MAX, "value %g", rd.value);
  cr_assert(rd.active);
  /* +Inf in the history is missing to the models: the answer follows the finite values after it. */
  struct ps_kv was_inf[] = {{"query", crossing(q2, sizeof q2, "vector(5) / (time() >= bool %lld)")},
                            {"threshold", "2"},
                            {"model", "last"},
                            {"step", "1s"},
                            {"history", "5m"}};
  load_read(was_inf, 5, &rd);
  cr_assert_float_eq(rd.value, 5, 1e-9);
  cr_assert_float_eq(rd.observed, 5, 1e-9);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* 1.797e308 is finite; x 2 overflows: the answer saturates rather than falling to 0. */
Test(targets, headroom_overflow_saturates) {
  struct ps_kv md[] = {{"query", "vector(1.797e308)"},
                       {"threshold", "2"},
                       {"model", "last"},
                       {"step", "1s"},
                       {"headroom", "1"}};
  struct ps_target_reading rd;
  load_read(md, 5, &rd);
  cr_assert_eq(rd.value, DBL_MAX);
  cr_assert(rd.active);
  cr_assert_eq(rd.observed, 1.797e308);
  struct ps_kv plain[] = {
      {"query", "vector(1.797e308)"}, {"threshold", "2"}, {"model", "last"}, {"step", "1s"}};
  load_read(plain, 4, &rd);
  cr_assert_eq(rd.value, 1.797e308, "the observation itself, exactly");
  stop_targets();
  PS_LOOP_END(&loop);
}

/* NaN (0/0) is a missing sample: only NaN is an empty result under ignoreNullValues false, and 0 under
 * true; a NaN after finite values keeps the last finite one when missing samples are not zero. */
Test(targets, nan_is_a_missing_sample) {
  struct ps_kv strict[] = {
      {"query", "vector(0) / 0"}, {"threshold", "2"}, {"model", "last"}, {"ignoreNullValues", "false"}};
  struct ps_target *t;
  cr_assert_eq(load(strict, 4, &t), PS_TARGET_ERR_EMPTY_RESULT);
  char err[256];
  struct ps_target_reading rd;
  cr_assert_lt(ps_target_read(t, &rd, err, sizeof err), 0);
  cr_assert(strstr(err, "only NaN"), "%s", err);
  struct ps_kv lax[] = {{"query", "vector(0) / 0"}, {"threshold", "2"}, {"model", "last"}};
  load_read(lax, 3, &rd);
  cr_assert_eq(rd.value, 0);
  cr_assert_not(rd.active);
  char q1[200], q2[200];
  const char *fmt = "vector(5) * (time() < bool %lld) / (time() < bool %lld)";
  struct ps_kv keep[] = {{"query", crossing(q1, sizeof q1, fmt)},
                         {"threshold", "2"},
                         {"model", "last"},
                         {"step", "1s"},
                         {"history", "5m"},
                         {"ignoreNullValues", "false"}};
  load_read(keep, 6, &rd);
  cr_assert_float_eq(rd.value, 5, 1e-9, "the last finite observation");
  cr_assert(rd.active);
  struct ps_kv zero[] = {{"query", crossing(q2, sizeof q2, fmt)},
                         {"threshold", "2"},
                         {"model", "last"},
                         {"step", "1s"},
                         {"history", "5m"}};
  load_read(zero, 5, &rd);
  cr_assert_eq(rd.value, 0, "a missing newest sample counts as 0 under ignoreNullValues true");
  stop_targets();
  PS_LOOP_END(&loop);
}

/* A query too long for a request URL: the error says which limit and by how much. */
Test(targets, a_query_over_the_url_limit_says_which_limit) {
  static char q[7001];
  memcpy(q, "sum(x)", 6);
  memset(q + 6, ' ', sizeof q - 7);
  struct ps_kv md[] = {{"query", q}, {"threshold", "2"}, {"model", "last"}};
  struct ps_target *t;
  char err[512] = "";
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "app", md, 3, &t, err, sizeof err), 0, "%s", err);
  struct ps_target_reading rd;
  int r = ps_target_read(t, &rd, err, sizeof err);
  if (r == 1) { /* should the fetch fail later rather than at once */
    struct waited x = {.w.cb = waited_cb};
    ps_target_wait(t, &x.w);
    cr_assert(run_until(waited_done, &x, 15000));
    r = ps_target_read(t, &rd, err, sizeof err);
  }
  cr_assert_eq(r, UV_EINVAL, "%s", err);
  cr_assert(strstr(err, "over the limit of 16384 bytes (PS_HTTP_MAX_URL)"), "%s", err);
  cr_assert(strstr(err, "the query is 7000 bytes, 20992 once percent-encoded"), "%s", err);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* ---- fan-out: shared fetches, jitter (docs/reliability.md, "Prometheus fan-out") ------------------ */

static bool all_waited(void *arg) {
  struct waited *x = arg;
  for (; x->w.cb != NULL; x++)
    if (!x->done) return false;
  return true;
}

/* Targets with the same Prometheus inputs (server, query, step, history) but different names and
 * thresholds: one request, and every one of them gets the answer. The fetch key holds the range's end, the
 * wall clock rounded down to the step, so the step is a minute: with 1s, a slow build (ASan, valgrind)
 * crossed a second between two creates now and then and made two fetches. */
Test(targets, identical_inputs_share_one_request) {
  enum { N = 4 };
  struct ps_target *t[N];
  struct waited x[N + 1];
  memset(x, 0, sizeof x);
  char err[256];
  for (int i = 0; i < N; i++) {
    char name[16], thr[16];
    snprintf(name, sizeof name, "app%d", i);
    snprintf(thr, sizeof thr, "%d", i + 1);
    struct ps_kv md[] = {
        {"query", "vector(5)"}, {"threshold", thr}, {"model", "last"}, {"step", "1m"}, {"history", "1h"}};
    cr_assert_eq(ps_targets_get_or_create(targets, "ns", name, md, 5, &t[i], err, sizeof err), 0, "%s", err);
    x[i].w.cb = waited_cb;
    ps_target_wait(t[i], &x[i].w);
  }
  cr_assert_eq(ps_targets_fetches(targets), 1, "one fetch for %d targets", N);
  cr_assert_eq(ps_metrics_get("prescale_refreshes_shared_total", ""), N - 1);
  cr_assert(run_until(all_waited, x, 15000));
  for (int i = 0; i < N; i++) {
    cr_assert_eq(x[i].err, 0);
    struct ps_target_reading rd;
    cr_assert_eq(ps_target_read(t[i], &rd, err, sizeof err), 0, "%s", err);
    cr_assert_float_eq(rd.value, 5, 1e-12);
  }
  struct ps_http_stats st;
  ps_http_client_stats(http, &st);
  cr_assert_eq(st.peak_inflight, 1, "one request was sent, not %zu at once", st.peak_inflight);
  cr_assert_eq(ps_targets_fetches(targets), 0);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* KEDA's prometheus keys are part of what is asked: two triggers with the same query but another
 * namespace, customHeaders (a tenant's X-Scope-OrgID), queryParameters or unsafeSsl must neither share a
 * target nor a fetch (another tenant's answer would be served). Two spellings of the same list do share.
 * Every one of them loads from the real Prometheus, which ignores parameters and headers it does not
 * know. */
Test(targets, prometheus_keys_are_part_of_a_fetchs_identity) {
  static const struct {
    const char *key, *value;
  } extra[] = {
      {NULL, NULL},
      {"namespace", "team-a"},
      {"namespace", "team-b"},
      {"customHeaders", "X-Scope-OrgID=team-a"},
      {"customHeaders", "X-Scope-OrgID=team-b"},
      {"queryParameters", "dedup=false"},
      {"unsafeSsl", "true"},
      {"customHeaders", "X-A=1, X-B=2"},
      {"customHeaders", "X-B=2,X-A=1"}, /* the same list as the one before: shares its fetch */
  };
  enum { N = sizeof extra / sizeof extra[0] };
  struct ps_target *t[N];
  struct waited x[N + 1];
  memset(x, 0, sizeof x);
  char err[256];
  for (int i = 0; i < N; i++) {
    char name[16];
    snprintf(name, sizeof name, "app%d", i);
    struct ps_kv md[] = {{"query", "vector(5)"}, {"threshold", "1"}, {"model", "last"},
                         {"step", "1m"},         {"history", "1h"},  {extra[i].key, extra[i].value}};
    cr_assert_eq(
        ps_targets_get_or_create(targets, "ns", name, md, extra[i].key ? 6 : 5, &t[i], err, sizeof err), 0,
        "%s", err);
    for (int j = 0; j < i; j++) cr_assert_neq(t[i], t[j]);
    x[i].w.cb = waited_cb;
    ps_target_wait(t[i], &x[i].w);
  }
  cr_assert_eq(ps_targets_fetches(targets), N - 1, "%zu fetches", ps_targets_fetches(targets));
  cr_assert_eq(ps_metrics_get("prescale_refreshes_shared_total", ""), 1);
  cr_assert_eq(ps_target_refresh_offset_ms(t[N - 1]), ps_target_refresh_offset_ms(t[N - 2]));
  cr_assert(run_until(all_waited, x, 15000));
  for (int i = 0; i < N; i++) {
    cr_assert_eq(x[i].err, 0, "%s=%s", extra[i].key, extra[i].value);
    struct ps_target_reading rd;
    cr_assert_eq(ps_target_read(t[i], &rd, err, sizeof err), 0, "%s", err);
    cr_assert_float_eq(rd.value, 5, 1e-12);
  }
  stop_targets();
  PS_LOOP_END(&loop);
}

/* A sharer evicted while the shared fetch is in flight leaves it; the others still get their answer.
 * When the last sharer goes, the request is cancelled. */
Test(targets, a_sharer_evicted_mid_flight_leaves_the_others_answered) {
  struct ps_kv md[] = {
      {"query", "vector(3)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1m"}, {"history", "1h"}};
  struct ps_target *a, *b, *c;
  char err[256];
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "a", md, 5, &a, err, sizeof err), 0);
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "b", md, 5, &b, err, sizeof err), 0);
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "c", md, 5, &c, err, sizeof err), 0);
  struct waited x[3];
  memset(x, 0, sizeof x);
  x[0].w.cb = x[1].w.cb = waited_cb;
  ps_target_wait(b, &x[0].w);
  ps_target_wait(c, &x[1].w);
  cr_assert_eq(ps_targets_fetches(targets), 1);
  cfg.target_idle_ms = 0; /* the sweep drops every target nobody waits on: a, mid-flight */
  ps_targets_sweep(targets);
  cr_assert_eq(ps_targets_count(targets), 2);
  cr_assert_eq(ps_targets_fetches(targets), 1, "b and c still share it");
  cr_assert(run_until(all_waited, x, 15000));
  struct ps_target_reading rd;
  cr_assert_eq(x[0].err, 0);
  cr_assert_eq(x[1].err, 0);
  cr_assert_eq(ps_target_read(b, &rd, err, sizeof err), 0, "%s", err);
  cr_assert_float_eq(rd.value, 3, 1e-12);
  cr_assert_eq(ps_target_read(c, &rd, err, sizeof err), 0, "%s", err);
  cr_assert_float_eq(rd.value, 3, 1e-12);
  /* Two new sharers, both evicted before the answer: the request goes with them. */
  struct ps_kv md2[] = {
      {"query", "vector(4)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1m"}, {"history", "1h"}};
  struct ps_target *d, *e;
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "d", md2, 5, &d, err, sizeof err), 0);
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "e", md2, 5, &e, err, sizeof err), 0);
  struct ps_http_stats st;
  ps_http_client_stats(http, &st);
  cr_assert_eq(st.inflight + st.queued, 1);
  ps_targets_sweep(targets);
  cr_assert_eq(ps_targets_count(targets), 0);
  cr_assert_eq(ps_targets_fetches(targets), 0);
  ps_http_client_stats(http, &st);
  cr_assert_eq(st.inflight + st.queued, 0, "the request was cancelled");
  stop_targets();
  PS_LOOP_END(&loop);
}

/* Refresh offsets spread over the step: 200 targets with distinct queries at a 15 s step fall in every
 * tenth of (settle, step]; targets with the same inputs get the same offset (so they share); and the
 * armed timer fires at the target's offset into the step. */
Test(targets, jitter_spreads_refreshes_over_the_step) {
  enum { N = 200, BINS = 10 };
  int bins[BINS] = {0};
  char err[256];
  const int64_t step = 15000, span = step - PS_REFRESH_SETTLE_MS;
  cfg.max_targets = N + 10;
  for (int i = 0; i < N; i++) {
    char q[64], name[16];
    snprintf(q, sizeof q, "vector(1) + %d*0", i);
    snprintf(name, sizeof name, "t%d", i);
    struct ps_kv md[] = {{"query", q}, {"threshold", "1"}, {"model", "last"}, {"step", "15s"}};
    struct ps_target *t;
    cr_assert_eq(ps_targets_get_or_create(targets, "ns", name, md, 4, &t, err, sizeof err), 0, "%s", err);
    int64_t off = ps_target_refresh_offset_ms(t);
    cr_assert(off >= 0 && off < span, "offset %lld", (long long)off);
    bins[off * BINS / span]++;
  }
  for (int b = 0; b < BINS; b++) cr_assert_geq(bins[b], N / BINS / 4, "tenth %d has %d of %d", b, bins[b], N);
  /* Same inputs, another threshold and name: the same offset. */
  struct ps_kv same[] = {
      {"query", "vector(1) + 7*0"}, {"threshold", "9"}, {"model", "last"}, {"step", "15s"}};
  struct ps_target *s7, *t7;
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "other", same, 4, &s7, err, sizeof err), 0);
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "t7", same, 4, &t7, err, sizeof err), 0);
  cr_assert_eq(ps_target_refresh_offset_ms(s7), ps_target_refresh_offset_ms(t7));
  stop_targets();
  PS_LOOP_END(&loop);
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The second sharer's waiter works for 300 ms, as the callbacks of many targets fed by one answer do. */
static void slow_waited_cb(struct ps_target_waiter *w, int err) {
  int64_t until = mono_ms() + 300;
  while (mono_ms() < until) {
  }
  waited_cb(w, err);
}

/* Targets that share an answer are rescheduled one after the other in the loop turn that delivers it:
 * their next refreshes must still be due at the same time (and share a request again), however long that
 * turn ran. Before, the due times drifted apart by the work done in between. */
Test(targets, sharers_rescheduled_in_one_long_turn_stay_due_together) {
  struct ps_target *t[2];
  struct waited x[3];
  memset(x, 0, sizeof x);
  char err[256];
  for (int i = 0; i < 2; i++) {
    struct ps_kv md[] = {
        {"query", "vector(5)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1m"}, {"history", "1h"}};
    cr_assert_eq(ps_targets_get_or_create(targets, "ns", i ? "b" : "a", md, 5, &t[i], err, sizeof err), 0,
                 "%s", err);
    x[i].w.cb = i ? slow_waited_cb : waited_cb;
    ps_target_wait(t[i], &x[i].w);
  }
  cr_assert_eq(ps_targets_fetches(targets), 1);
  cr_assert(run_until(all_waited, x, 15000));
  int64_t a = ps_target_refresh_due_ms(t[0]), b = ps_target_refresh_due_ms(t[1]);
  cr_assert(a > 0 && b > 0);
  /* Before, 300 ms apart; the margin is for a busy machine preempting the scheduling itself. */
  cr_assert_leq(llabs(a - b), 100, "due in %lld and %lld ms", (long long)a, (long long)b);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* Every remaining sharer of group_test refreshed once more after its first load (through one request). */
static struct ps_target *group_test[40];
static bool group_refreshed(void *arg) {
  (void)arg;
  char labels[128];
  for (int i = 0; i < 40; i += 2) {
    snprintf(labels, sizeof labels, "namespace=\"ns\",name=\"g%d\",metric=\"prescale\"", i);
    if (!(ps_metrics_get("prescale_refreshes_total", labels) >= 2)) return false;
  }
  return true;
}

/* Targets due at the same instant wait on one timer (a due group), not one each: 40 sharers of one answer
 * are one group after their first load, and still one after half of them were evicted (the group keeps the
 * others, which refresh together, one request for all); a group whose targets all left is gone. Different
 * inputs, another instant: another group. */
Test(targets, targets_due_together_wait_on_one_timer) {
  enum { N = 40 };
  struct waited x[N + 1];
  struct flips f[N];
  memset(x, 0, sizeof x);
  memset(f, 0, sizeof f);
  char err[256];
  cfg.max_targets = N + 10;
  for (int i = 0; i < N; i++) {
    char name[16];
    snprintf(name, sizeof name, "g%d", i);
    struct ps_kv md[] = {
        {"query", "vector(5)"}, {"threshold", "1"}, {"model", "last"}, {"step", "2s"}, {"history", "1m"}};
    cr_assert_eq(ps_targets_get_or_create(targets, "ns", name, md, 5, &group_test[i], err, sizeof err), 0,
                 "%s", err);
    x[i].w.cb = waited_cb;
    ps_target_wait(group_test[i], &x[i].w);
    f[i].w.cb = flips_cb;
    f[i].last = false; /* it hears the first activity (vector(5) > 0), then no change */
    if (i % 2 == 0) ps_target_watch(group_test[i], &f[i].w);
  }
  cr_assert_eq(ps_targets_due_groups(targets), 0, "none is due before its first load");
  cr_assert(run_until(all_waited, x, 15000));
  /* Loaded in one turn (or two, had the creates straddled a step boundary): due at the same instant. */
  cr_assert_eq(ps_targets_due_groups(targets), 1, "%zu groups", ps_targets_due_groups(targets));
  for (int i = 1; i < N; i++)
    cr_assert_eq(ps_target_refresh_due_ms(group_test[i]), ps_target_refresh_due_ms(group_test[0]));
  double shared = ps_metrics_get("prescale_refreshes_shared_total", "");
  cfg.target_idle_ms = 0; /* the sweep drops the targets without a watcher: the odd ones */
  ps_targets_sweep(targets);
  cr_assert_eq(ps_targets_count(targets), N / 2);
  cr_assert_eq(ps_targets_due_groups(targets), 1);
  cr_assert(run_until(group_refreshed, NULL, 20000), "the group's targets refreshed");
  cr_assert_geq(ps_metrics_get("prescale_refreshes_shared_total", "") - shared, N / 2 - 1,
                "the refresh of the remaining %d shared one request", N / 2);
  cr_assert_eq(ps_targets_due_groups(targets), 1);
  /* Another query: due at its own offset, in a group of its own. */
  struct ps_kv other[] = {
      {"query", "vector(6)"}, {"threshold", "1"}, {"model", "last"}, {"step", "2s"}, {"history", "1m"}};
  struct ps_target *o;
  cr_assert_eq(load(other, 5, &o), 0);
  bool same_instant = ps_target_refresh_offset_ms(o) == ps_target_refresh_offset_ms(group_test[0]);
  cr_assert_eq(ps_targets_due_groups(targets), same_instant ? 1 : 2);
  for (int i = 0; i < N; i += 2) ps_target_unwatch(&f[i].w);
  ps_targets_sweep(targets);
  cr_assert_eq(ps_targets_count(targets), 0);
  cr_assert_eq(ps_targets_due_groups(targets), 0, "every group went with its last target");
  stop_targets();
  PS_LOOP_END(&loop);
}

/* Closes the registry from a waiter's callback. */
static void close_registry_cb(struct ps_target_waiter *w, int err) {
  waited_cb(w, err);
  ps_targets_close(targets);
  targets = NULL;
}

/* A group fires its targets one after the other; one's refresh may fail at once (a request that cannot be
 * built) and call a waiter that closes the registry: the others leave the group mid-firing, and the group
 * is closed after it, with no target touched after its close (ASan). */
Test(targets, a_waiter_closing_the_registry_while_a_group_fires) {
  static char q[7001]; /* over PS_HTTP_MAX_URL once encoded: every fetch fails before it is sent */
  memcpy(q, "sum(x)", 6);
  memset(q + 6, ' ', sizeof q - 7);
  struct ps_kv md[] = {{"query", q}, {"threshold", "2"}, {"model", "last"}, {"step", "1s"}};
  struct ps_target *a = NULL, *b = NULL;
  char err[512] = "";
  /* Both fail their first load at once and are due again at the same instant, unless the two creates
   * straddled a step boundary: then again. */
  for (int tries = 0; tries < 5; tries++) {
    cr_assert_eq(ps_targets_get_or_create(targets, "ns", "a", md, 4, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ps_targets_get_or_create(targets, "ns", "b", md, 4, &b, err, sizeof err), 0, "%s", err);
    if (ps_targets_due_groups(targets) == 1) break;
    ps_targets_close(targets);
    cr_assert_eq(ps_targets_new(&loop, &cfg, http, &targets), 0);
  }
  cr_assert_eq(ps_targets_due_groups(targets), 1);
  struct ps_target_reading rd;
  cr_assert_eq(ps_target_read(a, &rd, err, sizeof err), UV_EINVAL, "%s", err);
  struct waited x = {.w.cb = close_registry_cb}, y = {.w.cb = waited_cb};
  ps_target_wait(a, &x.w);
  ps_target_wait(b, &y.w);
  cr_assert(run_until(waited_done, &x, 15000), "a's next refresh");
  cr_assert_eq(x.err, UV_EINVAL);
  cr_assert(y.done, "b's waiter was called when the registry closed, or at its own refresh before");
  cr_assert(y.err == UV_ECANCELED || y.err == UV_EINVAL, "%d", y.err);
  stop_targets();
  PS_LOOP_END(&loop);
}

static bool refreshed_twice(void *arg) { return ps_metrics_get("prescale_refreshes_total", LABELS) >= 3; }

/* Refreshes are incremental (issue 11, "Fan-out and scale"): after the first load of the whole history,
 * each asks Prometheus only for the points since the last success plus PS_REFRESH_OVERLAP_STEPS (points
 * Prometheus may still revise), so their bytes do not grow with the history. */
Test(targets, refreshes_ask_only_for_the_new_points) {
  struct ps_kv md[] = {
      {"query", "vector(2)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"}, {"history", "1h"}};
  struct ps_target *t;
  cr_assert_eq(load(md, 5, &t), 0);
  int64_t s0, e0;
  ps_target_fetch_range(t, &s0, &e0);
  cr_assert_eq(e0 - s0, 3600 * 1000 - 1000, "the first load reads the history: %lld ms",
               (long long)(e0 - s0));
  cr_assert(run_until(refreshed_twice, NULL, 20000), "two refreshes after the load");
  int64_t s, e;
  ps_target_fetch_range(t, &s, &e);
  cr_assert_gt(e, e0);
  /* From the previous refresh's end (it succeeded: vector(2) always answers), minus the overlap: a few
   * steps (more only if a busy machine made refreshes late), not the hour of history. */
  cr_assert_geq(e - s, PS_REFRESH_OVERLAP_STEPS * 1000);
  cr_assert_leq(e - s, (PS_REFRESH_OVERLAP_STEPS + 60) * 1000, "a refresh read %lld ms", (long long)(e - s));
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets, the_refresh_timer_fires_at_the_offset) {
  struct ps_kv md[] = {
      {"query", "vector(2)"}, {"threshold", "1"}, {"model", "last"}, {"step", "10s"}, {"history", "2m"}};
  struct ps_target *t;
  cr_assert_eq(load(md, 5, &t), 0);
  int64_t due = ps_target_refresh_due_ms(t);
  cr_assert(due > 0 && due <= 10000, "due in %lld ms", (long long)due);
  uv_update_time(&loop);
  due = ps_target_refresh_due_ms(t);
  int64_t at = (wall_now_ms() + due) % 10000;
  int64_t want = PS_REFRESH_SETTLE_MS + ps_target_refresh_offset_ms(t);
  int64_t diff = ((at - want) % 10000 + 10000) % 10000;
  if (diff > 5000) diff = 10000 - diff;
  cr_assert_leq(diff, 500, "fires %lld ms into the step, want %lld", (long long)at, (long long)want);
  stop_targets();
  PS_LOOP_END(&loop);
}

/* What the service's kept answers rely on (req_cache.h): whenever the value or the activity of a reading
 * differs from what it was at the previous loop turn, the generation differs too; a target whose refreshes
 * bring the same value keeps its generation. Seen from a check handle at every turn. */
struct gen_watch {
  uv_check_t turn;
  struct ps_target *moving, *steady;
  uint64_t gen, steady_gen;
  double value;
  bool active;
  int changes, missed;
};
static void gen_turn_cb(uv_check_t *h) {
  struct gen_watch *g = h->data;
  char err[256];
  struct ps_target_reading rd;
  if (ps_target_read(g->moving, &rd, err, sizeof err) != 0) return;
  uint64_t gen = ps_target_generation(g->moving);
  if (memcmp(&rd.value, &g->value, sizeof rd.value) != 0 || rd.active != g->active) {
    g->changes++;
    if (gen == g->gen) g->missed++;
  }
  g->gen = gen;
  g->value = rd.value;
  g->active = rd.active;
}
static bool gen_seen(void *arg) {
  struct gen_watch *g = arg;
  return g->changes >= 3 && ps_metrics_get("prescale_refreshes_total",
                                           "namespace=\"ns\",name=\"steady\",metric=\"prescale\"") >= 3;
}

Test(targets, the_generation_moves_whenever_the_answer_does_and_only_then) {
  struct ps_kv md[] = {{"query", "vector(time() % 4)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"},
                       {"activationThreshold", "1.5"},  {"quantile", "0"}};
  struct ps_kv still[] = {{"query", "vector(7.5)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"}};
  struct gen_watch g = {0};
  char err[256];
  cfg.stale_after_ms = 60000; /* a refresh late on a busy machine must not make a reading stale */
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", "steady", still, 4, &g.steady, err, sizeof err), 0);
  struct ps_target_reading rd;
  g.moving = load_read(md, 6, &rd);
  struct ps_target_reading srd;
  struct readable ready = {.t = g.steady, .want = 0};
  cr_assert(run_until(read_gives, &ready, 15000), "the steady target did not load");
  cr_assert_eq(ps_target_read(g.steady, &srd, err, sizeof err), 0, "%s", err);
  g.steady_gen = ps_target_generation(g.steady);
  cr_assert_geq(g.steady_gen, 1, "a reading is available: the generation is at least 1");
  g.gen = ps_target_generation(g.moving);
  g.value = rd.value;
  g.active = rd.active;
  cr_assert_eq(uv_check_init(&loop, &g.turn), 0);
  g.turn.data = &g;
  uv_check_start(&g.turn, gen_turn_cb);
  cr_assert(run_until(gen_seen, &g, 20000), "saw %d changes", g.changes);
  cr_assert_eq(g.missed, 0, "%d of %d changes of the answer kept the generation", g.missed, g.changes);
  cr_assert_eq(ps_target_read(g.steady, &srd, err, sizeof err), 0, "%s", err);
  cr_assert_float_eq(srd.value, 7.5, 1e-12);
  cr_assert_eq(ps_target_generation(g.steady), g.steady_gen, "refreshes of the same value keep it");
  uv_close((uv_handle_t *)&g.turn, NULL);
  stop_targets();
  PS_LOOP_END(&loop);
}
