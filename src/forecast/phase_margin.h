/* The margin's scale by the phase of a forecast's origin (issue 13, section 3).
 *
 * The engine's margin is a quantile of its errors in units of their recent size (an exponentially
 * weighted MAE over about the last 32 errors, engine_int.h VOL_DECAY), times that size now. The size of the
 * errors is not a smooth function of the recent past: it is largest on the daily ramps and on spikes that
 * recur at the same minute of the hour, and near zero in calm hours, so the recent size learns a ramp only
 * once it is under way. This module keeps, for each phase bucket of the season and of the hour, how much
 * larger or smaller than that recent size the errors of forecasts made there were, as a factor; the
 * engine multiplies its scale by the factors of a forecast's origin, both when it standardizes an error
 * and when it turns the quantile into a margin.
 *
 * Pure C, no allocation, no I/O: two fixed tables inside the engine (2 x PS_PM_BUCKETS floats). O(1) per
 * error and per forecast. */
#ifndef PS_PHASE_MARGIN_H
#define PS_PHASE_MARGIN_H

#include <stddef.h>
#include <stdint.h>

/* Buckets per cycle: the season's (a day then has 24-minute buckets) and the hour's (3-minute ones); a
 * cycle of fewer steps has one bucket per step. The hour's are wider than a step: a spike that starts at
 * a minute of the hour starts a minute early or late as often as not. Both were chosen on the first half
 * of the public traces (the season's among 24, 60, 120; the hour's among 12, 20, 30, 60) and checked on
 * the second (docs/forecasting.md, "Moving the curve"). PS_PM_BUCKETS sizes the tables. */
#define PS_PM_SEASON_BUCKETS 60
#define PS_PM_HOUR_BUCKETS   20
#define PS_PM_BUCKETS        60
/* Memory of the factors, in seasons: each bucket's factor moves towards its errors with a weight such
 * that the errors of about the last PS_PM_MEMORY seasons count (3 days for a daily season), the same for
 * the hour's buckets (which see 24 times as many visits, each holding 1/24 of the errors). Until a cycle
 * has seen about that many, the weight is that of a mean of the errors the bucket saw and of one season's
 * worth of errors of the expected size there (a prior at factor 1), if larger: a first load, which learns
 * errors from its last PS_ENGINE_BULK_REPLAY steps only (1.4 days at 1 minute), starts from what those steps
 * show instead of near 1, without trusting one day's bucket alone (on the public traces, a first load then
 * under- provisions within 3 % of puts; docs/performance.md). Tuned on the first half of the public traces
 * among 1, 3 and 7 (docs/forecasting.md, "Moving the curve"). */
#define PS_PM_MEMORY         3
/* The factors stay within [1 / PS_PM_LIMIT, PS_PM_LIMIT]: a bucket that saw one freak error does not
 * multiply the margin without bound, nor does a calm one zero it. */
#define PS_PM_LIMIT          4.0

struct ps_pm_cycle {
  uint32_t steps;            /* the cycle in steps; 0 = not in use */
  uint32_t nb;               /* buckets in use, <= PS_PM_BUCKETS */
  float f[PS_PM_BUCKETS];    /* each bucket's factor (1: the recent size is right there) */
  uint16_t k[PS_PM_BUCKETS]; /* errors each bucket learned since the cycle's last reset (saturating) */
};

struct ps_phase_margin {
  struct ps_pm_cycle season, hour;
};

/* Every factor 1, no cycle in use. */
void ps_pm_init(struct ps_phase_margin *pm);
/* The cycles in steps: the season (0 = none) and the hour (0 when the hour is not whole in steps). The
 * hour is used only beside a longer season: without a season there is no evidence that the load follows
 * the clock. A cycle whose length changes starts again from factors of 1; the same lengths keep them. */
void ps_pm_set(struct ps_phase_margin *pm, size_t season_steps, size_t hour_steps);
/* The factor of a forecast made at step t: the season's times the hour's (1 for a cycle not in use). */
double ps_pm_factor(const struct ps_phase_margin *pm, int64_t t);
/* Learns from a forecast made at step t whose error was `ratio` times the scale the engine had then
 * multiplied by ps_pm_factor(pm, t) (ratio = |error| / (scale x factor)): each cycle's bucket of t moves
 * its factor by a small step towards making that ratio 1 on average (a multiplicative stochastic
 * approximation). A ratio that is not finite and >= 0 is ignored. */
void ps_pm_learn(struct ps_phase_margin *pm, int64_t t, double ratio);

#endif
