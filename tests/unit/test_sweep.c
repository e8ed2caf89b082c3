/* src/backtest/sweep.c and sweep_report.c (`prescale backtest --sweep`): the settings, the replay of one
 * engine across margins on a synthetic trace, the reading of the curve, and the JSON and CSV schemas.
 * The SVG chart's writer (svg.c) is tested at the end; the command end to end in
 * tests/integration/test_backtest.py. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "backtest/run.h"
#include "backtest/svg.h"

#define STEP 60000

static struct ps_bt_run r;
static char err[1024];
static bool usage_err;

static void setup(void) {
  memset(&r, 0, sizeof r);
  r.opt.trace_path = "synthetic";
  r.opt.lookahead_ms = 120000;
  r.opt.startup_ms = 60000;
  r.opt.model = PS_MODEL_AUTO;
  r.opt.period_ms = 60 * STEP;
  r.opt.quantile = 0.9;
  r.opt.sweep = true;
}

static void teardown(void) { ps_bt_run_free(&r); }

TestSuite(sweep, .init = setup, .fini = teardown);

static uint64_t rng = 1;
static double unif(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* A daily-like shape with a period of 60 rows, ramps and noise: requests per 60 s row. */
static void set_trace(size_t n) {
  r.trace.t0_ms = 1000 * STEP;
  r.trace.step_ms = STEP;
  r.trace.n = n;
  r.trace.v = malloc(n * sizeof *r.trace.v);
  cr_assert_not_null(r.trace.v);
  rng = 5;
  for (size_t i = 0; i < n; i++) {
    double phase = (double)(i % 60) / 60, rate = 40 + 60 * fmax(0, sin(2 * M_PI * phase));
    r.trace.v[i] = fmax(0, 60 * rate * (1 + 0.3 * (unif() - 0.5)));
  }
}

/* ---- settings and the replay --------------------------------------------------------------------- */

Test(sweep, settings_are_the_fixed_quantiles_and_the_flags_own) {
  set_trace(400);
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  static const double fixed[] = PS_BT_SWEEP_QUANTILES, cover[] = PS_BT_SWEEP_COVERAGES;
  size_t nf = sizeof fixed / sizeof fixed[0], nc = sizeof cover / sizeof cover[0];
  cr_assert_eq(r.sweep.nq, nf, "0.9 is among them: once");
  cr_assert_eq(r.sweep.n, nf + nc, "then every target coverage");
  for (size_t k = 0; k < r.sweep.n; k++) {
    cr_assert_eq(r.sweep.pt[k].setting, k < nf ? fixed[k] : cover[k - nf]);
    cr_assert_eq(r.sweep.pt[k].kind, k < nf ? PS_BT_MARGIN_QUANTILE : PS_BT_MARGIN_COVERAGE);
  }
  ps_bt_run_free(&r);
  setup();
  set_trace(400);
  r.opt.quantile = 0.75;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.sweep.nq, nf + 1);
  cr_assert_eq(r.sweep.pt[4].setting, 0.75);
  for (size_t k = 1; k < r.sweep.nq; k++) cr_assert_gt(r.sweep.pt[k].setting, r.sweep.pt[k - 1].setting);
  /* --target-coverage: its own point among the coverages (the quantile is then 0, one of the fixed). */
  ps_bt_run_free(&r);
  setup();
  set_trace(400);
  r.opt.quantile = 0;
  r.opt.target_coverage = 0.97;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.sweep.nq, nf);
  cr_assert_eq(r.sweep.n, nf + nc + 1);
  cr_assert_eq(r.sweep.pt[nf + 4].setting, 0.97);
  cr_assert_eq(r.sweep.pt[nf + 4].kind, PS_BT_MARGIN_COVERAGE);
}

/* A target coverage's point is exactly the replay of --target-coverage (its tuner is fed as the engine's
 * own), and its realised coverage is the model's; the tuned points lie near their targets. */
