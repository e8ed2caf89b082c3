#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "metrics.h"

static struct ps_buf out;

static void setup(void) { ps_buf_init(&out); }
static void teardown(void) {
  ps_buf_free(&out);
  ps_metrics_reset();
}

TestSuite(metrics, .init = setup, .fini = teardown);

static const char *render(void) {
  ps_buf_reset(&out);
  cr_assert_eq(ps_metrics_render(&out), 0);
  return out.data != NULL ? out.data : "";
}

Test(metrics, declare_validates) {
  cr_assert_eq(ps_metrics_declare("ok_name:sub", PS_METRIC_COUNTER, "h"), 0);
  cr_assert_eq(ps_metrics_declare("_x", PS_METRIC_GAUGE, "h"), 0);
  cr_assert_eq(ps_metrics_declare("ok_name:sub", PS_METRIC_COUNTER, "other help"), 0); /* no-op */
  cr_assert_eq(ps_metrics_declare("ok_name:sub", PS_METRIC_GAUGE, "h"), UV_EINVAL);    /* type clash */
  cr_assert_eq(ps_metrics_declare("9abc", PS_METRIC_GAUGE, "h"), UV_EINVAL);
  cr_assert_eq(ps_metrics_declare("a-b", PS_METRIC_GAUGE, "h"), UV_EINVAL);
  cr_assert_eq(ps_metrics_declare("a.b", PS_METRIC_GAUGE, "h"), UV_EINVAL);
  cr_assert_eq(ps_metrics_declare("", PS_METRIC_GAUGE, "h"), UV_EINVAL);
  cr_assert_eq(ps_metrics_declare(NULL, PS_METRIC_GAUGE, "h"), UV_EINVAL);
  cr_assert_eq(ps_metrics_declare("t", (enum ps_metric_type)7, "h"), UV_EINVAL);
  cr_assert_str_eq(render(),
                   "# HELP ok_name:sub h\n# TYPE ok_name:sub counter\n# HELP _x h\n# TYPE _x gauge\n");
}

Test(metrics, exposition_golden) {
  ps_metrics_declare("prescale_rpcs_total", PS_METRIC_COUNTER, "gRPC calls answered.");
  ps_metrics_declare("prescale_targets", PS_METRIC_GAUGE, "Targets tracked.\nWith \\ and newline.");
  ps_metrics_add("prescale_rpcs_total", "method=\"GetMetrics\",code=\"OK\"", 1);
  ps_metrics_add("prescale_rpcs_total", "method=\"IsActive\",code=\"OK\"", 2);
  ps_metrics_add("prescale_rpcs_total", "method=\"GetMetrics\",code=\"OK\"", 1);
  ps_metrics_set("prescale_targets", "", 3);
  ps_metrics_add("prescale_targets", "", -1);
  cr_assert_str_eq(render(), "# HELP prescale_rpcs_total gRPC calls answered.\n"
                             "# TYPE prescale_rpcs_total counter\n"
                             "prescale_rpcs_total{method=\"GetMetrics\",code=\"OK\"} 2\n"
                             "prescale_rpcs_total{method=\"IsActive\",code=\"OK\"} 2\n"
                             "# HELP prescale_targets Targets tracked.\\nWith \\\\ and newline.\n"
                             "# TYPE prescale_targets gauge\n"
                             "prescale_targets 2\n");
  cr_assert_eq(ps_metrics_get("prescale_rpcs_total", "method=\"GetMetrics\",code=\"OK\""), 2);
  cr_assert_eq(ps_metrics_get("prescale_targets", ""), 2);
  cr_assert_eq(ps_metrics_get("prescale_targets", NULL), 2);
  cr_assert(isnan(ps_metrics_get("prescale_targets", "x=\"1\"")));
  cr_assert(isnan(ps_metrics_get("nope", "")));
}

