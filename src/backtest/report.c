/* `prescale backtest` outputs: the text table, JSON, the per-row CSV and the SVG chart. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "run.h"
#include "svg.h"

/* ---- text ---------------------------------------------------------------------------------------- */

static const char *num(char *buf, size_t len, double v, const char *fmt) {
  if (isnan(v)) {
    snprintf(buf, len, "n/a");
  } else {
    snprintf(buf, len, fmt, v);
  }
  return buf;
}

static void print_answered(const struct ps_bt_result *res, size_t rows, FILE *out) {
  bool first = true;
  for (int m = 0; m < PS_MODEL_COUNT; m++) {
    if (res->answered[m] == 0) continue;
    fprintf(out, "%s%s %.0f%%", first ? "" : ", ", ps_model_name((enum ps_model)m),
            100.0 * (double)res->answered[m] / (double)rows);
    first = false;
  }
}

void ps_bt_print_text(const struct ps_bt_run *r, FILE *out) {
  const struct ps_bt_options *o = &r->opt;
  char a[32], b[32], c[32], d[64];
  ps_duration_format(r->trace.step_ms, a, sizeof a);
  ps_duration_format((int64_t)r->trace.n * r->trace.step_ms, b, sizeof b);
  fprintf(out, "trace     %s: %zu rows at %s (%s), demand median %.4g/s, max %.4g/s\n", o->trace_path,
          r->trace.n, a, b, r->median_rate, r->max_rate);
  ps_duration_format(o->lookahead_ms, a, sizeof a);
  ps_duration_format(o->startup_ms, b, sizeof b);
  ps_duration_format(r->history_ms, c, sizeof c);
  fprintf(out, "replay    lookahead %s (%zu rows), startup %s, threshold %.4g/s per pod%s, history %s\n", a,
          r->horizon_steps, b, r->threshold, r->threshold_given ? "" : " (median rate / 5)", c);
  const struct ps_bt_result *m = &r->res[PS_BT_MODEL], *s = &r->res[PS_BT_SEED];
  if (o->period_ms > 0) {
    ps_duration_format(o->period_ms, d, sizeof d);
  } else if (m->period_ms > 0) {
    char p[32];
    ps_duration_format(m->period_ms, p, sizeof p);
    snprintf(d, sizeof d, "auto: %s", p);
  } else {
    snprintf(d, sizeof d, "auto: none");
  }
  char margin[48];
  snprintf(margin, sizeof margin, o->target_coverage > 0 ? "target coverage %g" : "quantile %g",
           o->target_coverage > 0 ? o->target_coverage : o->quantile);
  fprintf(out, "model     %s, period %s, %s, headroom %g; answered by ", m->name, d, margin, o->headroom);
  print_answered(m, r->trace.n, out);
  fprintf(out, "\n");
  if (s->period_ms > 0) {
    ps_duration_format(s->period_ms, d, sizeof d);
  } else {
    snprintf(d, sizeof d, "none (last value)");
  }
  fprintf(out, "seed      seasonal naive, period at the end %s; answered by ", d);
  print_answered(s, r->trace.n, out);
  fprintf(out, "\n\n");

  fprintf(out, "%-12s %10s %10s %6s %14s %11s %14s %8s\n", "", "MAE", "RMSE", "MASE", "under pod-s",
          "under time", "pod-s", "events");
  for (int w = 0; w < PS_BT_COUNT; w++) {
    const struct ps_bt_result *x = &r->res[w];
    char e1[32], e2[32], e3[32];
    fprintf(out, "%-12s %10s %10s %6s %14.0f %10.2f%% %14.0f %8lld\n", x->name,
            num(e1, sizeof e1, x->score.mae, "%.4g"), num(e2, sizeof e2, x->score.rmse, "%.4g"),
            num(e3, sizeof e3, x->score.mase, "%.3f"), x->under_pod_seconds, 100 * x->under_fraction,
            x->pod_seconds, (long long)x->events);
  }
  fprintf(out, "\nerrors in requests/s over %zu forecasts of the max demand over the next %zu row%s\n",
          m->score.n, r->horizon_steps > 0 ? r->horizon_steps : 1, r->horizon_steps == 1 ? "" : "s");
  const struct ps_bt_result *re = &r->res[PS_BT_REACTIVE];
  fprintf(out,
          "%s vs seed: under-provisioned x%.2f, pod-seconds x%.2f; vs reactive: under-provisioned x%.2f, "
          "pod-seconds x%.2f\n",
          m->name, s->under_pod_seconds > 0 ? m->under_pod_seconds / s->under_pod_seconds : NAN,
          s->pod_seconds > 0 ? m->pod_seconds / s->pod_seconds : NAN,
          re->under_pod_seconds > 0 ? m->under_pod_seconds / re->under_pod_seconds : NAN,
          re->pod_seconds > 0 ? m->pod_seconds / re->pod_seconds : NAN);
  ps_bt_coverage_print_text(r, out);
  if (m->note != NULL) fprintf(out, "note      %s: %s\n", m->name, m->note);
  fprintf(out, "replayed in %.2f s\n", r->seconds);
}