Test(sweep, coverage_points_are_the_models_own_replay) {
  set_trace(3000);
  r.opt.threshold = 1;
  r.opt.quantile = 0;
  r.opt.target_coverage = 0.9;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  const struct ps_bt_sweep *sw = &r.sweep;
  const struct ps_bt_result *m = &r.res[PS_BT_MODEL];
  size_t k = sw->nq;
  while (k < sw->n && sw->pt[k].setting != 0.9) k++;
  cr_assert_lt(k, sw->n);
  cr_assert_eq(sw->pt[k].kind, PS_BT_MARGIN_COVERAGE);
  cr_assert_eq(sw->pt[k].setting, 0.9);
  cr_assert_eq(sw->pt[k].pod_seconds, m->pod_seconds);
  cr_assert_eq(sw->pt[k].under_pod_seconds, m->under_pod_seconds);
  cr_assert_eq(sw->pt[k].events, m->events);
  cr_assert_eq(sw->pt[k].coverage, m->coverage);
  for (size_t j = sw->nq; j < sw->n; j++)
    cr_assert_lt(fabs(sw->pt[j].coverage - sw->pt[j].setting), 0.02, "c %g: realised %g", sw->pt[j].setting,
                 sw->pt[j].coverage);
  for (size_t j = 0; j < sw->nq; j++) cr_assert(sw->pt[j].coverage >= 0 && sw->pt[j].coverage <= 1);
}

/* More margin, more pods and less under-provisioning; the point of --quantile is the model's own replay,
 * exactly (the same engine answers, through ps_engine_margins), and the curve is read where it should be. */
Test(sweep, the_curve_is_monotone_and_holds_the_models_own_point) {
  set_trace(3000);
  r.opt.threshold = 1;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  const struct ps_bt_sweep *sw = &r.sweep;
  cr_assert_eq(sw->nq, 9);
  for (size_t k = 1; k < sw->nq; k++) {
    const struct ps_bt_point *a = &sw->pt[k - 1], *b = &sw->pt[k];
    cr_assert_geq(b->pod_seconds, a->pod_seconds, "q %g: %g < q %g: %g", b->setting, b->pod_seconds,
                  a->setting, a->pod_seconds);
    cr_assert_leq(b->under_pod_seconds, a->under_pod_seconds, "q %g: %g > q %g: %g", b->setting,
                  b->under_pod_seconds, a->setting, a->under_pod_seconds);
  }
  cr_assert_gt(sw->pt[8].pod_seconds, sw->pt[0].pod_seconds * 1.05, "the margin costs pods");
  cr_assert_lt(sw->pt[8].under_pod_seconds, sw->pt[0].under_pod_seconds / 2, "and buys capacity");
  const struct ps_bt_point *q9 = &sw->pt[6];
  const struct ps_bt_result *m = &r.res[PS_BT_MODEL];
  cr_assert_eq(q9->setting, 0.9);
  cr_assert_eq(q9->pod_seconds, m->pod_seconds);
  cr_assert_eq(q9->under_pod_seconds, m->under_pod_seconds);
  cr_assert_eq(q9->under_fraction, m->under_fraction);
  cr_assert_eq(q9->events, m->events);
  cr_assert_eq(sw->at_seed.pods, r.res[PS_BT_SEED].pod_seconds);
  cr_assert_float_eq(sw->at_reactive.pods, 1.1 * r.res[PS_BT_REACTIVE].pod_seconds, 1e-6);
  double at_seed = ps_bt_curve_at(sw->pt, sw->n, sw->at_seed.pods);
  cr_assert(isnan(at_seed) ? isnan(sw->at_seed.under) : at_seed == sw->at_seed.under);
}

/* A sweep over a quantile of 0 is the plain forecast: the same as the model with --quantile 0. */
Test(sweep, quantile_zero_is_the_plain_forecast) {
  set_trace(1000);
  r.opt.quantile = 0;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.sweep.pt[0].setting, 0);
  cr_assert_eq(r.sweep.pt[0].pod_seconds, r.res[PS_BT_MODEL].pod_seconds);
  cr_assert_eq(r.sweep.pt[0].under_pod_seconds, r.res[PS_BT_MODEL].under_pod_seconds);
}

/* ---- reading the curve --------------------------------------------------------------------------- */

static struct ps_bt_point pt(double pods, double under) {
  return (struct ps_bt_point){.pod_seconds = pods, .under_pod_seconds = under};
}

