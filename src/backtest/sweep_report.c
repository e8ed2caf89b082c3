/* `prescale backtest --sweep` outputs (run.h): the cost curve as a text table, in the JSON document,
 * as CSV and as an SVG chart (svg.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "run.h"
#include "svg.h"

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

/* ---- text ---------------------------------------------------------------------------------------- */

/* "x0.28 seed's", or why there is no figure. */
static void put_read(FILE *out, const char *what, const struct ps_bt_reading *at, double base,
                     const char *who, const struct ps_bt_sweep *sw) {
  double lo = INFINITY, hi = -INFINITY;
  for (size_t k = 0; k < sw->n; k++) {
    lo = fmin(lo, sw->pt[k].pod_seconds);
    hi = fmax(hi, sw->pt[k].pod_seconds);
  }
  fprintf(out, "at %s (%.4g pod-s): ", what, at->pods);
  if (at->side > 0) {
    fprintf(out,
            "more pods than the curve's last point (%.4g pod-s), which has %.0f under-provisioned pod-s, "
            "x%.2f %s's: at most that\n",
            hi, at->bound, ratio(at->bound, base), who);
  } else if (at->side < 0) {
    fprintf(out, "fewer pods than any point of the curve (the least: %.4g pod-s): no figure\n", lo);
  } else {
    fprintf(out, "under-provisioned %.0f pod-s, x%.2f %s's\n", at->under, ratio(at->under, base), who);
  }
}

void ps_bt_sweep_print_text(const struct ps_bt_run *r, FILE *out) {
  const struct ps_bt_sweep *sw = &r->sweep;
  const struct ps_bt_result *s = &r->res[PS_BT_SEED], *re = &r->res[PS_BT_REACTIVE];
  fprintf(out, "\ncost curve: %s replayed at each margin (one engine, one HPA replay per setting)\n",
          r->res[PS_BT_MODEL].name);
  fprintf(out, "%-14s %12s %14s %11s %8s %10s %10s %9s\n", "setting", "pod-s", "under pod-s", "under time",
          "events", "pods/seed", "under/seed", "coverage");
  for (size_t k = 0; k < sw->n; k++) {
    const struct ps_bt_point *p = &sw->pt[k];
    char name[32];
    snprintf(name, sizeof name, p->kind == PS_BT_MARGIN_COVERAGE ? "coverage %g" : "quantile %g", p->setting);
    fprintf(out, "%-14s %12.4g %14.0f %10.2f%% %8lld %10.2f %10.2f %8.2f%%\n", name, p->pod_seconds,
            p->under_pod_seconds, 100 * p->under_fraction, (long long)p->events,
            ratio(p->pod_seconds, s->pod_seconds), ratio(p->under_pod_seconds, s->under_pod_seconds),
            100 * p->coverage);
  }
  for (int w = PS_BT_REACTIVE; w <= PS_BT_SEED; w++) {
    const struct ps_bt_result *x = &r->res[w];
    fprintf(out, "%-14s %12.4g %14.0f %10.2f%% %8lld %10.2f %10.2f %8.2f%%\n", x->name, x->pod_seconds,
            x->under_pod_seconds, 100 * x->under_fraction, (long long)x->events,
            ratio(x->pod_seconds, s->pod_seconds), ratio(x->under_pod_seconds, s->under_pod_seconds),
            100 * x->coverage);
  }
  put_read(out, "seed's pod-seconds", &sw->at_seed, s->under_pod_seconds, "seed", sw);
  put_read(out, "reactive's pod-seconds + 10%", &sw->at_reactive, re->under_pod_seconds, "reactive", sw);
}

/* ---- JSON ---------------------------------------------------------------------------------------- */

/* A figure, or null where there is none (NaN): cJSON would print NaN as null too, but keep a number item,
 * which a reader of the object (not of its text) would take for a figure. */
static void add_figure(cJSON *o, const char *name, double v) {
  if (v == v)
    cJSON_AddNumberToObject(o, name, v);
  else
    cJSON_AddNullToObject(o, name);
}

/* null: under_provisioned_pod_seconds and ratio off the curve, the bound on it. */
static cJSON *read_json(const struct ps_bt_reading *at, double base) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "pod_seconds", at->pods);
  add_figure(o, "under_provisioned_pod_seconds", at->under);
  add_figure(o, "ratio", ratio(at->under, base));
  if (at->side == 0) {
    cJSON_AddNullToObject(o, "off_curve");
  } else {
    cJSON_AddStringToObject(o, "off_curve", at->side > 0 ? "more_pods" : "fewer_pods");
  }
  add_figure(o, "at_most_under_provisioned_pod_seconds", at->bound);
  add_figure(o, "at_most_ratio", ratio(at->bound, base));
  return o;
}