Test(metrics, undeclared_and_wrong_type_ignored) {
  ps_metrics_add("undeclared", "", 1);
  ps_metrics_declare("c_total", PS_METRIC_COUNTER, "c");
  ps_metrics_declare("h_seconds", PS_METRIC_HISTOGRAM, "h");
  ps_metrics_add("c_total", "", -1);  /* counters never go down */
  ps_metrics_add("c_total", "", NAN); /* nor become NaN */
  ps_metrics_set("c_total", "", 100); /* set is for gauges */
  ps_metrics_add("h_seconds", "", 1); /* add is not for histograms */
  ps_metrics_observe("c_total", "", 1);
  cr_assert_eq(ps_metrics_get("c_total", ""), 0);
  cr_assert(isnan(ps_metrics_get("undeclared", "")));
  cr_assert(isnan(ps_metrics_get("h_seconds", "")));
}

Test(metrics, histogram_buckets_cumulative) {
  ps_metrics_declare("prescale_refresh_seconds", PS_METRIC_HISTOGRAM, "Refresh duration.");
  ps_metrics_observe("prescale_refresh_seconds", "", 0.001); /* le is inclusive */
  ps_metrics_observe("prescale_refresh_seconds", "", 0.003);
  ps_metrics_observe("prescale_refresh_seconds", "", 0.3);
  ps_metrics_observe("prescale_refresh_seconds", "", 2.5);
  ps_metrics_observe("prescale_refresh_seconds", "", 60);
  cr_assert_str_eq(render(), "# HELP prescale_refresh_seconds Refresh duration.\n"
                             "# TYPE prescale_refresh_seconds histogram\n"
                             "prescale_refresh_seconds_bucket{le=\"0.001\"} 1\n"
                             "prescale_refresh_seconds_bucket{le=\"0.005\"} 2\n"
                             "prescale_refresh_seconds_bucket{le=\"0.01\"} 2\n"
                             "prescale_refresh_seconds_bucket{le=\"0.025\"} 2\n"
                             "prescale_refresh_seconds_bucket{le=\"0.05\"} 2\n"
                             "prescale_refresh_seconds_bucket{le=\"0.1\"} 2\n"
                             "prescale_refresh_seconds_bucket{le=\"0.25\"} 2\n"
                             "prescale_refresh_seconds_bucket{le=\"0.5\"} 3\n"
                             "prescale_refresh_seconds_bucket{le=\"1\"} 3\n"
                             "prescale_refresh_seconds_bucket{le=\"2.5\"} 4\n"
                             "prescale_refresh_seconds_bucket{le=\"5\"} 4\n"
                             "prescale_refresh_seconds_bucket{le=\"10\"} 4\n"
                             "prescale_refresh_seconds_bucket{le=\"+Inf\"} 5\n"
                             "prescale_refresh_seconds_sum 62.804\n"
                             "prescale_refresh_seconds_count 5\n");
}

Test(metrics, histogram_with_labels) {
  ps_metrics_declare("rpc_seconds", PS_METRIC_HISTOGRAM, "h");
  ps_metrics_observe("rpc_seconds", "method=\"A\"", 0.02);
  ps_buf_reset(&out);
  ps_metrics_render(&out);
  cr_assert_not_null(strstr(out.data, "rpc_seconds_bucket{method=\"A\",le=\"0.01\"} 0\n"));
  cr_assert_not_null(strstr(out.data, "rpc_seconds_bucket{method=\"A\",le=\"0.025\"} 1\n"));
  cr_assert_not_null(strstr(out.data, "rpc_seconds_bucket{method=\"A\",le=\"+Inf\"} 1\n"));
  cr_assert_not_null(strstr(out.data, "rpc_seconds_sum{method=\"A\"} 0.02\n"));
  cr_assert_not_null(strstr(out.data, "rpc_seconds_count{method=\"A\"} 1\n"));
}

/* Values are written by ps_fmt_double (its cases are in test_fmt.c); the specials in the exposition: */
Test(metrics, value_formatting) {
  ps_metrics_declare("g", PS_METRIC_GAUGE, "");
  ps_metrics_set("g", "a=\"nan\"", NAN);
  ps_metrics_set("g", "a=\"inf\"", -INFINITY);
  cr_assert_str_eq(render(), "# HELP g \n# TYPE g gauge\ng{a=\"nan\"} NaN\ng{a=\"inf\"} -Inf\n");
}

