/* `prescale backtest --sweep` (run.h): the chosen model replayed across margins, one HPA replay per
 * setting, for the cost curve (pod-seconds against under-provisioned pod-seconds).
 *
 * One engine serves every setting: the forecasts and their errors do not depend on the margin, only the
 * answer does (ps_engine_margins), so a sweep costs one engine walk plus one HPA replay per setting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "forecast/engine.h"
#include "run.h"

/* ---- settings ------------------------------------------------------------------------------------ */

/* The quantiles of PS_BT_SWEEP_QUANTILES and --quantile, ascending, each once. A target coverage
 * (issue 13, section 2) would add its points here, with their kind. */
static void settings(struct ps_bt_sweep *sw, double quantile) {
  static const double fixed[] = PS_BT_SWEEP_QUANTILES;
  size_t nf = sizeof fixed / sizeof fixed[0];
  sw->n = 0;
  for (size_t j = 0, added = 0; j <= nf && sw->n < PS_BT_SWEEP_MAX; j++) {
    if (!added && (j == nf || quantile <= fixed[j])) {
      added = 1;
      if (j == nf || quantile < fixed[j]) sw->q[sw->n++] = quantile;
    }
    if (j < nf && sw->n < PS_BT_SWEEP_MAX) sw->q[sw->n++] = fixed[j];
  }
  for (size_t k = 0; k < sw->n; k++) {
    sw->pt[k].kind = PS_BT_MARGIN_QUANTILE;
    sw->pt[k].setting = sw->q[k];
  }
}

/* ---- the replay ---------------------------------------------------------------------------------- */

int ps_bt_sweep_row(struct ps_bt_run *r, size_t i, const struct ps_engine *em,
                    const struct ps_engine_result *fm, char *err, size_t errlen) {
  struct ps_bt_sweep *sw = &r->sweep;
  double margin[PS_BT_SWEEP_MAX], value[PS_BT_SWEEP_MAX];
  int rc;
  if (i == 0) settings(sw, r->opt.quantile);
  if ((rc = ps_engine_margins(em, fm, sw->q, sw->n, margin, value)) != 0) {
    snprintf(err, errlen, "the engine gave no margins at row %zu: %s", i + 1, uv_strerror(rc));
    return rc;
  }
  for (size_t k = 0; k < sw->n; k++) {
    double metric = value[k] * (1.0 + r->opt.headroom); /* as the model's own (replay.c) */
    if (i == 0 &&
        (rc = ps_hpa_init(&sw->hpa[k], r->threshold, r->opt.startup_ms, r->trace.t0_ms, metric)) != 0) {
      snprintf(err, errlen, "cannot start the HPA replay: %s", uv_strerror(rc));
      return rc;
    }
    ps_bt_hpa_row(&sw->hpa[k], r, i, metric);
  }
  return 0;
}

static int by_pods(const void *a, const void *b) {
  double x = ((const struct ps_bt_point *)a)->pod_seconds, y = ((const struct ps_bt_point *)b)->pod_seconds;
  return (x > y) - (x < y);
}

double ps_bt_curve_at(const struct ps_bt_point *pt, size_t n, double pod_seconds) {
  struct ps_bt_point s[PS_BT_SWEEP_MAX];
  if (n == 0 || n > PS_BT_SWEEP_MAX || !isfinite(pod_seconds)) return NAN;
  memcpy(s, pt, n * sizeof *s);
  qsort(s, n, sizeof *s, by_pods);
  for (size_t k = 0; k < n; k++) {
    if (s[k].pod_seconds == pod_seconds) return s[k].under_pod_seconds;
    if (k + 1 < n && s[k].pod_seconds < pod_seconds && pod_seconds < s[k + 1].pod_seconds) {
      double f = (pod_seconds - s[k].pod_seconds) / (s[k + 1].pod_seconds - s[k].pod_seconds);
      return s[k].under_pod_seconds + f * (s[k + 1].under_pod_seconds - s[k].under_pod_seconds);
    }
  }
  return NAN;
}

void ps_bt_curve_read(const struct ps_bt_point *pt, size_t n, double pod_seconds, struct ps_bt_reading *out) {
  out->pods = pod_seconds;
  out->under = ps_bt_curve_at(pt, n, pod_seconds);
  out->side = 0;
  out->bound = NAN;
  if (!isnan(out->under) || n == 0) return;
  size_t most = 0;
  for (size_t k = 1; k < n; k++)
    if (pt[k].pod_seconds > pt[most].pod_seconds) most = k;
  if (pod_seconds > pt[most].pod_seconds) {
    out->side = 1;
    out->bound = pt[most].under_pod_seconds;
  } else {
    out->side = -1;
  }
}

void ps_bt_sweep_finish(struct ps_bt_run *r) {
  struct ps_bt_sweep *sw = &r->sweep;
  for (size_t k = 0; k < sw->n; k++) {
    const struct ps_hpa *h = &sw->hpa[k];
    struct ps_bt_point *p = &sw->pt[k];
    p->pod_seconds = h->pod_ms / 1000.0;
    p->under_pod_seconds = h->under_pod_ms / 1000.0;
    p->under_fraction = h->elapsed_ms > 0 ? (double)h->under_ms / (double)h->elapsed_ms : 0;
    p->events = h->events;
  }
  ps_bt_curve_read(sw->pt, sw->n, r->res[PS_BT_SEED].pod_seconds, &sw->at_seed);
  ps_bt_curve_read(sw->pt, sw->n, r->res[PS_BT_REACTIVE].pod_seconds * (1 + PS_BT_SWEEP_ABOVE_REACTIVE),
                   &sw->at_reactive);
}

void ps_bt_sweep_free(struct ps_bt_sweep *sw) {
  for (size_t k = 0; k < PS_BT_SWEEP_MAX; k++) ps_hpa_free(&sw->hpa[k]);
  memset(sw, 0, sizeof *sw);
}