cJSON *ps_bt_sweep_json(const struct ps_bt_run *r) {
  const struct ps_bt_sweep *sw = &r->sweep;
  cJSON *o = cJSON_CreateObject();
  cJSON *pts = cJSON_AddArrayToObject(o, "points");
  for (size_t k = 0; k < sw->n; k++) {
    const struct ps_bt_point *p = &sw->pt[k];
    cJSON *j = cJSON_CreateObject();
    bool cov = p->kind == PS_BT_MARGIN_COVERAGE;
    cJSON_AddStringToObject(j, "setting", cov ? "target_coverage" : "quantile");
    cJSON_AddNumberToObject(j, cov ? "target_coverage" : "quantile", p->setting);
    cJSON_AddNumberToObject(j, "coverage", p->coverage);
    cJSON_AddNumberToObject(j, "pod_seconds", p->pod_seconds);
    cJSON_AddNumberToObject(j, "under_provisioned_pod_seconds", p->under_pod_seconds);
    cJSON_AddNumberToObject(j, "under_provisioned_fraction", p->under_fraction);
    cJSON_AddNumberToObject(j, "scaling_events", (double)p->events);
    cJSON_AddItemToArray(pts, j);
  }
  /* "at_seed_pod_seconds": the curve at seed's pod-seconds, ratio to seed's under-provisioning;
   * "at_reactive_pod_seconds_plus_10pct": at reactive's + 10 %, ratio to reactive's. Off the curve,
   * "off_curve" says on which side; beyond its last point, "at_most_..." bound it. */
  cJSON_AddItemToObject(o, "at_seed_pod_seconds",
                        read_json(&sw->at_seed, r->res[PS_BT_SEED].under_pod_seconds));
  cJSON_AddItemToObject(o, "at_reactive_pod_seconds_plus_10pct",
                        read_json(&sw->at_reactive, r->res[PS_BT_REACTIVE].under_pod_seconds));
  return o;
}

/* ---- CSV ----------------------------------------------------------------------------------------- */

int ps_bt_sweep_write_csv(const struct ps_bt_run *r, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    snprintf(err, errlen, "--csv: cannot write %s: %s", path, strerror(errno));
    return UV_EIO;
  }
  const struct ps_bt_sweep *sw = &r->sweep;
  fputs("approach,quantile,pod_seconds,under_provisioned_pod_seconds,under_provisioned_fraction,scaling_"
        "events,target_coverage,coverage\n",
        f);
  /* A point's setting is in the column of its kind; the other is empty. */
  for (size_t k = 0; k < sw->n; k++) {
    const struct ps_bt_point *p = &sw->pt[k];
    char q[32] = "", c[32] = "";
    snprintf(p->kind == PS_BT_MARGIN_COVERAGE ? c : q, 32, "%g", p->setting);
    fprintf(f, "%s,%s,%.10g,%.10g,%.10g,%lld,%s,%.10g\n", r->res[PS_BT_MODEL].name, q, p->pod_seconds,
            p->under_pod_seconds, p->under_fraction, (long long)p->events, c, p->coverage);
  }
  for (int w = PS_BT_REACTIVE; w <= PS_BT_SEED; w++) {
    const struct ps_bt_result *x = &r->res[w];
    fprintf(f, "%s,,%.10g,%.10g,%.10g,%lld,,%.10g\n", x->name, x->pod_seconds, x->under_pod_seconds,
            x->under_fraction, (long long)x->events, x->coverage);
  }
  return ps_bt_close_output(f, "csv", path, err, errlen);
}

/* ---- SVG ----------------------------------------------------------------------------------------- */

static int by_x(const void *a, const void *b) {
  double x = ((const struct ps_svg_point *)a)->x, y = ((const struct ps_svg_point *)b)->x;
  return (x > y) - (x < y);
}

static void label(struct ps_svg_point *p, const char *fmt, double a, double b) {
  snprintf(p->label, sizeof p->label, fmt, a, b);
}

/* A reading of the curve as a mark: on the curve, or beyond its last point at the bound (at most); not
 * drawn with fewer pods than any point. */