Test(metrics, escape_label) {
  char buf[64];
  cr_assert_eq(ps_metrics_escape_label(buf, sizeof buf, "plain"), 5);
  cr_assert_str_eq(buf, "plain");
  cr_assert_eq(ps_metrics_escape_label(buf, sizeof buf, "a\\b\"c\nd"), 10);
  cr_assert_str_eq(buf, "a\\\\b\\\"c\\nd");
  /* truncation is like snprintf: NUL-terminated, returns what it needed */
  char small[4];
  cr_assert_eq(ps_metrics_escape_label(small, sizeof small, "\"\"\""), 6);
  cr_assert_str_eq(small, "\\\"\\");
  cr_assert_eq(ps_metrics_escape_label(NULL, 0, "abc"), 3);
}

Test(metrics, raw_newline_in_labels_ignored) {
  ps_metrics_declare("g", PS_METRIC_GAUGE, "h");
  ps_metrics_set("g", "a=\"x\ny\"", 1);
  cr_assert(isnan(ps_metrics_get("g", "a=\"x\ny\"")));
  cr_assert_str_eq(render(), "# HELP g h\n# TYPE g gauge\n");
}

Test(metrics, remove_series) {
  ps_metrics_declare("g", PS_METRIC_GAUGE, "h");
  ps_metrics_set("g", "t=\"a\"", 1);
  ps_metrics_set("g", "t=\"b\"", 2);
  ps_metrics_set("g", "t=\"c\"", 3);
  ps_metrics_remove("g", "t=\"b\"");
  ps_metrics_remove("g", "t=\"zz\""); /* absent: no-op */
  ps_metrics_remove("nope", "");
  cr_assert(isnan(ps_metrics_get("g", "t=\"b\"")));
  cr_assert_str_eq(render(), "# HELP g h\n# TYPE g gauge\ng{t=\"a\"} 1\ng{t=\"c\"} 3\n");
  ps_metrics_remove("g", "t=\"a\"");
  ps_metrics_remove("g", "t=\"c\"");
  cr_assert_str_eq(render(), "# HELP g h\n# TYPE g gauge\n");
  ps_metrics_set("g", "t=\"b\"", 5); /* re-created, now last */
  cr_assert_str_eq(render(), "# HELP g h\n# TYPE g gauge\ng{t=\"b\"} 5\n");
}

Test(metrics, same_labels_different_families) {
  ps_metrics_declare("a", PS_METRIC_GAUGE, "");
  ps_metrics_declare("b", PS_METRIC_GAUGE, "");
  ps_metrics_set("a", "x=\"1\"", 1);
  ps_metrics_set("b", "x=\"1\"", 2);
  cr_assert_eq(ps_metrics_get("a", "x=\"1\""), 1);
  cr_assert_eq(ps_metrics_get("b", "x=\"1\""), 2);
}

Test(metrics, ten_thousand_series) {
  ps_metrics_declare("prescale_target_value", PS_METRIC_GAUGE, "v");
  ps_metrics_declare("prescale_target_refreshes_total", PS_METRIC_COUNTER, "r");
  char labels[64];
  for (int i = 0; i < 10000; i++) {
    snprintf(labels, sizeof labels, "target=\"ns/app-%d\"", i);
    ps_metrics_set("prescale_target_value", labels, i);
    ps_metrics_add("prescale_target_refreshes_total", labels, 1);
  }
  for (int round = 0; round < 10; round++) {
    for (int i = 0; i < 10000; i++) {
      snprintf(labels, sizeof labels, "target=\"ns/app-%d\"", i);
      ps_metrics_add("prescale_target_refreshes_total", labels, 1);
    }
  }
  for (int i = 0; i < 10000; i += 2) {
    snprintf(labels, sizeof labels, "target=\"ns/app-%d\"", i);
    ps_metrics_remove("prescale_target_value", labels);
  }
  for (int i = 0; i < 10000; i++) {
    snprintf(labels, sizeof labels, "target=\"ns/app-%d\"", i);
    double v = ps_metrics_get("prescale_target_value", labels);
    if (i % 2 == 0)
      cr_assert(isnan(v));
    else
      cr_assert_eq(v, i);
    cr_assert_eq(ps_metrics_get("prescale_target_refreshes_total", labels), 11);
  }
  render();
  /* creation order survives removal: the first value line is app-1, the last app-9999 */
  const char *first = strstr(out.data, "prescale_target_value{");
  cr_assert_not_null(first);
  cr_assert_eq(strncmp(first, "prescale_target_value{target=\"ns/app-1\"} 1\n", 43), 0);
  size_t lines = 0;
  for (const char *p = out.data; (p = strchr(p, '\n')) != NULL; p++) lines++;
  cr_assert_eq(lines, 4 + 5000 + 10000);
}

