/* The forecasting engine of one target: history, models, period detection, model choice and error
 * quantiles, over samples at a fixed step. Pure C: no I/O, no loop, no globals, no allocation after
 * ps_engine_new except in the occasional refit of ps_engine_put or ps_engine_bulk_end (bounded, documented
 * below).
 *
 * The server (targets.c) and `prescale backtest` drive it the same way: put each new sample, then ask
 * for a forecast. Nothing in it may peek at samples newer than those put. */
#ifndef PS_ENGINE_H
#define PS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "models.h" /* enum ps_model, ps_model_parse, ps_model_name */

/* Revisions: the server re-reads the newest PS_ENGINE_REVISABLE steps on every refresh (Prometheus may
 * still change them), so a put at one of those times overwrites it; models learn a step only once it is
 * older than that. */
#define PS_ENGINE_REVISABLE 2

struct ps_engine_config {
  enum ps_model model;    /* PS_MODEL_AUTO chooses among the others by their own recent errors */
  int64_t step_ms;        /* > 0 */
  int64_t period_ms;      /* a multiple of step; 0 = detect it from the history ("period: auto") */
  int64_t lookahead_ms;   /* >= 0 */
  size_t capacity;        /* history steps kept (history / step + 1) */
  double quantile;        /* 0 = none; else in [0.5, 1): add this quantile of the model's own errors */
  double target_coverage; /* 0 = none; else in (0, 1): tune the margin online so that this fraction of
                           * the windows is covered (coverage.h); `quantile` is then not used */
  uint32_t seed;          /* spreads the refits of targets started together (e.g. a hash of the target's
                           * key); any value works, 0 included. Results depend on it only through when
                           * refits happen. */
};

/* Refits (period detection, parameter search) run after PS_ENGINE_FIRST_REFIT learned steps, then every
 * max(period or PS_ENGINE_REFIT_MIN_STEPS, history / 2) steps, stretched by up to half as much again by
 * a jitter drawn from seed and the data so that targets started together do not refit together. */
#define PS_ENGINE_FIRST_REFIT     24
#define PS_ENGINE_REFIT_MIN_STEPS 60
/* Each model keeps its last PS_ENGINE_ERRORS signed h-step errors (actual - forecast) for its rolling
 * MAE and the quantile; auto trusts a model, and the quantile is applied, after PS_ENGINE_MIN_ERRORS. */
#define PS_ENGINE_ERRORS          256
#define PS_ENGINE_MIN_ERRORS      8
/* Errors are tracked at h = lookahead / step steps ahead (at least 1), at most this many. */
#define PS_ENGINE_MAX_HORIZON     4096
/* A forecast evaluates at most this many window steps (a longer lookahead uses its first ones). */
#define PS_ENGINE_MAX_WINDOW      20160

struct ps_engine;

/* 0, UV_EINVAL (a bad config: says nothing, the config module validated it) or UV_ENOMEM. */
int ps_engine_new(const struct ps_engine_config *c, struct ps_engine **out);
void ps_engine_free(struct ps_engine *e);

/* Stores v at t_ms (a multiple of step; rounded down otherwise). Times must not go back more than
 * PS_ENGINE_REVISABLE steps behind the newest (UV_ERANGE, ignored by callers). NaN/Inf are missing.
 * Gaps are allowed. Cost: O(1) amortized; a refit (period detection, parameter search) runs at most once
 * per period (or once per PS_ENGINE_REFIT_MIN_STEPS steps without a season) inside this call. */
int ps_engine_put(struct ps_engine *e, int64_t t_ms, double v);

/* A first load (or any long batch of history): between ps_engine_bulk_begin and ps_engine_bulk_end, puts
 * only store their samples (same rules and answers as ps_engine_put); bulk_end then learns them at once:
 * one refit (period detection, parameter search) over all but the newest replay steps, then those steps
 * learned one by one as puts would (their h-step errors fill the error rings and auto's scores). The
 * replay is max(PS_ENGINE_BULK_REPLAY, 32 x h) steps; a batch not longer than
 * max(PS_ENGINE_BULK_STEPWISE, the replay plus PS_ENGINE_FIRST_REFIT) learns step by step, as puts would
 * have. Cost: O(history) plain stores, one refit,
 * and the replay, against a refit every half history for puts. The forecast that follows is not bit for
 * bit that of the puts (whose last refit saw less of the history): tests/unit/test_engine_bulk.c pins
 * the difference and docs/performance.md the backtests. A forecast between begin and end sees no
 * learned step of the batch. */
#define PS_ENGINE_BULK_REPLAY      2048
/* A batch up to this many steps (two days at 1 minute) is learned step by step: put by put that costs
 * about what the bulk load of a week does (tests/bench/engine_bench.c). In bulk, the refit would see only
 * the steps before the replay, under 30 % of two days (puts' last refit sees more than half of a growing
 * history), and a first load of two days was the worst day of the public traces' reload backtests
 * (docs/performance.md). */
