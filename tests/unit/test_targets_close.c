/* targets.c, closing targets against a real Prometheus: the series of targets that share labels (the same
 * trigger after a metadata edit is another target with the same namespace, name and metric) stay while one
 * of them lives and go with the last, whether one closes in an idle sweep or thousands close at once (a
 * sweep, the registry's close at shutdown). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "config.h"
#include "engine.h"
#include "http_client.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "prom_fixture.h"
#include "targets.h"

#include "targets_fixture.h"

TestSuite(targets_close, .init = targets_fixture_setup, .fini = targets_fixture_teardown, .timeout = 90);

static struct ps_target *get(const char *name, const struct ps_kv *md, size_t n) {
  struct ps_target *t = NULL;
  char err[512] = "";
  cr_assert_eq(ps_targets_get_or_create(targets, "ns", name, md, n, &t, err, sizeof err), 0, "%s", err);
  return t;
}

/* Gets ns/app with md and waits for its first load. */
static struct ps_target *load(const struct ps_kv *md, size_t n) {
  struct ps_target *t = get("app", md, n);
  struct waited x = {.w.cb = waited_cb};
  ps_target_wait(t, &x.w);
  cr_assert(ps_test_run_until(&loop, waited_done, &x, 15000), "first load did not end");
  cr_assert_eq(x.err, 0);
  return t;
}

/* Drops every target nobody waits on or watches, now (the sweep of --target-idle 0). */
static void sweep_now(void) {
  uint64_t idle = cfg.target_idle_ms;
  cfg.target_idle_ms = 0;
  ps_targets_sweep(targets);
  cfg.target_idle_ms = idle;
}

static void watch_cb(struct ps_target_watcher *w, bool active) {
  (void)w;
  (void)active;
}

#define LABELS "namespace=\"ns\",name=\"app\",metric=\"prescale\""

static double model_series(const char *family, enum ps_model m) {
  char l[256];
  snprintf(l, sizeof l, LABELS ",model=\"%s\"", ps_model_name(m));
  return ps_metrics_get(family, l);
}

