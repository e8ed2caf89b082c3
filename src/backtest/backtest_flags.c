/* `prescale backtest`'s flags: one flags.c table, and the usage text around it.
 *
 * The flags that are trigger keys too (--lookahead, --threshold, --model, --period, --history,
 * --quantile, --headroom) are read by the key's own row of the trigger key table
 * (ps_trigger_value_check) and default to the key's default, so a backtest asks the engine what the
 * server would, and refuses a value in the same words. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "flags.h"
#include "run.h"

/* One check per trigger-like flag: the flag's name is the key's (flags.c hands a check the value only). */
#define TRIGGER_KEY_CHECK(key)                                                                               \
  static const char *check_##key(const char *v, void *field) {                                               \
    return ps_trigger_value_check(#key, v, field);                                                           \
  }
TRIGGER_KEY_CHECK(lookahead)
TRIGGER_KEY_CHECK(threshold)
TRIGGER_KEY_CHECK(model)
TRIGGER_KEY_CHECK(history)
TRIGGER_KEY_CHECK(quantile)
TRIGGER_KEY_CHECK(headroom)

static const char *check_target_coverage(const char *v, void *field) {
  return ps_trigger_value_check("targetCoverage", v, field);
}

/* The trigger reads both "auto" and 0 as 0, and refuses a period of 0 only once it knows the step; the
 * backtest knows its step only after reading the trace, when 0 already means auto, so it refuses 0 here,
 * in the words of the trigger's own check. */
static const char *check_period(const char *v, void *field) {
  int64_t ms;
  const char *why = ps_trigger_value_check("period", v, &ms);
  if (why != NULL) return why;
  if (ms == 0 && strcmp(v, "auto") != 0) return "must be at least 2 steps of the trace's interval";
  *(int64_t *)field = ms;
  return NULL;
}

#define OPT(f) offsetof(struct ps_bt_options, f)

/* One row per flag, its identity first and its help under it, so that the table reads as one. */
/* clang-format off */
static const struct ps_flag flags[] = {
    {.name = "lookahead", .kind = PS_FLAG_CUSTOM, .check = check_lookahead, .def = PS_DEFAULT_LOOKAHEAD,
     .offset = OPT(lookahead_ms), .arg = "DUR",
     .help = "forecast window (now, now + DUR], as the trigger key"},
    {.name = "startup", .kind = PS_FLAG_DURATION, .max = PS_HPA_MAX_STARTUP_MS, .example = "e.g. 60s",
     .def = "60s", .offset = OPT(startup_ms), .arg = "DUR",
     .help = "time from a scale-up decision to the new pods being ready"},
    {.name = "threshold", .kind = PS_FLAG_CUSTOM, .check = check_threshold, .offset = OPT(threshold),
     .arg = "X", .help = "requests/s one pod serves (default: the trace's median rate / 5)"},
    {.name = "model", .kind = PS_FLAG_CUSTOM, .check = check_model, .def = PS_DEFAULT_MODEL,
     .offset = OPT(model), .arg = "M", .help = "auto, holtwinters, seasonal, linear, peak, analog or last"},
    {.name = "period", .kind = PS_FLAG_CUSTOM, .check = check_period, .def = PS_DEFAULT_PERIOD, .arg = "P",
     .offset = OPT(period_ms), .help = "auto (detected) or a duration, a multiple of the interval"},
    {.name = "history", .kind = PS_FLAG_CUSTOM, .check = check_history, .offset = OPT(history_ms),
     .arg = "DUR",
     .help = "history the engines keep (default as the server: max(3 x period, 1h), or 8d" PS_FLAGS_MORE
             "when the period is detected; at most 100000 steps)"},
    {.name = "quantile", .kind = PS_FLAG_CUSTOM, .check = check_quantile, .arg = "Q", .offset = OPT(quantile),
     .help = "add the Q quantile of the model's errors (0 = none, or 0.5 to <1)," PS_FLAGS_MORE
             "in place of the default --target-coverage"},
    {.name = "target-coverage", .kind = PS_FLAG_CUSTOM, .check = check_target_coverage, .arg = "C",
     .offset = OPT(target_coverage), .def = PS_STR(PS_DEFAULT_TARGET_COVERAGE),
     .help = "tune the margin online so that the answer covers the peak of a fraction C" PS_FLAGS_MORE
             "of the lookahead windows (0 < C < 1; as targetCoverage; not with --quantile)"},
    {.name = "headroom", .kind = PS_FLAG_CUSTOM, .check = check_headroom, .def = PS_DEFAULT_HEADROOM,
     .arg = "H", .offset = OPT(headroom), .help = "multiply the model's answer by (1 + H)"},
    {.name = "sweep", .kind = PS_FLAG_SWITCH, .offset = OPT(sweep),
     .help = "replay the model at the quantiles 0, 0.5 .. 0.99 and the target coverages" PS_FLAGS_MORE
             "0.8 .. 0.99 (and --quantile or --target-coverage) and print" PS_FLAGS_MORE
             "the cost curve (pod-s vs under-provisioned pod-s, seed and reactive points," PS_FLAGS_MORE
             "the curve at seed's pod-s and at reactive's + 10 %);" PS_FLAGS_MORE
             "--csv and --svg then write the curve instead"},
    {.name = "reload", .kind = PS_FLAG_DURATION, .example = "e.g. 1d", .offset = OPT(reload_ms),
     .arg = "DUR",
     .help = "restart the engines every DUR of the trace, each loaded with the history it holds" PS_FLAGS_MORE
             "in bulk as the server's first load (default 0: never)"},
    {.name = "reload-puts", .kind = PS_FLAG_SWITCH, .offset = OPT(reload_puts),
     .help = "with --reload: load put by put instead of in bulk, to compare the two"},
    {.name = "json", .kind = PS_FLAG_SWITCH, .offset = OPT(json),
     .help = "print the results as JSON instead of text"},
    {.name = "svg", .kind = PS_FLAG_STRING, .offset = OPT(svg_path), .arg = "FILE",
     .help = "draw demand, forecast and ready capacity (reactive vs prescale) as SVG"},
    {.name = "csv", .kind = PS_FLAG_STRING, .offset = OPT(csv_path), .arg = "FILE",
     .help = "write one row per trace row:" PS_FLAGS_MORE
             "timestamp,demand,forecast,value,replicas_reactive,replicas_prescale"},
};
/* clang-format on */