/* ---- JSON ---------------------------------------------------------------------------------------- */

/* cJSON prints NaN as null, which is what a reader should see for "not known". */
static cJSON *result_json(const struct ps_bt_run *r, const struct ps_bt_result *x, bool engine) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", x->name);
  cJSON_AddNumberToObject(o, "scored", (double)x->score.n);
  cJSON_AddNumberToObject(o, "mae", x->score.mae);
  cJSON_AddNumberToObject(o, "rmse", x->score.rmse);
  cJSON_AddNumberToObject(o, "mase", x->score.mase);
  cJSON_AddNumberToObject(o, "under_provisioned_pod_seconds", x->under_pod_seconds);
  cJSON_AddNumberToObject(o, "under_provisioned_fraction", x->under_fraction);
  cJSON_AddNumberToObject(o, "pod_seconds", x->pod_seconds);
  cJSON_AddNumberToObject(o, "scaling_events", (double)x->events);
  cJSON_AddNumberToObject(o, "coverage", x->coverage);
  if (engine) {
    cJSON_AddNumberToObject(o, "period_seconds", (double)x->period_ms / 1000.0);
    cJSON *ans = cJSON_AddObjectToObject(o, "answered");
    for (int m = 0; m < PS_MODEL_COUNT; m++)
      if (x->answered[m] > 0)
        cJSON_AddNumberToObject(ans, ps_model_name((enum ps_model)m),
                                (double)x->answered[m] / (double)r->trace.n);
    if (x->note != NULL) cJSON_AddStringToObject(o, "note", x->note);
  }
  return o;
}

int ps_bt_print_json(const struct ps_bt_run *r, FILE *out) {
  const struct ps_bt_options *o = &r->opt;
  cJSON *root = cJSON_CreateObject();
  if (root == NULL) return UV_ENOMEM;
  cJSON_AddStringToObject(root, "trace", o->trace_path);
  cJSON_AddNumberToObject(root, "rows", (double)r->trace.n);
  cJSON_AddNumberToObject(root, "interval_seconds", (double)r->trace.step_ms / 1000.0);
  cJSON_AddNumberToObject(root, "lookahead_seconds", (double)o->lookahead_ms / 1000.0);
  cJSON_AddNumberToObject(root, "horizon_rows", (double)r->horizon_steps);
  cJSON_AddNumberToObject(root, "startup_seconds", (double)o->startup_ms / 1000.0);
  cJSON_AddNumberToObject(root, "threshold", r->threshold);
  cJSON_AddStringToObject(root, "threshold_source", r->threshold_given ? "flag" : "median rate / 5");
  cJSON_AddNumberToObject(root, "median_rate", r->median_rate);
  cJSON_AddNumberToObject(root, "max_rate", r->max_rate);
  cJSON_AddStringToObject(root, "model", ps_model_name(o->model));
  /* "period": "auto" or the duration given; "period_seconds": the given one, null for auto (what was
   * detected is in each engine's result). */
  if (o->period_ms > 0) {
    char pd[32];
    ps_duration_format(o->period_ms, pd, sizeof pd);
    cJSON_AddStringToObject(root, "period", pd);
    cJSON_AddNumberToObject(root, "period_seconds", (double)o->period_ms / 1000.0);
  } else {
    cJSON_AddStringToObject(root, "period", "auto");
    cJSON_AddNullToObject(root, "period_seconds");
  }
  cJSON_AddNumberToObject(root, "history_seconds", (double)r->history_ms / 1000.0);
  cJSON_AddNumberToObject(root, "quantile", o->quantile);
  if (o->target_coverage > 0)
    cJSON_AddNumberToObject(root, "target_coverage", o->target_coverage);
  else
    cJSON_AddNullToObject(root, "target_coverage");
  cJSON_AddNumberToObject(root, "headroom", o->headroom);
  cJSON_AddNumberToObject(root, "replay_seconds", r->seconds);
  cJSON *res = cJSON_AddObjectToObject(root, "results");
  cJSON_AddItemToObject(res, "reactive", result_json(r, &r->res[PS_BT_REACTIVE], false));
  cJSON_AddItemToObject(res, "seed", result_json(r, &r->res[PS_BT_SEED], true));
  cJSON_AddItemToObject(res, "model", result_json(r, &r->res[PS_BT_MODEL], true));
  cJSON_AddItemToObject(root, "coverage", ps_bt_coverage_json(r));
  if (o->sweep) cJSON_AddItemToObject(root, "sweep", ps_bt_sweep_json(r));
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (text == NULL) return UV_ENOMEM;
  int rc = fprintf(out, "%s\n", text) < 0 ? UV_EIO : 0;
  free(text);
  return rc;
}