/* The series every loaded target of LABELS sets, present or (present = false) all absent. */
static void assert_target_series(bool present) {
  static const char *const names[] = {
      "prescale_target_observed",        "prescale_target_predicted",
      "prescale_target_value",           "prescale_target_active",
      "prescale_refreshes_total",        "prescale_refresh_errors_total",
      "prescale_target_shadow",          "prescale_target_threshold",
      "prescale_target_fallback",        "prescale_target_period_seconds",
      "prescale_target_quantile_margin", "prescale_target_last_success_timestamp_seconds",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    cr_assert_eq(!isnan(ps_metrics_get(names[i], LABELS)), present, "%s %s", names[i],
                 present ? "gone" : "left behind");
}

#define MD(threshold, model)                                                                                 \
  {                                                                                                          \
    {"query", "vector(1)"}, {"threshold", threshold}, {"model", model}, {"step", "1s"}, { "history", "5m" }  \
  }

Test(targets_close, a_series_stays_while_a_target_with_the_same_labels_lives) {
  /* The same trigger before and after an edit of its threshold: two keys, one set of labels. */
  struct ps_kv before[] = MD("2", "last"), after[] = MD("3", "last");
  load(before, 5);
  struct ps_target *b = load(after, 5);
  cr_assert_eq(ps_targets_count(targets), 2);
  assert_target_series(true);
  cr_assert_eq(model_series("prescale_target_model_info", PS_MODEL_LAST), 1);
  unsigned errors = 0; /* the models whose error the targets show */
  for (int m = 0; m < PS_MODEL_COUNT; m++)
    if (!isnan(model_series("prescale_target_model_error", (enum ps_model)m))) errors |= 1u << m;
  /* The old target goes idle (an RPC holds the new one): the new one's series stay, model ones included. */
  struct ps_target_watcher w = {.cb = watch_cb};
  ps_target_watch(b, &w);
  sweep_now();
  cr_assert_eq(ps_targets_count(targets), 1);
  assert_target_series(true);
  cr_assert_eq(ps_metrics_get("prescale_target_threshold", LABELS), 3);
  cr_assert_eq(model_series("prescale_target_model_info", PS_MODEL_LAST), 1);
  for (int m = 0; m < PS_MODEL_COUNT; m++)
    cr_assert_eq(!isnan(model_series("prescale_target_model_error", (enum ps_model)m)), (errors >> m) & 1,
                 "%s's error", ps_model_name((enum ps_model)m));
  /* The last one goes: all of them go. */
  ps_target_unwatch(&w);
  sweep_now();
  cr_assert_eq(ps_targets_count(targets), 0);
  assert_target_series(false);
  for (int m = 0; m < PS_MODEL_COUNT; m++) {
    cr_assert(isnan(model_series("prescale_target_model_info", (enum ps_model)m)));
    cr_assert(isnan(model_series("prescale_target_model_error", (enum ps_model)m)));
  }
  stop_targets();
  PS_LOOP_END(&loop);
}

Test(targets_close, a_model_series_stays_while_any_sharer_shows_it) {
  /* Three edits of one trigger: the oldest and the middle one answer with `last`, the newest with
   * `linear`. The oldest closing leaves model_info{model="last"} to the middle one, though the newest
   * (the first sharer found among all targets, newest first, before the index) does not show it. */
  struct ps_kv a_md[] = MD("2", "last"), b_md[] = MD("3", "last"), c_md[] = MD("4", "linear");
  load(a_md, 5);
  struct ps_target *b = load(b_md, 5), *c = load(c_md, 5);
  cr_assert_eq(model_series("prescale_target_model_info", PS_MODEL_LAST), 1);
  cr_assert_eq(model_series("prescale_target_model_info", PS_MODEL_LINEAR), 1);
  struct ps_target_watcher wb = {.cb = watch_cb}, wc = {.cb = watch_cb};
  ps_target_watch(b, &wb);
  ps_target_watch(c, &wc);
  sweep_now();
  cr_assert_eq(ps_targets_count(targets), 2);
  cr_assert_eq(model_series("prescale_target_model_info", PS_MODEL_LAST), 1, "the middle one shows it");
  cr_assert_eq(model_series("prescale_target_model_info", PS_MODEL_LINEAR), 1);
  /* The middle one goes: `last` was only its own now. */
  ps_target_unwatch(&wb);
  sweep_now();
  cr_assert_eq(ps_targets_count(targets), 1);
  cr_assert(isnan(model_series("prescale_target_model_info", PS_MODEL_LAST)));
  cr_assert_eq(model_series("prescale_target_model_info", PS_MODEL_LINEAR), 1);
  assert_target_series(true);
  ps_target_unwatch(&wc);
  stop_targets(); /* the registry's close takes the last */
  assert_target_series(false);
  cr_assert(isnan(model_series("prescale_target_model_info", PS_MODEL_LINEAR)));
  PS_LOOP_END(&loop);
}

/* Thousands of targets closed at once, in chains of the label index that hold several label sets, sharers
 * created before and after: every series with a live sharer stays, every other goes, and after the
 * registry's close none is left. */
#define MANY 3000

static void many_labels(char *l, size_t cap, int i) {
  snprintf(l, cap, "namespace=\"ns\",name=\"app%d\",metric=\"prescale\"", i);
}

Test(targets_close, thousands_closed_at_once_keep_exactly_the_shared_series) {
  cfg.max_targets = 2 * MANY;
  static struct ps_target_watcher w[MANY];
  struct ps_kv one[] = MD("2", "last"), other[] = MD("3", "last");
  for (int i = 0; i < MANY; i++) {
    char name[32];
    snprintf(name, sizeof name, "app%d", i);
    /* Every other name has a second target, held by a watcher; every fourth one made first. */
    w[i].cb = watch_cb;
    if (i % 4 == 0) ps_target_watch(get(name, other, 5), &w[i]);
    get(name, one, 5);
    if (i % 4 == 2) ps_target_watch(get(name, other, 5), &w[i]);
  }
  cr_assert_eq(ps_targets_count(targets), MANY + MANY / 2);
  sweep_now();
  cr_assert_eq(ps_targets_count(targets), MANY / 2);
  for (int i = 0; i < MANY; i++) {
    char l[128];
    many_labels(l, sizeof l, i);
    static const char *const names[] = {"prescale_refreshes_total", "prescale_refresh_errors_total",
                                        "prescale_target_shadow", "prescale_target_threshold"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
      cr_assert_eq(!isnan(ps_metrics_get(names[k], l)), i % 2 == 0, "%s{%s}", names[k], l);
  }
  for (int i = 0; i < MANY; i += 2) ps_target_unwatch(&w[i]);
  stop_targets();
  /* Nothing of any target is left in the exposition. */
  struct ps_buf out = {0};
  cr_assert_eq(ps_metrics_render(&out), 0);
  cr_assert_null(memmem(out.data, out.len, "namespace=\"ns\"", 14), "a target's series is left");
  cr_assert_null(memmem(out.data, out.len, "name=\"app", 10), "a target's series is left");
  ps_buf_free(&out);
  PS_LOOP_END(&loop);
}