static void reading_mark(struct ps_svg_point *p, const struct ps_bt_reading *at, double base,
                         const char *who) {
  p->x = at->pods;
  p->y = at->side > 0 ? at->bound : at->under;
  snprintf(p->label, sizeof p->label, "%sx%.2f %s's under-prov.", at->side > 0 ? "at most " : "",
           ratio(p->y, base), who);
}

int ps_bt_sweep_write_svg(const struct ps_bt_run *r, const char *path, char *err, size_t errlen) {
  const struct ps_bt_sweep *sw = &r->sweep;
  const struct ps_bt_result *s = &r->res[PS_BT_SEED], *re = &r->res[PS_BT_REACTIVE];
  struct ps_svg_point curve[PS_BT_SWEEP_MAX];
  /* Every point, quantiles and target coverages, joined by pod-seconds: one curve. The emphasised one is
   * the replay's own setting (--target-coverage, else --quantile). */
  bool by_cov = r->opt.target_coverage > 0;
  for (size_t k = 0; k < sw->n; k++) {
    const struct ps_bt_point *p = &sw->pt[k];
    bool cov = p->kind == PS_BT_MARGIN_COVERAGE;
    curve[k].x = p->pod_seconds;
    curve[k].y = p->under_pod_seconds;
    curve[k].emphasis = cov == by_cov && p->setting == (cov ? r->opt.target_coverage : r->opt.quantile);
    label(&curve[k],
          cov ? (curve[k].emphasis ? "c%g (--target-coverage)" : "c%g")
              : (curve[k].emphasis ? "q%g (--quantile)" : "q%g"),
          p->setting, 0);
  }
  qsort(curve, sw->n, sizeof curve[0], by_x);
  struct ps_svg_mark m[4] = {
      {.name = "seed (seasonal naive)", .color = "#d62728", .shape = PS_SVG_SQUARE},
      {.name = "reactive (HPA on the current rate)", .color = "#1f77b4", .shape = PS_SVG_DIAMOND},
      {.name = "the curve at seed's pod-seconds", .color = "#d62728", .shape = PS_SVG_RING, .guide = 1},
      {.name = "the curve at reactive's pod-seconds + 10%",
       .color = "#1f77b4",
       .shape = PS_SVG_RING,
       .guide = 1},
  };
  m[0].p = (struct ps_svg_point){.x = s->pod_seconds, .y = s->under_pod_seconds};
  label(&m[0].p, "seed", 0, 0);
  m[1].p = (struct ps_svg_point){.x = re->pod_seconds, .y = re->under_pod_seconds};
  label(&m[1].p, "reactive", 0, 0);
  reading_mark(&m[2].p, &sw->at_seed, s->under_pod_seconds, "seed");
  reading_mark(&m[3].p, &sw->at_reactive, re->under_pod_seconds, "reactive");

  char title[512], sub[256], la[32], su[32], curve_name[96];
  const char *base = strrchr(r->opt.trace_path, '/');
  base = base != NULL ? base + 1 : r->opt.trace_path;
  ps_duration_format(r->opt.lookahead_ms, la, sizeof la);
  ps_duration_format(r->opt.startup_ms, su, sizeof su);
  snprintf(title, sizeof title, "Cost curve: %s, lookahead %s, startup %s", base, la, su);
  snprintf(sub, sizeof sub,
           "one pod = %.4g requests/s; each point one margin setting (q: quantile, c: target coverage); "
           "lower left is better",
           r->threshold);
  snprintf(curve_name, sizeof curve_name, "prescale (%s), by margin setting", r->res[PS_BT_MODEL].name);
  const struct ps_svg_xy c = {
      .title = title,
      .subtitle = sub,
      .x_label = "pod-seconds paid (ready and starting pods over the trace)",
      .y_label = "under-provisioned pod-seconds (demand beyond ready pods)",
      .curve_name = curve_name,
      .curve_color = "#2ca02c",
      .curve = curve,
      .ncurve = sw->n,
      .marks = m,
      .nmarks = 4,
  };
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    snprintf(err, errlen, "--svg: cannot write %s: %s", path, strerror(errno));
    return UV_EIO;
  }
  int rc = ps_svg_xy_write(f, &c);
  if (fclose(f) != 0 && rc == 0) rc = UV_EIO;
  if (rc != 0) snprintf(err, errlen, "--svg: writing %s failed", path);
  return rc;
}