/* ---- CSV ----------------------------------------------------------------------------------------- */

static void put_seconds(FILE *f, int64_t ms) {
  if (ms % 1000 == 0) {
    fprintf(f, "%lld", (long long)(ms / 1000));
  } else {
    fprintf(f, "%.3f", (double)ms / 1000.0);
  }
}

int ps_bt_write_csv(const struct ps_bt_run *r, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    snprintf(err, errlen, "--csv: cannot write %s: %s", path, strerror(errno));
    return UV_EIO;
  }
  fputs("timestamp,demand,forecast,value,replicas_reactive,replicas_prescale\n", f);
  for (size_t i = 0; i < r->trace.n; i++) {
    put_seconds(f, r->trace.t0_ms + (int64_t)i * r->trace.step_ms);
    fprintf(f, ",%.10g,%.10g,%.10g,%lld,%lld\n", r->rate[i], r->pred[PS_BT_MODEL][i],
            r->metric[PS_BT_MODEL][i], (long long)r->replicas[PS_BT_REACTIVE][i],
            (long long)r->replicas[PS_BT_MODEL][i]);
  }
  return ps_bt_close_output(f, "csv", path, err, errlen);
}

int ps_bt_close_output(FILE *f, const char *flag, const char *path, char *err, size_t errlen) {
  bool bad = ferror(f) != 0;
  if (fclose(f) != 0) bad = true;
  if (bad) {
    snprintf(err, errlen, "--%s: writing %s failed", flag, path);
    return UV_EIO;
  }
  return 0;
}

/* ---- SVG ----------------------------------------------------------------------------------------- */

int ps_bt_write_svg(const struct ps_bt_run *r, const char *path, char *err, size_t errlen) {
  size_t n = r->trace.n;
  double *cap_r = malloc(n * sizeof *cap_r), *cap_m = malloc(n * sizeof *cap_m);
  if (cap_r == NULL || cap_m == NULL) {
    free(cap_r);
    free(cap_m);
    snprintf(err, errlen, "--svg: out of memory");
    return UV_ENOMEM;
  }
  /* Ready capacity in requests/s, at its lowest in each row: the dips are where demand is lost. */
  for (size_t i = 0; i < n; i++) {
    cap_r[i] = r->min_ready[PS_BT_REACTIVE][i] * r->threshold;
    cap_m[i] = r->min_ready[PS_BT_MODEL][i] * r->threshold;
  }
  char title[512], la[32], su[32], fc[64], cp[64];
  const char *base = strrchr(r->opt.trace_path, '/');
  base = base != NULL ? base + 1 : r->opt.trace_path;
  ps_duration_format(r->opt.lookahead_ms, la, sizeof la);
  ps_duration_format(r->opt.startup_ms, su, sizeof su);
  snprintf(title, sizeof title, "prescale backtest: %s, model %s, lookahead %s, startup %s", base,
           r->res[PS_BT_MODEL].name, la, su);
  snprintf(fc, sizeof fc, "forecast (%s, as sent to the HPA)", r->res[PS_BT_MODEL].name);
  snprintf(cp, sizeof cp, "ready capacity, %s", r->res[PS_BT_MODEL].name);
  const struct ps_svg_series s[] = {
      {"demand", "#222222", r->rate, PS_SVG_MAX, 0},
      {fc, "#ff7f0e", r->metric[PS_BT_MODEL], PS_SVG_MAX, 1},
      {cp, "#2ca02c", cap_m, PS_SVG_MIN, 0},
      {"ready capacity, reactive", "#1f77b4", cap_r, PS_SVG_MIN, 0},
  };
  int rc = 0;
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    snprintf(err, errlen, "--svg: cannot write %s: %s", path, strerror(errno));
    rc = UV_EIO;
  } else {
    rc = ps_svg_write(f, title, "requests/s (per column: max of demand and forecast, min of capacity)",
                      r->trace.t0_ms, r->trace.step_ms, n, s, sizeof s / sizeof s[0]);
    if (fclose(f) != 0 && rc == 0) rc = UV_EIO;
    if (rc != 0) snprintf(err, errlen, "--svg: writing %s failed", path);
  }
  free(cap_r);
  free(cap_m);
  return rc;
}
