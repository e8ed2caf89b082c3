/* Private to src/forecast/engine.c, engine_errors.c and engine_models.c: the state of one target's engine
 * (struct ps_engine, its error series and auto's candidates), the constants its parts are tuned by, and the
 * small helpers they all read with. Not a contract for other modules: engine.h is. The learning step and the
 * API are in engine.c, the h-step errors and their quantiles in engine_errors.c, the forecast's origins, the
 * models' window forecasts and auto's choice in engine_models.c. */
#ifndef PS_ENGINE_INT_H
#define PS_ENGINE_INT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "analog.h"
#include "coverage.h"
#include "engine.h"
#include "holtwinters.h"
#include "peak.h"
#include "phase_margin.h"
#include "ring_slot.h"

/* ---- constants ----------------------------------------------------------------------------------- */

/* Error rings: the four models' raw forecasts, and auto's answers (index PS_MODEL_AUTO). */
#define N_RINGS         PS_MODEL_COUNT
/* Auto's candidates: the four models, each corrected by its own median error, and their blend. */
#define C_BLEND         PS_MODEL_AUTO
#define N_CANDS         (PS_MODEL_AUTO + 1)
/* A pending row: raw window forecasts of the models, auto's forecast, the candidates' forecasts, and the
 * base of the answer (the margin's series). */
#define P_AUTO          PS_MODEL_AUTO
#define P_CAND          (PS_MODEL_AUTO + 1)
#define P_BASE          (P_CAND + N_CANDS)
#define P_WIDTH         (P_BASE + 1)
/* The errors scored are of the window's maximum, max(y[L+1..L+h]) - forecast, which is what prescale
 * answers; a model of the level underestimates that maximum in noise, so each candidate learns its median
 * error and adds it: a step of BIAS_RATE times its MAE towards the sign of each error (a stochastic
 * median, Robbins & Monro 1951). */
#define BIAS_RATE       0.05
#define BIAS_CAP        2.0
/* The quantile margin is taken from errors in units of their own recent size: each error of the answering
 * series is divided by that series' exponentially weighted MAE over about the last 1/VOL_DECAY errors
 * (as it stood before that error), and the margin is the q quantile of those ratios times the same MAE
 * now. A ring of raw errors spans PS_ENGINE_ERRORS steps (4 h at 1 min) and lags the daily swing of
 * their size: too small a margin on the morning ramp, too large in the evening. Measured on the public
 * traces (docs/forecasting.md), this cuts under-provisioning by a quarter on worldcup98 for the same pods.
 * VOL_FLOOR keeps a constant series (MAE 0) from dividing by zero. The scale is further multiplied by
 * the factor of the forecast's phase in the season and the hour (phase_margin.h): the recent size learns
 * a daily ramp only once it is under way, the phase's factor from the ramps of the days before. */
#define VOL_DECAY       (1.0 / 32)
#define VOL_FLOOR       1e-9
/* At a long horizon, consecutive h-step errors share all but one step of their windows: a ring of
 * PS_ENGINE_ERRORS of them spans PS_ENGINE_ERRORS / h windows (2 at h = 120, 2 minutes at 1 s), and its
 * quantile swings with the last window or two. The ring then keeps one error in h x RING_WINDOWS /
 * PS_ENGINE_ERRORS (every 15th at h = 120), so that it spans about RING_WINDOWS windows; below h = 16
 * it keeps every error, as before. The scale (VOL_DECAY) and the phase factors still learn every error. */
#define RING_WINDOWS    32
/* Samples beyond this magnitude are saturated: the ring stores float, and no load is that large. */
#define MAX_VALUE       1e30
/* Auto's score of a series is its exponentially weighted MAE over about the last 1/SCORE_DECAY errors (the
 * analog model's: the plain mean of its first ones, so that the score a bulk load's replay sets,
 * ps_eng_analog_calibrate, gives way to the errors that follow within a few dozen): short enough to notice a
 * level shift within a few steps, long enough not to chase noise. It weighs the blend and, with the median
 * corrections, follows the series. Within the analog model's horizon, the choice of the forecast (`sel`)
 * reads a slower one, over about 1/SEL_DECAY errors, so as not to leave the analog model for a few lucky
 * steps of another: over 64 errors, auto made 0.852 / 0.964 on worldcup98 / twitter where the analog model
 * alone made 0.847 / 0.871; over 256, 0.847 / 0.876 (docs/forecasting.md, "The analog model"). Beyond it, the
 * choice is as before (azure at 0.8, on the slower score: 78.8 % covered, 1.2 points short). */
