/* `prescale backtest` internals shared by its files: the options, the walk-forward replay and its
 * outputs. backtest_flags.c reads the flags, replay.c replays, report.c prints and writes the results,
 * backtest.c runs them in turn. */
#ifndef PS_BACKTEST_RUN_H
#define PS_BACKTEST_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "forecast/coverage.h"
#include "forecast/models.h"
#include "hpa.h"
#include "score.h"
#include "trace.h"

/* The flags' defaults are in their table (backtest_flags.c); those named like trigger keys are the
 * keys' own (config.h). */
#define PS_BT_THRESHOLD_DIVISOR 5  /* default threshold: median demand rate / 5 (about 5 pods typical) */
#define PS_BT_MIN_SCORED        10 /* a trace shorter than lookahead steps + this is refused */

/* The fields of the flags named like trigger keys have the type of the key's ps_target_config member. */
struct ps_bt_options {
  const char *trace_path;
  int64_t lookahead_ms;
  int64_t startup_ms;
  double threshold; /* 0 = median rate / PS_BT_THRESHOLD_DIVISOR */
  enum ps_model model;
  int64_t period_ms;  /* 0 = auto (detected by the engine) */
  int64_t history_ms; /* 0 = the server's default for the model and period */
  double quantile;
  double target_coverage; /* 0 = none (--quantile answers); else the engine's target_coverage */
  double headroom;
  uint64_t reload_ms; /* 0 = never; else the engines restart every reload_ms of the trace (a first load) */
  bool reload_puts;   /* that first load put by put instead of in bulk (ps_engine_bulk_begin) */
  bool json;
  const char *svg_path;
  const char *csv_path;
  bool sweep; /* replay the model across margins (sweep.c); --csv and --svg then write the curve */
};

/* The three approaches replayed. */
enum ps_bt_who { PS_BT_REACTIVE, PS_BT_SEED, PS_BT_MODEL, PS_BT_COUNT };

struct ps_bt_result {
  const char *name; /* "reactive", "seed", or the model's name */
  struct ps_score score;
  double under_pod_seconds;
  double under_fraction; /* of the replayed time, demand > ready capacity */
  double pod_seconds;
  int64_t events;
  int64_t period_ms;               /* engines: the season in use at the end (0 = none); reactive: 0 */
  size_t answered[PS_MODEL_COUNT]; /* engines: rows answered by each model */
  const char *note;                /* engines: the note of the last forecast, if any */
  double coverage; /* share of the scored rows whose answer (the model's before headroom) was at least the
                    * max demand over its window (coverage_report.c); NaN when none */
};

/* The model's realised coverage day by day: days of PS_BT_DAY_MS from the trace's first row (not the
 * calendar's: a trace may start anywhere, or at 0). */
#define PS_BT_DAY_MS (24LL * 3600 * 1000)
#define PS_BT_NO_DAY ((size_t)-1)
struct ps_bt_coverage {
  size_t ndays;
  size_t *windows, *covered; /* per day (owned): rows scored, rows covered */
  size_t worst, best;        /* among days with at least half a day of windows; PS_BT_NO_DAY: none */
};

/* --sweep: the margin settings replayed, each a point of the cost curve. */
#define PS_BT_SWEEP_MAX                                                                                      \
  16 /* settings in a sweep: PS_BT_SWEEP_QUANTILES and --quantile, then                                      \
        PS_BT_SWEEP_COVERAGES and --target-coverage */
#define PS_BT_SWEEP_QUANTILES                                                                                \
  { 0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99 }
/* The target coverages (SLO settings, targetCoverage) of every sweep. */
#define PS_BT_SWEEP_COVERAGES                                                                                \
  { 0.8, 0.82, 0.9, 0.95, 0.99 }        /* 0.82: the default (PS_DEFAULT_TARGET_COVERAGE) */
#define PS_BT_SWEEP_ABOVE_REACTIVE 0.10 /* the curve is read at reactive's pod-seconds + 10 % */

/* What sets the margin of a point: a fixed quantile, or a target coverage (forecast/coverage.h). The
 * forecasts stay shared (they do not depend on the margin), but a coverage's margin adapts to its own hits
 * and misses, so each such point has its own tuner (ps_bt_sweep.cov) beside the engine's. */
enum ps_bt_margin_kind { PS_BT_MARGIN_QUANTILE, PS_BT_MARGIN_COVERAGE };

struct ps_bt_point {
  enum ps_bt_margin_kind kind;
  double setting;  /* the quantile (0 = no margin), or the target coverage */
  double coverage; /* realised: the share of rows whose answer covered its window's peak */
  double pod_seconds, under_pod_seconds, under_fraction;
  int64_t events;
};

/* The curve read at some pod-seconds (ps_bt_curve_read). */
struct ps_bt_reading {
  double pods;
  double under; /* under-provisioned pod-seconds on the curve there; NaN off the curve */
  int side;     /* 0 on the curve; -1: fewer pods than any point; +1: more pods than any point */
  double bound; /* side +1: the under-provisioning of the point with the most pods, an upper bound of what
                 * a larger margin would give there; else NaN */
};

struct ps_bt_sweep {
  size_t n; /* points: the nq quantiles, ascending, then the target coverages, ascending */
  size_t nq;
  struct ps_bt_point pt[PS_BT_SWEEP_MAX];
  double q[PS_BT_SWEEP_MAX];               /* the quantiles, ascending (ps_engine_margins) */
  struct ps_coverage cov[PS_BT_SWEEP_MAX]; /* each coverage point's tuner, as the engine's own */
  double *value[PS_BT_SWEEP_MAX];          /* each point's answer per row, before headroom (owned) */
  struct ps_hpa hpa[PS_BT_SWEEP_MAX];      /* one HPA replay per point */
  /* The curve read at the seed's pod-seconds and at reactive's + PS_BT_SWEEP_ABOVE_REACTIVE. */
  struct ps_bt_reading at_seed, at_reactive;
};