static const struct ps_flags_spec spec = {
    .program = "prescale backtest",
    .version = PS_VERSION,
    .about =
        "Replays a request trace through prescale's forecasting engine and a model of the Kubernetes HPA,\n"
        "for the chosen model and two baselines, and prints forecast errors and scaling outcomes.\n"
        "TRACE.csv: `timestamp_seconds,value` per line after a header; value = requests in the interval\n"
        "starting at the timestamp; evenly spaced rows. The interval is the engine's step.\n"
        "Durations are written like 30s, 2m, 1h30m, 1d. The flags named like trigger keys take the\n"
        "values the keys take, with the same defaults.\n",
    .footer =
        "\n"
        "Approaches: reactive (the HPA reads the current rate), seed (seasonal naive with the period given\n"
        "or detected, floored at the current rate), and the model (prescale's answer: max(current, forecast\n"
        "+ margin) x (1 + headroom)).\n"
        "\n"
        "Forecast error: at each row t, the forecast of the max demand over (t, t + lookahead] against the\n"
        "actual max over those rows (with a lookahead shorter than the interval, the current row); MAE, "
        "RMSE\n"
        "(requests/s) and MASE = MAE / MAE of the last-value forecast over the same points.\n"
        "\n"
        "HPA replay: demand rate = value / interval, constant within a row. Every 15 s the HPA reads the\n"
        "metric (reactive: the current rate; seed and model: their answer, updated once per row) and "
        "proposes\n"
        "ceil(metric / threshold) replicas, or keeps the current ones when |metric / (replicas x threshold)\n"
        "- 1| <= 0.1; the replicas set are the highest proposal of the last 300 s (scale-down "
        "stabilization;\n"
        "scale-up is immediate); at least 1. New pods are ready --startup after the decision; a scale-down\n"
        "is immediate (starting pods go first). The replay starts with the replicas the first metric asks\n"
        "for, all ready. Under-provisioned pod-seconds = integral of max(0, demand / threshold - ready "
        "pods)\n"
        "dt; pod-seconds count ready and starting pods; events = decisions that changed replicas.\n"
        "\n"
        "Exit status: 0 ok, 1 failure (unreadable or bad trace, unwritable output), 2 usage.\n",
    .operand = "TRACE.csv",
    .operand_offset = offsetof(struct ps_bt_options, trace_path),
    .flags = flags,
    .nflags = sizeof flags / sizeof flags[0],
};

int ps_bt_options_parse(struct ps_bt_options *o, int argc, char **argv, FILE *out, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  ps_flags_defaults(&spec, o);
  /* --quantile and --target-coverage set the same margin: one of them, as the trigger's keys; a
   * --quantile replaces the default target coverage. */
  double coverage_default = o->target_coverage;
  o->quantile = o->target_coverage = NAN;
  int r = ps_flags_parse(&spec, o, argc, argv, out, err, errlen);
  bool quantile_given = !isnan(o->quantile), coverage_given = !isnan(o->target_coverage);
  if (!quantile_given) o->quantile = 0;
  if (!coverage_given) o->target_coverage = quantile_given ? 0 : coverage_default;
  if (r == 0 && quantile_given && coverage_given) {
    char q[32];
    snprintf(q, sizeof q, "%g", o->quantile);
    return ps_flags_fail(err, errlen, "--quantile: \"%s\" %s", q, PS_COVERAGE_BOTH_WORDS);
  }
  if (r == 0 && o->trace_path == NULL)
    return ps_flags_fail(err, errlen, "a trace file is required (prescale backtest TRACE.csv)");
  return r;
}
