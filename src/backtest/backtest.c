/* `prescale backtest`: walk-forward replay of a request trace through the forecasting engine (the same
 * ps_engine the server drives) and through a model of the HPA, for the chosen model and two baselines.
 *
 * At each row the sample is put into the engines and a forecast is asked for "now" = the row's start;
 * nothing reads a later row, except the fixed sizing of a pod (the default threshold is the whole trace's
 * median rate / 5, the same for every approach) and the scoring, which happens after the walk. */
#include "backtest.h"

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

/* ---- usage --------------------------------------------------------------------------------------- */

static void usage(FILE *out) {
  fputs(
      "Usage: prescale backtest TRACE.csv [flags]\n"
      "\n"
      "Replays a request trace through prescale's forecasting engine and a model of the Kubernetes HPA,\n"
      "for the chosen model and two baselines, and prints forecast errors and scaling outcomes.\n"
      "TRACE.csv: `timestamp_seconds,value` per line after a header; value = requests in the interval\n"
      "starting at the timestamp; evenly spaced rows. The interval is the engine's step.\n"
      "\n"
      "Flags (durations like 30s, 2m, 1h30m, 1d):\n"
      "  --lookahead DUR   forecast window (now, now + DUR] (default 2m)\n"
      "  --startup DUR     time from a scale-up decision to the new pods being ready (default 60s)\n"
      "  --threshold X     requests/s one pod serves (default: the trace's median rate / 5)\n"
      "  --model M         auto, holtwinters, seasonal, linear or last (default auto)\n"
      "  --period P        auto (detected) or a duration, a multiple of the interval (default auto)\n"
      "  --history DUR     history the engines keep (default as the server: max(3 x period, 1h), or 8d\n"
      "                    when the period is detected; at most 100000 steps)\n"
      "  --quantile Q      add the Q quantile of the model's own errors (0 = none, or 0.5 to <1; default\n"
      "                    0.9, as the server)\n"
      "  --headroom H      multiply the model's answer by (1 + H) (default 0)\n"
      "  --json            print the results as JSON instead of text\n"
      "  --svg FILE        draw demand, forecast and ready capacity (reactive vs prescale) as SVG\n"
      "  --csv FILE        write one row per trace row:\n"
      "                    timestamp,demand,forecast,value,replicas_reactive,replicas_prescale\n"
      "  -h, --help        this text\n"
      "\n"
      "Approaches: reactive (the HPA reads the current rate), seed (seasonal naive with the period given\n"
      "or detected, floored at the current rate), and the model (prescale's answer: max(current, forecast\n"
      "+ margin) x (1 + headroom)).\n"
      "\n"
      "Forecast error: at each row t, the forecast of the max demand over (t, t + lookahead] against the\n"
      "actual max over those rows (with a lookahead shorter than the interval, the current row); MAE, RMSE\n"
      "(requests/s) and MASE = MAE / MAE of the last-value forecast over the same points.\n"
      "\n"
      "HPA replay: demand rate = value / interval, constant within a row. Every 15 s the HPA reads the\n"
      "metric (reactive: the current rate; seed and model: their answer, updated once per row) and proposes\n"
      "ceil(metric / threshold) replicas, or keeps the current ones when |metric / (replicas x threshold)\n"
      "- 1| <= 0.1; the replicas set are the highest proposal of the last 300 s (scale-down stabilization;\n"
      "scale-up is immediate); at least 1. New pods are ready --startup after the decision; a scale-down\n"
      "is immediate (starting pods go first). The replay starts with the replicas the first metric asks\n"
      "for, all ready. Under-provisioned pod-seconds = integral of max(0, demand / threshold - ready pods)\n"
      "dt; pod-seconds count ready and starting pods; events = decisions that changed replicas.\n"
      "\n"
      "Exit status: 0 ok, 1 failure (unreadable or bad trace, unwritable output), 2 usage.\n",
      out);
}

/* ---- flags --------------------------------------------------------------------------------------- */

static int usage_error(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "prescale backtest: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\nRun 'prescale backtest --help' for the flags.\n");
  return 2;
}

static bool parse_double(const char *s, double *out) {
  char *end;
  if (s == NULL || *s == '\0') return false;
  double d = strtod(s, &end);
  if (*end != '\0' || !isfinite(d)) return false;
  *out = d;
  return true;
}

