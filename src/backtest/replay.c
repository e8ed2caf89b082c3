/* The walk-forward replay of `prescale backtest` (run.h): a trace through the forecasting engine (the
 * same ps_engine the server drives) and through a model of the HPA, for the chosen model and two
 * baselines.
 *
 * At each row the sample is put into the engines and a forecast is asked for "now" = the row's start;
 * nothing reads a later row, except the fixed sizing of a pod (the default threshold is the whole trace's
 * median rate / 5, the same for every approach) and the scoring, which happens after the walk. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "config.h"
#include "forecast/engine.h"
#include "run.h"

#define WORDS_MAX 160 /* bytes of a trigger check's words */

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

/* ---- sizing -------------------------------------------------------------------------------------- */

/* `--flag: "value" <words>`, as the trigger checks word it (value: a duration in ms). */
static int flag_fail(char *err, size_t errlen, const char *flag, int64_t ms, const char *words) {
  char d[32];
  ps_duration_format(ms, d, sizeof d);
  return fail(err, errlen, UV_EINVAL, "--%s: \"%s\" %s", flag, d, words);
}

/* The engines' history, as the server sizes a target's (ps_default_history_ms) with the period given or
 * detected: the seed engine detects one whatever the model, so a model without a season keeps the
 * detection's history too, and a period is checked against the interval whatever the model. --history
 * overrides. The checks against the step are the trigger's. */
static int size_history(struct ps_bt_run *r, bool *usage_err, char *err, size_t errlen) {
  const struct ps_bt_options *o = &r->opt;
  int64_t step = r->trace.step_ms, hist;
  char words[WORDS_MAX], d[32];
  const char *why;
  *usage_err = true;
  if (o->period_ms > 0 && (why = ps_trigger_period_problem(o->period_ms, step, words, sizeof words)) != NULL)
    return flag_fail(err, errlen, "period", o->period_ms, why);
  if (o->period_ms / step > PS_MAX_HISTORY_POINTS / 2) {
    ps_duration_format(step, d, sizeof d);
    snprintf(words, sizeof words, "is more than %d steps of %s; two periods must fit the history",
             PS_MAX_HISTORY_POINTS / 2, d);
    return flag_fail(err, errlen, "period", o->period_ms, words);
  }
  if (o->history_ms > 0) {
    if ((why = ps_trigger_history_problem(o->history_ms, step, o->period_ms, &hist, words, sizeof words)))
      return flag_fail(err, errlen, "history", o->history_ms, why);
  } else {
    hist = ps_default_history_ms(step, o->period_ms, o->period_ms == 0);
  }
  *usage_err = false;
  r->history_ms = hist;
  r->capacity = (size_t)(hist / step) + 1;
  return 0;
}

static int alloc_rows(struct ps_bt_run *r) {
  size_t n = r->trace.n;
  r->rate = malloc(n * sizeof *r->rate);
  r->target = malloc(n * sizeof *r->target);
  bool ok = r->rate != NULL && r->target != NULL;
  for (int w = 0; w < PS_BT_COUNT; w++) {
    r->pred[w] = malloc(n * sizeof *r->pred[w]);
    r->metric[w] = malloc(n * sizeof *r->metric[w]);
    r->replicas[w] = malloc(n * sizeof *r->replicas[w]);
    r->min_ready[w] = malloc(n * sizeof *r->min_ready[w]);
    ok =
        ok && r->pred[w] != NULL && r->metric[w] != NULL && r->replicas[w] != NULL && r->min_ready[w] != NULL;
  }
  return ok ? 0 : UV_ENOMEM;
}

void ps_bt_run_free(struct ps_bt_run *r) {
  ps_trace_free(&r->trace);
  free(r->rate);
  free(r->target);
  for (int w = 0; w < PS_BT_COUNT; w++) {
    free(r->pred[w]);
    free(r->metric[w]);
    free(r->replicas[w]);
    free(r->min_ready[w]);
  }
  ps_bt_sweep_free(&r->sweep);
  ps_bt_coverage_free(&r->coverage);
  memset(r, 0, sizeof *r);
}