Test(metrics, reset_drops_everything) {
  ps_metrics_declare("g", PS_METRIC_GAUGE, "h");
  ps_metrics_set("g", "", 1);
  ps_metrics_reset();
  cr_assert(isnan(ps_metrics_get("g", "")));
  cr_assert_str_eq(render(), "");
  cr_assert_eq(ps_metrics_declare("g", PS_METRIC_COUNTER, "h"), 0); /* may be declared anew, other type */
}

Test(metrics, limits_bound_the_registry) {
  ps_metrics_declare("g", PS_METRIC_GAUGE, "h");
  static char labels[PS_METRICS_MAX_LABELS_LEN + 2];
  memset(labels, 'a', PS_METRICS_MAX_LABELS_LEN + 1);
  ps_metrics_set("g", labels, 1); /* one byte too long: not created */
  cr_assert(isnan(ps_metrics_get("g", labels)));
  labels[PS_METRICS_MAX_LABELS_LEN] = '\0'; /* exactly the limit: fine */
  ps_metrics_set("g", labels, 1);
  cr_assert_eq(ps_metrics_get("g", labels), 1);
  char l[32];
  cr_assert_null(strstr(render(), PS_METRICS_DROPPED), "nothing dropped yet");
  for (int i = 0; i < PS_METRICS_MAX_SERIES + 10; i++) {
    snprintf(l, sizeof l, "i=\"%d\"", i);
    ps_metrics_set("g", l, i);
  }
  /* 11 series found the registry full (the long-labels one holds a place): counted, and rendered last. */
  const char *text = render();
  const char *tail = "# TYPE " PS_METRICS_DROPPED " counter\n" PS_METRICS_DROPPED " 11\n";
  cr_assert(strlen(text) > strlen(tail) && strcmp(text + strlen(text) - strlen(tail), tail) == 0, "%s",
            text + strlen(text) - strlen(tail));
  snprintf(l, sizeof l, "i=\"%d\"", PS_METRICS_MAX_SERIES - 2);
  cr_assert_eq(ps_metrics_get("g", l), PS_METRICS_MAX_SERIES - 2);
  snprintf(l, sizeof l, "i=\"%d\"", PS_METRICS_MAX_SERIES - 1); /* the long-labels series took one place */
  cr_assert(isnan(ps_metrics_get("g", l)));
  ps_metrics_remove("g", labels); /* freeing one place lets one more series in */
  ps_metrics_set("g", l, 5);
  cr_assert_eq(ps_metrics_get("g", l), 5);
}

/* A ref updates the very series ps_metrics_add does, and re-resolves after a removal or a reset, so it
 * never writes into a freed series (ASan would see it) and never loses a count to a stale pointer. */