struct ps_bt_run {
  struct ps_bt_options opt;
  struct ps_trace trace;
  double threshold;
  bool threshold_given;
  double median_rate, max_rate;
  size_t horizon_steps; /* rows in the forecast window (lookahead / interval; 0 = the current row) */
  int64_t history_ms;   /* of the engines */
  size_t capacity;

  /* Per row (n each; owned). */
  double *rate;                /* demand, requests/s */
  double *target;              /* max demand over the forecast window of the row (NaN near the end) */
  double *pred[PS_BT_COUNT];   /* forecast before floor, margin and headroom (reactive: the current rate) */
  double *metric[PS_BT_COUNT]; /* what the HPA read in the row */
  int64_t *replicas[PS_BT_COUNT]; /* set at the end of the row */
  double *min_ready[PS_BT_COUNT]; /* lowest ready pods during the row */

  struct ps_bt_result res[PS_BT_COUNT];
  struct ps_bt_sweep sweep; /* with --sweep */
  struct ps_bt_coverage coverage;
  double seconds; /* wall time of the replay */
};

/* backtest_flags.c: zeroes *o, sets every default, then reads argv (argv[0] is "backtest") as
 * ps_flags_parse does: 0; 1 after --help, 2 after --version (printed to `out`); UV_EINVAL with one line
 * in err, also when no trace is named. */
int ps_bt_options_parse(struct ps_bt_options *o, int argc, char **argv, FILE *out, char *err, size_t errlen);

/* replay.c: replays r->trace with r->opt (r zeroed but for opt and trace, which it takes over). 0, or
 * UV_EINVAL with one line in err (a trace too short for the lookahead, a period the interval does not
 * divide: exit status 2 for flag errors is the caller's call, see *usage), UV_ENOMEM. */
int ps_bt_replay(struct ps_bt_run *r, bool *usage, char *err, size_t errlen);
void ps_bt_run_free(struct ps_bt_run *r);

/* replay.c: the HPA h through row i of r's trace (the syncs every PS_HPA_SYNC_MS from the trace's start
 * that fall in the row read `metric`), its lowest ready count in the row from ps_hpa_mark_min. */
void ps_bt_hpa_row(struct ps_hpa *h, const struct ps_bt_run *r, size_t i, double metric);

/* sweep.c: during the walk, after the model's forecast fm of row i by engine em: the answer of every
 * setting, through its own HPA (started at row 0). 0, or an error with one line in err. */
struct ps_engine;
struct ps_engine_result;
int ps_bt_sweep_row(struct ps_bt_run *r, size_t i, const struct ps_engine *em,
                    const struct ps_engine_result *fm, char *err, size_t errlen);
/* After the walk and the score: each point's outcome, and the curve read at seed's and reactive's pods. */
void ps_bt_sweep_finish(struct ps_bt_run *r);
void ps_bt_sweep_free(struct ps_bt_sweep *sw);
/* The under-provisioned pod-seconds of the curve through pt[0..n) at `pod_seconds`: linear between the
 * two points (by pod-seconds) around it; NaN outside the curve's span or for n == 0. */
double ps_bt_curve_at(const struct ps_bt_point *pt, size_t n, double pod_seconds);
/* ps_bt_curve_at, and where the pod-seconds are when off the curve (struct ps_bt_reading). */
void ps_bt_curve_read(const struct ps_bt_point *pt, size_t n, double pod_seconds, struct ps_bt_reading *out);

/* sweep_report.c: the curve as text, in the JSON document, as CSV and as SVG. */
void ps_bt_sweep_print_text(const struct ps_bt_run *r, FILE *out);
struct cJSON *ps_bt_sweep_json(const struct ps_bt_run *r);
int ps_bt_sweep_write_csv(const struct ps_bt_run *r, const char *path, char *err, size_t errlen);
int ps_bt_sweep_write_svg(const struct ps_bt_run *r, const char *path, char *err, size_t errlen);

/* coverage_report.c: after the score, each approach's coverage and the model's by day (0 or UV_ENOMEM);
 * the text lines and the JSON object ("coverage") that report them. */
int ps_bt_coverage_compute(struct ps_bt_run *r);
/* A window of peak `peak` covered by `answer`, as the engine scores one (ps_cov_observe). */
bool ps_bt_covered(double answer, double peak);
double ps_bt_day_coverage(const struct ps_bt_coverage *c, size_t day); /* NaN: no window that day */
void ps_bt_coverage_free(struct ps_bt_coverage *c);
void ps_bt_coverage_print_text(const struct ps_bt_run *r, FILE *out);
struct cJSON *ps_bt_coverage_json(const struct ps_bt_run *r);

/* report.c */
void ps_bt_print_text(const struct ps_bt_run *r, FILE *out);
int ps_bt_print_json(const struct ps_bt_run *r, FILE *out);
/* Closes an output file of --flag: 0, or UV_EIO with one line in err when writing or closing failed. */
int ps_bt_close_output(FILE *f, const char *flag, const char *path, char *err, size_t errlen);
int ps_bt_write_csv(const struct ps_bt_run *r, const char *path, char *err, size_t errlen);
int ps_bt_write_svg(const struct ps_bt_run *r, const char *path, char *err, size_t errlen);

#endif