/* 0 to go on, or the exit status (0 after --help, 2 for a bad flag). */
static int parse_flags(struct ps_bt_options *o, int argc, char **argv, bool *done) {
  *done = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      *done = true;
      return 0;
    }
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      if (a[0] == '-' && a[1] != '\0') return usage_error("unknown flag %s%s", a, "");
      if (o->trace_path != NULL) return usage_error("one trace only, got %s and %s", o->trace_path, a);
      o->trace_path = a;
      continue;
    }
    if (strcmp(a, "--json") == 0) {
      o->json = true;
      continue;
    }
    /* --flag=V or --flag V */
    char name[32];
    const char *eq = strchr(a, '='), *v;
    size_t nl = eq != NULL ? (size_t)(eq - a) : strlen(a);
    if (nl >= sizeof name) return usage_error("unknown flag %s%s", a, "");
    memcpy(name, a, nl);
    name[nl] = '\0';
    static const char *const with_value[] = {"--lookahead", "--startup", "--threshold", "--model",
                                             "--period",    "--history", "--quantile",  "--headroom",
                                             "--svg",       "--csv"};
    bool known = false;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
      known |= strcmp(name, with_value[k]) == 0;
    if (!known) return usage_error("unknown flag %s%s", name, "");
    if (eq != NULL) {
      v = eq + 1;
    } else {
      if (i + 1 >= argc) return usage_error("%s needs a value%s", name, "");
      v = argv[++i];
    }
    int64_t ms;
    double d;
    if (strcmp(name, "--lookahead") == 0) {
      if (ps_duration_parse(v, &ms) != 0 || ms > PS_MAX_LOOKAHEAD_MS)
        return usage_error("--lookahead: \"%s\" is not a duration from 0 to 1d (e.g. 2m)%s", v, "");
      o->lookahead_ms = ms;
    } else if (strcmp(name, "--startup") == 0) {
      if (ps_duration_parse(v, &ms) != 0 || ms > PS_HPA_MAX_STARTUP_MS)
        return usage_error("--startup: \"%s\" is not a duration from 0 to 1d (e.g. 60s)%s", v, "");
      o->startup_ms = ms;
    } else if (strcmp(name, "--history") == 0) {
      if (ps_duration_parse(v, &ms) != 0 || ms <= 0)
        return usage_error("--history: \"%s\" is not a duration > 0 (e.g. 8d)%s", v, "");
      o->history_ms = ms;
    } else if (strcmp(name, "--period") == 0) {
      if (strcmp(v, "auto") == 0) {
        o->period_ms = 0;
      } else if (ps_duration_parse(v, &ms) != 0 || ms <= 0) {
        return usage_error("--period: \"%s\" is not auto or a duration > 0 (e.g. 1d)%s", v, "");
      } else {
        o->period_ms = ms;
      }
    } else if (strcmp(name, "--threshold") == 0) {
      if (!parse_double(v, &d) || !(d > 0))
        return usage_error("--threshold: \"%s\" is not a number > 0 (requests/s per pod)%s", v, "");
      o->threshold = d;
    } else if (strcmp(name, "--quantile") == 0) {
      if (!parse_double(v, &d) || !(d == 0 || (d >= PS_MIN_QUANTILE && d < 1)))
        return usage_error("--quantile: \"%s\" is not 0 (none) or a number from 0.5 to below 1%s", v, "");
      o->quantile = d == 0 ? 0 : d;
    } else if (strcmp(name, "--headroom") == 0) {
      if (!parse_double(v, &d) || !(d >= 0 && d <= PS_BT_MAX_HEADROOM))
        return usage_error("--headroom: \"%s\" is not a number from 0 to 100%s", v, "");
      o->headroom = d == 0 ? 0 : d;
    } else if (strcmp(name, "--model") == 0) {
      if (ps_model_parse(v, &o->model) != 0)
        return usage_error("--model: \"%s\" is not auto, holtwinters, seasonal, linear or last%s", v, "");
    } else if (strcmp(name, "--svg") == 0) {
      o->svg_path = v;
    } else if (strcmp(name, "--csv") == 0) {
      o->csv_path = v;
    }
  }
  if (o->trace_path == NULL)
    return usage_error("a trace file is required (prescale backtest TRACE.csv)%s%s", "", "");
  return 0;
}

/* ---- sizing -------------------------------------------------------------------------------------- */

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

static int64_t round_up(int64_t v, int64_t step) { return (v + step - 1) / step * step; }

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

/* The engines' history, as the server sizes a target's (ps_default_history_ms) with the period given or
 * detected: the seed engine detects one whatever the model, so a model without a season keeps the
 * detection's history too; --history overrides. */