/* ---- rates and the threshold --------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(const double *x, size_t n) {
  double *c = malloc(n * sizeof *c);
  if (c == NULL) return NAN;
  memcpy(c, x, n * sizeof *c);
  qsort(c, n, sizeof *c, cmp_double);
  double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
  free(c);
  return m;
}

/* Demand rates (requests/s) of every row, their maximum and median; returns their mean. */
static double rates(struct ps_bt_run *r) {
  const struct ps_trace *tr = &r->trace;
  double step_s = (double)tr->step_ms / 1000.0, sum = 0;
  r->max_rate = 0;
  for (size_t i = 0; i < tr->n; i++) {
    r->rate[i] = tr->v[i] / step_s;
    sum += r->rate[i];
    if (r->rate[i] > r->max_rate) r->max_rate = r->rate[i];
  }
  r->median_rate = median(r->rate, tr->n);
  return sum / (double)tr->n;
}

/* --threshold, or a pod sized so that the typical load needs a handful of them: scaling decisions are
 * then neither swamped by the min of 1 replica nor too fine to matter. */
static int threshold(struct ps_bt_run *r, double mean, char *err, size_t errlen) {
  if (r->opt.threshold > 0) {
    r->threshold = r->opt.threshold;
    r->threshold_given = true;
    return 0;
  }
  double base = r->median_rate > 0 ? r->median_rate : mean;
  if (!(base > 0))
    return fail(err, errlen, UV_EINVAL, "%s: every value is 0: no demand to scale for (or pass --threshold)",
                r->opt.trace_path);
  r->threshold = base / PS_BT_THRESHOLD_DIVISOR;
  return 0;
}

/* ---- the walk ------------------------------------------------------------------------------------ */

static int64_t floor_mod(int64_t a, int64_t b) {
  int64_t m = a % b;
  return m < 0 ? m + b : m;
}

void ps_bt_hpa_row(struct ps_hpa *h, const struct ps_bt_run *r, size_t i, double metric) {
  int64_t step = r->trace.step_ms, t = r->trace.t0_ms + (int64_t)i * step;
  /* The demand is constant within the row; the HPA syncs every 15 s from the trace's start (several times
   * per row at a 60 s interval, once every 15 rows at 1 s), reading the metric of the row. */
  int64_t since = (int64_t)i * step,
          sync = r->trace.t0_ms + (since + PS_HPA_SYNC_MS - 1) / PS_HPA_SYNC_MS * PS_HPA_SYNC_MS;
  ps_hpa_mark_min(h);
  for (; sync < t + step; sync += PS_HPA_SYNC_MS) {
    ps_hpa_advance(h, sync, r->rate[i]);
    ps_hpa_sync(h, metric);
  }
  ps_hpa_advance(h, t + step, r->rate[i]);
}

/* Row i of the walk for every approach: what the HPA reads, then the HPA's syncs within the row. */
static int walk_row(struct ps_bt_run *r, struct ps_hpa hpa[PS_BT_COUNT], size_t i, char *err, size_t errlen) {
  int64_t t = r->trace.t0_ms + (int64_t)i * r->trace.step_ms;
  int rc;
  for (int w = 0; w < PS_BT_COUNT; w++) {
    if (i == 0 && (rc = ps_hpa_init(&hpa[w], r->threshold, r->opt.startup_ms, t, r->metric[w][0])) != 0)
      return fail(err, errlen, rc, "cannot start the HPA replay: %s", uv_strerror(rc));
    ps_bt_hpa_row(&hpa[w], r, i, r->metric[w][i]);
    r->replicas[w][i] = hpa[w].replicas;
    r->min_ready[w][i] = (double)hpa[w].min_ready;
  }
  return 0;
}

/* --reload at row i: fresh engines loaded with the rows their history holds before i, as a restart's
 * first load does (in bulk, or put by put with --reload-puts). On failure the old engines stay. */