#define SCORE_DECAY     (1.0 / 64)
#define SEL_DECAY       (1.0 / 256)
/* Hysteresis: auto switches only to a series whose score is below this fraction of the current one's. */
#define SWITCH_RATIO    0.85
/* The answer's base (auto with a target coverage, below PS_PEAK_MIN_H): prescale answers a
 * quantile of the window's peak (forecast + margin), and the candidate whose point forecast has the least
 * MAE need not be the one whose quantile is the tightest (twitter: Holt-Winters' season carries
 * yesterday's spikes, which costs MAE and covers the spikes that recur). Each candidate keeps an online
 * quantile of its own errors at the answer's level, in units of its own recent error size times the
 * phase factor (as the margin is, VOL_DECAY and phase_margin.h): an offset stepped by the target coverage's
 * rate x (miss - (1 - level)) after each outcome (quantile tracking, coverage.h); and its score, the
 * exponentially weighted pinball loss at that level of forecast + offset against the window's peak
 * (the plain mean over its first 1 / QSCORE_DECAY errors). The answer is built on the candidate with the
 * least such score, switching only below Q_SWITCH of the current one's. The margin then applies on
 * top of it as before; the forecast reported (ps_engine_result.predicted, which MASE measures) stays
 * the MAE choice. Chosen on the first halves of nasa, worldcup98 and twitter among memories of 64 to 4,096
 * errors and ratios 0.85 and 0.95 (docs/forecasting.md, "Moving the curve"). */
#define QSCORE_DECAY    (1.0 / 128)
#define Q_SWITCH        0.95
/* The answer follows the MAE choice until the candidates saw about Q_MISSES of the misses the level
 * allows (Q_MISSES / (1 - level) errors: 89 at 0.82, 1,600 at 0.99): an offset starts at 0 and climbs by
 * rate x level on a miss, falls by rate x (1 - level) on a cover, so at a high level it reaches its
 * quantile only after many misses, and before that the scores rank how far each offset still is from it.
 * Without the wait, twitter at 0.99 fell 1.01 points short on its first day (97.99 %; before: 98.12 %). */
#define Q_MISSES        16.0
/* The blend weighs each model by 1 / score^2 (inverse mean squared error in spirit), leaving out the
 * ones scoring worse than BLEND_CUTOFF times the best. */
#define BLEND_CUTOFF    2.0
/* The linear model's window: LINEAR_SPAN times the horizon, within [LINEAR_MIN, LINEAR_MAX] steps. */
#define LINEAR_SPAN     6
#define LINEAR_MIN      12
#define LINEAR_MAX      64
#define PROVISIONAL     (PS_ENGINE_REVISABLE + 1)
/* The analog model's ratio costs far more than the rest of a step (analog.h), and each step would
 * compute it twice: for the answer at the newest step, and PROVISIONAL steps later for the error of the
 * forecast made at that same step. The answer's ratios wait in a ring of AN_CACHE by origin; learning reuses
 * one made with the same weights (their epoch, PS_ANALOG_REWEIGH) and period, unless a revision changed a
 * code since (then every one is dropped): what it reuses is what it would compute, to the bit. */
#define AN_CACHE        (PROVISIONAL + 1)
/* A bulk load's replay computes the analog model at AN_BULK_SCORED of the steps it learns one by one, evenly
 * spread (10-20 us each with the history out of cache, against a first load's budget of 3 ms: at 32 a week
 * at 1 minute took 3.1 ms, at 16 2.9 ms, docs/performance.md): enough errors (PS_ENGINE_MIN_ERRORS) for auto
 * to weigh it, from every hour of the replay rather than its last minutes (the last steps alone scored it
 * as of one hour of the day). Those few errors are a noisy score (one burst's onset among 32 rows doubled
 * it on test_engine_bulk's web-like trace), so the replay compares it with the others on the same rows
 * and sets its score from that comparison at its end (ps_eng_analog_calibrate). */