Test(sweep, curve_at_interpolates_between_the_points_around) {
  /* given out of pod order: read by pod-seconds */
  struct ps_bt_point c[] = {pt(300, 10), pt(100, 50), pt(200, 30), pt(400, 0)};
  cr_assert_float_eq(ps_bt_curve_at(c, 4, 100), 50, 1e-12, "at a point");
  cr_assert_float_eq(ps_bt_curve_at(c, 4, 200), 30, 1e-12);
  cr_assert_float_eq(ps_bt_curve_at(c, 4, 400), 0, 1e-12, "the last point");
  cr_assert_float_eq(ps_bt_curve_at(c, 4, 150), 40, 1e-12, "half way");
  cr_assert_float_eq(ps_bt_curve_at(c, 4, 275), 15, 1e-12, "three quarters of 200..300");
  cr_assert_float_eq(ps_bt_curve_at(c, 4, 390), 1, 1e-12);
  cr_assert(isnan(ps_bt_curve_at(c, 4, 99.9)), "fewer pods than any point: off the curve");
  cr_assert(isnan(ps_bt_curve_at(c, 4, 400.1)), "more than any");
  cr_assert(isnan(ps_bt_curve_at(c, 0, 100)));
  cr_assert(isnan(ps_bt_curve_at(c, 4, NAN)));
  struct ps_bt_point one[] = {pt(100, 7)};
  cr_assert_float_eq(ps_bt_curve_at(one, 1, 100), 7, 1e-12);
  cr_assert(isnan(ps_bt_curve_at(one, 1, 101)));
}

/* Off the curve, the reading says on which side; beyond the last point, the point with the most pods
 * bounds the under-provisioning (a larger margin only adds pods). */
Test(sweep, curve_read_off_the_curve) {
  struct ps_bt_point c[] = {pt(300, 10), pt(100, 50), pt(200, 30)};
  struct ps_bt_reading at;
  ps_bt_curve_read(c, 3, 250, &at);
  cr_assert_eq(at.side, 0);
  cr_assert_float_eq(at.under, 20, 1e-12);
  cr_assert(isnan(at.bound));
  ps_bt_curve_read(c, 3, 350, &at);
  cr_assert_eq(at.side, 1);
  cr_assert(isnan(at.under));
  cr_assert_eq(at.bound, 10);
  cr_assert_eq(at.pods, 350);
  ps_bt_curve_read(c, 3, 50, &at);
  cr_assert_eq(at.side, -1);
  cr_assert(isnan(at.under) && isnan(at.bound));
}

/* ---- JSON and CSV -------------------------------------------------------------------------------- */

Test(sweep, json_schema) {
  set_trace(600);
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  cJSON *o = ps_bt_sweep_json(&r);
  cr_assert_not_null(o);
  const cJSON *pts = cJSON_GetObjectItem(o, "points");
  cr_assert(cJSON_IsArray(pts));
  cr_assert_eq(cJSON_GetArraySize(pts), (int)r.sweep.n);
  static const char *keys[] = {"pod_seconds", "under_provisioned_pod_seconds", "under_provisioned_fraction",
                               "scaling_events", "coverage"};
  int k = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, pts) {
    const char *kind = (size_t)k < r.sweep.nq ? "quantile" : "target_coverage";
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(p, "setting")), kind);
    cr_assert_eq(cJSON_GetObjectItem(p, kind)->valuedouble, r.sweep.pt[k].setting);
    for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++)
      cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(p, keys[j])), "%s", keys[j]);
    cr_assert_eq(cJSON_GetObjectItem(p, "pod_seconds")->valuedouble, r.sweep.pt[k].pod_seconds);
    k++;
  }
  const cJSON *s = cJSON_GetObjectItem(o, "at_seed_pod_seconds");
  const cJSON *re = cJSON_GetObjectItem(o, "at_reactive_pod_seconds_plus_10pct");
  cr_assert(cJSON_IsObject(s) && cJSON_IsObject(re));
  cr_assert_eq(cJSON_GetObjectItem(s, "pod_seconds")->valuedouble, r.res[PS_BT_SEED].pod_seconds);
  for (int j = 0; j < 2; j++) {
    const cJSON *x = j ? re : s;
    const cJSON *u = cJSON_GetObjectItem(x, "under_provisioned_pod_seconds"),
                *q = cJSON_GetObjectItem(x, "ratio");
    cr_assert(cJSON_IsNumber(u) || cJSON_IsNull(u));
    cr_assert(cJSON_IsNumber(q) || cJSON_IsNull(q));
    const cJSON *off = cJSON_GetObjectItem(x, "off_curve");
    cr_assert(cJSON_IsNull(off) || cJSON_IsString(off));
    cr_assert_eq(cJSON_IsNull(off), cJSON_IsNumber(u), "a figure on the curve, or a side off it");
    cr_assert_not_null(cJSON_GetObjectItem(x, "at_most_under_provisioned_pod_seconds"));
    cr_assert_not_null(cJSON_GetObjectItem(x, "at_most_ratio"));
  }
  cJSON_Delete(o);
}