Test(metrics, ref_follows_removal_and_reset) {
  static struct ps_metric_ref c, h, gg;
  cr_assert_eq(ps_metrics_declare("r_total", PS_METRIC_COUNTER, "h"), 0);
  cr_assert_eq(ps_metrics_declare("r_seconds", PS_METRIC_HISTOGRAM, "h"), 0);
  cr_assert_eq(ps_metrics_declare("r_gauge", PS_METRIC_GAUGE, "h"), 0);
  cr_assert(!ps_metrics_ref_resolved(&c));
  ps_metrics_ref_add(&c, "r_total", "m=\"a\"", 2);
  cr_assert(ps_metrics_ref_resolved(&c));
  ps_metrics_add("r_total", "m=\"a\"", 1);
  ps_metrics_ref_add(&c, "r_total", "m=\"a\"", 1);
  cr_assert_float_eq(ps_metrics_get("r_total", "m=\"a\""), 4, 0);
  ps_metrics_ref_add(&c, "r_total", "m=\"a\"", -1); /* a counter never goes down, by ref either */
  cr_assert_float_eq(ps_metrics_get("r_total", "m=\"a\""), 4, 0);
  ps_metrics_ref_set(&gg, "r_gauge", "", 7);
  ps_metrics_ref_observe(&h, "r_seconds", "", 0.002);
  ps_metrics_remove("r_total", "m=\"a\"");
  cr_assert(!ps_metrics_ref_resolved(&c));
  ps_metrics_ref_add(&c, "r_total", "m=\"a\"", 1); /* created again, from 0 */
  cr_assert_float_eq(ps_metrics_get("r_total", "m=\"a\""), 1, 0);
  cr_assert_str_eq(render(), "# HELP r_total h\n# TYPE r_total counter\nr_total{m=\"a\"} 1\n"
                             "# HELP r_seconds h\n# TYPE r_seconds histogram\n"
                             "r_seconds_bucket{le=\"0.001\"} 0\nr_seconds_bucket{le=\"0.005\"} 1\n"
                             "r_seconds_bucket{le=\"0.01\"} 1\nr_seconds_bucket{le=\"0.025\"} 1\n"
                             "r_seconds_bucket{le=\"0.05\"} 1\nr_seconds_bucket{le=\"0.1\"} 1\n"
                             "r_seconds_bucket{le=\"0.25\"} 1\nr_seconds_bucket{le=\"0.5\"} 1\n"
                             "r_seconds_bucket{le=\"1\"} 1\nr_seconds_bucket{le=\"2.5\"} 1\n"
                             "r_seconds_bucket{le=\"5\"} 1\nr_seconds_bucket{le=\"10\"} 1\n"
                             "r_seconds_bucket{le=\"+Inf\"} 1\nr_seconds_sum 0.002\nr_seconds_count 1\n"
                             "# HELP r_gauge h\n# TYPE r_gauge gauge\nr_gauge 7\n");
  ps_metrics_reset();
  cr_assert(!ps_metrics_ref_resolved(&gg));
  ps_metrics_ref_set(&gg, "r_gauge", "", 1); /* undeclared after the reset: ignored, nothing cached */
  cr_assert(!ps_metrics_ref_resolved(&gg));
  cr_assert(isnan(ps_metrics_get("r_gauge", "")));
  cr_assert_eq(ps_metrics_declare("r_gauge", PS_METRIC_GAUGE, "h"), 0);
  ps_metrics_ref_set(&gg, "r_gauge", "", 3);
  cr_assert_float_eq(ps_metrics_get("r_gauge", ""), 3, 0);
}

/* Removing a series no ref points at (a Prometheus server's inflight gauge, after each request) leaves
 * every ref resolved: with 10,000 targets, each such removal made every target look all its series up
 * again at its next refresh. A series a ref does point at still invalidates them. */
Test(metrics, removing_a_series_no_ref_points_at_keeps_the_refs) {
  static struct ps_metric_ref a;
  cr_assert_eq(ps_metrics_declare("k_gauge", PS_METRIC_GAUGE, "h"), 0);
  ps_metrics_ref_set(&a, "k_gauge", "t=\"a\"", 1);
  ps_metrics_set("k_gauge", "server=\"p\"", 1);
  ps_metrics_remove("k_gauge", "server=\"p\"");
  cr_assert(ps_metrics_ref_resolved(&a));
  ps_metrics_ref_set(&a, "k_gauge", "t=\"a\"", 2);
  cr_assert_float_eq(ps_metrics_get("k_gauge", "t=\"a\""), 2, 0);
  /* A series set by name first and by ref later is a referenced one. */
  static struct ps_metric_ref b;
  ps_metrics_set("k_gauge", "t=\"b\"", 1);
  ps_metrics_ref_set(&b, "k_gauge", "t=\"b\"", 5);
  ps_metrics_remove("k_gauge", "t=\"b\"");
  cr_assert(!ps_metrics_ref_resolved(&a));
  cr_assert(!ps_metrics_ref_resolved(&b));
  ps_metrics_ref_set(&a, "k_gauge", "t=\"a\"", 3);
  cr_assert_float_eq(ps_metrics_get("k_gauge", "t=\"a\""), 3, 0);
  cr_assert(isnan(ps_metrics_get("k_gauge", "t=\"b\"")));
}

