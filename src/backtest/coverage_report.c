/* `prescale backtest`'s realised coverage (run.h): the share of rows whose answer covered the actual peak
 * of their lookahead window, for each approach over the whole trace, and for the model day by day; in
 * the text report and the JSON document. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <uv.h>

#include "forecast/coverage.h"
#include "run.h"

/* The engine's answer of row i, before headroom: the HPA of the model reads it times (1 + headroom). */
static double answer(const struct ps_bt_run *r, int w, size_t i) {
  double v = r->metric[w][i];
  return w == PS_BT_MODEL ? v / (1.0 + r->opt.headroom) : v;
}

/* As the engine scores a window (ps_cov_observe): covered when the peak is at most the answer, within
 * the float rounding of the engine's history. */
bool ps_bt_covered(double answer, double peak) { return !(peak > answer + fabs(answer) * PS_COVERAGE_TIE); }

int ps_bt_coverage_compute(struct ps_bt_run *r) {
  size_t n = r->trace.n;
  for (int w = 0; w < PS_BT_COUNT; w++) {
    size_t hit = 0, all = 0;
    for (size_t i = 0; i < n; i++) {
      if (isnan(r->target[i])) continue;
      all++;
      hit += ps_bt_covered(answer(r, w, i), r->target[i]);
    }
    r->res[w].coverage = all > 0 ? (double)hit / (double)all : NAN;
  }
  struct ps_bt_coverage *c = &r->coverage;
  int64_t day_rows = PS_BT_DAY_MS / r->trace.step_ms;
  if (day_rows < 1) day_rows = 1;
  c->ndays = (n + (size_t)day_rows - 1) / (size_t)day_rows;
  c->windows = calloc(c->ndays, sizeof *c->windows);
  c->covered = calloc(c->ndays, sizeof *c->covered);
  if (c->windows == NULL || c->covered == NULL) return UV_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (isnan(r->target[i])) continue;
    size_t d = i / (size_t)day_rows;
    c->windows[d]++;
    c->covered[d] += ps_bt_covered(answer(r, PS_BT_MODEL, i), r->target[i]);
  }
  /* The worst and best days among those with at least half a day of windows (a trace's last, partial
   * day may hold a few); the whole trace when none has. */
  c->worst = c->best = PS_BT_NO_DAY;
  for (size_t d = 0; d < c->ndays; d++) {
    if (c->windows[d] == 0 || (int64_t)c->windows[d] * 2 < day_rows) continue;
    double x = ps_bt_day_coverage(c, d);
    if (c->worst == PS_BT_NO_DAY || x < ps_bt_day_coverage(c, c->worst)) c->worst = d;
    if (c->best == PS_BT_NO_DAY || x > ps_bt_day_coverage(c, c->best)) c->best = d;
  }
  return 0;
}

double ps_bt_day_coverage(const struct ps_bt_coverage *c, size_t d) {
  return d < c->ndays && c->windows[d] > 0 ? (double)c->covered[d] / (double)c->windows[d] : NAN;
}

void ps_bt_coverage_free(struct ps_bt_coverage *c) {
  free(c->windows);
  free(c->covered);
  c->windows = c->covered = NULL;
  c->ndays = 0;
}

void ps_bt_coverage_print_text(const struct ps_bt_run *r, FILE *out) {
  const struct ps_bt_coverage *c = &r->coverage;
  const struct ps_bt_result *m = &r->res[PS_BT_MODEL];
  fprintf(out, "coverage  the answer covered its window's peak in %.2f%% of the windows", 100 * m->coverage);
  if (r->opt.target_coverage > 0) fprintf(out, " (target %g%%)", 100 * r->opt.target_coverage);
  fprintf(out, "; seed %.2f%%, reactive %.2f%%\n", 100 * r->res[PS_BT_SEED].coverage,
          100 * r->res[PS_BT_REACTIVE].coverage);
  if (c->worst != PS_BT_NO_DAY)
    fprintf(out, "          by day of the trace (%zu): worst %.2f%% (day %zu), best %.2f%% (day %zu)\n",
            c->ndays, 100 * ps_bt_day_coverage(c, c->worst), c->worst + 1,
            100 * ps_bt_day_coverage(c, c->best), c->best + 1);
}

cJSON *ps_bt_coverage_json(const struct ps_bt_run *r) {
  const struct ps_bt_coverage *c = &r->coverage;
  cJSON *o = cJSON_CreateObject();
  if (r->opt.target_coverage > 0)
    cJSON_AddNumberToObject(o, "target", r->opt.target_coverage);
  else
    cJSON_AddNullToObject(o, "target");
  cJSON_AddNumberToObject(o, "realised", r->res[PS_BT_MODEL].coverage);
  cJSON *days = cJSON_AddArrayToObject(o, "days");
  for (size_t d = 0; d < c->ndays; d++) {
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "day", (double)(d + 1));
    cJSON_AddNumberToObject(x, "start", (double)(r->trace.t0_ms + (int64_t)d * PS_BT_DAY_MS) / 1000.0);
    cJSON_AddNumberToObject(x, "windows", (double)c->windows[d]);
    cJSON_AddNumberToObject(x, "coverage", ps_bt_day_coverage(c, d));
    cJSON_AddItemToArray(days, x);
  }
  if (c->worst != PS_BT_NO_DAY) {
    cJSON_AddNumberToObject(o, "worst_day", (double)(c->worst + 1));
    cJSON_AddNumberToObject(o, "worst_day_coverage", ps_bt_day_coverage(c, c->worst));
    cJSON_AddNumberToObject(o, "best_day", (double)(c->best + 1));
    cJSON_AddNumberToObject(o, "best_day_coverage", ps_bt_day_coverage(c, c->best));
  } else {
    cJSON_AddNullToObject(o, "worst_day");
    cJSON_AddNullToObject(o, "worst_day_coverage");
    cJSON_AddNullToObject(o, "best_day");
    cJSON_AddNullToObject(o, "best_day_coverage");
  }
  return o;
}