static int size_history(struct ps_bt_run *r, bool *usage_err, char *err, size_t errlen) {
  const struct ps_bt_options *o = &r->opt;
  int64_t step = r->trace.step_ms, hist;
  int64_t max_hist = (int64_t)PS_MAX_HISTORY_POINTS * step;
  char d1[32], d2[32];
  ps_duration_format(step, d2, sizeof d2);
  if (o->period_ms > 0) {
    ps_duration_format(o->period_ms, d1, sizeof d1);
    if (o->period_ms % step != 0 || o->period_ms / step < 2) {
      *usage_err = true;
      return fail(err, errlen, UV_EINVAL,
                  "--period: %s is not a multiple of the trace's interval (%s) of at least 2", d1, d2);
    }
    if (o->period_ms / step > PS_MAX_HISTORY_POINTS / 2) {
      *usage_err = true;
      return fail(err, errlen, UV_EINVAL,
                  "--period: %s is more than %d steps of %s; two periods must fit the history", d1,
                  PS_MAX_HISTORY_POINTS / 2, d2);
    }
  }
  if (o->history_ms > 0) {
    hist = round_up(o->history_ms, step);
    if (hist > max_hist) {
      ps_duration_format(o->history_ms, d1, sizeof d1);
      *usage_err = true;
      return fail(err, errlen, UV_EINVAL, "--history: %s is more than %d steps of %s", d1,
                  PS_MAX_HISTORY_POINTS, d2);
    }
  } else {
    hist = ps_default_history_ms(step, o->period_ms, o->period_ms == 0);
  }
  r->history_ms = hist;
  r->capacity = (size_t)(hist / step) + 1;
  return 0;
}

/* ---- the replay ---------------------------------------------------------------------------------- */

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
  memset(r, 0, sizeof *r);
}

static int64_t floor_mod(int64_t a, int64_t b) {
  int64_t m = a % b;
  return m < 0 ? m + b : m;
}