/* A collect hook: sets gauge "queue" from a count its owner keeps, and counts its runs. */
struct owner {
  double queue;
  int runs;
};
static void collect_queue(void *arg) {
  struct owner *o = arg;
  o->runs++;
  ps_metrics_set("queue", "", o->queue);
}
static void collect_other(void *arg) { ((struct owner *)arg)->runs++; }

Test(metrics, collect_hooks_set_gauges_when_read) {
  ps_metrics_declare("queue", PS_METRIC_GAUGE, "h");
  struct owner o = {.queue = 3};
  cr_assert_eq(ps_metrics_collector_add(collect_queue, &o), 0);
  cr_assert_eq(ps_metrics_collector_add(collect_queue, &o), 0, "the same hook again: added once");
  cr_assert_eq(o.runs, 0, "a hook runs when the metrics are read, not before");
  cr_assert_str_eq(render(), "# HELP queue h\n# TYPE queue gauge\nqueue 3\n");
  cr_assert_eq(o.runs, 1);
  o.queue = 5;
  cr_assert_eq(ps_metrics_get("queue", ""), 5, "ps_metrics_get reads what a scrape would");
  cr_assert_eq(o.runs, 2);
  /* The hooks outlive a reset (their owner removes them); the family must be declared again. */
  ps_metrics_reset();
  ps_metrics_declare("queue", PS_METRIC_GAUGE, "h");
  cr_assert_str_eq(render(), "# HELP queue h\n# TYPE queue gauge\nqueue 5\n");
  /* Removed: the gauge keeps its last value, and the hook no longer runs. */
  ps_metrics_collector_remove(collect_queue, &o);
  o.queue = 7;
  int runs = o.runs;
  cr_assert_str_eq(render(), "# HELP queue h\n# TYPE queue gauge\nqueue 5\n");
  cr_assert_eq(o.runs, runs);
  ps_metrics_collector_remove(collect_queue, &o); /* not there: nothing happens */
  /* Bounded: PS_METRICS_MAX_COLLECTORS at once, the next refused until one goes. */
  struct owner many[PS_METRICS_MAX_COLLECTORS + 1] = {0};
  for (int i = 0; i < PS_METRICS_MAX_COLLECTORS; i++)
    cr_assert_eq(ps_metrics_collector_add(collect_other, &many[i]), 0);
  cr_assert_eq(ps_metrics_collector_add(collect_other, &many[PS_METRICS_MAX_COLLECTORS]), UV_ENOSPC);
  render();
  for (int i = 0; i < PS_METRICS_MAX_COLLECTORS; i++) cr_assert_eq(many[i].runs, 1, "hook %d", i);
  ps_metrics_collector_remove(collect_other, &many[3]);
  cr_assert_eq(ps_metrics_collector_add(collect_other, &many[PS_METRICS_MAX_COLLECTORS]), 0);
  render();
  /* The one removed from the middle no longer runs; the others, and the one added after, ran once more. */
  for (int i = 0; i < PS_METRICS_MAX_COLLECTORS; i++)
    cr_assert_eq(many[i].runs, i == 3 ? 1 : 2, "hook %d", i);
  cr_assert_eq(many[PS_METRICS_MAX_COLLECTORS].runs, 1);
  for (int i = 0; i <= PS_METRICS_MAX_COLLECTORS; i++) ps_metrics_collector_remove(collect_other, &many[i]);
}
