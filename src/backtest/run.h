/* `prescale backtest` internals shared by its files: the options, the walk-forward replay and its
 * outputs. backtest_flags.c reads the flags, replay.c replays, report.c prints and writes the results,
 * backtest.c runs them in turn. */
#ifndef PS_BACKTEST_RUN_H
#define PS_BACKTEST_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
  double headroom;
  bool json;
  const char *svg_path;
  const char *csv_path;
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

/* report.c */
void ps_bt_print_text(const struct ps_bt_run *r, FILE *out);
int ps_bt_print_json(const struct ps_bt_run *r, FILE *out);
int ps_bt_write_csv(const struct ps_bt_run *r, const char *path, char *err, size_t errlen);
int ps_bt_write_svg(const struct ps_bt_run *r, const char *path, char *err, size_t errlen);

#endif