static int reload(struct ps_bt_run *r, const struct ps_engine_config *mc, const struct ps_engine_config *sc,
                  struct ps_engine *eng[2], size_t i, int64_t off) {
  struct ps_engine *fresh[2] = {NULL, NULL};
  int rc;
  if ((rc = ps_engine_new(mc, &fresh[0])) != 0 || (rc = ps_engine_new(sc, &fresh[1])) != 0) {
    ps_engine_free(fresh[0]);
    return rc;
  }
  size_t from = i > r->capacity ? i - r->capacity : 0;
  for (int k = 0; k < 2; k++) {
    if (!r->opt.reload_puts) ps_engine_bulk_begin(fresh[k]);
    for (size_t j = from; j < i; j++)
      ps_engine_put(fresh[k], r->trace.t0_ms + (int64_t)j * r->trace.step_ms - off, r->rate[j]);
    if (!r->opt.reload_puts) ps_engine_bulk_end(fresh[k]);
    ps_engine_free(eng[k]);
    eng[k] = fresh[k];
  }
  return 0;
}

/* The engines (the model, and the seasonal naive seed with the same period setting) and the HPA models
 * over every row. hpa[] is the caller's to free, whatever this returns. */
static int walk(struct ps_bt_run *r, struct ps_hpa hpa[PS_BT_COUNT], char *err, size_t errlen) {
  const struct ps_bt_options *o = &r->opt;
  const struct ps_trace *tr = &r->trace;
  int64_t step = tr->step_ms;
  struct ps_engine_config mc = {.model = o->model,
                                .step_ms = step,
                                .period_ms = o->period_ms,
                                .lookahead_ms = o->lookahead_ms,
                                .capacity = r->capacity,
                                .quantile = o->quantile,
                                .target_coverage = o->target_coverage};
  struct ps_engine_config sc = mc;
  sc.model = PS_MODEL_SEASONAL;
  sc.quantile = 0;
  sc.target_coverage = 0;
  struct ps_engine *em = NULL, *es = NULL;
  int rc;
  if ((rc = ps_engine_new(&mc, &em)) != 0 || (rc = ps_engine_new(&sc, &es)) != 0) {
    ps_engine_free(em);
    return fail(err, errlen, rc, "cannot create the forecasting engine: %s", uv_strerror(rc));
  }
  r->res[PS_BT_REACTIVE].name = "reactive";
  r->res[PS_BT_SEED].name = "seed";
  r->res[PS_BT_MODEL].name = ps_model_name(o->model);

  /* Engine times are the trace's shifted onto the step grid (the engine rounds down otherwise): the
   * window (now, now + lookahead] then holds rows i+1 .. i+horizon exactly. */
  int64_t off = floor_mod(tr->t0_ms, step);
  struct timespec t_start, t_end;
  clock_gettime(CLOCK_MONOTONIC, &t_start);
  for (size_t i = 0; i < tr->n && rc == 0; i++) {
    int64_t et = tr->t0_ms + (int64_t)i * step - off;
    double rate = r->rate[i];
    struct ps_engine_result fm, fs;
    if (o->reload_ms > 0 && i > 0 && (uint64_t)i * (uint64_t)step % o->reload_ms == 0) {
      struct ps_engine *eng[2] = {em, es};
      if ((rc = reload(r, &mc, &sc, eng, i, off)) != 0) {
        rc = fail(err, errlen, rc, "cannot create the forecasting engine: %s", uv_strerror(rc));
        break;
      }
      em = eng[0];
      es = eng[1];
    }
    ps_engine_put(em, et, rate);
    ps_engine_put(es, et, rate);
    if ((rc = ps_engine_forecast(em, et, &fm)) != 0 || (rc = ps_engine_forecast(es, et, &fs)) != 0) {
      rc = fail(err, errlen, rc, "the engine gave no forecast at row %zu: %s", i + 1, uv_strerror(rc));
      break;
    }
    r->pred[PS_BT_REACTIVE][i] = rate;
    r->pred[PS_BT_SEED][i] = fs.predicted;
    r->pred[PS_BT_MODEL][i] = fm.predicted;
    r->metric[PS_BT_REACTIVE][i] = rate;
    r->metric[PS_BT_SEED][i] = fs.value;
    r->metric[PS_BT_MODEL][i] = fm.value * (1.0 + o->headroom);
    if ((unsigned)fm.chosen < PS_MODEL_COUNT) r->res[PS_BT_MODEL].answered[fm.chosen]++;
    if ((unsigned)fs.chosen < PS_MODEL_COUNT) r->res[PS_BT_SEED].answered[fs.chosen]++;
    r->res[PS_BT_MODEL].period_ms = fm.period_ms;
    r->res[PS_BT_SEED].period_ms = fs.period_ms;
    r->res[PS_BT_MODEL].note = fm.note; /* the state at the end, like period_ms */
    r->res[PS_BT_SEED].note = fs.note;
    rc = walk_row(r, hpa, i, err, errlen);
    if (rc == 0 && o->sweep) rc = ps_bt_sweep_row(r, i, em, &fm, err, errlen);
  }
  clock_gettime(CLOCK_MONOTONIC, &t_end);
  r->seconds = (double)(t_end.tv_sec - t_start.tv_sec) + (double)(t_end.tv_nsec - t_start.tv_nsec) / 1e9;
  ps_engine_free(em);
  ps_engine_free(es);
  return rc;
}