#define PS_ENGINE_BULK_STEPWISE    2880
/* The bulk load's refit scores Holt-Winters parameters on the newest PS_ENGINE_BULK_FIT_PERIODS periods
 * (the first one is burn-in), and on at least the newest PS_ENGINE_BULK_FIT_FLAT steps (all of them
 * without a season): the search's cost grows with the period, not the history (ps_hw_fit_tail). The
 * floor is for short seasons: 3 periods of 2 hours score the parameters on 4 hours of errors, and the
 * search then chose a season gain of 0.5 where puts, scoring the whole history, chose 0.02 (twitter,
 * docs/performance.md). */
#define PS_ENGINE_BULK_FIT_PERIODS 3
#define PS_ENGINE_BULK_FIT_FLAT    1440
void ps_engine_bulk_begin(struct ps_engine *e);
void ps_engine_bulk_end(struct ps_engine *e);

/* Work done so far, for tests and benchmarks: refits run and steps learned one by one. */
struct ps_engine_counts {
  uint64_t refits, learns;
};
void ps_engine_counts(const struct ps_engine *e, struct ps_engine_counts *out);

struct ps_engine_result {
  double current; /* the latest observation (0 when none) */
  int64_t current_ms;
  double predicted; /* max of the forecasting model's forecast over (now, now + lookahead]; auto's choice
                     * by MAE (what MASE measures) */
  double margin;    /* the quantile of the answering model's h-step errors added (0 without quantile); with
                     * auto at a target coverage, the answer may be built on another candidate than
                     * `predicted`'s (the least pinball loss at the target, engine_int.h QSCORE_DECAY): the
                     * margin then includes that candidate's forecast - predicted, and may be negative */
  double value;     /* max(current, predicted + margin): finite and >= 0, always */
  enum ps_model chosen;          /* the model that answered (never PS_MODEL_AUTO) */
  int64_t period_ms;             /* the season in use; 0 = none detected/usable */
  double mae[PS_MODEL_COUNT];    /* rolling mean absolute h-step error of each model; NaN = not known yet.
                                  * mae[PS_MODEL_AUTO] is that of auto's own answers (choice or blend). */
  double weight[PS_MODEL_COUNT]; /* each model's share of the answer: 1 for the single model answering,
                                  * the blend's weights when auto answers with a blend (sum 1) */
  const char *note; /* NULL, or a static sentence on a fallback ("history shorter than two periods:
                     * seasonal models wait"), for the log and /metrics */
  double coverage;  /* realised coverage: the share of the answers (value, before headroom) whose window
                     * ended that were at least its actual peak, over about the last PS_COVERAGE_SPAN_MS
                     * of windows (coverage.h); NaN until one was scored. Measured with or without
                     * target_coverage. */
};

/* Forecasts the window (now_ms, now_ms + lookahead]. 0, or UV_ENOENT when nothing was observed yet. */
int ps_engine_forecast(struct ps_engine *e, int64_t now_ms, struct ps_engine_result *out);

/* The margins and values the last ps_engine_forecast (whose result is r) would have given with each
 * quantile q[j] in place of the configured one (0, or in [0.5, 1); ascending): nothing else the engine
 * does depends on the quantile, so `prescale backtest --sweep` replays one engine for every margin. With
 * a target coverage, on the candidate the answer is built on at that target (ps_engine_result.margin),
 * where an engine configured with the quantile would build it on `predicted`'s.
 * margin[j] and value[j] as ps_engine_result's. 0, or UV_EINVAL (a bad or unsorted quantile). O(size of
 * the error ring) on average. */
int ps_engine_margins(const struct ps_engine *e, const struct ps_engine_result *r, const double *q, size_t nq,
                      double *margin, double *value);

/* max(current, predicted + margin), finite and >= 0 whatever the inputs: the engine's value for a margin
 * (ps_engine_result), for a caller that tunes a margin of its own (`prescale backtest --sweep`). */
double ps_engine_answer(double predicted, double margin, double current);

/* The basis of a target coverage's margin (coverage.h) after the last forecast: *qz the quantile at
 * `level` (in (0, 1)) of the answering series' standardized errors, *vol their size now. While fewer than
 * PS_ENGINE_MIN_ERRORS errors are known, the cold start's: predicted + qz x vol = mean + z x sd of the
 * values put since the last restart, z = ps_cov_peak_z(level, h) (NaN, and vol the errors' size, with
 * fewer than two values or no spread); while the peak model answers alone (peak.h), the same form with its
 * level and spread, at any time. `prescale backtest --sweep` tunes a margin per coverage
 * setting from it, beside the engine's own. O(size of the error ring). */
void ps_engine_coverage_basis(const struct ps_engine *e, double level, double *qz, double *vol);

/* Bytes held by the engine (history + model state), for the benchmark's bytes-per-sample figure. */
size_t ps_engine_memory(const struct ps_engine *e);

#endif