Test(sweep, csv_schema) {
  set_trace(600);
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  char dir[] = "/tmp/test_sweep_XXXXXX", path[64], line[256];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/curve.csv", dir);
  cr_assert_eq(ps_bt_sweep_write_csv(&r, path, err, sizeof err), 0, "%s", err);
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f);
  cr_assert_not_null(fgets(line, sizeof line, f));
  cr_assert_str_eq(line,
                   "approach,quantile,pod_seconds,under_provisioned_pod_seconds,under_provisioned_fraction,"
                   "scaling_events,target_coverage,coverage\n");
  for (size_t k = 0; k < r.sweep.n + 2; k++) {
    cr_assert_not_null(fgets(line, sizeof line, f), "row %zu", k);
    char name[32], q[32];
    double pods, under, frac;
    long long ev;
    double cov;
    if (k < r.sweep.nq) {
      cr_assert_eq(
          sscanf(line, "%31[^,],%31[^,],%lf,%lf,%lf,%lld,,%lf", name, q, &pods, &under, &frac, &ev, &cov), 7,
          "%s", line);
      cr_assert_str_eq(name, "auto");
      cr_assert_float_eq(strtod(q, NULL), r.sweep.pt[k].setting, 1e-12);
      cr_assert_float_eq(pods, r.sweep.pt[k].pod_seconds, 1e-3);
    } else if (k < r.sweep.n) {
      cr_assert_eq(
          sscanf(line, "%31[^,],,%lf,%lf,%lf,%lld,%31[^,],%lf", name, &pods, &under, &frac, &ev, q, &cov), 7,
          "%s", line);
      cr_assert_float_eq(strtod(q, NULL), r.sweep.pt[k].setting, 1e-12, "the target coverage's column");
      cr_assert_float_eq(cov, r.sweep.pt[k].coverage, 1e-9);
    } else {
      cr_assert_eq(sscanf(line, "%31[^,],,%lf,%lf,%lf,%lld,,%lf", name, &pods, &under, &frac, &ev, &cov), 6,
                   "%s", line);
      cr_assert_str_eq(name, k == r.sweep.n ? "reactive" : "seed");
    }
  }
  cr_assert_null(fgets(line, sizeof line, f));
  fclose(f);
  cr_assert_eq(ps_bt_sweep_write_csv(&r, "/nonexistent/dir/c.csv", err, sizeof err), UV_EIO);
  cr_assert(strstr(err, "--csv") != NULL, "%s", err);
  unlink(path);
  rmdir(dir);
}

/* ---- the SVG chart (svg.c) ----------------------------------------------------------------------- */

static char *xy_svg(const struct ps_svg_xy *c, int *rc) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_assert_not_null(f);
  *rc = ps_svg_xy_write(f, c);
  fclose(f);
  return buf;
}

Test(sweep, svg_xy_escapes_text_and_draws_every_point) {
  struct ps_svg_point curve[3] = {{.x = 100, .y = 50, .label = "q<0>"},
                                  {.x = 200, .y = 20, .label = "q&1"},
                                  {.x = NAN, .y = 1, .label = "gone"}};
  struct ps_svg_mark m[1] = {{.p = {.x = 150, .y = 60, .label = "seed"},
                              .name = "a \"mark\"",
                              .color = "#d62728",
                              .shape = PS_SVG_SQUARE,
                              .guide = 1}};
  const struct ps_svg_xy c = {.title = "t <&> \x01",
                              .subtitle = "s",
                              .x_label = "x's",
                              .y_label = "y",
                              .curve_name = "c",
                              .curve_color = "#2ca02c",
                              .curve = curve,
                              .ncurve = 3,
                              .marks = m,
                              .nmarks = 1};
  int rc;
  char *s = xy_svg(&c, &rc);
  cr_assert_eq(rc, 0);
  cr_assert(strstr(s, "t &lt;&amp;&gt; </text>") != NULL, "escaped, control byte dropped: %s", s);
  cr_assert(strstr(s, ">q&lt;0&gt;<") != NULL && strstr(s, ">q&amp;1<") != NULL);
  cr_assert(strstr(s, "a &quot;mark&quot;") != NULL);
  cr_assert_null(strstr(s, "gone"), "a point that is not finite is left out");
  cr_assert_null(strstr(s, "nan"));
  cr_assert(strstr(s, "<polyline") != NULL && strstr(s, "stroke-dasharray") != NULL);
  cr_assert(strncmp(s, "<?xml", 5) == 0);
  cr_assert(strstr(s, "</svg>\n") != NULL);
  free(s);
}