/* ---- the score ----------------------------------------------------------------------------------- */

/* After the walk: the HPA's outcomes, and each forecast against the max demand over its window. */
static int score(struct ps_bt_run *r, const struct ps_hpa hpa[PS_BT_COUNT], char *err, size_t errlen) {
  size_t n = r->trace.n;
  for (int w = 0; w < PS_BT_COUNT; w++) {
    struct ps_bt_result *res = &r->res[w];
    res->under_pod_seconds = hpa[w].under_pod_ms / 1000.0;
    res->under_fraction = hpa[w].elapsed_ms > 0 ? (double)hpa[w].under_ms / (double)hpa[w].elapsed_ms : 0;
    res->pod_seconds = hpa[w].pod_ms / 1000.0;
    res->events = hpa[w].events;
  }
  size_t *scratch = malloc(n * sizeof *scratch);
  if (scratch == NULL) return fail(err, errlen, UV_ENOMEM, "out of memory for %zu rows", n);
  for (size_t i = 0; i < n; i++) r->target[i] = NAN;
  size_t k = ps_score_window_max(r->rate, n, r->horizon_steps, r->target, scratch);
  for (int w = 0; w < PS_BT_COUNT; w++)
    ps_score_compute(r->pred[w], r->pred[PS_BT_REACTIVE], r->target, k, &r->res[w].score);
  free(scratch);
  return 0;
}

/* ---- the replay ---------------------------------------------------------------------------------- */

int ps_bt_replay(struct ps_bt_run *r, bool *usage_err, char *err, size_t errlen) {
  *usage_err = false;
  const struct ps_bt_options *o = &r->opt;
  size_t n = r->trace.n;
  char d1[32], d2[32];
  int rc;

  r->horizon_steps = (size_t)(o->lookahead_ms / r->trace.step_ms);
  if (n < r->horizon_steps + PS_BT_MIN_SCORED) {
    ps_duration_format(r->trace.step_ms, d1, sizeof d1);
    ps_duration_format(o->lookahead_ms, d2, sizeof d2);
    return fail(err, errlen, UV_EINVAL,
                "%s: %zu rows at interval %s: a backtest at lookahead %s needs at least %zu", o->trace_path,
                n, d1, d2, r->horizon_steps + PS_BT_MIN_SCORED);
  }
  if ((rc = size_history(r, usage_err, err, errlen)) != 0) return rc;
  if (alloc_rows(r) != 0) return fail(err, errlen, UV_ENOMEM, "out of memory for %zu rows", n);
  if ((rc = threshold(r, rates(r), err, errlen)) != 0) return rc;

  struct ps_hpa hpa[PS_BT_COUNT];
  memset(hpa, 0, sizeof hpa);
  rc = walk(r, hpa, err, errlen);
  if (rc == 0) rc = score(r, hpa, err, errlen);
  if (rc == 0 && (rc = ps_bt_coverage_compute(r)) != 0)
    rc = fail(err, errlen, rc, "out of memory for %zu rows", n);
  if (rc == 0 && o->sweep) ps_bt_sweep_finish(r);
  for (int w = 0; w < PS_BT_COUNT; w++) ps_hpa_free(&hpa[w]);
  return rc;
}