int ps_bt_replay(struct ps_bt_run *r, bool *usage_err, char *err, size_t errlen) {
  *usage_err = false;
  const struct ps_bt_options *o = &r->opt;
  const struct ps_trace *tr = &r->trace;
  size_t n = tr->n;
  int64_t step = tr->step_ms;
  char d1[32], d2[32];
  int rc;

  r->horizon_steps = (size_t)(o->lookahead_ms / step);
  if (n < r->horizon_steps + PS_BT_MIN_SCORED) {
    ps_duration_format(step, d1, sizeof d1);
    ps_duration_format(o->lookahead_ms, d2, sizeof d2);
    return fail(err, errlen, UV_EINVAL,
                "%s: %zu rows at interval %s: a backtest at lookahead %s needs at least %zu", o->trace_path,
                n, d1, d2, r->horizon_steps + PS_BT_MIN_SCORED);
  }
  if ((rc = size_history(r, usage_err, err, errlen)) != 0) return rc;
  if (alloc_rows(r) != 0) return fail(err, errlen, UV_ENOMEM, "out of memory for %zu rows", n);

  double step_s = (double)step / 1000.0;
  double sum = 0;
  r->max_rate = 0;
  for (size_t i = 0; i < n; i++) {
    r->rate[i] = tr->v[i] / step_s;
    sum += r->rate[i];
    if (r->rate[i] > r->max_rate) r->max_rate = r->rate[i];
  }
  r->median_rate = median(r->rate, n);
  if (o->threshold > 0) {
    r->threshold = o->threshold;
    r->threshold_given = true;
  } else {
    /* A pod sized so that the typical load needs a handful of them: scaling decisions are then neither
     * swamped by the min of 1 replica nor too fine to matter. */
    double base = r->median_rate > 0 ? r->median_rate : sum / (double)n;
    if (!(base > 0))
      return fail(err, errlen, UV_EINVAL,
                  "%s: every value is 0: no demand to scale for (or pass --threshold)", o->trace_path);
    r->threshold = base / PS_BT_THRESHOLD_DIVISOR;
  }

  /* The engines: the model, and the seasonal naive seed with the same period setting. */
  struct ps_engine_config mc = {.model = o->model,
                                .step_ms = step,
                                .period_ms = o->period_ms,
                                .lookahead_ms = o->lookahead_ms,
                                .capacity = r->capacity,
                                .quantile = o->quantile};
  struct ps_engine_config sc = mc;
  sc.model = PS_MODEL_SEASONAL;
  sc.quantile = 0;
  struct ps_engine *em = NULL, *es = NULL;
  struct ps_hpa hpa[PS_BT_COUNT];
  memset(hpa, 0, sizeof hpa);
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
  int64_t next_sync = tr->t0_ms; /* the HPA syncs every PS_HPA_SYNC_MS from the trace's start */
  struct timespec t_start, t_end;
  clock_gettime(CLOCK_MONOTONIC, &t_start);
  for (size_t i = 0; i < n && rc == 0; i++) {
    int64_t t = tr->t0_ms + (int64_t)i * step, et = t - off;
    double rate = r->rate[i];
    struct ps_engine_result fm, fs;
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

    for (int w = 0; w < PS_BT_COUNT; w++) {
      if (i == 0 && (rc = ps_hpa_init(&hpa[w], r->threshold, o->startup_ms, t, r->metric[w][0])) != 0) {
        rc = fail(err, errlen, rc, "cannot start the HPA replay: %s", uv_strerror(rc));
        break;
      }
      ps_hpa_mark_min(&hpa[w]);
    }
    if (rc != 0) break;
    /* The demand is constant within the row; the HPA syncs every 15 s (several times per row at a 60 s
     * interval, once every 15 rows at 1 s), reading the metric of the row. */
    for (; next_sync < t + step; next_sync += PS_HPA_SYNC_MS) {
      for (int w = 0; w < PS_BT_COUNT; w++) {
        ps_hpa_advance(&hpa[w], next_sync, rate);
        ps_hpa_sync(&hpa[w], r->metric[w][i]);
      }
    }
    for (int w = 0; w < PS_BT_COUNT; w++) {
      ps_hpa_advance(&hpa[w], t + step, rate);
      r->replicas[w][i] = hpa[w].replicas;
      r->min_ready[w][i] = (double)hpa[w].min_ready;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t_end);
  r->seconds = (double)(t_end.tv_sec - t_start.tv_sec) + (double)(t_end.tv_nsec - t_start.tv_nsec) / 1e9;
  ps_engine_free(em);
  ps_engine_free(es);

  if (rc == 0) {
    for (int w = 0; w < PS_BT_COUNT; w++) {
      struct ps_bt_result *res = &r->res[w];
      res->under_pod_seconds = hpa[w].under_pod_ms / 1000.0;
      res->under_fraction = hpa[w].elapsed_ms > 0 ? (double)hpa[w].under_ms / (double)hpa[w].elapsed_ms : 0;
      res->pod_seconds = hpa[w].pod_ms / 1000.0;
      res->events = hpa[w].events;
    }
    /* Scoring, after the walk: each forecast against the max demand over its window. */
    size_t *scratch = malloc(n * sizeof *scratch);
    if (scratch == NULL) {
      rc = fail(err, errlen, UV_ENOMEM, "out of memory for %zu rows", n);
    } else {
      for (size_t i = 0; i < n; i++) r->target[i] = NAN;
      size_t k = ps_score_window_max(r->rate, n, r->horizon_steps, r->target, scratch);
      for (int w = 0; w < PS_BT_COUNT; w++)
        ps_score_compute(r->pred[w], r->pred[PS_BT_REACTIVE], r->target, k, &r->res[w].score);
      free(scratch);
    }
  }
  for (int w = 0; w < PS_BT_COUNT; w++) ps_hpa_free(&hpa[w]);
  return rc;
}

/* ---- main ---------------------------------------------------------------------------------------- */

int ps_backtest_main(int argc, char **argv) {
  struct ps_bt_run r;
  memset(&r, 0, sizeof r);
  r.opt.lookahead_ms = PS_BT_DEFAULT_LOOKAHEAD_MS;
  r.opt.startup_ms = PS_BT_DEFAULT_STARTUP_MS;
  r.opt.quantile = PS_DEFAULT_QUANTILE; /* the server's default: the same answers */
  r.opt.model = PS_MODEL_AUTO;
  bool done, usage_err;
  int status = parse_flags(&r.opt, argc, argv, &done);
  if (status != 0 || done) return status;

  char err[1024];
  if (ps_trace_load(r.opt.trace_path, &r.trace, err, sizeof err) != 0) {
    fprintf(stderr, "prescale backtest: %s\n", err);
    return 1;
  }
  if (ps_bt_replay(&r, &usage_err, err, sizeof err) != 0) {
    fprintf(stderr, "prescale backtest: %s\n", err);
    if (usage_err) fprintf(stderr, "Run 'prescale backtest --help' for the flags.\n");
    ps_bt_run_free(&r);
    return usage_err ? 2 : 1;
  }
  status = 0;
  if (r.opt.csv_path != NULL && ps_bt_write_csv(&r, r.opt.csv_path, err, sizeof err) != 0) {
    fprintf(stderr, "prescale backtest: %s\n", err);
    status = 1;
  }
  if (r.opt.svg_path != NULL && ps_bt_write_svg(&r, r.opt.svg_path, err, sizeof err) != 0) {
    fprintf(stderr, "prescale backtest: %s\n", err);
    status = 1;
  }
  if (r.opt.json) {
    if (ps_bt_print_json(&r, stdout) != 0) status = 1;
  } else {
    ps_bt_print_text(&r, stdout);
  }
  if (fflush(stdout) != 0) status = 1;
  ps_bt_run_free(&r);
  return status;
}
