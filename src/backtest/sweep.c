/* `prescale backtest --sweep` (run.h): the chosen model replayed across margins, one HPA replay per
 * setting, for the cost curve (pod-seconds against under-provisioned pod-seconds).
 *
 * One engine serves every setting: the forecasts and their errors do not depend on the margin, only the
 * answer does (ps_engine_margins), so a sweep costs one engine walk plus one HPA replay per setting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "forecast/coverage.h"
#include "forecast/engine.h"
#include "run.h"

/* ---- settings ------------------------------------------------------------------------------------ */

/* Each coverage point's tuner, as fresh as the engine's (at the start, and at each --reload). */
static int start_tuners(struct ps_bt_run *r) {
  struct ps_bt_sweep *sw = &r->sweep;
  size_t h = r->horizon_steps > 0 ? r->horizon_steps : 1;
  for (size_t k = sw->nq; k < sw->n; k++) {
    ps_cov_free(&sw->cov[k]);
    int rc = ps_cov_init(&sw->cov[k], sw->pt[k].setting, h, r->trace.step_ms);
    if (rc != 0) return rc;
  }
  return 0;
}

/* The quantiles of PS_BT_SWEEP_QUANTILES and --quantile, ascending, each once; then the target coverages
 * of PS_BT_SWEEP_COVERAGES and --target-coverage, likewise. */
static size_t merge(double *out, size_t room, const double *fixed, size_t nf, double extra) {
  size_t n = 0;
  for (size_t j = 0, added = extra > 0 ? 0 : 1; j <= nf && n < room; j++) {
    if (!added && (j == nf || extra <= fixed[j])) {
      added = 1;
      if (j == nf || extra < fixed[j]) out[n++] = extra;
    }
    if (j < nf && n < room) out[n++] = fixed[j];
  }
  return n;
}

static int settings(struct ps_bt_run *r) {
  struct ps_bt_sweep *sw = &r->sweep;
  static const double fixed[] = PS_BT_SWEEP_QUANTILES, cover[] = PS_BT_SWEEP_COVERAGES;
  double c[PS_BT_SWEEP_MAX];
  /* A quantile of 0 is one of the fixed ones: the merge adds --quantile only when it is above 0. */
  sw->nq = merge(sw->q, PS_BT_SWEEP_MAX, fixed, sizeof fixed / sizeof fixed[0], r->opt.quantile);
  size_t nc =
      merge(c, PS_BT_SWEEP_MAX - sw->nq, cover, sizeof cover / sizeof cover[0], r->opt.target_coverage);
  sw->n = sw->nq + nc;
  for (size_t k = 0; k < sw->n; k++) {
    bool q = k < sw->nq;
    sw->pt[k].kind = q ? PS_BT_MARGIN_QUANTILE : PS_BT_MARGIN_COVERAGE;
    sw->pt[k].setting = q ? sw->q[k] : c[k - sw->nq];
    if ((sw->value[k] = malloc(r->trace.n * sizeof *sw->value[k])) == NULL) return UV_ENOMEM;
  }
  return start_tuners(r);
}

/* ---- the replay ---------------------------------------------------------------------------------- */

/* The engine learns a row once PS_ENGINE_REVISABLE + 1 newer ones were put (engine.h): the row whose
 * window's outcome a coverage tuner learns at row i, as the engine's own does. Its answer covered rows
 * lo..end; their peak is taken from the rates as the engine's float history holds them. */
static void observe(struct ps_bt_run *r, size_t k, size_t i) {
  size_t delay = PS_ENGINE_REVISABLE + 1;
  if (i < delay) return;
  int64_t end = (int64_t)(i - delay), lo;
  if (!ps_cov_due(&r->sweep.cov[k], end, &lo)) return;
  double peak = -INFINITY;
  for (int64_t j = lo < 0 ? 0 : lo; j <= end; j++) peak = fmax(peak, (float)r->rate[j]);
  ps_cov_observe(&r->sweep.cov[k], end, peak > -INFINITY ? peak : NAN);
}

int ps_bt_sweep_row(struct ps_bt_run *r, size_t i, const struct ps_engine *em,
                    const struct ps_engine_result *fm, char *err, size_t errlen) {
  struct ps_bt_sweep *sw = &r->sweep;
  double margin[PS_BT_SWEEP_MAX], value[PS_BT_SWEEP_MAX];
  int rc = 0;
  if (i == 0)
    rc = settings(r);
  else if (r->opt.reload_ms > 0 && (uint64_t)i * (uint64_t)r->trace.step_ms % r->opt.reload_ms == 0)
    rc = start_tuners(r); /* the engine restarted (replay.c) */
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the sweep: %s", uv_strerror(rc));
    return rc;
  }
  if ((rc = ps_engine_margins(em, fm, sw->q, sw->nq, margin, value)) != 0) {
    snprintf(err, errlen, "the engine gave no margins at row %zu: %s", i + 1, uv_strerror(rc));
    return rc;
  }
  for (size_t k = sw->nq; k < sw->n; k++) {
    double qz, vol;
    observe(r, k, i);
    ps_engine_coverage_basis(em, sw->pt[k].setting, &qz, &vol);
    value[k] = ps_engine_answer(fm->predicted, ps_cov_margin(&sw->cov[k], qz, vol), fm->current);
    if (r->horizon_steps > 0)
      ps_cov_answer(&sw->cov[k], (int64_t)i + 1, (int64_t)(i + r->horizon_steps), value[k]);
  }
  for (size_t k = 0; k < sw->n; k++) {
    double metric = value[k] * (1.0 + r->opt.headroom); /* as the model's own (replay.c) */
    sw->value[k][i] = value[k];
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
    size_t hit = 0, all = 0;
    for (size_t i = 0; i < r->trace.n; i++) {
      if (isnan(r->target[i])) continue;
      all++;
      hit += ps_bt_covered(sw->value[k][i], r->target[i]);
    }
    p->coverage = all > 0 ? (double)hit / (double)all : NAN;
  }
  ps_bt_curve_read(sw->pt, sw->n, r->res[PS_BT_SEED].pod_seconds, &sw->at_seed);
  ps_bt_curve_read(sw->pt, sw->n, r->res[PS_BT_REACTIVE].pod_seconds * (1 + PS_BT_SWEEP_ABOVE_REACTIVE),
                   &sw->at_reactive);
}

void ps_bt_sweep_free(struct ps_bt_sweep *sw) {
  for (size_t k = 0; k < PS_BT_SWEEP_MAX; k++) {
    ps_hpa_free(&sw->hpa[k]);
    ps_cov_free(&sw->cov[k]);
    free(sw->value[k]);
  }
  memset(sw, 0, sizeof *sw);
}