#define AN_BULK_SCORED  16
/* The steps a bulk load learns or skips teach the analog model's input spreads one in AN_BULK_SPREADS (the
 * spreads of an eighth of a week's rows are those of the week; learning every one cost a fifth of a first
 * load). */
#define AN_BULK_SPREADS 8
#define TIME_LIMIT      ((int64_t)1 << 62)
#define HOUR_MS         3600000 /* the phase margin's second cycle, when whole in steps */

/* ---- state --------------------------------------------------------------------------------------- */

struct series {
  float *err; /* signed h-step errors, a ring of PS_ENGINE_ERRORS in ps_engine.rings */
  uint32_t pos, count;
  uint64_t total; /* errors ever pushed: the quantile cache's stamp */
  double abs_sum; /* sum of |err| over the ring */
};

struct cand {
  double bias;  /* median error, added to the forecast */
  double score; /* exponentially weighted MAE of the corrected forecast */
  double slow;  /* the same over about 1 / SEL_DECAY errors: auto's choice of its forecast */
  uint32_t n;   /* errors seen (saturating) */
  /* the answer's base (QSCORE_DECAY): the offset to the level's quantile of the corrected forecast's errors
   * in units of qvol (their exponentially weighted MAE, VOL_DECAY) times the phase factor, and the pinball
   * loss of forecast + offset */
  double qoff, qvol, qscore;
};

/* Where the analog model's codes are kept (codes_layout in engine.c): a ring of the newest `cap` steps
 * (step t's at t mod cap), then win_n windows of win_cap steps around the same phase of past periods of
 * win_period steps, window d's newest step win_after - d x win_period steps from the newest. */
struct codes_layout {
  size_t cap, win_n, win_cap, win_after, win_period;
};

struct ps_engine {
  struct ps_engine_config cfg;
  size_t h; /* error horizon in steps, >= 1 */
  int64_t step;

  /* history: v[head] is step `newest`, v[head - k] step newest - k, for k < len */
  float *v;
  /* The analog model's log codes (analog.h, struct ps_analog_ring), one allocation laid out as `lay`. */
  int16_t *code;
  struct codes_layout lay;
  int codes_held; /* a bulk load's learning: the ring holds every step, no window (codes_fit) */
  size_t cap, len, head;
  int64_t newest;
  /* The newest finite value put, exactly: the history rounds to float (7 digits), but the current value
   * and the last-value model answer with what the caller observed. */
  double exact;
  int64_t exact_at; /* its step; INT64_MIN when none */

  /* learning */
  int64_t learned;    /* newest learned step (the first put's step - 1 before any) */
  uint64_t n_learned; /* steps learned since the last reset */
  double last_valid;  /* newest non-missing learned value */
  int64_t last_valid_at;
  int has_last_valid;

  /* season and refits */
  size_t period;       /* steps; 0 = none */
  int searched;        /* period detection ran at least once (period auto) */
  uint64_t next_refit; /* n_learned at which the next refit runs */
  uint32_t refits, hash;
  uint64_t refits_total, learns_total; /* ps_engine_counts */
  int bulk;                            /* between ps_engine_bulk_begin and _end: puts only store */
  struct ps_hw hw;
  double *damp; /* damp[k] = ps_hw_damp_sum(k) for k <= h: the window forecasts' trend weights */

  /* h-step errors */
  float *pend;      /* (h + 1) x P_WIDTH window forecasts waiting for their window's end */
  int64_t *pend_at; /* the step that ends each row's window */
  struct series s[N_RINGS];
  struct cand c[N_CANDS];
  int sel;  /* the candidate auto forecasts with (ps_engine_result.predicted) */
  int base; /* the candidate auto's answer is built on (QSCORE_DECAY; sel when not by level) */
  double w[PS_MODEL_COUNT]; /* blend weights */
  /* the quantile margin's scale by the phase of a forecast's origin, and its factor at the last forecast */
  struct ps_phase_margin pm;
  double pm_now;