Test(sweep, svg_xy_bounds) {
  static struct ps_svg_point many[PS_SVG_XY_MAX_POINTS + 1];
  for (size_t k = 0; k <= PS_SVG_XY_MAX_POINTS; k++) many[k] = (struct ps_svg_point){.x = (double)k, .y = 1};
  struct ps_svg_xy c = {.title = "",
                        .subtitle = "",
                        .x_label = "",
                        .y_label = "",
                        .curve_name = "",
                        .curve_color = "#000",
                        .curve = many,
                        .ncurve = PS_SVG_XY_MAX_POINTS + 1};
  int rc;
  free(xy_svg(&c, &rc));
  cr_assert_eq(rc, UV_EINVAL, "past PS_SVG_XY_MAX_POINTS");
  c.ncurve = PS_SVG_XY_MAX_POINTS;
  free(xy_svg(&c, &rc));
  cr_assert_eq(rc, 0);
  struct ps_svg_point none = {.x = NAN, .y = NAN};
  c.curve = &none;
  c.ncurve = 1;
  free(xy_svg(&c, &rc));
  cr_assert_eq(rc, UV_EINVAL, "nothing to draw");
}

/* Points bunched together keep the first label only, but the emphasized one (--quantile's) always has
 * its own; marks at the same place get their labels on separate lines. */
Test(sweep, svg_xy_labels_give_way_when_crowded) {
  struct ps_svg_point curve[4] = {{.x = 100, .y = 50, .label = "first"},
                                  {.x = 100.01, .y = 50, .label = "hidden"},
                                  {.x = 100.02, .y = 50, .label = "kept", .emphasis = 1},
                                  {.x = 200, .y = 0, .label = "far"}};
  struct ps_svg_mark m[2] = {{.p = {.x = 150, .y = 60, .label = "one"}, .name = "a", .color = "#000"},
                             {.p = {.x = 150, .y = 60, .label = "two"}, .name = "b", .color = "#000"}};
  const struct ps_svg_xy c = {.title = "",
                              .subtitle = "",
                              .x_label = "",
                              .y_label = "",
                              .curve_name = "",
                              .curve_color = "#000",
                              .curve = curve,
                              .ncurve = 4,
                              .marks = m,
                              .nmarks = 2};
  int rc;
  char *s = xy_svg(&c, &rc);
  cr_assert_eq(rc, 0);
  cr_assert(strstr(s, ">first<") && strstr(s, ">kept<") && strstr(s, ">far<"));
  cr_assert_null(strstr(s, ">hidden<"));
  double y1, y2;
  const char *a = strstr(s, ">one<"), *b = strstr(s, ">two<");
  cr_assert(a && b);
  while (a > s && strncmp(a, " y=\"", 4) != 0) a--;
  while (b > s && strncmp(b, " y=\"", 4) != 0) b--;
  cr_assert_eq(sscanf(a, " y=\"%lf\"", &y1), 1);
  cr_assert_eq(sscanf(b, " y=\"%lf\"", &y2), 1);
  cr_assert_geq(fabs(y2 - y1), 13, "%g %g", y1, y2);
  free(s);
}

/* With --reload the engine restarts, and so does each coverage point's tuner: the point of
 * --target-coverage is still the model's own replay. */
Test(sweep, coverage_points_restart_with_the_engine) {
  set_trace(3000);
  r.opt.threshold = 1;
  r.opt.quantile = 0;
  r.opt.target_coverage = 0.95;
  r.opt.reload_ms = 500 * STEP;
  cr_assert_eq(ps_bt_replay(&r, &usage_err, err, sizeof err), 0, "%s", err);
  const struct ps_bt_sweep *sw = &r.sweep;
  size_t k = sw->nq;
  while (k < sw->n && sw->pt[k].setting != 0.95) k++;
  cr_assert_lt(k, sw->n);
  cr_assert_eq(sw->pt[k].pod_seconds, r.res[PS_BT_MODEL].pod_seconds);
  cr_assert_eq(sw->pt[k].under_pod_seconds, r.res[PS_BT_MODEL].under_pod_seconds);
  cr_assert_eq(sw->pt[k].coverage, r.res[PS_BT_MODEL].coverage);
}