  /* the quantile margin: standardized errors of the answering series (one in z_stride of them, counted by
   * z_skip: RING_WINDOWS), their scale, a cached quantile */
  struct series z;
  uint32_t z_stride, z_skip;
  double vol;
  uint32_t vol_n;
  uint64_t q_total;
  double q_val;

  /* target coverage: the margin's tuner and the answers waiting for their window's peak (coverage.h) */
  struct ps_coverage cov;
  /* the cold start's basis: the learned values' count, mean and sum of squared deviations (Welford) since
   * the last restart, the z of the configured target, the last forecast's predicted */
  double cold_n, cold_mean, cold_m2, cold_z, pred_now, base_now;
  /* The rings of s[] and z, apart from their counts and sums: a learned step writes one entry of each ring
   * but reads every count and sum, and each forecast every series' MAE, so those share two cache lines
   * instead of taking one each 1 KB apart (10,000 targets refreshed in one loop turn wait on memory). */
  float rings[N_RINGS + 1][PS_ENGINE_ERRORS];
  /* the peak model (peak.h): its learned state, and as of the newest step at the last forecast */
  struct ps_peak peak, peak_now;
  struct ps_analog an;     /* the analog model's scale and inputs' spreads (analog.h) */
  int64_t an_at[AN_CACHE]; /* the origins of the ratios kept (AN_CACHE), INT64_MIN for none */
  uint64_t an_epoch[AN_CACHE];
  size_t an_period[AN_CACHE];
  double an_ratio[AN_CACHE];
  uint64_t an_stride;        /* learned origins forecast from: one in an_stride (AN_BULK_SCORED), else 1 */
  double an_paired[N_CANDS]; /* each candidate's absolute errors on those rows (AN_BULK_SCORED) */
};

/* A forecast origin: the models' state as of step idx. */
struct origin {
  int64_t idx;
  double last; /* NaN when nothing observed */
  int64_t last_at;
  struct ps_hw_core hw;
  int n_over; /* provisional season entries */
  int64_t over_at[PROVISIONAL];
  float over[PROVISIONAL];
  int lin_ok;
  double lin_a, lin_b; /* linear: value at idx + k is lin_a + lin_b * k */
  struct ps_peak pk;   /* the peak model's state as of idx */
};

/* ---- small helpers ------------------------------------------------------------------------------- */

static inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && (a < 0) != (b < 0)) q--;
  return q;
}

static inline uint32_t mix(uint32_t h, uint32_t x) { /* FNV-1a over 4 bytes */
  for (int i = 0; i < 4; i++) h = (h ^ ((x >> (8 * i)) & 0xff)) * 16777619u;
  return h;
}

/* The stored value of step t, NaN when missing or outside the ring. */
static inline double at(const struct ps_engine *e, int64_t t) {
  if (e->len == 0 || t > e->newest) return NAN;
  uint64_t k = (uint64_t)e->newest - (uint64_t)t;
  if (k >= e->len) return NAN;
  return e->v[(e->head + e->cap - (size_t)k) % e->cap];
}

/* The analog model's view of the codes. */
static inline struct ps_analog_ring ps_eng_codes(const struct ps_engine *e) {
  return (struct ps_analog_ring){.code = e->code,
                                 .cap = e->lay.cap,
                                 .newest = e->newest,
                                 .first = e->newest - (int64_t)e->len + 1,
                                 .win = e->code + e->lay.cap,
                                 .windows = e->lay.win_n,
                                 .wcap = e->lay.win_cap,
                                 .after = e->lay.win_after,
                                 .period = e->lay.win_period};
}

static inline double mae(const struct series *s) { return s->count > 0 ? s->abs_sum / s->count : NAN; }

/* ---- errors (engine_errors.c) -------------------------------------------------------------------- */

void ps_eng_push_error(struct series *s, double err);
void ps_eng_cand_quantile(struct cand *c, double err, double level, double rate, double pf);
void ps_eng_margin_error(struct ps_engine *e, double err, int64_t origin);
double ps_eng_select_rank(float *a, size_t lo, size_t hi, size_t k);
double ps_eng_quantile(const struct series *s, double q);

/* The bias is a feedback loop with a delay: a change shows in the errors only h steps later. Stepping
 * by BIAS_RATE x score every step would move it h times that before any effect is seen, overshoot, and
 * oscillate with a growing amplitude (seen on a 1 s trace at h = 120). So the step is divided by h, and
 * the bias is bounded by `cap`: BIAS_CAP times the uncorrected model's own MAE, which does not depend on
 * the bias. Inline: it runs for each of auto's candidates on every learned step (engine.c learn). */
static inline void ps_eng_cand_error(struct cand *c, double err, size_t h, double cap, int plain) {
  if (c->n < UINT32_MAX) c->n++;
  double w = 1.0 / c->n; /* the plain mean of the first errors (`plain`: the score too) */
  c->score = c->n == 1 ? fabs(err) : c->score + fmax(plain ? w : 0, SCORE_DECAY) * (fabs(err) - c->score);
  c->slow += (w > SEL_DECAY ? w : SEL_DECAY) * (fabs(err) - c->slow);
  double stepb = BIAS_RATE * c->score / (double)h;
  c->bias += err > 0 ? stepb : err < 0 ? -stepb : 0;
  if (isfinite(cap)) c->bias = fmax(-cap, fmin(cap, c->bias));
}

/* ---- origins, model forecasts and auto's choice (engine_models.c) -------------------------------- */

void ps_eng_origin_learned(const struct ps_engine *e, struct origin *o);
void ps_eng_origin_newest(const struct ps_engine *e, struct origin *o, int a);
void ps_eng_window_max(struct ps_engine *e, const struct origin *o, int64_t lo, int64_t hi,
                       double raw[PS_MODEL_AUTO], int only);
void ps_eng_analog_forget(struct ps_engine *e);
void ps_eng_analog_calibrate(struct ps_engine *e);
double ps_eng_cand_value(const struct ps_engine *e, int c, const double raw[PS_MODEL_AUTO]);
void ps_eng_choose(struct ps_engine *e);

/* Auto's choice's tests, read by engine.c too (note_for, learn) and on every learned step: inline. */
static inline int ps_eng_usable(const struct ps_engine *e, int c) {
  if (c == PS_MODEL_SEASONAL && e->period == 0) return 0;
  if (c == PS_MODEL_PEAK && e->h < PS_PEAK_MIN_H) return 0;
  /* the analog model: within its horizon, and not while a bulk load's replay scores it on a few rows (its
   * score is only comparable once ps_eng_analog_calibrate has set it, AN_BULK_SCORED) */
  if (c == PS_MODEL_ANALOG && (e->h > PS_ANALOG_MAX_H || e->an_stride > 1)) return 0;
  return e->c[c].n >= PS_ENGINE_MIN_ERRORS;
}

/* The score auto chooses its forecast by: the slower one once the analog model is in the race (SEL_DECAY;
 * before, as it was: twitter's first day at targetCoverage 0.99, answered by that choice, fell to 97.9 %
 * on the slower one). */
static inline double ps_eng_sel_score(const struct ps_engine *e, int c) {
  return ps_eng_usable(e, PS_MODEL_ANALOG) ? e->c[c].slow : e->c[c].score;
}

/* Whether auto builds its answer on the candidate of the least pinball loss (QSCORE_DECAY): with a target,
 * below the horizon where the peak model competes. There consecutive windows share all but a few steps,
 * a score over 1 / QSCORE_DECAY errors spans few windows (azure, 1 s at h = 120: the choice left the
 * peak model, whose margin is of its own form, for Holt-Winters, 1.89x -> 2.08-2.56x the seed's pods).
 * Not with the fixed quantile: `prescale backtest --sweep` replays one engine for every quantile
 * (ps_engine_margins), and an engine configured with one answers as before. */
static inline int ps_eng_by_level(const struct ps_engine *e) {
  return e->cfg.model == PS_MODEL_AUTO && e->cfg.target_coverage > 0 && e->h < PS_PEAK_MIN_H;
}

#endif
